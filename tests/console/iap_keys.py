"""A local stand-in for Google's IAP keys: ES256 key pairs, a JWK set served over loopback
HTTP (the verifier's key URL is configurable), and tokens shaped as IAP signs them."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://cloud.google.com/iap"
AUDIENCE = "/projects/123456789/global/backendServices/987654321"


@dataclass
class Signer:
    kid: str
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, kid: str) -> Signer:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def token(self, email: str | None = "ana@firm.example", **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
            "sub": "accounts.google.com:1234",
            "email": email,
            "hd": email.rsplit("@", 1)[-1] if email else None,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.key, algorithm="ES256", headers={"kid": self.kid})


@contextmanager
def serve_keys(*signers: Signer) -> Iterator[str]:
    """A JWK set of ``signers`` at http://127.0.0.1:PORT/jwk (served from a thread)."""
    body = json.dumps({"keys": [signer.jwk() for signer in signers]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwk"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
