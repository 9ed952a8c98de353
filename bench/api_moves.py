"""The GCS-API executor against bare JSON API requests, at a real GCS's latency.

Each run gets a fresh fake-gcs-server with N files in ``inbox/`` of one case and the latency
proxy in front of it (``tests/emulators/latency_proxy.py``, answering ``objects.move`` as GCS
does, which fake-gcs-server cannot). Then one of these moves the N files to ``sorted/``:

- ``fileops_mv_p16``: ``fileops apply --gcs-bucket --parallel 16`` (the whole command: start-up,
  the simulation's listings, the journal, the moves), one ``objects.move`` a file
- ``fileops_cd_p16``: the same with ``FILEOPS_GCS_OBJECTS_MOVE=off``: copy + delete a file
- ``bare_mv_p16``: a minimal script sending the same ``objects.move`` requests (with
  ``ifGenerationMatch=0`` and ``ifSourceGenerationMatch``), 16 at a time, one keep-alive
  connection per thread; the generations come from a listing made before the clock starts
- ``bare_cd_p16``: the same with a rewrite and a delete a file

Requests are counted at the proxy while each runs. ``python -m bench.api_moves --files 300``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.common import FILEOPS, BenchError, log, median, timed
from bench.fixtures import CASE, file_name, move_plan
from tests.emulators import harness
from tests.emulators.latency_proxy import latency_proxy

BUCKET = "projects"
METHODS = ("fileops_mv_p16", "fileops_cd_p16", "bare_mv_p16", "bare_cd_p16")
#: The requests that move a file (from the first one's arrival to the last one's answer:
#: the time spent moving, without the command's start-up, listings and journal).
_MOVING = frozenset({"move", "rewrite", "object"})
_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False
        _local.session = session
    return session


def _object(endpoint: str, name: str) -> str:
    return f"{endpoint}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"


def bare_move(endpoint: str, source: str, generation: int, target: str, *, move: bool) -> None:
    """One file moved with the fewest requests a safe move takes: ``objects.move``, or a
    rewrite and a delete, each naming the generation."""
    target_path = urllib.parse.quote(target, safe="")
    query = f"ifGenerationMatch=0&ifSourceGenerationMatch={generation}"
    if move:
        url = f"{_object(endpoint, source)}/moveTo/o/{target_path}?{query}"
        _session().post(url, timeout=60).raise_for_status()
        return
    url = f"{_object(endpoint, source)}/rewriteTo/b/{BUCKET}/o/{target_path}?{query}"
    _session().post(url, timeout=60).raise_for_status()
    delete = f"{_object(endpoint, source)}?ifGenerationMatch={generation}"
    _session().delete(delete, timeout=60).raise_for_status()


def _generations(endpoint: str) -> dict[str, int]:
    url = f"{endpoint}/storage/v1/b/{BUCKET}/o"
    found: dict[str, int] = {}
    token = ""
    while True:
        params = {"prefix": f"{CASE}/inbox/", "pageToken": token} if token else {}
        params.setdefault("prefix", f"{CASE}/inbox/")
        answer = _session().get(url, params=params, timeout=60).json()
        for item in answer.get("items", []):
            found[item["name"]] = int(item["generation"])
        token = answer.get("nextPageToken", "")
        if not token:
            return found


def one_run(method: str, count: int, delay_ms: float, work: Path, tag: str) -> dict[str, Any]:
    names = [file_name(i) for i in range(count)]
    work.mkdir(parents=True, exist_ok=True)
    plan = work / f"api-{tag}.json"
    plan.write_text(json.dumps(move_plan(f"bench-api-{tag}", CASE, names, "inbox", "sorted")))
    state = work / f"api-state-{tag}"
    shutil.rmtree(state, ignore_errors=True)  # a stored result would answer without a move
    payload = b"%PDF-1.4 benchmark file\n" + b"x" * 200
    with harness.gcs_emulator(log_path=work / "logs" / f"fake-gcs-api-{tag}.log") as endpoint:
        harness.create_bucket(endpoint, BUCKET)
        with ThreadPoolExecutor(8) as pool:
            inbox = [f"{CASE}/inbox/{n}" for n in names]
            list(pool.map(lambda name: harness_upload(endpoint, name, payload), inbox))
        harness_upload(endpoint, f"{CASE}/sorted/", b"")
        with latency_proxy(endpoint, delay_ms) as proxy:
            proxy.serve_move = True
            move = "_mv_" in method
            if method.startswith("fileops"):
                proxy.reset()
                env = {
                    **os.environ,
                    "STORAGE_EMULATOR_HOST": proxy.endpoint,
                    "FILEOPS_GCS_OBJECTS_MOVE": "auto" if move else "off",
                }
                command = [
                    FILEOPS,
                    *("apply", str(plan), "--gcs-bucket", BUCKET, "--state-dir", str(state)),
                    *("--parallel", "16", "--json"),
                ]
                seconds = timed(command, timeout=900, env=env).seconds
            else:
                generations = _generations(endpoint)
                proxy.reset()
                started = time.perf_counter()
                with ThreadPoolExecutor(16) as pool:
                    done = pool.map(
                        lambda n: bare_move(
                            proxy.endpoint,
                            f"{CASE}/inbox/{n}",
                            generations[f"{CASE}/inbox/{n}"],
                            f"{CASE}/sorted/{n}",
                            move=move,
                        ),
                        names,
                    )
                    list(done)
                seconds = time.perf_counter() - started
            counts = proxy.snapshot()
            changes = [r for r in proxy.requests() if r.is_write and r.kind.split()[-1] in _MOVING]
            moving_s = max(r.ended for r in changes) - min(r.started for r in changes)
        moved = harness.list_objects(endpoint, BUCKET, f"{CASE}/sorted/")
        if len([n for n in moved if not n.endswith("/")]) != count:
            raise BenchError(f"api: {method} moved {len(moved) - 1} of {count} files")
    total = sum(counts.values())
    return {
        "seconds": seconds,
        "moving_s": moving_s,
        "requests_per_move": total / count,
        "requests_by_kind": counts,
    }


def harness_upload(endpoint: str, name: str, data: bytes) -> None:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    url = f"{endpoint}/upload/storage/v1/b/{BUCKET}/o?{query}"
    _session().post(url, data=data, timeout=60).raise_for_status()


def bench_api_moves(count: int, delays_ms: list[float], work: Path, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"files": count, "runs": runs, "by_delay": {}}
    for delay in delays_ms:
        detail: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        for round_no in range(runs):
            shift = round_no % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:
                result = one_run(method, count, delay, work, f"{method}-{delay:g}-{round_no}")
                detail[method].append(result)
                log(
                    f"  api {delay:g} ms, {method} run {round_no + 1}/{runs}: "
                    f"{result['seconds']:.2f} s, {result['requests_per_move']:.2f} requests/move"
                )
        seconds = {m: median([r["seconds"] for r in v]) for m, v in detail.items()}
        moving = {m: median([r["moving_s"] for r in v]) for m, v in detail.items()}
        out["by_delay"][f"{delay:g}"] = {
            "median_s": seconds,
            "requests_per_move": {
                m: median([r["requests_per_move"] for r in v]) for m, v in detail.items()
            },
            "moving_s": moving,
            "ratio_mv": seconds["fileops_mv_p16"] / seconds["bare_mv_p16"],
            "ratio_cd": seconds["fileops_cd_p16"] / seconds["bare_cd_p16"],
            "moving_ratio_mv": moving["fileops_mv_p16"] / moving["bare_mv_p16"],
            "moving_ratio_cd": moving["fileops_cd_p16"] / moving["bare_cd_p16"],
            "runs_detail": detail,
        }
    return out


def api_rows(res: dict[str, Any], rows: list[Any], notes: list[str], row: Any) -> None:
    """The section's rows of ``make bench``'s table (``row``: bench/run.py's ``_row``)."""
    n = res["files"]
    for delay, figures in res["by_delay"].items():
        med, moving, per_move = (
            figures["median_s"],
            figures["moving_s"],
            figures["requests_per_move"],
        )
        at_20 = float(delay) == 20
        for kind, what, most in (("mv", "objects.move", 1.2), ("cd", "copy + delete", 2.2)):
            fileops, bare = f"fileops_{kind}_p16", f"bare_{kind}_p16"
            rows.append(
                row(
                    f"api: {n} moves at {delay} ms/request, 16 workers, {what}: whole command",
                    f"{med[fileops]:.2f} s, {per_move[fileops]:.2f} req/move",
                    f"bare requests {med[bare]:.2f} s",
                    med[fileops] / med[bare],
                    "time",
                    "≤ 1.15x time" if at_20 else "—",
                    med[fileops] / med[bare] <= 1.15 if at_20 else None,
                )
            )
            rows.append(
                row(
                    "api: the same, first move request to last answer",
                    f"{moving[fileops]:.2f} s",
                    f"bare {moving[bare]:.2f} s",
                    moving[fileops] / moving[bare],
                    "time",
                )
            )
            rows.append(
                row(
                    f"api: GCS requests per moved file, {what}",
                    f"{per_move[fileops]:.2f}",
                    f"bare {per_move[bare]:.2f}",
                    None,
                    "",
                    f"≤ {most}",
                    per_move[fileops] <= most,
                )
            )
    notes.append(
        "api: fake-gcs-server behind the latency proxy, which answers objects.move as GCS does; "
        "the bare rows are a minimal script's requests, 16 at a time, generations listed "
        "before the clock starts; 'first move request to last answer' leaves out the command's "
        "start-up, listings and journal."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--ms", type=float, nargs="+", default=[20.0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work", default="bench-results/work-api")
    parser.add_argument("--out", default="bench-results/api-moves.json")
    args = parser.parse_args()
    result = bench_api_moves(args.files, args.ms, Path(args.work).resolve(), args.runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    for delay, row in result["by_delay"].items():
        for method in METHODS:
            log(
                f"{delay} ms {method}: {row['median_s'][method]:.2f} s "
                f"(moving {row['moving_s'][method]:.2f} s), "
                f"{row['requests_per_move'][method]:.2f} requests/move"
            )
        log(
            f"{delay} ms ratio fileops/bare, whole command: move {row['ratio_mv']:.2f}, "
            f"copy+delete {row['ratio_cd']:.2f}; moving only: move {row['moving_ratio_mv']:.2f}, "
            f"copy+delete {row['moving_ratio_cd']:.2f}"
        )


if __name__ == "__main__":
    main()
