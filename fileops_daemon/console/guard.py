"""What every request passes before a page sees it: the Host it names, the Origin of a POST,
the CSRF token of a form, and the headers every answer carries.

- **Host** must be one of the console's own origins (DNS rebinding: a hostile page that
  points its name at 127.0.0.1 still sends its own Host).
- **Origin** of a POST must be the console's (or, if a browser sent none, its Referer).
- **CSRF**: each form carries a token bound to the person (an HMAC of their e-mail and the time
  under a per-process secret); a POST without the right one is refused.
- Answers carry a strict Content-Security-Policy (scripts and styles from this console only,
  no inline script, no framing), ``nosniff``, ``same-origin`` referrers and ``no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SECURITY_HEADERS", "CsrfTokens", "GuardMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes a POST's Origin "null"
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

#: How long a page's forms stay usable (a person may leave a plan open for a while).
CSRF_MAX_AGE_SECONDS = 8 * 3600


class CsrfTokens:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, who: str, issued: int) -> str:
        text = f"{who}\n{issued}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()

    def issue(self, who: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        return f"{issued}.{self._mac(who, issued)}"

    def sign(self, text: str) -> str:
        """A MAC of ``text`` (a notice carried in a redirect: only ours are shown)."""
        return hmac.new(self._secret, b"notice\n" + text.encode(), hashlib.sha256).hexdigest()

    def signed(self, text: str, mac: str) -> bool:
        return hmac.compare_digest(self.sign(text).encode(), mac.encode("ascii", "replace"))

    def valid(self, token: str, who: str, now: float | None = None) -> bool:
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit() or len(issued_text) > 12:
            return False
        issued = int(issued_text)
        age = (time.time() if now is None else now) - issued
        if not 0 <= age <= CSRF_MAX_AGE_SECONDS:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(who, issued).encode())


class GuardMiddleware:
    """Refuses a request for another Host, or a POST from another Origin; adds the headers."""

    def __init__(self, app: App, origins: tuple[str, ...]) -> None:
        self.app = app
        self.origins = frozenset(origin.lower() for origin in origins)
        self.hosts = frozenset(urlsplit(origin).netloc for origin in self.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "").lower() not in self.hosts:
            await _plain(send, 421, "this console does not answer for that host name")
            return
        if scope["method"] not in ("GET", "HEAD") and not self._same_origin(headers):
            await _plain(send, 403, "a change is accepted only from this console's own pages")
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {name.lower() for name, _ in message["headers"]}
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        message["headers"].append((name, value))
            await send(message)

        await self.app(scope, receive, with_headers)

    def _same_origin(self, headers: dict[str, str]) -> bool:
        origin = headers.get("origin")
        if origin is None:  # no Origin: the Referer must name a page of ours
            referer = headers.get("referer", "")
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
        return origin.lower() in self.origins


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
