"""4. Moves at a real GCS's latency: a counting proxy adds a fixed delay to every request.

fake-gcs-server on loopback answers in microseconds; real GCS takes tens of milliseconds a
request, and that is where users wait. Each run gets a fresh fake-gcs-server, the latency
proxy (``tests/emulators/latency_proxy.py``) in front of it, and a fresh gcsfuse mount through
the proxy; the files are uploaded straight to the emulator (not timed, not counted). Then one
of these moves N files from ``inbox/`` to ``sorted/`` of one case:

- ``fileops_p1`` / ``fileops_p16``: ``fileops apply --parallel 1|16`` through the mount
- ``mv_loop``: ``xargs -n1 mv`` through the mount, one file after the other
- ``mv_p16``: ``xargs -P16 -n1 mv`` through the mount
- ``fileops_api_p1`` / ``fileops_api_p16``: ``fileops apply --gcs-bucket --parallel 1|16``,
  the GCS-API executor (no mount; the whole command, simulation and journal included), one
  ``objects.move`` a file (the proxy answers it as GCS does); ``bench/api_moves.py`` compares
  it with bare requests and with copy + delete
- ``api_p1`` / ``api_p16``: the JSON API without a mount: get the object's generation, rewrite
  it with ``ifGenerationMatch=0`` and ``ifSourceGenerationMatch``, delete the source with
  ``ifGenerationMatch`` (the check-and-act a safe move needs), 1 or 16 at a time

Requests are counted at the proxy while the command runs, and reported per moved file. The
mount's ``metadata_cache_ttl_secs`` is production's (1) unless ``--latency-ttl`` lists others
(``--latency-ttl 0 1`` compares the cache off and on; missing names are never cached).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import FILEOPS, BenchError, log, median, timed
from bench.fixtures import CASE, file_name, move_plan
from tests.emulators import harness
from tests.emulators.latency_proxy import latency_proxy

BUCKET = "projects"
MOUNT_METHODS = ("fileops_p1", "fileops_p16", "mv_loop", "mv_p16")
API_METHODS = ("api_p1", "api_p16")
EXECUTOR_METHODS = ("fileops_api_p1", "fileops_api_p16")
METHODS = MOUNT_METHODS + EXECUTOR_METHODS + API_METHODS
TIMEOUT = 900.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(method: str, url: str, data: bytes | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/octet-stream")
    with _OPENER.open(request, timeout=60) as response:
        raw = response.read()
    parsed: dict[str, Any] = json.loads(raw) if raw.strip() else {}
    return parsed


def _object_url(endpoint: str, name: str) -> str:
    return f"{endpoint}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"


def _upload(endpoint: str, name: str, data: bytes) -> None:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    _call("POST", f"{endpoint}/upload/storage/v1/b/{BUCKET}/o?{query}", data)


def api_move(endpoint: str, source: str, target: str) -> None:
    """Move one object safely through the JSON API: 3 requests (a rewrite of a small object
    completes in one call)."""
    generation = _call("GET", _object_url(endpoint, source))["generation"]
    query = urllib.parse.urlencode({"ifGenerationMatch": 0, "ifSourceGenerationMatch": generation})
    target_path = urllib.parse.quote(target, safe="")
    rewrite = f"{_object_url(endpoint, source)}/rewriteTo/b/{BUCKET}/o/{target_path}?{query}"
    done = _call("POST", rewrite, b"")
    while not done.get("done", True):  # large objects take several calls
        token = urllib.parse.urlencode({"rewriteToken": done["rewriteToken"]})
        done = _call("POST", f"{rewrite}&{token}", b"")
    delete = urllib.parse.urlencode({"ifGenerationMatch": generation})
    _call("DELETE", f"{_object_url(endpoint, source)}?{delete}")


def _mount_command(method: str, mnt: Path, plan: Path, names: Path, state: Path) -> list[str]:
    if method.startswith("fileops_p"):
        parallel = method.removeprefix("fileops_p")
        return [
            FILEOPS,
            *("apply", str(plan), "--root", str(mnt), "--state-dir", str(state)),
            *("--parallel", parallel, "--json"),
        ]
    jobs = "16" if method == "mv_p16" else "1"
    script = f'cd "$1" && exec xargs -d "\\n" -P{jobs} -n1 -a "$2" mv -t "$3" --'
    src, dst = mnt / CASE / "inbox", mnt / CASE / "sorted"
    return ["bash", "-c", script, "mv", str(src), str(names), str(dst)]


def _verify(endpoint: str, names: list[str]) -> None:
    listed = harness.list_objects(endpoint, BUCKET, f"{CASE}/")
    moved = {n.removeprefix(f"{CASE}/sorted/") for n in listed if n.startswith(f"{CASE}/sorted/")}
    left = [n for n in listed if n.startswith(f"{CASE}/inbox/") and not n.endswith("/")]
    missing = [n for n in names if n not in moved]
    if left or missing:
        raise BenchError(
            f"latency: wrong work: {len(left)} objects left in inbox/, {len(missing)} missing "
            f"from sorted/ (e.g. {(left + missing)[:3]})"
        )


def _one_run(
    method: str, count: int, delay_ms: float, ttl: int, work: Path, tag: str
) -> dict[str, Any]:
    names = [file_name(i) for i in range(count)]
    work.mkdir(parents=True, exist_ok=True)
    plan = work / f"lat-{tag}.json"
    plan.write_text(json.dumps(move_plan(f"bench-lat-{tag}", CASE, names, "inbox", "sorted")))
    names_path = work / "lat-names.txt"
    names_path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    state = work / f"lat-state-{tag}"
    shutil.rmtree(state, ignore_errors=True)
    logs = work / "logs"
    payload = b"%PDF-1.4 benchmark file\n" + b"x" * 200
    with harness.gcs_emulator(log_path=logs / f"fake-gcs-lat-{tag}.log") as endpoint:
        harness.create_bucket(endpoint, BUCKET)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: _upload(endpoint, f"{CASE}/inbox/{n}", payload), names))
        with latency_proxy(endpoint, delay_ms) as proxy:
            proxy.serve_move = True  # objects.move as GCS answers it (the executor uses it)
            if method in EXECUTOR_METHODS:
                _upload(endpoint, f"{CASE}/sorted/", b"")
                proxy.reset()
                command = [
                    FILEOPS,
                    *("apply", str(plan), "--gcs-bucket", BUCKET, "--state-dir", str(state)),
                    *("--parallel", method.removeprefix("fileops_api_p"), "--json"),
                ]
                env = {**os.environ, "STORAGE_EMULATOR_HOST": proxy.endpoint}
                seconds = timed(command, timeout=TIMEOUT, env=env).seconds
                requests = proxy.snapshot()
            elif method in API_METHODS:
                jobs = 16 if method == "api_p16" else 1
                started = time.perf_counter()
                with ThreadPoolExecutor(jobs) as pool:
                    moves = pool.map(
                        lambda n: api_move(
                            proxy.endpoint, f"{CASE}/inbox/{n}", f"{CASE}/sorted/{n}"
                        ),
                        names,
                    )
                    list(moves)
                seconds = time.perf_counter() - started
            else:
                mnt_log = logs / f"gcsfuse-lat-{tag}.log"
                with harness.gcsfuse_mount(
                    proxy.endpoint,
                    BUCKET,
                    work / f"mnt-lat-{tag}",
                    metadata_cache_ttl_secs=ttl,
                    log_path=mnt_log,
                ) as mnt:
                    (mnt / CASE / "sorted").mkdir()
                    proxy.reset()
                    command = _mount_command(method, mnt, plan, names_path, state)
                    seconds = timed(command, timeout=TIMEOUT).seconds
                    requests = proxy.snapshot()
            if method in API_METHODS:
                requests = proxy.snapshot()
        _verify(endpoint, names)
    shutil.rmtree(state, ignore_errors=True)
    total = sum(requests.values())
    return {
        "seconds": seconds,
        "requests": total,
        "requests_per_move": total / count,
        "requests_by_kind": requests,
    }


def bench_latency(
    count: int, delays_ms: list[float], work: Path, runs: int, ttls: list[int] | None = None
) -> dict[str, Any]:
    """``ttls``: the mount's metadata_cache_ttl_secs to compare (default: production's, 1)."""
    reason = harness.fuse_unavailable_reason()
    if reason is not None:
        raise BenchError(f"gcsfuse cannot run here: {reason}")
    ttls = ttls or [1]
    out: dict[str, Any] = {
        "files": count,
        "runs": runs,
        "delays_ms": delays_ms,
        "metadata_cache_ttl_secs": ttls,
        "by_delay": {},
    }
    for ttl in ttls:
        for delay in delays_ms:
            key = f"{delay:g}" if len(ttls) == 1 else f"{delay:g} ms, cache ttl {ttl}"
            out["by_delay"][key] = _one_setting(count, delay, ttl, work, runs)
    return out


def _one_setting(count: int, delay: float, ttl: int, work: Path, runs: int) -> dict[str, Any]:
    detail: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for round_no in range(runs):
        shift = round_no % len(METHODS)
        for method in METHODS[shift:] + METHODS[:shift]:
            tag = f"{method}-{int(delay)}ms-ttl{ttl}-{round_no}"
            result = _one_run(method, count, delay, ttl, work, tag)
            detail[method].append(result)
            log(
                f"  latency {delay:g} ms, cache ttl {ttl} s, {method} run {round_no + 1}/{runs}: "
                f"{result['seconds']:.2f} s, {result['requests_per_move']:.1f} requests/move"
            )
    return {
        "delay_ms": delay,
        "metadata_cache_ttl_secs": ttl,
        "runs_detail": detail,
        "median_s": {m: median([r["seconds"] for r in v]) for m, v in detail.items()},
        "requests_per_move": {
            m: median([r["requests_per_move"] for r in v]) for m, v in detail.items()
        },
    }
