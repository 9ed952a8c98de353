"""Guarantee 1: nothing outside ``projects_root/case_name/`` is ever changed.

A hostile corpus: every plan below is sent with ``"dry_run": false`` and must come back
``rejected`` with exactly the expected error code, while nothing under the test's base folder
(projects root, the case, the look-alike sibling case, the folder outside the root) changes.
Plans that cannot even be parsed are answered the way the CLI and the daemon answer them: a
``rejected`` refusal result built from the ``PlanError``.

Then: legal names that only look odd are accepted, a symbolic link swapped in between the check
and the step is refused at the moment of use (and what ran before is rolled back), and a case
folder that is itself a link is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.errors import PlanError
from fileops_daemon.contract.plan import parse_plan, undo_plan_id
from fileops_daemon.contract.results import now, refusal_result
from fileops_daemon.core.paths import WORK_DIR_NAME
from tests.conftest import World
from tests.support import CASE, apply_doc, assert_valid_result, error_codes, plan_doc

Op = dict[str, Any]

SIBLING = f"{CASE}-evil"
# Placeholders replaced at run time with the test's absolute folders.
OUTSIDE = "@OUTSIDE@"
ROOT = "@ROOT@"

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
assert CAFE_NFC != CAFE_NFD

STATE_DIR_NAME = "state"  # world.state: the daemon's own journal folder, not part of the tree


# -- running a plan -----------------------------------------------------------------------------


def _resolve(value: Any, world: World) -> Any:
    if isinstance(value, str):
        return value.replace(OUTSIDE, str(world.outside)).replace(ROOT, str(world.root))
    if isinstance(value, list):
        return [_resolve(item, world) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, world) for key, item in value.items()}
    return value


def run_plan(
    document: dict[str, Any], world: World, *, trusted_undo: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """Parse and apply like the daemon does: a plan that does not parse gets a refusal.

    ``trusted_undo``: the document stands for an undo plan fileops built itself (its plan_id
    becomes the derived undo id), to test what the gate still refuses in one.
    """
    undo_of = document.get("undo_of") if trusted_undo else None
    if undo_of is not None:
        document = dict(document, plan_id=undo_plan_id(undo_of))
    try:
        parse_plan(document, undo_of=undo_of)
    except PlanError as exc:
        result = refusal_result(document, exc, now())
        assert_valid_result(result)
        return result
    return apply_doc(document, world.root, world.state, undo_of=undo_of, **kwargs)


def snapshot(root: Path) -> dict[str, tuple[str, ...]]:
    """``tests.support.snapshot`` that also records special files (it would block on a FIFO)."""
    entries: dict[str, tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                entries[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(mode):
                entries[rel] = ("dir",)
            elif stat.S_ISREG(mode):
                entries[rel] = ("file", hashlib.sha256(Path(full).read_bytes()).hexdigest())
            else:
                entries[rel] = ("special", oct(stat.S_IFMT(mode)))
    return entries


def world_snapshot(world: World) -> dict[str, tuple[str, ...]]:
    """Everything below the base folder except the daemon's state folder (journals, locks)."""
    return {
        rel: entry
        for rel, entry in snapshot(world.base).items()
        if rel.split(os.sep)[0] != STATE_DIR_NAME
    }


def _outside_case(world: World) -> dict[str, tuple[str, ...]]:
    """``world_snapshot`` without what lies inside the case folder."""
    inside = os.path.relpath(world.case, world.base) + os.sep
    return {
        rel: entry for rel, entry in world_snapshot(world).items() if not rel.startswith(inside)
    }


# -- worlds with hostile things planted in them ----------------------------------------------


def _link(world: World, name: str, target: str | Path) -> None:
    os.symlink(target, world.case / name)


def _cafe_pair(folder: Path, *, as_files: bool = False) -> None:
    for spelling in (CAFE_NFC, CAFE_NFD):
        if as_files:
            (folder / spelling).write_text(f"{spelling!a}\n")
        else:
            (folder / spelling).mkdir()
            (folder / spelling / "inner.txt").write_text(f"{spelling!a}\n")


def _cafe_nfd_deep(world: World) -> None:
    (world.case / "Investigation" / CAFE_NFD).mkdir()
    (world.case / "Investigation" / CAFE_NFD / "n.txt").write_text("in an NFD folder\n")


def _case_is_link(world: World) -> None:
    shutil.move(world.case, world.base / "real-case")
    os.symlink(world.outside, world.case)


def _work_dir(world: World) -> None:
    trash = world.case / WORK_DIR_NAME / "p-0" / "trash" / "0"
    trash.mkdir(parents=True)
    (trash / "old.txt").write_text("kept by an earlier plan\n")


def _nested(world: World, *, decoy: bool = False) -> None:
    sub = world.case / "Investigation" / "sub"
    (sub / "deeper").mkdir(parents=True)
    (sub / "keep.txt").write_text("the folder being moved\n")
    (sub / "deeper" / "deep.txt").write_text("deep\n")
    if decoy:  # an unrelated folder at the case root, shaped like the source
        (world.case / "sub" / "deeper").mkdir(parents=True)
        (world.case / "sub" / "keep.txt").write_text("unrelated folder\n")
        (world.case / "sub" / "deeper" / "deep.txt").write_text("unrelated\n")


def _work_dir_mirror(world: World) -> None:
    """A folder named like the work dir, one level down, mirroring an earlier plan's trash."""
    _work_dir(world)
    mirror = world.case / "Investigation" / WORK_DIR_NAME / "p-0" / "trash" / "0"
    mirror.mkdir(parents=True)
    (mirror / "old.txt").write_text("an ordinary file\n")


def _fifo(world: World) -> None:
    os.mkfifo(world.case / "Investigation" / "pipe")


SETUPS: dict[str, Callable[[World], None]] = {
    "link_outside": lambda w: _link(w, "lnk", w.outside),
    "link_sibling": lambda w: _link(w, "lnk", f"../{SIBLING}"),
    "link_etc": lambda w: _link(w, "lnk", "/etc"),
    "link_secret": lambda w: _link(w, "lnk", w.outside / "secret.txt"),
    "link_file_in": lambda w: _link(w, "lnk", "Investigation/report.txt"),
    "link_dir_in": lambda w: _link(w, "lnk", "Investigation"),
    "link_dangling": lambda w: _link(w, "lnk", w.outside / "not-there.txt"),
    "link_deep": lambda w: os.symlink(w.outside, w.case / "Investigation" / "lnk"),
    "cafe_pair": lambda w: _cafe_pair(w.case),
    "cafe_pair_deep": lambda w: _cafe_pair(w.case / "Investigation", as_files=True),
    "cafe_nfd": lambda w: (w.case / CAFE_NFD).mkdir(),
    "cafe_nfd_deep": _cafe_nfd_deep,
    "case_pair": lambda w: _cafe_pair(w.root),
    "case_is_link": _case_is_link,
    "case_is_file": lambda w: (w.root / "Plain").write_text("not a folder\n"),
    "work_dir": _work_dir,
    "work_dir_link": lambda w: os.symlink(w.outside, w.case / WORK_DIR_NAME),
    "work_dir_mirror": _work_dir_mirror,
    "nested": _nested,
    "nested_decoy": lambda w: _nested(w, decoy=True),
    "fifo": _fifo,
}


@pytest.fixture
def mounted(world: World) -> Iterator[Path]:
    """A tmpfs mounted inside the case (needs CAP_SYS_ADMIN; skipped where mount is refused)."""
    point = world.case / "mnt"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a filesystem needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount refused here: {done.stderr.decode(errors='replace').strip()}")
    try:
        (point / "inside.txt").write_text("on another filesystem\n")
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


# -- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    ops: list[Op]
    code: str
    setup: str | None = None
    case: str = CASE
    extra: dict[str, Any] = field(default_factory=dict)
    trusted_undo: bool = False  # an undo plan fileops built (see run_plan)


def _c(*parts: str) -> str:
    return "/".join((CASE, *parts))


FILE1 = _c("uncategorized", "file1.pdf")
FILE2 = _c("uncategorized", "file2.pdf")

# Every path position of every operation type; ``p`` is the hostile path.
POSITIONS: dict[str, Callable[[str], Op]] = {
    "mkdir": lambda p: {"type": "mkdir", "path": p},
    "move_from": lambda p: {"type": "move", "from": p, "to": _c("Investigation", "moved")},
    "move_to": lambda p: {"type": "move", "from": FILE1, "to": p, "overwrite": True},
    "copy_from": lambda p: {"type": "copy", "from": p, "to": _c("Investigation", "copied")},
    "copy_to": lambda p: {"type": "copy", "from": FILE2, "to": p, "overwrite": True},
    "delete": lambda p: {"type": "delete", "path": p},
    "write": lambda p: {"type": "write", "path": p, "content": "pwned", "overwrite": True},
}

LONG_PATH = _c(*(["d" * 200] * 5), "x")  # every name legal, the whole path > 1024 bytes
assert 1024 < len(LONG_PATH.encode()) <= 4096

TRAVERSAL: list[tuple[str, str, str]] = [
    ("dotdot", "..", "path_invalid"),
    ("dotdot-sibling", f"{CASE}/../{SIBLING}/loot.txt", "path_invalid"),
    ("dotdot-outside", f"{CASE}/../../outside/secret.txt", "path_invalid"),
    ("a-dotdot-dotdot", f"{CASE}/a/../../x", "path_invalid"),
    ("dotdot-tail", f"{CASE}/Investigation/..", "path_invalid"),
    ("dot-tail", f"{CASE}/.", "path_invalid"),
    ("dot-middle", f"{CASE}/./x", "path_invalid"),
    ("dot-lead", f"./{CASE}/x", "path_invalid"),
    ("leading-slash", f"/{CASE}/x", "path_invalid"),
    ("double-slash-lead", f"//{CASE}/x", "path_invalid"),
    ("double-slash-mid", f"{CASE}//x", "path_invalid"),
    ("trailing-slash", f"{CASE}/Investigation/", "path_invalid"),
    ("empty", "", "schema_violation"),
    ("backslash-dotdot", f"{CASE}\\..\\x", "path_invalid"),
    ("backslash-sibling", f"{CASE}\\..\\{SIBLING}\\loot.txt", "path_invalid"),
    ("backslash-in-name", f"{CASE}/a\\b", "path_invalid"),
    ("nul", f"{CASE}/x\x00.txt", "path_invalid"),
    ("nul-dotdot", f"{CASE}/..\x00/x", "path_invalid"),
    ("newline", f"{CASE}/x\n.txt", "path_invalid"),
    ("carriage-return", f"{CASE}/x\r", "path_invalid"),
    ("tab", f"{CASE}/\tx", "path_invalid"),
    ("escape", f"{CASE}/\x1b[31mx", "path_invalid"),
    ("delete-char", f"{CASE}/x\x7f", "path_invalid"),
    ("next-line-c1", f"{CASE}/x\x85y", "path_invalid"),
    ("bidi-override", f"{CASE}/invoice\u202efdp.exe", "path_invalid"),
    ("bidi-isolate", f"{CASE}/\u2066x\u2069", "path_invalid"),
    ("lone-surrogate", f"{CASE}/x\ud800", "path_invalid"),
    ("component-256-bytes", _c("a" * 256), "path_invalid"),
    ("component-256-bytes-utf8", _c("é" * 128), "path_invalid"),
    ("path-over-1024-bytes", LONG_PATH, "path_invalid"),
    ("path-over-schema-max", _c("b" * 5000), "schema_violation"),
    ("abs-etc-passwd", "/etc/passwd", "path_invalid"),
    ("abs-outside", f"{OUTSIDE}/secret.txt", "path_invalid"),
    ("abs-inside-root", f"{ROOT}/{CASE}/Investigation/report.txt", "path_invalid"),
]

PREFIX: list[tuple[str, str]] = [
    ("sibling", f"{SIBLING}/loot.txt"),
    ("sibling-root", SIBLING),
    ("case2", f"{CASE}2/x"),
    ("case-dot-bak", f"{CASE}.bak/x"),
    ("split-case-name", f"{CASE[:3]}/{CASE[3:]}/x"),
    ("lowercase", f"{CASE.lower()}/x"),
    ("uppercase", f"{CASE.upper()}/x"),
    ("cyrillic-A", f"\u0410{CASE[1:]}/x"),
    ("fullwidth", "".join(chr(ord(c) + 0xFEE0) for c in CASE) + "/x"),
    ("nfkc-fullwidth-hyphen", CASE.replace("-", "\uff0d") + "/x"),
    ("nfkc-math-digits", CASE.replace("2024", "\U0001d7ee\U0001d7ec\U0001d7ee\U0001d7f0") + "/x"),
    ("trailing-space", f"{CASE} /x"),
    ("zero-width-space", f"{CASE}\u200b/x"),
    ("outside-relative", "outside/secret.txt"),
    ("projects-prefixed", f"projects/{CASE}/x"),
]
# Every look-alike really differs from the case name, also after NFC.
assert all(unicodedata.normalize("NFC", path.split("/")[0]) != CASE for _, path in PREFIX), (
    "a prefix-trick path starts with the real case name"
)


def _link_plans(setup: str, inner: str) -> list[Hostile]:
    """A link ``CASE/lnk`` to a folder outside (holding ``inner``) in every position."""
    lnk = _c("lnk")
    plans: list[tuple[str, Op]] = [
        ("mkdir-below", {"type": "mkdir", "path": _c("lnk", "x")}),
        ("mkdir-on", {"type": "mkdir", "path": lnk}),
        ("move-from-below", {"type": "move", "from": _c("lnk", inner), "to": _c("x")}),
        ("move-from-link", {"type": "move", "from": lnk, "to": _c("Investigation", "l")}),
        ("move-to-below", {"type": "move", "from": FILE1, "to": _c("lnk", "file1.pdf")}),
        ("move-to-link", {"type": "move", "from": FILE1, "to": lnk, "overwrite": True}),
        ("copy-from-below", {"type": "copy", "from": _c("lnk", inner), "to": _c("x")}),
        ("copy-to-below", {"type": "copy", "from": FILE1, "to": _c("lnk", "f.pdf")}),
        (
            "copy-to-below-overwrite",
            {"type": "copy", "from": FILE1, "to": _c("lnk", inner), "overwrite": True},
        ),
        ("delete-link", {"type": "delete", "path": lnk}),
        ("delete-below", {"type": "delete", "path": _c("lnk", inner)}),
        ("write-below", {"type": "write", "path": _c("lnk", "x.txt"), "content": "pwned"}),
        (
            "write-below-overwrite",
            {"type": "write", "path": _c("lnk", inner), "content": "p", "overwrite": True},
        ),
        ("write-link-overwrite", {"type": "write", "path": lnk, "content": "p", "overwrite": True}),
    ]
    return [Hostile(f"{setup}-{name}", [op], "symlink_refused", setup) for name, op in plans]


def _w(path: str, **extra: Any) -> Op:
    return {"type": "write", "path": path, "content": "x", **extra}


def _mv(src: str, dst: str, **extra: Any) -> Op:
    return {"type": "move", "from": src, "to": dst, **extra}


def _cp(src: str, dst: str, **extra: Any) -> Op:
    return {"type": "copy", "from": src, "to": dst, **extra}


def _rm(path: str) -> Op:
    return {"type": "delete", "path": path}


def _md(path: str) -> Op:
    return {"type": "mkdir", "path": path}


SYMLINKS: list[Hostile] = [
    *_link_plans("link_outside", "secret.txt"),
    *_link_plans("link_sibling", "loot.txt"),
    *_link_plans("link_etc", "passwd"),
    # a link to a file outside
    Hostile("link_secret-copy-from", [_cp(_c("lnk"), _c("x"))], "symlink_refused", "link_secret"),
    Hostile("link_secret-move-from", [_mv(_c("lnk"), _c("x"))], "symlink_refused", "link_secret"),
    Hostile(
        "link_secret-write-overwrite",
        [_w(_c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_secret",
    ),
    Hostile(
        "link_secret-copy-onto",
        [_cp(FILE1, _c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_secret",
    ),
    # a link to a file inside the case: still a link, still refused
    Hostile("link_file_in-copy-from", [_cp(_c("lnk"), _c("x"))], "symlink_refused", "link_file_in"),
    Hostile(
        "link_file_in-move-from",
        [_mv(_c("lnk"), _c("Medical Records", "l"))],
        "symlink_refused",
        "link_file_in",
    ),
    Hostile("link_file_in-delete", [_rm(_c("lnk"))], "symlink_refused", "link_file_in"),
    Hostile(
        "link_file_in-write-overwrite",
        [_w(_c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_file_in",
    ),
    Hostile(
        "link_file_in-move-onto",
        [_mv(FILE1, _c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_file_in",
    ),
    Hostile(
        "link_file_in-copy-onto",
        [_cp(FILE1, _c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_file_in",
    ),
    Hostile("link_file_in-mkdir-below", [_md(_c("lnk", "x"))], "symlink_refused", "link_file_in"),
    # a link to a folder inside the case
    Hostile("link_dir_in-write-below", [_w(_c("lnk", "x.txt"))], "symlink_refused", "link_dir_in"),
    Hostile("link_dir_in-mkdir-below", [_md(_c("lnk", "x"))], "symlink_refused", "link_dir_in"),
    Hostile(
        "link_dir_in-move-from-below",
        [_mv(_c("lnk", "report.txt"), _c("r.txt"))],
        "symlink_refused",
        "link_dir_in",
    ),
    Hostile(
        "link_dir_in-move-link",
        [_mv(_c("lnk"), _c("Medical Records", "lnk"))],
        "symlink_refused",
        "link_dir_in",
    ),
    Hostile("link_dir_in-delete", [_rm(_c("lnk"))], "symlink_refused", "link_dir_in"),
    # a dangling link: there is "nothing" behind it, but the name is taken by a link
    Hostile("link_dangling-write", [_w(_c("lnk"))], "symlink_refused", "link_dangling"),
    Hostile(
        "link_dangling-write-overwrite",
        [_w(_c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_dangling",
    ),
    Hostile("link_dangling-copy-to", [_cp(FILE1, _c("lnk"))], "symlink_refused", "link_dangling"),
    Hostile(
        "link_dangling-move-to",
        [_mv(FILE1, _c("lnk"), overwrite=True)],
        "symlink_refused",
        "link_dangling",
    ),
    # a link deep inside a folder that a plan moves or deletes as a whole
    Hostile(
        "link_deep-move-parent",
        [_mv(_c("Investigation"), _c("Medical Records", "inv"))],
        "symlink_refused",
        "link_deep",
    ),
    Hostile("link_deep-delete-parent", [_rm(_c("Investigation"))], "symlink_refused", "link_deep"),
    Hostile(
        "link_deep-write-below",
        [_w(_c("Investigation", "lnk", "x"))],
        "symlink_refused",
        "link_deep",
    ),
    Hostile(
        "link_deep-copy-from-below",
        [_cp(_c("Investigation", "lnk", "secret.txt"), _c("s.txt"))],
        "symlink_refused",
        "link_deep",
    ),
    Hostile(
        "link_deep-move-parent-overwrite",
        [_mv(_c("Medical Records"), _c("Investigation"), overwrite=True)],
        "symlink_refused",
        "link_deep",
    ),
]

RESERVED: list[Hostile] = [
    Hostile("case-root-mkdir", [_md(CASE)], "path_reserved"),
    Hostile("case-root-delete", [_rm(CASE)], "path_reserved"),
    Hostile("case-root-move-from", [_mv(CASE, _c("x"))], "path_reserved"),
    Hostile("case-root-move-to", [_mv(_c("uncategorized"), CASE, overwrite=True)], "path_reserved"),
    Hostile("case-root-copy-from", [_cp(CASE, _c("x"))], "path_reserved"),
    Hostile("case-root-copy-to", [_cp(FILE1, CASE, overwrite=True)], "path_reserved"),
    Hostile("case-root-write", [_w(CASE, overwrite=True)], "path_reserved"),
    Hostile("workdir-mkdir", [_md(_c(WORK_DIR_NAME))], "path_reserved"),
    Hostile("workdir-mkdir-below", [_md(_c(WORK_DIR_NAME, "x"))], "path_reserved"),
    Hostile("workdir-write", [_w(_c(WORK_DIR_NAME, "x"))], "path_reserved"),
    Hostile(
        "workdir-write-staging",
        [_w(_c(WORK_DIR_NAME, "p-1", "staging", "2.part"))],
        "path_reserved",
    ),
    Hostile("workdir-write-on", [_w(_c(WORK_DIR_NAME), overwrite=True)], "path_reserved"),
    Hostile("workdir-delete", [_rm(_c(WORK_DIR_NAME))], "path_reserved"),
    Hostile(
        "workdir-move-into-trash",
        [_mv(FILE1, _c(WORK_DIR_NAME, "p-1", "trash", "0", "file1.pdf"))],
        "path_reserved",
    ),
    Hostile("workdir-copy-into", [_cp(FILE1, _c(WORK_DIR_NAME, "f.pdf"))], "path_reserved"),
    Hostile(
        "workdir-move-out-of-trash",
        [_mv(_c(WORK_DIR_NAME, "p-0", "trash", "0", "old.txt"), _c("old.txt"))],
        "path_reserved",
        "work_dir",
    ),
    Hostile("workdir-existing-delete", [_rm(_c(WORK_DIR_NAME))], "path_reserved", "work_dir"),
    Hostile(
        "workdir-existing-move", [_mv(_c(WORK_DIR_NAME), _c("loot"))], "path_reserved", "work_dir"
    ),
    Hostile(
        "workdir-existing-delete-trash",
        [_rm(_c(WORK_DIR_NAME, "p-0", "trash", "0", "old.txt"))],
        "path_reserved",
        "work_dir",
    ),
    Hostile(
        "workdir-existing-write-over",
        [_w(_c(WORK_DIR_NAME, "p-0", "trash", "0", "old.txt"), overwrite=True)],
        "path_reserved",
        "work_dir",
    ),
    # the work dir itself is a link planted before the plan: trash and staging cannot go there
    Hostile("workdir-link-delete", [_rm(FILE1)], "symlink_refused", "work_dir_link"),
    Hostile(
        "workdir-link-delete-folder", [_rm(_c("uncategorized"))], "symlink_refused", "work_dir_link"
    ),
    Hostile(
        "workdir-link-write-overwrite",
        [_w(_c("Investigation", "report.txt"), overwrite=True)],
        "symlink_refused",
        "work_dir_link",
    ),
    Hostile(
        "workdir-link-write-new",
        [_w(_c("Investigation", "notes.txt"))],
        "symlink_refused",
        "work_dir_link",
    ),
    Hostile(
        "workdir-link-copy",
        [_cp(FILE1, _c("Investigation", "f.pdf"))],
        "symlink_refused",
        "work_dir_link",
    ),
    Hostile(
        "workdir-link-move-overwrite",
        [_mv(FILE1, _c("Investigation", "report.txt"), overwrite=True)],
        "symlink_refused",
        "work_dir_link",
    ),
    Hostile(
        "workdir-link-after-good-ops",
        [*[_md(_c("new")), _mv(FILE2, _c("new", "f.pdf"))], _rm(FILE1)],
        "symlink_refused",
        "work_dir_link",
    ),
    # an undo plan may only move items *out of* its own plan's trash
    Hostile(
        "undo-move-trash-folder-itself",
        [_mv(_c(WORK_DIR_NAME, "p-0", "trash"), _c("t"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-move-from-other-plan-trash",
        [_mv(_c(WORK_DIR_NAME, "p-9", "trash", "0", "x"), _c("x"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-move-from-staging",
        [_mv(_c(WORK_DIR_NAME, "p-0", "staging", "0.part"), _c("x"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-move-into-trash",
        [_mv(FILE1, _c(WORK_DIR_NAME, "p-0", "trash", "0", "f.pdf"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-delete-in-trash",
        [_rm(_c(WORK_DIR_NAME, "p-0", "trash", "0", "old.txt"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-copy-from-trash",
        [_cp(_c(WORK_DIR_NAME, "p-0", "trash", "0", "old.txt"), _c("x"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-write-in-trash",
        [_w(_c(WORK_DIR_NAME, "p-0", "trash", "0", "new.txt"))],
        "path_reserved",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
    Hostile(
        "undo-trash-dotdot",
        [_mv(_c(WORK_DIR_NAME, "p-0", "trash", "..", "..", "x"), _c("x"))],
        "path_invalid",
        "work_dir",
        extra={"undo_of": "p-0"},
        trusted_undo=True,
    ),
]

# names that read as the daemon's own folder (case, compatibility forms, invisible characters)
LOOKALIKES: list[Hostile] = [
    Hostile(f"workdir-lookalike-{i}", [_md(_c(name, "x"))], "path_reserved")
    for i, name in enumerate(
        [
            ".FILEOPS",
            ".FileOps",
            ".fileops\u200b",
            "\u200b.fileops",
            ".file\u200dops",
            ".fileops\ufeff",
            ".\ufb01leops",  # the fi ligature
            "\uff0e\uff46\uff49\uff4c\uff45\uff4f\uff50\uff53",  # fullwidth
            ".fileops\u00ad",
            ".fileops\ufe0f",
            ".FİLEOPS".replace("İ", "I"),
        ]
    )
] + [
    Hostile("workdir-lookalike-write", [_w(_c(".Fileops", "x"))], "path_reserved"),
    Hostile("workdir-lookalike-move-to", [_mv(FILE1, _c(".FILEOPS"))], "path_reserved"),
]

# only fileops makes undo plans: an agent's plan can neither claim undo_of nor take the id
FORGED_UNDO: list[Hostile] = [
    Hostile(
        "forged-undo-of-takes-from-trash",
        [_mv(_c(WORK_DIR_NAME, "p-0", "trash", "0", "old.txt"), _c("x"))],
        "undo_forged",
        "work_dir",
        extra={"undo_of": "p-0"},
    ),
    Hostile("forged-undo-of-harmless", [_md(_c("x"))], "undo_forged", extra={"undo_of": "p-0"}),
    Hostile("taken-undo-id", [_md(_c("x"))], "undo_forged", extra={"plan_id": "p-0.undo"}),
    Hostile("taken-undo-id-upper", [_md(_c("x"))], "undo_forged", extra={"plan_id": "p-0.UNDO"}),
    Hostile(
        "taken-hashed-undo-id",
        [_md(_c("x"))],
        "undo_forged",
        extra={"plan_id": undo_plan_id("p" * 200)},
    ),
]

INTO_ITSELF: list[Hostile] = [
    Hostile(
        "into-itself-child",
        [_mv(_c("Investigation"), _c("Investigation", "sub"))],
        "move_into_itself",
    ),
    Hostile(
        "into-itself-same-name",
        [_mv(_c("uncategorized"), _c("uncategorized", "uncategorized"))],
        "move_into_itself",
    ),
    Hostile(
        "into-itself-made-earlier",
        [
            _md(_c("Investigation", "a", "b")),
            _mv(_c("Investigation"), _c("Investigation", "a", "b", "c")),
        ],
        "move_into_itself",
    ),
    Hostile(
        "into-itself-overwrite",
        [_mv(_c("Investigation"), _c("Investigation", "report.txt"), overwrite=True)],
        "move_into_itself",
    ),
    Hostile(
        "into-itself-virtual-folder",
        [_md(_c("new", "a")), _mv(_c("new"), _c("new", "a", "new"))],
        "move_into_itself",
    ),
    Hostile(
        "into-itself-nfd-spelling",
        [_mv(_c(CAFE_NFC), _c(CAFE_NFD, "x"))],
        "move_into_itself",
        "cafe_nfd",
    ),
    # onto a folder that holds the source, replacing it: the source would go to the trash
    # with the folder it is moved onto
    Hostile(
        "onto-own-parent",
        [_mv(_c("Investigation", "sub"), _c("Investigation"), overwrite=True)],
        "move_into_itself",
        "nested",
    ),
    Hostile(
        "onto-own-grandparent",
        [_mv(_c("Investigation", "sub", "deeper"), _c("Investigation"), overwrite=True)],
        "move_into_itself",
        "nested",
    ),
    Hostile(
        "onto-own-parent-with-decoy",
        [_mv(_c("Investigation", "sub"), _c("Investigation"), overwrite=True)],
        "move_into_itself",
        "nested_decoy",
    ),
    Hostile(
        "onto-own-parent-made-by-plan",
        [
            _md(_c("new", "sub")),
            _w(_c("new", "sub", "f.txt")),
            _mv(_c("new", "sub"), _c("new"), overwrite=True),
        ],
        "move_into_itself",
    ),
    Hostile(
        "onto-own-parent-nfd",
        [_mv(_c("Investigation", CAFE_NFD), _c("Investigation"), overwrite=True)],
        "move_into_itself",
        "cafe_nfd_deep",
    ),
    Hostile(
        "onto-own-parent-workdir-named",
        [_mv(_c("Investigation", WORK_DIR_NAME), _c("Investigation"), overwrite=True)],
        "move_into_itself",
        "work_dir_mirror",
    ),
]

AMBIGUOUS: list[Hostile] = [
    Hostile("ambiguous-write-below-nfc", [_w(_c(CAFE_NFC, "x"))], "path_ambiguous", "cafe_pair"),
    Hostile("ambiguous-mkdir-below-nfd", [_md(_c(CAFE_NFD, "x"))], "path_ambiguous", "cafe_pair"),
    Hostile("ambiguous-delete", [_rm(_c(CAFE_NFC))], "path_ambiguous", "cafe_pair"),
    Hostile(
        "ambiguous-move-from",
        [_mv(_c(CAFE_NFD), _c("Investigation", "c"))],
        "path_ambiguous",
        "cafe_pair",
    ),
    Hostile(
        "ambiguous-move-to",
        [_mv(_c("uncategorized"), _c(CAFE_NFC), overwrite=True)],
        "path_ambiguous",
        "cafe_pair",
    ),
    Hostile(
        "ambiguous-copy-from",
        [_cp(_c(CAFE_NFC, "inner.txt"), _c("x"))],
        "path_ambiguous",
        "cafe_pair",
    ),
    Hostile(
        "ambiguous-copy-to", [_cp(FILE1, _c(CAFE_NFC, "f.pdf"))], "path_ambiguous", "cafe_pair"
    ),
    Hostile("ambiguous-mkdir-on", [_md(_c(CAFE_NFC))], "path_ambiguous", "cafe_pair"),
    Hostile(
        "ambiguous-deep-move-parent",
        [_mv(_c("Investigation"), _c("Medical Records", "inv"))],
        "path_ambiguous",
        "cafe_pair_deep",
    ),
    Hostile(
        "ambiguous-deep-delete-parent",
        [_rm(_c("Investigation"))],
        "path_ambiguous",
        "cafe_pair_deep",
    ),
    Hostile(
        "ambiguous-deep-write-file",
        [_w(_c("Investigation", CAFE_NFD), overwrite=True)],
        "path_ambiguous",
        "cafe_pair_deep",
    ),
    Hostile(
        "ambiguous-case-folder", [_w(f"{CAFE_NFC}/x")], "path_ambiguous", "case_pair", case=CAFE_NFC
    ),
]

CASES: list[Hostile] = [
    Hostile("case-missing", [_w("Nobody/x")], "case_missing", case="Nobody"),
    Hostile("case-missing-lowercase", [_w(f"{CASE.lower()}/x")], "case_missing", case=CASE.lower()),
    Hostile(
        "case-missing-cyrillic",
        [_w(f"\u0410{CASE[1:]}/x")],
        "case_missing",
        case=f"\u0410{CASE[1:]}",
    ),
    Hostile(
        "case-missing-nfkc",
        [_w(CASE.replace("-", "\uff0d") + "/x")],
        "case_missing",
        case=CASE.replace("-", "\uff0d"),
    ),
    Hostile("case-missing-trailing-space", [_w(f"{CASE} /x")], "case_missing", case=f"{CASE} "),
    Hostile("case-is-a-file", [_w("Plain/x")], "case_missing", "case_is_file", case="Plain"),
    Hostile("case-is-a-link", [_w(_c("Investigation", "x"))], "symlink_refused", "case_is_link"),
    Hostile("case-is-a-link-delete", [_rm(_c("secret.txt"))], "symlink_refused", "case_is_link"),
    Hostile("case-name-dotdot", [_w("../x")], "schema_violation", case=".."),
    Hostile("case-name-with-slash", [_w("../outside/x")], "schema_violation", case="../outside"),
    Hostile("case-name-absolute", [_w("/etc/x")], "schema_violation", case="/etc"),
    Hostile(
        "case-name-nested",
        [_w(_c("Investigation", "x"))],
        "schema_violation",
        case=f"{CASE}/Investigation",
    ),
    Hostile("case-name-empty", [_w("x")], "schema_violation", case=""),
    Hostile("case-name-bidi", [_w(f"{CASE}\u202e/x")], "path_invalid", case=f"{CASE}\u202e"),
    Hostile("case-name-control", [_w(f"{CASE}\x85/x")], "path_invalid", case=f"{CASE}\x85"),
    Hostile("case-name-sibling-paths-in-case", [_w(_c("x"))], "path_outside_case", case=SIBLING),
]

SPECIAL: list[Hostile] = [
    Hostile("fifo-delete", [_rm(_c("Investigation", "pipe"))], "type_conflict", "fifo"),
    Hostile("fifo-copy-from", [_cp(_c("Investigation", "pipe"), _c("x"))], "type_conflict", "fifo"),
    Hostile(
        "fifo-write-over",
        [_w(_c("Investigation", "pipe"), overwrite=True)],
        "type_conflict",
        "fifo",
    ),
    Hostile(
        "fifo-move-parent",
        [_mv(_c("Investigation"), _c("Medical Records", "i"))],
        "type_conflict",
        "fifo",
    ),
]

GOOD_START: list[Op] = [
    _md(_c("Investigation", "photos")),
    _mv(FILE1, _c("Medical Records", "file1.pdf")),
    _cp(FILE2, _c("Investigation", "file2-copy.pdf")),
    _w(_c("Investigation", "notes.txt")),
    _rm(_c("uncategorized", "file3.pdf")),
]

MIXED: list[Hostile] = [
    Hostile("mix-last-dotdot", [*GOOD_START, _w(f"{CASE}/../{SIBLING}/loot.txt")], "path_invalid"),
    Hostile(
        "mix-last-absolute",
        [*GOOD_START, _mv(_c("Investigation"), f"{OUTSIDE}/inv")],
        "path_invalid",
    ),
    Hostile("mix-last-sibling", [*GOOD_START, _rm(f"{SIBLING}/loot.txt")], "path_outside_case"),
    Hostile("mix-last-reserved", [*GOOD_START, _rm(CASE)], "path_reserved"),
    Hostile(
        "mix-last-symlink", [*GOOD_START, _w(_c("lnk", "x"))], "symlink_refused", "link_outside"
    ),
    Hostile(
        "mix-last-symlink-deep",
        [*GOOD_START, _mv(_c("Investigation"), _c("inv"))],
        "symlink_refused",
        "link_deep",
    ),
    Hostile("mix-last-ambiguous", [*GOOD_START, _rm(_c(CAFE_NFD))], "path_ambiguous", "cafe_pair"),
    Hostile(
        "mix-last-into-itself",
        [*GOOD_START, _mv(_c("Medical Records"), _c("Medical Records", "m"))],
        "move_into_itself",
    ),
    Hostile(
        "mix-last-workdir",
        [*GOOD_START, _mv(_c("Investigation"), _c(WORK_DIR_NAME, "inv"))],
        "path_reserved",
    ),
    Hostile("mix-last-control", [*GOOD_START, _md(_c("a\x00b"))], "path_invalid"),
    Hostile("mix-first-hostile", [_w(_c("lnk", "x")), *GOOD_START], "symlink_refused", "link_etc"),
    Hostile(
        "mix-earlier-mkdir-then-link-below",
        [_md(_c("a")), _w(_c("a", "x")), _mv(_c("a"), _c("lnk", "a"))],
        "symlink_refused",
        "link_outside",
    ),
    Hostile("mix-empty-path-last", [*GOOD_START, _rm("")], "schema_violation"),
]


def _by_position(table: list[tuple[str, str, str]]) -> list[Hostile]:
    return [
        Hostile(f"{name}-{position}", [build(path)], code)
        for name, path, code in table
        for position, build in POSITIONS.items()
    ]


CORPUS: list[Hostile] = [
    *_by_position(TRAVERSAL),
    *_by_position([(name, path, "path_outside_case") for name, path in PREFIX]),
    *SYMLINKS,
    *RESERVED,
    *LOOKALIKES,
    *FORGED_UNDO,
    *INTO_ITSELF,
    *AMBIGUOUS,
    *CASES,
    *SPECIAL,
    *MIXED,
]
assert len({case.id for case in CORPUS}) == len(CORPUS), "duplicate corpus ids"


def _assert_rejected(result: dict[str, Any], code: str) -> None:
    assert result["status"] == "rejected", result
    codes = error_codes(result)
    assert codes == [code], result["errors"]
    assert result["changes"] == []


def test_corpus_is_large_and_covers_every_position() -> None:
    assert len(CORPUS) >= 150
    seen = {
        (op["type"], key)
        for case in CORPUS
        for op in case.ops
        for key in op
        if key in ("path", "from", "to")
    }
    for wanted in [
        ("mkdir", "path"),
        ("move", "from"),
        ("move", "to"),
        ("copy", "from"),
        ("copy", "to"),
        ("delete", "path"),
        ("write", "path"),
    ]:
        assert wanted in seen


@pytest.mark.parametrize("hostile", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_plan_is_rejected_and_nothing_changes(world: World, hostile: Hostile) -> None:
    if hostile.setup is not None:
        SETUPS[hostile.setup](world)
    before = world_snapshot(world)
    document = plan_doc(
        _resolve(hostile.ops, world), case=hostile.case, dry_run=False, **hostile.extra
    )
    result = run_plan(document, world, trusted_undo=hostile.trusted_undo)
    after = world_snapshot(world)
    changed = sorted(
        rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)
    )
    outcome = (result["status"], error_codes(result), changed)
    assert outcome == ("rejected", [hostile.code], []), result["errors"]
    assert result["changes"] == []


MOUNT_PLANS: list[tuple[str, list[Op]]] = [
    ("mkdir-below", [_md(_c("mnt", "x"))]),
    ("write-below", [_w(_c("mnt", "x"))]),
    ("write-over", [_w(_c("mnt", "inside.txt"), overwrite=True)]),
    ("copy-from-below", [_cp(_c("mnt", "inside.txt"), _c("x"))]),
    ("copy-to-below", [_cp(FILE1, _c("mnt", "f.pdf"))]),
    ("move-from-below", [_mv(_c("mnt", "inside.txt"), _c("x"))]),
    ("move-to-below", [_mv(FILE1, _c("mnt", "f.pdf"))]),
    ("move-mount", [_mv(_c("mnt"), _c("Investigation", "mnt"))]),
    ("delete-mount", [_rm(_c("mnt"))]),
    ("delete-below", [_rm(_c("mnt", "inside.txt"))]),
]


@pytest.mark.parametrize(
    "ops", [ops for _, ops in MOUNT_PLANS], ids=[name for name, _ in MOUNT_PLANS]
)
def test_mount_inside_the_case_is_not_crossed(world: World, mounted: Path, ops: list[Op]) -> None:
    before = world_snapshot(world)
    result = run_plan(plan_doc(ops), world)
    _assert_rejected(result, "mount_crossing")
    assert world_snapshot(world) == before


# -- legal odd names are not traversal ----------------------------------------------------------

ODD_NAMES = [
    "..test",
    "...",
    "%2e%2e",
    "\uff0e\uff0e",
    "\u2024\u2024",
    ". .",
    "..\u200b",
    "-rf",
    "~",
    "n" * 255,
]


@pytest.mark.parametrize(
    "name", ODD_NAMES, ids=[ascii(n) if len(n) < 20 else f"{len(n)}-bytes" for n in ODD_NAMES]
)
def test_legal_odd_names_are_accepted_inside_the_case(world: World, name: str) -> None:
    outside = _outside_case(world)
    ops = [
        _w(_c(name), **{"content": "odd file"}),
        _md(_c("Investigation", name, "sub")),
        _w(_c("Investigation", name, "sub", "x.txt")),
        _cp(FILE1, _c("Investigation", name, "f.pdf")),
        _mv(FILE2, _c("Medical Records", name)),
    ]
    result = run_plan(plan_doc(ops), world)
    assert result["status"] == "applied", result["errors"]
    assert (world.case / name).read_text() == "odd file"
    assert (world.case / "Investigation" / name / "sub" / "x.txt").is_file()
    assert (world.case / "Investigation" / name / "f.pdf").read_bytes() == b"file 1\n"
    assert (world.case / "Medical Records" / name).read_bytes() == b"file 2\n" * 2
    assert _outside_case(world) == outside


def test_percent_encoded_dotdot_is_a_folder_inside_the_case(world: World) -> None:
    ops = [_md(_c("%2e%2e")), _w(_c("%2e%2e", "x"))]
    assert run_plan(plan_doc(ops), world)["status"] == "applied"
    assert (world.case / "%2e%2e" / "x").is_file()
    assert not (world.root / "x").exists()


def test_nfd_spelling_on_disk_is_the_same_name(world: World) -> None:
    """One NFD name on disk is what an NFC plan spelling means (no new look-alike folder)."""
    (world.case / CAFE_NFD).mkdir()
    result = run_plan(plan_doc([_w(_c(CAFE_NFC, "x.txt"))]), world)
    assert result["status"] == "applied", result["errors"]
    assert os.listdir(world.case / CAFE_NFD) == ["x.txt"]
    assert sorted(os.listdir(world.case)).count(CAFE_NFC) == 0


# -- a link swapped in between the check and the use --------------------------------------------


def _swap_for_link(world: World, real: Path, target: Path) -> Path:
    """Move ``real`` away (inside the base folder, outside the root); a link takes its name."""
    parked = world.base / f"parked-{real.name}"
    os.rename(real, parked)
    os.symlink(target, real)
    return parked


def _undo_swap(real: Path, parked: Path) -> None:
    os.unlink(real)
    os.rename(parked, real)


RACE_PLAN: list[Op] = [
    _md(_c("Medical Records", "new")),
    _mv(FILE1, _c("Medical Records", "file1.pdf")),
    _w(_c("Investigation", "notes.txt")),
]


def _assert_race_refused(result: dict[str, Any]) -> None:
    assert result["status"] == "failed", result
    # fsops' contract: a symbolic link met on the way is refused as a link, never followed.
    assert error_codes(result) == ["symlink_refused"], result["errors"]
    assert "remaining" not in result, result["remaining"]
    assert {op["outcome"] for op in result["operations"]} <= {"rolled_back", "not_applied"}


def test_folder_swapped_for_link_mid_apply_is_refused_and_rolled_back(world: World) -> None:
    before_root = snapshot(world.root)
    before_outside = snapshot(world.outside)
    real = world.case / "Investigation"
    parked: list[Path] = []

    def swap(done: int, total: int) -> None:
        if done == 1:
            parked.append(_swap_for_link(world, real, world.outside))

    result = run_plan(plan_doc(RACE_PLAN), world, on_step=swap)
    assert parked, "the callback never ran"
    assert snapshot(world.outside) == before_outside
    assert not (world.outside / "notes.txt").exists()
    _undo_swap(real, parked[0])
    assert snapshot(world.root) == before_root  # steps before the failure were rolled back
    _assert_race_refused(result)


def test_source_file_swapped_for_link_mid_apply_is_refused(world: World) -> None:
    """A copy whose source became a link to a secret outside copies nothing."""
    before_root = snapshot(world.root)
    before_outside = snapshot(world.outside)
    source = world.case / "uncategorized" / "file2.pdf"
    ops = [
        _md(_c("Medical Records", "new")),
        _cp(FILE2, _c("Medical Records", "new", "copy.pdf")),
    ]
    parked: list[Path] = []

    def swap(done: int, total: int) -> None:
        if done == 1:
            parked.append(_swap_for_link(world, source, world.outside / "secret.txt"))

    result = run_plan(plan_doc(ops), world, on_step=swap)
    assert parked
    assert snapshot(world.outside) == before_outside
    assert not (world.case / "Medical Records" / "new" / "copy.pdf").exists()
    _undo_swap(source, parked[0])
    assert snapshot(world.root) == before_root
    _assert_race_refused(result)


def test_source_folder_swapped_for_link_mid_apply_is_refused(world: World) -> None:
    """A later move's source folder becomes a link to the sibling case: no loot leaves it."""
    (world.case / "uncategorized" / "loot.txt").write_text("ours\n")
    before_root = snapshot(world.root)
    ops = [
        _md(_c("Medical Records", "new")),
        _mv(_c("uncategorized", "loot.txt"), _c("Medical Records", "new", "loot.txt")),
    ]
    real = world.case / "uncategorized"
    parked: list[Path] = []

    def swap(done: int, total: int) -> None:
        if done == 1:
            parked.append(_swap_for_link(world, real, world.root / SIBLING))

    result = run_plan(plan_doc(ops), world, on_step=swap)
    assert parked
    assert (world.root / SIBLING / "loot.txt").read_text() == "sibling case\n"
    assert not (world.case / "Medical Records" / "new" / "loot.txt").exists()
    _undo_swap(real, parked[0])
    assert snapshot(world.root) == before_root
    _assert_race_refused(result)


def test_case_folder_that_is_a_link_to_outside_is_refused(world: World) -> None:
    _case_is_link(world)
    before = world_snapshot(world)
    ops = [_w(_c("pwned.txt")), _rm(_c("secret.txt"))]
    result = run_plan(plan_doc(ops), world)
    _assert_rejected(result, "symlink_refused")
    assert world_snapshot(world) == before
    assert sorted(os.listdir(world.outside)) == ["secret.txt"]
