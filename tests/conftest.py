from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import CASE


@dataclass
class World:
    """A projects root with one case, a look-alike sibling case and a folder outside it."""

    base: Path
    root: Path
    case: Path
    outside: Path
    state: Path


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = tmp_path / "projects"
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "Medical Records").mkdir()
    (case / "Investigation").mkdir()
    for i in range(1, 4):
        (case / "uncategorized" / f"file{i}.pdf").write_bytes(f"file {i}\n".encode() * i)
    (case / "Investigation" / "report.txt").write_text("report\n")
    evil = root / f"{CASE}-evil"
    evil.mkdir()
    (evil / "loot.txt").write_text("sibling case\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours\n")
    state = tmp_path / "state"
    return World(tmp_path, root, case, outside, state)
