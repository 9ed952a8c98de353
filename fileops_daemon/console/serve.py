"""``fileops console``: wire the console from the environment and serve it with uvicorn.

The socket is bound here, before uvicorn starts, so the printed URL names the real port (port 0
picks a free one) and a refused address fails before anything else starts.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

from fileops_daemon.console.config import ConsoleConfig
from fileops_daemon.contract.envvars import ConfigError

__all__ = ["build", "serve"]

log = structlog.get_logger("fileops.console")


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the console cannot listen on {address}:{port}: {exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def build(config: ConsoleConfig) -> tuple[Any, Callable[[], None]]:
    """The ASGI app for ``config`` and a function that releases what it holds."""
    from fileops_daemon.client.api import ClientConfig, FileopsClient
    from fileops_daemon.console.app import build_app
    from fileops_daemon.console.desk import Desk
    from fileops_daemon.console.feed import ResultFeed
    from fileops_daemon.console.history import recent_audited
    from fileops_daemon.core.volume import LocalVolume, Volume
    from fileops_daemon.gcs import GcsVolume
    from fileops_daemon.service.cloud import CloudRetry, storage_client
    from fileops_daemon.service.config import Config
    from fileops_daemon.service.decisions import DecisionStore
    from fileops_daemon.service.ledger import Ledger
    from fileops_daemon.service.ledger_store import GcsLedgerStore

    daemon = Config.from_env()
    retry = CloudRetry(3)
    state = storage_client(daemon.project).bucket(daemon.state_bucket)
    store = GcsLedgerStore(state, retry)
    volume: Volume
    if daemon.executor == "gcs-api":
        volume = GcsVolume(daemon.projects_bucket, lambda: storage_client(daemon.project))
    else:
        volume = LocalVolume(daemon.projects_root)
    client_config = ClientConfig.from_env()
    client = FileopsClient(client_config, client_id=f"console-{os.getpid()}")
    audit = storage_client(daemon.project).bucket(daemon.audit_bucket)
    desk = Desk(
        Ledger(store, "fileops-console", 0),
        DecisionStore(store, state, retry),
        volume,
        daemon.limits,
        config.approval_key,
        client.publish,
        audit=audit,
    )
    feed = ResultFeed(client_config).start(lambda: recent_audited(audit, time.time()))

    def close() -> None:
        feed.stop()
        client.close()

    return build_app(config, desk, feed), close


def serve(port: int | None = None) -> int:
    """Run the console until SIGINT/SIGTERM (uvicorn handles both: it finishes open requests)."""
    import uvicorn

    config = ConsoleConfig.from_env(port=port)
    sock = _bind(config.address, config.port)
    config = config.with_port(sock.getsockname()[1])
    app, close = build(config)
    mode = (
        f"IAP verified (audience {config.iap_audience})"
        if config.iap
        else f"identity NOT verified: loopback only; decisions are recorded as {config.operator}"
    )
    print(f"fileops console: {config.url}  ({mode})", file=sys.stderr, flush=True)
    log.info("console.ready", url=config.url, iap=config.iap, address=config.address)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # the address of a request is never taken from a header
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        close()
        sock.close()
    return 0
