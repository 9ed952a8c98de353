"""Start and stop the local emulators the tests run against (standard library only).

- ``pubsub_emulator()`` serves Google's Go fake ``cloud.google.com/go/pubsub/v2/pstest`` and
  yields ``"127.0.0.1:PORT"`` (the value for ``PUBSUB_EMULATOR_HOST``).
- ``gcs_emulator()`` serves ``fake-gcs-server`` in memory and yields ``"http://127.0.0.1:PORT"``
  (the value for ``STORAGE_EMULATOR_HOST``); ``create_bucket()`` makes a bucket in it.
- ``gcsfuse_mount()`` mounts a bucket of that server with real gcsfuse and yields the mount point.
- ``die_with_parent()`` is a ``preexec_fn`` that makes a child die with the process that started
  it, whatever ended that one (SIGKILL included): ``make run`` starts everything with it.

Binaries come from ``<repo>/.cache/bin`` and are built on first use with
``make -C <repo> -f mk/emulators.mk emulators|gcsfuse`` (pinned Go modules, see README.md here).
Every context manager picks free ports, waits for readiness against a deadline and on exit
terminates its process, waits for it and kills it if it does not go. The emulators run in
sessions of their own, so a Ctrl-C in the terminal reaches the Python process, which stops
them in order, instead of killing them under whatever still talks to them.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "FAKE_GCS_SERVER",
    "GCSFUSE",
    "PSTEST_SERVER",
    "REPO_ROOT",
    "EmulatorError",
    "create_bucket",
    "die_with_parent",
    "ensure_binary",
    "fake_gcs_command",
    "free_port",
    "fuse_unavailable_reason",
    "gcloud_pubsub_emulator",
    "gcloud_pubsub_emulator_command",
    "gcs_emulator",
    "gcsfuse_flags",
    "gcsfuse_mount",
    "list_objects",
    "port_is_free",
    "pubsub_emulator",
    "reset_gcs",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = REPO_ROOT / ".cache" / "bin"
PSTEST_SERVER = BIN_DIR / "pstest-server"
FAKE_GCS_SERVER = BIN_DIR / "fake-gcs-server"
GCSFUSE = BIN_DIR / "gcsfuse"
_MAKEFILE = REPO_ROOT / "mk" / "emulators.mk"
_BUILD_LOCK = REPO_ROOT / ".cache" / "emulators-build.lock"

LOOPBACK = "127.0.0.1"
BUILD_TIMEOUT = 1800.0  # a cold build of all three takes ~3 minutes on 2 cores
STOP_TIMEOUT = 10.0

# Talk to the emulators directly, never through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(RuntimeError):
    """An emulator could not be built, started, reached or stopped."""


# --------------------------------------------------------------------------- helpers


#: prctl(2) option: the signal a process gets when the thread that started it ends.
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for Popen: the child gets ``sig`` as soon as the process that started it
    ends, however it ends (SIGKILL included), so it is never left running with parent 1.

    Linux's ``PR_SET_PDEATHSIG``; it survives ``execve`` and fires when the *thread* that
    started the child ends, so start children from the main thread. A parent that died before
    the child set it is caught by comparing ``getppid()``. Elsewhere than Linux: a no-op.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up now, not in the child
    except (OSError, AttributeError):
        return lambda: None
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent is already gone
            os.kill(os.getpid(), sig)

    return preexec


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``port`` can be listened on now (with SO_REUSEADDR, as Go's listeners bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the caller retries if it loses the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_ENSURED: set[str] = set()


def ensure_binary(binary: Path, make_target: str) -> Path:
    """Return ``binary`` after ``make <make_target>`` brought it up to date with the pins.

    make runs once per target and process (a no-op taking ~50 ms when nothing changed), so a
    changed pin in mk/emulators.mk is honoured; a file lock serialises concurrent builds
    (e.g. pytest-xdist workers). Without ``make`` an existing binary is used as it is.
    """
    if make_target in _ENSURED and os.access(binary, os.X_OK):
        return binary
    if shutil.which("make") is None:
        if os.access(binary, os.X_OK):
            return binary
        raise EmulatorError(f"{binary} is missing and `make` is not installed to build it")
    _BUILD_LOCK.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-C", str(REPO_ROOT), "-f", str(_MAKEFILE), make_target]
    env = _child_env(("MAKEFLAGS", "MFLAGS", "MAKELEVEL"))  # not the caller's make options
    with _BUILD_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=BUILD_TIMEOUT,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmulatorError(f"building {binary.name} with {cmd} failed: {exc}") from exc
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if proc.returncode != 0 or not os.access(binary, os.X_OK):
        raise EmulatorError(
            f"building {binary.name} with {' '.join(cmd)} failed "
            f"(exit {proc.returncode}):\n{_tail(proc.stdout)}"
        )
    _ENSURED.add(make_target)
    return binary


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _read_tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError:
        return "<no log>"


def _stop(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = STOP_TIMEOUT
) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL and reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def _log_file(log_path: str | os.PathLike[str] | None, prefix: str) -> Iterator[Path]:
    """The given log path (kept), or a temporary one removed on exit."""
    if log_path is not None:
        path = Path(log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        yield Path(tmp) / f"{prefix}.log"


def _child_env(drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}


# --------------------------------------------------------------------------- Pub/Sub


@contextlib.contextmanager
def pubsub_emulator(
    *,
    timeout: float = 30.0,
    log_path: str | os.PathLike[str] | None = None,
    port: int = 0,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Run pstest-server on a free port; yield ``"127.0.0.1:PORT"`` for PUBSUB_EMULATOR_HOST.

    The server picks its own port (``-port 0``) and announces it, so there is no port race;
    ``port`` asks for that one instead (the caller checks it is free: see port_is_free).
    ``preexec_fn`` is Popen's (e.g. :func:`die_with_parent`).
    """
    binary = ensure_binary(PSTEST_SERVER, "emulators")
    with _log_file(log_path, "pstest") as log, log.open("ab") as log_fh:
        proc = subprocess.Popen(
            [str(binary), "-host", LOOPBACK, "-port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_fh,
            env=_child_env(),
            start_new_session=True,  # a terminal's Ctrl-C is ours to handle, not the emulator's
            preexec_fn=preexec_fn,
        )
        try:
            addr = _read_listening_line(proc, timeout, log)
            _wait_tcp(addr, proc, time.monotonic() + timeout, log)
            yield addr
        finally:
            _stop(proc)


def _read_listening_line(proc: subprocess.Popen[bytes], timeout: float, log: Path) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmulatorError(
                    f"pstest-server did not announce its port within {timeout}s:\n{_read_tail(log)}"
                )
            if not sel.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise EmulatorError(
                    f"pstest-server exited (code {proc.wait()}) before it was ready:\n"
                    f"{_read_tail(log)}"
                )
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode().strip()
    prefix = "listening on "
    if not line.startswith(prefix):
        raise EmulatorError(f"unexpected first line from pstest-server: {line!r}")
    return line[len(prefix) :]


def _wait_tcp(addr: str, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    host, _, port = addr.rpartition(":")
    while True:
        if proc.poll() is not None:
            raise EmulatorError(f"emulator exited (code {proc.returncode}):\n{_read_tail(log)}")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise EmulatorError(f"nothing listens on {addr}:\n{_read_tail(log)}") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------- gcloud's emulator

#: How to get Google's official Pub/Sub emulator where it is missing.
GCLOUD_EMULATOR_INSTALL_HINT = (
    "install it with `apt-get install google-cloud-cli-pubsub-emulator` (Google's apt "
    "repository) or `gcloud components install pubsub-emulator`; it needs Java 11+"
)


def gcloud_pubsub_emulator_command() -> list[str] | None:
    """The launcher of Google's official Pub/Sub emulator (a Java program shipped with the
    gcloud CLI), or None when it is not installed.

    The launcher script ``exec``s java, so the process we start is the emulator itself and
    stopping it leaves nothing behind (``gcloud beta emulators pubsub start`` would leave its
    java child running when killed).
    """
    roots: list[Path] = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk")]
    for root in roots:
        launcher = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if os.access(launcher, os.X_OK) and shutil.which("java"):
            return [str(launcher)]
    return None


@contextlib.contextmanager
def gcloud_pubsub_emulator(
    *, timeout: float = 60.0, log_path: str | os.PathLike[str] | None = None
) -> Iterator[str]:
    """Run Google's official Pub/Sub emulator on a free port; yield ``"127.0.0.1:PORT"``.

    It prints ``Server started, listening on PORT`` once ready (a few seconds: it is Java).
    """
    command = gcloud_pubsub_emulator_command()
    if command is None:
        raise EmulatorError(
            f"Google's Pub/Sub emulator is not installed: {GCLOUD_EMULATOR_INSTALL_HINT}"
        )
    for _ in range(3):  # the free port may be taken before java binds it
        port = free_port()
        with _log_file(log_path, "gcloud-pubsub") as log, log.open("ab") as log_fh:
            proc = subprocess.Popen(
                [*command, f"--host={LOOPBACK}", f"--port={port}"],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=_child_env(("PUBSUB_",)),
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + timeout
                while b"Server started, listening on" not in log.read_bytes():
                    if proc.poll() is not None:
                        break
                    if time.monotonic() > deadline:
                        raise EmulatorError(
                            f"the gcloud Pub/Sub emulator did not start within {timeout}s:\n"
                            f"{_read_tail(log)}"
                        )
                    time.sleep(0.1)
                if proc.poll() is not None:
                    if b"Address already in use" in log.read_bytes():
                        continue
                    raise EmulatorError(
                        f"the gcloud Pub/Sub emulator exited (code {proc.returncode}):\n"
                        f"{_read_tail(log)}"
                    )
                addr = f"{LOOPBACK}:{port}"
                _wait_tcp(addr, proc, deadline, log)
                yield addr
                return
            finally:
                _stop(proc)
    raise EmulatorError("the gcloud Pub/Sub emulator could not bind a free port in 3 tries")


# --------------------------------------------------------------------------- GCS


@contextlib.contextmanager
def gcs_emulator(
    *,
    timeout: float = 30.0,
    log_path: str | os.PathLike[str] | None = None,
    log_level: str = "warn",
    attempts: int = 3,
    port: int = 0,
    filesystem_root: str | os.PathLike[str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Run fake-gcs-server in memory on a free port; yield ``"http://127.0.0.1:PORT"``.

    Flags: ``-scheme http -backend memory -host 127.0.0.1 -port P
    -external-url http://127.0.0.1:P -public-host 127.0.0.1:P``. ``-public-host`` makes the
    XML-style read path (``GET /BUCKET/OBJECT``, which the Go storage client inside gcsfuse
    uses) answer on that address; without it gcsfuse reads fail with ESTALE.

    ``port``: try that one first (then free ones); ``filesystem_root``: keep buckets and
    objects in that folder (``-backend filesystem``), so they outlive the server;
    ``preexec_fn`` is Popen's (e.g. :func:`die_with_parent`).
    """
    binary = ensure_binary(FAKE_GCS_SERVER, "emulators")
    with _log_file(log_path, "fake-gcs") as log, log.open("ab") as log_fh:
        last_error: EmulatorError | None = None
        for attempt in range(attempts):  # free_port() can race with another process
            chosen = port if port and attempt == 0 else free_port()
            endpoint = f"http://{LOOPBACK}:{chosen}"
            proc = subprocess.Popen(
                fake_gcs_command(binary, chosen, log_level, filesystem_root=filesystem_root),
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=log_fh,
                env=_child_env(("FAKE_GCS_",)),  # its env vars would override defaults
                start_new_session=True,
                preexec_fn=preexec_fn,
            )
            try:
                _wait_http_ok(f"{endpoint}/_internal/healthcheck", proc, timeout, log)
            except EmulatorError as exc:
                _stop(proc)
                last_error = exc
                continue
            try:
                yield endpoint
            finally:
                _stop(proc)
            return
        assert last_error is not None
        raise last_error


def fake_gcs_command(
    binary: Path,
    port: int,
    log_level: str = "warn",
    *,
    filesystem_root: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The fake-gcs-server command line used by :func:`gcs_emulator`: in memory, or with
    ``filesystem_root`` its filesystem backend (objects as files, generations kept beside them)."""
    backend = {"-backend": "memory"}
    if filesystem_root is not None:
        backend = {"-backend": "filesystem", "-filesystem-root": str(filesystem_root)}
    flags = {
        "-scheme": "http",
        **backend,
        "-host": LOOPBACK,
        "-port": str(port),
        "-external-url": f"http://{LOOPBACK}:{port}",
        "-public-host": f"{LOOPBACK}:{port}",
        "-log-level": log_level,
    }
    return [str(binary), *(item for pair in flags.items() for item in pair)]


def _wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise EmulatorError(
                f"{url}: server exited (code {proc.returncode}):\n{_read_tail(log)}"
            )
        try:
            with _OPENER.open(url, timeout=2.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise EmulatorError(f"{url} not ready within {timeout}s:\n{_read_tail(log)}")
        time.sleep(0.05)


def _request(
    method: str, url: str, body: dict[str, object] | None = None, timeout: float = 10.0
) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise EmulatorError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    return json.loads(raw) if raw.strip() else {}


def create_bucket(endpoint: str, name: str, project: str = "test-project") -> dict[str, object]:
    """Create bucket ``name`` in the fake-gcs-server at ``endpoint``; return its resource."""
    query = urllib.parse.urlencode({"project": project})
    return _request("POST", f"{endpoint}/storage/v1/b?{query}", {"name": name})


def list_objects(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Names of all objects in ``bucket`` (JSON API listing, all pages)."""
    names: list[str] = []
    token = ""
    while True:
        params = {"prefix": prefix, "maxResults": "1000"}
        if token:
            params["pageToken"] = token
        quoted = urllib.parse.quote(bucket, safe="")
        page = _request(
            "GET", f"{endpoint}/storage/v1/b/{quoted}/o?{urllib.parse.urlencode(params)}"
        )
        items = page.get("items", [])
        assert isinstance(items, list)
        names.extend(str(item["name"]) for item in items)
        token = str(page.get("nextPageToken") or "")
        if not token:
            return names


def reset_gcs(endpoint: str) -> None:
    """Delete every bucket and object (fake-gcs-server's ``/_internal/delete_all``).

    Buckets go too: call :func:`create_bucket` again afterwards.
    """
    _request("POST", f"{endpoint}/_internal/delete_all")


# --------------------------------------------------------------------------- gcsfuse


def fuse_unavailable_reason() -> str | None:
    """``None`` when a FUSE mount can be attempted here, else why not (for ``pytest.skip``)."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing (FUSE not available in this machine/container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not found (install fuse3: make system-deps)"
    return None


def gcsfuse_flags(
    endpoint: str,
    *,
    log_file: str | os.PathLike[str],
    rename_dir_limit: int = 0,
    metadata_cache_ttl_secs: int = 1,
) -> list[str]:
    """The gcsfuse v3 flags used to mount a fake-gcs-server bucket (see README.md here): the
    cache settings are production's (``systemd/projects.mount``, docs/deploy-gce.md)."""
    return [
        "--foreground",
        "--anonymous-access",
        f"--custom-endpoint={endpoint.rstrip('/')}/storage/v1/",
        # Hidden flag. Without it gcsfuse dials a gRPC storage-control client for
        # GetStorageLayout unless the endpoint contains "localhost", and fails.
        "--enable-hns=false",
        "--implicit-dirs",
        # fake-gcs-server has no MoveObject: renames are copy + delete.
        "--enable-atomic-rename-object=false",
        # As on the production mount: what exists is cached for a second (one step's several
        # lookups of its source cost one request), what is missing is never cached (a
        # destination is re-checked at GCS right before every rename).
        f"--metadata-cache-ttl-secs={metadata_cache_ttl_secs}",
        "--metadata-cache-negative-ttl-secs=0",
        "--kernel-list-cache-ttl-secs=0",
        f"--rename-dir-limit={rename_dir_limit}",
        f"--log-file={log_file}",
        "--log-format=text",
        "--log-severity=info",
    ]


@contextlib.contextmanager
def gcsfuse_mount(
    endpoint: str,
    bucket: str,
    mountpoint: str | os.PathLike[str],
    extra_flags: Sequence[str] = (),
    *,
    rename_dir_limit: int = 0,
    metadata_cache_ttl_secs: int = 1,
    timeout: float = 30.0,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    """Mount ``bucket`` of the fake-gcs-server at ``endpoint`` on ``mountpoint``; yield it.

    gcsfuse runs in the foreground as a child process. ``extra_flags`` come after the defaults
    from :func:`gcsfuse_flags`, so they can override them (e.g. ``--rename-dir-limit=100``).
    On exit: ``fusermount3 -u`` (lazy if busy), wait for gcsfuse to exit, SIGTERM/SIGKILL
    if it does not, and a lazy unmount if the mount is still there.
    """
    reason = fuse_unavailable_reason()
    if reason is not None:
        raise EmulatorError(f"cannot mount with gcsfuse: {reason}")
    # With --enable-hns=false gcsfuse does not look at the bucket when it mounts: a missing one
    # only shows up later as ENOENT on every operation. Fail early and clearly instead.
    try:
        _request("GET", f"{endpoint}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}")
    except EmulatorError as exc:
        raise EmulatorError(
            f"bucket {bucket!r} is not there (create_bucket() first): {exc}"
        ) from exc
    binary = ensure_binary(GCSFUSE, "gcsfuse")
    mnt = Path(mountpoint).resolve()
    mnt.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mnt):
        raise EmulatorError(f"{mnt} is already a mount point")
    with _log_file(log_path, "gcsfuse") as log:
        out = log.with_name(log.name + ".out")  # stdout/stderr: warnings before logging starts
        cmd = [
            str(binary),
            *gcsfuse_flags(
                endpoint,
                log_file=log,
                rename_dir_limit=rename_dir_limit,
                metadata_cache_ttl_secs=metadata_cache_ttl_secs,
            ),
            *extra_flags,
            bucket,
            str(mnt),
        ]
        with out.open("ab") as out_fh:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out_fh, stderr=out_fh, env=_child_env()
            )
        try:
            deadline = time.monotonic() + timeout
            while not os.path.ismount(mnt):
                if proc.poll() is not None:
                    raise EmulatorError(
                        f"gcsfuse exited (code {proc.returncode}) before mounting {mnt}:\n"
                        f"{_read_tail(out)}\n{_read_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise EmulatorError(
                        f"gcsfuse did not mount {mnt} within {timeout}s:\n"
                        f"{_read_tail(out)}\n{_read_tail(log)}"
                    )
                time.sleep(0.05)
            yield mnt
        finally:
            _unmount(mnt, proc)


def _run_quiet(cmd: list[str]) -> int:
    try:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=STOP_TIMEOUT,
            check=False,
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


def _unmount_cmd(mnt: Path, *, lazy: bool) -> list[str]:
    if shutil.which("fusermount3"):
        return ["fusermount3", "-u", *(["-z"] if lazy else []), str(mnt)]
    return ["umount", *(["-l"] if lazy else []), str(mnt)]


def _unmount(mnt: Path, proc: subprocess.Popen[bytes]) -> None:
    if not os.path.ismount(mnt):  # never mounted (start failed) or already unmounted
        _stop(proc, timeout=2.0)
        return
    wait = STOP_TIMEOUT
    if _run_quiet(_unmount_cmd(mnt, lazy=False)) != 0:
        # Busy (a file still open or a cwd inside): detach it now. gcsfuse would serve the
        # open files until they are closed, so do not wait long for it to exit by itself.
        _run_quiet(_unmount_cmd(mnt, lazy=True))
        wait = 2.0
    # After a clean unmount gcsfuse exits by itself (about 2 s); else SIGTERM, then SIGKILL.
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        _stop(proc, timeout=2.0)
    if os.path.ismount(mnt):  # gcsfuse died without unmounting: clear the dead mount
        _run_quiet(_unmount_cmd(mnt, lazy=True))
