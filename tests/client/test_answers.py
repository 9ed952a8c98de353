"""Every sender hears its own answer, quickly, and only its own (on both Pub/Sub emulators).

A result names the message id it answers; a client takes only answers to its own message ids.
So refusals of messages the daemon could not identify reach their sender within seconds,
stored answers come back at once as replays, and another sender, whatever plan_id, client_id
or other attributes it uses, cannot make a client report anything but the true outcome of its
own message."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.client.api import ClientConfig, FileopsClient
from fileops_daemon.client.toolbox import FileOpsTools
from tests.daemon_support import Stack, many_writes_plan, schema_errors
from tests.support import CASE, SEED_OPS

pytest_plugins = ["tests.conftest_daemon"]

#: How soon an idle daemon's verdict must be known (the issue's bound).
PROMPT = 20.0


def plan(
    plan_id: str, *, dry_run: bool = True, ops: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": CASE,
        "dry_run": dry_run,
        "operations": SEED_OPS if ops is None else ops,
    }


def moves(count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "move",
            "from": f"{CASE}/uncategorized/f{i}.pdf",
            "to": f"{CASE}/Medical Records/f{i}.pdf",
        }
        for i in range(count)
    ]


def seed(stack: Stack) -> None:
    files = {"uncategorized/file1.pdf": "one\n", "uncategorized/file2.pdf": "2\n"}
    files |= {f"uncategorized/f{i}.pdf": f"{i}\n" for i in range(4)}
    stack.case(CASE, files)
    (stack.root / CASE / "Medical Records").mkdir()


@pytest.fixture
def running(stack: Stack) -> Stack:
    """One daemon that refuses plans of more than 3 operations (the client's default is
    higher: only the daemon can refuse those)."""
    stack.bootstrap()
    seed(stack)
    stack.start_daemon("a", FILEOPS_MAX_OPERATIONS="3")
    return stack


@pytest.fixture
def client(stack: Stack) -> Iterator[FileopsClient]:
    with FileopsClient(ClientConfig(project=stack.project)) as made:
        yield made


def codes(result: dict[str, Any]) -> list[str]:
    return [error["code"] for error in result.get("errors", [])]


def timed(action: Any) -> tuple[Any, float]:
    began = time.monotonic()
    value = action()
    return value, time.monotonic() - began


#: Refused before the daemon knows whose they are: the answer is unrouted, under its own name.
UNIDENTIFIABLE = {
    "no case_name": {"plan_id": "u-1", "operations": SEED_OPS},
    "a misspelt field": {**plan("u-2"), "operations": [{"type": "move", "form": "a", "to": "b"}]},
    "a plan_id with a space": plan("u 3"),
    "20,000 operations": plan(
        "u-4", ops=[{"type": "mkdir", "path": f"{CASE}/d{i}"} for i in range(20_000)]
    ),
    "over the daemon's lower limit": plan("u-5", dry_run=False, ops=moves(4)),
}
EXPECTED = {
    "no case_name": "schema_violation",
    "a misspelt field": "schema_violation",
    "a plan_id with a space": "schema_violation",
    "20,000 operations": "limit_exceeded",
    "over the daemon's lower limit": "limit_exceeded",
}


class TestRefusalsReachTheirSender:
    @pytest.mark.parametrize("case", list(UNIDENTIFIABLE))
    def test_the_client_library_gets_the_daemons_refusal_by_message_id(
        self, running: Stack, client: FileopsClient, case: str
    ) -> None:
        # publish() checks nothing: this is the daemon's own verdict, reached by message id.
        message_id = client.publish(UNIDENTIFIABLE[case])
        result, took = timed(lambda: client.wait(str(UNIDENTIFIABLE[case]["plan_id"]), PROMPT))
        assert result is not None, f"no answer within {PROMPT} s"
        assert result["in_reply_to"] == message_id
        assert result["status"] == "rejected" and EXPECTED[case] in codes(result)
        assert not schema_errors(result)
        assert took < PROMPT

    @pytest.mark.parametrize("case", list(UNIDENTIFIABLE))
    def test_submit_wait_exits_3_with_the_code(
        self, running: Stack, tmp_path: Path, case: str
    ) -> None:
        path = tmp_path / "plan.json"
        document = dict(UNIDENTIFIABLE[case])
        apply = document.pop("dry_run", True) is False
        path.write_text(json.dumps(document))
        args = ["submit", str(path), "--wait", "--timeout", "60"] + (["--apply"] if apply else [])
        run, took = timed(lambda: running.cli(*args))
        assert run.returncode == 3, run.stderr
        assert EXPECTED[case] in run.stderr + run.stdout
        assert "queued" not in run.stderr
        assert took < PROMPT


class TestStoredAnswersAreAnswers:
    def test_a_dry_run_of_an_applied_plan_answers_at_once_as_a_replay(
        self, running: Stack, client: FileopsClient, tmp_path: Path
    ) -> None:
        applied = client.submit(plan("done-1", dry_run=False), timeout=30)
        assert applied is not None and applied["status"] == "applied"
        tools = FileOpsTools(client, timeout=PROMPT)
        arguments = {"plan_id": "done-1", "case_name": CASE, "operations": SEED_OPS, "reason": None}
        preview, took = timed(lambda: tools.preview(**arguments))
        assert preview["status"] == "applied" and preview["replay"] is True, preview
        assert preview["replay_of"] == applied["in_reply_to"] and took < PROMPT
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(plan("done-1")))
        run, took = timed(lambda: running.cli("submit", str(path), "--wait"))
        assert run.returncode == 0, run.stderr
        shown = " ".join(run.stdout.split())  # as wrapped to the terminal's width
        assert "already applied at" in shown and "(this request changed nothing)" in shown
        assert took < PROMPT

    def test_undo_shows_its_preview_by_default(self, running: Stack, client: FileopsClient) -> None:
        applied = client.submit(plan("undo-me", dry_run=False), timeout=30)
        assert applied is not None and applied["status"] == "applied"
        before = running.tree()
        run = running.cli("undo", "undo-me")
        assert run.returncode == 0, run.stderr
        assert "planned: plan 'undo-me.undo'" in run.stdout
        assert running.tree() == before


class TestOnlyTheSendersOwnAnswer:
    def test_another_sender_cannot_make_a_client_report_anything_but_its_own_outcome(
        self, running: Stack, client: FileopsClient
    ) -> None:
        applied = client.submit(plan("own-1", dry_run=False), timeout=30)
        assert applied is not None and applied["status"] == "applied"
        mine = {"client_id": client.client_id}
        # The other sender knows the plan id and the client_id (both are on the results topic)
        # and uses them: another plan under that id, both modes; garbage; and results of its
        # own making on the results topic, naming message ids it made up.
        other = plan("own-1", ops=[{"type": "mkdir", "path": f"{CASE}/theirs"}])
        for dry_run in ("true", "false"):
            running.publish(
                {**other, "dry_run": dry_run == "true"},
                attributes={"plan_id": "own-1", "case_name": CASE, "dry_run": dry_run, **mine},
            )
        running.publish(b'{"plan_id": "own-1"}', attributes={"plan_id": "own-1", **mine})
        topic = running.topic(running.results_topic)
        for made_up in ("1", "own-1", applied["in_reply_to"] + "0"):
            forged = applied | {
                "dry_run": True,
                "status": "rejected",
                "changes": [],
                "errors": [{"code": "idempotency_conflict", "message": "forged"}],
                "in_reply_to": made_up,
            }
            running.publisher.publish(
                topic,
                json.dumps(forged).encode(),
                plan_id="own-1",
                case_name=CASE,
                status="rejected",
                in_reply_to=made_up,
                **mine,
            ).result(30)
        # The other sender's answers were published (to this client's subscription, as routed).
        running.results.wait_for(
            lambda rs: (
                sum(
                    codes(r) == ["idempotency_conflict"] and r["errors"][0]["message"] != "forged"
                    for r in rs
                )
                >= 2
            ),
            30,
            "the other sender's conflicts",
        )
        again = client.submit(plan("own-1"), timeout=PROMPT)  # a dry run of its applied plan
        assert again is not None and again["status"] == "applied" and again["replay"] is True
        assert again["replay_of"] == applied["in_reply_to"]
        assert client.answer("own-1") == again
        time.sleep(2)  # whatever else arrives now changes nothing
        assert client.wait("own-1", 2) == again
        assert (running.root / CASE / "theirs").exists() is False


class TestABusyCaseIsAnswered:
    def test_with_two_daemons_a_plan_of_a_case_held_elsewhere_is_answered_not_dead_lettered(
        self, stack: Stack, client: FileopsClient
    ) -> None:
        stack.bootstrap()
        seed(stack)
        # Daemon a takes one message at a time and applies a long plan slowly.
        stack.start_daemon(
            "a",
            FILEOPS_FLOW_MAX_MESSAGES="1",
            FILEOPS_CONCURRENCY="1",
            FILEOPS_APPLY_MAX_STEPS_PER_SECOND="4",
        )
        long = many_writes_plan(CASE, "long-1", 40)
        long_id = client.publish(long)
        stack.daemons[0].wait_for("plan.applying", 20, plan_id="long-1")
        stack.start_daemon("b")
        # Under another ordering key, so Pub/Sub hands it out while the long plan runs. Which
        # daemon gets it is the emulator's choice (pstest has been seen to queue it behind the
        # long plan on daemon a, which then applies it): either way it is answered, never
        # dead-lettered. The held-elsewhere path itself, to its last delivery, is pinned in
        # tests/service/test_replies.py.
        second = plan("second-1", dry_run=False, ops=[{"type": "mkdir", "path": f"{CASE}/x"}])
        stack.publish(second, ordering_key="elsewhere")
        [answer] = stack.results.wait_plan("second-1", 90)
        assert answer["status"] in ("applied", "rejected"), answer
        if answer["status"] == "rejected":
            assert codes(answer) == ["plan_busy"] and "long-1" in answer["errors"][0]["message"]
        assert not stack.pull_dead_letters(3)
        assert any("second-1" in name for name in stack.audit_records()), (
            "every answer has an audit record"
        )
        done = client.wait_message(long_id, 120)
        assert done is not None and done["status"] == "applied"
