"""``make dist`` builds a wheel that installs, with its ``agent`` and ``mcp`` extras, into a
clean virtual environment from the package registry, and works there without the checkout.

Slow (about 80 s on 2 cores with pip's cache warm): the clean venv downloads, or takes from
pip's cache, the Google Cloud clients, langchain-core and the MCP SDK.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fileops_daemon import __version__

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

CHECK = """
import importlib.resources
import fileops_daemon
assert "site-packages" in fileops_daemon.__file__, fileops_daemon.__file__
from fileops_daemon.client import file_ops_tools
print(*[tool.name for tool in file_ops_tools()])
from fileops_daemon.client.mcp_server import build_server
print(type(build_server()).__name__)
schemas = importlib.resources.files("fileops_daemon").joinpath("schemas")
print(*sorted(path.name for path in schemas.iterdir()))
"""


def run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_with_its_extras_into_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run("make", "--no-print-directory", "dist", f"DIST={dist}", cwd=REPO)
    wheels = list(dist.glob("*.whl"))
    assert [wheel.name for wheel in wheels] == [f"fileops_daemon-{__version__}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"fileops_daemon-{__version__}.dist-info/METADATA").decode()
    shipped = {Path(name).name for name in names if name.startswith("fileops_daemon/schemas/")}
    assert shipped == {path.name for path in (REPO / "schemas").iterdir()}
    assert not any(name.startswith(("tests/", "scripts/", ".cache")) for name in names)
    assert "Provides-Extra: agent" in metadata and "Provides-Extra: mcp" in metadata

    venv = tmp_path / "venv"
    # The base interpreter, so the new venv sees nothing of the development one.
    base = getattr(sys, "_base_executable", sys.executable)
    run(base, "-m", "venv", venv, cwd=tmp_path)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"{wheels[0]}[agent,mcp]", cwd=tmp_path)  # fmt: skip

    # Away from the checkout: what runs is what the wheel installed.
    tools, server, schemas = run(python, "-I", "-c", CHECK, cwd=tmp_path).splitlines()
    assert tools == "preview_file_ops apply_file_ops file_ops_status undo_file_ops"
    assert server == "Server"
    assert set(schemas.split()) == shipped
    fileops = venv / "bin" / "fileops"
    seed = REPO / "examples" / "seed-plan.json"
    validated = run(fileops, "validate", seed, cwd=tmp_path)
    assert "valid: plan 'reorg-2024-07-13-abby-0001'" in validated
    assert "--http" in run(fileops, "mcp", "--help", cwd=tmp_path)
