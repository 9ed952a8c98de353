"""Daemon configuration comes from FILEOPS_* variables; mistakes name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from fileops_daemon.service.config import Config, ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "fileops.env.example"


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_the_shipped_example_is_a_complete_valid_configuration() -> None:
    config = Config.from_env(env_file(EXAMPLE))
    assert config.project == "my-law-firm-prod"
    assert config.audit_bucket == "my-law-firm-fileops-audit"
    assert config.projects_root == "/projects"
    assert config.limits.max_deletes == 1000
    assert config.log_json is True


def test_every_setting_in_the_example_is_one_the_daemon_reads() -> None:
    docs = EXAMPLE.parent.parent / "docs"
    # The daemon's settings table, and the plan limits it refers to.
    pages = (docs / "daemon.md").read_text() + (docs / "contract.md").read_text()
    undocumented = [name for name in env_file(EXAMPLE) if f"`{name}`" not in pages]
    assert not undocumented


def test_defaults_need_only_project_and_state_bucket() -> None:
    config = Config.from_env({"FILEOPS_PROJECT": "p", "FILEOPS_STATE_BUCKET": "s"})
    assert config.audit_bucket == "s"
    assert config.flow_max_messages == 2 * config.concurrency
    assert config.apply_max_steps_per_second == 0  # no cap unless ops set one


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FILEOPS_STATE_BUCKET": "s"}, "FILEOPS_PROJECT"),
        ({"FILEOPS_PROJECT": "p"}, "FILEOPS_STATE_BUCKET"),
        ({"FILEOPS_CONCURRENCY": "many"}, "FILEOPS_CONCURRENCY"),
        ({"FILEOPS_LEASE_SECONDS": "-1"}, "FILEOPS_LEASE_SECONDS"),
        ({"FILEOPS_MAX_DELIVERY_ATTEMPTS": "2"}, "FILEOPS_MAX_DELIVERY_ATTEMPTS"),
        ({"FILEOPS_MAX_DELETES": "0"}, "FILEOPS_MAX_DELETES"),
        ({"FILEOPS_LOG_FORMAT": "xml"}, "FILEOPS_LOG_FORMAT"),
        ({"FILEOPS_APPLY_MAX_STEPS_PER_SECOND": "-5"}, "FILEOPS_APPLY_MAX_STEPS_PER_SECOND"),
        ({"FILEOPS_APPLY_MAX_STEPS_PER_SECOND": "nan"}, "FILEOPS_APPLY_MAX_STEPS_PER_SECOND"),
        ({"FILEOPS_APPLY_MAX_STEPS_PER_SECOND": "1e-9"}, "FILEOPS_APPLY_MAX_STEPS_PER_SECOND"),
        ({"FILEOPS_ACK_DEADLINE_SECONDS": "601"}, "FILEOPS_ACK_DEADLINE_SECONDS"),
        ({"FILEOPS_SIGNING_KEY_FILE": ""}, "FILEOPS_SIGNING_KEY_FILE is set but empty"),
        ({"FILEOPS_SIGNING_KEY_FILE": "  "}, "FILEOPS_SIGNING_KEY_FILE is set but empty"),
        ({"FILEOPS_REQUIRE_SIGNING": "1"}, "FILEOPS_REQUIRE_SIGNING is on"),
        ({"FILEOPS_REQUIRE_SIGNING": "maybe"}, "FILEOPS_REQUIRE_SIGNING"),
        ({"FILEOPS_EXECUTOR": "rsync"}, "FILEOPS_EXECUTOR"),
        ({"FILEOPS_EXECUTOR": "gcs-api"}, "FILEOPS_PROJECTS_BUCKET"),
    ],
)
def test_a_bad_setting_names_the_variable(env: dict[str, str], named: str) -> None:
    base = {"FILEOPS_PROJECT": "p", "FILEOPS_STATE_BUCKET": "s"}
    base.update(env)
    for key in ("FILEOPS_PROJECT", "FILEOPS_STATE_BUCKET"):
        if key == named:
            base.pop(key)
    with pytest.raises(ConfigError, match=named):
        Config.from_env(base)


def test_require_signing_is_met_by_a_key(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("current-key-0123456789\n")
    env = {"FILEOPS_PROJECT": "p", "FILEOPS_STATE_BUCKET": "s", "FILEOPS_REQUIRE_SIGNING": "1"}
    config = Config.from_env({**env, "FILEOPS_SIGNING_KEY_FILE": str(key)})
    assert config.signing_keys == (b"current-key-0123456789",)


@pytest.mark.parametrize(
    "extra",
    [{"FILEOPS_SIGNING_KEY_FILE": ""}, {"FILEOPS_REQUIRE_SIGNING": "1"}],
    ids=["empty-key-line", "required-but-missing"],
)
def test_the_daemon_refuses_to_start_with_exit_78_and_one_line(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEOPS_")}
    env.update(
        FILEOPS_PROJECT="p",
        FILEOPS_STATE_BUCKET="s",
        FILEOPS_PROJECTS_ROOT=str(tmp_path),
        FILEOPS_STATE_DIR=str(tmp_path / "state"),
        **extra,
    )
    run = subprocess.run(
        [sys.executable, "-m", "fileops_daemon.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 78
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "FILEOPS_" in run.stderr and not run.stdout


def test_the_executor_is_the_mount_unless_the_api_is_chosen_with_its_bucket() -> None:
    base = {"FILEOPS_PROJECT": "p", "FILEOPS_STATE_BUCKET": "s"}
    assert Config.from_env(base).executor == "gcsfuse"
    chosen = Config.from_env(
        base | {"FILEOPS_EXECUTOR": "gcs-api", "FILEOPS_PROJECTS_BUCKET": "firm-cases"}
    )
    assert (chosen.executor, chosen.projects_bucket) == ("gcs-api", "firm-cases")
