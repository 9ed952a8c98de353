"""The results page after a restart: what the daemon answered before the console started comes
from the audit bucket (the real GCS emulator), once each, before what arrives live."""

from __future__ import annotations

import re
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fileops_daemon.client.api import ClientConfig
from fileops_daemon.console.feed import ResultFeed
from fileops_daemon.console.history import Audited, day_prefixes, recent_audited
from tests.console.browser import ConsoleProcess
from tests.daemon_support import Stack, wait_until
from tests.emulators import harness
from tests.service.test_approval import CASE, approving_stack, moves_plan, wait_status

pytest_plugins = ["tests.conftest_daemon"]


def rows(url: str, query: str = "") -> list[str]:
    """The plan ids of the results page's rows, in order (newest first)."""
    with urllib.request.urlopen(f"{url}/results{query}", timeout=10) as response:
        page = response.read().decode()
    return re.findall(
        r'<tr class="result [a-z_]+">.*?<a href="/plans/[^"]*">([^<]*)</a>', page, re.S
    )


def result(plan_id: str, status: str = "applied") -> dict[str, Any]:
    return {"plan_id": plan_id, "case_name": CASE, "status": status, "dry_run": False}


class TestAfterARestart:
    def test_answers_from_before_the_start_are_shown_once_then_new_ones(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        key = tmp_path / "approval.key"
        key.write_text("approval-key-long-enough-for-hmac-0123456789\n")
        approving_stack(stack, {"approval": key})
        stack.start_daemon()
        stack.publish(moves_plan("before-1", 1, folder="a"))
        wait_status(stack, "before-1", "applied")
        stack.publish({**moves_plan("before-2", 1, folder="b"), "case_name": "No-Such-Case"})
        wait_status(stack, "before-2", "rejected")

        console = ConsoleProcess(
            stack, stack.logs / "console.log", FILEOPS_CONSOLE_PORT=str(harness.free_port())
        )
        try:
            wait_until(lambda: rows(console.url) == ["before-2", "before-1"], 30, "backfill")
            assert rows(console.url, "?status=rejected") == ["before-2"]
            # A plan that never waited: who asked for it comes from its audit record.
            with urllib.request.urlopen(f"{console.url}/plans/before-1", timeout=10) as page:
                shown = page.read().decode()
            assert "<dt>Agent</dt><dd>test-agent</dd>" in shown, shown
            stack.publish(moves_plan("after-1", 0, folder="c"))  # a mkdir
            wait_status(stack, "after-1", "applied")
            wanted = ["after-1", "before-2", "before-1"]
            wait_until(lambda: rows(console.url) == wanted, 30, "the live result on top")
        finally:
            console.stop()


class TestTheAuditBucket:
    def test_only_the_newest_records_of_the_last_two_days_are_read_oldest_first(
        self, stack: Stack
    ) -> None:
        stack.bootstrap()
        bucket = stack.storage.bucket(stack.state_bucket)
        now = datetime.now(UTC).timestamp()
        today, yesterday = day_prefixes(now)
        bucket.blob("2001/01/01/ancient/m.json").upload_from_string(
            '{"result": {"plan_id": "ancient", "status": "applied"}}'
        )
        bucket.blob("approvals/" + today + "p-0.json").upload_from_string('{"decision": "x"}')
        for n in range(5):
            line = f'{{"result": {{"plan_id": "p-{n}", "status": "applied"}}}}\n'
            bucket.blob(f"{today}p-{n}/m{n}.json").upload_from_string(line)
            time.sleep(0.01)  # one after another, as the daemon writes them
        audited = recent_audited(bucket, now, limit=3)
        assert [a.result["plan_id"] for a in audited] == ["p-2", "p-3", "p-4"]
        # Newer records that are not results are skipped, never shown or fatal.
        bucket.blob(f"{yesterday}old/m.json").upload_from_string('{"result": {"status": 1}}')
        bucket.blob(f"{today}broken/m.json").upload_from_string("not json")
        audited = recent_audited(bucket, now, limit=3)
        assert [a.result["plan_id"] for a in audited] == ["p-4"]
        assert [a.result["plan_id"] for a in recent_audited(bucket, now)] == [
            f"p-{n}" for n in range(5)
        ]
        assert recent_audited(bucket, now, max_bytes=10) == []  # each record is larger


class TestOneOfEach:
    def test_what_arrives_while_the_past_is_read_follows_it_and_is_not_repeated(self) -> None:
        feed = ResultFeed(ClientConfig(project="p"))
        feed._early = []  # as start() leaves it while the past is read
        feed.add(result("both"))
        feed.add(result("live"))
        assert feed.recent() == [] and feed.last_seq == 0  # nothing half-read is shown
        feed.settle([Audited(1.0, result("old")), Audited(2.0, result("both"))])
        assert [item.plan_id for item in feed.recent()] == ["live", "both", "old"]
        feed.add(result("later"))
        assert [item.plan_id for item in feed.recent(after=3)] == ["later"]
        # Audited before the listing, delivered after it: still shown once.
        feed.add(result("old"))
        assert [item.plan_id for item in feed.recent()] == ["later", "live", "both", "old"]
        feed.add(result("old"))  # a second delivery of it is Pub/Sub's redelivery: shown
        assert feed.last_seq == 5
