"""Case folders in a bucket, reached through the GCS JSON API instead of a gcsfuse mount.

``GcsVolume`` plugs into the core's ``Volume`` protocol: the same plan contract, confinement,
simulation, journal, resume, rollback and undo; steps go to the bucket as object requests with
generation preconditions (the check-and-act ``renameat2(RENAME_NOREPLACE)`` is on the mount),
issued concurrently where steps are independent.
"""

from __future__ import annotations

from fileops_daemon.gcs.volume import GcsVolume

__all__ = ["GcsVolume"]
