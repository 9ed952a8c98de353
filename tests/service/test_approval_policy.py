"""The approval policy (which plans wait) and the signed decision (who may let them go)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fileops_daemon.contract.approval import (
    APPROVE,
    Decision,
    WakeUp,
    changes_digest,
    is_wakeup,
    verify_decision,
    wakeup_document,
)
from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.signing import sign_message
from fileops_daemon.service.approval import ApprovalPolicy, parse_duration, source_listing
from fileops_daemon.service.config import Config, ConfigError

BASE = {"FILEOPS_PROJECT": "p", "FILEOPS_STATE_BUCKET": "b"}


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "approval.key"
    path.write_text("an-approval-key-of-32-bytes-len\n")
    return str(path)


def simulated(steps: int = 1, trash: int = 0) -> dict[str, object]:
    changes = [{"action": "move", "operation": 0, "from": "C/a", "to": "C/b"}]
    changes += [{"action": "trash", "operation": 1, "path": f"C/t{i}"} for i in range(trash)]
    return {"status": "planned", "steps": steps, "changes": changes, "operations": []}


def decision(**fields: object) -> Decision:
    values: dict[str, object] = {
        "plan_id": "p1",
        "decision": APPROVE,
        "plan_digest": "a" * 64,
        "changes_digest": "b" * 64,
        "by": "ops@host",
        "at": 1000.0,
    }
    values.update(fields)
    return Decision(**values)  # type: ignore[arg-type]


class TestPolicy:
    def test_off_by_default_and_existing_setups_start_without_a_key(self) -> None:
        config = Config.from_env(BASE)
        assert not config.approval.enabled
        assert config.approval.reasons("Case", simulated(steps=10_000, trash=50)) == []

    def test_a_policy_without_the_approval_key_refuses_to_start(self) -> None:
        for name, value in (
            ("FILEOPS_APPROVAL_MIN_STEPS", "10"),
            ("FILEOPS_APPROVAL_ON_TRASH", "1"),
            ("FILEOPS_APPROVAL_CASES", "Smith-*"),
        ):
            with pytest.raises(ConfigError, match="FILEOPS_APPROVAL_KEY_FILE"):
                Config.from_env({**BASE, name: value})

    def test_more_steps_than_the_threshold_waits_and_the_threshold_itself_does_not(
        self, key_file: str
    ) -> None:
        policy = ApprovalPolicy.from_env(
            {"FILEOPS_APPROVAL_MIN_STEPS": "3", "FILEOPS_APPROVAL_KEY_FILE": key_file}
        )
        assert policy.reasons("C", simulated(steps=3)) == []
        assert policy.reasons("C", simulated(steps=4)) == ["4 file steps, more than 3"]

    def test_any_delete_or_overwrite_waits(self, key_file: str) -> None:
        policy = ApprovalPolicy.from_env(
            {"FILEOPS_APPROVAL_ON_TRASH": "1", "FILEOPS_APPROVAL_KEY_FILE": key_file}
        )
        assert policy.reasons("C", simulated()) == []
        assert policy.reasons("C", simulated(trash=2)) == ["2 item(s) deleted or overwritten"]

    def test_cases_by_pattern_case_sensitive(self, key_file: str) -> None:
        policy = ApprovalPolicy.from_env(
            {"FILEOPS_APPROVAL_CASES": " Smith-*, Doe-2024 ", "FILEOPS_APPROVAL_KEY_FILE": key_file}
        )
        assert policy.cases == ("Smith-*", "Doe-2024")
        assert policy.reasons("Smith-v-Jones", simulated()) == ["case matches 'Smith-*'"]
        assert policy.reasons("Doe-2024", simulated()) == ["case matches 'Doe-2024'"]
        assert policy.reasons("smith-v-jones", simulated()) == []
        assert policy.reasons("Doe-2024-b", simulated()) == []

    def test_ttl_default_and_units(self, key_file: str) -> None:
        assert ApprovalPolicy.from_env({}).ttl_seconds == 7 * 86400
        assert parse_duration("X", "90") == 90
        assert parse_duration("X", "30m") == 1800
        assert parse_duration("X", "2d") == 172800
        for wrong in ("0", "-1h", "soon", "5w"):
            with pytest.raises(ConfigError, match="X"):
                parse_duration("X", wrong)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("FILEOPS_APPROVAL_MIN_STEPS", "-1"),
            ("FILEOPS_APPROVAL_ON_TRASH", "maybe"),
            ("FILEOPS_APPROVAL_TTL", "forever"),
            ("FILEOPS_APPROVAL_KEY_FILE", "/nonexistent/key"),
        ],
    )
    def test_wrong_values_name_their_variable(self, name: str, value: str) -> None:
        with pytest.raises(ConfigError, match=name):
            Config.from_env({**BASE, name: value})


class TestDecision:
    key = b"k" * 32

    def test_a_signed_decision_verifies_and_reads_back(self) -> None:
        document = decision().signed(self.key)
        assert verify_decision([b"x" * 32, self.key], document) == decision()

    def test_wrong_key_or_any_changed_field_is_forged(self) -> None:
        document = decision().signed(self.key)
        with pytest.raises(PlanError) as caught:
            verify_decision([b"x" * 32], document)
        assert caught.value.code is ErrorCode.APPROVAL_FORGED
        for name, value in (
            ("plan_id", "p2"),
            ("decision", "reject"),
            ("changes_digest", "c" * 64),
            ("by", "agent"),
            ("at", 1001.0),
        ):
            with pytest.raises(PlanError) as caught:
                verify_decision([self.key], {**document, name: value})
            assert caught.value.code is ErrorCode.APPROVAL_FORGED

    def test_a_plan_signature_under_the_same_key_never_passes_as_a_decision(self) -> None:
        document = decision().signed(self.key)
        body = decision().payload()
        forged = {**document, "signature": sign_message(self.key, body, {})}
        with pytest.raises(PlanError):
            verify_decision([self.key], forged)

    @pytest.mark.parametrize(
        "document",
        [None, [], {}, {"plan_id": 1}, {"signature": "a1=00"}],
    )
    def test_malformed_decisions_are_forged(self, document: object) -> None:
        with pytest.raises(PlanError) as caught:
            verify_decision([self.key], document)
        assert caught.value.code is ErrorCode.APPROVAL_FORGED


class TestWakeUpAndDigest:
    def test_wakeup_document_round_trip(self) -> None:
        document = wakeup_document("p1", "Case", "ops")
        assert is_wakeup(document)
        assert WakeUp.from_document(document) == WakeUp("p1", "Case")
        assert not is_wakeup({**document, "operations": []})
        with pytest.raises(PlanError):
            WakeUp.from_document({**document, "plan_id": "other"})

    def test_changes_digest_sees_changes_and_outcomes(self) -> None:
        one = simulated(trash=1)
        assert changes_digest(one) == changes_digest(dict(one))
        assert changes_digest(one) != changes_digest(simulated(trash=2))
        noop = {**one, "operations": [{"index": 0, "type": "move", "outcome": "noop"}]}
        assert changes_digest(one) != changes_digest(noop)


class TestSourceListing:
    def test_an_edit_or_an_addition_under_a_source_changes_the_digest(self, tmp_path: Path) -> None:
        folder = tmp_path / "C" / "box"
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text("a")
        changes = [
            {"action": "trash", "operation": 0, "path": "C/box", "to": "C/.fileops/t"},
            {"action": "move", "operation": 1, "from": "C/gone.txt", "to": "C/x.txt"},
        ]
        first = source_listing(str(tmp_path), changes)
        assert [entry[:2] for entry in first] == [
            ["C/box", "dir"],
            ["C/box/a.txt", "file"],
            ["C/gone.txt", "missing"],
        ]
        result = {"changes": changes, "operations": []}
        digest = changes_digest(result, first)
        assert changes_digest(result, source_listing(str(tmp_path), changes)) == digest
        (folder / "a.txt").write_text("longer")
        edited = source_listing(str(tmp_path), changes)
        assert changes_digest(result, edited) != digest
        (folder / "b.txt").write_text("b")
        assert len(source_listing(str(tmp_path), changes)) == 4


def test_the_agent_is_told_to_stop_and_tell_its_user() -> None:
    from fileops_daemon.client.tools import summarize

    text = summarize(
        {
            "plan_id": "p1",
            "case_name": "C",
            "status": "awaiting_approval",
            "changes": [{"action": "trash", "operation": 0, "path": "C/a"}],
            "errors": [],
        }
    )
    assert "awaiting_approval" in text and "- trash C/a" in text
    assert "fileops approve p1" in text and "Do not send the plan again" in text
