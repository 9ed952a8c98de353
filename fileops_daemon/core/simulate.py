"""Dry run: apply a plan's operations in order to a virtual view of the case folder.

Produces, without changing anything: per-operation outcomes, the diff (changes), the list of
primitive steps the executor will journal and run, and every conflict found. A later operation
sees the earlier ones (mkdir then move into it; move a->b then b->c).
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import TYPE_CHECKING

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.limits import GCS_OBJECT_NAME_MAX_BYTES, Limits
from fileops_daemon.contract.plan import Operation, Plan
from fileops_daemon.contract.results import OperationOutcome
from fileops_daemon.core.paths import WORK_DIR_NAME, CasePath, check_case_name, confine, nfc
from fileops_daemon.core.sim_records import OpRecord, Simulation
from fileops_daemon.core.steps import Parts, Step, StepKind
from fileops_daemon.core.tree import Kind, Node, OverBudgetError, VirtualTree, refuse_unsafe

if TYPE_CHECKING:
    from fileops_daemon.core.volume import Volume

__all__ = ["OpRecord", "Simulation", "confine_plan", "locate_case", "simulate", "trash_parts"]

#: Conflicts reported per plan; more only make the result huge.
MAX_REPORTED_ERRORS = 100


def trash_parts(plan_id: str, operation: int, original: Parts) -> Parts:
    """Where an item deleted or overwritten by ``operation`` is kept, below the case folder."""
    return (WORK_DIR_NAME, plan_id, "trash", str(operation), *original)


def confine_plan(plan: Plan) -> tuple[dict[int, dict[str, CasePath]], list[PlanError]]:
    """Lexical confinement of every path of every operation (no disk access)."""
    errors: list[PlanError] = []
    try:
        check_case_name(plan.case_name)
    except PlanError as exc:
        return {}, [exc]
    confined: dict[int, dict[str, CasePath]] = {}
    for op in plan.operations:
        paths: dict[str, CasePath] = {}
        for name, raw in op.paths():
            # Only an undo plan may take items back out of the plan's trash, as a move source.
            trash_of = plan.undo_of if (op.type == "move" and name == "from") else None
            try:
                paths[name] = confine(raw, plan.case_name, operation=op.index, trash_of=trash_of)
            except PlanError as exc:
                errors.append(exc)
        confined[op.index] = paths
    return confined, errors


def only_case(candidates: list[str], wanted: str, where: str) -> str:
    """The one name (any normalisation form) that reads as the case ``wanted``; PlanError
    when there is none or more than one."""
    if not candidates:
        raise PlanError(ErrorCode.CASE_MISSING, f"no case folder {wanted!r} in {where}")
    if len(candidates) > 1:
        raise PlanError(
            ErrorCode.PATH_AMBIGUOUS,
            f"{len(candidates)} case folders read as {wanted!r} after Unicode normalisation",
        )
    return candidates[0]


def locate_case(projects_root: str, case_name: str) -> str:
    """The case folder's real path, found by NFC name; refuses links, files and look-alikes."""
    wanted = nfc(case_name)
    candidates: list[str]
    if wanted.isascii():
        # No other spelling normalises to a pure ASCII name: skip listing a huge root.
        candidates = [wanted] if os.path.lexists(os.path.join(projects_root, wanted)) else []
    else:
        candidates = [name for name in os.listdir(projects_root) if nfc(name) == wanted]
    case_dir = os.path.join(projects_root, only_case(candidates, wanted, "the projects root"))
    info = os.lstat(case_dir)
    if stat.S_ISLNK(info.st_mode):
        raise PlanError(ErrorCode.SYMLINK_REFUSED, f"the case folder {wanted!r} is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise PlanError(ErrorCode.CASE_MISSING, f"{wanted!r} in the projects root is not a folder")
    if info.st_dev != os.lstat(projects_root).st_dev:
        raise PlanError(ErrorCode.MOUNT_CROSSING, f"the case folder {wanted!r} is another mount")
    return case_dir


class _Simulator:
    def __init__(self, plan: Plan, tree: VirtualTree, limits: Limits) -> None:
        self.plan = plan
        self.tree = tree
        self.limits = limits
        self.steps: list[Step] = []
        self.trashed_files = 0
        self.bytes_created = 0  # by copy and write, against limits.max_total_bytes
        self._work_dirs_checked: set[str] = set()
        self._case_bytes = len(plan.case_name.encode("utf-8", "surrogatepass"))

    # -- helpers ---------------------------------------------------------------------------------

    def _existing(self, path: CasePath, op: Operation) -> Node:
        node = self.tree.lookup(path.parts, raw=path, operation=op.index)
        if node is None:
            raise PlanError(
                ErrorCode.SOURCE_MISSING,
                f"{path} does not exist",
                operation=op.index,
                path=str(path),
            )
        return node

    def _parent(self, path: CasePath, op: Operation) -> Node:
        parent = self.tree.folder(path.parts[:-1], raw=path, operation=op.index)
        if parent is None:
            raise PlanError(
                ErrorCode.PARENT_MISSING,
                f"the folder {CasePath(path.case, path.parts[:-1])} does not exist; "
                "add a mkdir operation before this one",
                operation=op.index,
                path=str(path),
            )
        return parent

    def _check_expect(self, node: Node, op: Operation, raw: object) -> None:
        if op.expect is None:
            return
        if op.expect.files is not None:
            self._check_files(node, op, raw, op.expect.files)
            return
        if node.kind is not Kind.FILE:
            raise PlanError(
                ErrorCode.TYPE_CONFLICT,
                f"{raw} is a folder; expect applies to files",
                operation=op.index,
                path=str(raw),
            )
        if op.expect.size is not None and node.size != op.expect.size:
            raise PlanError(
                ErrorCode.PRECONDITION_FAILED,
                f"{raw} is {node.size} bytes, the plan expected {op.expect.size}",
                operation=op.index,
                path=str(raw),
            )
        if op.expect.sha256 is not None and node.sha256 != op.expect.sha256:
            raise PlanError(
                ErrorCode.PRECONDITION_FAILED,
                f"{raw} has sha256 {node.sha256}, the plan expected {op.expect.sha256}",
                operation=op.index,
                path=str(raw),
            )
        # The step acts only on the file checked here (contract.md: precondition_failed).
        self.tree.stamp(node, op.expect.sha256)

    def _check_files(self, node: Node, op: Operation, raw: object, expected: int) -> None:
        """A folder holds exactly ``expected`` files (at any depth), as the plan expects."""
        if node.kind is not Kind.DIR or op.expect is None or op.expect.size is not None:
            raise PlanError(
                ErrorCode.TYPE_CONFLICT,
                f"{raw} is a file; expect files applies to folders",
                operation=op.index,
                path=str(raw),
            )
        walked = self._walk(node, op, raw)
        found = sum(1 for _, child in walked if child.kind is not Kind.DIR)
        if found != expected:
            raise PlanError(
                ErrorCode.PRECONDITION_FAILED,
                f"{raw} holds {found} file(s), the plan expected {expected}: something was "
                "put there or taken away since",
                operation=op.index,
                path=str(raw),
            )

    def _clear_destination(
        self,
        existing: Node | None,
        path: CasePath,
        op: Operation,
        record: OpRecord,
        *,
        kind: Kind,
    ) -> None:
        """Refuse an existing destination (``tree.child`` of its parent), or send it to the
        trash when overwrite is set."""
        if existing is None:
            return
        refuse_unsafe(existing, raw=path, operation=op.index)
        if not op.overwrite:
            raise PlanError(
                ErrorCode.DESTINATION_EXISTS,
                f"{path} already exists; set overwrite to replace it (the old one goes to trash)",
                operation=op.index,
                path=str(path),
            )
        if existing.kind is not kind:
            raise PlanError(
                ErrorCode.TYPE_CONFLICT,
                f"{path} is a {existing.kind.value}; it cannot be replaced by a {kind.value}",
                operation=op.index,
                path=str(path),
            )
        self._trash(existing, op, record, raw=path)

    def _check_work_dir(self, area: str, op: Operation) -> None:
        """Our own trash or staging folder must be a real folder (or not exist yet): a link
        planted there is refused now, before anything changes, not met mid-apply."""
        if area in self._work_dirs_checked:
            return
        parts = (WORK_DIR_NAME, self.plan.plan_id, area)
        raw = "/".join((self.plan.case_name, *parts))
        for depth in range(1, len(parts) + 1):
            if self.tree.folder(parts[:depth], raw=raw, operation=op.index) is None:
                break
        self._work_dirs_checked.add(area)

    def _trash(self, node: Node, op: Operation, record: OpRecord, *, raw: object) -> None:
        self._check_work_dir("trash", op)
        original = node.parts
        target = trash_parts(self.plan.plan_id, op.index, original)
        files = self._transfer(node, target, op, raw=raw)
        self.tree.detach(node)
        self.trashed_files += max(files, 1)
        if self.trashed_files > self.limits.max_deletes:
            raise PlanError(
                ErrorCode.LIMIT_EXCEEDED,
                f"the plan sends more than {self.limits.max_deletes} items to the trash",
                operation=op.index,
                path=str(raw),
            )
        record.trashed.append((original, target))

    def _transfer(self, node: Node, target: Parts, op: Operation, *, raw: object) -> int:
        """Steps that move ``node`` to ``target``; folders go file by file. Returns files moved."""
        self.tree.stamp_source(node)
        if node.kind is Kind.FILE:
            self._add(Step(StepKind.RENAME, target, op.index, src=node.parts, version=node.pin()))
            return 1
        source = node.parts
        items = self._walk(node, op, raw)
        folders = [rel for rel, child in items if child.kind is Kind.DIR]
        files = [(rel, child) for rel, child in items if child.kind is Kind.FILE]
        self._add(Step(StepKind.MKDIR, target, op.index))
        for rel in folders:
            self._add(Step(StepKind.MKDIR, target + rel, op.index))
        for rel, child in files:
            self.tree.stamp_source(child)
            version = child.pin()
            self._add(
                Step(StepKind.RENAME, target + rel, op.index, src=source + rel, version=version)
            )
        for rel in reversed(folders):  # children before parents
            self._add(Step(StepKind.RMDIR, source + rel, op.index))
        self._add(Step(StepKind.RMDIR, source, op.index))
        return len(files)

    def _walk(self, node: Node, op: Operation, raw: object) -> list[tuple[Parts, Node]]:
        """Every item below the folder ``node``. The walk stops as soon as their steps would
        pass the plan's budget (the folder's own two steps besides): a folder of millions of
        objects costs a refusal no more listing than the budget's worth."""
        budget = self.limits.max_steps - len(self.steps) - 2
        try:
            return list(self.tree.walk(node, raw=raw, operation=op.index, budget=budget))
        except OverBudgetError:
            raise PlanError(
                ErrorCode.LIMIT_EXCEEDED,
                f"the plan expands to more than {self.limits.max_steps} file steps",
                operation=op.index,
                path=str(raw),
            ) from None

    def _count_bytes(self, size: int, op: Operation, path: CasePath) -> None:
        self.bytes_created += size
        if self.bytes_created > self.limits.max_total_bytes:
            raise PlanError(
                ErrorCode.LIMIT_EXCEEDED,
                f"the plan copies and writes more than {self.limits.max_total_bytes} bytes",
                operation=op.index,
                path=str(path),
            )

    def _add(self, step: Step) -> None:
        # A trash or folder-move target is longer than the plan's paths: it must still be a
        # valid object name on the bucket, or the step would fail mid-apply.
        for parts in step.touched():
            # The object name is case/part/part: the case, one "/" per part, the parts.
            joined = "/".join(parts)
            # surrogateescape: a name read from disk that is not UTF-8 counts its real bytes.
            size = (
                self._case_bytes
                + 1
                + (
                    len(joined)
                    if joined.isascii()
                    else len(joined.encode("utf-8", "surrogateescape"))
                )
            )
            if size > GCS_OBJECT_NAME_MAX_BYTES:
                where = "/".join((self.plan.case_name, *parts))
                raise PlanError(
                    ErrorCode.PATH_INVALID,
                    f"{where[:80]}... would be {size} bytes; object names are "
                    f"limited to {GCS_OBJECT_NAME_MAX_BYTES}",
                    operation=step.operation,
                )
        self.steps.append(step)
        if len(self.steps) > self.limits.max_steps:
            raise PlanError(
                ErrorCode.LIMIT_EXCEEDED,
                f"the plan expands to more than {self.limits.max_steps} file steps",
                operation=step.operation,
            )

    # -- operations ------------------------------------------------------------------------------

    def mkdir(self, op: Operation, paths: dict[str, CasePath], record: OpRecord) -> None:
        path = paths["path"]
        node = self.tree.root
        for depth, name in enumerate(path.parts, start=1):
            raw = str(path)
            child = self.tree.child(node, name, raw=raw, operation=op.index)
            if child is None:
                child = Node(Kind.DIR, nfc(name), None, None)
                self.tree.attach(child, node, nfc(name))
                self._add(Step(StepKind.MKDIR, child.parts, op.index))
                record.created.append(child.parts)
            else:
                refuse_unsafe(child, raw=raw, operation=op.index)
                if child.kind is not Kind.DIR:
                    raise PlanError(
                        ErrorCode.TYPE_CONFLICT,
                        f"{CasePath(path.case, path.parts[:depth])} is a file, not a folder",
                        operation=op.index,
                        path=str(raw),
                    )
            node = child
        if not record.created:
            record.outcome, record.message = OperationOutcome.NOOP, f"{path} already exists"

    def move(self, op: Operation, paths: dict[str, CasePath], record: OpRecord) -> None:
        src, dst = paths["from"], paths["to"]
        node = self._existing(src, op)
        self._check_expect(node, op, str(src))
        parent = self._parent(dst, op)
        if node.kind is Kind.DIR and parent.is_within(node):
            raise PlanError(
                ErrorCode.MOVE_INTO_ITSELF,
                f"{src} cannot be moved into itself ({dst})",
                operation=op.index,
                path=str(dst),
            )
        existing = self.tree.child(parent, dst.parts[-1], raw=dst, operation=op.index)
        if existing is node:
            record.outcome, record.message = OperationOutcome.NOOP, f"{src} is already at {dst}"
            return
        if existing is not None and node.is_within(existing):
            raise PlanError(
                ErrorCode.MOVE_INTO_ITSELF,
                f"{dst} holds {src}; a folder cannot be replaced by something inside it",
                operation=op.index,
                path=str(dst),
            )
        self._clear_destination(existing, dst, op, record, kind=node.kind)
        origin = node.parts
        name = nfc(dst.parts[-1])
        target = (*parent.parts, name)
        record.files = self._transfer(node, target, op, raw=src)
        if node.kind is Kind.FILE:
            record.bytes = node.size
        self.tree.detach(node)
        self.tree.attach(node, parent, name)
        record.moved, record.kind = (origin, target), node.kind

    def copy(self, op: Operation, paths: dict[str, CasePath], record: OpRecord) -> None:
        self._check_work_dir("staging", op)
        src, dst = paths["from"], paths["to"]
        node = self._existing(src, op)
        if node.kind is not Kind.FILE:
            raise PlanError(
                ErrorCode.TYPE_CONFLICT,
                f"{src} is a folder; copy takes one file",
                operation=op.index,
                path=str(src),
            )
        self._check_expect(node, op, str(src))
        parent = self._parent(dst, op)
        existing = self.tree.child(parent, dst.parts[-1], raw=dst, operation=op.index)
        if existing is node:
            raise PlanError(
                ErrorCode.DESTINATION_EXISTS,
                f"{src} cannot be copied onto itself",
                operation=op.index,
                path=str(dst),
            )
        self._clear_destination(existing, dst, op, record, kind=Kind.FILE)
        name = nfc(dst.parts[-1])
        if node.origin is not None:  # same content as a file on disk: read lazily from there
            copy = Node(Kind.FILE, name, None, node.origin, source=node.source, version="")
        else:  # a file this plan wrote: its content is known
            copy = Node(Kind.FILE, name, None, None, size=node.size, sha256=node.sha256)
        if node.size > self.limits.max_copy_bytes:
            raise PlanError(
                ErrorCode.LIMIT_EXCEEDED,
                f"{src} is {node.size} bytes; one copy may be at most {self.limits.max_copy_bytes}",
                operation=op.index,
                path=str(src),
            )
        self._count_bytes(node.size, op, dst)
        target = (*parent.parts, name)
        self.tree.stamp_source(node)
        version = node.version or None  # the source stays: its version stays pinned
        self._add(Step(StepKind.COPY, target, op.index, src=node.parts, version=version))
        self.tree.attach(copy, parent, name)
        record.moved, record.kind, record.files = (node.parts, copy.parts), Kind.FILE, 1
        record.bytes = node.size

    def delete(self, op: Operation, paths: dict[str, CasePath], record: OpRecord) -> None:
        path = paths["path"]
        node = self._existing(path, op)
        self._check_expect(node, op, str(path))
        self._trash(node, op, record, raw=path)

    def write(self, op: Operation, paths: dict[str, CasePath], record: OpRecord) -> None:
        self._check_work_dir("staging", op)
        path = paths["path"]
        content = op.content or b""
        parent = self._parent(path, op)
        existing = self.tree.child(parent, path.parts[-1], raw=path, operation=op.index)
        self._clear_destination(existing, path, op, record, kind=Kind.FILE)
        name = nfc(path.parts[-1])
        node = Node(
            Kind.FILE,
            name,
            None,
            None,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )
        self._count_bytes(len(content), op, path)
        self._add(Step(StepKind.WRITE, (*parent.parts, name), op.index, content=content))
        self.tree.attach(node, parent, name)
        record.written, record.bytes = node.parts, len(content)


def simulate(
    plan: Plan,
    projects_root: str,
    limits: Limits | None = None,
    *,
    volume: Volume | None = None,
    pin_sources: bool = False,
) -> Simulation:
    """Check the whole plan against the current tree; nothing on disk changes. ``volume``
    reads the tree (default: the folder ``projects_root``); ``pin_sources``: stamp_source."""
    limits = limits or Limits()
    records = [OpRecord(op) for op in plan.operations]
    confined, errors = confine_plan(plan)
    for error in errors:
        if error.operation is not None:
            record = records[error.operation]
            record.outcome, record.message, record.code = (
                OperationOutcome.REFUSED,
                error.message,
                error.code,
            )
    if errors:
        return Simulation(plan, records, [], errors[:MAX_REPORTED_ERRORS])
    try:
        if volume is None:
            case_dir = locate_case(projects_root, plan.case_name)
            tree = VirtualTree(case_dir)
        else:
            case_dir = volume.locate_case(plan.case_name)
            tree = VirtualTree(case_dir, volume.tree_source(case_dir))
    except PlanError as exc:
        return Simulation(plan, records, [], [exc])
    tree.pin_sources = pin_sources
    simulator = _Simulator(plan, tree, limits)
    for op, record in zip(plan.operations, records, strict=True):
        handler = getattr(simulator, op.type)
        record.outcome = OperationOutcome.OK
        try:
            handler(op, confined[op.index], record)
        except PlanError as exc:
            record.outcome, record.message, record.code = (
                OperationOutcome.REFUSED,
                exc.message,
                exc.code,
            )
            errors.append(exc)
            if exc.code is ErrorCode.LIMIT_EXCEEDED or len(errors) >= MAX_REPORTED_ERRORS:
                break
        if record.outcome is OperationOutcome.OK and not record.message:
            record.message = "ok"
    return Simulation(plan, records, simulator.steps, errors, case_dir=case_dir)
