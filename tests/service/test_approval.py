"""Plans that wait for an operator's approval, against real emulators (``fileops run`` as a
subprocess, ``fileops approve``/``reject``/``pending`` as the operator runs them).

A waiting plan changes nothing and is answered ``awaiting_approval``; only a decision signed
with the approval key lets it go, and it is then applied once, exactly as shown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.approval import APPROVE, REJECT, Decision, wakeup_document
from fileops_daemon.contract.exitcodes import EXIT_AWAITING_APPROVAL, EXIT_CONFIG
from tests.daemon_support import REPO, Stack, wait_until

pytest_plugins = ["tests.conftest_daemon"]

CASE = "Smith-v-Jones"
AGENT = "agent-7"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("approval", "plan", "wrong"):
        files[name] = tmp_path / f"{name}.key"
        files[name].write_text(f"{name}-key-long-enough-for-hmac-0123456789\n")
    return files


def approving_stack(stack: Stack, keys: dict[str, Path], **policy: str) -> Stack:
    """The operators' machine and the daemon share the approval key; agents do not."""
    stack.base_env["FILEOPS_APPROVAL_KEY_FILE"] = str(keys["approval"])
    stack.base_env.update(policy)
    stack.bootstrap()
    stack.case(CASE, {f"inbox/{i}.pdf": f"file {i}\n" for i in range(6)} | {"old.txt": "x\n"})
    return stack


def moves_plan(
    plan_id: str, count: int, *, delete: bool = False, folder: str = "sorted"
) -> dict[str, Any]:
    """mkdir ``folder``, move inbox/0..count-1 into it (and delete old.txt)."""
    operations: list[dict[str, Any]] = [{"type": "mkdir", "path": f"{CASE}/{folder}"}]
    operations += [
        {"type": "move", "from": f"{CASE}/inbox/{i}.pdf", "to": f"{CASE}/{folder}/{i}.pdf"}
        for i in range(count)
    ]
    if delete:
        operations.append({"type": "delete", "path": f"{CASE}/old.txt"})
    return {
        "plan_id": plan_id,
        "case_name": CASE,
        "dry_run": False,
        "requested_by": "test-agent",
        "operations": operations,
    }


def submit(stack: Stack, plan: dict[str, Any]) -> str:
    """As an agent: with its client_id, so its results are routed to it."""
    attributes = {
        "plan_id": plan["plan_id"],
        "case_name": plan["case_name"],
        "dry_run": "false",
        "client_id": AGENT,
    }
    return str(stack.publish(plan, attributes=attributes))


def answers(stack: Stack, plan_id: str) -> list[tuple[str, str]]:
    return [
        (r.result["status"], r.attributes.get("client_id", ""))
        for r in stack.results.received
        if r.result["plan_id"] == plan_id
    ]


def wait_status(stack: Stack, plan_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    """The first result of ``plan_id`` with ``status``; fails at once on another ending."""
    endings = {"applied", "rejected", "failed"} - {status}

    def arrived(results: list[dict[str, Any]]) -> bool:
        for result in results:
            if result["plan_id"] == plan_id:
                assert result["status"] not in endings, json.dumps(result, indent=1)
                if result["status"] == status:
                    return True
        return False

    stack.results.wait_for(arrived, timeout, f"{plan_id} {status}")
    return next(r for r in stack.results.results(plan_id) if r["status"] == status)


def errors(result: dict[str, Any]) -> list[str]:
    return [error["code"] for error in result["errors"]]


def operator(stack: Stack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fileops_daemon.cli", *args],
        cwd=REPO,
        env=stack.env(FILEOPS_OPERATOR="ops-" + args[0]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting(stack: Stack, plan: dict[str, Any]) -> dict[str, Any]:
    """Submit ``plan``; it must wait, changing nothing."""
    before = stack.tree()
    submit(stack, plan)
    result = wait_status(stack, plan["plan_id"], "awaiting_approval")
    assert result["dry_run"] is False and result["changes"], result
    assert stack.tree() == before
    record = stack.ledger_record(plan["plan_id"])
    assert record is not None and record["state"] == "awaiting_approval"
    assert record["approval"]["changes_digest"] == result["approval"]["changes_digest"]
    return result


class TestWaiting:
    def test_over_the_step_threshold_it_waits_and_two_operators_approving_apply_it_once(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(stack, keys, FILEOPS_APPROVAL_MIN_STEPS="3")
        daemon = stack.start_daemon()
        small, large = moves_plan("small-1", 2), moves_plan("large-1", 4)
        small["operations"] = small["operations"][1:]  # no mkdir: 2 steps, under the bar
        for operation, i in zip(small["operations"], (4, 5), strict=True):
            operation.update({"from": f"{CASE}/inbox/{i}.pdf", "to": f"{CASE}/{i}.pdf"})
        submit(stack, small)
        assert wait_status(stack, "small-1", "applied")["steps"] == 2
        expected = stack.reference_after([{**large, "dry_run": False}])
        shown = waiting(stack, large)
        assert shown["approval"]["reasons"] == ["5 file steps, more than 3"]

        # A duplicate while it waits: the same answer, no second record.
        record = stack.ledger_record("large-1")
        submit(stack, large)
        stack.results.wait_plan("large-1", count=2)
        assert answers(stack, "large-1") == [("awaiting_approval", AGENT)] * 2
        assert stack.ledger_record("large-1") == record

        listed = stack.cli("pending", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["plan_id"] == "large-1" and row["changes"] == len(shown["changes"])
        assert row["changes_digest"] == shown["approval"]["changes_digest"]

        two = [operator(stack, "approve", "large-1") for _ in range(2)]
        outputs = [process.communicate(timeout=90) for process in two]
        assert [process.returncode for process in two] == [0, 0], outputs
        applied = wait_status(stack, "large-1", "applied")
        assert stack.tree() == expected
        assert applied["plan_digest"] == shown["plan_digest"]
        # Another wake-up (the second operator's may come after the apply, or be skipped as
        # already decided) is answered as a duplicate of the done plan, to the agent.
        stack.results.drain(1.0)
        told = len(answers(stack, "large-1"))
        stack.publish(wakeup_document("large-1", CASE, "ops"))
        stack.results.wait_plan("large-1", count=told + 1)
        assert set(answers(stack, "large-1")[2:]) == {("applied", AGENT)}
        assert len(daemon.events("apply.applied", plan_id="large-1")) == 1
        decision = json.loads(
            stack.storage.bucket(stack.state_bucket)
            .blob("approvals/large-1.json")
            .download_as_bytes()
        )
        assert decision["by"] == "ops-approve" and decision["decision"] == APPROVE
        audited = [v for k, v in stack.audit_records().items() if k.startswith("approvals/")]
        assert [(a["plan_id"], a["decision"], a["by"]) for a in audited] == [
            ("large-1", "approve", "ops-approve")
        ]
        assert audited[0]["changes_digest"] == shown["approval"]["changes_digest"]
        assert json.loads(stack.cli("pending", "--json").stdout) == []

    def test_an_operators_submit_and_wait_exits_10_while_the_plan_waits(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(stack, keys, FILEOPS_APPROVAL_MIN_STEPS="1")
        stack.start_daemon()
        before = stack.tree()
        plan_path = stack.tmp / "large.json"
        plan_path.write_text(json.dumps(moves_plan("cli-large", 3)))
        run = stack.cli("submit", str(plan_path), "--apply", "--wait")
        assert run.returncode == EXIT_AWAITING_APPROVAL, run.stdout + run.stderr
        assert "awaiting" in (run.stdout + run.stderr).lower()
        assert stack.tree() == before

    def test_a_delete_waits_and_a_rejection_answers_the_agent_rejected(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(stack, keys, FILEOPS_APPROVAL_ON_TRASH="1")
        stack.start_daemon()
        moves_only = moves_plan("moves-only", 1, folder="kept")
        moves_only["operations"][1]["from"] = f"{CASE}/inbox/5.pdf"
        submit(stack, moves_only)
        wait_status(stack, "moves-only", "applied")
        before = stack.tree()
        waiting(stack, moves_plan("with-delete", 1, delete=True))
        run = stack.cli("reject", "with-delete", "--reason", "keep old.txt", "--wait")
        assert run.returncode == 3, run.stderr
        rejected = wait_status(stack, "with-delete", "rejected")
        assert errors(rejected) == ["approval_rejected"]
        assert "keep old.txt" in rejected["errors"][0]["message"]
        assert ("rejected", AGENT) in answers(stack, "with-delete")
        assert stack.tree() == before
        # An approval after the rejection changes nothing.
        late = stack.cli("approve", "with-delete")
        assert late.returncode == 3, late.stderr
        assert "'with-delete' is already rejected (approval_rejected" in late.stderr
        assert stack.tree() == before

    def test_an_expired_approval_is_rejected(self, stack: Stack, keys: dict[str, Path]) -> None:
        approving_stack(stack, keys, FILEOPS_APPROVAL_CASES="Smith-*", FILEOPS_APPROVAL_TTL="8s")
        stack.start_daemon()
        before = stack.tree()
        waiting(stack, moves_plan("slow-1", 1))
        waiting(stack, moves_plan("slow-2", 2, folder="other"))
        rows = json.loads(stack.cli("pending", "--json").stdout)
        assert [(row["plan_id"], row["expired"]) for row in rows] == [
            ("slow-1", False),  # oldest first
            ("slow-2", False),
        ]
        record = stack.ledger_record("slow-2")
        assert record is not None
        wait_until(lambda: time.time() > record["approval"]["expires_at"] + 0.5, 15, "expiry")
        # A duplicate after the expiry ends it; `pending` marks and ends the other.
        submit(stack, moves_plan("slow-1", 1))
        assert errors(wait_status(stack, "slow-1", "rejected")) == ["approval_expired"]
        rows = json.loads(stack.cli("pending", "--json").stdout)
        assert [(row["plan_id"], row["expired"]) for row in rows] == [("slow-2", True)]
        assert errors(wait_status(stack, "slow-2", "rejected")) == ["approval_expired"]
        late = stack.cli("approve", "slow-2")
        assert late.returncode == 3, late.stderr
        assert "'slow-2' is already rejected (approval_expired" in late.stderr
        assert stack.tree() == before
        audited = {v["plan_id"]: v for k, v in stack.audit_records().items() if "approvals/" in k}
        assert {plan: a["decision"] for plan, a in audited.items()} == {
            "slow-1": "expired",
            "slow-2": "expired",
        }


class TestDeciding:
    def test_a_tree_changed_since_the_simulation_is_refused(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(stack, keys, FILEOPS_APPROVAL_MIN_STEPS="1")
        stack.start_daemon()
        waiting(stack, moves_plan("stale-1", 2))
        (stack.root / CASE / "sorted").mkdir()  # the plan's mkdir would now do nothing
        before = stack.tree()
        run = stack.cli("approve", "stale-1", "--wait", "--json")
        assert run.returncode == 3, run.stderr
        refused = wait_status(stack, "stale-1", "rejected")
        assert errors(refused) == ["tree_changed"]
        assert json.loads(run.stdout)["errors"] == refused["errors"]
        assert stack.tree() == before
        # The same changes, but a file the plan deletes was edited meanwhile.
        waiting(stack, moves_plan("stale-2", 2, delete=True, folder="other"))
        (stack.root / CASE / "old.txt").write_text("edited after the simulation\n")
        before = stack.tree()
        assert stack.cli("approve", "stale-2", "--wait").returncode == 3
        assert errors(wait_status(stack, "stale-2", "rejected")) == ["tree_changed"]
        assert stack.tree() == before

    def test_forged_approvals_are_refused_and_the_plan_keeps_waiting(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(
            stack,
            keys,
            FILEOPS_APPROVAL_MIN_STEPS="1",
            FILEOPS_SIGNING_KEY_FILE=str(keys["plan"]),
        )
        daemon = stack.start_daemon()
        plan = moves_plan("target-1", 2)
        from fileops_daemon.client.api import ClientConfig, FileopsClient

        agent_env = {k: v for k, v in stack.env().items() if k != "FILEOPS_APPROVAL_KEY_FILE"}
        with FileopsClient(ClientConfig.from_env(agent_env), client_id=AGENT) as agent:
            agent.publish(plan)
            shown = wait_status(stack, "target-1", "awaiting_approval")
            before = stack.tree()
            # 1. A wake-up alone, from an agent (signed with the plan key it holds).
            agent.publish(wakeup_document("target-1", CASE, "agent"))
            daemon.wait_for("plan.rejected", 20, code="approval_missing")
            # 2. A decision signed with a key that is not the approval key, then a wake-up.
            bucket = stack.storage.bucket(stack.state_bucket)
            for refusals, wrong in enumerate(("wrong", "plan"), start=1):
                decision = Decision(
                    plan_id="target-1",
                    decision=APPROVE,
                    plan_digest=shown["plan_digest"],
                    changes_digest=shown["approval"]["changes_digest"],
                    by="agent",
                    at=1e9 * 2,
                )
                key = keys[wrong].read_text().strip().encode()
                blob = bucket.blob("approvals/target-1.json")
                blob.upload_from_string(json.dumps(decision.signed(key)))
                agent.publish(wakeup_document("target-1", CASE, "agent"))
                wait_until(
                    lambda n=refusals: (
                        len(daemon.events("plan.rejected", code="approval_forged")) >= n
                    ),
                    20,
                    "approval_forged",
                )
            assert stack.tree() == before
            assert stack.ledger_record("target-1")["state"] == "awaiting_approval"  # type: ignore[index]
            # The refusals went to nobody under the plan's name.
            assert answers(stack, "target-1") == [("awaiting_approval", AGENT)]
            # The genuine operator is not locked out: the daemon, which holds every approval
            # key, removed the forgery it refused (and `approve` would replace one it finds).
            forged = bucket.blob("approvals/target-1.json")
            wait_until(lambda: not forged.exists(), 20, "the forged decision removed")
            run = stack.cli("approve", "target-1", "--wait")
            assert run.returncode == 0, run.stderr
            assert agent.wait("target-1", 30) is not None
        assert wait_status(stack, "target-1", "applied")["steps"] == 3

    def test_an_operator_holding_another_key_is_refused_before_anything_is_written(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(stack, keys, FILEOPS_APPROVAL_MIN_STEPS="1")
        stack.start_daemon()
        waiting(stack, moves_plan("keyed-1", 2))
        wrong = subprocess.run(
            [sys.executable, "-m", "fileops_daemon.cli", "approve", "keyed-1"],
            cwd=REPO,
            env=stack.env(FILEOPS_APPROVAL_KEY_FILE=str(keys["wrong"])),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert wrong.returncode == EXIT_CONFIG, wrong.stderr
        assert "is not one the daemon checks decisions with" in wrong.stderr
        bucket = stack.storage.bucket(stack.state_bucket)
        assert not bucket.blob("approvals/keyed-1.json").exists()
        run = stack.cli("approve", "keyed-1", "--wait")
        assert run.returncode == 0, run.stderr
        assert wait_status(stack, "keyed-1", "applied")["steps"] == 3
        # Approving again asks for what happened: told who approved, exit 0, nothing written.
        decision = bucket.blob("approvals/keyed-1.json")
        decision.reload()
        again = stack.cli("approve", "keyed-1")
        assert again.returncode == 0 and "already decided: approve by" in again.stderr
        assert "yours was not recorded" in again.stderr and again.stdout == ""
        assert bucket.get_blob("approvals/keyed-1.json").generation == decision.generation
        # Rejecting it cannot happen any more: exit 3, and it says why.
        late = stack.cli("reject", "keyed-1", "--reason", "too late")
        assert late.returncode == 3 and "'keyed-1' is already applied" in late.stderr
        assert bucket.get_blob("approvals/keyed-1.json").generation == decision.generation
        unknown = stack.cli("reject", "never-sent", "--reason", "no")
        assert unknown.returncode == 3 and "no plan 'never-sent' is known" in unknown.stderr

    def test_the_daemon_expires_waiting_plans_itself_and_tells_the_agent(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        approving_stack(
            stack,
            keys,
            FILEOPS_APPROVAL_MIN_STEPS="1",
            FILEOPS_APPROVAL_TTL="2s",
            FILEOPS_APPROVAL_SWEEP="1s",
        )
        daemon = stack.start_daemon()
        before = stack.tree()
        waiting(stack, moves_plan("forgotten-1", 2))
        # Nobody runs `fileops pending` and nothing is resent: the daemon's sweep ends it.
        expired = wait_status(stack, "forgotten-1", "rejected", timeout=60)
        assert errors(expired) == ["approval_expired"]
        assert ("rejected", AGENT) in answers(stack, "forgotten-1")
        assert daemon.events("approval.expired_plan", plan_id="forgotten-1")
        assert stack.tree() == before

    def test_plans_waiting_through_a_daemon_restart_are_kept(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        # On Google's emulator the wake-up never arrives (A's cancelled stream breaks the
        # subscription: tests/emulators/test_cancelled_stream.py); B then finds the decision
        # itself a little after it starts.
        approving_stack(stack, keys, FILEOPS_APPROVAL_MIN_STEPS="1")
        first = stack.start_daemon("a")
        waiting(stack, moves_plan("kept-1", 3))
        first.stop()
        run = stack.cli("approve", "kept-1")  # decided while no daemon runs
        assert run.returncode == 0, run.stderr
        expected = stack.reference_after([moves_plan("kept-1", 3)])
        second = stack.start_daemon("b")
        wait_status(stack, "kept-1", "applied", timeout=60)
        assert stack.tree() == expected
        assert ("applied", AGENT) in answers(stack, "kept-1")
        # Which way it came: the wake-up (pstest), or B's own look (Google's emulator).
        swept = bool(second.events("approval.wakeup_missing", plan_id="kept-1"))
        if stack.emulators.pubsub_kind in ("pstest", "gcloud"):
            assert swept is (stack.emulators.pubsub_kind == "gcloud")

    def test_a_decision_whose_wake_up_was_lost_is_applied_by_the_next_daemon(
        self, stack: Stack, keys: dict[str, Path]
    ) -> None:
        """The operator's decision is stored but no wake-up was ever published (the publish
        failed): the daemon started next applies the approved plan and rejects the rejected
        one, and leaves alone a plan nobody decided."""
        approving_stack(
            stack,
            keys,
            FILEOPS_APPROVAL_MIN_STEPS="1",
            FILEOPS_SIGNING_KEY_FILE=str(keys["plan"]),
        )
        first = stack.start_daemon("a")
        approved, rejected = moves_plan("lost-1", 2), moves_plan("lost-2", 1, folder="other")
        undecided = moves_plan("lost-3", 1, folder="third")
        undecided["operations"][1]["from"] = f"{CASE}/inbox/5.pdf"
        from fileops_daemon.client.api import ClientConfig, FileopsClient

        agent_env = {k: v for k, v in stack.env().items() if k != "FILEOPS_APPROVAL_KEY_FILE"}
        shown = {}
        with FileopsClient(ClientConfig.from_env(agent_env), client_id=AGENT) as agent:
            for plan in (approved, rejected, undecided):
                agent.publish(plan)
                shown[plan["plan_id"]] = wait_status(stack, plan["plan_id"], "awaiting_approval")
        first.stop()
        key = keys["approval"].read_text().strip().encode()
        bucket = stack.storage.bucket(stack.state_bucket)
        for plan_id, verdict in (("lost-1", APPROVE), ("lost-2", REJECT)):
            decision = Decision(
                plan_id=plan_id,
                decision=verdict,
                plan_digest=shown[plan_id]["plan_digest"],
                changes_digest=shown[plan_id]["approval"]["changes_digest"],
                by="ops",
                at=time.time(),
            )
            blob = bucket.blob(f"approvals/{plan_id}.json")
            blob.upload_from_string(json.dumps(decision.signed(key)))
        expected = stack.reference_after([approved])
        second = stack.start_daemon("b")
        assert wait_status(stack, "lost-1", "applied", timeout=60)["steps"] == 3
        assert errors(wait_status(stack, "lost-2", "rejected")) == ["approval_rejected"]
        assert stack.tree() == expected
        assert ("applied", AGENT) in answers(stack, "lost-1")
        assert ("rejected", AGENT) in answers(stack, "lost-2")
        found = second.events("approval.wakeup_missing")
        assert sorted(event["plan_id"] for event in found) == ["lost-1", "lost-2"]
        assert stack.ledger_record("lost-3")["state"] == "awaiting_approval"  # type: ignore[index]
