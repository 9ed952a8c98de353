"""Subprocess for the crash tests: apply a plan and SIGKILL ourselves after step N.

Usage: python -m tests.crash_apply PLAN.json ROOT STATE KILL_AT [PARALLELISM]
(KILL_AT < 0: never; ROOT gs://BUCKET: the bucket at $STORAGE_EMULATOR_HOST, through the API)
"""

from __future__ import annotations

import json
import os
import signal
import sys

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.execute import RetryPolicy, apply_plan
from fileops_daemon.logs import configure_logging


def main() -> None:
    configure_logging(json_output=True)
    plan_path, root, state, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    parallelism = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    with open(plan_path, "rb") as handle:
        plan = parse_plan(handle.read())

    def on_step(done: int, total: int) -> None:
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    volume = None
    if root.startswith("gs://"):
        from fileops_daemon.gcs import GcsVolume
        from fileops_daemon.service.cloud import storage_client

        volume = GcsVolume(root.removeprefix("gs://"), lambda: storage_client("crash-test"))
    result = apply_plan(
        plan,
        root,
        state,
        on_step=on_step,
        retry=RetryPolicy(1, 0, 0),
        parallelism=parallelism,
        volume=volume,
    ).result
    print(json.dumps({"status": result["status"], "errors": result["errors"]}))


if __name__ == "__main__":
    main()
