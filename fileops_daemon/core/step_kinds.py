"""The step kinds in one table: how to tell whether a step ran, how to run it, how to undo it.

Every step has a precondition and a postcondition that can be read off the tree. ``check``
says which one holds now; after a crash that tells whether the step ran, without trusting the
journal's last lines. ``run`` makes the change through the case folder's handle
(``CaseFiles``: ``CaseFS`` follows no path through a link). ``undo`` gives the step a
rollback runs instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from fileops_daemon.contract.errors import ErrorCode
from fileops_daemon.core.fsops import FolderMissingError, StepConflictError
from fileops_daemon.core.steps import Parts, Step, StepKind
from fileops_daemon.core.tree import Kind
from fileops_daemon.core.volume import CaseFiles

__all__ = ["KINDS", "KindRule", "StepState", "probe", "undo_step"]


class StepState(Enum):
    PENDING = "pending"  # the precondition holds: the step has not run
    DONE = "done"  # the postcondition holds: the step ran
    DUPLICATE = "duplicate"  # a rename stopped between copy and delete: both names exist


@dataclass(frozen=True)
class KindRule:
    """How one kind of step is checked, run and undone."""

    #: Which of the step's pre- and postcondition holds now; StepConflictError if neither.
    check: Callable[[CaseFiles, Step], StepState]
    #: Make the change; ``staging`` is this step's scratch name for a file being filled.
    run: Callable[[CaseFiles, Step, Parts], None]
    #: The step that undoes this one; None for a kind only a rollback makes.
    undo: Callable[[Step], Step] | None
    #: The step reads a source item (``src``) besides the one it makes or removes.
    takes_source: bool = False
    #: The step makes or removes a folder (the parents of an operation's paths).
    on_folder: bool = False


def probe(fs: CaseFiles, parts: Parts) -> Kind | None:
    """What is at ``parts`` now; a symbolic link found there is a conflict, never followed."""
    kind = fs.kind(parts)
    if kind is Kind.SYMLINK:
        raise StepConflictError(
            f"{'/'.join(parts)} became a symbolic link", ErrorCode.SYMLINK_REFUSED
        )
    return kind


def _unexpected(step: Step, dst: Kind | None) -> StepConflictError:
    found = dst.value if dst else "missing item"
    return StepConflictError(f"{'/'.join(step.dst)} is a {found}, unexpected")


def _source(step: Step) -> Parts:
    assert step.src is not None  # the journal gate refuses these kinds without a source
    return step.src


# -- check ---------------------------------------------------------------------------------------


def _check_made(made: Kind) -> Callable[[CaseFiles, Step], StepState]:
    """A step that makes a ``made`` where nothing was (mkdir; copy and write make a file)."""

    def check(fs: CaseFiles, step: Step) -> StepState:
        dst = probe(fs, step.dst)
        if dst is None:
            if step.src is not None and probe(fs, step.src) is not Kind.FILE:
                raise StepConflictError(f"the file {'/'.join(step.src)} is gone")
            return StepState.PENDING
        if dst is made:
            return StepState.DONE
        raise _unexpected(step, dst)

    return check


def _check_removed(removed: Kind) -> Callable[[CaseFiles, Step], StepState]:
    """A step that removes a ``removed`` (rmdir a folder, unlink a file)."""

    def check(fs: CaseFiles, step: Step) -> StepState:
        dst = probe(fs, step.dst)
        if dst is removed:
            return StepState.PENDING
        if dst is None:
            return StepState.DONE
        raise _unexpected(step, dst)

    return check


def _check_rename(fs: CaseFiles, step: Step) -> StepState:
    dst = probe(fs, step.dst)
    src_parts = _source(step)
    src = probe(fs, src_parts)
    if src is Kind.FILE and dst is None:
        return StepState.PENDING
    if src is None and dst is Kind.FILE:
        return StepState.DONE
    if src is Kind.FILE and dst is Kind.FILE:
        return StepState.DUPLICATE
    raise StepConflictError(
        f"expected the file {'/'.join(src_parts)} and no {'/'.join(step.dst)}; found "
        f"{src.value if src else 'nothing'} and {dst.value if dst else 'nothing'}"
    )


# -- run -----------------------------------------------------------------------------------------


def _mkdir(fs: CaseFiles, step: Step, _staging: Parts) -> None:
    fs.mkdir(step.dst)


def _rmdir(fs: CaseFiles, step: Step, _staging: Parts) -> None:
    # Already gone is fine: on gcsfuse a folder with no placeholder object exists only
    # through its files, and vanishes with the last one moved out.
    with contextlib.suppress(FileNotFoundError, FolderMissingError):
        fs.rmdir(step.dst)


def _rename(fs: CaseFiles, step: Step, _staging: Parts) -> None:
    fs.rename(_source(step), step.dst, step.version)


def _copy(fs: CaseFiles, step: Step, staging: Parts) -> None:
    fs.copy(_source(step), step.dst, staging, step.version)


def _write(fs: CaseFiles, step: Step, staging: Parts) -> None:
    fs.write(step.dst, step.content or b"", staging)


def _unlink_created(fs: CaseFiles, step: Step, _staging: Parts) -> None:
    """Rollback of a copy or write: remove the file only if it is still what we made."""
    expected = (
        step.content_sha256()
        if step.content is not None
        else fs.sha256(step.src)
        if step.src is not None
        else None
    )
    if expected is None or fs.sha256(step.dst) != expected:
        where = "/".join(step.dst)
        raise StepConflictError(f"{where} was changed after we made it; left in place")
    fs.unlink(step.dst)


# -- undo ----------------------------------------------------------------------------------------


def _undo_mkdir(step: Step) -> Step:
    return Step(StepKind.RMDIR, step.dst, step.operation)


def _undo_rmdir(step: Step) -> Step:
    return Step(StepKind.MKDIR, step.dst, step.operation)


def _undo_rename(step: Step) -> Step:
    return Step(StepKind.RENAME, _source(step), step.operation, src=step.dst)


def _undo_made_file(step: Step) -> Step:
    # Removes what the step created; the unlink checks the content first.
    return Step(StepKind.UNLINK, step.dst, step.operation, src=step.src, content=step.content)


KINDS: Mapping[StepKind, KindRule] = {
    StepKind.MKDIR: KindRule(_check_made(Kind.DIR), _mkdir, _undo_mkdir, on_folder=True),
    StepKind.RMDIR: KindRule(_check_removed(Kind.DIR), _rmdir, _undo_rmdir, on_folder=True),
    StepKind.RENAME: KindRule(_check_rename, _rename, _undo_rename, takes_source=True),
    StepKind.COPY: KindRule(_check_made(Kind.FILE), _copy, _undo_made_file, takes_source=True),
    StepKind.WRITE: KindRule(_check_made(Kind.FILE), _write, _undo_made_file),
    StepKind.UNLINK: KindRule(_check_removed(Kind.FILE), _unlink_created, None),
}


def undo_step(step: Step) -> Step:
    """The step that undoes ``step`` (what a rollback runs)."""
    undo = KINDS[step.kind].undo
    if undo is None:
        raise ValueError(f"{step.kind} steps are only produced by rollback")
    return undo(step)
