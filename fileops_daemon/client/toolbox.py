"""The agent tools' actions: preview, apply, follow up and undo a plan; each sync and async.

None of them raises. Every call answers a document: the daemon's result, ``pending`` (no
result in time: the plan stays queued, ``status`` follows it up), or ``error`` (the plan
could not be sent or its answer not read; ``problem`` says why, ``advice`` what to do).

The async variants never park a thread for long: the publish is awaited as a future
(``asyncio.wrap_future``), and waiting is a series of pulls of at most ``ASYNC_STEP`` seconds
on a worker thread, so a cancelled task lets its thread go within a second. Only creating the
results subscription, once per client, runs on a thread for up to ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from fileops_daemon.client.answers import error_result, local_refusal, pending_result
from fileops_daemon.client.api import FileopsClient, default_client
from fileops_daemon.client.toolargs import plan_document
from fileops_daemon.contract.exitcodes import EXIT_REJECTED
from fileops_daemon.core.undo import undo_request_document

__all__ = ["ASYNC_STEP", "DEFAULT_TIMEOUT", "STATUS_WAIT", "FileOpsTools"]

#: Seconds a preview, apply or undo waits for the daemon's answer before saying ``pending``.
DEFAULT_TIMEOUT = 60.0
#: Seconds ``status`` waits for an answer still on its way.
STATUS_WAIT = 3.0
#: Longest single wait on a worker thread in the async variants.
ASYNC_STEP = 1.0

_FOLLOW_UP = " Call file_ops_status with this plan_id later to get its result."


class FileOpsTools:
    """The four actions of the agent tools, sharing one client.

    ``client``: None uses the process's shared client, configured from FILEOPS_* variables
    (made on first use; a configuration problem is answered as an ``error``).
    ``requested_by``: recorded on every plan (default FILEOPS_REQUESTED_BY or
    ``agent <client_id>``); models cannot set it.
    """

    def __init__(
        self,
        client: FileopsClient | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        status_wait: float = STATUS_WAIT,
        requested_by: str | None = None,
    ) -> None:
        self._client = client
        self.timeout = timeout
        self.status_wait = status_wait
        self._requested_by = requested_by or os.environ.get("FILEOPS_REQUESTED_BY")

    def client(self) -> FileopsClient:
        return self._client if self._client is not None else default_client()

    def _requester(self, client: FileopsClient) -> str:
        return self._requested_by or f"agent {client.client_id}"

    # --- sync -------------------------------------------------------------------------------

    def preview(self, **arguments: Any) -> dict[str, Any]:
        """Dry run: what the plan would change. Nothing changes."""
        return self._plan(arguments, dry_run=True)

    def apply(self, **arguments: Any) -> dict[str, Any]:
        """Apply the plan (after a preview of the same plan_id and operations)."""
        return self._plan(arguments, dry_run=False)

    def undo(self, plan_id: str, case_name: str, dry_run: bool) -> dict[str, Any]:
        """Ask the daemon to undo an applied plan from the inverse it stored."""
        document = {"plan_id": plan_id, "case_name": case_name}
        try:
            client = self.client()
            request = undo_request_document(
                plan_id, case_name, dry_run=dry_run, requested_by=self._requester(client)
            )
        except Exception as exc:  # a tool never raises: the model gets what went wrong
            return error_result(document, exc)
        return self._send(client, request)

    def status(self, plan_id: str) -> dict[str, Any]:
        """The result of a plan this agent sent, or ``pending`` while there is none."""
        document = {"plan_id": plan_id}
        try:
            client = self.client()
            if not client.sent(plan_id):
                return _unknown(plan_id)
            result = client.answer(plan_id) or client.wait(plan_id, self.status_wait)
        except Exception as exc:
            return error_result(document, exc, sent=True)
        return result or _still_pending(plan_id)

    def _plan(self, arguments: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        try:
            client = self.client()
        except Exception as exc:
            return error_result(arguments, exc)
        document = plan_document(arguments, dry_run=dry_run, requested_by=self._requester(client))
        return self._send(client, document)

    def _send(self, client: FileopsClient, document: Mapping[str, Any]) -> dict[str, Any]:
        refusal = local_refusal(document)
        if refusal is not None:
            return refusal
        sent = False
        try:
            client.publish(document)
            sent = True
            result = client.wait(str(document["plan_id"]), self.timeout)
        except Exception as exc:
            return error_result(document, exc, sent=sent)
        return result or pending_result(document, self.timeout, _FOLLOW_UP)

    # --- async ------------------------------------------------------------------------------

    async def apreview(self, **arguments: Any) -> dict[str, Any]:
        return await self._aplan(arguments, dry_run=True)

    async def aapply(self, **arguments: Any) -> dict[str, Any]:
        return await self._aplan(arguments, dry_run=False)

    async def aundo(self, plan_id: str, case_name: str, dry_run: bool) -> dict[str, Any]:
        document = {"plan_id": plan_id, "case_name": case_name}
        try:
            client = await self._aclient()
            request = undo_request_document(
                plan_id, case_name, dry_run=dry_run, requested_by=self._requester(client)
            )
        except Exception as exc:
            return error_result(document, exc)
        return await self._asend(client, request)

    async def astatus(self, plan_id: str) -> dict[str, Any]:
        try:
            client = await self._aclient()
            if not client.sent(plan_id):
                return _unknown(plan_id)
            result = client.answer(plan_id) or await _await_result(
                client, plan_id, self.status_wait
            )
        except Exception as exc:
            return error_result({"plan_id": plan_id}, exc, sent=True)
        return result or _still_pending(plan_id)

    async def _aclient(self) -> FileopsClient:
        if self._client is not None:
            return self._client
        # Finding credentials may ask a metadata server: not on the event loop.
        return await asyncio.to_thread(default_client)

    async def _aplan(self, arguments: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        try:
            client = await self._aclient()
        except Exception as exc:
            return error_result(arguments, exc)
        document = plan_document(arguments, dry_run=dry_run, requested_by=self._requester(client))
        return await self._asend(client, document)

    async def _asend(self, client: FileopsClient, document: Mapping[str, Any]) -> dict[str, Any]:
        refusal = local_refusal(document)
        if refusal is not None:
            return refusal
        sent = False
        try:
            future = await asyncio.to_thread(client.start_publish, document)
            await asyncio.wait_for(asyncio.wrap_future(future), client.config.publish_timeout + 5)
            sent = True
            result = await _await_result(client, str(document["plan_id"]), self.timeout)
        except Exception as exc:
            return error_result(document, exc, sent=sent)
        return result or pending_result(document, self.timeout, _FOLLOW_UP)


async def _await_result(
    client: FileopsClient, plan_id: str, timeout: float
) -> dict[str, Any] | None:
    """``client.wait`` in steps of at most ASYNC_STEP seconds on a worker thread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        step = max(0.0, min(ASYNC_STEP, remaining))
        result = await asyncio.to_thread(client.wait, plan_id, step)
        if result is not None or remaining <= ASYNC_STEP:
            return result


def _unknown(plan_id: str) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": None,
        "status": "error",
        "sent": False,
        "problem": "unknown_plan",
        "message": f"this agent has not sent a plan {plan_id!r} since it started",
        "advice": "Use the plan_id of a plan you previewed, applied or undid in this session.",
        "exit_code": EXIT_REJECTED,
    }


def _still_pending(plan_id: str) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": None,
        "status": "pending",
        "message": "no result yet; the plan is queued and will be handled when the fileops "
        "daemon runs. Ask again later; do not resend it with another plan_id.",
    }
