"""Reading ``FILEOPS_*`` settings: a wrong value is a ConfigError that names its variable."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ConfigError", "env_float", "env_int", "project_from_env"]


class ConfigError(ValueError):
    """A required setting is missing or malformed; the message names the variable."""


def env_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    minimum: int = 1,
    maximum: int | None = None,
) -> int:
    """A whole number from ``minimum`` to ``maximum``; unset or empty gives ``default``."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of at least 0; unset or empty gives ``default``."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{name} must be a number of at least 0, got {raw!r}")
    return value


def project_from_env(env: Mapping[str, str]) -> str:
    """The Google Cloud project every fileops command works in."""
    project = env.get("FILEOPS_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise ConfigError("FILEOPS_PROJECT (or GOOGLE_CLOUD_PROJECT) is required")
    return project
