"""The console in a real browser (headless Chromium, Selenium) against the real stack: the
emulators, ``fileops run`` and ``fileops console`` as subprocesses, IAP's header signed by a
local key and served keys. A person opens the waiting plans, opens one, sees its tree, decides
with the keyboard, and sees the result the agent gets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.browser import ConsoleProcess, chromium, need_browser, screenshot
from tests.console.iap_keys import AUDIENCE, Signer, serve_keys
from tests.daemon_support import Emulators, Stack, wait_until
from tests.emulators import harness
from tests.service.test_approval import (
    CASE,
    answers,
    approving_stack,
    moves_plan,
    wait_status,
    waiting,
)

pytest_plugins = ["tests.conftest_daemon"]

DECIDER = "ana@firm.example"
IAP_KEY = Signer.new("iap-browser-1")


@pytest.fixture(autouse=True)
def _once(emulators: Emulators) -> None:
    need_browser()
    if emulators.pubsub_kind == "gcloud":
        pytest.skip("the browser tests check the console, not Pub/Sub: they run on pstest only")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    path = tmp_path / "approval.key"
    path.write_text("approval-key-long-enough-for-hmac-0123456789\n")
    return {"approval": path}


@pytest.fixture
def keys_url() -> Iterator[str]:
    with serve_keys(IAP_KEY) as url:
        yield url


@pytest.fixture
def console(
    stack: Stack, keys: dict[str, Path], keys_url: str
) -> Iterator[Callable[[], ConsoleProcess]]:
    """The stack with approval on (over 3 steps, or anything to the trash), its daemon, and
    a console behind "IAP" (a local key) that lets DECIDER decide."""
    started: list[ConsoleProcess] = []

    def start() -> ConsoleProcess:
        approving_stack(stack, keys, FILEOPS_APPROVAL_MIN_STEPS="3", FILEOPS_APPROVAL_ON_TRASH="1")
        stack.start_daemon()
        port = harness.free_port()
        process = ConsoleProcess(
            stack,
            stack.logs / "console.log",
            FILEOPS_CONSOLE_PORT=str(port),
            FILEOPS_CONSOLE_IAP_AUDIENCE=AUDIENCE,
            FILEOPS_CONSOLE_IAP_KEYS_URL=keys_url,
            FILEOPS_CONSOLE_ORIGIN=f"http://127.0.0.1:{port}",
            FILEOPS_APPROVERS=f"{DECIDER},ops.firm.example",
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def wait_text(driver: Any, css: str, wanted: str, timeout: float = 30) -> None:
    def shown() -> bool:
        try:
            return wanted in text_of(driver, css)
        except Exception:  # the page is reloading
            return False

    wait_until(shown, timeout, f"{wanted!r} in {css} (page: {driver.current_url})", 0.2)


def tab_to(driver: Any, element_id: str, limit: int = 60) -> Any:
    """Press Tab from the top of the page until ``element_id`` has the focus."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement && document.activeElement.blur()")
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        active = driver.switch_to.active_element
        if active.get_attribute("id") == element_id:
            return active
    raise AssertionError(f"#{element_id} cannot be reached with the keyboard")


def decision_of(stack: Stack, plan_id: str) -> dict[str, Any]:
    blob = stack.storage.bucket(stack.state_bucket).blob(f"approvals/{plan_id}.json")
    return dict(json.loads(blob.download_as_bytes()))


class TestInTheBrowser:
    def test_open_pending_open_a_plan_see_its_tree_approve_and_see_applied(
        self, stack: Stack, console: Callable[[], ConsoleProcess]
    ) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        web = console()
        plan = moves_plan("reorg-0042", 4)
        plan["reason"] = "sort the inbox into Medical Records"
        expected = stack.reference_after([plan])
        shown = waiting(stack, plan)
        with chromium(IAP_KEY.token(DECIDER)) as driver:
            driver.get(f"{web.url}/pending")
            assert DECIDER in text_of(driver, "#who") and "verified" in text_of(driver, "#who")
            row = text_of(driver, "#pending tbody tr")
            for part in ("reorg-0042", CASE, "test-agent", "sort the inbox", "5 file steps"):
                assert part in row
            screenshot(driver, "pending")
            driver.find_element(By.LINK_TEXT, "reorg-0042").click()

            assert shown["approval"]["changes_digest"] in text_of(driver, "#digest")
            wait_text(driver, "#check", "has not changed since the simulation")
            tree = text_of(driver, ".tree")
            assert "sorted/" in tree and "moved from" in tree and "inbox/3.pdf" in tree
            assert "1 new folder" in text_of(driver, "ul.counts")
            assert "4 moves" in text_of(driver, "ul.counts")
            screenshot(driver, "plan")

            tab_to(driver, "approve").send_keys(Keys.ENTER)  # with the keyboard alone
            wait_text(driver, "#status", "applied")
            screenshot(driver, "applied")
        assert wait_status(stack, "reorg-0042", "applied")
        assert stack.tree() == expected
        assert ("applied", "agent-7") in answers(stack, "reorg-0042")
        decision = decision_of(stack, "reorg-0042")
        assert (decision["decision"], decision["by"]) == ("approve", DECIDER)
        audited = [v for k, v in stack.audit_records().items() if k.startswith("approvals/")]
        assert [(a["plan_id"], a["by"]) for a in audited] == [("reorg-0042", DECIDER)]

        with chromium(IAP_KEY.token(DECIDER)) as driver:
            driver.get(f"{web.url}/results?status=applied")
            wait_text(driver, "#results tbody", "reorg-0042")
            screenshot(driver, "results")

    def test_reject_with_a_reason_and_the_agent_is_answered_rejected(
        self, stack: Stack, console: Callable[[], ConsoleProcess]
    ) -> None:
        from selenium.webdriver.common.by import By

        web = console()
        before = stack.tree()
        waiting(stack, moves_plan("with-delete", 1, delete=True))
        with chromium(IAP_KEY.token("bo@ops.firm.example")) as driver:
            driver.get(f"{web.url}/plans/with-delete")
            assert "to the trash" in text_of(driver, ".tree")
            reason = driver.find_element(By.ID, "reason")
            label = driver.find_element(By.CSS_SELECTOR, "label[for=reason]")
            assert "Reason" in label.text
            reason.send_keys("keep old.txt: it is evidence")
            driver.find_element(By.ID, "reject").click()
            wait_text(driver, "#status", "rejected")
            assert "keep old.txt: it is evidence" in driver.find_element(By.ID, "main").text
        rejected = wait_status(stack, "with-delete", "rejected")
        assert rejected["errors"][0]["code"] == "approval_rejected"
        assert "keep old.txt" in rejected["errors"][0]["message"]
        assert stack.tree() == before
        assert decision_of(stack, "with-delete")["by"] == "bo@ops.firm.example"

    def test_a_changed_tree_is_shown_and_approval_refused(
        self, stack: Stack, console: Callable[[], ConsoleProcess]
    ) -> None:
        from selenium.webdriver.common.by import By

        web = console()
        waiting(stack, moves_plan("stale-1", 4))
        (stack.root / CASE / "inbox" / "2.pdf").write_text("edited after the simulation\n")
        with chromium(IAP_KEY.token(DECIDER)) as driver:
            driver.get(f"{web.url}/plans/stale-1")
            wait_text(driver, "#check", "The tree has changed since the simulation")
            button = driver.find_element(By.ID, "approve")
            assert not button.is_enabled()
            screenshot(driver, "changed")
            # Forcing the form through anyway: the console checks again and refuses.
            driver.execute_script("document.getElementById('approve').disabled = false")
            button.click()
            wait_text(driver, "#notice", "Not approved: the tree has changed")
        blob = stack.storage.bucket(stack.state_bucket).blob("approvals/stale-1.json")
        assert not blob.exists()
        assert stack.ledger_record("stale-1")["state"] == "awaiting_approval"

    def test_hostile_names_render_as_text_and_someone_off_the_list_cannot_decide(
        self, stack: Stack, console: Callable[[], ConsoleProcess]
    ) -> None:
        from selenium.common.exceptions import NoAlertPresentException
        from selenium.webdriver.common.by import By

        web = console()
        names = ["<script>alert(1)<script>.pdf", '"><img src=x onerror=alert(2)>.pdf']
        for name in names:
            (stack.root / CASE / "inbox" / name).write_text("hostile\n")
        plan = moves_plan("hostile-1", 2)
        plan["operations"] += [
            {"type": "move", "from": f"{CASE}/inbox/{n}", "to": f"{CASE}/sorted/{n}"} for n in names
        ]
        plan["requested_by"] = "agent\u202egnp.exe<svg onload=alert(3)>"
        waiting(stack, plan)
        with chromium(IAP_KEY.token("mallory@elsewhere.example")) as driver:
            for path in ("/pending", "/plans/hostile-1"):
                driver.get(web.url + path)
                time.sleep(0.3)
                with pytest.raises(NoAlertPresentException):
                    driver.switch_to.alert.text  # noqa: B018 (no script ran)
                main = driver.find_element(By.ID, "main").text
                assert "agent\\u202egnp.exe<svg onload=alert(3)>" in main
                assert not driver.find_elements(By.CSS_SELECTOR, "main img, main svg, main script")
            tree = text_of(driver, ".tree")
            assert names[0] in tree and names[1] in tree
            assert "may look at this plan but is not on the list" in text_of(driver, ".decide")
            assert not driver.find_elements(By.ID, "approve")
            screenshot(driver, "hostile")
        assert stack.ledger_record("hostile-1")["state"] == "awaiting_approval"
