"""Operators' commands meet infrastructure problems: one line naming the problem (and the host
it tried), the problem's own exit code, within seconds, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fileops_daemon.contract.exitcodes import EXIT_NO_CREDENTIALS, EXIT_NOT_FOUND, EXIT_UNREACHABLE
from tests.daemon_support import Stack
from tests.emulators.harness import free_port

pytest_plugins = ["tests.conftest_daemon"]

REPO = Path(__file__).resolve().parents[2]
SEED = str(REPO / "examples" / "seed-plan.json")
#: Each command must give up well before the libraries' own 60 s of retries.
PROMPT_SECONDS = 20


def fileops(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fileops_daemon.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FILEOPS_", "GOOGLE_", "PUBSUB_EMULATOR", "STORAGE_EMULATOR"))
    }
    return {**env, "FILEOPS_PROJECT": "fileops-test", "FILEOPS_STATE_BUCKET": "ledger", **extra}


@pytest.mark.parametrize(
    "command",
    [
        ("submit", SEED, "--wait"),
        ("submit", SEED, "--apply", "--wait"),
        ("watch", "--count", "1"),
        ("status", "some-plan"),
        ("undo", "some-plan"),
    ],
    ids=lambda c: " ".join(c[:2]) if c[0] == "submit" and len(c) > 3 else c[0],
)
def test_a_host_that_does_not_answer_is_named_and_exits_6(command: tuple[str, ...]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = clean_env(PUBSUB_EMULATOR_HOST=closed, STORAGE_EMULATOR_HOST=f"http://{closed}")
    done, seconds = fileops(*command, env=env)
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("fileops: cannot reach ") and closed in line
    assert "Traceback" not in done.stderr and "internal error" not in line
    assert seconds < PROMPT_SECONDS


def test_no_credentials_exits_7(tmp_path: Path) -> None:
    env = clean_env(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"))
    done, seconds = fileops("status", "some-plan", env=env)
    assert done.returncode == EXIT_NO_CREDENTIALS, done.stderr
    [line] = done.stderr.splitlines()
    assert "credentials" in line and "gcloud auth application-default login" in line
    assert seconds < PROMPT_SECONDS


def test_no_credentials_anywhere_is_one_line_with_no_warning_before_it(tmp_path: Path) -> None:
    """No key file, no gcloud login, not on GCE: google-auth warns about the metadata server
    before it gives up; the command's one line is all the user sees."""
    closed = f"127.0.0.1:{free_port()}"
    env = clean_env(HOME=str(tmp_path), GCE_METADATA_HOST=closed, GCE_METADATA_IP=closed)
    env.pop("CLOUDSDK_CONFIG", None)
    done, seconds = fileops("status", "some-plan", env=env)
    assert done.returncode == EXIT_NO_CREDENTIALS, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("fileops: ") and "credentials" in line
    assert seconds < PROMPT_SECONDS


def test_a_missing_topic_exits_8(stack: Stack) -> None:
    """The emulators run but nothing was bootstrapped: no topics, no buckets."""
    env = {k: v for k, v in stack.env().items() if not k.startswith("FILEOPS_")}
    env.update(FILEOPS_PROJECT=stack.project, FILEOPS_STATE_BUCKET="no-such-bucket")
    for command in (("submit", SEED, "--wait"), ("watch", "--count", "1")):
        done, seconds = fileops(*command, env=env)
        assert done.returncode == EXIT_NOT_FOUND, (command, done.stderr)
        [line] = done.stderr.splitlines()
        assert "fileops bootstrap" in line
        assert seconds < PROMPT_SECONDS


def test_an_unreachable_bucket_for_gcs_bucket_is_named_as_gcs_and_exits_6(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = clean_env(STORAGE_EMULATOR_HOST=f"http://{closed}")
    state = str(tmp_path / "state")
    plan = tmp_path / "plan.json"
    document = json.loads(Path(SEED).read_text())
    plan.write_text(json.dumps({**document, "dry_run": False}))
    command = ("apply", str(plan), "--gcs-bucket", "projects", "--state-dir", state)
    done, seconds = fileops(*command, env=env)
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"fileops: cannot reach GCS at http://{closed}"), line
    assert seconds < PROMPT_SECONDS


def test_pending_with_gcs_unreachable_exits_6_within_seconds(tmp_path: Path) -> None:
    """Listing the waiting plans is retried by fileops alone, never by the library for
    minutes on end as well."""
    closed = f"127.0.0.1:{free_port()}"
    env = clean_env(
        STORAGE_EMULATOR_HOST=f"http://{closed}",
        FILEOPS_PROJECT="fileops-test",
        FILEOPS_STATE_BUCKET="state",
    )
    done, seconds = fileops("pending", env=env)
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"fileops: cannot reach GCS at http://{closed}"), line
    assert seconds < PROMPT_SECONDS
