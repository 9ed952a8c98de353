"""Guarantee 3 through the GCS JSON API: a plan killed with SIGKILL at any point ends, when run
again, exactly like an uninterrupted run on another bucket: same objects, same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.latency_proxy import LatencyProxy
from tests.gcs.support import Bucket, new_bucket
from tests.support import CASE, plan_doc

REPO = Path(__file__).resolve().parents[2]


def seed_files() -> dict[str, bytes]:
    files = {}
    for folder in range(4):
        for i in range(15):
            sub = "sub/" if i % 5 == 0 else ""
            files[f"{CASE}/inbox/f{folder}/{sub}doc{i:02}.txt"] = f"{folder}:{i}\n".encode() * i
    return files


def crash_plan() -> dict[str, Any]:
    ops: list[dict[str, Any]] = [{"type": "mkdir", "path": f"{CASE}/sorted"}]
    ops.append({"type": "move", "from": f"{CASE}/inbox/f0", "to": f"{CASE}/sorted/f0"})
    ops += [
        {"type": "copy", "from": f"{CASE}/inbox/f1/doc{i:02}.txt", "to": f"{CASE}/sorted/c{i}"}
        for i in range(1, 15)
        if i % 5
    ]
    ops.append({"type": "delete", "path": f"{CASE}/inbox/f2"})
    ops += [
        {"type": "write", "path": f"{CASE}/sorted/n{i}.txt", "content": f"note {i}"}
        for i in range(8)
    ]
    ops.append({"type": "move", "from": f"{CASE}/inbox/f3", "to": f"{CASE}/f3-renamed"})
    return plan_doc(ops, plan_id="gcs-crash")


def run_worker(
    bucket: Bucket, plan: Path, kill_at: int, parallelism: int
) -> subprocess.CompletedProcess[str]:
    args = [str(plan), f"gs://{bucket.name}", str(bucket.state), str(kill_at), str(parallelism)]
    return subprocess.run(
        [sys.executable, "-m", "tests.crash_apply", *args],
        cwd=REPO,
        env={**os.environ, "STORAGE_EMULATOR_HOST": bucket.proxy.endpoint},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("kill_at", "parallelism", "objects_move"),
    [(1, 1, True), (17, 1, True), (40, 8, True), (75, 8, True), (17, 1, False), (40, 8, False)],
)
def test_sigkill_mid_plan_then_rerun_gives_the_uninterrupted_objects(
    gcs_server: str,
    proxy: LatencyProxy,
    tmp_path: Path,
    kill_at: int,
    parallelism: int,
    objects_move: bool,
) -> None:
    proxy.serve_move = objects_move  # one atomic objects.move a file, or copy + delete
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(crash_plan()))
    reference = new_bucket(gcs_server, proxy, tmp_path / "reference-state")
    reference.seed(seed_files())
    whole = run_worker(reference, plan, -1, parallelism)
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["status"] == "applied"

    bucket = new_bucket(gcs_server, proxy, tmp_path / "state")
    bucket.seed(seed_files())
    before = {v for v in bucket.tree().values() if v[0] == "file"}
    killed = run_worker(bucket, plan, kill_at, parallelism)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert before <= {v for v in bucket.settled_tree().values() if v[0] == "file"}, "lost"

    finished = run_worker(bucket, plan, -1, parallelism)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert json.loads(finished.stdout)["status"] == "applied", finished.stdout

    assert bucket.tree() == reference.tree()
