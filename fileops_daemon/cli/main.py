"""``fileops``: the command line for admins, tests and benchmarks.

Signal handling and exit codes live here; the core only returns result documents.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from fileops_daemon import __version__
from fileops_daemon.contract.errors import DESCRIPTIONS, ErrorCode, PlanError
from fileops_daemon.contract.exitcodes import (
    EXIT_CLOSED_PIPE,
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
)
from fileops_daemon.contract.results import ResultStatus

if TYPE_CHECKING:
    from fileops_daemon.client.infra import InfraProblem
    from fileops_daemon.core.outcome import ApplyOutcome

__all__ = ["main"]

_EPILOG = (
    "exit status: 0 planned/applied, 1 unexpected error, 2 usage, 3 rejected (nothing touched), "
    "4 failed (rolled back), 5 no result in time, 6 Pub/Sub or GCS unreachable, 7 no "
    "credentials, 8 topic/subscription/bucket missing, 9 permission denied, 10 awaiting "
    "approval, 78 bad configuration, 141 stdout closed early (| head); daemon: 69 stream lost, "
    "75 forced stop."
    "\n\nerror codes:\n"
    + "\n".join(f"  {code.value:22} {DESCRIPTIONS[code]}" for code in ErrorCode)
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fileops",
        description="Check, simulate and apply file-operation plans inside a case folder.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fileops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print the result document")
        return sub

    validate = command("validate", "check a plan's schema, limits and paths (no tree needed)")
    validate.add_argument("plan", help="plan file, or - for stdin")

    plan = command("plan", "dry run: show what the plan would change (never changes anything)")
    plan.add_argument("plan", help="plan file, or - for stdin")
    _add_root(plan, required=True)

    apply = command("apply", "apply the plan as its dry_run says; re-run after a crash resumes")
    apply.add_argument("plan", help="plan file, or - for stdin")
    _add_root(apply, required=True)
    apply.add_argument(
        "--state-dir",
        help="journals and results, outside ROOT (default: $FILEOPS_STATE_DIR, else "
        "~/.local/state/fileops/<hash of ROOT or gs://BUCKET>)",
    )
    apply.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="steps run at once (default $FILEOPS_APPLY_PARALLELISM or 1; try 16 on gcsfuse)",
    )
    apply.add_argument(
        "--max-steps-per-second",
        type=_rate,
        default=None,
        metavar="R",
        help="start at most R steps per second, to spare a shared bucket "
        "(default $FILEOPS_APPLY_MAX_STEPS_PER_SECOND or 0: no cap)",
    )

    undo = command(
        "undo",
        "undo an applied plan (or an undo): show what its stored inverse would change, and "
        "with --apply make the changes; through the daemon, or with --root locally",
    )
    undo.add_argument("plan_id")
    _add_root(undo, required=False, mode="local mode: ")
    undo.add_argument("--state-dir", help="local mode: journals (default: as for apply)")
    preview = undo.add_mutually_exclusive_group()
    preview.add_argument("--apply", action="store_true", help="apply it, not only preview it")
    preview.add_argument("--dry-run", action="store_true", help="only preview (the default)")
    undo.add_argument("--wait", action="store_true", help="daemon mode: wait for the result")
    undo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")

    submit = command("submit", "publish a plan to the daemon (a dry run unless --apply)")
    submit.add_argument("plan", help="plan file, or - for stdin")
    submit.add_argument("--apply", action="store_true", help="apply it (sets dry_run false)")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait for and print the result (an apply's progress shows on a terminal)",
    )
    submit.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")

    watch = command("watch", "print results as they arrive, one line per plan")
    watch.add_argument("--case", help="only this case")
    watch.add_argument(
        "--status",
        choices=[
            status.value
            for status in ResultStatus
            if status is not ResultStatus.AWAITING_APPROVAL  # not (yet) offered here
        ],
    )
    watch.add_argument("--subscription", help="reuse (or create and keep) this subscription")
    watch.add_argument("--count", type=int, default=0, help="stop after this many results")
    watch.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")

    status = command("status", "a plan's ledger record: state, owner, lease, progress, result")
    status.add_argument("plan_id")
    status.add_argument(
        "--follow",
        action="store_true",
        help="print a line as its state or progress changes until it is settled, then its "
        "result (exit status as for submit --wait)",
    )
    status.add_argument(
        "--timeout", type=float, default=None, help="with --follow: give up after this many s"
    )

    from fileops_daemon.cli.mcp_command import add_command as add_mcp_command

    add_mcp_command(commands)
    from fileops_daemon.cli.approvals import add_commands as add_approval_commands

    add_approval_commands(command)

    commands.add_parser(
        "run", help="the daemon: pull plans from Pub/Sub and apply them (config from FILEOPS_*)"
    )
    commands.add_parser(
        "bootstrap", help="create the topics, subscription and buckets (idempotent)"
    )
    return parser


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


def _add_root(parser: argparse.ArgumentParser, *, required: bool, mode: str = "") -> None:
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--root", help=f"{mode}the projects root holding the case folders")
    where.add_argument(
        "--gcs-bucket",
        metavar="BUCKET",
        help=f"{mode}the bucket holding the case folders, changed through the GCS JSON API "
        "(no mount; STORAGE_EMULATOR_HOST reaches an emulator)",
    )


def _root(args: argparse.Namespace) -> str:
    """The projects root as the user named it: a folder, or gs://BUCKET."""
    bucket: str | None = getattr(args, "gcs_bucket", None)
    if not bucket and not os.path.isdir(args.root):  # not every case missing: the root is
        raise UsageError(f"the root {args.root} does not exist or is not a folder (--root)")
    return f"gs://{bucket}" if bucket else str(args.root)


def _volume(args: argparse.Namespace) -> Any:
    """The bucket's volume for --gcs-bucket; None: the folder --root on this machine."""
    bucket: str | None = getattr(args, "gcs_bucket", None)
    if not bucket:
        return None
    from fileops_daemon.gcs import GcsVolume
    from fileops_daemon.service.cloud import storage_client

    # Object requests need no project; the client wants one for bucket-level calls only.
    project = os.environ.get("FILEOPS_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or "-"
    return GcsVolume(bucket, lambda: storage_client(project))


def _state_dir(args: argparse.Namespace) -> str:
    """--state-dir, $FILEOPS_STATE_DIR, or one folder per projects root under the user's
    state home; never inside the projects root (whoever can write there could plant links)."""
    chosen = args.state_dir or os.environ.get("FILEOPS_STATE_DIR")
    # A bucket (--gcs-bucket): every local folder is outside it.
    root = os.path.realpath(args.root) if args.root else _root(args)
    if not chosen:
        home = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        tag = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
        chosen = os.path.join(home, "fileops", tag)
    real = os.path.realpath(chosen)
    if args.root and (real == root or real.startswith(root.rstrip(os.sep) + os.sep)):
        raise UsageError(f"the state folder {chosen} is inside the projects root {args.root}")
    return chosen


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    with open(source, "rb") as handle:
        return handle.read()


def _emit(
    result: dict[str, Any],
    as_json: bool,
    *,
    undo_hint: str | None = None,
    encoded: bytes | None = None,
) -> int:
    from fileops_daemon.cli.output import emit_result

    return emit_result(result, as_json, undo_hint=undo_hint, encoded=encoded)


def _local_undo_hint(plan_id: str, args: argparse.Namespace) -> str:
    from fileops_daemon.cli.output import undo_command_line

    local = ["--root", args.root] if args.root else ["--gcs-bucket", args.gcs_bucket]
    if args.state_dir:
        local += ["--state-dir", args.state_dir]
    return undo_command_line(plan_id, *local)


def _parse(raw: bytes) -> tuple[Any, dict[str, Any] | None]:
    """The plan, or (None, a rejected result) when it cannot be parsed."""
    from fileops_daemon.contract.limits import Limits
    from fileops_daemon.contract.plan import decode_json, parse_plan
    from fileops_daemon.contract.results import now, refusal_result
    from fileops_daemon.core.gcpause import paused_gc

    started = now()
    try:
        with paused_gc():  # the plan's objects all stay alive: nothing for a collection
            return parse_plan(raw, Limits.from_env()), None
    except PlanError as exc:
        try:  # the ids, for the report, when the document decodes at all
            document = decode_json(raw)
        except PlanError:
            document = None
        return None, refusal_result(document, exc, started)


def _validate(args: argparse.Namespace) -> int:
    from fileops_daemon.core.simulate import confine_plan

    plan, refusal = _parse(_read(args.plan))
    errors = refusal["errors"] if refusal else [e.to_dict() for e in confine_plan(plan)[1]]
    report = {
        "plan_id": plan.plan_id if plan else (refusal or {}).get("plan_id", ""),
        "valid": not errors,
        "operations": len(plan.operations) if plan else 0,
        "errors": errors,
    }
    if args.json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    elif not errors:
        print(f"valid: plan {report['plan_id']!r}, {report['operations']} operation(s)")
    if errors:
        from fileops_daemon.client.render import error_text

        for error in errors:  # one line each, with the path it is about
            where = f"operation {error['operation']}: " if "operation" in error else ""
            print(f"fileops: invalid: {where}{error_text(error)}", file=sys.stderr)
        return EXIT_REJECTED
    return EXIT_OK


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    from fileops_daemon.core.pacing import StepPacer

    try:
        StepPacer(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _progress_callback() -> Any:
    """A progress bar on an interactive stderr, nothing otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import Progress

    from fileops_daemon.cli.output import console

    progress = Progress(console=console(stderr=True), transient=True)
    task = progress.add_task("applying", total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, update


def _apply(plan: Any, args: argparse.Namespace) -> ApplyOutcome:
    from fileops_daemon.contract.envvars import ConfigError, env_float, env_int
    from fileops_daemon.contract.limits import Limits
    from fileops_daemon.core.execute import apply_plan
    from fileops_daemon.core.pacing import StepPacer

    progress, update = _progress_callback()
    if progress is not None:
        progress.start()
    try:
        # Undo has no such options: it runs with the environment's settings.
        parallel = getattr(args, "parallel", None)
        if parallel is None:
            parallel = env_int(os.environ, "FILEOPS_APPLY_PARALLELISM", 1)
        rate = getattr(args, "max_steps_per_second", None)
        if rate is None:
            rate = env_float(os.environ, "FILEOPS_APPLY_MAX_STEPS_PER_SECOND", 0.0)
        try:
            pacer = StepPacer(rate)
        except ValueError as exc:
            raise ConfigError(f"FILEOPS_APPLY_MAX_STEPS_PER_SECOND: {exc}") from None
        return apply_plan(
            plan,
            _root(args),
            _state_dir(args),
            volume=_volume(args),
            limits=Limits.from_env(),
            on_step=update,
            parallelism=max(1, parallel),
            pacer=pacer,
        )
    finally:
        if progress is not None:
            progress.stop()


def _run(args: argparse.Namespace) -> int:
    if args.command in ("run", "bootstrap"):
        from fileops_daemon.service.daemon import bootstrap_command, run_daemon

        return run_daemon() if args.command == "run" else bootstrap_command()
    if args.command == "validate":
        return _validate(args)
    if args.command == "mcp":
        from fileops_daemon.cli.mcp_command import mcp_command

        return mcp_command(args)
    if args.command in ("pending", "approve", "reject", "console"):  # cli/approvals.py
        return int(args.handler(args))
    if args.command in ("submit", "watch", "status") or (
        args.command == "undo" and args.root is None and args.gcs_bucket is None
    ):
        from fileops_daemon.cli import remote as ops

        handlers = {
            "submit": ops.submit_command,
            "watch": ops.watch_command,
            "status": ops.status_command,
            "undo": ops.undo_command,
        }
        return int(handlers[args.command](args))
    if args.command == "undo":
        return _undo(args)
    plan, refusal = _parse(_read(args.plan))
    if refusal is not None:
        return _emit(refusal, args.json)
    if args.command == "plan":
        from fileops_daemon.contract.limits import Limits
        from fileops_daemon.core.execute import dry_run

        plan = dataclasses.replace(plan, dry_run=True)
        simulated = dry_run(plan, _root(args), limits=Limits.from_env(), volume=_volume(args))
        return _emit(simulated.result, args.json)
    outcome = _apply(plan, args)
    hint = _local_undo_hint(plan.plan_id, args)
    return _emit(outcome.result, args.json, undo_hint=hint, encoded=outcome.encoded)


def _undo(args: argparse.Namespace) -> int:
    from fileops_daemon.contract.limits import Limits
    from fileops_daemon.contract.results import now, refusal_result
    from fileops_daemon.core.store import PlanStore
    from fileops_daemon.core.undo import build_undo_plan, undo_plan_id

    stored = PlanStore(_state_dir(args), args.plan_id).read_undo()
    if stored is None:
        error = PlanError(
            ErrorCode.UNDO_UNAVAILABLE,
            f"no inverse plan is stored for {args.plan_id!r} in {_state_dir(args)}",
        )
        print(f"fileops: {error.code.value}: {error.message}", file=sys.stderr)
        return EXIT_REJECTED
    # Read back from disk: it goes through the same parse and gate as any plan.
    case_name = stored.get("case_name") if isinstance(stored, dict) else None
    try:
        plan = build_undo_plan(
            args.plan_id,
            stored,
            case_name if isinstance(case_name, str) else "",
            dry_run=not args.apply,  # a preview unless --apply, as through the daemon
            limits=Limits.from_env(),
        )
    except PlanError as exc:
        document = {"plan_id": undo_plan_id(args.plan_id), "case_name": case_name}
        return _emit(refusal_result(document, exc, now()), args.json)
    from fileops_daemon.core.outcome import RunEnd

    outcome = _apply(plan, args)
    hint = _local_undo_hint(plan.plan_id, args)
    code = _emit(outcome.result, args.json, undo_hint=hint, encoded=outcome.encoded)
    if outcome.end is RunEnd.PLANNED and not args.json:
        print("a preview: add --apply to make these changes", file=sys.stderr)
    return code


def _closed_pipe() -> int:
    """The reader of stdout is gone (``fileops ... | head``): stop quietly. stdout is pointed
    at /dev/null so the interpreter's final flush cannot fail again and print a traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_CLOSED_PIPE


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from fileops_daemon.logs import configure_logging

    if args.command not in ("run", "bootstrap"):  # the daemon configures its own logging
        configure_logging(json_output=False, level="INFO" if args.verbose else "WARNING")
        if not args.verbose:  # no credentials: the one line says it, not google-auth first
            import logging

            for name in ("google.auth._default", "google.auth.compute_engine._metadata"):
                logging.getLogger(name).setLevel(logging.ERROR)
    from fileops_daemon.contract.envvars import ConfigError

    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except ConfigError as exc:
        print(f"fileops: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except FileNotFoundError as exc:
        print(f"fileops: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"fileops: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # A command that knows what an interruption left behind says it; else the local
        # commands' rule: their journals make running the same command again resume.
        said = str(exc) or "interrupted; run the same command again to resume"
        print(f"fileops: {said}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:  # one line, never a traceback; -v shows the details
        if args.verbose:
            raise
        problem = _infrastructure_problem(exc)
        if problem is not None:
            print(f"fileops: {problem.message}. {problem.advice}", file=sys.stderr)
            return int(problem.exit_code)
        print(f"fileops: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _infrastructure_problem(exc: Exception) -> InfraProblem | None:
    """What a person must fix around the command (an unreachable host, no credentials, a
    missing topic or bucket), or None. Only commands that talk to Pub/Sub or GCS meet these,
    and they have the cloud libraries loaded already."""
    if "google.api_core" not in sys.modules:
        return None
    from fileops_daemon.client.infra import classify

    return classify(exc)
