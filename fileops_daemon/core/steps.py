"""Steps: the primitive, journaled changes a plan expands into (one file or folder each).

Every step has a precondition and a postcondition that can be read off the tree, so after a
crash the executor can tell whether a step ran without trusting the journal's last lines.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Parts", "Step", "StepKind"]

Parts = tuple[str, ...]
StepKind = Literal["mkdir", "rmdir", "rename", "copy", "write", "unlink"]


@dataclass(frozen=True, slots=True)
class Step:
    """One change below the case folder. ``dst`` is the item created or removed."""

    kind: StepKind
    dst: Parts
    operation: int
    src: Parts | None = None
    content: bytes | None = None

    def touched(self) -> tuple[Parts, ...]:
        return (self.dst,) if self.src is None else (self.src, self.dst)

    def inverse(self) -> Step:
        """The step that undoes this one (used by rollback)."""
        if self.kind == "mkdir":
            return Step("rmdir", self.dst, self.operation)
        if self.kind == "rmdir":
            return Step("mkdir", self.dst, self.operation)
        if self.kind == "rename":
            assert self.src is not None
            return Step("rename", self.src, self.operation, src=self.dst)
        if self.kind in ("copy", "write"):
            # Removes what this step created; the executor checks the content first.
            return Step("unlink", self.dst, self.operation, src=self.src, content=self.content)
        raise ValueError(f"{self.kind} steps are only produced by rollback")

    def describe(self) -> str:
        dst = "/".join(self.dst)
        if self.src is not None:
            return f"{self.kind} {'/'.join(self.src)} -> {dst}"
        return f"{self.kind} {dst}"

    def content_sha256(self) -> str | None:
        return hashlib.sha256(self.content).hexdigest() if self.content is not None else None

    # -- journal form ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"k": self.kind, "d": list(self.dst), "o": self.operation}
        if self.src is not None:
            doc["s"] = list(self.src)
        if self.content is not None:
            doc["c"] = base64.b64encode(self.content).decode("ascii")
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Step:
        content = doc.get("c")
        src = doc.get("s")
        return cls(
            kind=doc["k"],
            dst=tuple(doc["d"]),
            operation=doc["o"],
            src=tuple(src) if src is not None else None,
            content=base64.b64decode(content) if content is not None else None,
        )
