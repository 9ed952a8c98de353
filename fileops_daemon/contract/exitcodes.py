"""Exit codes of ``fileops``: one table for the local commands, the operators' commands and
the daemon (systemd's unit file relies on the daemon's)."""

from __future__ import annotations

from typing import Final

from fileops_daemon.contract.results import ResultStatus

__all__ = [
    "EXIT_AWAITING_APPROVAL",
    "EXIT_BY_STATUS",
    "EXIT_CLOSED_PIPE",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_FORCED",
    "EXIT_NOT_FOUND",
    "EXIT_NO_CREDENTIALS",
    "EXIT_OK",
    "EXIT_PERMISSION_DENIED",
    "EXIT_REJECTED",
    "EXIT_STREAM_LOST",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
]

EXIT_OK: Final = 0  # planned or applied
EXIT_ERROR: Final = 1  # unexpected error (a bug, or the state folder is unusable)
EXIT_USAGE: Final = 2  # wrong command line
EXIT_REJECTED: Final = 3  # the plan was refused; nothing was touched
EXIT_FAILED: Final = 4  # the apply broke; rolled back, or the result says what remains
EXIT_TIMEOUT: Final = 5  # submit --wait: no result in time (the plan stays queued)
# Infrastructure, before any plan was sent or read (operators' commands and agent tools):
EXIT_UNREACHABLE: Final = 6  # Pub/Sub or GCS did not answer (the message names the host)
EXIT_NO_CREDENTIALS: Final = 7  # no Google credentials (and no emulator host set)
EXIT_NOT_FOUND: Final = 8  # the topic, subscription or bucket does not exist (bootstrap?)
EXIT_PERMISSION_DENIED: Final = 9  # credentials, but without the role the call needs
EXIT_AWAITING_APPROVAL: Final = 10  # submit --apply --wait: held for an operator's approval
EXIT_CLOSED_PIPE: Final = 141  # stdout's reader went away (| head): 128 + SIGPIPE, as git does
EXIT_STREAM_LOST: Final = 69  # daemon: the subscription stream ended for good (systemd restarts us)
EXIT_FORCED: Final = 75  # daemon: a second SIGTERM; in-flight plans are left to resume
EXIT_CONFIG: Final = 78  # daemon: the configuration is missing or wrong

#: A result's status as an exit code.
EXIT_BY_STATUS: Final[dict[str, int]] = {
    ResultStatus.PLANNED: EXIT_OK,
    ResultStatus.APPLIED: EXIT_OK,
    ResultStatus.REJECTED: EXIT_REJECTED,
    ResultStatus.FAILED: EXIT_FAILED,
    ResultStatus.AWAITING_APPROVAL: EXIT_AWAITING_APPROVAL,
}
