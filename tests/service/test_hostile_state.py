"""Hostile tests through the daemon on the emulators: forged undo, takeover, crafted state.

A compromised agent can publish to the plans topic, and anyone who can write to the state
bucket can plant a ledger checkpoint or a journal: neither may move anything outside its case,
block an undo, or make a result contradict the tree.
"""

from __future__ import annotations

import errno
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.identity import legacy_plan_digest
from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core import execute
from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.config import Config
from fileops_daemon.service.delivery import Delivery
from fileops_daemon.service.handler import PlanHandler, Verdict, placeholder_plan_id
from fileops_daemon.service.ledger import Ledger
from fileops_daemon.service.ledger_store import GcsLedgerStore
from fileops_daemon.service.outputs import AuditLog
from tests.daemon_support import Stack
from tests.support import CASE, error_codes, snapshot

pytest_plugins = ["tests.conftest_daemon"]


def sample_case(stack: Stack) -> Path:
    case = stack.case(
        CASE,
        {
            "uncategorized/file1.pdf": "one\n",
            "uncategorized/file2.pdf": "two\n",
            "Investigation/report.txt": "report\n",
        },
    )
    stack.case("Other-Case", {"secret.txt": "not yours\n"})
    return case


REORG: list[dict[str, Any]] = [
    {"type": "mkdir", "path": f"{CASE}/Medical Records"},
    {
        "type": "move",
        "from": f"{CASE}/uncategorized/file1.pdf",
        "to": f"{CASE}/Medical Records/file1.pdf",
    },
    {"type": "delete", "path": f"{CASE}/uncategorized/file2.pdf"},
]


def plan(plan_id: str, ops: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"plan_id": plan_id, "case_name": CASE, "dry_run": False, "operations": ops, **extra}


class TestUndoCannotBeForgedOrBlocked:
    def test_forged_undo_plans_are_refused_and_the_real_undo_still_works(
        self, stack: Stack
    ) -> None:
        stack.bootstrap()
        sample_case(stack)
        before = stack.tree()
        stack.start_daemon()
        stack.publish(plan("reorg-1", REORG))
        applied = stack.results.wait_plan("reorg-1", 30)[-1]
        assert applied["status"] == "applied", applied
        after = stack.tree()

        trash = f"{CASE}/.fileops/reorg-1/trash/2/uncategorized/file2.pdf"
        steal = plan(
            "steal-1",
            [{"type": "move", "from": trash, "to": f"{CASE}/stolen.pdf"}],
            undo_of="reorg-1",
        )
        block = plan("reorg-1.undo", [{"type": "mkdir", "path": f"{CASE}/squatter"}])
        for forged in (steal, block):
            # Refused while parsing: answered under the daemon's own name for the message,
            # never under the id the sender chose.
            message_id = stack.publish(forged)
            [refused] = stack.results.wait_plan(placeholder_plan_id(message_id), 30)
            assert refused["status"] == "rejected", refused
            assert error_codes(refused) == ["undo_forged"]
        assert stack.tree() == after, "a forged undo changed the tree"
        assert stack.ledger_record("reorg-1.undo") is None, "a forged plan took the undo id"

        undone = stack.cli("undo", "reorg-1", "--apply", "--wait", "--json", "--timeout", "30")
        assert undone.returncode == 0, undone.stderr
        result = json.loads(undone.stdout)
        assert (result["plan_id"], result["status"]) == ("reorg-1.undo", "applied"), result
        assert {k: v for k, v in stack.tree().items() if ".fileops" not in k} == {
            k: v for k, v in before.items() if ".fileops" not in k
        }

    def test_a_plan_id_of_200_characters_is_undone_by_request(self, stack: Stack) -> None:
        stack.bootstrap()
        sample_case(stack)
        stack.start_daemon()
        long_id = "x" * 200
        stack.publish(plan(long_id, REORG[:2]))
        applied = stack.results.wait_plan(long_id, 30)[-1]
        assert applied["status"] == "applied", applied
        undo_id = applied["undo_plan_id"]
        assert len(undo_id) <= 200
        stack.publish({"undo_of": long_id, "case_name": CASE, "plan_id": undo_id, "dry_run": False})
        undone = stack.results.wait_plan(undo_id, 30)[-1]
        assert undone["status"] == "applied", undone


# --------------------------------------------------------------------------- in-process daemons
#
# Two PlanHandlers (two daemons, each with its own state folder) share a ledger on the real
# fake-gcs-server; results and audit records go to in-memory stand-ins of the project's own
# ResultPublisher and AuditLog. The ledger's clock is what lets a lease run out at once.


class MemoryResults:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(
        self, result: dict[str, Any], extra: dict[str, str] | None = None, data: bytes = b""
    ) -> str:
        self.published.append(result)
        return str(len(self.published))


class DiedError(Exception):
    """Stands for a daemon killed at that point."""


@dataclass
class Daemons:
    root: Path
    tmp: Path
    bucket: Any
    clock_offset: dict[str, float] = field(default_factory=dict)

    def handler(self, name: str) -> PlanHandler:
        config = Config(
            project="inproc",
            state_bucket=self.bucket.name,
            audit_bucket=self.bucket.name,
            projects_root=str(self.root),
            state_dir=str(self.tmp / f"state-{name}"),
            lease_seconds=30,
            worker_id=f"worker-{name}",
            retry_attempts=2,
            retry_initial_wait=0.01,
            retry_max_wait=0.05,
            apply_parallelism=1,
        )

        def clock() -> float:
            return time.time() + self.clock_offset.get(name, 0.0)

        store = GcsLedgerStore(self.bucket, CloudRetry(3, 0.05, 0.2))
        ledger = Ledger(store, config.worker_id, 30, clock=clock)
        audit = AuditLog(self.bucket, CloudRetry(3, 0.05, 0.2))
        return PlanHandler(config, ledger, MemoryResults(), audit)  # type: ignore[arg-type]

    def ledger_record(self, plan_id: str) -> dict[str, Any] | None:
        blob = self.bucket.get_blob(f"plans/{plan_id}.json")
        return None if blob is None else dict(json.loads(blob.download_as_bytes()))


@pytest.fixture
def daemons(emulators: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Daemons:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulators.gcs_endpoint)
    client = storage.Client(
        project="inproc",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulators.gcs_endpoint},
    )
    bucket = client.create_bucket(f"inproc-{uuid.uuid4().hex[:10]}")
    root = tmp_path / "projects"
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "uncategorized" / "file1.pdf").write_text("one\n")
    (root / "Other-Case").mkdir()
    (root / "Other-Case" / "secret.txt").write_text("not yours\n")
    return Daemons(root, tmp_path, bucket)


def delivery(document: dict[str, Any], message_id: str = "m-1") -> Delivery:
    return Delivery(
        data=json.dumps(document).encode(),
        attributes={"plan_id": document["plan_id"], "case_name": document["case_name"]},
        message_id=message_id,
    )


#: A plan whose steps depend on each other: resumed from a stale journal, its second step
#: finds neither its source nor its destination (the third step already moved the file on).
CHAIN = [
    {"type": "mkdir", "path": f"{CASE}/d"},
    {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/d/f.pdf"},
    {"type": "move", "from": f"{CASE}/d/f.pdf", "to": f"{CASE}/final.pdf"},
]


class TestTakeoverResumesFromTheNewestState:
    def test_a_plan_finished_elsewhere_is_not_resumed_from_a_stale_local_journal(
        self, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        doc = plan("chain-1", CHAIN)
        a, b = daemons.handler("a"), daemons.handler("b")
        # A hands the plan over before its first step (its journal exists, nothing done).
        a.hand_over()
        assert a.handle(delivery(doc)).verdict is Verdict.NACK
        assert (daemons.root / CASE / "uncategorized" / "file1.pdf").exists()
        # B takes it over, applies every step, and dies before recording the result.

        def die(*args: Any, **kwargs: Any) -> None:
            raise DiedError

        monkeypatch.setattr(b.ledger, "complete", die)
        assert b.handle(delivery(doc)).verdict is Verdict.NACK  # unrecorded, so not answered
        applied_tree = snapshot(daemons.root, skip_work_dirs=True)
        assert (daemons.root / CASE / "final.pdf").read_text() == "one\n"
        # A gets the plan back once B's lease has run out.
        a.pause.clear()
        daemons.clock_offset["a"] = 3600
        assert a.handle(delivery(doc, "m-2")).verdict is Verdict.ACK
        [result] = a.results.published  # type: ignore[attr-defined]
        assert result["status"] == "applied", result["errors"]
        assert [op["outcome"] for op in result["operations"]] == ["applied"] * 3
        assert snapshot(daemons.root, skip_work_dirs=True) == applied_tree
        record = daemons.ledger_record("chain-1")
        assert record is not None and record["state"] == "done"
        assert record["result"]["status"] == "applied" and record["undo"] is not None


def _plant_checkpoint(
    daemons: Daemons, doc: dict[str, Any], header: dict[str, Any], **progress: Any
) -> None:
    parsed = parse_plan(doc)
    record = {
        "plan_id": doc["plan_id"],
        "digest": parsed.digest,
        "case_name": CASE,
        "state": "claimed",
        "owner": "worker-gone",
        "token": "t",
        "lease_expires_at": 0.0,
        "progress": {"epoch": 1, **progress},
    }
    daemons.bucket.blob(f"plans/{doc['plan_id']}.json").upload_from_string(json.dumps(record))
    daemons.bucket.blob(f"journals/{doc['plan_id']}.jsonl").upload_from_string(
        json.dumps(header) + "\n"
    )


class TestACraftedCheckpointInTheStateBucket:
    def _header(self, doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
        header = {
            "v": 1,
            "plan_id": doc["plan_id"],
            "case_name": CASE,
            "case_folder": CASE,
            "digest": parse_plan(doc).digest,
            "created_at": "2026-01-01T00:00:00+00:00",
            "operations": [
                {"index": 0, "type": "mkdir", "outcome": "ok", "message": "ok"},
            ],
            "changes": [],
            "undo": {},
            "steps": [{"k": "mkdir", "d": ["d"], "o": 0}],
        }
        header.update(changes)
        return header

    @pytest.mark.parametrize(
        "changes",
        [
            # the reported attack: a file of another case moved above the projects root
            {
                "case_folder": "..",
                "steps": [
                    {
                        "k": "rename",
                        "s": ["projects", "Other-Case", "secret.txt"],
                        "d": ["x"],
                        "o": 0,
                    }
                ],
            },
            {
                "steps": [
                    {
                        "k": "rename",
                        "s": ["..", "Other-Case", "secret.txt"],
                        "d": ["..", "..", "x"],
                        "o": 0,
                    }
                ]
            },
            {"case_folder": "Other-Case"},
        ],
    )
    def test_it_is_refused_and_nothing_is_touched(
        self, daemons: Daemons, changes: dict[str, Any]
    ) -> None:
        doc = plan("crafted-1", [{"type": "mkdir", "path": f"{CASE}/d"}])
        _plant_checkpoint(daemons, doc, self._header(doc, **changes))
        before = snapshot(daemons.tmp)
        handler = daemons.handler("a")
        assert handler.handle(delivery(doc)).verdict is Verdict.ACK
        [result] = handler.results.published  # type: ignore[attr-defined]
        assert (result["status"], error_codes(result)) == ("rejected", ["state_invalid"]), result
        after = {k: v for k, v in snapshot(daemons.tmp).items() if not k.startswith("state-")}
        assert after == {k: v for k, v in before.items() if not k.startswith("state-")}
        record = daemons.ledger_record("crafted-1")
        assert record is not None and record["state"] == "done"

    def test_a_huge_progress_range_is_refused_before_it_is_expanded(self, daemons: Daemons) -> None:
        doc = plan("crafted-2", [{"type": "mkdir", "path": f"{CASE}/d"}])
        _plant_checkpoint(daemons, doc, self._header(doc), done=[[0, 10**12]])
        handler = daemons.handler("a")
        assert handler.handle(delivery(doc)).verdict is Verdict.ACK
        [result] = handler.results.published  # type: ignore[attr-defined]
        assert error_codes(result) == ["state_invalid"], result
        assert not (daemons.root / CASE / "d").exists()


class TestSmaller:
    def test_one_transient_eio_in_the_simulation_is_retried(
        self, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = execute.simulate
        faults = iter([OSError(errno.EIO, "Input/output error")])

        def flaky(*args: Any, **kwargs: Any) -> Any:
            fault = next(faults, None)
            if fault is not None:
                raise fault
            return real(*args, **kwargs)

        monkeypatch.setattr(execute, "simulate", flaky)
        handler = daemons.handler("a")
        doc = plan("eio-1", [{"type": "mkdir", "path": f"{CASE}/d"}])
        assert handler.handle(delivery(doc)).verdict is Verdict.ACK
        [result] = handler.results.published  # type: ignore[attr-defined]
        assert result["status"] == "applied", result["errors"]

    def test_a_lasting_eio_is_nacked_and_never_refuses_the_plan_id(
        self, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = execute.simulate

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(execute, "simulate", broken)
        handler = daemons.handler("a")
        doc = plan("eio-2", [{"type": "mkdir", "path": f"{CASE}/d"}])
        assert handler.handle(delivery(doc)).verdict is Verdict.NACK
        assert handler.results.published == []  # type: ignore[attr-defined]
        record = daemons.ledger_record("eio-2")
        assert record is not None and record["state"] == "claimed", record
        # The mount recovers; the redelivered message is applied (the lease was released).
        monkeypatch.setattr(execute, "simulate", real)
        assert handler.handle(delivery(doc, "m-2")).verdict is Verdict.ACK
        [result] = handler.results.published  # type: ignore[attr-defined]
        assert result["status"] == "applied", result["errors"]

    def test_the_audit_record_keeps_the_plan_its_requester_and_reason(
        self, daemons: Daemons
    ) -> None:
        handler = daemons.handler("a")
        doc = plan(
            "audit-1",
            [{"type": "mkdir", "path": f"{CASE}/d"}],
            requested_by="paralegal-agent",
            reason="sort uncategorized files",
        )
        assert handler.handle(delivery(doc)).verdict is Verdict.ACK
        [blob] = [b for b in daemons.bucket.list_blobs() if "/audit-1/" in b.name]
        record = json.loads(blob.download_as_bytes())
        assert record["plan"] == doc
        assert record["requested_by"] == "paralegal-agent"
        assert record["reason"] == "sort uncategorized files"
        assert record["result"]["status"] == "applied"


class TestRecordsOfAnEarlierVersion:
    def test_a_claim_left_under_the_old_digest_is_taken_over_as_the_same_plan(
        self, daemons: Daemons
    ) -> None:
        doc = plan("legacy-1", CHAIN, reason="tidy up")
        assert legacy_plan_digest(doc) != parse_plan(doc).digest
        # An earlier version claimed the plan under the digest of its time, then died.
        old = Ledger(GcsLedgerStore(daemons.bucket, CloudRetry(3, 0.05, 0.2)), "worker-old", 30)
        old.claim("legacy-1", legacy_plan_digest(doc), CASE)
        a = daemons.handler("a")
        daemons.clock_offset["a"] = 3600  # the old worker's lease has run out
        assert a.handle(delivery(doc)).verdict is Verdict.ACK
        [result] = a.results.published  # type: ignore[attr-defined]
        assert result["status"] == "applied", result["errors"]
        record = daemons.ledger_record("legacy-1")
        assert record is not None and record["state"] == "done"
        assert record["digest"] == legacy_plan_digest(doc)  # kept as it was recorded
        assert record["takeovers"] == 1

    def test_another_plan_under_a_used_id_is_told_what_differs(self, daemons: Daemons) -> None:
        a = daemons.handler("a")
        assert a.handle(delivery(plan("used-1", CHAIN))).verdict is Verdict.ACK
        other = [CHAIN[0], {**CHAIN[1], "to": f"{CASE}/d/g.pdf"}, CHAIN[2]]
        assert a.handle(delivery(plan("used-1", other), "m-2")).verdict is Verdict.ACK
        conflict = a.results.published[-1]  # type: ignore[attr-defined]
        assert error_codes(conflict) == ["idempotency_conflict"]
        assert (
            f"operation 1 differs: move {CASE}/uncategorized/file1.pdf -> {CASE}/d/f.pdf "
            f"vs move {CASE}/uncategorized/file1.pdf -> {CASE}/d/g.pdf"
        ) in conflict["errors"][0]["message"]
