"""Who is asking: the e-mail in Identity-Aware Proxy's signed header, verified on every request,
and whether the allow-list lets them decide.

IAP puts a JWT in ``x-goog-iap-jwt-assertion``: ES256, signed with one of Google's published
keys (a JWK set at ``keys_url``), ``aud`` the backend service (``/projects/NUMBER/global/
backendServices/ID``) or app, ``iss`` ``https://cloud.google.com/iap``, with ``exp`` and ``iat``.
Anything else (a missing or malformed header, another key, another audience, an old token) is
refused. Without IAP (loopback only, see ``config.py``) nobody is verified: the operator's name
is what the machine says, and the pages say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jwt

__all__ = [
    "IAP_HEADER",
    "IAP_ISSUER",
    "IAP_KEYS_URL",
    "AllowList",
    "IapVerifier",
    "Identity",
    "IdentityError",
]

IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_KEYS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
#: Seconds of clock difference tolerated on exp/iat/nbf (Google's own samples allow 30 s).
LEEWAY_SECONDS = 30


class IdentityError(Exception):
    """The request carries no identity this console accepts (401/403 on the page)."""


@dataclass(frozen=True)
class Identity:
    email: str
    verified: bool  # False only on loopback without IAP
    may_decide: bool

    @property
    def shown(self) -> str:
        return self.email if self.verified else f"{self.email} (not verified)"


class AllowList:
    """Who may decide: exact e-mails (``ana@firm.example``) or whole domains (``firm.example``
    or ``@firm.example``), compared case-insensitively."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.emails: frozenset[str] = frozenset()
        self.domains: frozenset[str] = frozenset()
        emails, domains = set(), set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if "@" in entry.lstrip("@"):
                emails.add(entry)
            else:
                domains.add(entry.lstrip("@"))
        self.emails, self.domains = frozenset(emails), frozenset(domains)

    @classmethod
    def parse(cls, text: str) -> AllowList:
        return cls(text.replace(";", ",").replace(" ", ",").split(","))

    def __bool__(self) -> bool:
        return bool(self.emails or self.domains)

    def allows(self, email: str) -> bool:
        email = email.strip().lower()
        if email.count("@") != 1:
            return False
        return email in self.emails or email.rsplit("@", 1)[1] in self.domains


class IapVerifier:
    """Verifies IAP's header against Google's keys (fetched from ``keys_url`` and cached)."""

    def __init__(
        self,
        audience: str,
        allow: AllowList,
        keys_url: str = IAP_KEYS_URL,
        *,
        timeout: float = 5.0,
    ) -> None:
        self.audience = audience
        self.allow = allow
        self.keys_url = keys_url
        # The key set is cached for 5 minutes; a token naming an unknown key id refetches it
        # (Google rotates its keys), so a rotation costs one fetch, not an outage.
        self._keys = jwt.PyJWKClient(keys_url, cache_jwk_set=True, lifespan=300, timeout=timeout)

    def identify(self, assertion: str | None) -> Identity:
        """The verified identity of the header's value; IdentityError otherwise."""
        if not assertion:
            raise IdentityError(f"no {IAP_HEADER} header: this console is reached through IAP")
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("alg") != "ES256":
                raise IdentityError("the IAP assertion is not ES256")
            key = self._keys.get_signing_key(str(header.get("kid", "")))
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=["ES256"],
                audience=self.audience,
                issuer=IAP_ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "aud", "iss", "email"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityError(f"Google's IAP keys could not be fetched: {exc}") from None
        except jwt.PyJWKClientError as exc:
            raise IdentityError(f"the IAP assertion's key is not one of IAP's: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise IdentityError(f"the IAP assertion is not valid: {exc}") from None
        email = claims.get("email")
        if not isinstance(email, str) or email.count("@") != 1:
            raise IdentityError("the IAP assertion names no e-mail")
        return Identity(email=email.lower(), verified=True, may_decide=self.allow.allows(email))
