"""``make run``: the local stack with the daemon in the foreground.

Starts the Pub/Sub and GCS emulators (or uses PUBSUB_EMULATOR_HOST if set), bootstraps topics,
subscription and buckets, starts ``fileops run``, prints the lines another terminal needs to
reach the stack (and writes them to ./run/env.sh), and keeps the daemon running until stopped.
On a fresh ./run it seeds a sample case and submits the seed plan as a dry run, then for real.

State survives a restart (scripts/stack_state.py): fake-gcs-server keeps the buckets (ledger,
audit, undo history) on disk under ./run/gcs, the emulators get their last ports again while
those are free, and the first lines say whether state was kept or reset (``--reset``, i.e.
``make run RESET=1``, starts afresh). ``--approval`` (``make run APPROVAL=1``) holds every
applied plan for an operator, with a key made into ./run and exported in ./run/env.sh.

Ctrl-C, SIGTERM and SIGHUP (the terminal closed) stop everything this script started within
seconds: the daemon first (a 5 s drain), then the emulators; a second Ctrl-C stops the daemon at
once (its journals make that safe). Every child is started with PR_SET_PDEATHSIG, so if this
script is killed outright (SIGKILL) the kernel stops them too: nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.stack_state import (  # noqa: E402
    APPROVAL_POLICY_VARIABLES,
    RunFolder,
    StackBusyError,
)
from tests.emulators.harness import (  # noqa: E402
    die_with_parent,
    gcs_emulator,
    port_is_free,
    pubsub_emulator,
)

RUN = RunFolder(Path(os.environ.get("FILEOPS_RUN_DIR") or REPO / "run"))  # tests use others
PROJECT = "fileops-local"
#: How long the local daemon may drain on Ctrl-C (the production default is a minute).
DRAIN_SECONDS = "5"
SEED = json.loads((REPO / "examples" / "seed-plan.json").read_text())
CASE = SEED["case_name"]
#: What another terminal needs; names without a value are left out.
EXPORTS = [
    "PUBSUB_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "FILEOPS_PROJECT",
    "FILEOPS_STATE_BUCKET",
    "FILEOPS_AUDIT_BUCKET",
    "FILEOPS_APPROVAL_KEY_FILE",
]


def say(text: str = "") -> None:
    """A line for the terminal; never an error (after SIGHUP the terminal may be gone)."""
    with contextlib.suppress(OSError, ValueError):
        print(text, flush=True)


def terminal_gone() -> None:
    """SIGHUP: from now on what this script prints goes to ./run/make-run.log, not to a
    terminal that no longer exists (a write there fails with EIO and would cut the stop short)."""
    fd = os.open(RUN.path / "make-run.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def stop_like_ctrl_c(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        terminal_gone()
    raise KeyboardInterrupt


@contextlib.contextmanager
def pubsub(port: int) -> Iterator[str]:
    existing = os.environ.get("PUBSUB_EMULATOR_HOST")
    if existing:
        say(f"using the Pub/Sub emulator at {existing}")
        yield existing
        return
    with pubsub_emulator(
        port=port, log_path=RUN.logs / "pstest.log", preexec_fn=die_with_parent()
    ) as host:
        yield host


def seed_projects(root: Path) -> None:
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "Medical Records").mkdir()
    for i in range(1, 4):
        (case / "uncategorized" / f"file{i}.pdf").write_bytes(f"%PDF-1.4 sample {i}\n".encode())


def wait_for_result(subscriber: Any, subscription: str, plan_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
        if response.received_messages:
            subscriber.acknowledge(
                subscription=subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
        for received in response.received_messages:
            result = json.loads(received.message.data)
            if result["plan_id"] == plan_id:
                return result  # type: ignore[no-any-return]
    raise TimeoutError(f"no result for {plan_id} within {timeout} s")


def preferred_ports() -> dict[str, int]:
    """The last run's ports that are still free (0: any)."""
    return {name: port if port_is_free(port) else 0 for name, port in RUN.saved_ports().items()}


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def approval_settings(wanted: bool) -> dict[str, str]:
    """The daemon's approval settings: with ``--approval``, or when the caller exported an
    approval policy, a key in ./run (unless one was given) and, without a policy, every
    applied plan waits for an operator."""
    policy_given = any(os.environ.get(name) for name in APPROVAL_POLICY_VARIABLES)
    if not (wanted or policy_given):
        return {}
    settings = {}
    if not os.environ.get("FILEOPS_APPROVAL_KEY_FILE"):
        settings["FILEOPS_APPROVAL_KEY_FILE"] = str(RUN.ensure_approval_key())
    if not policy_given:
        settings["FILEOPS_APPROVAL_CASES"] = "*"
    return settings


def relay(stream: IO[bytes], log_path: Path) -> threading.Thread:
    """Copy the daemon's output to the terminal and to ./run/daemon.log (so the daemon never
    writes to a terminal that may close under it)."""

    def copy() -> None:
        with log_path.open("ab") as log:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.write(line.decode("utf-8", "replace"))
                    sys.stdout.flush()

    thread = threading.Thread(target=copy, name="daemon-output", daemon=True)
    thread.start()
    return thread


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait for the drain; a second Ctrl-C kills it (journals keep that safe).
    Another SIGTERM or SIGHUP changes nothing: the stop is under way (make passes its SIGTERM
    on to this script, which the process group's already reached)."""

    def again(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            terminal_gone()
        elif signum == signal.SIGINT:
            daemon.kill()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, again)
    if daemon.poll() is not None:
        return
    say("stopping the daemon, then the emulators (Ctrl-C again: stop at once)")
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=float(DRAIN_SECONDS) + 15)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def submit_seed(console: Any, subscriber: Any, watch: str, approval: bool) -> None:
    """The seed plan as a dry run, then applied (or held for approval)."""
    from google.cloud import pubsub_v1

    from fileops_daemon.client.render import print_result

    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    for dry_run in (True, False):
        plan = dict(SEED, dry_run=dry_run)
        console.rule(f"seed plan, dry_run={str(dry_run).lower()}")
        publisher.publish(
            f"projects/{PROJECT}/topics/fileops-plans",
            json.dumps(plan).encode("utf-8"),
            ordering_key=CASE,
            plan_id=plan["plan_id"],
            case_name=CASE,
            dry_run=str(dry_run).lower(),
        ).result(timeout=30)
        result = wait_for_result(subscriber, watch, plan["plan_id"], 60)
        print_result(result, console)
    plan_id = SEED["plan_id"]
    if approval and result["status"] == "awaiting_approval":
        say(f"approve it from another terminal: fileops approve {plan_id}")
        say(f"  or reject it:                    fileops reject {plan_id} --reason '...'")
    elif result["status"] == "applied":
        say(f"undo it from another terminal: fileops undo {plan_id} --apply --wait")


def run(args: argparse.Namespace) -> int:
    from google.cloud import pubsub_v1

    from fileops_daemon.cli.output import console as view
    from fileops_daemon.console.config import DEFAULT_PORT as CONSOLE_PORT

    console = view()  # a path stays whole on its line when this goes to a file
    note = RUN.prepare(reset=args.reset)
    say(note.message)
    if not RUN.projects.exists():
        seed_projects(RUN.projects)
    RUN.logs.mkdir(exist_ok=True)
    wanted = preferred_ports()
    with (
        pubsub(wanted.get("pubsub", 0)) as pubsub_host,
        gcs_emulator(
            port=wanted.get("gcs", 0),
            filesystem_root=RUN.gcs,
            log_path=RUN.logs / "fake-gcs.log",
            preexec_fn=die_with_parent(),
        ) as gcs_endpoint,
    ):
        ports = {"gcs": port_of(gcs_endpoint)}
        if not os.environ.get("PUBSUB_EMULATOR_HOST"):
            ports["pubsub"] = port_of(pubsub_host)
        changed = sorted(n for n, p in RUN.saved_ports().items() if ports.get(n, p) != p)
        RUN.save_ports(ports)
        approval = approval_settings(args.approval)
        env = dict(
            os.environ,
            PUBSUB_EMULATOR_HOST=pubsub_host,
            STORAGE_EMULATOR_HOST=gcs_endpoint,
            FILEOPS_PROJECT=PROJECT,
            FILEOPS_STATE_BUCKET="fileops-state",
            FILEOPS_AUDIT_BUCKET="fileops-audit",
            FILEOPS_PROJECTS_ROOT=str(RUN.projects),
            FILEOPS_STATE_DIR=str(RUN.state),
            FILEOPS_LOG_FORMAT="console",
            FILEOPS_DRAIN_SECONDS=DRAIN_SECONDS,
            PYTHONUNBUFFERED="1",
            **approval,
        )
        os.environ.update(env)
        fileops = [sys.executable, "-m", "fileops_daemon.cli"]
        # Topics and subscriptions again on every start: pstest keeps them in memory only.
        subprocess.run([*fileops, "bootstrap"], env=env, check=True, stdout=subprocess.DEVNULL)
        console.print(f"[bold]projects folder:[/] {RUN.projects}   [bold]state:[/] {RUN.state}")
        if changed:
            say(
                f"the {' and '.join(changed)} port changed since the last run (it was taken): "
                "`source run/env.sh` again in other terminals"
            )
        if env.get("FILEOPS_APPROVAL_KEY_FILE"):
            policy = {n: env[n] for n in APPROVAL_POLICY_VARIABLES if env.get(n)}
            say(
                f"approval on ({', '.join(f'{k}={v}' for k, v in policy.items())}): "
                "`fileops pending`, `fileops approve PLAN_ID`"
            )
        exports = RUN.write_env_file(env, EXPORTS, REPO / ".venv" / "bin")
        console.rule("to use this stack from another terminal")
        say(exports.rstrip("\n"))
        shown = os.path.relpath(RUN.env_file)
        console.print(f"(or: [bold]source {RUN.env_file if shown.startswith('..') else shown}[/])")
        # Its own session: Ctrl-C reaches this script, which stops the daemon before the
        # emulators it talks to. If this script is killed outright, the kernel kills it.
        daemon = subprocess.Popen(
            [*fileops, "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        assert daemon.stdout is not None
        output = relay(daemon.stdout, RUN.daemon_log)
        subscriber = pubsub_v1.SubscriberClient()
        watch = f"projects/{PROJECT}/subscriptions/make-run-{uuid.uuid4().hex[:8]}"
        # The approval console beside it (loopback; it prints its URL), with the approval key
        # (one is made for it when approval is off, so pages can be looked at).
        key = Path(env.get("FILEOPS_APPROVAL_KEY_FILE") or RUN.path / "console-approval.key")
        if not key.exists():
            key.write_text(uuid.uuid4().hex + uuid.uuid4().hex + "\n")
            key.chmod(0o600)
        # Its usual port, or any free one when another stack's console holds it (the URL is
        # printed either way); FILEOPS_CONSOLE_PORT, when exported, is taken as it is.
        usual = str(CONSOLE_PORT) if port_is_free(CONSOLE_PORT) else "0"
        web_port = env.get("FILEOPS_CONSOLE_PORT") or usual
        web = subprocess.Popen(
            [*fileops, "console"],
            env=dict(
                env,
                FILEOPS_APPROVAL_KEY_FILE=str(key),
                FILEOPS_LOG_FORMAT="console",
                FILEOPS_CONSOLE_PORT=web_port,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        assert web.stdout is not None
        web_output = relay(web.stdout, RUN.path / "console.log")
        code = 0
        try:
            subscriber.create_subscription(
                name=watch, topic=f"projects/{PROJECT}/topics/fileops-results"
            )
            if note.kept:
                say(
                    f"the seed plan is not sent again (state kept): "
                    f"`fileops status {SEED['plan_id']}` shows where it stands"
                )
            else:
                submit_seed(console, subscriber, watch, bool(approval))
            console.rule("the daemon keeps running; Ctrl-C stops everything")
            code = daemon.wait()
            say(f"the daemon exited by itself (status {code}); see {RUN.daemon_log}")
        except KeyboardInterrupt:
            pass
        finally:
            web.terminate()
            stop_daemon(daemon)
            with contextlib.suppress(subprocess.TimeoutExpired):
                web.wait(timeout=15)
            output.join(timeout=2)
            web_output.join(timeout=2)
            with contextlib.suppress(Exception):  # one quick try: the emulator is local
                subscriber.delete_subscription(subscription=watch, retry=None, timeout=5)
            subscriber.close()
    say("stopped")
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reset", action="store_true", help="start from an empty ./run")
    parser.add_argument(
        "--approval", action="store_true", help="applied plans wait for `fileops approve`"
    )
    args = parser.parse_args()
    # SIGINT too: started in the background by a shell, it comes in ignored, and Python then
    # leaves it ignored; Ctrl-C (or kill -INT) must stop the stack however it was started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_like_ctrl_c)
    try:
        with RUN.locked():
            return run(args)
    except StackBusyError as exc:
        say(f"make run: {exc}")
        return 75  # EX_TEMPFAIL
    except KeyboardInterrupt:  # stopped before the daemon started: the emulators are stopped
        say("stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
