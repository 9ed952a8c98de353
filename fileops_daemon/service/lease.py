"""A claimed plan's lease: kept alive while the plan applies, and given back when it stops."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import structlog

from fileops_daemon.core.journal import Journal, JournalPhase
from fileops_daemon.core.store import PlanStore
from fileops_daemon.service.ledger import LeaseLostError, Ledger, Record, RecordState

__all__ = ["LeaseKeeper", "release_quietly", "seed_local_journal"]

log = structlog.get_logger("fileops.lease")

#: Journal states after which the apply's next ledger write is its completion (handler.py).
_FINAL = frozenset({JournalPhase.APPLIED.value, JournalPhase.ROLLED_BACK.value})


class LeaseKeeper:
    """Keeps a claimed plan's lease alive and mirrors the journal to the ledger.

    Renews from a thread every third of the lease, and on every journal sync (with the
    progress). Each write names the generation it read: if another daemon took the plan over,
    the write fails, ``lost`` is set, and the next step raises LeaseLostError. Left by any
    other exception (a pause, a fault), it gives the lease back, named by the generation it
    last wrote, so the plan's next delivery need not wait the lease out.
    """

    def __init__(self, ledger: Ledger, record: Record, interval: float) -> None:
        self.ledger = ledger
        self.record = record
        self.interval = interval
        self.lost = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress: dict[str, Any] = dict(record.progress)
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is not None and not issubclass(exc_type, LeaseLostError):
            self.release()

    def release(self) -> None:
        """End the lease now, once the keeper has stopped renewing it (with the progress
        not written yet)."""
        release_quietly(self.ledger, replace(self.record, progress=dict(self._progress)))

    def complete(self, result: dict[str, Any], undo: dict[str, Any] | None = None) -> Record:
        """Record the plan done, with its last progress (a finished apply's final checkpoint
        is written here, see journal_synced); LeaseLostError if someone took over."""
        with self._lock:
            self.record = self.ledger.complete(
                replace(self.record, progress=dict(self._progress)), result, undo
            )
            return self.record

    def hold(self, result: dict[str, Any], approval: dict[str, Any]) -> Record:
        """Record the plan as awaiting a decision (the gate held it before its first step);
        LeaseLostError if someone took over."""
        with self._lock:
            self.record = self.ledger.hold(self.record, result, approval)
            self._stop.set()  # a held plan has no lease to keep
            return self.record

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._renew()
            except LeaseLostError:
                return
            except Exception:  # a transient GCS fault: the next beat tries again
                log.warning(
                    "lease.renew_failed",
                    plan_id=self.record.plan_id,
                    case_name=self.record.case_name,
                    exc_info=True,
                )

    def _renew(self, **progress: Any) -> None:
        with self._lock:
            if self.record.state == RecordState.AWAITING_APPROVAL:
                return  # held: nothing to renew (a beat that was already waiting)
            if self.lost.is_set():
                raise LeaseLostError(f"plan {self.record.plan_id} was taken over")
            self._progress.update(progress)
            try:
                self.record = self.ledger.renew(self.record, dict(self._progress))
            except LeaseLostError:
                self.lost.set()
                raise

    # -- the executor's hooks -------------------------------------------------------------------

    def journal_created(self, header_line: bytes) -> None:
        self.ledger.save_journal(self.record.plan_id, header_line)

    def journal_synced(self, summary: dict[str, Any]) -> None:
        # The epoch says which claim wrote this checkpoint: a takeover compares it with its
        # own local journal's to resume from the newer one.
        if summary.get("state") in _FINAL:
            # The last sync of a finished apply gates no later step, and the record's next
            # write (complete() or release(), below) carries this summary anyway: it is kept
            # for that write instead of costing one of its own. Should this daemon die before
            # that write, the ledger still holds the previous checkpoint, as if the crash had
            # come just before this sync: a takeover resumes from there, and steps without a
            # mark are re-checked against the tree (journal.py), which is how a resume after
            # any crash that lost unsynced marks goes. Steps that follow a sync always waited
            # for its checkpoint, so the tree never ran ahead of an older one.
            with self._lock:
                if self.lost.is_set():
                    raise LeaseLostError(f"plan {self.record.plan_id} was taken over")
                self._progress.update(summary, epoch=self.record.attempts)
            return
        self._renew(**summary, epoch=self.record.attempts)

    def on_step(self, done: int, total: int) -> None:
        if self.lost.is_set():
            raise LeaseLostError(f"plan {self.record.plan_id} was taken over")
        with self._lock:
            self._progress.update(steps_done=done, steps_total=total)


def release_quietly(ledger: Ledger, record: Record) -> None:
    """End a lease now; if that fails the lease runs out on its own (slower, still safe)."""
    try:
        ledger.release(record)
    except Exception as exc:
        log.warning(
            "lease.release_failed",
            plan_id=record.plan_id,
            case_name=record.case_name,
            error=f"{type(exc).__name__}: {exc}",
        )


def seed_local_journal(ledger: Ledger, store: PlanStore, record: Record, bound: Any) -> None:
    """A takeover: rebuild the journal from the ledger unless this machine has it, or
    the ledger's checkpoint is newer (written by a later claim than our journal's: the
    plan went on elsewhere after we handed it over). The journal is checked when the
    apply resumes it (StateInvalidError here for malformed progress)."""
    if store.has_journal():
        theirs, ours = record.progress.get("epoch"), store.read_epoch()
        if type(theirs) is not int or (ours is not None and theirs <= ours):
            return
        bound.warning("journal.superseded", local_epoch=ours, checkpoint_epoch=theirs)
    header = ledger.load_journal(record.plan_id)
    if header is None:
        return  # the previous owner died before its first step: start afresh
    store.ensure()
    Journal.seed(store.journal_path, header, record.progress)
