"""The local CLI run by an admin (often root): what it writes cannot be redirected.

Hostile: a setuid source, links planted in the state folder, a hard link or a FIFO planted at
a staging name inside the case. Each must neither change anything outside the plan nor hang.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import World
from tests.support import CASE, plan_doc, write_json

REPO = Path(__file__).resolve().parents[2]


def fileops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fileops_daemon.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,  # a FIFO that blocks the apply fails the test instead of hanging it
        check=False,
    )


def apply(
    world: World, ops: list[dict[str, object]], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = write_json(tmp_path / "plan.json", plan_doc(ops))
    return fileops(
        "apply", str(path), "--root", str(world.root), "--state-dir", str(world.state), "--json"
    )


WRITE = [{"type": "write", "path": f"{CASE}/new.txt", "content": "fresh"}]


class TestCopy:
    def test_a_copy_never_keeps_setuid_or_setgid_bits(self, world: World, tmp_path: Path) -> None:
        source = world.case / "uncategorized" / "file1.pdf"
        os.chmod(source, 0o6755)
        run = apply(
            world,
            [{"type": "copy", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/copy.pdf"}],
            tmp_path,
        )
        assert run.returncode == 0, run.stderr
        mode = (world.case / "copy.pdf").stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), oct(mode)
        assert stat.S_IMODE(mode) & 0o700 == 0o700


class TestStateFolder:
    @pytest.mark.parametrize("name", ["result.json.tmp", "journal.jsonl.tmp", "undo.json.tmp"])
    def test_a_planted_link_does_not_redirect_a_state_write(
        self, world: World, tmp_path: Path, name: str
    ) -> None:
        folder = world.state / "plans" / "p-1"
        folder.mkdir(parents=True)
        victim = world.outside / "secret.txt"
        (folder / name).symlink_to(victim)
        run = apply(world, WRITE, tmp_path)
        assert run.returncode == 0, run.stderr
        assert victim.read_text() == "not yours\n"
        assert (world.case / "new.txt").read_text() == "fresh"

    def test_a_planted_lock_link_is_refused(self, world: World, tmp_path: Path) -> None:
        folder = world.state / "plans" / "p-1"
        folder.mkdir(parents=True)
        (folder / "lock").symlink_to(world.outside / "created-by-us")
        run = apply(world, WRITE, tmp_path)
        assert run.returncode == 1, run.stdout
        assert not (world.outside / "created-by-us").exists()
        assert not (world.case / "new.txt").exists()

    def test_a_planted_plan_folder_link_is_refused(self, world: World, tmp_path: Path) -> None:
        (world.state / "plans").mkdir(parents=True)
        (world.state / "plans" / "p-1").symlink_to(world.outside)
        run = apply(world, WRITE, tmp_path)
        assert run.returncode == 1 and "refused" in run.stderr, run.stderr
        assert sorted(p.name for p in world.outside.iterdir()) == ["secret.txt"]
        assert not (world.case / "new.txt").exists()


class TestStaging:
    def _staging(self, world: World) -> Path:
        folder = world.case / ".fileops" / "p-1" / "staging"
        folder.mkdir(parents=True)
        return folder / "0.part"

    def test_a_planted_hard_link_is_not_written_into(self, world: World, tmp_path: Path) -> None:
        loot = world.root / f"{CASE}-evil" / "loot.txt"
        os.link(loot, self._staging(world))
        run = apply(world, WRITE, tmp_path)
        assert run.returncode == 0, run.stderr
        assert loot.read_text() == "sibling case\n"
        assert (world.case / "new.txt").read_text() == "fresh"

    def test_a_planted_fifo_does_not_hang_the_apply(self, world: World, tmp_path: Path) -> None:
        os.mkfifo(self._staging(world))
        run = apply(world, WRITE, tmp_path)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["status"] == "applied"
        assert (world.case / "new.txt").read_text() == "fresh"
