"""The console's settings, built once from the environment (``FILEOPS_CONSOLE_*`` beside the
daemon's own ``FILEOPS_*``, usually the same /etc/fileops/fileops.env).

With ``FILEOPS_CONSOLE_IAP_AUDIENCE`` every request must carry a valid IAP assertion and
``FILEOPS_CONSOLE_ORIGIN`` names the address people use; without it nobody is verified, so the
console listens on a loopback address only and refuses any other.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fileops_daemon.console.identity import IAP_KEYS_URL, AllowList
from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.contract.signing import load_key

__all__ = ["ConsoleConfig", "is_loopback"]

DEFAULT_PORT = 8470


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ConsoleConfig:
    address: str
    port: int
    approval_key: bytes
    #: IAP: the expected ``aud``; empty = no IAP (loopback only, identity not verified)
    iap_audience: str
    iap_keys_url: str
    approvers: AllowList
    #: The origins (scheme://host[:port]) whose Host and Origin headers are accepted.
    origins: tuple[str, ...]
    #: The decider's name without IAP (FILEOPS_OPERATOR, else user@host), shown unverified.
    operator: str

    @property
    def iap(self) -> bool:
        return bool(self.iap_audience)

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(urlsplit(origin).netloc.lower() for origin in self.origins)

    @property
    def url(self) -> str:
        return self.origins[0] + "/"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, port: int | None = None
    ) -> ConsoleConfig:
        env = os.environ if env is None else env
        address = env.get("FILEOPS_CONSOLE_ADDRESS", "").strip() or "127.0.0.1"
        if port is None:
            raw = env.get("FILEOPS_CONSOLE_PORT", "").strip() or str(DEFAULT_PORT)
            try:
                port = int(raw)
            except ValueError:
                raise ConfigError(
                    f"FILEOPS_CONSOLE_PORT must be a port number, got {raw!r}"
                ) from None
        if not 0 <= port < 65536:
            raise ConfigError(f"FILEOPS_CONSOLE_PORT must be a port number, got {port}")
        # The unit names its own credential copy; elsewhere the operators' setting is used.
        name = "FILEOPS_CONSOLE_APPROVAL_KEY_FILE"
        if not env.get(name, "").strip():
            name = "FILEOPS_APPROVAL_KEY_FILE"
        key_file = env.get(name, "").strip()
        if not key_file:
            raise ConfigError("FILEOPS_APPROVAL_KEY_FILE is required: the console signs decisions")
        try:
            key = load_key(key_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{name}: {exc}") from None
        audience = env.get("FILEOPS_CONSOLE_IAP_AUDIENCE", "").strip()
        approvers = AllowList.parse(env.get("FILEOPS_APPROVERS", ""))
        origin = env.get("FILEOPS_CONSOLE_ORIGIN", "").strip().rstrip("/")
        if audience:
            if not audience.startswith("/projects/"):
                raise ConfigError(
                    "FILEOPS_CONSOLE_IAP_AUDIENCE is /projects/NUMBER/global/backendServices/ID "
                    f"(or /projects/NUMBER/apps/PROJECT_ID), got {audience!r}"
                )
            if not approvers:
                raise ConfigError("FILEOPS_APPROVERS is required with IAP: who may decide")
            if not origin:
                raise ConfigError(
                    "FILEOPS_CONSOLE_ORIGIN is required with IAP: the console's address, "
                    "e.g. https://approvals.firm.example"
                )
        elif not is_loopback(address):
            raise ConfigError(
                f"FILEOPS_CONSOLE_ADDRESS={address}: without IAP verification "
                "(FILEOPS_CONSOLE_IAP_AUDIENCE) nobody's identity is verified, so the console "
                "listens on a loopback address only"
            )
        if origin:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ConfigError(f"FILEOPS_CONSOLE_ORIGIN is scheme://host[:port], got {origin!r}")
            origins: tuple[str, ...] = (origin.lower(),)
        else:
            origins = (f"http://127.0.0.1:{port}", f"http://localhost:{port}")
        operator = env.get("FILEOPS_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"
        return cls(
            address=address,
            port=port,
            approval_key=key,
            iap_audience=audience,
            iap_keys_url=env.get("FILEOPS_CONSOLE_IAP_KEYS_URL", "").strip() or IAP_KEYS_URL,
            approvers=approvers,
            origins=origins,
            operator=operator,
        )

    def with_port(self, port: int) -> ConsoleConfig:
        """The same settings on ``port`` (a free port picked at start)."""
        from dataclasses import replace

        origins = self.origins
        if not self.iap:
            origins = (f"http://127.0.0.1:{port}", f"http://localhost:{port}")
        return replace(self, port=port, origins=origins)
