"""Tidying a plan's own folders below the case folder once its apply ended."""

from __future__ import annotations

import contextlib
import os

from fileops_daemon.core.paths import WORK_DIR_NAME

__all__ = ["remove_empty_work_dirs"]


def remove_empty_work_dirs(case_dir: str, plan_id: str, *, keep_trash: bool) -> None:
    """Drop the plan's empty staging folders, and unless ``keep_trash`` its empty trash
    folders. An applied plan's trash stays whole: an empty folder it holds was deleted by the
    plan, and its undo puts it back."""
    top = os.path.join(case_dir, WORK_DIR_NAME)
    base = os.path.join(top, plan_id)
    if os.path.islink(top) or not os.path.isdir(base) or os.path.islink(base):
        return
    trash = os.path.join(base, "trash")
    for dirpath, _dirnames, filenames in os.walk(base, topdown=False):
        if filenames or (keep_trash and (dirpath + os.sep).startswith(trash + os.sep)):
            continue
        try:
            os.rmdir(dirpath)
        except OSError:
            continue
    with contextlib.suppress(OSError):  # other plans' trash may still be there
        os.rmdir(top)
