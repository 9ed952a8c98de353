"""The plan contract: schema, defaults, digest, limits, and the error-code list."""

from __future__ import annotations

import base64
import json

import pytest

from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.identity import describe_difference, legacy_plan_digest
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import load_schema, parse_plan
from tests.hostile_messages import MESSAGES, Hostile
from tests.support import CASE, plan_doc

SEED = {
    "plan_id": "reorg-2024-07-13-abby-0001",
    "case_name": CASE,
    "dry_run": True,
    "requested_by": "paralegal-agent",
    "reason": "sort uncategorized files",
    "operations": [
        {"type": "mkdir", "path": f"{CASE}/Investigation/photos"},
        {
            "type": "move",
            "from": f"{CASE}/uncategorized/file1.pdf",
            "to": f"{CASE}/Medical Records/file1.pdf",
        },
    ],
}


def refusal(data: object, limits: Limits | None = None) -> PlanError:
    with pytest.raises(PlanError) as caught:
        parse_plan(data if isinstance(data, bytes | str) else json.dumps(data), limits)
    return caught.value


class TestParsing:
    def test_the_seed_example_parses(self) -> None:
        plan = parse_plan(json.dumps(SEED))
        assert plan.plan_id == SEED["plan_id"]
        assert [op.type for op in plan.operations] == ["mkdir", "move"]
        assert plan.operations[1].src == f"{CASE}/uncategorized/file1.pdf"

    def test_dry_run_defaults_to_true(self) -> None:
        document = {k: v for k, v in SEED.items() if k != "dry_run"}
        assert parse_plan(document).dry_run is True

    def test_overwrite_defaults_to_false(self) -> None:
        assert parse_plan(SEED).operations[1].overwrite is False

    def test_text_and_base64_content_decode(self) -> None:
        ops = [
            {"type": "write", "path": f"{CASE}/a.txt", "content": "héllo"},
            {
                "type": "write",
                "path": f"{CASE}/b.bin",
                "encoding": "base64",
                "content": base64.b64encode(b"\x00\xff").decode(),
            },
        ]
        plan = parse_plan(plan_doc(ops))
        assert plan.operations[0].content == "héllo".encode()
        assert plan.operations[1].content == b"\x00\xff"


class TestRefusals:
    def test_not_json(self) -> None:
        assert refusal(b"{not json").code is ErrorCode.INVALID_JSON

    def test_not_utf8(self) -> None:
        assert refusal(b'{"plan_id": "\xff"}').code is ErrorCode.INVALID_JSON

    def test_json_that_is_not_an_object(self) -> None:
        assert refusal(b"[1, 2]").code is ErrorCode.SCHEMA_VIOLATION

    @pytest.mark.parametrize(
        ("change", "where"),
        [
            ({"plan_id": ""}, "plan.plan_id"),
            ({"plan_id": "../x"}, "plan.plan_id"),
            ({"case_name": "a/b"}, "plan.case_name"),
            ({"case_name": ".hidden"}, "plan.case_name"),
            ({"dry_run": "no"}, "plan.dry_run"),
            ({"operations": []}, "plan.operations"),
            ({"surprise": 1}, "plan"),
        ],
    )
    def test_schema_violations_name_the_field(self, change: dict[str, object], where: str) -> None:
        error = refusal({**SEED, **change})
        assert error.code is ErrorCode.SCHEMA_VIOLATION
        assert error.message.startswith(where)

    @pytest.mark.parametrize(
        "operation",
        [
            {"type": "rename", "path": f"{CASE}/a"},
            {"type": "move", "from": f"{CASE}/a"},
            {"type": "mkdir", "path": f"{CASE}/a", "overwrite": True},
            {"type": "write", "path": f"{CASE}/a"},
            {"type": "delete", "path": 7},
            {"type": "copy", "from": f"{CASE}/a", "to": f"{CASE}/b", "expect": {"sha256": "xyz"}},
        ],
    )
    def test_bad_operations_point_at_their_index(self, operation: dict[str, object]) -> None:
        error = refusal(plan_doc([{"type": "mkdir", "path": f"{CASE}/x"}, operation]))
        assert error.code is ErrorCode.SCHEMA_VIOLATION
        assert error.operation == 1

    def test_bad_base64(self) -> None:
        op = {"type": "write", "path": f"{CASE}/a", "encoding": "base64", "content": "!!"}
        assert refusal(plan_doc([op])).code is ErrorCode.CONTENT_INVALID

    def test_write_over_the_byte_limit(self) -> None:
        op = {"type": "write", "path": f"{CASE}/a", "content": "x" * 11}
        error = refusal(plan_doc([op]), Limits(max_write_bytes=10))
        assert error.code is ErrorCode.LIMIT_EXCEEDED

    def test_too_many_operations(self) -> None:
        ops = [{"type": "mkdir", "path": f"{CASE}/d{i}"} for i in range(11)]
        error = refusal(plan_doc(ops), Limits(max_operations=10))
        assert error.code is ErrorCode.LIMIT_EXCEEDED

    def test_plan_document_over_the_size_limit(self) -> None:
        error = refusal(json.dumps(SEED), Limits(max_plan_bytes=100))
        assert error.code is ErrorCode.LIMIT_EXCEEDED

    def test_huge_plan_is_refused_before_schema_validation(self) -> None:
        ops = [{"type": "bogus"}] * 200_000
        error = refusal(plan_doc(ops), Limits(max_plan_bytes=64 << 20))
        assert error.code is ErrorCode.LIMIT_EXCEEDED


class TestHostileMessages:
    """Issue 10: any bytes end in a PlanError with a stable code, never another exception."""

    @pytest.mark.parametrize("hostile", MESSAGES, ids=lambda h: h.name)
    def test_refused_with_its_code_and_a_bounded_message(self, hostile: Hostile) -> None:
        error = refusal(hostile.data)
        assert error.code.value == hostile.code, error.message
        document = error.to_dict()
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # publishable as is
        assert len(str(document["message"])) <= 1000

    def test_duplicate_keys_are_refused_at_any_depth(self) -> None:
        text = json.dumps(SEED).replace('"type": "mkdir"', '"type": "mkdir", "type": "mkdir"')
        error = refusal(text)
        assert error.code is ErrorCode.DUPLICATE_KEY
        assert "'type'" in error.message

    def test_deep_nesting_below_the_decoders_limit_is_refused_too(self) -> None:
        document = {**SEED, "reason": "x"}
        deep: object = "x"
        for _ in range(100):
            deep = [deep]
        document["reason"] = deep
        assert refusal(document).code is ErrorCode.LIMIT_EXCEEDED

    def test_a_valid_plan_is_not_slowed_by_the_nesting_check(self) -> None:
        ops = [{"type": "mkdir", "path": f"{CASE}/d{i}"} for i in range(2000)]
        assert len(parse_plan(plan_doc(ops)).operations) == 2000

    def test_error_messages_are_cut_with_a_marker(self) -> None:
        error = PlanError(ErrorCode.PATH_INVALID, "x" * 50_000, path="p" * 10_000)
        document = error.to_dict()
        assert len(str(document["message"])) <= 1000
        assert str(document["message"]).endswith("more characters)")
        assert len(str(document["path"])) <= 4096


class TestBoundedResults:
    def big(self, changes: int) -> dict[str, object]:
        from fileops_daemon.contract.results import build_result, now

        change = {"action": "create_folder", "operation": 0, "path": f"{CASE}/" + "d" * 500}
        return build_result(
            plan_id="p-1",
            case_name=CASE,
            dry_run=True,
            status="planned",
            started=now(),
            operations=[{"index": 0, "type": "mkdir", "outcome": "ok", "message": "ok"}],
            changes=[dict(change, operation=i) for i in range(changes)],
        )

    def test_a_result_that_fits_is_left_alone(self) -> None:
        from fileops_daemon.contract.results import bounded

        result = self.big(10)
        assert bounded(result, full_result="gs://a/b") is result

    def test_a_huge_result_keeps_its_first_changes_and_says_where_the_rest_is(self) -> None:
        from fileops_daemon.contract.results import MAX_RESULT_BYTES, bounded
        from tests.support import assert_valid_result

        result = self.big(20_000)  # ~11 MB
        shown = bounded(result, full_result="gs://audit/2026/01/01/p-1/1.json")
        published = json.dumps(shown, ensure_ascii=False, separators=(",", ":")).encode()
        assert len(published) <= MAX_RESULT_BYTES
        assert shown["truncated"] == {
            "errors": 0,
            "operations": 1,
            "changes": 20_000,
            "full_result": "gs://audit/2026/01/01/p-1/1.json",
        }
        assert 1000 < len(shown["changes"]) < 20_000
        assert shown["changes"] == result["changes"][: len(shown["changes"])]
        assert shown["operations"] == result["operations"]
        assert_valid_result(shown)


class TestDigest:
    def test_dry_run_does_not_change_the_digest(self) -> None:
        assert parse_plan({**SEED, "dry_run": False}).digest == parse_plan(SEED).digest

    def test_key_order_does_not_change_the_digest(self) -> None:
        reordered = dict(reversed(list(SEED.items())))
        assert parse_plan(reordered).digest == parse_plan(SEED).digest

    def test_other_operations_change_the_digest(self) -> None:
        other = {**SEED, "operations": SEED["operations"][:1]}
        assert parse_plan(other).digest != parse_plan(SEED).digest

    def test_reason_and_requested_by_do_not_change_the_digest(self) -> None:
        reworded = {**SEED, "reason": "tidy the case folder", "requested_by": "retrying-agent"}
        bare = {key: value for key, value in SEED.items() if key not in ("reason", "requested_by")}
        assert parse_plan(reworded).digest == parse_plan(SEED).digest
        assert parse_plan(bare).digest == parse_plan(SEED).digest

    def test_defaults_written_out_do_not_change_the_digest(self) -> None:
        move = {**SEED["operations"][1], "overwrite": False}
        write = {"type": "write", "path": f"{CASE}/a.txt", "content": "x"}
        explicit = {**SEED, "operations": [move, {**write, "encoding": "text"}]}
        implicit = {**SEED, "operations": [SEED["operations"][1], write]}
        assert parse_plan(explicit).digest == parse_plan(implicit).digest

    @pytest.mark.parametrize(
        "change",
        [
            {"case_name": "Other v. Case"},
            {"operations": [{**SEED["operations"][0], "path": f"{CASE}/Investigation/video"}]},
            {"operations": [{**SEED["operations"][1], "overwrite": True}]},
            {"plan_id": "another-id"},
        ],
        ids=["case", "path", "overwrite", "plan_id"],
    )
    def test_what_changes_the_tree_changes_the_digest(self, change: dict[str, object]) -> None:
        document = {**SEED, **change}
        if "case_name" in change:  # paths start with the case
            document["operations"] = [{"type": "mkdir", "path": f"{change['case_name']}/x"}]
        assert parse_plan(document).digest != parse_plan(SEED).digest

    def test_a_plan_matches_the_digest_earlier_versions_recorded(self) -> None:
        plan = parse_plan(SEED)
        assert plan.matches_digest(legacy_plan_digest(SEED))
        assert plan.matches_digest(legacy_plan_digest({**SEED, "dry_run": False}))
        assert plan.matches_digest(plan.digest)
        assert legacy_plan_digest(SEED) != plan.digest
        assert not plan.matches_digest(legacy_plan_digest({**SEED, "reason": "other"}))
        assert not plan.matches_digest(None)
        assert not plan.matches_digest(parse_plan({**SEED, "plan_id": "x"}).digest)


def _applied(document: dict[str, object]) -> dict[str, object]:
    """A recorded result as far as describe_difference reads it."""
    return {
        "case_name": document["case_name"],
        "operations": [
            {"index": i, "type": op["type"]}  # type: ignore[index]
            for i, op in enumerate(document["operations"])  # type: ignore[arg-type]
        ],
        "changes": [
            {"action": "create_folder", "operation": 0, "path": f"{CASE}/Investigation"},
            {
                "action": "move",
                "operation": 1,
                "kind": "file",
                "from": f"{CASE}/a",
                "to": f"{CASE}/b",
            },
        ],
    }


class TestConflictMessage:
    def test_names_the_operation_and_both_paths(self) -> None:
        recorded = _applied(SEED)
        new = {
            **SEED,
            "operations": [
                SEED["operations"][0],
                {**SEED["operations"][1], "from": f"{CASE}/a", "to": f"{CASE}/c"},
            ],
        }
        assert describe_difference(new, recorded) == (
            f"operation 1 differs: move {CASE}/a -> {CASE}/b vs move {CASE}/a -> {CASE}/c"
        )

    def test_names_another_type(self) -> None:
        new = {
            **SEED,
            "operations": [SEED["operations"][0], {"type": "copy", "from": "x", "to": "y"}],
        }
        assert describe_difference(new, _applied(SEED)) == "operation 1 differs: move vs copy"

    def test_names_another_count(self) -> None:
        new = {**SEED, "operations": SEED["operations"][:1]}
        assert describe_difference(new, _applied(SEED)) == (
            "the recorded plan has 2 operation(s), this one 1"
        )

    def test_names_another_case(self) -> None:
        assert describe_difference({**SEED, "case_name": "B"}, _applied(SEED)) == (
            f"case_name differs: {CASE!r} vs 'B'"
        )

    def test_says_what_does_not_count_when_nothing_is_recorded(self) -> None:
        assert "reason and requested_by do not count" in describe_difference(SEED, None)
        assert "reason and requested_by do not count" in describe_difference(SEED, "garbage")


class TestDidYouMean:
    @pytest.mark.parametrize(
        ("change", "hint"),
        [
            ({"reasn": "x"}, "(did you mean 'reason' for 'reasn'?)"),
            (
                {"operations": [{"type": "move", "form": f"{CASE}/a", "to": f"{CASE}/b"}]},
                "(did you mean 'from' for 'form'?)",
            ),
            (
                {"operations": [{"type": "move", "from": "a", "to": "b", "overwrit": True}]},
                "(did you mean 'overwrite' for 'overwrit'?)",
            ),
            (
                {"operations": [{"type": "delete", "path": "a", "expect": {"sise": 1}}]},
                "(did you mean 'size' for 'sise'?)",
            ),
            ({"operations": [{"type": "mkdr", "path": "a"}]}, "(did you mean 'mkdir' for 'mkdr'?)"),
        ],
        ids=["plan-field", "operation-field", "field-of-a-type", "expect-field", "type"],
    )
    def test_a_misspelt_name_gets_a_suggestion_and_keeps_its_code(
        self, change: dict[str, object], hint: str
    ) -> None:
        error = refusal({**SEED, **change})
        assert error.code is ErrorCode.SCHEMA_VIOLATION
        assert error.message.endswith(hint), error.message

    def test_a_name_like_no_other_gets_no_suggestion(self) -> None:
        error = refusal({**SEED, "zzzz": 1})
        assert error.code is ErrorCode.SCHEMA_VIOLATION
        assert "did you mean" not in error.message


class TestErrorCodes:
    def test_result_schema_lists_exactly_the_codes_the_code_uses(self) -> None:
        listed = load_schema("result")["$defs"]["code"]["enum"]
        assert listed == [code.value for code in ErrorCode]

    def test_the_contract_page_documents_every_code(self) -> None:
        from pathlib import Path

        page = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
        missing = [code.value for code in ErrorCode if f"`{code.value}`" not in page]
        assert not missing

    def test_limits_come_from_the_environment(self) -> None:
        limits = Limits.from_env({"FILEOPS_MAX_DELETES": "5", "FILEOPS_MAX_OPERATIONS": "7"})
        assert (limits.max_deletes, limits.max_operations) == (5, 7)
        with pytest.raises(ConfigError, match="FILEOPS_MAX_STEPS must be at least 1"):
            Limits.from_env({"FILEOPS_MAX_STEPS": "0"})
        with pytest.raises(ConfigError, match="FILEOPS_MAX_DELETES must be a whole number"):
            Limits.from_env({"FILEOPS_MAX_DELETES": "lots"})


class TestValidatorsAgree:
    """jsonschema-rs decides fast; jsonschema (the reference) must agree on every verdict."""

    @pytest.mark.parametrize(
        "document",
        [
            SEED,
            {**SEED, "dry_run": "no"},
            {**SEED, "operations": []},
            {**SEED, "surprise": 1},
            {**SEED, "plan_id": "../x"},
            plan_doc([{"type": "move", "from": f"{CASE}/a"}]),
            plan_doc([{"type": "mkdir", "path": f"{CASE}/a", "overwrite": True}]),
            plan_doc([{"type": "write", "path": f"{CASE}/a", "content": "x", "encoding": "hex"}]),
            plan_doc([{"type": "copy", "from": "a", "to": "b", "expect": {}}]),
            plan_doc([{"type": "delete", "path": f"{CASE}/a", "expect": {"size": -1}}]),
        ],
    )
    def test_same_verdict(self, document: dict[str, object]) -> None:
        import jsonschema_rs
        from jsonschema import Draft202012Validator

        schema = load_schema("plan")
        reference = Draft202012Validator(schema).is_valid(document)
        assert jsonschema_rs.validator_for(schema).is_valid(document) == reference
