"""Whose answer a result is: every result names the message it answers, a stored result given
to another message is marked a replay (the ledger's copy untouched), and a plan that waited on
another daemon through every delivery is answered before it would be dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fileops_daemon.contract.results import answering, replayed
from tests.service.test_handler_table import (
    ACK,
    OTHER,
    SEED,
    SEED_DRY,
    Daemon,
    Rig,
    seize_case,
)
from tests.service.test_handler_table import rig as table_rig

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "result.schema.json").read_text()
)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return table_rig.__wrapped__(tmp_path)  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def a(rig: Rig) -> Daemon:
    return rig.daemon("a")


def codes(result: dict[str, object]) -> list[object]:
    return [error["code"] for error in result["errors"]]  # type: ignore[index,union-attr]


class TestEveryResultNamesTheMessageItAnswers:
    def test_an_applied_plan_names_its_message_in_the_result_and_the_ledger(
        self, rig: Rig, a: Daemon
    ) -> None:
        assert a.handle(SEED, message_id="m-7") == ACK
        result = a.answer("p-1")
        assert result["in_reply_to"] == "m-7"
        record = rig.record("p-1")
        assert record is not None and record.result is not None
        assert record.result["in_reply_to"] == "m-7"
        jsonschema.validate(result, SCHEMA)

    def test_a_refused_message_is_answered_under_its_own_message_id(self, a: Daemon) -> None:
        assert a.handle(b"{not json", message_id="m-9") == ACK
        [answer] = a.results.answers
        assert answer.result["in_reply_to"] == "m-9"
        assert answer.result["plan_id"] == "unidentified-m-9"
        jsonschema.validate(answer.result, SCHEMA)

    def test_a_conflict_answers_the_message_that_caused_it_not_the_plans_owner(
        self, a: Daemon
    ) -> None:
        assert a.handle(SEED, message_id="m-1", client_id="agent-a") == ACK
        forged = {**OTHER, "plan_id": "p-1"}
        assert a.handle(forged, message_id="m-2", client_id="agent-a") == ACK
        mine, conflict = a.answers("p-1")
        assert mine["in_reply_to"] == "m-1"
        assert codes(conflict) == ["idempotency_conflict"]
        assert conflict["in_reply_to"] == "m-2"


class TestStoredAnswersAreAnswers:
    def test_a_dry_run_of_an_applied_plan_gets_the_stored_result_as_a_replay(
        self, rig: Rig, a: Daemon
    ) -> None:
        assert a.handle(SEED, message_id="m-1") == ACK
        recorded = rig.record("p-1")
        assert a.handle(SEED_DRY, message_id="m-2") == ACK
        first, again = a.answers("p-1")
        assert again["status"] == "applied" and again["replay"] is True
        assert (again["in_reply_to"], again["replay_of"]) == ("m-2", "m-1")
        assert again["finished_at"] == first["finished_at"]  # when it was applied
        assert rig.record("p-1") == recorded
        jsonschema.validate(again, SCHEMA)

    def test_replaying_never_changes_the_stored_copy(self) -> None:
        stored = {"plan_id": "p", "in_reply_to": "m-1"}
        copy = replayed(stored, "m-2")
        assert stored == {"plan_id": "p", "in_reply_to": "m-1"}
        assert copy == {"plan_id": "p", "in_reply_to": "m-2", "replay": True, "replay_of": "m-1"}
        assert replayed(copy, "m-3")["replay_of"] == "m-1"  # the message it first answered
        assert replayed(stored, "m-1") is stored  # its own message's redelivery: no replay
        assert answering(stored, "m-1") is stored
        assert answering({"plan_id": "p"}, "m-4") == {"plan_id": "p", "in_reply_to": "m-4"}


class TestABusyCaseIsNeverDeadLetteredUnanswered:
    @pytest.mark.parametrize("ordering_key", ["", "Abby-Sitgraves-MVA-07-13-2024"])
    def test_the_last_delivery_of_a_plan_whose_case_is_held_elsewhere_is_answered(
        self, rig: Rig, a: Daemon, ordering_key: str
    ) -> None:
        seize_case(rig, "p-other")
        before = rig.tree()
        assert a.handle(SEED, attempt=4, ordering_key=ordering_key) != ACK
        assert a.results.answers == []
        assert a.handle(SEED, attempt=5, ordering_key=ordering_key, message_id="m-1") == ACK
        busy = a.answer("p-1")
        assert (busy["status"], codes(busy)) == ("rejected", ["plan_busy"])
        assert "p-other" in busy["errors"][0]["message"] and busy["in_reply_to"] == "m-1"
        assert len(a.audit.records) == 1
        assert rig.tree() == before and rig.record("p-1") is None  # free to send again
