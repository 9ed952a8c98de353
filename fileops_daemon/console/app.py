"""The console's pages: pending plans, one plan (its tree, the re-check, the decision), results.

Starlette routes and Jinja2 templates with autoescape on; every value a template prints also
passes ``printable`` (control and bidi characters become visible escapes), so nothing an agent
wrote can become markup or reorder a line. Identity comes from ``identity.py`` on every request;
``guard.py`` checks Host, Origin and the headers; each form carries a CSRF token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fileops_daemon.client.render import printable, summary_line
from fileops_daemon.console.config import ConsoleConfig
from fileops_daemon.console.desk import Desk
from fileops_daemon.console.feed import ResultFeed
from fileops_daemon.console.guard import CsrfTokens, GuardMiddleware
from fileops_daemon.console.identity import IAP_HEADER, IapVerifier, Identity, IdentityError
from fileops_daemon.console.tree import change_rows, counts
from fileops_daemon.contract.approval import APPROVE, REJECT
from fileops_daemon.service.deciding import DecisionRefusedError, Recheck

__all__ = ["build_app"]

HERE = Path(__file__).resolve().parent
STATUSES = ("planned", "applied", "rejected", "failed", "awaiting_approval")
#: The longest reason a person may give (the decision document allows 1000 characters).
MAX_REASON = 900


def _finalize(value: Any) -> Any:
    """Every printed value: visible escapes for control/bidi characters (then autoescape)."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return printable(value)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.filters["clock"] = lambda seconds: time.strftime("%H:%M:%S", time.gmtime(seconds))
    return Jinja2Templates(env=env)


class Console:
    """The pages, with what they need (one instance per running console)."""

    def __init__(self, config: ConsoleConfig, desk: Desk, feed: ResultFeed | None) -> None:
        self.config = config
        self.desk = desk
        self.feed = feed
        self.csrf = CsrfTokens()
        self.templates = _templates()
        self.verifier = (
            IapVerifier(config.iap_audience, config.approvers, config.iap_keys_url)
            if config.iap
            else None
        )

    # -- who, and the page frame --------------------------------------------------------------

    def identify(self, request: Request) -> Identity:
        if self.verifier is None:
            return Identity(self.config.operator, verified=False, may_decide=True)
        return self.verifier.identify(request.headers.get(IAP_HEADER))

    def page(
        self, request: Request, who: Identity, name: str, code: int = 200, **context: Any
    ) -> Response:
        context.update(who=who, csrf=self.csrf.issue(who.email), iap=self.config.iap)
        return self.templates.TemplateResponse(request, name, context, status_code=code)

    def refuse(self, request: Request, who: Identity, status: int, message: str) -> Response:
        return self.page(request, who, "message.html", status, title="Not done", message=message)

    async def posted(self, request: Request) -> tuple[Identity, dict[str, str]] | Response:
        """The form of a POST from a person who may decide, with a valid CSRF token."""
        try:
            who = await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        if not self.csrf.valid(fields.get("csrf", ""), who.email):
            return self.refuse(request, who, 403, "This form is out of date: open the page again.")
        if not who.may_decide:
            return self.refuse(
                request, who, 403, f"{who.email} is not on the list of people who may decide."
            )
        return who, fields

    # -- pages --------------------------------------------------------------------------------

    async def pending(self, request: Request) -> Response:
        try:
            who = await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        rows = await run_in_threadpool(self.desk.pending)
        return self.page(request, who, "pending.html", rows=rows)

    async def plan(self, request: Request) -> Response:
        try:
            who = await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        plan_id = request.path_params["plan_id"]
        record = await run_in_threadpool(self.desk.record, plan_id)
        if record is None:
            return self.refuse(request, who, 404, f"No plan {plan_id!r} is in the ledger.")
        check: Recheck | str | None = None
        undo: dict[str, Any] | str | None = None
        # The re-check simulates the plan again (about 1.7 s for 10,000 changes): the page
        # asks for it by itself (/check) and keeps Approve disabled until it says "same".
        # ?check=1 (the link shown without JavaScript) checks before answering.
        if record.state == "awaiting_approval" and request.query_params.get("check") == "1":
            check = await run_in_threadpool(self.desk.recheck, record)
        undone = None
        if (record.result or {}).get("status") == "applied" and record.undo is not None:
            undone = await run_in_threadpool(self.desk.undone, record)
            if undone is None:
                undo = await run_in_threadpool(self.desk.undo_preview, record)
        approval = record.approval or {}
        stored = await run_in_threadpool(self.desk.requested, record)
        shown = record.result or {}
        changes = shown.get("changes") or []
        return self.page(
            request,
            who,
            "plan.html",
            record=record,
            plan=stored or {},
            plan_known=stored is not None,
            undone=undone,
            approval=approval,
            result=shown,
            summary=summary_line(shown) if shown.get("status") else "",
            rows=change_rows(changes),
            counts=counts(changes),
            check=check,
            undo=undo,
            undo_rows=change_rows(undo.get("changes") or []) if isinstance(undo, dict) else [],
            undo_counts=counts(undo.get("changes") or []) if isinstance(undo, dict) else [],
            state_key=Desk.state_key(record),
            notice=self._notice(request),
            expires=approval.get("expires_at"),
        )

    async def check(self, request: Request) -> Response:
        """The re-check of a waiting plan's tree, as the fragment the plan page shows."""
        try:
            who = await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        record = await run_in_threadpool(self.desk.record, request.path_params["plan_id"])
        if record is None or record.state != "awaiting_approval":
            return PlainTextResponse("this plan is not waiting", status_code=404)
        check = await run_in_threadpool(self.desk.recheck, record)
        return self.page(request, who, "check.html", check=check)

    async def state(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        record = await run_in_threadpool(self.desk.record, request.path_params["plan_id"])
        return JSONResponse({"key": Desk.state_key(record)})

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, APPROVE)

    async def reject(self, request: Request) -> Response:
        return await self._decide(request, REJECT)

    async def _decide(self, request: Request, verdict: str) -> Response:
        posted = await self.posted(request)
        if isinstance(posted, Response):
            return posted
        who, fields = posted
        plan_id = request.path_params["plan_id"]
        reason = fields.get("reason", "").strip()
        if verdict == REJECT and not reason:
            return self.refuse(request, who, 400, "A rejection needs a reason: the agent is told.")
        if len(reason) > MAX_REASON:
            return self.refuse(request, who, 400, f"Keep the reason under {MAX_REASON} characters.")
        digest = fields.get("digest", "")
        if verdict == APPROVE:
            record = await run_in_threadpool(self.desk.record, plan_id)
            if record is not None and record.state == "awaiting_approval":
                check = await run_in_threadpool(self.desk.recheck, record)
                if not isinstance(check, Recheck) or not check.same:
                    return self._back(
                        plan_id,
                        "Not approved: the tree has changed since the simulation, so the plan "
                        "would now do something else. Reject it and ask for a new plan.",
                    )
        try:
            decided = await run_in_threadpool(
                lambda: self.desk.decide(
                    plan_id, verdict, by=who.email, reason=reason, digest=digest
                )
            )
        except DecisionRefusedError as refused:
            return self._back(plan_id, f"Nothing was decided: {refused.message}")
        standing = decided.standing
        if decided.ours:
            done = "Approved" if verdict == APPROVE else "Rejected"
            notice = f"{done}. The daemon was told; the result appears here when it answers."
        else:
            notice = f"Someone else decided first: {standing.decision} by {standing.by}. " + (
                "" if decided.agrees else "Your decision was not recorded."
            )
        return self._back(plan_id, notice)

    async def undo(self, request: Request) -> Response:
        posted = await self.posted(request)
        if isinstance(posted, Response):
            return posted
        who, _ = posted
        record = await run_in_threadpool(self.desk.record, request.path_params["plan_id"])
        if record is None or record.undo is None:
            return self.refuse(request, who, 404, "There is nothing to undo for this plan.")
        undo_id = await run_in_threadpool(self.desk.undo, record, who.email)
        return self._back(
            undo_id,
            "Undo requested. If the approval gate picks it, it waits here for a decision.",
        )

    def _back(self, plan_id: str, notice: str) -> Response:
        """After a POST: back to the plan's page (303), with a line on what happened (signed,
        so a link from elsewhere cannot put words on the page)."""
        mac = self.csrf.sign(notice)
        url = f"/plans/{quote(plan_id, safe='')}?notice={quote(notice, safe='')}&sig={mac}"
        return RedirectResponse(url, status_code=303)

    def _notice(self, request: Request) -> str:
        notice = request.query_params.get("notice", "")
        return (
            notice
            if notice and self.csrf.signed(notice, request.query_params.get("sig", ""))
            else ""
        )

    async def results(self, request: Request) -> Response:
        try:
            who = await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        case, status = self._filters(request)
        items = self.feed.recent(case=case, status=status) if self.feed else []
        last = self.feed.last_seq if self.feed else 0
        return self.page(
            request,
            who,
            "results.html",
            items=items,
            case=case,
            status=status,
            statuses=STATUSES,
            last=last,
            live=self.feed is not None,
        )

    async def result_rows(self, request: Request) -> Response:
        """The rows newer than ``after`` (the page inserts them): HTML, escaped here."""
        try:
            who = await run_in_threadpool(self.identify, request)
        except IdentityError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        case, status = self._filters(request)
        after = request.query_params.get("after", "0")
        items = []
        if self.feed is not None and after.isdigit():
            items = self.feed.recent(case=case, status=status, after=int(after))
        response = self.page(request, who, "result_rows.html", items=items)
        response.headers["x-last-seq"] = str(self.feed.last_seq if self.feed else 0)
        return response

    @staticmethod
    def _filters(request: Request) -> tuple[str, str]:
        case = request.query_params.get("case", "").strip()[:300]
        status = request.query_params.get("status", "").strip()
        return case, status if status in STATUSES else ""


def build_app(config: ConsoleConfig, desk: Desk, feed: ResultFeed | None = None) -> Any:
    """The ASGI application: the routes behind the guard."""
    console = Console(config, desk, feed)

    async def home(_: Request) -> Response:
        return RedirectResponse("/pending", status_code=303)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            Route("/pending", console.pending),
            Route("/results", console.results),
            Route("/results/rows", console.result_rows),
            Route("/plans/{plan_id:str}", console.plan),
            Route("/plans/{plan_id:str}/state", console.state),
            Route("/plans/{plan_id:str}/check", console.check),
            Route("/plans/{plan_id:str}/approve", console.approve, methods=["POST"]),
            Route("/plans/{plan_id:str}/reject", console.reject, methods=["POST"]),
            Route("/plans/{plan_id:str}/undo", console.undo, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
    )
    app.state.console = console
    return GuardMiddleware(app, config.origins)
