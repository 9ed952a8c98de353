"""The operators' commands against a running daemon: submit, watch, status, undo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from rich.markup import escape

from fileops_daemon.cli.output import console, emit_result, undo_command_line
from fileops_daemon.client.api import (
    ClientConfig,
    FileopsClient,
    connect_retry,
    result_of,
    self_expiring_subscription,
)
from fileops_daemon.client.render import (
    change_count,
    printable,
    replay_note,
    safe,
    summary_line,
)
from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.envvars import ConfigError, project_from_env
from fileops_daemon.contract.exitcodes import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
)

__all__ = ["status_command", "submit_command", "undo_command", "watch_command"]

log = structlog.get_logger("fileops.cli")


def _fail(message: str, code: int) -> int:
    print(f"fileops: {message}", file=sys.stderr)
    return code


def _show(result: dict[str, Any], as_json: bool) -> int:
    hint = None
    if result.get("status") == "applied" and isinstance(result.get("plan_id"), str):
        hint = undo_command_line(result["plan_id"])
    code = emit_result(result, as_json, undo_hint=hint)
    if result.get("status") == "awaiting_approval" and isinstance(result.get("plan_id"), str):
        _approval_next_step(result["plan_id"])
    return code


def _approval_next_step(plan_id: str) -> None:
    """What an operator does about a plan held for approval (on stderr: stdout holds the
    result alone)."""
    quoted = shlex.quote(plan_id)
    print(
        "fileops: nothing changed yet; an operator with the approval key decides:\n"
        f"  fileops approve {quoted} --wait\n"
        f"  fileops reject {quoted} --reason '...'",
        file=sys.stderr,
    )


def _send(plan: dict[str, Any], args: argparse.Namespace) -> int:
    from fileops_daemon.client.answers import local_refusal

    # What is certainly wrong is refused here, with the daemon's codes, as the agent client
    # does: nothing is published (the daemon checks everything again anyway).
    refusal = local_refusal(plan)
    if refusal is not None:
        return _show(refusal, args.json)
    with FileopsClient(ClientConfig.from_env()) as client:
        message_id = client.publish(plan)
        mode = "dry run" if plan.get("dry_run", True) else "apply"
        if not args.wait:
            if args.json:
                print(json.dumps({"plan_id": plan.get("plan_id"), "message_id": message_id}))
            else:
                print(f"submitted {plan.get('plan_id')!r} ({mode}) as message {message_id}")
            return EXIT_OK
        with _progress_while_waiting(str(plan.get("plan_id")), applying=mode == "apply"):
            try:
                result = client.wait_message(message_id, args.timeout)
            except KeyboardInterrupt:
                raise Interrupted(
                    f"interrupted; {plan.get('plan_id')!r} was sent (message {message_id}) and "
                    "will be handled: `fileops watch` or `fileops status` shows its result "
                    "(do not send it again under a new id)"
                ) from None
    if result is None:
        return _fail(
            f"no result for {plan.get('plan_id')!r} within {args.timeout:g} s "
            "(the plan stays queued)",
            EXIT_TIMEOUT,
        )
    return _show(result, args.json)


def _progress_while_waiting(
    plan_id: str, *, applying: bool
) -> contextlib.AbstractContextManager[Any]:
    """Progress lines on an interactive stderr while an apply is awaited (the ledger has
    them; a dry run is never recorded, and without a state bucket there is no ledger)."""
    if not (applying and sys.stderr.isatty() and os.environ.get("FILEOPS_STATE_BUCKET")):
        return contextlib.nullcontext()
    from fileops_daemon.cli.follow import ProgressLines

    try:
        ledger = _ledger()
    except Exception as exc:  # progress is a courtesy: without it, the wait goes on
        log.info("progress.unavailable", plan_id=plan_id, error=repr(exc))
        return contextlib.nullcontext()
    return ProgressLines(ledger.read, plan_id, sys.stderr)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what it left behind (``main`` prints it)."""


def submit_command(args: argparse.Namespace) -> int:
    with open(args.plan, "rb") if args.plan != "-" else sys.stdin.buffer as handle:
        raw = handle.read()
    try:
        plan = json.loads(raw)
    except ValueError as exc:
        return _fail(f"invalid_json: {exc}", EXIT_REJECTED)
    if not isinstance(plan, dict):
        return _fail("schema_violation: a plan is one JSON object", EXIT_REJECTED)
    plan["dry_run"] = not args.apply
    return _send(plan, args)


def _ledger() -> Any:
    from fileops_daemon.service.cloud import CloudRetry, storage_client
    from fileops_daemon.service.ledger import Ledger
    from fileops_daemon.service.ledger_store import GcsLedgerStore

    project = project_from_env(os.environ)
    bucket = os.environ.get("FILEOPS_STATE_BUCKET")
    if not bucket:
        raise ConfigError("FILEOPS_STATE_BUCKET is required")
    store = GcsLedgerStore(storage_client(project).bucket(bucket), CloudRetry(3))
    return Ledger(store, "fileops-cli", 0)


def status_command(args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(args)
    record = _ledger().read(args.plan_id)
    if record is None:
        return _fail(
            f"no plan {args.plan_id!r} in the ledger (dry runs are not recorded)", EXIT_REJECTED
        )
    document = {k: v for k, v in record.__dict__.items() if k not in ("token", "undo")}
    if args.json:
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return EXIT_OK
    view = console()
    view.print(
        f"[bold]{safe(record.plan_id)}[/] on case {safe(record.case_name)}: "
        f"[bold]{safe(record.state)}[/], owner {safe(record.owner)}, "
        f"attempts {record.attempts}, takeovers {record.takeovers}"
    )
    if record.state == "claimed":
        left = record.lease_expires_at - time.time()
        if record.lease_expires_at == 0:
            view.print("lease released (handed over on shutdown): the next daemon resumes it")
        else:
            view.print(f"lease {'expires in' if left > 0 else 'expired'} {abs(left):.0f} s")
        done = int(record.progress.get("steps_done", record.progress.get("done", 0)))
        total = int(record.progress.get("steps_total", 0))
        if total:
            from rich.progress import BarColumn, Progress, TextColumn

            with Progress(
                TextColumn("applying"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                console=view,
                auto_refresh=False,
            ) as bar:
                bar.add_task("apply", total=total, completed=done)
                bar.refresh()
    if record.result is not None:
        view.print(escape(summary_line(record.result)))
    return EXIT_OK


def _follow(args: argparse.Namespace) -> int:
    """Print where the plan stands as it changes, until it is settled; then its result, and
    exit as ``submit --wait`` would."""
    from fileops_daemon.cli.follow import follow_record

    lines = sys.stderr if args.json else sys.stdout  # --json: stdout holds the result alone
    record = follow_record(_ledger().read, args.plan_id, lines, timeout=args.timeout)
    if record is None:
        return _fail(f"{args.plan_id!r} was not settled within {args.timeout:g} s", EXIT_TIMEOUT)
    if record.result is None:  # a done record always holds its result; be safe anyway
        return EXIT_OK
    return _show(record.result, args.json)


def undo_command(args: argparse.Namespace) -> int:
    """Ask the daemon to undo a plan: it builds the undo plan from the inverse it stored."""
    from fileops_daemon.core.undo import undo_request_document

    record = _ledger().read(args.plan_id)
    if record is None or record.undo is None:
        return _fail(
            f"undo_unavailable: no inverse plan is recorded for {args.plan_id!r}", EXIT_REJECTED
        )
    request = undo_request_document(
        args.plan_id, record.case_name, dry_run=not args.apply, requested_by="fileops undo (ops)"
    )
    if not args.apply:
        args.wait = True  # a preview is its answer: `fileops undo PLAN` shows it
    return _send(request, args)


def _line(result: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    codes = ",".join(printable(e["code"]) for e in result.get("errors", []))
    detail = f"{change_count(result)} change(s)" + (f" [{codes}]" if codes else "")
    mode = "dry-run" if result.get("dry_run") else "apply"
    if result.get("replay") is True:  # a stored answer given to another request
        mode, detail = "replay", f"{detail}: {replay_note(result)}"
    return (
        f"{stamp} {printable(result['status']):<8} {mode:<7} {printable(result['plan_id'])} "
        f"case={printable(result['case_name'])} {detail}"
    )


def watch_command(args: argparse.Namespace) -> int:
    """Tail the results topic through a subscription of our own, filtered server-side."""
    from google.api_core.exceptions import AlreadyExists, NotFound
    from google.cloud import pubsub_v1

    config = ClientConfig.from_env()
    asked = ((attr.CASE_NAME, args.case), (attr.STATUS, args.status))
    wanted: dict[str, str] = {key: value for key, value in asked if value}
    # The server filters what it can; a value that cannot sit in a filter literal (a quote,
    # a backslash, or too long for the 256-byte filter) is matched here instead.
    conditions = [
        f'attributes.{key} = "{value}"'
        for key, value in wanted.items()
        if '"' not in value and "\\" not in value and len(value.encode()) <= 150
    ]
    owned = args.subscription is None
    name = args.subscription or f"fileops-watch-{uuid.uuid4().hex[:12]}"
    path = config.subscription_path(name)
    subscriber = pubsub_v1.SubscriberClient()
    with contextlib.suppress(AlreadyExists):
        subscriber.create_subscription(
            request={
                "name": path,
                "topic": config.topic_path(config.results_topic),
                "filter": " AND ".join(conditions),
                "ack_deadline_seconds": 10,
                # Ours goes away by itself if this process is killed before it deletes it.
                **(self_expiring_subscription() if owned else {}),
            },
            retry=connect_retry(config.connect_timeout),
            timeout=config.connect_timeout,
        )
    seen = 0
    enough = threading.Event()
    reader_gone = threading.Event()
    lock = threading.Lock()

    def on_result(message: Any) -> None:
        nonlocal seen
        message.ack()
        if any(message.attributes.get(key) != value for key, value in wanted.items()):
            return
        result = result_of(message.data)
        if result is None or not {"status", "case_name"} <= set(result):
            return
        with lock:
            if enough.is_set():
                return
            try:
                print(
                    json.dumps(result, ensure_ascii=False) if args.json else _line(result),
                    flush=True,
                )
            except BrokenPipeError:  # the reader is gone (| head): stop, main says so
                reader_gone.set()
                enough.set()
                return
            seen += 1
            if args.count and seen >= args.count:
                enough.set()

    future = subscriber.subscribe(path, callback=on_result)
    # A stream that ends by itself (its subscription deleted: the emulator restarted, or
    # someone removed it) ends the watch with what happened, never a silent wait.
    future.add_done_callback(lambda _: enough.set())
    # On stderr even with --json: scripts may wait for it (results published from now on show).
    print(
        f"watching {config.results_topic} via {name}"
        + (f" where {' AND '.join(conditions)}" if conditions else ""),
        file=sys.stderr,
        flush=True,
    )
    ended: BaseException | None = None
    try:
        enough.wait(args.timeout)
        if future.done() and not reader_gone.is_set():
            ended = future.exception(timeout=0) or RuntimeError("the stream ended")
    except KeyboardInterrupt:
        raise Interrupted("interrupted; watching stopped") from None
    finally:
        future.cancel()
        with contextlib.suppress(Exception):  # a cancelled stream ends with an error
            future.result(timeout=5)
        if owned:  # bounded: an unreachable emulator must not hold Ctrl-C up for a minute
            with contextlib.suppress(Exception):
                subscriber.delete_subscription(
                    subscription=path, retry=None, timeout=config.connect_timeout
                )
        subscriber.close()
    if reader_gone.is_set():
        raise BrokenPipeError
    if isinstance(ended, NotFound):
        print(
            f"fileops: the results subscription {name} is gone (deleted, or the Pub/Sub "
            "emulator restarted): later results are not shown; run `fileops watch` again",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    if ended is not None:
        raise ended
    return EXIT_OK
