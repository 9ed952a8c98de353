"""Shared pieces of the benchmark suite: child processes, timing, statistics, CPU and memory.

Every child process is started in its own session (process group) and registered, so that a
timeout, Ctrl-C or SIGTERM kills the whole group (a ``bash`` loop and its ``mv`` included) and
``stop_all()`` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench-results"
PYTHON = sys.executable
FILEOPS = str(Path(sys.executable).with_name("fileops"))

_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_OCTAL = re.compile(r"\\([0-7]{3})")  # escapes in /proc/mounts


#: Set when Ctrl-C or SIGTERM arrived: cleanups then take the short way (the emulators share
#: our process group, so a Ctrl-C from the terminal has already killed them).
INTERRUPTED = threading.Event()


def on_interrupt(_signum: int, _frame: object) -> None:
    """SIGINT/SIGTERM handler: remember it, then unwind with KeyboardInterrupt."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


class BenchError(RuntimeError):
    """A benchmark could not run or produced wrong work; the message says what happened."""


# --------------------------------------------------------------------------- processes


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any FILEOPS_*/emulator settings of the caller, plus ``extra``."""
    drop = ("FILEOPS_", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "FAKE_GCS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra or {})
    return env


def spawn(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group and register it for cleanup."""
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    return proc


def _forget(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL it; reap; return the exit code."""
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    kill_group(proc)  # stragglers of the group (children that outlived the leader)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    _forget(proc)
    return proc.returncode


def _abandon(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a command's group and reap it if it goes within 5 s.

    A process blocked on a FUSE mount whose server is gone (Ctrl-C reaches the emulators,
    which share our process group) cannot die until the mount is torn down, so it is not
    waited for here: it stays registered and ``stop_all()`` reaps it after the unmount.
    """
    kill_group(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    _forget(proc)


def unmount_under(folder: Path) -> list[str]:
    """Lazily unmount any mount left below ``folder`` (a FUSE mount whose gcsfuse died)."""
    prefix = str(folder.resolve()) + os.sep
    with open("/proc/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh]
    points = [_OCTAL.sub(lambda m: chr(int(m[1], 8)), p) for p in points]  # \040 = space
    left = [p for p in points if p.startswith(prefix)]
    for point in sorted(left, reverse=True):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["fusermount3", "-u", "-z", point],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )
    return left


def stop_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        stop(proc, timeout=10.0)


@dataclass
class Run:
    seconds: float
    returncode: int
    stderr: str


def timed(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> Run:
    """Run ``cmd`` to completion (stdout discarded); wall-clock seconds from start to reap."""
    started = time.perf_counter()
    proc = spawn(cmd, env=env, cwd=cwd)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _abandon(proc)
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    except BaseException:
        _abandon(proc)
        raise
    seconds = time.perf_counter() - started
    kill_group(proc)
    _forget(proc)
    text = err.decode(errors="replace").strip()
    if check and proc.returncode != 0:
        raise BenchError(f"exit {proc.returncode}: {' '.join(cmd)}: {text[-2000:]}")
    return Run(seconds, proc.returncode, text)


def run_quiet(cmd: Sequence[str], *, timeout: float, cwd: str | None = None) -> None:
    """A setup command (not measured) that must succeed."""
    timed(cmd, timeout=timeout, cwd=cwd)


# --------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 500 values is the 495th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- machine load


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass
class CpuMeter:
    """Machine-wide CPU use over a block: ``busy`` is 0..1 of all cores."""

    busy: float = 0.0
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    _start: tuple[float, float] = (0.0, 0.0)

    def __enter__(self) -> CpuMeter:
        self._start = _cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = _cpu_times()
        spent = total - self._start[1]
        self.busy = (busy - self._start[0]) / spent if spent > 0 else 0.0


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children (and the descendants they reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children_by_name() -> dict[str, list[int]]:
    """This process's direct children, by command name (e.g. fake-gcs-server, gcsfuse)."""
    found: dict[str, list[int]] = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            found.setdefault(name, []).append(int(pid))
    return found


def memory_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of ``pid`` in KiB, and VmRSS split into RssAnon (the heap: what the
    process made) and RssFile (mapped code and data of the interpreter and the extension
    modules), from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


class RssSampler:
    """Samples VmRSS of a process every ``interval`` s in a thread; keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.max_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.max_rss_kib = max(self.max_rss_kib, memory_status(self.pid)["VmRSS"])
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- output


def log(message: str) -> None:
    """Progress lines go to stderr, so the table on stdout stays readable."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    started = time.perf_counter()
    log(f"{name} ...")
    try:
        yield
    finally:
        log(f"{name}: {time.perf_counter() - started:.1f} s")
