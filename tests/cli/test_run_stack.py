"""``make run`` (scripts/run_stack.py) as a newcomer uses it: the stack comes up, says how to
reach it from another terminal, and Ctrl-C stops everything within seconds, without a trace."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.daemon_support import wait_until

REPO = Path(__file__).resolve().parents[2]
READY = "the daemon keeps running"


class Output:
    """Every line the script prints (stdout and stderr), read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


def exports(path: Path) -> dict[str, str]:
    """``export NAME=value`` lines of the env file, as a dict."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            name, _, value = words[1].partition("=")
            found[name] = value
    return found


def listening(host_port: str) -> bool:
    host, _, port = host_port.removeprefix("http://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("presses", [1, 2])
def test_make_run_says_how_to_reach_it_and_ctrl_c_stops_everything(
    tmp_path: Path, presses: int
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FILEOPS_", "PUBSUB_", "STORAGE_EMULATOR"))
    }
    env.update(FILEOPS_RUN_DIR=str(tmp_path / "run"), PYTHONUNBUFFERED="1")
    # Another stack's console holds the usual port: this one's takes any other.
    holder = socket.socket()
    with contextlib.suppress(OSError):
        holder.bind(("127.0.0.1", 8470))
        holder.listen()
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_stack.py"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    output = Output(proc)
    try:
        wait_until(lambda: READY in output.text(), 120, "the stack to come up")
        env_file = tmp_path / "run" / "env.sh"
        values = exports(env_file)
        for line in env_file.read_text().splitlines():  # printed as written
            assert line in output.lines, f"{line!r} not printed:\n{output.text()}"
        assert values["FILEOPS_PROJECT"] == "fileops-local"
        bin_dir = values["PATH"].split(":")[0]
        assert os.access(Path(bin_dir) / "fileops", os.X_OK), f"no fileops in {bin_dir}"

        # Another terminal, with only what the file says: fileops reaches the daemon.
        other = {k: v for k, v in env.items() if k != "FILEOPS_RUN_DIR"}
        other.update({k: v for k, v in values.items() if k != "PATH"})
        status = subprocess.run(
            [sys.executable, "-m", "fileops_daemon.cli", "status", "reorg-2024-07-13-abby-0001"],
            cwd=REPO,
            env=other,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0 and "done" in status.stdout, status
        wait_until(lambda: "fileops console: http" in output.text(), 60, "the console's URL")
        url = re.search(r"fileops console: http://127\.0\.0\.1:(\d+)", output.text())
        assert url and url.group(1) != "8470" and listening(f"127.0.0.1:{url.group(1)}")
        # Written to a pipe, the seed plan's view keeps each path whole on its line.
        moved = [line for line in output.lines if "moved from" in line]
        assert moved and all(line.rstrip().endswith(".pdf") for line in moved), moved
        assert max(map(len, output.lines)) < 1000  # and a heading stays a heading's width

        before = len(output.lines)
        for _ in range(presses):
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.3)
        began = time.monotonic()
        code = proc.wait(timeout=30)
        took = time.monotonic() - began
    finally:
        holder.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    after = "\n".join(output.lines[before:])
    assert code == 0, f"exit {code}:\n{after}"
    assert took < 15, f"Ctrl-C took {took:.1f}s to stop the stack:\n{after}"
    assert "Traceback" not in after, after
    assert output.lines[-1] == "stopped", after
    for name in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        assert not listening(values[name]), f"{name} {values[name]} still listens after Ctrl-C"
