"""A claimed plan's lease: kept alive while the plan applies, and given back when it stops."""

from __future__ import annotations

import threading
from typing import Any

import structlog

from fileops_daemon.service.ledger import LeaseLostError, Ledger, Record

__all__ = ["LeaseKeeper", "release_quietly"]

log = structlog.get_logger("fileops.lease")


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
        """End the lease now, once the keeper has stopped renewing it."""
        release_quietly(self.ledger, self.record)

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
