"""The agent tool and the operators' CLI against a real daemon on the emulators."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.client.api import ClientConfig, FileopsClient
from fileops_daemon.client.tools import apply_reorg_plan, langchain_tool, submit_file_ops_plan
from fileops_daemon.contract.signing import sign
from tests.daemon_support import Stack, many_writes_plan, schema_errors, wait_until
from tests.support import CASE, SEED_OPS, snapshot

pytest_plugins = ["tests.conftest_daemon"]

REPO = Path(__file__).resolve().parents[2]
OPS = SEED_OPS


def plan(
    plan_id: str, *, dry_run: bool = True, ops: list[dict[str, Any]] | None = None, case: str = CASE
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": case,
        "dry_run": dry_run,
        "operations": ops if ops is not None else OPS,
    }


def seed_case(stack: Stack) -> Path:
    case = stack.case(CASE, {"uncategorized/file1.pdf": "one\n", "uncategorized/file2.pdf": "2\n"})
    (case / "Medical Records").mkdir()
    return case


def start_watch(stack: Stack, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``fileops watch ARGS``, once its subscription exists (results published after that
    show): the process and the name of its subscription."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "fileops_daemon.cli", "watch", *args],
        cwd=REPO,
        env=stack.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watch.stderr is not None
    line = "-"
    while line and not line.startswith("watching "):  # skip any library warnings
        line = watch.stderr.readline()
    if not line:
        watch.kill()
        watch.wait()
        raise AssertionError("watch ended without starting")
    return watch, line.split(" via ")[1].split()[0]


def watched(
    stack: Stack, client: FileopsClient, plans: list[dict[str, Any]], count: int, *watch_args: str
) -> list[dict[str, Any]]:
    """Run ``fileops watch --json --count COUNT`` while ``plans`` are submitted; what it printed."""
    watch, _ = start_watch(stack, "--json", *watch_args, "--timeout", "60", "--count", str(count))
    try:
        for document in plans:
            assert client.submit(document, timeout=30) is not None
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def client(stack: Stack) -> Iterator[FileopsClient]:
    with FileopsClient(ClientConfig(project=stack.project)) as made:
        yield made


@pytest.fixture
def running(stack: Stack) -> Stack:
    """A bootstrapped stack with the sample case and one daemon."""
    stack.bootstrap()
    seed_case(stack)
    stack.start_daemon("a")
    return stack


class TestAgentTool:
    def test_dry_run_then_apply_through_the_daemon(
        self, running: Stack, client: FileopsClient
    ) -> None:
        before = running.tree()
        planned = submit_file_ops_plan(plan("agent-1"), client=client, timeout=30)
        assert planned["status"] == "planned", planned
        assert not schema_errors(planned)
        assert running.tree() == before
        applied = submit_file_ops_plan(plan("agent-1", dry_run=False), client=client, timeout=30)
        assert applied["status"] == "applied", applied
        assert (running.root / CASE / "Medical Records" / "file1.pdf").read_text() == "one\n"

    def test_a_plan_the_daemon_refuses_comes_back_as_codes(
        self, running: Stack, client: FileopsClient
    ) -> None:
        ops = [{"type": "move", "from": f"{CASE}/nope.pdf", "to": f"{CASE}/x.pdf"}]
        result = submit_file_ops_plan(
            plan("agent-2", dry_run=False, ops=ops), client=client, timeout=30
        )
        assert result["status"] == "rejected"
        assert result["operations"][0]["code"] == "source_missing"
        text = apply_reorg_plan(
            json.dumps(plan("agent-3", ops=ops)), True, client=client, timeout=30
        )
        assert "source_missing" in text and "new plan_id" in text

    def test_a_traversal_is_refused_without_a_round_trip(self, client: FileopsClient) -> None:
        ops = [{"type": "delete", "path": f"{CASE}/../Other"}]
        started = time.monotonic()
        result = submit_file_ops_plan(plan("agent-4", ops=ops), client=client, timeout=30)
        assert result["status"] == "rejected"
        assert result["errors"][0]["code"] == "path_invalid"
        assert time.monotonic() - started < 5

    def test_bad_json_text_is_explained(self, client: FileopsClient) -> None:
        assert "not valid JSON" in apply_reorg_plan("{oops", True, client=client)

    def test_no_daemon_means_pending_after_the_timeout(
        self, stack: Stack, client: FileopsClient
    ) -> None:
        stack.bootstrap()
        seed_case(stack)
        result = submit_file_ops_plan(plan("agent-5"), client=client, timeout=2)
        assert result["status"] == "pending"
        assert "queued" in result["message"]

    def test_a_wait_shorter_than_the_servers_pull_hold_returns_none(
        self, stack: Stack, client: FileopsClient
    ) -> None:
        # pstest holds an empty pull 0.5 s (Pub/Sub longer): the call's own deadline fires.
        stack.bootstrap()
        began = time.monotonic()
        assert client.wait("never-sent", timeout=0.3) is None
        assert time.monotonic() - began < 5

    def test_a_client_keeps_its_subscription_in_a_project_of_its_own(self, running: Stack) -> None:
        agents = f"agents-{running.project}"  # not a prefix of the other: pstest lists by prefix
        env = {**running.env(), "FILEOPS_CLIENT_SUBSCRIPTION_PROJECT": agents}
        config = ClientConfig.from_env(env)

        def names(project: str) -> set[str]:
            return {
                s.name for s in running.subscriber.list_subscriptions(project=f"projects/{project}")
            }

        daemon_side = names(running.project)
        with FileopsClient(config) as separate:
            result = separate.submit(plan("agent-6"), timeout=30)
            assert result is not None and result["status"] == "planned"
            assert names(running.project) == daemon_side, (
                "a subscription landed beside the daemon's"
            )
            [own] = names(agents)
            assert own.endswith(f"fileops-results-{separate.client_id}")
        assert names(agents) == set(), "close() left the subscription behind"

    def test_the_langchain_tool_takes_a_plan_and_answers_in_words(
        self, running: Stack, client: FileopsClient
    ) -> None:
        tool = langchain_tool(client=client, timeout=30)
        assert "dry_run" in tool.description and "trash" in tool.description
        assert set(tool.args) >= {"plan_id", "case_name", "operations", "dry_run"}
        text = tool.invoke(plan("agent-6"))
        assert "planned" in text and "Medical Records/file1.pdf" in text
        assert "dry_run false" in text


class TestSignedPlans:
    def test_signed_plans_pass_and_unsigned_or_forged_ones_are_refused(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        current, previous = tmp_path / "current.key", tmp_path / "previous.key"
        current.write_text("current-key-0123456789\n")
        previous.write_text("previous-key-0123456789\n")
        stack.bootstrap()
        case = seed_case(stack)
        stack.start_daemon(
            "a",
            FILEOPS_SIGNING_KEY_FILE=str(current),
            FILEOPS_SIGNING_KEY_FILE_PREVIOUS=str(previous),
        )
        before = snapshot(case)
        project = stack.project
        # Refused unsigned or forged plans are answered unrouted, under the daemon's own name
        # (a forger cannot answer for another agent's plan); the sender hears it all the same,
        # by the message id it published.
        with FileopsClient(ClientConfig(project=project)) as unsigned:
            unsigned_id = unsigned.publish(plan("sig-1", dry_run=False))
            refusal = unsigned.wait("sig-1", 20)
            assert refusal is not None and refusal["in_reply_to"] == unsigned_id
            assert refusal["plan_id"] == f"unidentified-{unsigned_id}"
            assert refusal["errors"][0]["code"] == "signature_invalid"
        forged_key = b"forged-key-0123456789"
        with FileopsClient(ClientConfig(project=project, signing_key=forged_key)) as forger:
            forged_id = forger.publish(plan("sig-2", dry_run=False))
        # A valid signature over other bytes does not carry over to a changed plan.
        data = json.dumps(plan("sig-3", dry_run=False)).encode()
        tampered_id = stack.publish(
            json.dumps(plan("sig-3", dry_run=False, ops=OPS[:1])).encode(),
            attributes={
                "plan_id": "sig-3",
                "case_name": CASE,
                "signature": sign(b"current-key-0123456789", data),
            },
        )
        for message_id in (unsigned_id, forged_id, tampered_id):
            [refused] = stack.results.wait_plan(f"unidentified-{message_id}", 30)
            assert refused["errors"][0]["code"] == "signature_invalid"
        assert not {"sig-1", "sig-2", "sig-3"} & {r["plan_id"] for r in stack.results.results()}
        assert snapshot(case) == before
        with FileopsClient(
            ClientConfig(project=project, signing_key=b"previous-key-0123456789")
        ) as old:
            rotated = old.submit(plan("sig-4"), timeout=30)
        assert rotated is not None and rotated["status"] == "planned"
        with FileopsClient(
            ClientConfig(project=project, signing_key=b"current-key-0123456789")
        ) as good:
            applied = good.submit(plan("sig-5", dry_run=False), timeout=30)
        assert applied is not None and applied["status"] == "applied"

    def test_a_client_takes_only_answers_to_plans_it_sent(
        self, running: Stack, client: FileopsClient
    ) -> None:
        topic = running.topic(running.results_topic)
        reply = {"client_id": client.client_id}
        client.publish(plan("mine-1"))  # creates the subscription, and is a plan we sent
        forged = {"plan_id": "not-mine", "case_name": CASE, "status": "rejected"}
        for data in (json.dumps(forged).encode(), b"[" * 5000, b"\xff", b"[1]"):
            running.publisher.publish(topic, data, plan_id="not-mine", **reply).result(30)
        assert client.wait("not-mine", 5) is None
        result = client.wait("mine-1", 30)
        assert result is not None and result["status"] == "planned"

    def test_without_a_key_the_daemon_says_once_that_plans_are_not_authenticated(
        self, running: Stack
    ) -> None:
        daemon = running.daemons[0]
        assert len(daemon.events("daemon.plans_not_authenticated")) == 1


class TestOperatorCli:
    def test_submit_dry_run_then_apply_and_wait(self, running: Stack, tmp_path: Path) -> None:
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(plan("cli-1")))
        dry = running.cli("submit", str(path), "--wait", "--json", "--timeout", "30")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["status"] == "planned"
        real = running.cli("submit", str(path), "--apply", "--wait", "--timeout", "30")
        assert real.returncode == 0, real.stderr
        assert "applied" in real.stdout and "file1.pdf" in real.stdout

    def test_submit_exits_3_on_a_rejected_plan(self, running: Stack, tmp_path: Path) -> None:
        path = tmp_path / "plan.json"
        ops = [{"type": "delete", "path": f"{CASE}/nope"}]
        path.write_text(json.dumps(plan("cli-2", ops=ops)))
        run = running.cli("submit", str(path), "--wait", "--timeout", "30")
        assert run.returncode == 3
        assert "source_missing" in run.stderr and "Traceback" not in run.stderr

    def test_submit_times_out_with_exit_5_when_no_daemon_runs(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        stack.bootstrap()
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(plan("cli-3")))
        run = stack.cli("submit", str(path), "--wait", "--timeout", "2")
        assert run.returncode == 5
        assert "no result" in run.stderr

    def test_watch_shows_other_processes_results_filtered_by_case_and_status(
        self, running: Stack, client: FileopsClient
    ) -> None:
        other = running.case("Other-Case", {"a.txt": "a\n"})
        publish = [
            plan("w-1"),  # planned: filtered out by status
            plan("w-2", dry_run=False, ops=OPS[:1]),  # applied, this case
            plan(
                "w-3",
                dry_run=False,
                case="Other-Case",
                ops=[{"type": "mkdir", "path": "Other-Case/x"}],
            ),  # other case
            plan("w-4", dry_run=False, ops=[{"type": "delete", "path": f"{CASE}/no"}]),
            plan("w-5", dry_run=False, ops=OPS[1:]),  # applied, this case
        ]
        seen = watched(running, client, publish, 2, "--case", CASE, "--status", "applied")
        assert [r["plan_id"] for r in seen] == ["w-2", "w-5"]
        assert (other / "x").is_dir()

    def test_watch_filters_a_case_whose_name_cannot_sit_in_a_pubsub_filter(
        self, running: Stack, client: FileopsClient
    ) -> None:
        # A quote cannot sit in a filter literal. (A backslash could not either, but a case name
        # cannot hold one, and a refused plan's answer carries no case name of the sender's.)
        quoted = 'O"Neil & Sons-Case'
        running.case(quoted, {"a.txt": "a\n"})
        publish = [
            plan("q-1", case=quoted, ops=[{"type": "mkdir", "path": f"{quoted}/x"}]),
            plan("q-2"),  # another case
            plan("q-3", case=quoted, ops=[{"type": "mkdir", "path": f"{quoted}/y"}]),
        ]
        seen = watched(running, client, publish, 2, "--case", quoted)
        assert [r["plan_id"] for r in seen] == ["q-1", "q-3"]

    def test_watch_whose_subscription_is_deleted_says_so_and_exits_8(self, stack: Stack) -> None:
        """The emulator restarted (or someone removed it): never a silent wait for results
        that will not come."""
        if stack.emulators.pubsub_kind == "pstest":
            pytest.skip(
                "pstest keeps a stream open on a deleted subscription; Pub/Sub and Google's "
                "emulator end it with NOT_FOUND, which this checks on Google's emulator"
            )
        stack.bootstrap()
        watch, name = start_watch(stack, "--timeout", "120")
        try:
            from google.cloud import pubsub_v1

            with pubsub_v1.SubscriberClient() as admin:
                admin.delete_subscription(
                    subscription=f"projects/{stack.project}/subscriptions/{name}"
                )
            began = time.monotonic()
            _, err = watch.communicate(timeout=90)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
        assert watch.returncode == 8, err
        assert f"the results subscription {name} is gone" in err
        assert "Traceback" not in err and time.monotonic() - began < 60

    def test_status_shows_progress_moving_during_a_long_apply(self, stack: Stack) -> None:
        stack.bootstrap()
        stack.case(CASE)
        # Paced to ~10 s so that several status calls land while it runs, on any machine.
        stack.start_daemon(
            "a", FILEOPS_APPLY_MAX_STEPS_PER_SECOND="150", FILEOPS_LEASE_SECONDS="1.5"
        )
        stack.publish(many_writes_plan(CASE, "long-1", 1500))
        readings: list[int] = []

        def progressed() -> bool:
            run = stack.cli("status", "long-1", "--json")
            if run.returncode == 0:
                record = json.loads(run.stdout)
                if record["state"] == "claimed":
                    readings.append(int(record["progress"].get("steps_done", 0)))
            return len(set(readings)) >= 2 and readings[-1] > readings[0]

        wait_until(progressed, 120, "two different progress readings", interval=0.3)
        human = stack.cli("status", "long-1")
        assert human.returncode == 0 and "long-1" in human.stdout
        result = stack.results.wait_plan("long-1", 180)[-1]
        assert result["status"] == "applied"
        done = json.loads(stack.cli("status", "long-1", "--json").stdout)
        assert done["state"] == "done" and done["result"]["status"] == "applied"

    def test_status_follow_prints_progress_until_the_plan_is_settled(self, stack: Stack) -> None:
        stack.bootstrap()
        stack.case(CASE)
        stack.start_daemon(
            "a", FILEOPS_APPLY_MAX_STEPS_PER_SECOND="100", FILEOPS_LEASE_SECONDS="1.5"
        )
        stack.publish(many_writes_plan(CASE, "follow-1", 500))
        run = stack.cli("status", "follow-1", "--follow", "--timeout", "120", timeout=150)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        steps = [line for line in lines if line.startswith("follow-1: applying, ")]
        assert any(re.search(r", \d+/\d+ steps, on ", line) for line in steps), lines[:10]
        assert "follow-1: applied" in lines
        assert any(line.startswith("applied: plan 'follow-1'") for line in lines), lines[-5:]

    @pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
    def test_submit_wait_shows_progress_on_a_terminal(self, stack: Stack, tmp_path: Path) -> None:
        stack.bootstrap()
        stack.case(CASE)
        stack.start_daemon(
            "a", FILEOPS_APPLY_MAX_STEPS_PER_SECOND="100", FILEOPS_LEASE_SECONDS="1.5"
        )
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(many_writes_plan(CASE, "tty-1", 500)))
        command = [sys.executable, "-m", "fileops_daemon.cli", "submit", str(path)]
        command += ["--apply", "--wait", "--timeout", "120"]
        run = subprocess.run(  # script(1) runs it on a pseudo-terminal, as an operator would
            ["script", "-qec", shlex.join(command), "/dev/null"],
            cwd=REPO,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-2000:]
        assert re.search(r"tty-1: applying, \d+/\d+ steps, on ", run.stdout), run.stdout[:2000]
        assert "applied: plan 'tty-1'" in run.stdout

    def test_status_of_an_unknown_plan(self, running: Stack) -> None:
        run = running.cli("status", "never-sent")
        assert run.returncode == 3 and "no plan" in run.stderr

    def test_undo_restores_the_tree(self, running: Stack, client: FileopsClient) -> None:
        before = snapshot(running.root, skip_work_dirs=True)
        ops = [
            *OPS,
            {"type": "delete", "path": f"{CASE}/uncategorized/file2.pdf"},
            {"type": "write", "path": f"{CASE}/notes.txt", "content": "n"},
        ]
        applied = client.submit(plan("undo-1", dry_run=False, ops=ops), timeout=30)
        assert applied is not None and applied["status"] == "applied"
        assert snapshot(running.root, skip_work_dirs=True) != before
        preview = running.cli("undo", "undo-1", "--wait", "--json", "--timeout", "30")
        assert preview.returncode == 0, preview.stderr
        assert json.loads(preview.stdout)["status"] == "planned"
        undone = running.cli("undo", "undo-1", "--apply", "--wait", "--json", "--timeout", "30")
        assert undone.returncode == 0, undone.stderr
        assert json.loads(undone.stdout)["plan_id"] == "undo-1.undo"
        assert snapshot(running.root, skip_work_dirs=True) == before
