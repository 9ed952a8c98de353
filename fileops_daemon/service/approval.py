"""Plans that wait for an operator: the policy, the decisions, and what the daemon makes of
them.

A plan the policy picks (dry_run false) is simulated, recorded in the ledger as
``awaiting_approval`` with its document and the digest of its simulated changes, and answered
``awaiting_approval`` at once; its message is acked. An operator's signed decision
(``approvals/<plan_id>.json`` in the ledger bucket, written only if absent) and a wake-up
message then settle it: approved, it is applied through the normal path if the tree would
still change the same way (else ``tree_changed``); rejected or expired, it is answered
``rejected``. ``awaiting/<plan_id>.json`` indexes the waiting plans for ``fileops pending``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from google.cloud import storage

from fileops_daemon.contract.approval import (
    REJECT,
    Decision,
    WakeUp,
    changes_digest,
    verify_decision,
)
from fileops_daemon.contract.envvars import ConfigError, env_int
from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import Plan, parse_plan
from fileops_daemon.contract.results import ResultStatus, build_result
from fileops_daemon.contract.signing import load_key
from fileops_daemon.core.execute import ApplyOutcome, RunEnd, dry_run
from fileops_daemon.core.volume import LocalVolume, Volume
from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.ledger import AWAITING_APPROVAL, Ledger, Record
from fileops_daemon.service.ledger_store import GenerationMismatchError, LedgerStore

__all__ = [
    "Answer",
    "ApprovalDesk",
    "ApprovalPolicy",
    "DecisionStore",
    "Proceed",
    "parse_duration",
]

log = structlog.get_logger("fileops.approval")

DEFAULT_TTL_SECONDS = 7 * 24 * 3600.0
_PLAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, raw: str) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``12h`` or ``7d``; ConfigError otherwise."""
    text = raw.strip().lower()
    unit = _UNITS.get(text[-1:], 0) if text else 0
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{name} must be seconds or a number with s/m/h/d, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be more than 0, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", ""):
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true", "yes")


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which plans an operator must approve before they are applied. Off by default."""

    #: A plan with more file steps than this waits; 0 = no limit.
    min_steps: int = 0
    #: A plan that deletes or overwrites anything (sends it to the trash) waits.
    on_trash: bool = False
    #: fnmatch patterns: a plan of a matching case waits.
    cases: tuple[str, ...] = ()
    #: How long a waiting plan may be approved; then it is rejected (approval_expired).
    ttl_seconds: float = DEFAULT_TTL_SECONDS
    #: HMAC keys of the operators' decisions (current first).
    keys: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.min_steps or self.on_trash or self.cases)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApprovalPolicy:
        min_steps = env_int(env, "FILEOPS_APPROVAL_MIN_STEPS", 0, minimum=0)
        on_trash = _flag(env, "FILEOPS_APPROVAL_ON_TRASH")
        cases = tuple(
            p.strip() for p in env.get("FILEOPS_APPROVAL_CASES", "").split(",") if p.strip()
        )
        raw_ttl = env.get("FILEOPS_APPROVAL_TTL", "")
        ttl = parse_duration("FILEOPS_APPROVAL_TTL", raw_ttl) if raw_ttl else DEFAULT_TTL_SECONDS
        keys = []
        for name in ("FILEOPS_APPROVAL_KEY_FILE", "FILEOPS_APPROVAL_KEY_FILE_PREVIOUS"):
            if env.get(name, "").strip():
                try:
                    keys.append(load_key(env[name]))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{name}: {exc}") from None
        policy = cls(min_steps, on_trash, cases, ttl, tuple(keys))
        if policy.enabled and not keys:
            raise ConfigError(
                "an approval policy is set (FILEOPS_APPROVAL_MIN_STEPS, _ON_TRASH or _CASES) "
                "but FILEOPS_APPROVAL_KEY_FILE is not: without it nobody could approve safely; "
                "refusing to start"
            )
        return policy

    def reasons(self, case_name: str, simulated: Mapping[str, Any]) -> list[str]:
        """Why this simulated plan needs approval; empty when it does not."""
        reasons = []
        steps = int(simulated.get("steps", 0))
        if self.min_steps and steps > self.min_steps:
            reasons.append(f"{steps} file steps, more than {self.min_steps}")
        trashed = sum(1 for c in simulated.get("changes", []) if c.get("action") == "trash")
        if self.on_trash and trashed:
            reasons.append(f"{trashed} item(s) deleted or overwritten")
        for pattern in self.cases:
            if fnmatch.fnmatchcase(case_name, pattern):
                reasons.append(f"case matches {pattern!r}")
                break
        return reasons


class DecisionStore:
    """The operators' decisions and the index of waiting plans, in the ledger's store.

    ``bucket``, the same state bucket, lists and prunes the index; without it (in-memory
    stores in unit tests) the index is written and never pruned.
    """

    def __init__(
        self,
        store: LedgerStore,
        bucket: storage.Bucket | None = None,
        retry: CloudRetry | None = None,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.retry = retry or CloudRetry(3)

    @staticmethod
    def decision_name(plan_id: str) -> str:
        return f"approvals/{plan_id}.json"

    @staticmethod
    def index_name(plan_id: str) -> str:
        return f"awaiting/{plan_id}.json"

    def read(self, plan_id: str) -> Any | None:
        """The stored decision document (unverified), or None."""
        found = self.store.read(self.decision_name(plan_id))
        if found is None:
            return None
        try:
            return json.loads(found.data)
        except ValueError:
            return {}  # not a decision: verification refuses it

    def create(self, plan_id: str, document: Mapping[str, Any]) -> bool:
        """Store a decision unless one exists (True if this one won)."""
        return create_once(self.store, self.decision_name(plan_id), document)

    def index(self, plan_id: str, case_name: str, at: float) -> None:
        entry = {"plan_id": plan_id, "case_name": case_name, "at": at}
        create_once(self.store, self.index_name(plan_id), entry)

    def unindex(self, plan_id: str) -> None:
        """Best effort: ``fileops pending`` skips an entry whose plan no longer waits."""
        if self.bucket is not None:
            with contextlib.suppress(Exception):
                self.retry.call(self.bucket.blob(self.index_name(plan_id)).delete, retry=None)

    @property
    def listable(self) -> bool:
        """Whether :meth:`indexed` can list the index (it needs ``bucket``)."""
        return self.bucket is not None

    def indexed(self) -> Iterator[str]:
        """The plan ids in the index (needs ``bucket``)."""
        assert self.bucket is not None, "listing the index needs the bucket"
        bucket = self.bucket
        for blob in self.retry.call(lambda: list(bucket.list_blobs(prefix="awaiting/"))):
            name = blob.name.removeprefix("awaiting/").removesuffix(".json")
            if _PLAN_ID.fullmatch(name):
                yield name


def create_once(
    store: LedgerStore, name: str, document: Mapping[str, Any], *, indent: int | None = 1
) -> bool:
    """Write ``document`` as ``name`` unless it exists (True if this write created it)."""
    data = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=indent).encode("utf-8")
    try:
        store.write(name, data, content_type="application/json", if_generation_match=0)
    except GenerationMismatchError:
        return False
    return True


@dataclass(frozen=True)
class Answer:
    """Answer the message with ``result``, routed to ``client_id`` (the plan's submitter)."""

    result: dict[str, Any]
    client_id: str


@dataclass(frozen=True)
class Proceed:
    """Apply ``plan`` (approved) through the normal path; answer ``client_id``."""

    plan: Plan
    client_id: str


def source_listing(projects_root: str, changes: list[dict[str, Any]]) -> list[list[Any]]:
    """What the changes take away or take from below a local projects root: each moved, copied
    or trashed item and everything below it, as (path, kind, size, mtime_ns)."""
    return LocalVolume(projects_root).source_listing(change_sources(changes))


def change_sources(changes: list[dict[str, Any]]) -> list[str]:
    """The paths the changes take away or take from (moved, copied or trashed), once each."""
    sources: dict[str, None] = {}  # ordered, each once
    for change in changes:
        source = change.get("path") if change.get("action") == "trash" else change.get("from")
        if isinstance(source, str):
            sources[source] = None
    return list(sources)


def timestamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ApprovalDesk:
    """The daemon's side: hold plans the policy picks, and act on decisions."""

    def __init__(
        self,
        policy: ApprovalPolicy,
        ledger: Ledger,
        decisions: DecisionStore,
        audit: LedgerStore,
        *,
        projects_root: str,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        volume: Volume | None = None,
    ) -> None:
        self.policy = policy
        self.ledger = ledger
        self.decisions = decisions
        self.audit = audit
        self.projects_root = projects_root
        self.volume = volume or LocalVolume(projects_root)
        self.limits = limits
        self.clock = clock

    # -- a plan arrives ---------------------------------------------------------------------------

    def gate(
        self, plan: Plan, client_id: str, started: datetime, attempt: int
    ) -> dict[str, Any] | None:
        """The ``awaiting_approval`` result if ``plan`` (new, to apply) must wait; None if it
        may go on (the policy does not pick it, or the simulation refuses it anyway)."""
        simulation = self._simulate(plan, attempt)
        if simulation.end is not RunEnd.PLANNED:
            return None
        simulated = simulation.result
        reasons = self.policy.reasons(plan.case_name, simulated)
        if not reasons:
            return None
        at = self.clock()
        expires = at + self.policy.ttl_seconds
        digest = self._digest(simulated)
        result = {
            **simulated,
            "status": AWAITING_APPROVAL,
            "approval": {
                "changes_digest": digest,
                "reasons": reasons,
                "expires_at": timestamp(expires),
            },
        }
        approval = {
            "plan": dict(plan.document),
            "changes_digest": digest,
            "reasons": reasons,
            "requested_at": at,
            "expires_at": expires,
            "client_id": client_id,
        }
        record = self.ledger.await_approval(
            plan.plan_id, plan.digest, plan.case_name, result, approval
        )
        if record is None:  # a duplicate got there first: the caller reads its record
            current = self.ledger.read(plan.plan_id)
            if current is not None and current.state == AWAITING_APPROVAL:
                return self.still_waiting(current, started, attempt)
            return None
        self.decisions.index(plan.plan_id, plan.case_name, at)
        log.info(
            "approval.awaiting",
            plan_id=plan.plan_id,
            case_name=plan.case_name,
            reasons=reasons,
            changes_digest=digest,
        )
        return result

    def still_waiting(self, record: Record, started: datetime, attempt: int) -> dict[str, Any]:
        """A duplicate of a waiting plan: its awaiting result again, or, once the approval
        expired, the rejection that ends it."""
        if self._expired(record):
            return self._expire(record, started, attempt)
        assert record.result is not None
        return record.result

    @staticmethod
    def client_of(record: Record) -> str:
        return str((record.approval or {}).get("client_id") or "")

    def decided_before(self, moment: float) -> list[tuple[str, str]]:
        """(plan_id, case_name) of each indexed plan still waiting although a decision on it
        was stored before ``moment`` (unverified: its wake-up verifies it). Empty when the
        index cannot be listed."""
        if not self.decisions.listable:
            return []
        found = []
        for plan_id in self.decisions.indexed():
            record = self.ledger.read(plan_id)
            if record is None or record.state != AWAITING_APPROVAL:
                continue
            document = self.decisions.read(plan_id)
            at = document.get("at") if isinstance(document, dict) else None
            if isinstance(at, int | float) and not isinstance(at, bool) and at < moment:
                found.append((plan_id, record.case_name))
        return found

    # -- a wake-up arrives ------------------------------------------------------------------------

    def rule(self, wakeup: WakeUp, started: datetime, attempt: int) -> Answer | Proceed:
        """What a wake-up for ``wakeup.approval_of`` comes to. PlanError when it carries no
        valid decision: the wake-up is refused and the plan is left as it is."""
        plan_id = wakeup.approval_of
        if not _PLAN_ID.fullmatch(plan_id):
            raise PlanError(ErrorCode.APPROVAL_MISSING, "approval_of is not a plan_id")
        record = self.ledger.read(plan_id)
        if record is None or record.approval is None:
            raise PlanError(
                ErrorCode.APPROVAL_MISSING, f"no plan {plan_id!r} is or was awaiting approval"
            )
        client = self.client_of(record)
        if record.state == "done" and record.result is not None:
            return Answer(record.result, client)  # decided before: the same answer again
        document = self.decisions.read(plan_id)
        if document is None:
            if record.state == AWAITING_APPROVAL and self._expired(record):
                return Answer(self._expire(record, started, attempt), client)
            raise PlanError(ErrorCode.APPROVAL_MISSING, f"no decision is recorded on {plan_id!r}")
        decision = verify_decision(self.policy.keys, document)
        approval = record.approval
        if (
            decision.plan_id != plan_id
            or decision.plan_digest != record.digest
            or decision.changes_digest != approval.get("changes_digest")
        ):
            raise PlanError(
                ErrorCode.APPROVAL_FORGED,
                f"the decision on {plan_id!r} is for another plan or other changes",
            )
        stored = approval.get("plan")
        if not isinstance(stored, dict):
            raise PlanError(ErrorCode.STATE_INVALID, "no plan document is stored for the plan")
        plan = parse_plan(stored, self.limits)
        if plan.digest != record.digest or plan.dry_run:
            raise PlanError(ErrorCode.STATE_INVALID, "the stored plan does not match its record")
        if record.state != AWAITING_APPROVAL:
            return Proceed(plan, client)  # approved and begun: resume it
        self._audit(decision, record)
        if decision.decision == REJECT:
            error = PlanError(
                ErrorCode.APPROVAL_REJECTED,
                f"rejected by {decision.by}" + (f": {decision.reason}" if decision.reason else ""),
            )
            return Answer(self._finish(record, error, started, attempt), client)
        if decision.at > float(approval.get("expires_at", 0)):
            return Answer(self._expire(record, started, attempt), client)
        return Proceed(plan, client)

    def recheck(
        self, plan: Plan, record: Record, started: datetime, attempt: int
    ) -> dict[str, Any] | None:
        """Just claimed an approved plan: None if it would still change what was shown,
        else its ``tree_changed`` rejection."""
        self.decisions.unindex(plan.plan_id)
        simulation = self._simulate(plan, attempt)
        shown = (record.approval or {}).get("changes_digest")
        if simulation.end is RunEnd.PLANNED and self._digest(simulation.result) == shown:
            return None
        log.warning("approval.tree_changed", plan_id=plan.plan_id, case_name=plan.case_name)
        error = PlanError(
            ErrorCode.TREE_CHANGED,
            "the tree changed since the simulation that was approved: the plan would now do "
            "something else; nothing was changed. Send a new plan",
        )
        return _rejected(record, error, started, attempt)

    def _simulate(self, plan: Plan, attempt: int) -> ApplyOutcome:
        return dry_run(
            plan, self.volume.root, limits=self.limits, attempt=attempt, volume=self.volume
        )

    def _digest(self, simulated: dict[str, Any]) -> str:
        sources = self.volume.source_listing(change_sources(simulated.get("changes") or []))
        return changes_digest(simulated, sources)

    # -- endings ----------------------------------------------------------------------------------

    def _expired(self, record: Record) -> bool:
        return self.clock() > float((record.approval or {}).get("expires_at", 0))

    def _expire(self, record: Record, started: datetime, attempt: int) -> dict[str, Any]:
        expired = Decision(
            plan_id=record.plan_id,
            decision="expired",
            plan_digest=record.digest,
            changes_digest=str((record.approval or {}).get("changes_digest", "")),
            by="fileops-daemon",
            at=self.clock(),
        )
        self._audit(expired, record)
        error = PlanError(
            ErrorCode.APPROVAL_EXPIRED,
            f"nobody approved the plan before {timestamp(float(record.approval['expires_at']))}"
            if record.approval
            else "the approval expired",
        )
        return self._finish(record, error, started, attempt)

    def _finish(
        self, record: Record, error: PlanError, started: datetime, attempt: int
    ) -> dict[str, Any]:
        """End a waiting plan unapplied: record and return its rejection."""
        result = _rejected(record, error, started, attempt)
        self.ledger.complete(record, result)  # LeaseLostError if another decision won
        self.decisions.unindex(record.plan_id)
        log.info(
            "approval.ended",
            plan_id=record.plan_id,
            case_name=record.case_name,
            code=error.code.value,
        )
        return result

    def _audit(self, decision: Decision, record: Record) -> None:
        """Who decided what about which digest, once, beside the other audit records."""
        day = datetime.fromtimestamp(decision.at, UTC)
        name = f"approvals/{day:%Y/%m/%d}/{record.plan_id}.json"
        document = {
            "plan_id": decision.plan_id,
            "case_name": record.case_name,
            "decision": decision.decision,
            "by": decision.by,
            "at": timestamp(decision.at),
            "reason": decision.reason,
            "plan_digest": decision.plan_digest,
            "changes_digest": decision.changes_digest,
        }
        create_once(self.audit, name, document, indent=None)  # one line: a BigQuery NDJSON row


def _rejected(record: Record, error: PlanError, started: datetime, attempt: int) -> dict[str, Any]:
    return build_result(
        plan_id=record.plan_id,
        case_name=record.case_name,
        dry_run=False,
        status=ResultStatus.REJECTED,
        started=started,
        errors=[error],
        attempt=attempt,
        extra={"plan_digest": record.digest},
    )
