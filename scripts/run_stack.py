"""``make run``: the local stack with the daemon in the foreground.

Starts the Pub/Sub and GCS emulators (or uses PUBSUB_EMULATOR_HOST if set), bootstraps topics,
subscription and buckets, seeds ./run/projects with a sample case, starts ``fileops run``,
prints the lines another terminal needs to reach the stack (and writes them to ./run/env.sh),
submits the seed plan as a dry run and then for real, prints both results, and keeps the daemon
running until Ctrl-C. Ctrl-C stops everything this script started within seconds; a second
Ctrl-C stops the daemon at once (its journals make that safe).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.emulators.harness import create_bucket, gcs_emulator, pubsub_emulator  # noqa: E402

RUN = Path(os.environ.get("FILEOPS_RUN_DIR") or REPO / "run")  # tests run it elsewhere
ENV_FILE = RUN / "env.sh"
PROJECT = "fileops-local"
#: How long the local daemon may drain on Ctrl-C (the production default is a minute).
DRAIN_SECONDS = "5"
SEED = json.loads((REPO / "examples" / "seed-plan.json").read_text())
CASE = SEED["case_name"]


@contextlib.contextmanager
def pubsub() -> Iterator[str]:
    existing = os.environ.get("PUBSUB_EMULATOR_HOST")
    if existing:
        print(f"using the Pub/Sub emulator at {existing}")
        yield existing
        return
    with pubsub_emulator() as host:
        yield host


def seed_projects(root: Path) -> None:
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "Medical Records").mkdir()
    for i in range(1, 4):
        (case / "uncategorized" / f"file{i}.pdf").write_bytes(f"%PDF-1.4 sample {i}\n".encode())


def wait_for_result(subscriber: object, subscription: str, plan_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = subscriber.pull(  # type: ignore[attr-defined]
            subscription=subscription, max_messages=10, timeout=5
        )
        if response.received_messages:
            subscriber.acknowledge(  # type: ignore[attr-defined]
                subscription=subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
        for received in response.received_messages:
            result = json.loads(received.message.data)
            if result["plan_id"] == plan_id:
                return result
    raise TimeoutError(f"no result for {plan_id} within {timeout} s")


def write_env_file(env: dict[str, str]) -> str:
    """The exports another terminal needs for ``fileops`` to reach this stack; also in a file."""
    names = (
        "PUBSUB_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "FILEOPS_PROJECT",
        "FILEOPS_STATE_BUCKET",
        "FILEOPS_AUDIT_BUCKET",
    )
    lines = [f"export {name}={env[name]}" for name in names]
    lines.append(f'export PATH="{REPO / ".venv" / "bin"}:$PATH"  # puts fileops on PATH')
    text = "\n".join(lines) + "\n"
    ENV_FILE.write_text(text, encoding="utf-8")
    return text


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait for the drain; a second Ctrl-C kills it (journals keep that safe)."""
    if daemon.poll() is not None:
        return
    print("stopping the daemon, then the emulators (Ctrl-C again: stop at once)", flush=True)
    signal.signal(signal.SIGINT, lambda *_: daemon.kill())
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=float(DRAIN_SECONDS) + 15)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def main() -> int:
    from google.cloud import pubsub_v1
    from rich.console import Console

    from fileops_daemon.client.render import print_result

    console = Console(highlight=False)
    shutil.rmtree(RUN, ignore_errors=True)
    projects, state = RUN / "projects", RUN / "state"
    seed_projects(projects)
    with pubsub() as pubsub_host, gcs_emulator() as gcs_endpoint:
        for bucket in ("fileops-state", "fileops-audit"):
            create_bucket(gcs_endpoint, bucket)
        env = dict(
            os.environ,
            PUBSUB_EMULATOR_HOST=pubsub_host,
            STORAGE_EMULATOR_HOST=gcs_endpoint,
            FILEOPS_PROJECT=PROJECT,
            FILEOPS_STATE_BUCKET="fileops-state",
            FILEOPS_AUDIT_BUCKET="fileops-audit",
            FILEOPS_PROJECTS_ROOT=str(projects),
            FILEOPS_STATE_DIR=str(state),
            FILEOPS_LOG_FORMAT="console",
            FILEOPS_DRAIN_SECONDS=DRAIN_SECONDS,
        )
        os.environ.update(env)
        fileops = [sys.executable, "-m", "fileops_daemon.cli"]
        subprocess.run([*fileops, "bootstrap"], env=env, check=True, stdout=subprocess.DEVNULL)
        subscriber = pubsub_v1.SubscriberClient()
        watch = f"projects/{PROJECT}/subscriptions/make-run-{uuid.uuid4().hex[:8]}"
        subscriber.create_subscription(
            name=watch, topic=f"projects/{PROJECT}/topics/fileops-results"
        )
        console.print(f"[bold]projects folder:[/] {projects}   [bold]state:[/] {state}")
        exports = write_env_file(env)
        console.rule("to use this stack from another terminal")
        print(exports, end="")
        console.print(f"(or: [bold]source {os.path.relpath(ENV_FILE)}[/])")
        # Its own session: Ctrl-C reaches this script, which stops the daemon before the
        # emulators it talks to.
        daemon = subprocess.Popen([*fileops, "run"], env=env, start_new_session=True)
        # The approval console beside it (loopback; it prints its URL); Ctrl-C reaches it too.
        key = Path(env.get("FILEOPS_APPROVAL_KEY_FILE") or RUN / "console-approval.key")
        if not key.exists():
            key.write_text(uuid.uuid4().hex + uuid.uuid4().hex + "\n")
        console_env = dict(env, FILEOPS_APPROVAL_KEY_FILE=str(key), FILEOPS_LOG_FORMAT="console")
        web = subprocess.Popen([*fileops, "console"], env=console_env)
        try:
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
                print_result(wait_for_result(subscriber, watch, plan["plan_id"], 60), console)
            console.rule("the daemon keeps running; Ctrl-C stops everything")
            daemon.wait()
        except KeyboardInterrupt:
            pass
        finally:
            web.terminate()
            stop_daemon(daemon)
            web.wait(timeout=15)
            with contextlib.suppress(Exception):  # one quick try: the emulator is local
                subscriber.delete_subscription(subscription=watch, retry=None, timeout=5)
            subscriber.close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the daemon started: the emulators are stopped
        print("stopped", flush=True)
        sys.exit(130)
