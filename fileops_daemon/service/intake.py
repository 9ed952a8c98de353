"""What a message is, before anything is decided about it: authenticated (with signing on),
parsed as a plan, an undo request or an approval wake-up, and its attributes cross-checked;
PlanError says why not (the message is then answered, unrouted)."""

from __future__ import annotations

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.approval import WakeUp, is_wakeup
from fileops_daemon.contract.errors import ErrorCode, PlanError, shorten
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import Plan, decode_document
from fileops_daemon.contract.signing import verify
from fileops_daemon.core.gcpause import paused_gc
from fileops_daemon.core.undo import UndoRequest, build_undo_plan, parse_message
from fileops_daemon.service.config import Config
from fileops_daemon.service.delivery import Delivery
from fileops_daemon.service.ledger import Ledger

__all__ = ["accept", "check_attributes", "undo_plan"]


def accept(delivery: Delivery, config: Config) -> Plan | UndoRequest | WakeUp:
    """Authenticate, parse and cross-check one message; PlanError says why not."""
    if config.signing_keys:  # before parsing: forged plans get no further
        verify(config.signing_keys, delivery.data, delivery.attributes)
    if b'"approval_of"' in delivery.data:
        document = decode_document(delivery.data, config.limits)
        if is_wakeup(document):
            return WakeUp.from_document(document)
    with paused_gc():  # the plan's objects all stay alive: nothing for a collection
        message = parse_message(delivery.data, config.limits)
    if isinstance(message, Plan):
        check_attributes(message, delivery.attributes)
    return message


def undo_plan(request: UndoRequest, ledger: Ledger, limits: Limits) -> Plan:
    """The undo plan of ``request.undo_of``, built from the inverse this daemon stored."""
    record = ledger.read(request.undo_of)
    if record is None or record.state != "done" or record.undo is None:
        raise PlanError(
            ErrorCode.UNDO_UNAVAILABLE,
            f"no inverse plan is recorded for {request.undo_of!r} (not applied, or unknown)",
        )
    if request.case_name is not None and request.case_name != record.case_name:
        raise PlanError(
            ErrorCode.SCHEMA_VIOLATION,
            f"plan {request.undo_of!r} was applied to {record.case_name!r}, "
            f"not {request.case_name!r}",
        )
    return build_undo_plan(
        request.undo_of,
        record.undo,
        record.case_name,
        dry_run=request.dry_run,
        limits=limits,
    )


def check_attributes(plan: Plan, attributes: dict[str, str]) -> None:
    """Attributes route and filter messages; they must not disagree with the plan."""
    expected = {
        attr.PLAN_ID: plan.plan_id,
        attr.CASE_NAME: plan.case_name,
        attr.DRY_RUN: "true" if plan.dry_run else "false",
    }
    for name, value in expected.items():
        given = attributes.get(name)
        if given is not None and given != value:
            raise PlanError(
                ErrorCode.SCHEMA_VIOLATION,
                f"message attribute {name}={shorten(repr(given), 200)} disagrees with the "
                f"plan's {value!r}",
            )
