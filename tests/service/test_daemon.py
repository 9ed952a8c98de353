"""Integration tests of ``fileops run`` against real emulators (guarantees 4-6 of DESIGN.md).

Each test runs the daemon as a subprocess configured only through FILEOPS_* variables, on its
own Pub/Sub project and buckets, publishes plans like the agent tool and reads results from
its own subscription on the results topic; every result is checked against
``schemas/result.schema.json`` by the collector (tests/daemon_support.py).

Emulator limits designed around (DESIGN.md): pstest redelivers a nack at once (so a message
that fails several times in a row reaches the dead-letter topic in well under a second; tests
that provoke repeated transient failures raise FILEOPS_MAX_DELIVERY_ATTEMPTS), and a message
whose holder died comes back only when its ack deadline ends (about 10 s after the last
lease extension of the Python subscriber): the kill/restart tests wait for that.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.identity import legacy_plan_digest
from fileops_daemon.contract.signing import sign, sign_message
from tests.daemon_support import (
    DaemonProcess,
    Publisher,
    RestartableGCS,
    Stack,
    many_writes_plan,
    schema_errors,
    steps_done,
    token_plan,
    wait_until,
)
from tests.hostile_messages import MESSAGES
from tests.support import CASE

pytest_plugins = ["tests.conftest_daemon"]

REPO = Path(__file__).resolve().parents[2]
SEED = json.loads((REPO / "examples" / "seed-plan.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- helpers


def sample_case(stack: Stack) -> Path:
    """The tree the seed plan expects (as in the README's demo), plus a neighbour case."""
    case = stack.case(
        CASE,
        {
            "uncategorized/file1.pdf": "one\n",
            "uncategorized/file2.pdf": "two\n",
            "Investigation/report.txt": "report\n",
        },
    )
    (case / "Medical Records").mkdir()
    stack.case("Other-Case", {"secret.txt": "not yours\n"})
    return case


def audit_name(result: dict[str, Any], message_id: str) -> str:
    day = datetime.fromisoformat(result["started_at"].replace("Z", "+00:00"))
    return f"{day:%Y/%m/%d}/{result['plan_id']}/{message_id}.json"


def assert_audited(stack: Stack, answers: list[tuple[str, dict[str, Any]]]) -> None:
    """One audit object per (message id, result), holding that result."""
    records = stack.audit_records()
    for message_id, result in answers:
        name = audit_name(result, message_id)
        assert name in records, f"no audit record {name}; audit bucket holds {sorted(records)}"
        assert records[name]["message"]["id"] == message_id
        assert records[name]["result"] == result, f"audit record {name} holds another result"


def applied_counts(stack: Stack) -> Counter[str]:
    """How often each plan was applied, according to every daemon's log."""
    return Counter(e.get("plan_id") for e in stack.all_events("apply.applied"))


def answered_by_message(stack: Stack) -> Counter[str]:
    return Counter(e.get("message_id") for e in stack.all_events("plan.answered"))


def event_time(event: dict[str, Any]) -> float:
    """A log line's timestamp, in seconds."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def error_codes(result: dict[str, Any]) -> list[str]:
    return [error["code"] for error in result["errors"]]


# --------------------------------------------------------------------------- 1. happy path


def test_seed_plan_dry_run_then_applied(stack: Stack) -> None:
    stack.bootstrap()
    case = sample_case(stack)
    plan_id = SEED["plan_id"]
    before = stack.tree()
    expected = stack.reference_after([dict(SEED, dry_run=False)])
    assert expected != before
    stack.start_daemon()

    dry_message = stack.publish(dict(SEED, dry_run=True))
    [dry] = stack.results.wait_plan(plan_id, timeout=20)
    assert dry["status"] == "planned", dry
    assert dry["dry_run"] is True and dry["errors"] == []
    assert {c["action"] for c in dry["changes"]} == {"create_folder", "move"}, dry["changes"]
    assert stack.tree() == before, "a dry run changed the tree"
    assert stack.ledger_record(plan_id) is None, "a dry run claimed the plan in the ledger"

    real_message = stack.publish(dict(SEED, dry_run=False))
    applied = stack.results.wait_plan(plan_id, timeout=20, count=2)[1]
    assert applied["status"] == "applied", applied
    assert applied["dry_run"] is False and applied["errors"] == []
    assert [op["outcome"] for op in applied["operations"]] == ["applied", "applied"]
    assert applied["changes"] == dry["changes"], "the dry run's diff is not what was applied"

    assert stack.tree() == expected
    assert (case / "Medical Records" / "file1.pdf").read_text() == "one\n"
    assert not (case / "uncategorized" / "file1.pdf").exists()
    assert (case / "Investigation" / "photos").is_dir()

    assert_audited(stack, [(dry_message, dry), (real_message, applied)])
    assert len(stack.audit_records()) == 2
    record = stack.ledger_record(plan_id)
    assert record is not None, f"no ledger object plans/{plan_id}.json"
    assert record["state"] == "done", record
    assert record["result"] == applied
    assert record["digest"] == applied["plan_digest"]
    assert record["owner"] == "worker-a"


# --------------------------------------------------------------------------- 2. refusals


def test_invalid_messages_are_rejected_once_and_acked(stack: Stack) -> None:
    stack.bootstrap()
    sample_case(stack)
    before = stack.tree()
    daemon = stack.start_daemon()
    move = {
        "type": "move",
        "from": f"{CASE}/uncategorized/file1.pdf",
        "to": f"{CASE}/Medical Records/file1.pdf",
    }
    # A message the daemon could not accept is answered under its own name for it.
    refused: dict[str, str] = {}  # message id -> expected code
    refused[
        stack.publish(
            b'{"plan_id": "bad-json-1", "case_name": ',
            attributes={"plan_id": "bad-json-1", "case_name": CASE, "dry_run": "false"},
            ordering_key=CASE,
        )
    ] = "invalid_json"
    schema_bad = {
        "plan_id": "schema-bad-1",
        "case_name": CASE,
        "dry_run": False,
        "operations": [{"type": "explode", "path": f"{CASE}/uncategorized"}],
    }
    refused[stack.publish(schema_bad)] = "schema_violation"
    disagree = {"plan_id": "attr-1", "case_name": CASE, "dry_run": False, "operations": [move]}
    refused[
        stack.publish(
            disagree,
            attributes={"plan_id": "attr-2", "case_name": CASE, "dry_run": "false"},
        )
    ] = "schema_violation"
    # A plan that parses but breaks a rule is answered under its own id.
    escape = {
        "plan_id": "escape-1",
        "case_name": CASE,
        "dry_run": False,
        "operations": [
            move,
            {
                "type": "move",
                "from": f"{CASE}/uncategorized/file2.pdf",
                "to": f"{CASE}/../Other-Case/file2.pdf",
            },
        ],
    }
    escape_id = stack.publish(escape)
    expected = {placeholder(m): (m, code) for m, code in refused.items()}
    expected["escape-1"] = (escape_id, "path_invalid")

    stack.results.wait_for(
        lambda rs: {r["plan_id"] for r in rs} >= set(expected), 30, "a result for every message"
    )
    stack.results.drain(3.0)  # pstest redelivers a nack at once: a nacked one would be back

    answers = []
    for plan_id, (message_id, code) in expected.items():
        results = stack.results.results(plan_id)
        assert len(results) == 1, f"{plan_id}: expected one result, got {len(results)}"
        result = results[0]
        assert result["status"] == "rejected", (plan_id, result)
        assert code in error_codes(result), (plan_id, result["errors"])
        answers.append((message_id, result))
    assert stack.tree() == before, "a rejected plan changed the tree"
    assert_audited(stack, answers)

    answered = answered_by_message(stack)
    for plan_id, (message_id, _code) in expected.items():
        assert answered[message_id] == 1, (
            f"{plan_id} ({message_id}) answered {answered[message_id]}x"
        )
    assert not daemon.events("plan.unhandled_error"), daemon.tail()
    assert all(e.get("attempt") == 1 for e in daemon.events("plan.rejected")), daemon.tail()


def placeholder(message_id: str) -> str:
    """The plan_id the daemon gives the answer to a message it could not accept."""
    return f"unidentified-{message_id}"


def assert_answered_once_unrouted(
    stack: Stack, daemon: DaemonProcess, expected: dict[str, tuple[str, str]]
) -> None:
    """Each message id got exactly one ``rejected`` answer with its code, under the daemon's
    placeholder name, with no case and no routing, audited under that name; none was nacked."""
    wanted = {placeholder(message_id) for message_id in expected}
    stack.results.wait_for(
        lambda rs: {r["plan_id"] for r in rs} >= wanted, 60, "an answer to every message"
    )
    stack.results.drain(3.0)
    answers = []
    for message_id, (name, code) in expected.items():
        received = [
            r for r in stack.results.received if r.result["plan_id"] == placeholder(message_id)
        ]
        assert len(received) == 1, f"{name}: {len(received)} answers"
        result = received[0].result
        assert result["status"] == "rejected" and result["case_name"] == "", (name, result)
        assert error_codes(result) == [code], (name, result["errors"])
        assert len(result["errors"][0]["message"]) <= 1000, name
        assert "client_id" not in received[0].attributes, f"{name}: a refusal was routed"
        answers.append((message_id, result))
    assert_audited(stack, answers)
    answered = answered_by_message(stack)
    assert all(answered[m] == 1 for m in expected), answered
    assert not daemon.events("plan.unhandled_error"), daemon.tail()
    assert not daemon.events("plan.check_failed"), daemon.tail()
    assert all(e.get("attempt") == 1 for e in daemon.events("plan.rejected")), daemon.tail()


class TestHostileMessages:
    """Issue 10: for any bytes and attributes, one ``rejected`` answer, audited and acked."""

    def test_each_hostile_message_is_answered_once_under_the_daemons_name(
        self, stack: Stack
    ) -> None:
        stack.bootstrap()
        sample_case(stack)
        before = stack.tree()
        daemon = stack.start_daemon()
        expected: dict[str, tuple[str, str]] = {}
        for hostile in MESSAGES:
            attributes = dict(hostile.attributes, client_id="victim-agent")
            message_id = stack.publish(hostile.data, attributes=attributes, ordering_key=CASE)
            expected[message_id] = (hostile.name, hostile.code)
        assert_answered_once_unrouted(stack, daemon, expected)
        assert stack.tree() == before
        names = stack.audit_records()
        assert all("\n" not in name and len(name.encode()) < 300 for name in names), names

    def test_an_applied_plan_with_a_huge_change_list_is_answered_shortened(
        self, stack: Stack
    ) -> None:
        """Deep mkdirs: 40 operations make 3,600 folders, ~2 MB of changes. The answer stays
        under 1 MiB, says so, and the audit record it names holds the whole result."""
        stack.bootstrap()
        sample_case(stack)
        daemon = stack.start_daemon()
        deep = "/".join(f"level-{i:03}" for i in range(90))  # 989 bytes with the case
        ops = [{"type": "mkdir", "path": f"{CASE}/t{k:02}/{deep}"[:1000]} for k in range(40)]
        plan = {"plan_id": "deep-mkdirs-1", "case_name": CASE, "dry_run": False, "operations": ops}
        message_id = stack.publish(plan)
        [result] = stack.results.wait_plan("deep-mkdirs-1", 120)
        assert result["status"] == "applied", result["errors"]
        size = len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())
        assert size <= 1 << 20
        truncated = result["truncated"]
        assert truncated["operations"] == 40 and truncated["changes"] > len(result["changes"])
        name = audit_name(result, message_id)
        assert truncated["full_result"] == f"gs://{stack.audit_bucket}/{name}"
        record = stack.audit_records()[name]
        assert record["result"] == result
        assert len(record["full_result"]["changes"]) == truncated["changes"]
        assert not schema_errors(record["full_result"])
        assert (stack.root / CASE / "t39" / deep.split("/")[0]).is_dir()
        assert not daemon.events("plan.unhandled_error"), daemon.tail()

    def test_a_bug_while_checking_is_answered_internal_error_but_cloud_faults_still_raise(
        self, stack: Stack, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The last-resort guard, in process on the emulators: an unexpected exception while
        deciding whether a message is valid is answered (acked) once; a fault of the cloud
        (here: an audit bucket that does not exist) still escapes, so the consumer nacks."""
        from fileops_daemon.service import intake as intake_module
        from fileops_daemon.service.config import Config
        from fileops_daemon.service.delivery import Delivery
        from fileops_daemon.service.handler import Verdict
        from fileops_daemon.service.metrics import Metrics
        from fileops_daemon.service.wiring import build_consumer

        stack.bootstrap()
        sample_case(stack)

        def broken(data: bytes, limits: object = None) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(intake_module, "parse_message", broken)
        env = stack.env(FILEOPS_STATE_DIR=str(stack.tmp / "state-inproc"))
        handler = build_consumer(Config.from_env(env), Metrics()).handler
        delivery = Delivery(data=json.dumps(SEED).encode(), attributes={}, message_id="m-1")
        assert handler.handle(delivery).verdict is Verdict.ACK
        [result] = stack.results.wait_plan("unidentified-m-1", 30)
        assert error_codes(result) == ["internal_error"]

        lost = build_consumer(
            Config.from_env(dict(env, FILEOPS_AUDIT_BUCKET="no-such-bucket")), Metrics()
        )
        with pytest.raises(Exception, match=r"(?i)not ?found|no-such-bucket|404"):
            lost.handler.handle(dataclasses.replace(delivery, message_id="m-2"))

    def test_with_signing_on_forged_and_replayed_messages_get_no_routing_and_no_names(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        key = b"current-key-0123456789"
        (tmp_path / "key").write_bytes(key + b"\n")
        stack.bootstrap()
        sample_case(stack)
        daemon = stack.start_daemon(FILEOPS_SIGNING_KEY_FILE=str(tmp_path / "key"))
        plan = {
            "plan_id": "signed-1",
            "case_name": CASE,
            "operations": [{"type": "mkdir", "path": f"{CASE}/x"}],
        }
        data = json.dumps(plan).encode()
        attributes = {"plan_id": "signed-1", "case_name": CASE, "dry_run": "true"}
        routed = dict(attributes, client_id="agent-a")
        deep = MESSAGES[0].data
        expected: dict[str, tuple[str, str]] = {}
        for name, payload, attrs in [
            ("non-ascii-signature", data, dict(routed, signature="v2=é" + "0" * 63)),
            ("deep-and-unsigned", deep, dict(MESSAGES[0].attributes, client_id="agent-a")),
            (
                "replayed-to-another-client",
                data,
                dict(routed, signature=sign_message(key, data, routed), client_id="agent-b"),
            ),
            (
                "other-plan-id-attribute",
                data,
                dict(routed, signature=sign_message(key, data, routed), plan_id="victim-1"),
            ),
        ]:
            message_id = stack.publish(payload, attributes=attrs, ordering_key=CASE)
            expected[message_id] = (name, "signature_invalid")
        assert_answered_once_unrouted(stack, daemon, expected)
        # A v2 signature covers client_id: the answer is routed. A v1 one does not: it is not.
        stack.publish(data, attributes=dict(routed, signature=sign_message(key, data, routed)))
        old = {**routed, "plan_id": "signed-2", "signature": ""}
        old_data = json.dumps(dict(plan, plan_id="signed-2")).encode()
        old["signature"] = sign(key, old_data)
        stack.publish(old_data, attributes=old, ordering_key=CASE)
        stack.results.wait_for(
            lambda rs: {"signed-1", "signed-2"} <= {r["plan_id"] for r in rs}, 30, "both answers"
        )
        routing = {
            r.result["plan_id"]: r.attributes.get("client_id") for r in stack.results.received
        }
        assert routing["signed-1"] == "agent-a"
        assert routing["signed-2"] is None
        assert all(
            r.result["status"] == "planned"
            for r in stack.results.received
            if r.result["plan_id"].startswith("signed-")
        )


# --------------------------------------------------------------------------- 3. idempotency


def test_same_plan_twice_is_applied_once_and_answered_twice(stack: Stack) -> None:
    stack.bootstrap()
    case = sample_case(stack)
    plan = {
        "plan_id": "twice-1",
        "case_name": CASE,
        "dry_run": False,
        "operations": [
            {"type": "mkdir", "path": f"{CASE}/Sorted"},
            {
                "type": "move",
                "from": f"{CASE}/uncategorized/file1.pdf",
                "to": f"{CASE}/Sorted/a.pdf",
            },
            {
                "type": "copy",
                "from": f"{CASE}/uncategorized/file2.pdf",
                "to": f"{CASE}/Sorted/b.pdf",
            },
        ],
    }
    expected = stack.reference_after([plan])
    stack.start_daemon()

    first_message = stack.publish(plan)
    second_message = stack.publish(plan)
    first, second = stack.results.wait_plan("twice-1", timeout=20, count=2)
    stack.results.drain(2.0)
    assert len(stack.results.results("twice-1")) == 2, "more than one result per message"
    assert first["status"] == "applied", first
    assert second["status"] == "applied", second
    assert second["started_at"] == first["started_at"], "the second answer is not the stored one"
    # The stored answer, named for the message that asked again and marked a replay.
    assert second == replay_of(first, second["in_reply_to"])
    assert {first["in_reply_to"], second["in_reply_to"]} == {first_message, second_message}
    assert stack.tree() == expected
    assert applied_counts(stack)["twice-1"] == 1, stack.logs_tail()
    assert_audited(stack, [(first_message, first), (second_message, second)])

    other = dict(plan, operations=[{"type": "mkdir", "path": f"{CASE}/Elsewhere"}])
    stack.publish(other)
    conflict = stack.results.wait_plan("twice-1", timeout=20, count=3)[2]
    assert conflict["status"] == "rejected", conflict
    assert error_codes(conflict) == ["idempotency_conflict"], conflict["errors"]
    assert not (case / "Elsewhere").exists()
    assert stack.tree() == expected
    record = stack.ledger_record("twice-1")
    assert record is not None and record["state"] == "done"
    assert record["result"] == first, "the conflict overwrote the ledger record"


def test_a_retry_with_a_reworded_reason_is_answered_as_the_same_plan(stack: Stack) -> None:
    stack.bootstrap()
    sample_case(stack)
    plan = {
        "plan_id": "reworded-1",
        "case_name": CASE,
        "dry_run": False,
        "requested_by": "paralegal-agent",
        "reason": "sort uncategorized files",
        "operations": [{"type": "mkdir", "path": f"{CASE}/Sorted"}],
    }
    stack.start_daemon()
    stack.publish(plan)
    first = stack.results.wait_plan("reworded-1", timeout=20)[0]
    assert first["status"] == "applied", first
    stack.publish(dict(plan, reason="put the loose files in order", requested_by="retry"))
    second = stack.results.wait_plan("reworded-1", timeout=20, count=2)[1]
    assert second == replay_of(first, second["in_reply_to"]), (
        "a reworded retry was not answered with the recorded result"
    )

    # A record written by an earlier version holds the digest of the whole document: the
    # same plan delivered again is still recognised.
    blob = stack.storage.bucket(stack.state_bucket).blob("plans/reworded-1.json")
    record = json.loads(blob.download_as_bytes())
    record["digest"] = legacy_plan_digest(plan)
    blob.upload_from_string(json.dumps(record))
    stack.publish(plan)
    third = stack.results.wait_plan("reworded-1", timeout=20, count=3)[2]
    assert third == replay_of(first, third["in_reply_to"]), third["errors"]
    assert applied_counts(stack)["reworded-1"] == 1, stack.logs_tail()


# --------------------------------------------------------------------------- 4. nack, redelivery


def test_unanswered_attempt_is_nacked_and_the_redelivery_answers_once(stack: Stack) -> None:
    # The audit bucket does not exist at first: the apply succeeds but the result cannot be
    # audited, so the handler fails and the message is nacked, unanswered. pstest redelivers
    # at once, so allow many attempts (the real service waits 10 s between them).
    stack.bootstrap(FILEOPS_AUDIT_BUCKET="", FILEOPS_MAX_DELIVERY_ATTEMPTS="100")
    assert stack.storage.lookup_bucket(stack.audit_bucket) is None
    sample_case(stack)
    plan = {
        "plan_id": "nack-1",
        "case_name": CASE,
        "dry_run": False,
        "operations": [
            {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/f1.pdf"}
        ],
    }
    expected = stack.reference_after([plan])
    daemon = stack.start_daemon()

    message_id = stack.publish(plan)
    daemon.wait_for("plan.unhandled_error", 20, plan_id="nack-1")
    assert not stack.results.results("nack-1"), "answered although the audit failed"
    stack.storage.create_bucket(stack.audit_bucket)

    [result] = stack.results.wait_plan("nack-1", timeout=30)
    stack.results.drain(2.0)
    results = stack.results.results("nack-1")
    assert [r["status"] for r in results] == ["applied"], results
    assert stack.tree() == expected
    assert applied_counts(stack)["nack-1"] == 1, daemon.tail()
    assert answered_by_message(stack)[message_id] == 1
    attempts = [e["attempt"] for e in daemon.events("plan.unhandled_error", plan_id="nack-1")]
    assert attempts and attempts[0] == 1
    assert_audited(stack, [(message_id, result)])
    record = stack.ledger_record("nack-1")
    assert record is not None and record["state"] == "done"
    assert stack.pull_dead_letters(0.5) == [], "the plan went to the dead-letter topic"


# --------------------------------------------------------------------------- 5. several daemons


@pytest.mark.slow
def test_three_daemons_apply_300_ordered_plans_exactly_once(stack: Stack) -> None:
    cases, chain = 10, 30
    stack.bootstrap()
    names = [f"Case-{c:02}" for c in range(cases)]
    for name in names:
        stack.case(name, {"token-0.txt": f"token of {name}\n"})
    daemons = [stack.start_daemon(n, ready=False) for n in ("a", "b", "c")]
    for daemon in daemons:
        daemon.wait_ready()

    plans = [token_plan(name, k) for k in range(1, chain + 1) for name in names]
    futures = [stack.publish(plan, wait=False) for plan in plans]
    for future in futures:
        future.result(timeout=30)

    stack.results.wait_count(len(plans), timeout=120)
    stack.results.drain(2.0)
    results = stack.results.results()
    by_plan = Counter(r["plan_id"] for r in results)
    assert len(results) == len(plans), f"{len(results)} results for {len(plans)} plans"
    assert set(by_plan) == {p["plan_id"] for p in plans}
    assert max(by_plan.values()) == 1, [p for p, n in by_plan.items() if n > 1]
    not_applied = [(r["plan_id"], error_codes(r)) for r in results if r["status"] != "applied"]
    assert not not_applied, f"plans not applied (out of order?): {not_applied[:10]}"

    applied = applied_counts(stack)
    assert all(applied[p["plan_id"]] == 1 for p in plans), [
        (p, n) for p, n in applied.items() if n != 1
    ]
    for name in names:
        files = sorted(p.name for p in (stack.root / name).iterdir())
        assert files == [f"token-{chain}.txt"], f"{name}: {files}"
        assert (stack.root / name / f"token-{chain}.txt").read_text() == f"token of {name}\n"

    records = stack.ledger_records()
    assert len(records) == len(plans)
    assert all(r["state"] == "done" for r in records.values())
    owners = Counter(r["owner"] for r in records.values())
    assert len(owners) >= 2, f"only {owners} worked: the test did not exercise several daemons"
    assert all(d.alive() for d in daemons)


# --------------------------------------------------------------------------- 6. SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["same-machine", "other-machine"])
def test_sigkill_mid_apply_then_another_daemon_takes_over(stack: Stack, machine: str) -> None:
    stack.bootstrap()
    stack.case(CASE, {"keep.txt": "keep\n"})
    plan_id = f"big-{machine}"
    plan = many_writes_plan(CASE, plan_id, 4000)
    expected = stack.reference_after([plan])
    # Paced to ~10 s, so the kill lands mid-apply on a fast machine too; B runs uncapped.
    a = stack.start_daemon("a", FILEOPS_APPLY_MAX_STEPS_PER_SECOND="400")
    message_id = stack.publish(plan)

    def durable_progress() -> dict[str, Any] | None:
        record = stack.ledger_record(plan_id)
        return record if record and steps_done(record.get("progress")) >= 1000 else None

    # Kill once a checkpoint (a journal sync mirrored to the ledger) holds 1000+ done steps.
    seen = wait_until(durable_progress, 30, f"1000 steps of {plan_id} in the ledger", 0.02)
    a.kill()
    record = stack.ledger_record(plan_id)
    assert record is not None and record["state"] == "claimed", (
        f"the apply finished before the kill (make the plan bigger): {record}"
    )
    assert not stack.results.results(plan_id)
    assert seen["owner"] == "worker-a"

    state_b = stack.tmp / ("state-a" if machine == "same-machine" else "state-b")
    b = stack.start_daemon("b", state_dir=state_b)
    takeover = b.wait_for("lease.takeover", 40, plan_id=plan_id)
    [result] = stack.results.wait_plan(plan_id, timeout=60)
    assert result["status"] == "applied", result
    resume = b.wait_for("apply.resume", 1, plan_id=plan_id)
    assert resume["done"] >= steps_done(seen["progress"]), (resume, seen["progress"])
    stack.results.drain(1.0)
    assert len(stack.results.results(plan_id)) == 1

    assert stack.tree() == expected, "the resumed apply did not end with the expected tree"
    assert applied_counts(stack)[plan_id] == 1
    assert answered_by_message(stack)[message_id] == 1
    final = stack.ledger_record(plan_id)
    assert final is not None and final["state"] == "done", final
    assert final["owner"] == "worker-b" and final["takeovers"] >= 1, final
    assert final["result"] == result
    # The takeover log line names the daemon that died (ops need it to find its log).
    assert takeover.get("previous_owner") == "worker-a", (
        f"lease.takeover logs previous_owner={takeover.get('previous_owner')!r}, "
        f"not the daemon that died (worker-a): {takeover}"
    )


# --------------------------------------------------------------------------- 7. GCS outage


@pytest.mark.slow
def test_gcs_outage_mid_stream_loses_no_plan(make_stack: Any, tmp_path: Path) -> None:
    gcs = RestartableGCS(tmp_path / "gcs-data", tmp_path / "fake-gcs-fs.log")
    gcs.start()
    try:
        stack: Stack = make_stack(gcs_endpoint=gcs.endpoint)
        # A 3 s outage outlasts a few nack/redelivery rounds on pstest: allow many attempts.
        stack.bootstrap(FILEOPS_MAX_DELIVERY_ATTEMPTS="100")
        names = [f"Case-{c}" for c in range(4)]
        for name in names:
            stack.case(name, {"token-0.txt": f"token of {name}\n"})
        plans = [token_plan(name, k) for k in range(1, 6) for name in names]
        stack.start_daemon(FILEOPS_RETRY_ATTEMPTS="8")

        for plan in plans[:8]:
            stack.publish(plan)
        stack.results.wait_count(3, timeout=30)
        gcs.stop()
        outage_started = time.monotonic()
        publisher = Publisher(stack, plans[8:], interval=0.1)
        publisher.start()
        time.sleep(3.0)
        gcs.start()
        outage = time.monotonic() - outage_started
        publisher.join(timeout=30)
        assert publisher.error is None, publisher.error

        stack.results.wait_count(len(plans), timeout=90)
        stack.results.drain(2.0)
        results = stack.results.results()
        by_plan = Counter(r["plan_id"] for r in results)
        assert set(by_plan) == {p["plan_id"] for p in plans}, "a plan was lost"
        assert len(results) == len(plans), [p for p, n in by_plan.items() if n > 1]
        assert all(r["status"] == "applied" for r in results), [
            (r["plan_id"], error_codes(r)) for r in results if r["status"] != "applied"
        ]
        applied = applied_counts(stack)
        assert all(applied[p["plan_id"]] == 1 for p in plans), applied
        for name in names:
            assert sorted(p.name for p in (stack.root / name).iterdir()) == ["token-5.txt"]
        records = stack.ledger_records()
        assert len(records) == len(plans) and all(r["state"] == "done" for r in records.values())
        assert stack.daemons[0].alive(), stack.logs_tail()
        assert outage >= 3.0
        # Not a guarantee, a check that the test did what it says: the outage hit plans.
        assert stack.all_events("plan.unhandled_error") or stack.all_events("lease.renew_failed"), (
            f"the daemon never noticed the outage:\n{stack.logs_tail()}"
        )
    finally:
        gcs.stop()


# --------------------------------------------------------------------------- 8. poison


@pytest.mark.needs_pubsub("dead_letter")
def test_corrupt_ledger_record_sends_the_plan_to_the_dead_letter_topic(stack: Stack) -> None:
    stack.bootstrap(FILEOPS_MAX_DELIVERY_ATTEMPTS="5")
    sample_case(stack)
    before = stack.tree()
    plan = {
        "plan_id": "poison-1",
        "case_name": CASE,
        "dry_run": False,
        "operations": [{"type": "mkdir", "path": f"{CASE}/Poisoned"}],
    }
    stack.storage.bucket(stack.state_bucket).blob("plans/poison-1.json").upload_from_string(
        b"\x00garbage{", content_type="application/json"
    )
    daemon = stack.start_daemon()
    message_id = stack.publish(plan)

    letters = stack.pull_dead_letters(timeout=30)
    assert len(letters) == 1, f"dead letters: {letters}; log:\n{daemon.tail()}"
    assert letters[0].attributes["plan_id"] == "poison-1"
    assert json.loads(letters[0].data) == plan
    attempts = sorted(e.get("attempt") for e in daemon.events("plan.unhandled_error"))
    assert attempts == [1, 2, 3, 4, 5], daemon.tail()
    stack.results.drain(1.0)
    assert stack.results.results("poison-1") == [], "a poison message got a result"
    assert answered_by_message(stack)[message_id] == 0
    assert stack.tree() == before


# --------------------------------------------------------------------------- 9. SIGTERM


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["same-machine", "other-machine"])
def test_sigterm_drains_within_bound_then_hands_the_unfinished_plan_over(
    stack: Stack, machine: str
) -> None:
    # A lease and an ack deadline of a minute: without the hand-over, B would wait that long.
    # Google's emulator keeps a message nacked after its stream closed until its ack deadline
    # (tests/emulators/README.md): there the deadline is 10 s, and the hand-over still spares
    # B the minute of lease.
    fast_nack = "nack_after_stream_close" in stack.emulators.capabilities
    ack_deadline = "60" if fast_nack else "10"
    slow_return = {"FILEOPS_ACK_DEADLINE_SECONDS": ack_deadline, "FILEOPS_LEASE_SECONDS": "60"}
    stack.bootstrap(**slow_return)
    stack.case(CASE, {"keep.txt": "keep\n"})
    plan = many_writes_plan(CASE, "drain-1", 3000)
    # The case's next plan, published behind it: it must not start before drain-1 is answered.
    follow_up = {
        "plan_id": "drain-2",
        "case_name": CASE,
        "dry_run": False,
        "operations": [{"type": "move", "from": f"{CASE}/bulk", "to": f"{CASE}/bulk-done"}],
    }
    expected = stack.reference_after([plan, follow_up])
    drain = 1.0
    # Paced to ~6 s: the plan cannot finish within the drain, however fast the machine.
    a = stack.start_daemon(
        "a",
        FILEOPS_DRAIN_SECONDS=str(drain),
        FILEOPS_APPLY_MAX_STEPS_PER_SECOND="500",
        **slow_return,
    )
    message_id = stack.publish(plan)
    stack.publish(follow_up)
    journal = stack.tmp / "state-a" / "plans" / "drain-1" / "journal.jsonl"
    wait_until(journal.exists, 20, "the apply to start (its journal)", 0.02)

    a.signal(signal.SIGTERM)
    sent = time.monotonic()
    code = a.wait_exit(drain + 5.0)
    took = time.monotonic() - sent
    assert code == 0, f"exit code {code} after SIGTERM ({took:.1f}s); log:\n{a.tail()}"
    assert took <= drain + 3.0, f"took {took:.1f}s to exit with FILEOPS_DRAIN_SECONDS={drain}"
    exit_event = a.wait_for("daemon.exit", 0)
    assert exit_event["drained"] is False, exit_event
    a.wait_for("plan.handed_over", 0, plan_id="drain-1")
    record = stack.ledger_record("drain-1")
    assert record is not None and record["state"] == "claimed", (
        f"the plan finished within the drain (make it slower): {record}"
    )
    # Handed over: the lease is released, so the next daemon need not wait for it to run out.
    assert record["owner"] == "worker-a" and record["lease_expires_at"] == 0, record
    stack.results.drain(0.5)
    assert not stack.results.results("drain-1"), "an unfinished plan was answered"
    status = stack.cli("status", "drain-1")
    assert status.returncode == 0 and "lease released" in status.stdout, status

    state_b = stack.tmp / ("state-a" if machine == "same-machine" else "state-b")
    b = stack.start_daemon("b", state_dir=state_b)
    takeover = b.wait_for("lease.takeover", 30, plan_id="drain-1")
    assert takeover["previous_owner"] == "worker-a"
    # A released the lease and nacked the message: B has it within seconds, not after the
    # minute of lease and ack deadline (pstest redelivers a nack at once; Pub/Sub after the
    # subscription's retry backoff).
    waited = event_time(takeover) - event_time(exit_event)
    bound = 20.0 if fast_nack else 10.0 + 20.0
    assert waited < bound, f"B took the plan over {waited:.1f}s after A exited"
    resume = b.wait_for("apply.resume", 5, plan_id="drain-1")
    assert resume["done"] >= steps_done(record["progress"]) > 0, (resume, record["progress"])
    [result] = stack.results.wait_plan("drain-1", timeout=60)
    assert result["status"] == "applied", result
    b.wait_for("plan.answered", 5, message_id=message_id)  # redelivered: A never acked it
    [second] = stack.results.wait_plan("drain-2", timeout=60)
    assert second["status"] == "applied", second
    stack.results.drain(1.0)
    assert len(stack.results.results("drain-1")) == 1
    started_second = [event_time(e) for e in stack.all_events("plan.applying", plan_id="drain-2")]
    answered_first = min(event_time(e) for e in b.events("plan.answered", plan_id="drain-1"))
    assert started_second and min(started_second) >= answered_first, (
        "the case's next plan started before the handed-over plan was answered"
    )
    assert stack.tree() == expected
    assert applied_counts(stack)["drain-1"] == 1


@pytest.mark.slow
def test_second_sigterm_during_drain_exits_at_once_with_75(stack: Stack) -> None:
    stack.bootstrap()
    stack.case(CASE, {"keep.txt": "keep\n"})
    plan = many_writes_plan(CASE, "force-1", 3000)
    expected = stack.reference_after([plan])
    a = stack.start_daemon(
        "a", FILEOPS_DRAIN_SECONDS="30", FILEOPS_APPLY_MAX_STEPS_PER_SECOND="500"
    )
    stack.publish(plan)
    journal = stack.tmp / "state-a" / "plans" / "force-1" / "journal.jsonl"
    wait_until(journal.exists, 20, "the apply to start (its journal)", 0.02)

    a.signal(signal.SIGTERM)
    a.wait_for("consumer.draining", 5)
    assert a.alive(), "exited before the second SIGTERM although a plan was in flight"
    a.signal(signal.SIGTERM)
    sent = time.monotonic()
    code = a.wait_exit(5.0)
    took = time.monotonic() - sent
    assert code == 75, f"exit code {code} after a second SIGTERM; log:\n{a.tail()}"
    assert took < 2.0, f"took {took:.1f}s to exit after the second SIGTERM"
    a.wait_for("daemon.forced_stop", 0)
    record = stack.ledger_record("force-1")
    assert record is not None and record["state"] == "claimed", record
    stack.results.drain(0.5)
    assert not stack.results.results("force-1")

    stack.start_daemon("b", state_dir=stack.tmp / "state-a")
    [result] = stack.results.wait_plan("force-1", timeout=60)
    assert result["status"] == "applied", result
    stack.results.drain(1.0)
    assert len(stack.results.results("force-1")) == 1
    assert stack.tree() == expected
    assert applied_counts(stack)["force-1"] == 1


# --------------------------------------------------------------------------- 10. the contract


def test_the_collector_refuses_a_result_that_violates_the_schema() -> None:
    """The check every test relies on: a bad result is caught, a good one passes."""
    good = {
        "schema_version": "1",
        "plan_id": "p",
        "case_name": CASE,
        "dry_run": True,
        "status": "planned",
        "operations": [],
        "changes": [],
        "errors": [],
        "attempt": 1,
        "started_at": "2024-07-13T10:00:00.000Z",
        "finished_at": "2024-07-13T10:00:00.010Z",
        "duration_ms": 10.0,
        "worker": {"host": "h", "pid": 1, "version": "0.1.0"},
    }
    assert schema_errors(good) == []
    assert schema_errors(dict(good, status="done"))
    assert schema_errors(dict(good, surprise=1))
    assert schema_errors({k: v for k, v in good.items() if k != "worker"})


def replay_of(first: dict[str, Any], message_id: str) -> dict[str, Any]:
    """The stored result ``first`` as given again to message ``message_id``."""
    return {**first, "in_reply_to": message_id, "replay": True, "replay_of": first["in_reply_to"]}
