"""Which plans wait for a person: the approval policy, read once from the environment.

The policy is a pure function of a plan's own simulation (its steps and what it sends to the
trash), its case (every spelling of it: names and patterns are compared after NFC), and the
steps its case and its sender applied without a decision within the budget window
(``service/budget.py``). ``service/gate.py`` is the one place that asks it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fileops_daemon.contract.envvars import ConfigError, env_int
from fileops_daemon.contract.signing import load_key
from fileops_daemon.core.paths import nfc

__all__ = [
    "DEFAULT_SWEEP_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "DEFAULT_WINDOW_SECONDS",
    "ApprovalPolicy",
    "parse_duration",
]

DEFAULT_TTL_SECONDS = 7 * 24 * 3600.0
#: With a step threshold, the steps a case (or a sender) applies without a decision add up
#: over this long: ten plans of 90 steps do not pass a threshold of 100 that one plan of 900
#: would not.
DEFAULT_WINDOW_SECONDS = 24 * 3600.0
DEFAULT_SWEEP_SECONDS = 60.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, raw: str) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``12h`` or ``7d``; ConfigError otherwise."""
    text = raw.strip().lower()
    unit = _UNITS.get(text[-1:], 0) if text else 0
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{name} must be seconds or a number with s/m/h/d, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be more than 0, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", ""):
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true", "yes")


def _window(env: Mapping[str, str]) -> float:
    raw = env.get("FILEOPS_APPROVAL_WINDOW", "").strip()
    if not raw:
        return DEFAULT_WINDOW_SECONDS
    if raw.lower() in ("0", "off"):
        return 0.0
    return parse_duration("FILEOPS_APPROVAL_WINDOW", raw)


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which plans a person must approve before they are applied. Off by default."""

    #: A plan with more file steps than this waits; 0 = no limit.
    min_steps: int = 0
    #: A plan that deletes or overwrites anything (sends it to the trash) waits.
    on_trash: bool = False
    #: fnmatch patterns (NFC): a plan of a matching case waits.
    cases: tuple[str, ...] = ()
    #: How long a waiting plan may be approved; then it is rejected (approval_expired).
    ttl_seconds: float = DEFAULT_TTL_SECONDS
    #: HMAC keys of the operators' decisions (current first).
    keys: tuple[bytes, ...] = field(default=(), repr=False)
    #: With ``min_steps``: steps applied without a decision add up per case and per sender
    #: over this many seconds (0: each plan alone).
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    #: How often the daemons (one at a time) look for waiting plans past their expiry.
    sweep_seconds: float = DEFAULT_SWEEP_SECONDS

    @property
    def enabled(self) -> bool:
        return bool(self.min_steps or self.on_trash or self.cases)

    @property
    def budgeted(self) -> bool:
        """Whether steps add up across plans (the budget window is on)."""
        return bool(self.min_steps and self.window_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApprovalPolicy:
        min_steps = env_int(env, "FILEOPS_APPROVAL_MIN_STEPS", 0, minimum=0)
        on_trash = _flag(env, "FILEOPS_APPROVAL_ON_TRASH")
        cases = tuple(
            nfc(p.strip()) for p in env.get("FILEOPS_APPROVAL_CASES", "").split(",") if p.strip()
        )
        raw_ttl = env.get("FILEOPS_APPROVAL_TTL", "")
        ttl = parse_duration("FILEOPS_APPROVAL_TTL", raw_ttl) if raw_ttl else DEFAULT_TTL_SECONDS
        keys = []
        for name in ("FILEOPS_APPROVAL_KEY_FILE", "FILEOPS_APPROVAL_KEY_FILE_PREVIOUS"):
            if env.get(name, "").strip():
                try:
                    keys.append(load_key(env[name]))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{name}: {exc}") from None
        raw_sweep = env.get("FILEOPS_APPROVAL_SWEEP", "")
        sweep = (
            parse_duration("FILEOPS_APPROVAL_SWEEP", raw_sweep)
            if raw_sweep
            else DEFAULT_SWEEP_SECONDS
        )
        policy = cls(min_steps, on_trash, cases, ttl, tuple(keys), _window(env), sweep)
        if policy.enabled and not keys:
            raise ConfigError(
                "an approval policy is set (FILEOPS_APPROVAL_MIN_STEPS, _ON_TRASH or _CASES) "
                "but FILEOPS_APPROVAL_KEY_FILE is not: without it nobody could approve safely; "
                "refusing to start"
            )
        return policy

    def reasons(
        self, case_name: str, simulated: Mapping[str, Any], *, case_folder: str = ""
    ) -> list[str]:
        """Why this simulated plan, on its own, needs approval; empty when it does not.

        ``case_folder``: the case's name as the simulation found it on the volume. A pattern
        that matches the plan's spelling or the folder's, after NFC, picks the plan."""
        reasons = []
        steps = int(simulated.get("steps", 0))
        if self.min_steps and steps > self.min_steps:
            reasons.append(f"{steps} file steps, more than {self.min_steps}")
        trashed = sum(1 for c in simulated.get("changes", []) if c.get("action") == "trash")
        if self.on_trash and trashed:
            reasons.append(f"{trashed} item(s) deleted or overwritten")
        names = {nfc(case_name), nfc(case_folder)} - {""}
        for pattern in self.cases:
            if any(fnmatch.fnmatchcase(name, nfc(pattern)) for name in names):
                reasons.append(f"case matches {pattern!r}")
                break
        return reasons
