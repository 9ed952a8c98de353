"""What crosses a process boundary: the plan and result documents, error codes, limits,
message attributes, signatures, exit codes and settings. Imports nothing else of the package.
"""

from __future__ import annotations

from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.contract.errors import DESCRIPTIONS, ErrorCode, PlanError
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import (
    Expect,
    Operation,
    OperationType,
    Plan,
    decode_json,
    load_schema,
    parse_plan,
    plan_digest,
)
from fileops_daemon.contract.results import build_result, refusal_result
from fileops_daemon.contract.signing import sign_message, verify

__all__ = [
    "DESCRIPTIONS",
    "ConfigError",
    "ErrorCode",
    "Expect",
    "Limits",
    "Operation",
    "OperationType",
    "Plan",
    "PlanError",
    "build_result",
    "decode_json",
    "load_schema",
    "parse_plan",
    "plan_digest",
    "refusal_result",
    "sign_message",
    "verify",
]
