"""Infrastructure problems: classified into a kind, a one-line message, advice and an exit
code, and answered by every tool as a status ``error`` within seconds, never raised."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError, RefreshError

from fileops_daemon.client import FileOpsTools, InfraProblem, classify
from fileops_daemon.client.api import ClientConfig, FileopsClient, close_default_client
from fileops_daemon.client.tools import submit_file_ops_plan
from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.contract.exitcodes import (
    EXIT_CONFIG,
    EXIT_NO_CREDENTIALS,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION_DENIED,
    EXIT_UNREACHABLE,
)
from tests.daemon_support import Stack
from tests.emulators.harness import free_port
from tests.support import CASE

pytest_plugins = ["tests.conftest_daemon"]

EMULATOR = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:8681"}
ARGS: dict[str, Any] = {
    "plan_id": "infra-1",
    "case_name": CASE,
    "reason": None,
    "operations": [
        {
            "type": "mkdir",
            "path": f"{CASE}/x",
            "from": None,
            "to": None,
            "content": None,
            "overwrite": None,
        }
    ],
}


#: The same plan for the first tool, which takes plan documents.
PLAN: dict[str, Any] = {
    "plan_id": "infra-1",
    "case_name": CASE,
    "operations": [{"type": "mkdir", "path": f"{CASE}/x"}],
}


class TestClassify:
    def test_a_retry_that_gave_up_on_an_unreachable_host_names_the_host(self) -> None:
        cause = gexc.ServiceUnavailable("failed to connect to all addresses")
        problem = classify(gexc.RetryError("Timeout of 5.0s exceeded", cause), env=EMULATOR)
        assert problem is not None and problem.kind == "unreachable"
        assert "127.0.0.1:8681" in problem.message and "Pub/Sub" in problem.message
        assert problem.exit_code == EXIT_UNREACHABLE

    def test_without_an_emulator_the_default_endpoint_is_named(self) -> None:
        problem = classify(gexc.ServiceUnavailable("down"), env={})
        assert problem is not None and "pubsub.googleapis.com:443" in problem.message

    def test_gcs_connection_errors_name_the_storage_host(self) -> None:
        env = {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}
        problem = classify(requests.ConnectionError("refused"), env=env)
        assert problem is not None and problem.kind == "unreachable"
        assert "GCS at http://127.0.0.1:9" in problem.message

    def test_an_http_error_is_told_to_come_from_gcs(self) -> None:
        answer = requests.Response()
        answer.status_code = 404
        exc = gexc.from_http_status(404, "The specified bucket does not exist.", response=answer)
        problem = classify(exc, env=EMULATOR)
        assert problem is not None and problem.kind == "not_found"
        assert problem.message.startswith("GCS:") and "bucket does not exist" in problem.message
        denied = classify(gexc.Forbidden("no storage.objects.get"), service="storage")
        assert denied is not None and denied.message.startswith("GCS denied permission")

    @pytest.mark.parametrize(
        ("exc", "kind", "code"),
        [
            (DefaultCredentialsError("none"), "no_credentials", EXIT_NO_CREDENTIALS),
            (RefreshError("expired"), "no_credentials", EXIT_NO_CREDENTIALS),
            (gexc.Unauthenticated("bad token"), "no_credentials", EXIT_NO_CREDENTIALS),
            (
                gexc.NotFound("Resource not found (resource=fileops-results)."),
                "not_found",
                EXIT_NOT_FOUND,
            ),
            (
                gexc.PermissionDenied("User not authorized"),
                "permission_denied",
                EXIT_PERMISSION_DENIED,
            ),
            (
                gexc.Forbidden("403 storage.objects.get"),
                "permission_denied",
                EXIT_PERMISSION_DENIED,
            ),
            (
                ConfigError("FILEOPS_PROJECT (or GOOGLE_CLOUD_PROJECT) is required"),
                "config",
                EXIT_CONFIG,
            ),
        ],
    )
    def test_each_kind(self, exc: BaseException, kind: str, code: int) -> None:
        problem = classify(exc, env=EMULATOR)
        assert isinstance(problem, InfraProblem)
        assert (problem.kind, problem.exit_code) == (kind, code)
        assert "\n" not in problem.message and problem.advice

    def test_a_long_error_text_is_cut_to_one_short_line(self) -> None:
        problem = classify(gexc.ServiceUnavailable("x\n" * 5000), env=EMULATOR)
        assert problem is not None and "\n" not in problem.message
        assert len(problem.message) < 400

    @pytest.mark.parametrize(
        "exc", [ValueError("bug"), gexc.InvalidArgument("bad filter"), KeyError("plan_id")]
    )
    def test_anything_else_is_not_an_infrastructure_problem(self, exc: BaseException) -> None:
        assert classify(exc) is None


def answered_quickly(call: Any, limit: float = 12.0) -> dict[str, Any]:
    began = time.monotonic()
    result: dict[str, Any] = call()
    assert time.monotonic() - began < limit, f"took {time.monotonic() - began:.1f} s"
    return result


class TestToolsAnswerProblems:
    """On the real emulators (and a closed port): no exception, a status ``error``."""

    def test_no_project(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FILEOPS_PROJECT", raising=False)
        monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
        close_default_client()
        tools = FileOpsTools()
        for call in (
            lambda: tools.preview(**ARGS),
            lambda: tools.apply(**ARGS),
            lambda: tools.undo("infra-1", CASE, True),
            lambda: tools.status("infra-1"),
            lambda: submit_file_ops_plan(dict(PLAN)),
        ):
            result = answered_quickly(call, 2)
            assert result["status"] == "error", result
            assert result["problem"] == "config" and "FILEOPS_PROJECT" in result["message"]
            assert result["exit_code"] == EXIT_CONFIG

    def test_no_credentials(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        for name in ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("FILEOPS_PROJECT", "p")
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login here
        monkeypatch.setenv("NO_GCE_CHECK", "true")  # nor the metadata server of a cloud VM
        close_default_client()
        result = answered_quickly(lambda: FileOpsTools().preview(**ARGS))
        assert result["status"] == "error" and result["problem"] == "no_credentials"
        assert result["exit_code"] == EXIT_NO_CREDENTIALS and result["sent"] is False

    def test_an_unreachable_host_within_seconds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        host = f"127.0.0.1:{free_port()}"  # nothing listens there
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        with FileopsClient(ClientConfig(project="p", connect_timeout=3)) as client:
            tools = FileOpsTools(client)
            result = answered_quickly(lambda: tools.preview(**ARGS), 8)
            assert result["status"] == "error" and result["problem"] == "unreachable"
            assert host in result["message"] and result["exit_code"] == EXIT_UNREACHABLE
            again = answered_quickly(lambda: asyncio.run(tools.aapply(**ARGS)), 8)
            assert again["problem"] == "unreachable" and again["sent"] is False
        # The default client's timeout (5 s) is what an agent gets out of the box.
        close_default_client()
        monkeypatch.setenv("FILEOPS_PROJECT", "p")
        legacy = answered_quickly(lambda: submit_file_ops_plan(dict(PLAN)), 10)
        assert legacy["problem"] == "unreachable"
        close_default_client()

    def test_a_missing_topic(self, stack: Stack) -> None:
        # Not bootstrapped: the project has no topics at all.
        with FileopsClient(ClientConfig(project=stack.project)) as client:
            tools = FileOpsTools(client)
            result = answered_quickly(lambda: tools.preview(**ARGS), 5)
            assert result["status"] == "error" and result["problem"] == "not_found", result
            assert result["exit_code"] == EXIT_NOT_FOUND and "bootstrap" in result["advice"]
            undo = answered_quickly(lambda: asyncio.run(tools.aundo("infra-1", CASE, True)), 5)
            assert undo["problem"] == "not_found"

    def test_a_missing_plans_topic_once_the_results_topic_exists(self, stack: Stack) -> None:
        stack.bootstrap()
        config = ClientConfig(project=stack.project, plans_topic="no-such-topic")
        with FileopsClient(config) as client:
            result = answered_quickly(lambda: FileOpsTools(client).preview(**ARGS), 5)
        assert result["problem"] == "not_found", result
        assert result["sent"] is False
