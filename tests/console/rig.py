"""The console in process over the daemon's real handler (tests/service/test_handler_table.py's
Rig: the in-memory ledger store, a real projects root): waiting plans are made by the real gate,
pages are fetched with Starlette's TestClient, published messages are kept in a list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

from fileops_daemon.console.app import build_app
from fileops_daemon.console.config import ConsoleConfig
from fileops_daemon.console.desk import Desk
from fileops_daemon.console.identity import AllowList
from fileops_daemon.contract.limits import Limits
from fileops_daemon.core.volume import LocalVolume
from fileops_daemon.service.approval import ApprovalPolicy, DecisionStore
from fileops_daemon.service.memstore import MemoryLedgerStore
from tests.service.test_handler_table import Daemon, Rig

APPROVAL_KEY = b"approval-key-0123456789abcdef"
ORIGIN = "http://127.0.0.1:8470"


class ListedDecisions(DecisionStore):
    """The index listed from the in-memory store (the console lists it from the bucket)."""

    def __init__(self, store: MemoryLedgerStore) -> None:
        super().__init__(store)
        self.memory = store

    @property
    def listable(self) -> bool:
        return True

    def indexed(self) -> Iterator[str]:
        for name in self.memory.names("awaiting/"):
            yield name.removeprefix("awaiting/").removesuffix(".json")


@dataclass
class Published:
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, document: dict[str, Any]) -> str:
        self.messages.append(document)
        return f"m-{len(self.messages)}"


def gated_daemon(rig: Rig, name: str = "a", **policy: Any) -> Daemon:
    settings = {"min_steps": 1, "ttl_seconds": 3600, "keys": (APPROVAL_KEY,), **policy}
    return rig.daemon(name, approval=ApprovalPolicy(**settings))


def loopback_config(**changes: Any) -> ConsoleConfig:
    settings: dict[str, Any] = {
        "address": "127.0.0.1",
        "port": 8470,
        "approval_key": APPROVAL_KEY,
        "iap_audience": "",
        "iap_keys_url": "",
        "approvers": AllowList([]),
        "origins": (ORIGIN, "http://localhost:8470"),
        "operator": "ops@office-pc",
        **changes,
    }
    return ConsoleConfig(**settings)


@dataclass
class Browserless:
    """A console over ``rig`` and what it published."""

    rig: Rig
    client: TestClient
    published: Published

    def get(self, path: str, **headers: str) -> Any:
        return self.client.get(path, headers=headers)

    def csrf(self, path: str, **headers: str) -> str:
        page = self.get(path, **headers)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text[:2000]
        return found.group(1)

    def post(self, path: str, form: dict[str, str], **headers: str) -> Any:
        headers = {"origin": ORIGIN, **headers}
        return self.client.post(path, data=form, headers=headers, follow_redirects=True)


def console(rig: Rig, config: ConsoleConfig | None = None) -> Browserless:
    published = Published()
    desk = Desk(
        rig.ledger("console"),
        ListedDecisions(rig.store),
        LocalVolume(str(rig.root)),
        Limits(),
        APPROVAL_KEY,
        published,
        clock=rig.clock,
    )
    app = build_app(config or loopback_config(), desk)
    return Browserless(rig, TestClient(app, base_url=ORIGIN), published)
