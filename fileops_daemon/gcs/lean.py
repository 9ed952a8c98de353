"""A storage client that does only the requests fileops asks for.

Two defaults of google-cloud-storage cost every request CPU, and some requests a second one:

- its HTTP session trusts the environment, so requests scans every variable for proxies and
  looks for a CA bundle and a netrc on each request (a third of a step's CPU with 16 workers);
- its cache of bucket metadata (attributes for OpenTelemetry spans, which fileops does not
  export) GETs the bucket once per client, and again after every 404 to see whether the
  bucket still exists: one more request for each ledger record or lease that is not there.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any, TypeVar

__all__ = ["lean_client"]

Client = TypeVar("Client")


def lean_client(client: Client) -> Client:
    """``client`` (a google.cloud.storage Client) without the two costs above; returned."""
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None  # type: ignore[attr-defined]
    session = getattr(client, "_http", None)
    if session is not None:
        _settle_environment(session)
    return client


def _settle_environment(session: Any) -> None:
    """Read once what requests would read from the environment on every request. Without a
    proxy or a netrc the only setting there is the CA bundle, taken here once; with one,
    requests keeps reading the environment itself (its no_proxy rules stay its own)."""
    if urllib.request.getproxies() or os.environ.get("NETRC"):
        return
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False
