"""The local CLI: exit codes, one-line errors, JSON output, resume and undo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import World
from tests.hostile_messages import MESSAGES, Hostile
from tests.support import (
    CASE,
    SEED_OPS,
    assert_valid_result,
    plan_doc,
    snapshot,
    write_json,
)

REPO = Path(__file__).resolve().parents[2]
OPS = SEED_OPS


def fileops(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fileops_daemon.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default state folder lives under the user's state home: keep it in the test's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FILEOPS_STATE_DIR", raising=False)


class TestValidate:
    def test_a_good_plan_is_valid(self, tmp_path: Path) -> None:
        run = fileops("validate", str(write_json(tmp_path / "p.json", plan_doc(OPS))))
        assert run.returncode == 0
        assert "2 operation(s)" in run.stdout

    def test_a_traversal_is_invalid_without_any_tree(self, tmp_path: Path) -> None:
        bad = plan_doc([{"type": "delete", "path": f"{CASE}/../etc"}])
        run = fileops("validate", "--json", str(write_json(tmp_path / "p.json", bad)))
        assert run.returncode == 3
        assert json.loads(run.stdout)["errors"][0]["code"] == "path_invalid"
        assert run.stderr.count("\n") == 1 and "path_invalid" in run.stderr

    @pytest.mark.parametrize("hostile", MESSAGES, ids=lambda h: h.name)
    def test_hostile_files_exit_3_with_their_code_not_an_internal_error(
        self, tmp_path: Path, hostile: Hostile
    ) -> None:
        path = tmp_path / "p.json"
        path.write_bytes(hostile.data)
        run = fileops("validate", "--json", str(path))
        assert run.returncode == 3, run.stderr
        assert json.loads(run.stdout)["errors"][0]["code"] == hostile.code
        plan = fileops("plan", "--json", "--root", str(tmp_path), str(path))
        assert plan.returncode == 3, plan.stderr
        assert_valid_result(json.loads(plan.stdout))

    def test_plan_from_stdin(self) -> None:
        run = fileops("validate", "-", stdin=json.dumps(plan_doc(OPS)))
        assert run.returncode == 0


class TestPlan:
    def test_plan_is_always_a_dry_run_and_shows_a_tree(self, world: World, tmp_path: Path) -> None:
        before = snapshot(world.root)
        path = write_json(tmp_path / "p.json", plan_doc(OPS, dry_run=False))
        run = fileops("plan", str(path), "--root", str(world.root))
        assert run.returncode == 0, run.stderr
        assert "photos" in run.stdout and "moved from" in run.stdout
        assert snapshot(world.root) == before

    def test_json_output_is_a_valid_result(self, world: World, tmp_path: Path) -> None:
        path = write_json(tmp_path / "p.json", plan_doc(OPS))
        run = fileops("plan", str(path), "--root", str(world.root), "--json")
        result = json.loads(run.stdout)
        assert_valid_result(result)
        assert result["status"] == "planned"

    def test_a_conflict_exits_3_with_one_line(self, world: World, tmp_path: Path) -> None:
        bad = plan_doc([{"type": "delete", "path": f"{CASE}/missing.pdf"}])
        run = fileops("plan", str(write_json(tmp_path / "p.json", bad)), "--root", str(world.root))
        assert run.returncode == 3
        assert run.stderr.strip().splitlines() == [
            f"fileops: rejected: plan 'p-1' on case '{CASE}': source_missing: "
            f"{CASE}/missing.pdf does not exist"
        ]

    def test_a_rejection_on_one_terminal_is_printed_once(
        self, world: World, tmp_path: Path
    ) -> None:
        bad = plan_doc([{"type": "delete", "path": f"{CASE}/missing.pdf"}])
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "fileops_daemon.cli",
                "plan",
                str(write_json(tmp_path / "p.json", bad)),
                "--root",
                str(world.root),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # like a terminal: both streams in one place
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 3
        assert run.stdout.count("rejected: plan") == 1, run.stdout

    @pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
    def test_a_closed_pipe_ends_quietly_with_141(
        self, world: World, tmp_path: Path, as_json: bool
    ) -> None:
        ops = [{"type": "mkdir", "path": f"{CASE}/d{i}/{'x' * 200}"} for i in range(3000)]
        path = write_json(tmp_path / "p.json", plan_doc(ops))
        command = [sys.executable, "-m", "fileops_daemon.cli", "plan", str(path)]
        command += ["--root", str(world.root)] + (["--json"] if as_json else [])
        with subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            # The reader goes away before the first write, as in `| true` or a `| head` that
            # has read enough (a huge single write may land whole in a roomy pipe).
            process.stdout.close()
            stderr = process.stderr.read().decode()
            assert process.wait(timeout=60) == 141, stderr
        assert stderr == ""

    def test_broken_json_is_rejected_not_a_traceback(self, world: World, tmp_path: Path) -> None:
        path = tmp_path / "p.json"
        path.write_text("{oops")
        run = fileops("plan", str(path), "--root", str(world.root), "--json")
        assert run.returncode == 3
        assert json.loads(run.stdout)["errors"][0]["code"] == "invalid_json"
        assert "Traceback" not in run.stderr

    def test_missing_plan_file_is_a_usage_error(self, world: World) -> None:
        run = fileops("plan", "/nonexistent.json", "--root", str(world.root))
        assert run.returncode == 2
        assert "Traceback" not in run.stderr


class TestApplyAndUndo:
    def test_apply_then_undo(self, world: World, tmp_path: Path) -> None:
        before = snapshot(world.root, skip_work_dirs=True)
        path = write_json(tmp_path / "p.json", plan_doc(OPS))
        state = str(tmp_path / "state")
        run = fileops("apply", str(path), "--root", str(world.root), "--state-dir", state)
        assert run.returncode == 0, run.stderr
        assert (world.case / "Medical Records" / "file1.pdf").exists()
        applied = snapshot(world.root, skip_work_dirs=True)
        local = ("--root", str(world.root), "--state-dir", state)
        preview = fileops("undo", "p-1", *local, "--json")
        assert preview.returncode == 0, preview.stderr
        assert json.loads(preview.stdout)["status"] == "planned"
        assert snapshot(world.root, skip_work_dirs=True) == applied, "a preview changed the tree"
        undo = fileops("undo", "p-1", *local, "--apply", "--json")
        assert undo.returncode == 0, undo.stderr
        assert json.loads(undo.stdout)["plan_id"] == "p-1.undo"
        assert snapshot(world.root, skip_work_dirs=True) == before
        redo = fileops("undo", "p-1.undo", *local, "--apply")
        assert redo.returncode == 0, redo.stderr
        assert f"undo with: fileops undo p-1.undo.undo --root {world.root}" in redo.stdout
        assert snapshot(world.root, skip_work_dirs=True) == applied, "the undo was not undone"

    def test_undo_takes_apply_or_dry_run_not_both(self, world: World, tmp_path: Path) -> None:
        run = fileops("undo", "p-1", "--root", str(world.root), "--apply", "--dry-run")
        assert run.returncode == 2 and "not allowed with" in run.stderr

    def test_an_apply_ends_with_the_counts_and_how_to_undo_it(
        self, world: World, tmp_path: Path
    ) -> None:
        path = write_json(tmp_path / "p.json", plan_doc(OPS))
        state = str(tmp_path / "state")
        run = fileops("apply", str(path), "--root", str(world.root), "--state-dir", state)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.strip().splitlines()
        assert lines[-2:] == [
            "1 new folder, 1 move",
            f"undo with: fileops undo p-1 --root {world.root} --state-dir {state}",
        ]
        again = fileops(
            "apply", str(path), "--root", str(world.root), "--state-dir", state, "--json"
        )
        assert json.loads(again.stdout)["status"] == "applied"  # --json: the document alone

    def test_json_prints_the_stored_result_once_encoded(self, world: World, tmp_path: Path) -> None:
        """--json prints the bytes stored as the plan's result: one compact line, non-ASCII
        as it is; a rerun (which reads the stored result back and encodes it) prints the same."""
        ops = [
            {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/Über.pdf"}
        ]
        path = write_json(tmp_path / "p.json", plan_doc(ops))
        state = tmp_path / "state"
        local = ("--root", str(world.root), "--state-dir", str(state), "--json")
        first = fileops("apply", str(path), *local)
        assert first.returncode == 0, first.stderr
        stored = (state / "plans" / "p-1" / "result.json").read_text(encoding="utf-8")
        assert first.stdout == stored + "\n"
        assert "Über.pdf" in first.stdout and first.stdout.count("\n") == 1
        again = fileops("apply", str(path), *local)
        assert again.stdout == first.stdout

    def test_apply_honours_the_plans_dry_run(self, world: World, tmp_path: Path) -> None:
        before = snapshot(world.root)
        path = write_json(tmp_path / "p.json", plan_doc(OPS, dry_run=True))
        run = fileops("apply", str(path), "--root", str(world.root), "--json")
        assert json.loads(run.stdout)["status"] == "planned"
        assert snapshot(world.root) == before

    def test_default_state_dir_is_outside_the_projects_root(
        self, world: World, tmp_path: Path
    ) -> None:
        path = write_json(tmp_path / "p.json", plan_doc(OPS))
        env = {"XDG_STATE_HOME": str(tmp_path / "xdg"), "FILEOPS_STATE_DIR": ""}
        assert fileops("apply", str(path), "--root", str(world.root), env=env).returncode == 0
        assert not (world.root / ".fileops-state").exists()
        [result] = (tmp_path / "xdg" / "fileops").glob("*/plans/p-1/result.json")
        assert json.loads(result.read_text())["status"] == "applied"

    def test_a_state_dir_inside_the_projects_root_is_refused(
        self, world: World, tmp_path: Path
    ) -> None:
        path = write_json(tmp_path / "p.json", plan_doc(OPS))
        before = snapshot(world.root)
        inside = str(world.root / ".fileops-state")
        run = fileops("apply", str(path), "--root", str(world.root), "--state-dir", inside)
        assert run.returncode == 2 and "inside the projects root" in run.stderr
        assert snapshot(world.root) == before

    def test_undo_of_an_unknown_plan(self, world: World, tmp_path: Path) -> None:
        run = fileops("undo", "nope", "--root", str(world.root), "--state-dir", str(tmp_path))
        assert run.returncode == 3
        assert "undo_unavailable" in run.stderr

    def test_help_lists_exit_codes_and_error_codes(self) -> None:
        run = fileops("--help")
        assert "exit status" in run.stdout and "symlink_refused" in run.stdout

    def test_a_bad_steps_per_second_cap_is_a_usage_error_and_changes_nothing(
        self, world: World, tmp_path: Path
    ) -> None:
        before = snapshot(world.root)
        path = write_json(tmp_path / "p.json", plan_doc(OPS, dry_run=False))
        for bad in ("-1", "fast", "nan"):
            run = fileops(
                "apply", str(path), "--root", str(world.root), "--max-steps-per-second", bad
            )
            assert run.returncode == 2, (bad, run.stderr)
            assert "--max-steps-per-second" in run.stderr and "Traceback" not in run.stderr
        assert snapshot(world.root) == before

    def test_a_capped_apply_applies(self, world: World, tmp_path: Path) -> None:
        path = write_json(tmp_path / "p.json", plan_doc(OPS, dry_run=False))
        args = ("apply", str(path), "--root", str(world.root), "--json")
        run = fileops(*args, "--max-steps-per-second", "50")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["status"] == "applied"
        assert (world.case / "Medical Records" / "file1.pdf").exists()

    def test_a_bad_setting_in_the_environment_exits_78_naming_it(
        self, world: World, tmp_path: Path
    ) -> None:
        before = snapshot(world.root)
        path = write_json(tmp_path / "p.json", plan_doc(OPS, dry_run=False))
        for name, bad in (
            ("FILEOPS_APPLY_PARALLELISM", "many"),
            ("FILEOPS_APPLY_MAX_STEPS_PER_SECOND", "-3"),
            ("FILEOPS_MAX_DELETES", "0"),
        ):
            run = fileops("apply", str(path), "--root", str(world.root), env={name: bad})
            assert run.returncode == 78, (name, run.stderr)
            assert run.stderr.count("\n") == 1 and name in run.stderr, run.stderr
        assert snapshot(world.root) == before


def test_a_root_that_does_not_exist_is_named_not_a_missing_case(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    seed = str(REPO / "examples" / "seed-plan.json")
    for extra in ([], ["--state-dir", str(tmp_path / "s")]):
        command = "apply" if extra else "plan"
        done = fileops(command, seed, "--root", str(missing), *extra)
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            f"fileops: the root {missing} does not exist or is not a folder (--root)\n"
        )
        assert not missing.exists()
