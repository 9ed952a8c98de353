"""Trees and plans the benchmarks run on (built once, copied fresh for every run)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import run_quiet

CASE = "Bench-Case-01-01-2025"


@dataclass(frozen=True)
class MoveFixture:
    """A projects root with ``CASE/inbox/NAME`` for every name, and the plan moving them all."""

    template: Path  # projects root to copy (never modified)
    case: str
    names: list[str]
    plan_path: Path  # {"dry_run": false, operations: move inbox/NAME -> sorted/NAME}
    names_path: Path  # one name per line (rclone --files-from-raw, xargs)
    plan: dict[str, Any]

    def fresh_copy(self, dest: Path) -> Path:
        """An identical copy of the template (``cp -a``, not measured); returns its root."""
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        run_quiet(["cp", "-a", str(self.template), str(dest)], timeout=300)
        return dest


def file_name(i: int) -> str:
    return f"doc-{i:05d} scan.pdf"  # a space, as real case files have


def move_plan(plan_id: str, case: str, names: list[str], src: str, dst: str) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": case,
        "dry_run": False,
        "requested_by": "bench",
        "reason": "benchmark: move every file of one folder into another",
        "operations": [
            {"type": "move", "from": f"{case}/{src}/{n}", "to": f"{case}/{dst}/{n}"} for n in names
        ],
    }


def build_move_fixture(work: Path, count: int, plan_id: str = "bench-local-moves") -> MoveFixture:
    template = work / "template"
    if template.exists():
        shutil.rmtree(template)
    inbox = template / CASE / "inbox"
    inbox.mkdir(parents=True)
    (template / CASE / "sorted").mkdir()
    names = [file_name(i) for i in range(count)]
    payload = b"%PDF-1.4 benchmark file\n" + b"x" * 200
    for name in names:
        fd = os.open(inbox / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
    plan = move_plan(plan_id, CASE, names, "inbox", "sorted")
    plan_path = work / f"{plan_id}.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    names_path = work / "names.txt"
    names_path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return MoveFixture(template, CASE, names, plan_path, names_path, plan)


def check_moved(root: Path, case: str, names: list[str], src: str, dst: str) -> None:
    """Every name is in ``dst`` and none is left in ``src``; raises BenchError otherwise."""
    from bench.common import BenchError

    left = [n for n in os.listdir(root / case / src) if not n.startswith(".")]
    moved = set(os.listdir(root / case / dst))
    missing = [n for n in names if n not in moved]
    if left or missing:
        raise BenchError(
            f"wrong work under {root}: {len(left)} left in {src}/, {len(missing)} missing "
            f"from {dst}/ (e.g. {(left + missing)[:3]})"
        )
