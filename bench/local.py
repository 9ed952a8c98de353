"""2. Local apply of 10,000 file moves, whole process each time, on a fresh identical tree.

- fileops: ``fileops apply PLAN --root R --state-dir S --json > /dev/null`` (journal on, the
  CLI's default parallelism 1)
- raw: ``python -c`` reading the name list and calling ``os.rename`` for each file
- rclone: ``rclone move SRC DST --files-from-raw LIST --no-traverse --no-check-dest
  --ignore-checksum --no-update-modtime`` (local to local: each file becomes a server-side Move,
  i.e. one rename(2); no listing of the destination, no check of it, no hashing)
- mv: ``xargs -d '\\n' -a LIST mv -t DST --`` run in SRC: a few ``mv`` processes with thousands
  of names each (a ``for`` loop forks 10,000 times and measures fork+exec, not renaming)

With ``--before DIR`` (a checkout or ``git archive`` of an earlier commit), ``fileops_before``
runs that tree's CLI the same way in the same rounds: a before/after of a change on one machine
state. Its package is compiled first, as this checkout's is.

Rounds rotate the order of the methods so that none always runs on a colder or warmer machine.
"""

from __future__ import annotations

import compileall
import re
import shutil
from pathlib import Path
from typing import Any

from bench.common import (
    FILEOPS,
    PYTHON,
    BenchError,
    CpuMeter,
    children_cpu_seconds,
    log,
    median,
    timed,
)
from bench.fixtures import MoveFixture, check_moved

RAW_RENAME = """\
import os, sys
names, src, dst = sys.argv[1:4]
with open(names, encoding="utf-8") as fh:
    for name in fh.read().splitlines():
        os.rename(os.path.join(src, name), os.path.join(dst, name))
"""

RCLONE_FLAGS = [
    "--no-traverse",
    "--no-check-dest",
    "--ignore-checksum",
    "--no-update-modtime",
    "-q",
]

METHODS = ("fileops", "raw_rename", "rclone", "mv")
BEFORE = "fileops_before"
TIMEOUT = 300.0
# What the ``fileops`` console script runs, for a tree that is not installed.
CLI_ENTRY = "import sys; from fileops_daemon.cli import main; sys.exit(main())"


def _command(method: str, fixture: MoveFixture, root: Path, state: Path) -> list[str]:
    src = root / fixture.case / "inbox"
    dst = root / fixture.case / "sorted"
    if method in ("fileops", BEFORE):
        entry = [FILEOPS] if method == "fileops" else [PYTHON, "-c", CLI_ENTRY]
        return [
            *entry,
            "apply",
            str(fixture.plan_path),
            "--root",
            str(root),
            "--state-dir",
            str(state),
            "--json",
        ]
    if method == "raw_rename":
        return [PYTHON, "-c", RAW_RENAME, str(fixture.names_path), str(src), str(dst)]
    if method == "rclone":
        return [
            "rclone",
            "--config",
            "/dev/null",
            "move",
            str(src),
            str(dst),
            "--files-from-raw",
            str(fixture.names_path),
            *RCLONE_FLAGS,
        ]
    if method == "mv":
        script = 'cd "$1" && exec xargs -d "\\n" -a "$2" mv -t "$3" --'
        return ["bash", "-c", script, "mv-bench", str(src), str(fixture.names_path), str(dst)]
    raise ValueError(method)


def _shown(cmd: list[str], fixture: MoveFixture) -> str:
    """The command as a reader wants it: placeholders for the scratch paths."""
    swap = {
        RAW_RENAME: "<os.rename loop over LIST>",
        CLI_ENTRY: "<fileops' entry point>",
        str(fixture.names_path): "LIST",
        str(fixture.plan_path): "PLAN",
        FILEOPS: "fileops",
        PYTHON: "python",
    }
    return " ".join(swap.get(part, part) for part in cmd)


def _one_run(
    method: str, fixture: MoveFixture, work: Path, before: Path | None
) -> tuple[float, float]:
    """Wall-clock seconds of one run, and the CPU seconds (user + system) it used."""
    root = fixture.fresh_copy(work / "runs" / method)
    state = work / "runs" / f"{method}-state"
    shutil.rmtree(state, ignore_errors=True)
    # The earlier tree is imported from the working folder (first on sys.path for -c).
    cwd = before if method == BEFORE else None
    cpu = children_cpu_seconds()
    run = timed(_command(method, fixture, root, state), timeout=TIMEOUT, cwd=cwd)
    cpu = children_cpu_seconds() - cpu
    check_moved(root, fixture.case, fixture.names, "inbox", "sorted")
    shutil.rmtree(root)
    shutil.rmtree(state, ignore_errors=True)
    return run.seconds, cpu


def bench_local(
    fixture: MoveFixture, work: Path, runs: int, before: Path | None = None
) -> dict[str, Any]:
    if shutil.which("rclone") is None:
        raise BenchError("rclone is not installed (bash scripts/install-system-deps.sh)")
    methods = METHODS
    if before is not None:
        if not (before / "fileops_daemon" / "cli").is_dir():
            raise BenchError(f"--before {before}: no fileops_daemon package there")
        compileall.compile_dir(before / "fileops_daemon", quiet=1)
        methods = (*METHODS, BEFORE)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu_times: dict[str, list[float]] = {m: [] for m in methods}
    with CpuMeter() as cpu:
        for round_no in range(runs):
            order = methods[round_no % len(methods) :] + methods[: round_no % len(methods)]
            for method in order:
                seconds, cpu_seconds = _one_run(method, fixture, work, before)
                times[method].append(seconds)
                cpu_times[method].append(cpu_seconds)
            log(
                f"  local round {round_no + 1}/{runs}: "
                + ", ".join(f"{m} {times[m][-1]:.2f} s" for m in methods)
            )
    med = {m: median(v) for m, v in times.items()}
    # CPU time is what a busy shared machine distorts least (wall time includes waiting for
    # a core and for the disk).
    cpu_med = {m: median(v) for m, v in cpu_times.items()}
    extra: dict[str, Any] = {}
    if before is not None:
        extra = {
            "before_tree": str(before),
            "before_vs_raw": med[BEFORE] / med["raw_rename"],
            "fileops_vs_before": med["fileops"] / med[BEFORE],
            "before_vs_raw_cpu": cpu_med[BEFORE] / cpu_med["raw_rename"],
        }
    return {
        **extra,
        "files": len(fixture.names),
        "runs": runs,
        "seconds": times,
        "median_s": med,
        "cpu_s": cpu_times,
        "cpu_median_s": cpu_med,
        "fileops_vs_raw_cpu": cpu_med["fileops"] / cpu_med["raw_rename"],
        "fileops_vs_raw": med["fileops"] / med["raw_rename"],
        "fileops_vs_rclone": med["fileops"] / med["rclone"],
        "fileops_vs_mv": med["fileops"] / med["mv"],
        "machine_cpu_busy": cpu.busy,
        "commands": {
            m: _shown(_command(m, fixture, Path("ROOT"), Path("STATE")), fixture) for m in methods
        },
    }


_TIMING_LINE = re.compile(r"^\s*\d+\.\d+\s")


def profile_apply(fixture: MoveFixture, work: Path, out_dir: Path) -> dict[str, Any]:
    """The 10k-move apply under pyinstrument: a call tree and a flat self-time listing."""
    root = fixture.fresh_copy(work / "runs" / "profile")
    state = work / "runs" / "profile-state"
    shutil.rmtree(state, ignore_errors=True)
    session = work / "profile-apply.pyisession"
    cli = ["fileops_daemon.cli", *_command("fileops", fixture, root, state)[1:]]
    timed(
        [PYTHON, "-m", "pyinstrument", "-r", "pyisession", "-o", str(session), "-m", *cli],
        timeout=TIMEOUT,
    )
    check_moved(root, fixture.case, fixture.names, "inbox", "sorted")
    shutil.rmtree(root)
    shutil.rmtree(state, ignore_errors=True)
    tree_path = out_dir / "profile-apply.txt"
    flat_path = out_dir / "profile-apply-flat.txt"
    load = [PYTHON, "-m", "pyinstrument", "--load", str(session), "-r", "text"]
    timed([*load, "--no-color", "-o", str(tree_path)], timeout=60)
    timed([*load, "--no-color", "-p", "flat=true", "-o", str(flat_path)], timeout=60)
    tree = [line for line in tree_path.read_text().splitlines() if line.strip()]
    flat = [line for line in flat_path.read_text().splitlines() if line.strip()]
    first = next((i for i, line in enumerate(tree) if _TIMING_LINE.match(line)), 0)
    return {
        "tree_path": str(tree_path),
        "flat_path": str(flat_path),
        "header": tree[:first],
        "top10": tree[first : first + 10],
        "flat_top10": [line for line in flat if _TIMING_LINE.match(line)][:10],
    }
