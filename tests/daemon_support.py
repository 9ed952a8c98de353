"""Helpers for the daemon's integration tests (tests/service/test_daemon.py; fixtures that use them
are in tests/conftest_daemon.py).

Everything here talks to real emulators: pstest (or the emulator already named by
``PUBSUB_EMULATOR_HOST``) and fake-gcs-server, both started once per session. Each test gets
its own project id and bucket names, so tests never see each other's topics or objects.

- :class:`Stack`: one test's world: projects root, env for the daemon, bootstrap, clients,
  a results collector, daemons (always stopped in teardown), ledger/audit readers.
- :class:`DaemonProcess`: ``python -m fileops_daemon.cli run`` with its log in a file.
- :class:`ResultCollector`: its own subscription on the results topic; every result it
  receives is validated against ``schemas/result.schema.json`` (and its attributes checked).
- :class:`RestartableGCS`: fake-gcs-server with the filesystem backend on a fixed port, so it
  can be stopped and started again with its data kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from jsonschema import Draft202012Validator, FormatChecker

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.execute import RetryPolicy, apply_plan
from tests.emulators import harness
from tests.support import snapshot

REPO = Path(__file__).resolve().parent.parent
RESULT_SCHEMA = REPO / "schemas" / "result.schema.json"

#: Settings that make leases, retries and logs fast and readable in tests.
FAST_ENV = {
    "FILEOPS_LEASE_SECONDS": "3",
    "FILEOPS_RETRY_INITIAL_WAIT": "0.05",
    "FILEOPS_RETRY_MAX_WAIT": "0.5",
    "FILEOPS_LOG_FORMAT": "json",
    "FILEOPS_LOG_LEVEL": "INFO",
    "FILEOPS_ACK_DEADLINE_SECONDS": "10",
    "FILEOPS_DRAIN_SECONDS": "10",
    "FILEOPS_MAX_DELIVERY_ATTEMPTS": "5",
}

_VALIDATOR = Draft202012Validator(
    json.loads(RESULT_SCHEMA.read_text(encoding="utf-8")), format_checker=FormatChecker()
)


def schema_errors(result: Any) -> list[str]:
    """Every violation of schemas/result.schema.json, as readable strings."""
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in _VALIDATOR.iter_errors(result)
    )


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def steps_done(progress: dict[str, Any] | None) -> int:
    """How many steps a ledger record's progress marks as durably done.

    ``done`` is a count, or a list of ``[first, last]`` index ranges (parallel apply).
    """
    done = (progress or {}).get("done", 0)
    if isinstance(done, int):
        return done
    return sum(last - first + 1 for first, last in done)


# --------------------------------------------------------------------------- emulators


@dataclass(frozen=True)
class Emulators:
    pubsub_host: str  # host:port for PUBSUB_EMULATOR_HOST
    gcs_endpoint: str  # http://host:port for STORAGE_EMULATOR_HOST
    external_pubsub: bool  # True: the user's emulator from PUBSUB_EMULATOR_HOST
    #: "pstest", "gcloud" (Google's official emulator) or "external"
    pubsub_kind: str = "pstest"
    #: What this Pub/Sub emulator does like the real service (tests/emulators/capabilities.py).
    capabilities: frozenset[str] = frozenset()


class RestartableGCS:
    """fake-gcs-server with ``-backend filesystem`` on one port: stop/start keep the data.

    The harness's ``gcs_emulator()`` runs in memory on a new port each time; a restart test
    needs the same address and the same objects afterwards.
    """

    def __init__(self, root: Path, log_path: Path) -> None:
        self.root = root
        self.log_path = log_path
        self.port = harness.free_port()
        self.endpoint = f"http://{harness.LOOPBACK}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        binary = harness.ensure_binary(harness.FAKE_GCS_SERVER, "emulators")
        cmd = harness.fake_gcs_command(binary, self.port)
        cmd[cmd.index("-backend") + 1] = "filesystem"
        return [*cmd, "-filesystem-root", str(self.root)]

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_GCS_")}
        while True:  # the port may still be held for a moment after a stop
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
                )
            try:
                harness._wait_http_ok(
                    f"{self.endpoint}/_internal/healthcheck",
                    self.proc,
                    max(1.0, deadline - time.monotonic()),
                    self.log_path,
                )
                return
            except harness.EmulatorError:
                harness._stop(self.proc)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            harness._stop(self.proc)


# --------------------------------------------------------------------------- the daemon


class DaemonProcess:
    """``python -m fileops_daemon.cli run`` with stdout+stderr in ``log_path`` (JSON lines)."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> DaemonProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fileops_daemon.cli", "run"],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL and reap."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        return self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout``."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed. Always leaves the process reaped."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    # -- the log --------------------------------------------------------------------------------

    def lines(self) -> list[dict[str, Any]]:
        """The log as JSON objects; a line that is not JSON becomes ``{"raw": line}``."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for raw in text.splitlines():
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            out.append(doc if isinstance(doc, dict) else {"raw": raw})
        return out

    def events(self, message: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if (message is None or line.get("message") == message)
            and all(line.get(k) == v for k, v in match.items())
        ]

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, message: str, timeout: float, **match: Any) -> dict[str, Any]:
        """The first log event ``message`` (with ``match``); fails if it does not come."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(message, **match)
            if found:
                return found[0]
            if not self.alive():
                raise AssertionError(
                    f"daemon {self.name} exited (code {self.returncode}) before logging "
                    f"{message} {match}; log {self.log_path}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"daemon {self.name} did not log {message} {match} within {timeout}s; "
                    f"log {self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 30.0) -> DaemonProcess:
        self.wait_for("daemon.ready", timeout)
        return self


# --------------------------------------------------------------------------- results


@dataclass
class Received:
    result: dict[str, Any]
    attributes: dict[str, str]
    message_id: str
    at: float
    #: When Pub/Sub accepted the result (the server's wall clock, seconds since the epoch).
    published: float = 0.0


class ResultCollector:
    """Pulls the results topic through its own subscription; validates every result."""

    def __init__(self, subscriber: Any, subscription: str) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.received: list[Received] = []
        self.problems: list[str] = []

    def poll(self, timeout: float = 1.0) -> int:
        """One pull; records, checks and acks what came. Returns how many."""
        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 1000},
                timeout=timeout,
            )
        except (gexc.DeadlineExceeded, gexc.Cancelled, gexc.RetryError):
            return 0  # an empty pull that ran into its timeout
        if not response.received_messages:
            return 0
        for item in response.received_messages:
            self._record(item.message)
        self.subscriber.acknowledge(
            request={
                "subscription": self.subscription,
                "ack_ids": [item.ack_id for item in response.received_messages],
            }
        )
        return len(response.received_messages)

    def _record(self, message: Any) -> None:
        attributes = dict(message.attributes)
        try:
            result = json.loads(bytes(message.data))
        except ValueError as exc:
            raise AssertionError(f"a result message is not JSON: {message.data[:200]!r}") from exc
        errors = schema_errors(result)
        if errors:
            self.problems.append(f"{result.get('plan_id')}: {errors}")
            raise AssertionError(
                f"result of plan {result.get('plan_id')!r} violates {RESULT_SCHEMA.name}: "
                f"{errors}\n{json.dumps(result, indent=1)[:3000]}"
            )
        for name in ("plan_id", "case_name", "status"):
            if attributes.get(name) != result.get(name):
                problem = (
                    f"result attribute {name}={attributes.get(name)!r} disagrees with the "
                    f"body's {result.get(name)!r} (plan {result.get('plan_id')!r})"
                )
                self.problems.append(problem)
                raise AssertionError(problem)
        published = message.publish_time.timestamp() if message.publish_time else 0.0
        self.received.append(
            Received(result, attributes, message.message_id, time.monotonic(), published)
        )

    # -- queries --------------------------------------------------------------------------------

    def results(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        return [
            r.result for r in self.received if plan_id is None or r.result["plan_id"] == plan_id
        ]

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not condition(self.results()):
            if time.monotonic() > deadline:
                got = [(r["plan_id"], r["status"]) for r in self.results()]
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; "
                    f"{len(got)} result(s) so far: {got[:40]}"
                )
            if not self.poll(timeout=1.0):
                time.sleep(0.05)
        return self.results()

    def wait_plan(
        self, plan_id: str, timeout: float = 20.0, count: int = 1
    ) -> list[dict[str, Any]]:
        self.wait_for(
            lambda rs: sum(r["plan_id"] == plan_id for r in rs) >= count,
            timeout,
            f"{count} result(s) for plan {plan_id!r}",
        )
        return self.results(plan_id)

    def wait_count(self, count: int, timeout: float) -> list[dict[str, Any]]:
        return self.wait_for(lambda rs: len(rs) >= count, timeout, f"{count} results")

    def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Keep pulling for ``seconds`` (to see that nothing more comes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.poll(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                time.sleep(0.05)
        return self.results()


# --------------------------------------------------------------------------- one test's world


def token_plan(case: str, k: int, *, plan_id: str | None = None) -> dict[str, Any]:
    """Plan k of a chain: move ``case/token-{k-1}.txt`` to ``case/token-{k}.txt``."""
    return {
        "plan_id": plan_id or f"{case}-step-{k:03}",
        "case_name": case,
        "dry_run": False,
        "requested_by": "test",
        "operations": [
            {"type": "move", "from": f"{case}/token-{k - 1}.txt", "to": f"{case}/token-{k}.txt"}
        ],
    }


def many_writes_plan(case: str, plan_id: str, count: int, folder: str = "bulk") -> dict[str, Any]:
    """A plan with ``count`` cheap steps (one small file each), slow enough to interrupt."""
    ops: list[dict[str, Any]] = [{"type": "mkdir", "path": f"{case}/{folder}"}]
    ops += [
        {"type": "write", "path": f"{case}/{folder}/f{i:05}.txt", "content": f"file {i}\n"}
        for i in range(count)
    ]
    return {"plan_id": plan_id, "case_name": case, "dry_run": False, "operations": ops}


@dataclass
class Stack:
    """One test's project, buckets, folders, clients and daemons."""

    tmp: Path
    emulators: Emulators
    gcs_endpoint: str
    project: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")
    daemons: list[DaemonProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = self.project
        self.state_bucket = f"{tag}-state"
        self.audit_bucket = f"{tag}-audit"
        self.root = self.tmp / "projects"
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.base_env: dict[str, str] = {
            "FILEOPS_PROJECT": self.project,
            "FILEOPS_STATE_BUCKET": self.state_bucket,
            "FILEOPS_AUDIT_BUCKET": self.audit_bucket,
            "FILEOPS_PROJECTS_ROOT": str(self.root),
            **FAST_ENV,
        }
        self.plans_topic = "fileops-plans"
        self.results_topic = "fileops-results"
        self.dead_letter_topic = "fileops-plans-dead-letter"
        self._publisher: Any = None
        self._subscriber: Any = None
        self._storage: Any = None
        self.collector: ResultCollector | None = None
        self._subscriptions: list[str] = []

    # -- environment and clients ----------------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        """The full environment of a daemon or bootstrap process."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FILEOPS_", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_"))
        }
        env.update(
            PUBSUB_EMULATOR_HOST=self.emulators.pubsub_host,
            STORAGE_EMULATOR_HOST=self.gcs_endpoint,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.base_env)
        env.update(overrides)
        return env

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            from google.cloud import pubsub_v1

            options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
            self._publisher = pubsub_v1.PublisherClient(publisher_options=options)
        return self._publisher

    @property
    def subscriber(self) -> Any:
        if self._subscriber is None:
            from google.cloud import pubsub_v1

            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    @property
    def storage(self) -> Any:
        if self._storage is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            self._storage = storage.Client(
                project=self.project,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.gcs_endpoint},
            )
        return self._storage

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    # -- setting up -----------------------------------------------------------------------------

    def bootstrap(self, **overrides: str) -> dict[str, Any]:
        """``fileops bootstrap`` (the CLI), then the results watch subscription."""
        run = subprocess.run(
            [sys.executable, "-m", "fileops_daemon.cli", "bootstrap"],
            cwd=REPO,
            env=self.env(**overrides),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, f"bootstrap failed ({run.returncode}):\n{run.stderr[-3000:]}"
        created: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[0])
        watch = self.subscription("results-watch")
        self.subscriber.create_subscription(
            request={"name": watch, "topic": self.topic(self.results_topic)}
        )
        self._subscriptions.append(watch)
        self.collector = ResultCollector(self.subscriber, watch)
        return created

    @property
    def results(self) -> ResultCollector:
        assert self.collector is not None, "call stack.bootstrap() first"
        return self.collector

    def case(self, name: str, files: dict[str, str] | None = None) -> Path:
        """A case folder under the projects root with ``files`` (relative path -> text)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for rel, text in (files or {}).items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return folder

    def reference_after(self, plans: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
        """The tree the daemon should end with: the current tree with ``plans`` applied to a
        copy by :func:`fileops_daemon.core.execute.apply_plan` (the local, uninterrupted path)."""
        ref = self.tmp / f"reference-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.root, ref / "projects", symlinks=True)
        for plan in plans:
            result = apply_plan(
                parse_plan(json.dumps(plan).encode()),
                str(ref / "projects"),
                str(ref / "state"),
                retry=RetryPolicy(attempts=1, initial_wait=0, max_wait=0),
            ).result
            assert result["status"] in ("applied", "planned"), result
        tree = snapshot(ref / "projects")
        shutil.rmtree(ref)
        return tree

    def tree(self) -> dict[str, tuple[str, ...]]:
        return snapshot(self.root)

    # -- daemons --------------------------------------------------------------------------------

    def start_daemon(
        self,
        name: str = "a",
        *,
        state_dir: Path | None = None,
        ready: bool = True,
        **overrides: str,
    ) -> DaemonProcess:
        state = state_dir or self.tmp / f"state-{name}"
        env = self.env(
            FILEOPS_STATE_DIR=str(state), FILEOPS_WORKER_ID=f"worker-{name}", **overrides
        )
        daemon = DaemonProcess(name, env, self.logs / f"daemon-{name}.log")
        self.daemons.append(daemon)
        daemon.start()
        if ready:
            daemon.wait_ready()
        return daemon

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run ``fileops ARGS`` (an ops command) against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "fileops_daemon.cli", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def all_events(self, message: str, **match: Any) -> list[dict[str, Any]]:
        return [e for d in self.daemons for e in d.events(message, **match)]

    def logs_tail(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- daemon {d.name} (pid {d.proc.pid if d.proc else '-'}, "
            f"exit {d.returncode}) {d.log_path}\n{d.tail(lines)}"
            for d in self.daemons
        )

    # -- publishing -----------------------------------------------------------------------------

    def publish(
        self,
        plan: dict[str, Any] | bytes,
        *,
        attributes: dict[str, str] | None = None,
        ordering_key: str | None = None,
        wait: bool = True,
    ) -> Any:
        """Publish like the agent tool; returns the message id (or the future)."""
        if isinstance(plan, dict):
            data = json.dumps(plan).encode("utf-8")
            attrs = {
                "plan_id": plan["plan_id"],
                "case_name": plan["case_name"],
                "dry_run": str(plan.get("dry_run", True)).lower(),
            }
            key = plan["case_name"] if ordering_key is None else ordering_key
        else:
            data, attrs, key = plan, {}, ordering_key or ""
        if attributes is not None:
            attrs = attributes
        future = self.publisher.publish(
            self.topic(self.plans_topic), data, ordering_key=key, **attrs
        )
        return future.result(timeout=30) if wait else future

    # -- GCS ------------------------------------------------------------------------------------

    def ledger_record(self, plan_id: str) -> dict[str, Any] | None:
        blob = self.storage.bucket(self.state_bucket).get_blob(f"plans/{plan_id}.json")
        if blob is None:
            return None
        document: dict[str, Any] = json.loads(blob.download_as_bytes())
        return document

    def ledger_records(self) -> dict[str, dict[str, Any]]:
        bucket = self.storage.bucket(self.state_bucket)
        for tries_left in (2, 1, 0):
            try:
                return {
                    blob.name: json.loads(blob.download_as_bytes())
                    for blob in self.storage.list_blobs(bucket, prefix="plans/")
                }
            except gexc.NotFound:
                # fake-gcs-server's filesystem backend (RestartableGCS) once answered a
                # listing of an existing bucket with 404; a second look finds it.
                if not tries_left:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def audit_records(self) -> dict[str, dict[str, Any]]:
        bucket = self.storage.bucket(self.audit_bucket)
        return {
            blob.name: json.loads(blob.download_as_bytes())
            for blob in self.storage.list_blobs(bucket)
        }

    def pull_dead_letters(self, timeout: float) -> list[Any]:
        """Messages on the dead-letter topic, from the ``-hold`` subscription bootstrap made."""
        hold = self.subscription(f"{self.dead_letter_topic}-hold")
        deadline = time.monotonic() + timeout
        while True:
            response = self.subscriber.pull(
                request={"subscription": hold, "max_messages": 100}, timeout=2
            )
            if response.received_messages:
                self.subscriber.acknowledge(
                    request={
                        "subscription": hold,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
                return [m.message for m in response.received_messages]
            if time.monotonic() > deadline:
                return []
            time.sleep(0.1)

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.stop(timeout=10)
        for name in self._subscriptions:
            with contextlib.suppress(Exception):
                self.subscriber.delete_subscription(request={"subscription": name})
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                self._publisher.stop()
        if self._subscriber is not None:
            with contextlib.suppress(Exception):
                self._subscriber.close()


class Publisher(threading.Thread):
    """Publishes a list of plans from a thread, ``interval`` seconds apart."""

    def __init__(self, stack: Stack, plans: list[dict[str, Any]], interval: float) -> None:
        super().__init__(name="plan-publisher", daemon=True)
        self.stack = stack
        self.plans = plans
        self.interval = interval
        self.message_ids: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for plan in self.plans:
                self.message_ids[plan["plan_id"]] = self.stack.publish(plan)
                time.sleep(self.interval)
        except BaseException as exc:  # reported by the test
            self.error = exc
