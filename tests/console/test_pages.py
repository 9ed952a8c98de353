"""The console's pages and decisions, in process: waiting plans made by the daemon's real gate
on a real projects root, decisions checked as the daemon checks them, and every guard (Host,
Origin, CSRF, the allow-list, hostile text) at the HTTP level."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.console.config import ConsoleConfig
from fileops_daemon.contract.approval import APPROVE, REJECT, verify_decision, wakeup_document
from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.service.approval import DecisionStore
from tests.console.rig import APPROVAL_KEY, console, gated_daemon
from tests.service.test_handler_table import Daemon, Rig
from tests.support import CASE, SEED_OPS, plan_doc


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    root = tmp_path / "projects"
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "Medical Records").mkdir()
    (case / "Investigation").mkdir()
    (case / "uncategorized" / "file1.pdf").write_text("one\n")
    return Rig(tmp_path, root)


@pytest.fixture
def a(rig: Rig) -> Daemon:
    return gated_daemon(rig)


def wait(a: Daemon, plan: dict[str, Any]) -> dict[str, Any]:
    a.handle(plan, client_id="agent-1", message_id=plan["plan_id"])
    shown = a.answers(plan["plan_id"])[-1]
    assert shown["status"] == "awaiting_approval", shown
    return shown


def stored_decision(rig: Rig, plan_id: str) -> Any:
    return DecisionStore(rig.store).read(plan_id)


def wake(a: Daemon, plan_id: str) -> dict[str, Any]:
    a.handle(json.dumps(wakeup_document(plan_id, CASE, "x")).encode(), message_id=f"w-{plan_id}")
    return a.answers(plan_id)[-1]


SEED = plan_doc(SEED_OPS, plan_id="p-1", requested_by="paralegal-agent", reason="sort the inbox")


class TestPending:
    def test_waiting_plans_are_listed_oldest_first_with_what_made_them_wait(
        self, rig: Rig, a: Daemon
    ) -> None:
        wait(a, SEED)
        rig.clock.advance(60)
        later = [{"type": "mkdir", "path": f"{CASE}/later/{i}"} for i in range(2)]
        wait(a, plan_doc(later, plan_id="p-2"))
        page = console(rig).get("/pending")
        assert page.status_code == 200
        text = page.text
        assert text.index("p-1") < text.index("p-2")
        for shown in ("paralegal-agent", "sort the inbox", CASE, "2023-11-14T23:13:20.000Z"):
            assert shown in text  # agent, reason, case, expiry (the clock starts at 1.7e9 s)
        assert "2 file steps, more than 1" in text

    def test_no_waiting_plan_says_so(self, rig: Rig) -> None:
        assert "No plan is waiting" in console(rig).get("/pending").text


class TestAPlan:
    def test_the_tree_of_changes_its_counts_and_digest_are_shown_and_the_tree_is_checked(
        self, rig: Rig, a: Daemon
    ) -> None:
        shown = wait(a, SEED)
        web = console(rig)
        page = web.get("/plans/p-1").text
        assert 'data-check-url="/plans/p-1/check"' in page  # the page asks for the check
        assert 'id="approve" disabled' in page  # and approving waits for it
        assert "has not changed since the simulation" in web.get("/plans/p-1/check").text
        page = web.get("/plans/p-1?check=1").text  # checked before answering (no script)
        assert shown["approval"]["changes_digest"] in page
        for part in ("Investigation/", "photos", "new folder", "Medical Records/", "file1.pdf"):
            assert part in page
        assert "moved from" in page and f"{CASE}/uncategorized/file1.pdf" in page
        assert "1 new folder" in page.replace("<strong>1</strong>", "1")
        assert "has not changed since the simulation" in page
        assert 'id="approve"' in page and "disabled" not in page.split('id="approve"')[1][:40]

    def test_an_unknown_plan_is_a_404_that_repeats_the_id_as_text(self, rig: Rig) -> None:
        page = console(rig).get("/plans/nope-%3Cb%3E")
        assert page.status_code == 404
        assert "<b>" not in page.text and "&lt;b&gt;" in page.text


class TestDeciding:
    def test_approving_signs_the_decision_as_the_operator_wakes_the_daemon_and_shows_applied(
        self, rig: Rig, a: Daemon
    ) -> None:
        shown = wait(a, SEED)
        web = console(rig)
        token = web.csrf("/plans/p-1")
        digest = shown["approval"]["changes_digest"]
        page = web.post("/plans/p-1/approve", {"csrf": token, "digest": digest})
        assert page.status_code == 200 and "Approved. The daemon was told" in page.text
        decision = verify_decision((APPROVAL_KEY,), stored_decision(rig, "p-1"))
        assert (decision.decision, decision.by, decision.changes_digest) == (
            APPROVE,
            "ops@office-pc",
            digest,
        )
        assert web.published.messages == [wakeup_document("p-1", CASE, "fileops console")]
        assert wake(a, "p-1")["status"] == "applied"
        after = web.get("/plans/p-1").text
        assert 'class="status applied"' in after and "Undo" in after

    def test_rejecting_needs_a_reason_and_the_agent_is_told_it(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        web = console(rig)
        token = web.csrf("/plans/p-1")
        refused = web.post("/plans/p-1/reject", {"csrf": token, "reason": "  "})
        assert refused.status_code == 400 and stored_decision(rig, "p-1") is None
        web.post("/plans/p-1/reject", {"csrf": token, "reason": "wrong case <b>folder</b>"})
        decision = verify_decision((APPROVAL_KEY,), stored_decision(rig, "p-1"))
        assert (decision.decision, decision.reason) == (REJECT, "wrong case <b>folder</b>")
        ended = wake(a, "p-1")
        assert ended["status"] == "rejected" and "wrong case" in ended["errors"][0]["message"]
        assert "&lt;b&gt;folder&lt;/b&gt;" in web.get("/plans/p-1").text

    def test_two_people_deciding_at_once_one_wins_and_the_other_is_told(
        self, rig: Rig, a: Daemon
    ) -> None:
        wait(a, SEED)
        first, second = console(rig), console(rig)
        tokens = first.csrf("/plans/p-1"), second.csrf("/plans/p-1")
        first.post("/plans/p-1/reject", {"csrf": tokens[0], "reason": "not now"})
        told = second.post("/plans/p-1/approve", {"csrf": tokens[1]})
        assert "Someone else decided first: reject by ops@office-pc" in told.text
        assert "Your decision was not recorded" in told.text
        assert verify_decision((APPROVAL_KEY,), stored_decision(rig, "p-1")).decision == REJECT

    def test_a_changed_tree_is_shown_and_approval_refused(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        (rig.root / CASE / "uncategorized" / "file1.pdf").write_text("edited since\n")
        web = console(rig)
        page = web.get("/plans/p-1?check=1").text
        assert "The tree has changed since the simulation" in page
        assert "The tree has changed since the simulation" in web.get("/plans/p-1/check").text
        assert 'id="approve" disabled' in page
        told = web.post("/plans/p-1/approve", {"csrf": web.csrf("/plans/p-1")})
        assert "Not approved: the tree has changed" in told.text
        assert stored_decision(rig, "p-1") is None and web.published.messages == []

    def test_a_plan_that_would_now_be_refused_says_why(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        (rig.root / CASE / "uncategorized" / "file1.pdf").unlink()
        page = console(rig).get("/plans/p-1/check").text
        assert "it would be refused: source_missing" in page


class TestUndo:
    def test_an_applied_plan_shows_its_undo_preview_and_undo_is_sent_to_the_gate(
        self, rig: Rig, a: Daemon
    ) -> None:
        wait(a, SEED)
        web = console(rig)
        web.post("/plans/p-1/approve", {"csrf": web.csrf("/plans/p-1")})
        assert wake(a, "p-1")["status"] == "applied"
        before = rig.tree()
        page = web.get("/plans/p-1").text
        assert "Undoing it now would: planned" in page
        assert "moved from" in page.split('id="undo-h"')[1]  # file1.pdf goes back
        told = web.post("/plans/p-1/undo", {"csrf": web.csrf("/plans/p-1")})
        assert told.url.path == "/plans/p-1.undo" and told.status_code == 404  # not yet sent
        request = web.published.messages[-1]
        assert (request["undo_of"], request["dry_run"]) == ("p-1", False)
        assert rig.tree() == before  # the console itself changes nothing
        a.handle(request, message_id="undo-1", client_id="console")
        assert a.answers("p-1.undo")[-1]["status"] == "awaiting_approval"  # the gate holds it
        assert "Undo requested" in web.get(told.url.path + "?" + told.url.query.decode()).text
        # Once asked for, the plan's page names its undo and its state, and offers no other.
        page = web.get("/plans/p-1").text
        named = '<a href="/plans/p-1.undo">p-1.undo</a>: <span class="status awaiting_approval">'
        assert named in page
        assert 'id="undo"' not in page and "Undoing it now would" not in page


class TestGuards:
    def test_a_post_without_the_csrf_token_changes_nothing(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        web = console(rig)
        for form in ({}, {"csrf": "1.abc"}, {"csrf": console(rig).csrf("/plans/p-1")}):
            assert web.post("/plans/p-1/approve", form).status_code == 403
        assert stored_decision(rig, "p-1") is None

    def test_a_post_from_another_origin_changes_nothing(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        web = console(rig)
        token = web.csrf("/plans/p-1")
        for origin in ("https://evil.example", "null", "http://127.0.0.1:8471"):
            answer = web.post("/plans/p-1/approve", {"csrf": token}, origin=origin)
            assert answer.status_code == 403
        assert stored_decision(rig, "p-1") is None

    def test_another_host_name_is_not_answered(self, rig: Rig) -> None:
        web = console(rig)
        assert web.get("/pending", host="attacker.example").status_code == 421
        assert web.get("/pending", host="localhost:8470").status_code == 200

    def test_every_page_carries_a_strict_content_security_policy(self, rig: Rig) -> None:
        headers = console(rig).get("/pending").headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"

    def test_no_key_or_secret_reaches_a_page(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        web = console(rig)
        for path in ("/pending", "/plans/p-1", "/results", "/static/console.js"):
            text = web.get(path).text
            assert APPROVAL_KEY.decode() not in text and "signature" not in text

    def test_a_notice_in_a_link_from_elsewhere_is_not_shown(self, rig: Rig, a: Daemon) -> None:
        wait(a, SEED)
        page = console(rig).get("/plans/p-1?notice=Approved+by+the+partner&sig=00").text
        assert "Approved by the partner" not in page


#: Names a plan may use (the daemon refuses bidi controls and control characters in paths:
#: those come in the agent's free text below).
HOSTILE = [
    "<script>alert(1)<script>.pdf",  # no "/" in a file name
    '"><img src=x onerror=alert(1)>.pdf',
    "&lt;entity&gt; &amp; {{ 7*7 }}.pdf",
    "\u05e7\u05d5\u05d1\u05e5 \u0645\u0644\u0641.pdf",  # right-to-left letters
]


class TestHostileText:
    def test_hostile_names_reasons_and_agents_render_as_text(self, rig: Rig, a: Daemon) -> None:
        inbox = rig.root / CASE / "uncategorized"
        ops: list[dict[str, Any]] = [{"type": "mkdir", "path": f"{CASE}/<b>sorted<i>"}]
        for i, name in enumerate(HOSTILE):
            (inbox / name).write_text(f"{i}\n")
            ops.append(
                {"type": "move", "from": f"{CASE}/uncategorized/{name}", "to": f"{CASE}/{name}"}
            )
        plan = plan_doc(
            ops,
            plan_id="p-x",
            requested_by='<script>alert("agent")</script>\u2066',
            reason="tidy\u202efdp.exe\x1b[31m \"'><svg onload=alert(1)>\u200b",
        )
        wait(a, plan)
        web = console(rig)
        for path in ("/pending", "/plans/p-x"):
            text = web.get(path).text
            assert "<script>alert" not in text and "<img" not in text and "<svg" not in text
            assert "\u202e" not in text and "\x1b" not in text and "\u2066" not in text
            assert "&lt;script&gt;alert" in text
            assert "\\u202e" in text  # the bidi override shown as an escape
        plan_page = web.get("/plans/p-x").text
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.pdf" in plan_page
        assert "&amp;lt;entity&amp;gt; &amp;amp; {{ 7*7 }}.pdf" in plan_page  # not evaluated
        assert "tidy\\u202efdp.exe\\x1b[31m" in plan_page and "\\u200b" in plan_page
        assert "&lt;b&gt;sorted&lt;i&gt;" in plan_page
        assert "\u05e7\u05d5\u05d1\u05e5" in plan_page  # letters stay letters


class TestIdentityOnThePage:
    def test_without_iap_the_page_says_identity_is_not_verified(self, rig: Rig) -> None:
        page = console(rig).get("/pending").text
        assert "Identity not verified" in page and "ops@office-pc" in page


class TestSettings:
    def test_without_iap_it_refuses_to_listen_beyond_loopback(self, tmp_path: Path) -> None:
        key = tmp_path / "approval.key"
        key.write_text("approval-key-0123456789abcdef\n")
        base = {"FILEOPS_APPROVAL_KEY_FILE": str(key)}
        for address in ("0.0.0.0", "10.0.0.5", "::", "console.internal"):
            with pytest.raises(ConfigError, match="loopback"):
                ConsoleConfig.from_env({**base, "FILEOPS_CONSOLE_ADDRESS": address})
        for address in ("127.0.0.1", "::1", "localhost"):
            assert not ConsoleConfig.from_env({**base, "FILEOPS_CONSOLE_ADDRESS": address}).iap

    def test_iap_needs_an_allow_list_and_the_public_origin(self, tmp_path: Path) -> None:
        key = tmp_path / "approval.key"
        key.write_text("approval-key-0123456789abcdef\n")
        env = {
            "FILEOPS_APPROVAL_KEY_FILE": str(key),
            "FILEOPS_CONSOLE_ADDRESS": "0.0.0.0",
            "FILEOPS_CONSOLE_IAP_AUDIENCE": "/projects/1/global/backendServices/2",
        }
        with pytest.raises(ConfigError, match="FILEOPS_APPROVERS"):
            ConsoleConfig.from_env(env)
        env["FILEOPS_APPROVERS"] = "firm.example"
        with pytest.raises(ConfigError, match="FILEOPS_CONSOLE_ORIGIN"):
            ConsoleConfig.from_env(env)
        env["FILEOPS_CONSOLE_ORIGIN"] = "https://approvals.firm.example"
        config = ConsoleConfig.from_env(env)
        assert config.iap and config.hosts == {"approvals.firm.example"}

    def test_no_approval_key_no_console(self) -> None:
        with pytest.raises(ConfigError, match="FILEOPS_APPROVAL_KEY_FILE"):
            ConsoleConfig.from_env({})
