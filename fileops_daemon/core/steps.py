"""Steps: the primitive, journaled changes a plan expands into (one file or folder each).

Every step has a precondition and a postcondition that can be read off the tree, so after a
crash the executor can tell whether a step ran without trusting the journal's last lines.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Parts", "Step", "StepKind"]

Parts = tuple[str, ...]


class StepKind(StrEnum):
    """What a step does; how each kind is checked, run and undone: ``step_kinds.KINDS``."""

    MKDIR = "mkdir"
    RMDIR = "rmdir"
    RENAME = "rename"
    COPY = "copy"
    WRITE = "write"
    UNLINK = "unlink"  # only a rollback makes these: it removes what a copy or write made


@dataclass(frozen=True, slots=True)
class Step:
    """One change below the case folder. ``dst`` is the item created or removed."""

    kind: StepKind
    dst: Parts
    operation: int
    src: Parts | None = None
    content: bytes | None = None
    #: The source as the simulation checked it, in the volume's own terms (an object's
    #: generation; a file's size, mtime and the sha256 its ``expect`` named): the step acts
    #: only on that source. None: whatever stands at ``src`` when the step runs.
    version: str | None = None

    def touched(self) -> tuple[Parts, ...]:
        return (self.dst,) if self.src is None else (self.src, self.dst)

    def describe(self) -> str:
        dst = "/".join(self.dst)
        if self.src is not None:
            return f"{self.kind} {'/'.join(self.src)} -> {dst}"
        return f"{self.kind} {dst}"

    def content_sha256(self) -> str | None:
        return hashlib.sha256(self.content).hexdigest() if self.content is not None else None

    # -- journal form ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"k": self.kind.value, "d": list(self.dst), "o": self.operation}
        if self.src is not None:
            doc["s"] = list(self.src)
        if self.content is not None:
            doc["c"] = base64.b64encode(self.content).decode("ascii")
        if self.version is not None:
            doc["v"] = self.version
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Step:
        content = doc.get("c")
        src = doc.get("s")
        version = doc.get("v")
        return cls(
            kind=StepKind(doc["k"]),  # ValueError: not a kind of ours
            dst=tuple(doc["d"]),
            operation=doc["o"],
            src=tuple(src) if src is not None else None,
            content=base64.b64decode(content) if content is not None else None,
            version=str(version) if version is not None else None,
        )
