"""3. 1,000 moves on a real gcsfuse mount of a fake-gcs-server bucket.

Every run gets a fresh fake-gcs-server (in memory) and a fresh mount from the test harness
(flat bucket, ``--implicit-dirs``, ``--enable-atomic-rename-object=false``: a rename is copy +
delete, as in the tests), so no run pays for objects an earlier one left behind: fake-gcs's
memory backend gets slower with every object in the bucket. The files are uploaded through the
JSON API, the destination folder is made through the mount, then one of:

- ``fileops apply PLAN --root MNT --state-dir LOCAL --parallel 1`` (and ``--parallel 16``)
- ``xargs -d '\\n' -n1 -a LIST mv -t DST --`` in SRC: one ``mv`` after the other, one per file

The final listing is checked through the GCS API: every file under DST, none left in SRC.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    FILEOPS,
    BenchError,
    CpuMeter,
    children_by_name,
    children_cpu_seconds,
    log,
    median,
    process_cpu_seconds,
    timed,
)
from bench.fixtures import CASE, file_name, move_plan
from tests.emulators import harness

BUCKET = "projects"
METHODS = ("fileops_p1", "fileops_p16", "mv_loop")
TIMEOUT = 600.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _upload(endpoint: str, name: str, data: bytes) -> None:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    url = f"{endpoint}/upload/storage/v1/b/{BUCKET}/o?{query}"  # the emulator, over http
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310
    request.add_header("Content-Type", "application/pdf")
    with _OPENER.open(request, timeout=30) as response:
        response.read()


def _command(method: str, mnt: Path, plan_path: Path, names_path: Path, state: Path) -> list[str]:
    if method.startswith("fileops_p"):
        parallel = method.removeprefix("fileops_p")
        return [
            FILEOPS,
            "apply",
            str(plan_path),
            "--root",
            str(mnt),
            "--state-dir",
            str(state),
            "--parallel",
            parallel,
            "--json",
        ]
    src, dst = mnt / CASE / "inbox", mnt / CASE / "sorted"
    script = 'cd "$1" && exec xargs -d "\\n" -n1 -a "$2" mv -t "$3" --'
    return ["bash", "-c", script, "mv-loop", str(src), str(names_path), str(dst)]


def _verify(endpoint: str, names: list[str]) -> dict[str, int]:
    listed = harness.list_objects(endpoint, BUCKET, f"{CASE}/")
    moved = {n.removeprefix(f"{CASE}/sorted/") for n in listed if n.startswith(f"{CASE}/sorted/")}
    left = [n for n in listed if n.startswith(f"{CASE}/inbox/") and not n.endswith("/")]
    missing = [n for n in names if n not in moved]
    if left or missing:
        raise BenchError(
            f"gcsfuse: wrong work: {len(left)} objects left in inbox/, {len(missing)} missing "
            f"from sorted/ (e.g. {(left + missing)[:3]})"
        )
    return {"objects_listed": len(listed), "moved": len(names) - len(missing)}


def _one_run(method: str, count: int, work: Path, tag: str) -> dict[str, Any]:
    names = [file_name(i) for i in range(count)]
    work.mkdir(parents=True, exist_ok=True)
    plan_path = work / f"gcs-{tag}.json"
    plan_path.write_text(json.dumps(move_plan(f"bench-gcs-{tag}", CASE, names, "inbox", "sorted")))
    names_path = work / "gcs-names.txt"
    names_path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    state = work / f"gcs-state-{tag}"
    shutil.rmtree(state, ignore_errors=True)
    logs = work / "logs"
    with harness.gcs_emulator(log_path=logs / f"fake-gcs-{tag}.log") as endpoint:
        harness.create_bucket(endpoint, BUCKET)
        started = time.perf_counter()
        payload = b"%PDF-1.4 benchmark file\n" + b"x" * 200
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: _upload(endpoint, f"{CASE}/inbox/{n}", payload), names))
        upload_s = time.perf_counter() - started
        with harness.gcsfuse_mount(
            endpoint, BUCKET, work / f"mnt-{tag}", log_path=logs / f"gcsfuse-{tag}.log"
        ) as mnt:
            (mnt / CASE / "sorted").mkdir()
            kids = children_by_name()
            watched = {k: kids.get(k, []) for k in ("fake-gcs-server", "gcsfuse")}
            before = {k: sum(process_cpu_seconds(p) for p in v) for k, v in watched.items()}
            before["command"] = children_cpu_seconds()
            with CpuMeter() as cpu:
                run = timed(_command(method, mnt, plan_path, names_path, state), timeout=TIMEOUT)
            after = {k: sum(process_cpu_seconds(p) for p in v) for k, v in watched.items()}
            after["command"] = children_cpu_seconds()
        checked = _verify(endpoint, names)
    shutil.rmtree(state, ignore_errors=True)
    return {
        "seconds": run.seconds,
        "upload_s": upload_s,
        "machine_cpu_busy": cpu.busy,
        "cpu_s": {k: after[k] - before[k] for k in before},
        "workload_cores": sum(after[k] - before[k] for k in before) / run.seconds,
        **checked,
    }


def bench_gcsfuse(count: int, work: Path, runs: int) -> dict[str, Any]:
    reason = harness.fuse_unavailable_reason()
    if reason is not None:
        raise BenchError(f"gcsfuse cannot run here: {reason}")
    detail: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for round_no in range(runs):
        order = METHODS[round_no % len(METHODS) :] + METHODS[: round_no % len(METHODS)]
        for method in order:
            out = _one_run(method, count, work, f"{method}-{round_no}")
            detail[method].append(out)
            log(
                f"  gcsfuse {method} run {round_no + 1}/{runs}: {out['seconds']:.1f} s "
                f"(fake-gcs {out['cpu_s']['fake-gcs-server']:.1f} CPU s, "
                f"gcsfuse {out['cpu_s']['gcsfuse']:.1f} CPU s, "
                f"machine {out['machine_cpu_busy']:.0%} busy)"
            )
    med = {m: median([r["seconds"] for r in v]) for m, v in detail.items()}
    return {
        "files": count,
        "runs": runs,
        "runs_detail": detail,
        "median_s": med,
        "mv_vs_parallel": med["mv_loop"] / med["fileops_p16"],
        "sequential_fileops_vs_mv": med["fileops_p1"] / med["mv_loop"],
        "p1_vs_p16": med["fileops_p1"] / med["fileops_p16"],
        "fake_gcs_cpu_share": {
            m: median([r["cpu_s"]["fake-gcs-server"] / r["seconds"] for r in v])
            for m, v in detail.items()
        },
        "machine_cpu_busy": {
            m: median([r["machine_cpu_busy"] for r in v]) for m, v in detail.items()
        },
        "workload_cores": {m: median([r["workload_cores"] for r in v]) for m, v in detail.items()},
        "mount_flags": harness.gcsfuse_flags("http://HOST:PORT", log_file="LOG"),
    }
