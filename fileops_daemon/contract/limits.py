"""Safety limits of one plan, with defaults a production daemon can live with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fileops_daemon.contract.envvars import env_int

__all__ = ["GCS_OBJECT_NAME_MAX_BYTES", "NAME_MAX_BYTES", "Limits"]

#: GCS refuses object names longer than this (UTF-8 bytes); a path is an object name.
GCS_OBJECT_NAME_MAX_BYTES = 1024
#: Linux and FUSE refuse a single name longer than this.
NAME_MAX_BYTES = 255


@dataclass(frozen=True)
class Limits:
    """Caps checked before the first change; exceeding one rejects the whole plan."""

    max_operations: int = 10_000
    #: Expanded steps (a folder move becomes one step per file and folder).
    max_steps: int = 100_000
    max_write_bytes: int = 1 << 20
    #: Files sent to the trash by delete or overwrite, like rclone's --max-delete.
    max_deletes: int = 1_000
    #: Size of the plan document itself (a Pub/Sub message holds 10 MB).
    max_plan_bytes: int = 8 << 20
    #: Bytes of one copy (known from the source's lstat during the simulation).
    max_copy_bytes: int = 10 << 30
    #: Bytes one plan creates by copy and write together.
    max_total_bytes: int = 50 << 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Read ``FILEOPS_MAX_*`` variables (unset ones keep their defaults); ConfigError names
        a wrong one."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            **{
                name: env_int(env, f"FILEOPS_{name.upper()}", getattr(defaults, name))
                for name in (
                    "max_operations",
                    "max_steps",
                    "max_write_bytes",
                    "max_deletes",
                    "max_plan_bytes",
                    "max_copy_bytes",
                    "max_total_bytes",
                )
            }
        )
