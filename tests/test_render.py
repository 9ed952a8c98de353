"""Human views escape what a hostile plan put in its strings (issue 10)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fileops_daemon.cli.remote import _line
from fileops_daemon.client.render import print_result, printable, summary_line

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
