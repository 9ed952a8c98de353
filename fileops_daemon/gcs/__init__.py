"""Case folders in a bucket, reached through the GCS JSON API instead of a gcsfuse mount.

``GcsVolume`` plugs into the core's ``Volume`` protocol: the same plan contract, confinement,
simulation, journal, resume, rollback and undo; steps go to the bucket as object requests with
generation preconditions (the check-and-act ``renameat2(RENAME_NOREPLACE)`` is on the mount),
issued concurrently where steps are independent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fileops_daemon.gcs.volume import GcsVolume

__all__ = ["GcsVolume"]


def __getattr__(name: str) -> Any:
    # Loaded when asked for: ``fileops_daemon.gcs.lean`` serves every storage client, and the
    # executor's modules are only for the processes that use it.
    if name == "GcsVolume":
        from fileops_daemon.gcs.volume import GcsVolume

        return GcsVolume
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
