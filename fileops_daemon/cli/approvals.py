"""The operators' approval commands: pending, approve, reject.

``approve``/``reject`` write a decision signed with the approval key
(``FILEOPS_APPROVAL_KEY_FILE``, which agents do not hold) into the ledger bucket, created only
if none exists (two operators at once: one decision wins), then publish a wake-up on the plans
topic. The daemon acts only on the signed decision; the wake-up just tells it to look.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from fileops_daemon.contract.approval import APPROVE, REJECT, wakeup_document
from fileops_daemon.contract.envvars import ConfigError, project_from_env
from fileops_daemon.contract.exitcodes import (
    EXIT_BY_STATUS,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
)
from fileops_daemon.contract.signing import load_key

if TYPE_CHECKING:  # the cloud libraries load only when a command runs: not for --help, nor
    # for the local commands, whose parser registers these
    from fileops_daemon.service.ledger import Ledger, Record


__all__ = [
    "add_commands",
    "approve_command",
    "console_command",
    "pending_command",
    "reject_command",
]


def add_commands(command: Any) -> None:
    """Register the subcommands (``command(name, help)`` makes one, with --json)."""
    pending = command("pending", "plans waiting for an operator's approval, oldest first")
    pending.set_defaults(handler=pending_command)
    approve = command("approve", "apply a waiting plan: exactly the changes its simulation showed")
    approve.add_argument("plan_id")
    approve.add_argument(
        "--digest", help="refuse unless the shown changes_digest starts with this (8+ hex)"
    )
    approve.add_argument("--wait", action="store_true", help="wait for the plan's result")
    approve.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    approve.set_defaults(handler=approve_command)
    reject = command("reject", "reject a waiting plan; its agent is answered 'rejected'")
    reject.add_argument("plan_id")
    reject.add_argument("--reason", required=True, help="told to the agent and audited")
    reject.add_argument("--wait", action="store_true", help="wait for the plan's result")
    reject.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    reject.set_defaults(handler=reject_command)
    console = command(
        "console", "the approval web console: waiting plans as trees, decisions, results"
    )
    console.add_argument(
        "--port", type=int, default=None, help="default $FILEOPS_CONSOLE_PORT or 8470; 0: any free"
    )
    console.set_defaults(handler=console_command)


def console_command(args: argparse.Namespace) -> int:
    """``fileops console`` (fileops_daemon/console; docs/console.md)."""
    from fileops_daemon.console.serve import serve

    return serve(args.port)


def _fail(message: str, code: int) -> int:
    print(f"fileops: {message}", file=sys.stderr)
    return code


def _bucket() -> Any:
    from fileops_daemon.service.cloud import storage_client

    project = project_from_env(os.environ)
    bucket = os.environ.get("FILEOPS_STATE_BUCKET")
    if not bucket:
        raise ConfigError("FILEOPS_STATE_BUCKET is required")
    return storage_client(project).bucket(bucket)


def _operator() -> str:
    return os.environ.get("FILEOPS_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def _approval_key() -> bytes:
    path = os.environ.get("FILEOPS_APPROVAL_KEY_FILE", "").strip()
    if not path:
        raise ConfigError("FILEOPS_APPROVAL_KEY_FILE is required to approve or reject plans")
    try:
        return load_key(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"FILEOPS_APPROVAL_KEY_FILE: {exc}") from None


def _expired(record: Record) -> bool:
    return time.time() > float((record.approval or {}).get("expires_at", 0))


def _wake(plan_id: str, case_name: str) -> None:
    """Tell the daemons to look at the decision (with the case as ordering key)."""
    from fileops_daemon.client.api import ClientConfig, FileopsClient

    with FileopsClient(ClientConfig.from_env()) as client:
        client.publish(wakeup_document(plan_id, case_name, _operator()))


def approve_command(args: argparse.Namespace) -> int:
    return _decide(args, APPROVE, "")


def reject_command(args: argparse.Namespace) -> int:
    return _decide(args, REJECT, args.reason)


def _decide(args: argparse.Namespace, verdict: str, reason: str) -> int:
    from fileops_daemon.service.cloud import CloudRetry
    from fileops_daemon.service.deciding import DecisionRefusedError, Refusal, decide
    from fileops_daemon.service.decisions import DecisionStore
    from fileops_daemon.service.ledger import Ledger
    from fileops_daemon.service.ledger_store import GcsLedgerStore

    key = _approval_key()
    bucket = _bucket()
    retry = CloudRetry(3)
    store = GcsLedgerStore(bucket, retry)
    ledger = Ledger(store, "fileops-cli", 0)
    try:
        decided = decide(
            ledger,
            DecisionStore(store, bucket, retry),
            key,
            args.plan_id,
            verdict,
            by=_operator(),
            reason=reason,
            digest=getattr(args, "digest", None),
            wake=_wake,
        )
    except DecisionRefusedError as refused:
        code = EXIT_CONFIG if refused.refusal is Refusal.WRONG_KEY else EXIT_REJECTED
        return _fail(refused.message, code)
    if decided.replaced is not None:
        print(
            f"fileops: replaced a decision that is not validly signed (by {decided.replaced})",
            file=sys.stderr,
        )
    if not decided.ours:
        standing = decided.standing
        theirs = f" (reason: {standing.reason})" if standing.reason else ""
        print(
            f"fileops: already decided: {standing.decision} by {standing.by}{theirs}; "
            "yours was not recorded",
            file=sys.stderr,
        )
        if not decided.agrees:
            return EXIT_REJECTED
    shown = decided.standing.changes_digest
    verb = "approved" if verdict == APPROVE else "rejected"
    if not args.wait:
        if args.json:
            by = decided.standing.by
            document = {"plan_id": args.plan_id, "decision": verdict, "digest": shown, "by": by}
            print(json.dumps(document))
        elif decided.ours:  # else the line above said who decided: nothing new was approved
            print(f"{verb} {args.plan_id!r} (changes_digest {shown[:16]}...)")
        return EXIT_OK
    return _finished(ledger, args)


def _finished(ledger: Ledger, args: argparse.Namespace) -> int:
    """Wait for the plan's recorded result (it goes to the agent; we read the ledger)."""
    from fileops_daemon.cli.output import console
    from fileops_daemon.client.render import print_result, summary_line

    if not getattr(args, "wait", False):
        return EXIT_OK
    deadline = time.monotonic() + args.timeout
    while True:
        record = ledger.read(args.plan_id)
        if record is not None and record.state == "done" and record.result is not None:
            break
        if time.monotonic() > deadline:
            return _fail(f"no result for {args.plan_id!r} within {args.timeout:g} s", EXIT_TIMEOUT)
        time.sleep(0.5)
    result = record.result
    if args.json:
        print(json.dumps(result, ensure_ascii=False, separators=(",", ":")))
    else:
        print_result(result, console())
    code = EXIT_BY_STATUS.get(result["status"], EXIT_FAILED)
    if code != EXIT_OK:
        print(f"fileops: {summary_line(result)}", file=sys.stderr)
    return code


def pending_command(args: argparse.Namespace) -> int:
    """List waiting plans, oldest first; expired ones are marked and the daemon is told to
    end them (answered rejected, approval_expired)."""
    from rich.markup import escape

    from fileops_daemon.cli.output import console
    from fileops_daemon.client.render import printable, safe
    from fileops_daemon.service.approval import DecisionStore, timestamp
    from fileops_daemon.service.cloud import CloudRetry
    from fileops_daemon.service.deciding import waiting_records
    from fileops_daemon.service.ledger import Ledger
    from fileops_daemon.service.ledger_store import GcsLedgerStore

    bucket = _bucket()
    retry = CloudRetry(3)
    store = GcsLedgerStore(bucket, retry)
    ledger = Ledger(store, "fileops-cli", 0)
    waiting = waiting_records(ledger, DecisionStore(store, bucket, retry))
    rows = []
    for record in waiting:
        approval = record.approval or {}
        expired = _expired(record)
        if expired:
            _wake(record.plan_id, record.case_name)
        result = record.result or {}
        rows.append(
            {
                "plan_id": record.plan_id,
                "case_name": record.case_name,
                "requested_at": timestamp(float(approval.get("requested_at", 0))),
                "expires_at": timestamp(float(approval.get("expires_at", 0))),
                "expired": expired,
                "changes": len(result.get("changes") or []),
                "steps": result.get("steps", 0),
                "reasons": approval.get("reasons", []),
                "changes_digest": approval.get("changes_digest", ""),
                "requested_by": approval.get("plan", {}).get("requested_by"),
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    view = console()
    if not rows:
        view.print("no plans await approval")
    for row in rows:
        mark = " [red]EXPIRED[/]" if row["expired"] else ""
        view.print(
            f"[bold]{safe(row['plan_id'])}[/] case {safe(row['case_name'])}: "
            f"{row['changes']} change(s), {row['steps']} step(s){mark}\n"
            f"  since {row['requested_at']}, expires {row['expires_at']}; "
            f"digest {row['changes_digest'][:16]}...\n"
            f"  why: {escape(printable('; '.join(map(str, row['reasons']))))}"
        )
    return EXIT_OK
