"""The stable API: the root's names, the earlier import paths, and what importing costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fileops_daemon


def test_every_name_the_root_exports_resolves() -> None:
    for name in fileops_daemon.__all__:
        assert getattr(fileops_daemon, name) is not None, name


def test_the_earlier_import_paths_keep_working() -> None:
    from fileops_daemon.agent import apply_reorg_plan, langchain_tool, submit_file_ops_plan
    from fileops_daemon.client import FileopsClient, file_ops_tools

    assert fileops_daemon.apply_reorg_plan is apply_reorg_plan
    assert fileops_daemon.langchain_tool is langchain_tool
    assert fileops_daemon.submit_file_ops_plan is submit_file_ops_plan
    assert fileops_daemon.FileopsClient is FileopsClient
    assert fileops_daemon.file_ops_tools is file_ops_tools


def test_the_root_core_and_contract_load_no_cloud_library() -> None:
    """The local CLI's path: a fresh interpreter importing them has loaded no Google client."""
    code = (
        "import sys, fileops_daemon, fileops_daemon.core, fileops_daemon.contract, "
        "fileops_daemon.cli; "
        "cloud = ('google', 'prometheus_client'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in cloud))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_local_cli_loads_no_cloud_library_and_no_rich() -> None:
    """A local ``fileops apply --json``: its parser (all commands) and its output path load
    neither a Google client nor rich; structlog is loaded without rich (whose import costs
    the CLI's start ~150 ms)."""
    code = (
        "import sys; from fileops_daemon.cli.main import _parser; _parser(); "
        "import fileops_daemon.cli.output, fileops_daemon.core.execute, structlog; "
        "from fileops_daemon.logs import configure_logging; configure_logging(json_output=False); "
        "heavy = ('google', 'prometheus_client', 'rich', 'jsonschema'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_rich_stays_importable_after_structlog() -> None:
    """Hiding rich from structlog's import leaves it importable for the CLI's human views."""
    code = "import fileops_daemon, structlog, rich.console; print(structlog.dev.rich is None)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "True"


def test_a_local_apply_loads_no_cloud_library(tmp_path: Path) -> None:
    """``fileops apply`` starts in a fraction of a second: the Google clients (about a second
    to import) are loaded only by the commands that talk to the cloud."""
    case = tmp_path / "root" / "Case-01-01-2025"
    (case / "inbox").mkdir(parents=True)
    (case / "inbox" / "a.pdf").write_text("a")
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "plan_id": "p-cli",
                "case_name": case.name,
                "dry_run": False,
                "operations": [{"type": "mkdir", "path": f"{case.name}/sorted"}],
            }
        )
    )
    code = (
        "import sys; from fileops_daemon.cli.main import main; "
        f"code = main(['apply', {str(plan)!r}, '--root', {str(case.parent)!r}, "
        f"'--state-dir', {str(tmp_path / 'state')!r}, '--json']); "
        "cloud = ('google', 'prometheus_client'); "
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in cloud), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr
    assert (case / "sorted").is_dir()
