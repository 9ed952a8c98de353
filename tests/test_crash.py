"""Guarantee 3: a plan killed with SIGKILL at any point ends, when run again, exactly like an
uninterrupted run: same tree, same bytes, nothing lost or duplicated."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.simulate import simulate
from tests.support import CASE, apply_doc, plan_doc, snapshot

REPO = Path(__file__).resolve().parent.parent
BATCHES, FILES = 18, 100


def build_tree(root: Path) -> None:
    inbox = root / CASE / "inbox"
    for b in range(BATCHES):
        batch = inbox / f"batch{b:02}"
        (batch / "sub").mkdir(parents=True)
        for f in range(FILES):
            where = batch / "sub" if f % 10 == 0 else batch
            (where / f"doc{f:03}.txt").write_bytes(f"batch {b} doc {f}\n".encode() * (f % 7 + 1))
    (root / CASE / "archive").mkdir()


def big_plan() -> dict[str, Any]:
    c = f"{CASE}/inbox"
    ops: list[dict[str, Any]] = [{"type": "mkdir", "path": f"{CASE}/sorted/{x}"} for x in "abc"]
    for b in range(12):  # folder moves, expanded into one step per file
        ops.append({"type": "move", "from": f"{c}/batch{b:02}", "to": f"{CASE}/sorted/a/b{b}"})
    for f in range(1, 100):
        if f % 10:
            ops.append(
                {
                    "type": "move",
                    "from": f"{c}/batch12/doc{f:03}.txt",
                    "to": f"{CASE}/sorted/b/doc{f:03}.txt",
                }
            )
    for f in range(1, 100):
        if f % 10:
            ops.append(
                {
                    "type": "copy",
                    "from": f"{c}/batch13/doc{f:03}.txt",
                    "to": f"{CASE}/archive/copy{f:03}.txt",
                }
            )
    ops.append({"type": "mkdir", "path": f"{CASE}/notes"})
    ops += [
        {"type": "write", "path": f"{CASE}/notes/n{i}.txt", "content": f"note {i}\n" * 50}
        for i in range(100)
    ]
    ops.append({"type": "delete", "path": f"{c}/batch14"})
    ops += [
        {"type": "delete", "path": f"{c}/batch15/doc{f:03}.txt"} for f in range(1, 60) if f % 10
    ]
    ops.append({"type": "move", "from": f"{c}/batch16", "to": f"{c}/batch16-renamed"})
    ops.append({"type": "move", "from": f"{c}/batch17", "to": f"{CASE}/sorted/b/batch17"})
    for f in range(1, 30):  # chains: a -> b -> c
        if f % 10:
            ops.append(
                {
                    "type": "move",
                    "from": f"{CASE}/sorted/b/doc{f:03}.txt",
                    "to": f"{CASE}/sorted/c/tmp{f:03}.txt",
                }
            )
            ops.append(
                {
                    "type": "move",
                    "from": f"{CASE}/sorted/c/tmp{f:03}.txt",
                    "to": f"{CASE}/sorted/c/doc{f:03}.txt",
                }
            )
    ops += [
        {
            "type": "write",
            "path": f"{CASE}/archive/copy{f:03}.txt",
            "content": "v2",
            "overwrite": True,
        }
        for f in range(1, 50)
        if f % 10
    ]
    return plan_doc(ops, plan_id="crash-plan")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "projects"
    build_tree(root)
    return root


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(json.dumps(big_plan()))
    return path


@pytest.fixture(scope="module")
def step_count(template: Path) -> int:
    sim = simulate(parse_plan(big_plan()), str(template))
    assert sim.ok, [e.message for e in sim.errors]
    return len(sim.steps)


@pytest.fixture(scope="module")
def expected(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("expected")
    root = base / "projects"
    shutil.copytree(template, root, symlinks=True)
    result = apply_doc(big_plan(), root, base / "state")
    assert result["status"] == "applied"
    return snapshot(root)


def run_worker(
    plan: Path, root: Path, state: Path, kill_at: int, parallelism: int
) -> subprocess.CompletedProcess[str]:
    args = [str(plan), str(root), str(state), str(kill_at), str(parallelism)]
    return subprocess.run(
        [sys.executable, "-m", "tests.crash_apply", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def file_hashes(tree: dict[str, Any]) -> Counter[str]:
    return Counter(entry[1] for entry in tree.values() if entry[0] == "file")


def test_the_plan_is_big_enough(step_count: int) -> None:
    assert step_count >= 2000


PARALLELISM = [1, 8]  # the sequential and the parallel executor


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", PARALLELISM)
@pytest.mark.parametrize("seed", range(8))
def test_sigkill_at_a_random_step_then_rerun_gives_the_uninterrupted_tree(
    seed: int,
    parallelism: int,
    template: Path,
    plan_file: Path,
    step_count: int,
    expected: dict[str, Any],
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    kill_at = {0: 1, 1: step_count - 1}.get(seed, rng.randrange(2, step_count - 1))
    root, state = tmp_path / "projects", tmp_path / "state"
    shutil.copytree(template, root, symlinks=True)
    before = file_hashes(snapshot(root))

    killed = run_worker(plan_file, root, state, kill_at, parallelism)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # The interrupted tree holds every file exactly as often as before (or one extra copy
    # that the plan itself makes): nothing is ever lost.
    assert not (before - file_hashes(snapshot(root))), "a file went missing mid-apply"

    finished = run_worker(plan_file, root, state, -1, parallelism)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["status"] == "applied", finished.stdout
    assert snapshot(root) == expected


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_killed_three_times_in_a_row_still_finishes_right(
    parallelism: int,
    template: Path,
    plan_file: Path,
    step_count: int,
    expected: dict[str, Any],
    tmp_path: Path,
) -> None:
    root, state = tmp_path / "projects", tmp_path / "state"
    shutil.copytree(template, root, symlinks=True)
    # Each run resumes and then dies again further on (kill_at counts this run's steps).
    for kill_at in (step_count // 5, step_count // 3, step_count // 2):
        assert (
            run_worker(plan_file, root, state, kill_at, parallelism).returncode == -signal.SIGKILL
        )
    assert run_worker(plan_file, root, state, -1, parallelism).returncode == 0
    assert snapshot(root) == expected


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_sigkill_at_random_moments_of_the_real_cli(
    parallelism: int, template: Path, plan_file: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    """Kills land wherever they land: inside a copy, between a write and its rename, ..."""
    fileops = [sys.executable, "-m", "fileops_daemon.cli"]
    probe_root = tmp_path / "probe"
    shutil.copytree(template, probe_root, symlinks=True)
    started = time.monotonic()
    subprocess.run(
        [
            *fileops,
            "apply",
            str(plan_file),
            "--root",
            str(probe_root),
            "--state-dir",
            str(tmp_path / "probe-state"),
            "--parallel",
            str(parallelism),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    full = time.monotonic() - started

    rng = random.Random(2024)
    for round_ in range(4):
        root, state = tmp_path / f"r{round_}", tmp_path / f"s{round_}"
        shutil.copytree(template, root, symlinks=True)
        command = [
            *fileops,
            "apply",
            str(plan_file),
            "--root",
            str(root),
            "--state-dir",
            str(state),
            "--parallel",
            str(parallelism),
        ]
        for _ in range(3):
            process = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.1, full))
            process.send_signal(signal.SIGKILL)
            process.wait()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert snapshot(root) == expected, f"round {round_} differs"
