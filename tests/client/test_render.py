"""Human views escape what a hostile plan put in its strings (issue 10)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fileops_daemon.cli.remote import _line
from fileops_daemon.client.render import (
    count_line,
    error_text,
    print_result,
    printable,
    summary_line,
)

HOSTILE = "p\x1b[2J\x1b]0;owned\x07\r\n\u202eevil\x9b31m\ud800"


def result(**fields: object) -> dict[str, object]:
    document: dict[str, object] = {
        "plan_id": HOSTILE,
        "case_name": HOSTILE,
        "status": "rejected",
        "dry_run": False,
        "operations": [
            {"index": 0, "type": HOSTILE, "outcome": "refused", "message": HOSTILE, "code": "x"}
        ],
        "changes": [],
        "errors": [{"code": "path_invalid", "message": HOSTILE}],
    }
    document.update(fields)
    return document


def assert_inert(text: str) -> None:
    unsafe = [ch for ch in text if ch not in "\n" and not (ch.isprintable() or ch == " ")]
    assert not unsafe, unsafe


class TestPrintable:
    @pytest.mark.parametrize("text", ["plain", "Müller-Café 東京", "a b"])
    def test_ordinary_text_is_unchanged(self, text: str) -> None:
        assert printable(text) == text

    def test_controls_bidi_and_surrogates_become_escapes(self) -> None:
        shown = printable(HOSTILE)
        assert_inert(shown)
        assert "\\x1b" in shown and "\\u202e" in shown and "\\ud800" in shown


class TestViews:
    def test_summary_line_and_watch_line_are_inert(self) -> None:
        assert_inert(summary_line(result()))
        assert_inert(_line(result()))

    def test_the_full_view_is_inert(self) -> None:
        changes = [
            {
                "action": "move",
                "operation": 0,
                "kind": "file",
                "from": HOSTILE,
                "to": f"c/{HOSTILE}",
            }
        ]
        out = io.StringIO()
        print_result(result(status="planned", changes=changes), Console(file=out, width=200))
        assert_inert(out.getvalue())

    def test_a_shortened_result_counts_every_change_and_says_where_they_are(self) -> None:
        shortened = result(
            status="applied",
            plan_id="p-1",
            case_name="c",
            truncated={"changes": 5000, "operations": 1, "errors": 0, "full_result": "gs://a/b"},
        )
        assert summary_line(shortened).endswith("changed 5000 item(s)")
        out = io.StringIO()
        print_result(shortened, Console(file=out, width=200))
        assert "gs://a/b" in out.getvalue()


class TestErrorsAndCounts:
    def test_an_error_shows_its_path_when_the_message_does_not(self) -> None:
        error = {"code": "path_invalid", "message": "path has a '..' component", "path": "c/../x"}
        assert error_text(error) == "path_invalid: path has a '..' component (path: c/../x)"
        said = {"code": "source_missing", "message": "c/x does not exist", "path": "c/x"}
        assert error_text(said) == "source_missing: c/x does not exist"

    def test_the_full_view_shows_each_refused_operations_path(self) -> None:
        errors = [
            {"code": "path_invalid", "message": "bad", "operation": 0, "path": "c/../x"},
            {"code": "path_reserved", "message": "reserved", "operation": 1, "path": "c/.fileops"},
        ]
        operations = [
            {
                "index": i,
                "type": "mkdir",
                "outcome": "refused",
                "message": e["message"],
                "code": e["code"],
            }
            for i, e in enumerate(errors)
        ]
        shown = io.StringIO()
        document = result(plan_id="p", case_name="c", operations=operations, errors=errors)
        print_result(document, Console(file=shown, width=200))
        assert "(path: c/../x)" in summary_line(document)
        assert "operation 0 (mkdir): path_invalid: bad (path: c/../x)" in shown.getvalue()
        assert "operation 1 (mkdir): path_reserved: reserved (path: c/.fileops)" in shown.getvalue()

    def test_changes_are_counted_by_kind(self) -> None:
        changes = [
            {"action": "create_folder", "path": "c/a"},
            {"action": "create_folder", "path": "c/a/b"},
            {"action": "move", "from": "c/x", "to": "c/a/x"},
            {"action": "trash", "path": "c/y", "to": "c/.fileops/p/trash/0/y"},
        ]
        assert count_line(result(changes=changes)) == "2 new folders, 1 move, 1 to trash"
        assert count_line(result(changes=[])) == "no changes"
        shortened = result(changes=changes[:1], truncated={"changes": 9})
        assert count_line(shortened) == "1 new folder (in the first 1 of 9 changes)"
