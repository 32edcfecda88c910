"""The dashboard's routes: sign-in (``POST /session``, ``DELETE /session``, a form at
``/dashboard/sign-in``), the pages (queue, worklist, figures, services, a case), the fragments htmx
re-fetches, the server-sent events that tell the page something changed, and the vendored assets.

Every page is whole HTML on its own (it works without JavaScript); with htmx each section re-fetches
its fragment when the stream says ``changed`` and every minute (the time left moves)."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel

from application import bodies
from domain.errors import DomainError, FieldError
from domain.policy import POLICY_IDS, POLICY_TABLE
from infra.http.dashboard import charts, views
from infra.http.guard import DASHBOARD_ROLES, Guard
from infra.http.problems import ERRORS, Problem, problem_response
from infra.http.sessions import COOKIE
from infra.identity import Principal
from projections import board
from projections.facts import BUCKETS
from projections.worklist import worklist_page

HERE = Path(__file__).parent
STATIC = {
    "htmx.min.js": "text/javascript",
    "sse.min.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "LICENSES.txt": "text/plain",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make a form post's Origin "null"
}
STREAM_SECONDS = 25.0  # an event stream ends after this and the browser reconnects (a shutdown waits no longer)
POLL_SECONDS = 1.0
PAGE_SIZE = 25
TABS = ("Pending", "Approved", "Partially Approved", "Denied", "Cancelled", "All")

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(
    local=views.local,
    time_left=views.time_left,
    status_label=views.status_label,
    program_of=views.program_of,
    plan_of=views.plan_of,
    lines=views.LINES,
    urlencode=urlencode,
)


class SessionBody(BaseModel):
    token: str


class SessionInfo(BaseModel):
    role: str
    sub: str
    expires_at: str


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status, headers=SECURITY_HEADERS)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value))) if value is not None else default
    except ValueError:
        return default


def _policy(value: str | None) -> str | None:
    return value if value in POLICY_IDS else None


def _day(value: str | None) -> date | None:
    """A date from 2000 to 2099 (as the API bounds instants), or None."""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day and date(2000, 1, 1) <= day <= date(2099, 12, 31) else None


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _same_origin(request: Request) -> bool:
    """A request that sets or ends a session from another site's page is refused (login CSRF): its
    Origin names another host, or the browser says it is cross-site. A client that sends neither
    (curl, a script) is not a page of another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and origin.split("://", 1)[-1] == request.headers.get("host", "")


def router(guard: Guard) -> APIRouter:
    routes = APIRouter(tags=["dashboard"], responses={303: {"description": "not signed in: sent to the sign-in form"}})
    app, system = guard.app, guard.system

    def viewer(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal | None:
        """Who is reading, or None for a browser that is not signed in (it is sent to the form)."""
        try:
            return guard.browser(request, creds)
        except Problem as problem:
            if problem.status == 401 and _wants_html(request) and creds is None:
                return None
            raise

    def sign_in_first(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/dashboard/sign-in?{urlencode({'next': target})}", status_code=303)

    def base(who: Principal, active: str) -> dict:
        now = app.clock.now()
        return {
            "who": who,
            "phi": views.sees_phi(who.role),
            "now": now,
            "now_local": views.local(now),
            "active": active,
            "zone": views.DISPLAY_TZ.key,
        }

    # ---- signing in ----------------------------------------------------------------------------

    @routes.get("/dashboard/sign-in", response_class=HTMLResponse, include_in_schema=False)
    def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
        return render("signin.html", next=_next(next), error=None)

    @routes.post(
        "/session",
        status_code=201,
        response_model=SessionInfo,
        responses={401: {**ERRORS[401], "content": {"text/html": {}},  # the sign-in form again, for a person
                         "description": "the token was not accepted (problem JSON, or the form again)"},
                   403: ERRORS[403], 422: ERRORS[422]},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": SessionBody.model_json_schema(),
                                         "examples": {"token": {"value": {"token": "<from caselog token --role ops>"}}}},
                    "application/x-www-form-urlencoded": {"schema": SessionBody.model_json_schema()},
                },
            }
        },
    )
    async def open_session(request: Request) -> Response:
        """Sign in to the dashboard: a token (JSON ``{"token": ...}``, or the sign-in form) for a
        short-lived HttpOnly, SameSite=Strict session cookie. The form is answered with a redirect."""
        form = request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        )
        if not _same_origin(request):
            raise Problem(403, "cross-site", "Cross-site sign-in refused", "POST /session from another site's page")
        next_url = "/dashboard"
        if form:
            data = await request.form()
            token, next_url = str(data.get("token") or ""), _next(str(data.get("next") or ""))
        else:
            try:
                body = await request.json()
            except ValueError:
                body = None
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                return problem_response(
                    422,
                    "invalid-input",
                    "Invalid input",
                    'a JSON body {"token": "..."}',
                    [FieldError("token", "required: a token from `caselog token`")],
                )
        try:
            if len(token) > 4096:
                raise jwt.InvalidTokenError("too long")
            cookie, who, expires = await run_in_threadpool(guard.sessions.open, token.strip())
        except jwt.InvalidTokenError as exc:
            if form:
                return render("signin.html", status=401, next=next_url, error=f"That token was not accepted ({exc}).")
            raise Problem(401, "invalid-token", "Invalid token", f"the token was not accepted: {exc}") from None
        if who.role not in DASHBOARD_ROLES:
            await run_in_threadpool(guard.sessions.close, cookie)
            if form:
                return render(
                    "signin.html", status=403, next=next_url, error=f"Role {who.role} may not see the dashboard."
                )
            raise Problem(403, "forbidden", "Not allowed", f"role {who.role!r} may not see the dashboard")
        info = {
            "role": who.role,
            "sub": who.sub,
            "expires_at": datetime.fromtimestamp(expires).astimezone().isoformat(),
        }
        response: Response = (
            RedirectResponse(next_url, status_code=303) if form else JSONResponse(info, status_code=201)
        )
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=max(1, expires - int(time.time())),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @routes.delete("/session", status_code=204, responses={403: ERRORS[403]})
    def close_session(request: Request) -> Response:
        """Sign out: the session ends server-side and the cookie is cleared."""
        if not _same_origin(request):
            raise Problem(403, "cross-site", "Cross-site sign-out refused", "DELETE /session from another site's page")
        guard.sessions.close(request.cookies.get(COOKIE))
        response = Response(status_code=204)
        if request.headers.get("hx-request"):
            response = Response(status_code=200, headers={"HX-Redirect": "/dashboard/sign-in"})
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    @routes.post("/dashboard/sign-out", include_in_schema=False)
    def sign_out_form(request: Request) -> Response:
        """The sign-out button without JavaScript (a form cannot send DELETE)."""
        if not _same_origin(request):
            raise Problem(403, "cross-site", "Cross-site sign-out refused", "sign-out from another site's page")
        guard.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/dashboard/sign-in", status_code=303)
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    # ---- the queue page --------------------------------------------------------------------------

    def queue_context(request: Request) -> dict:
        q = request.query_params
        now = app.clock.now()
        sort = q.get("sort") if q.get("sort") in board.QUEUE_SORTS else "urgent"
        flag = q.get("flag") if q.get("flag") in board.QUEUE_FLAGS else "all"
        policy = _policy(q.get("policy"))
        page = _int(q.get("page"), 1, 1, 100_000)
        found = board.open_cases(system.db, now, sort=sort, flag=flag, policy=policy, page=page, page_size=PAGE_SIZE)
        rows = [_decorated(r, now) for r in found["items"]]
        state = {"sort": sort, "flag": flag, "policy": policy or "", "page": page}

        def query(**change: Any) -> str:
            return urlencode({k: v for k, v in {**state, **change}.items() if v not in ("", None)})

        pager = {
            "pages": _pages(found["total"], page),
            "total": found["total"],
            "target": "#queue",
            "page_url": lambda n: f"/dashboard?{query(page=n)}",
            "fragment_url": lambda n: f"/dashboard/fragments/queue?{query(page=n)}",
        }
        return {
            "rows": rows,
            "total": found["total"],
            "state": state,
            "queue_pager": pager,
            "query": query,
            "policies": views.policy_choices(),
            "sorts": board.QUEUE_SORTS,
            "flags": board.QUEUE_FLAGS,
        }

    def held_context(request: Request) -> dict:
        now = app.clock.now()
        page = _int(request.query_params.get("held_page"), 1, 1, 100_000)
        found = board.held_cases(system.db, now, page=page, page_size=PAGE_SIZE)
        pager = {
            "pages": _pages(found["total"], page),
            "total": found["total"],
            "target": "#held",
            "page_url": lambda n: f"/dashboard?held_page={n}",
            "fragment_url": lambda n: f"/dashboard/fragments/held?held_page={n}",
        }
        return {
            "held": [_decorated(r, now) for r in found["items"]],
            "held_total": found["total"],
            "held_page": page,
            "held_pager": pager,
        }

    def p2p_context(request: Request) -> dict:
        now = app.clock.now()
        day = _day(request.query_params.get("day")) or now.astimezone(views.DISPLAY_TZ).date()
        start = datetime(day.year, day.month, day.day, tzinfo=views.DISPLAY_TZ)
        found = board.p2p_between(system.db, start, start + timedelta(days=1))
        for p in found:
            p["slot_local"] = views.local(p["slot"])
            p["level_label"] = p["level"].replace("_", " ")
        return {
            "p2ps": found,
            "day": day,
            "day_label": day.strftime("%a %d %b %Y"),
            "prev_day": (day - timedelta(days=1)).isoformat(),
            "next_day": (day + timedelta(days=1)).isoformat(),
        }

    @routes.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(guard.bearer)) -> Response:
        """The operations dashboard (HTML): review queue, holds, P2P of the day. A browser signs in
        with ``POST /session`` (the form at /dashboard/sign-in); the API's bearer token works too."""
        who = viewer(request, creds)
        if who is None:
            return sign_in_first(request)
        counts = board.open_counts(system.db, app.clock.now())
        return render(
            "queue.html",
            **base(who, "queue"),
            counts=counts,
            **queue_context(request),
            **held_context(request),
            **p2p_context(request),
        )

    @routes.get("/dashboard/fragments/{name}", response_class=HTMLResponse, include_in_schema=False)
    def fragment(name: str, request: Request, who: Principal = Depends(guard.browser)) -> Response:
        context = base(who, "")
        if name == "counts":
            return render("_counts.html", **context, counts=board.open_counts(system.db, app.clock.now()))
        if name == "queue":
            return render("_queue.html", **context, **queue_context(request))
        if name == "held":
            return render("_held.html", **context, **held_context(request))
        if name == "p2p":
            return render("_p2p.html", **context, **p2p_context(request))
        if name == "worklist":
            return render("_worklist.html", **context, **worklist_context(request, who))
        if name == "figures":
            return render("_figures.html", **context, **figures_context(request))
        raise Problem(404, "not-found", "Not found", f"no fragment {name!r}")

    # ---- the worklist ---------------------------------------------------------------------------

    def worklist_context(request: Request, who: Principal) -> dict:
        q = request.query_params
        phi = views.sees_phi(who.role)
        tab = next(
            (t for t in TABS if t.casefold() == (q.get("status") or "").replace("_", " ").casefold()), "Pending"
        )
        text = (q.get("q") or "").strip()[:100]
        page = _int(q.get("page"), 1, 1, 100_000)
        error, found = None, {"items": [], "total": 0}
        try:
            if text:
                bodies.checked("q", text, max_length=100)
            found = worklist_page(
                system.db,
                status=tab,
                q=text or None,
                sort="-submitted",
                page=page,
                page_size=PAGE_SIZE,
                numbers_only=not phi,
            )
        except DomainError as exc:
            error = str(getattr(exc, "detail", exc)) or "that search cannot be run"
        counts = {}
        if not text:
            for t in TABS:
                counts[t] = worklist_page(system.db, status=t, page=1, page_size=1)["total"]
        for row in found["items"]:
            row["submitted_local"] = views.local(row["submitted"])
            row["end_local"] = views.local(row["end_date"]) if row.get("end_date") else ""

        def query(**change: Any) -> str:
            return urlencode(
                {k: v for k, v in {"status": tab, "q": text, "page": page, **change}.items() if v not in ("", None)}
            )

        pager = {
            "pages": _pages(found["total"], page),
            "total": found["total"],
            "target": "#worklist",
            "page_url": lambda n: f"/dashboard/worklist?{query(page=n)}",
            "fragment_url": lambda n: f"/dashboard/fragments/worklist?{query(page=n)}",
        }
        return {
            "tab": tab,
            "tabs": TABS,
            "q": text,
            "found": found,
            "error": error,
            "counts": counts,
            "page": page,
            "worklist_pager": pager,
            "buckets": BUCKETS,
            "query": query,
        }

    @routes.get("/dashboard/worklist", response_class=HTMLResponse, include_in_schema=False)
    def worklist(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(guard.bearer)) -> Response:
        who = viewer(request, creds)
        if who is None:
            return sign_in_first(request)
        return render("worklist.html", **base(who, "worklist"), **worklist_context(request, who))

    # ---- the figures ----------------------------------------------------------------------------

    def figures_context(request: Request) -> dict:
        q = request.query_params
        now = app.clock.now()
        this_week = views.monday(now.astimezone(views.DISPLAY_TZ).date())
        end = views.monday(_day(q.get("to")) or this_week)
        start = views.monday(_day(q.get("from")) or end - timedelta(weeks=11))
        if start > end:
            start, end = end, start
        start = max(start, end - timedelta(weeks=103))
        policy = _policy(q.get("policy"))
        partial = "approved" if q.get("partial") == "approved" else "denied"
        weekly = board.weekly_figures(system.db, start=start, end=end, policy=policy)
        by_policy = board.policy_figures(system.db, start=start, end=end)
        aging = board.aging(system.db, now, policy=policy)
        weeks = [start + timedelta(weeks=i) for i in range((end - start).days // 7 + 1)]
        svg = _figure_charts(weeks, weekly, by_policy, aging, partial)
        return {
            "charts": svg,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "policy": policy or "",
            "partial": partial,
            "policies": views.policy_choices(),
            "table": _policy_table(by_policy, partial),
            "aging": aging,
            "totals": _totals(weekly, partial, board.medians_by_kind(system.db, start=start, end=end, policy=policy)),
            "oldest": views.local(aging["oldest_received_at"]),
        }

    @routes.get("/dashboard/figures", response_class=HTMLResponse, include_in_schema=False)
    def figures(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(guard.bearer)) -> Response:
        who = viewer(request, creds)
        if who is None:
            return sign_in_first(request)
        return render("figures.html", **base(who, "figures"), **figures_context(request))

    # ---- the services that require PA -------------------------------------------------------------

    @routes.get("/dashboard/services", response_class=HTMLResponse, include_in_schema=False)
    def services(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(guard.bearer)) -> Response:
        who = viewer(request, creds)
        if who is None:
            return sign_in_first(request)
        today = app.clock.now().astimezone(views.DISPLAY_TZ).date()
        return render("services.html", **base(who, "services"), rows=_services(today))

    # ---- a case -----------------------------------------------------------------------------------

    @routes.get("/dashboard/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
    def case_page(
        case_id: str, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(guard.bearer)
    ) -> Response:
        who = viewer(request, creds)
        if who is None:
            return sign_in_first(request)
        context = base(who, "")
        try:
            guard.authz.visible(who, case_id)
            full = app.history(case_id)
        except DomainError:
            return render("missing.html", status=404, **context, case_id=case_id)
        view = full["case"]
        zone = views.zone_of(view.get("policy"), view.get("policy_version"))
        raw_as_of = (request.query_params.get("as_of") or "").strip()[:40]
        as_of, as_of_error, then = None, None, None
        if raw_as_of:
            try:
                as_of = views.parse(raw_as_of)
                if not 2000 <= as_of.year <= 2099:
                    raise ValueError("out of range")
                if as_of.tzinfo is None:
                    as_of = as_of.replace(tzinfo=zone)
                then = app.history(case_id, as_of)["case"]
            except ValueError:
                as_of_error = "an instant such as 2026-03-10T14:00 (plan time) or 2026-03-10T18:00:00Z"
                as_of = None
            except DomainError:
                as_of_error = f"the case had no events by {views.local(as_of, zone)}"
                as_of = None
        guard.read(who, "dashboard-history" if as_of else "dashboard-case", [view["case_id"]],
                   {"as_of": raw_as_of} if raw_as_of else None)
        now = app.clock.now()
        shown = then or view
        extension = [
            e["data"]
            for e in full["events"]
            if e["type"] == "DecisionTimeframeExtended" and (as_of is None or views.parse(e["occurred_at"]) <= as_of)
        ]
        days = sum(int(x.get("days") or 0) for x in extension)
        reason = extension[-1].get("reason") if extension else None
        timeline = [
            {
                "version": e["version"],
                "type": e["type"],
                "at": views.local(e["occurred_at"], zone),
                "iso": e["occurred_at"],
                "actor": views.actor_label(e["actor"]),
                "text": views.summary(e, zone, context["phi"]),
                "data": e["data"] if context["phi"] else None,
                "later": as_of is not None and views.parse(e["occurred_at"]) > as_of,
                "hash": e["hash"],
            }
            for e in full["events"]
        ]
        letters = [t for t, e in zip(timeline, full["events"]) if e["type"] == "LetterIssued"]
        p2ps = [
            {**p, "slot_local": views.local(p["slot"], zone), "level_label": p["level"].replace("_", " ")}
            for p in shown.get("p2ps") or []
        ]
        as_of_value = as_of.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if as_of else ""
        return render(
            "case.html",
            **context,
            view=shown,
            current=view,
            timeline=timeline,
            letters=letters,
            p2ps=p2ps,
            clocks=views.clocks(shown, as_of or now, days, reason),
            as_of=as_of,
            as_of_value=as_of_value,
            as_of_local=views.local(as_of, zone) if as_of else "",
            as_of_error=as_of_error,
            zone_name=zone.key,
            rule=views.deadline_rule(
                view["policy"], view["policy_version"], view["line_of_business"], bool(view["urgent"]), days, reason
            )
            if view.get("received_at")
            else "",
        )

    # ---- live updates ------------------------------------------------------------------------------

    def version() -> str:
        return f"{app.max_position()}.{system.runner.position('board')}"

    @routes.get("/dashboard/events", include_in_schema=False)
    async def events(request: Request, who: Principal = Depends(guard.browser)) -> StreamingResponse:
        """Server-sent events: ``changed`` (id: the store and board positions) whenever the store or
        the dashboard's read model moves; ``signed-out`` once the session ends. A stream lasts
        STREAM_SECONDS, then the browser reconnects with Last-Event-ID (a change in between is sent
        at once)."""
        cookie = request.cookies.get(COOKIE) if "authorization" not in request.headers else None
        seen = request.headers.get("last-event-id")

        async def stream():
            nonlocal seen
            yield "retry: 1500\n\n"
            started = last_beat = last_check = time.monotonic()
            while time.monotonic() - started < STREAM_SECONDS:
                current = await run_in_threadpool(version)
                if current != seen:
                    kind = "ready" if seen is None else "changed"
                    yield f"id: {current}\nevent: {kind}\ndata: {current}\n\n"
                    seen, last_beat = current, time.monotonic()
                if cookie and time.monotonic() - last_check > 5:
                    last_check = time.monotonic()
                    if await run_in_threadpool(guard.sessions.principal, cookie) is None:
                        yield "event: signed-out\ndata: the session ended\n\n"
                        return
                if time.monotonic() - last_beat > 10:
                    yield ": still here\n\n"
                    last_beat = time.monotonic()
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    # ---- the vendored assets -------------------------------------------------------------------------

    @routes.get("/dashboard/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise Problem(404, "not-found", "Not found", f"no asset {name!r}")
        return FileResponse(
            HERE / "static" / name,
            media_type=STATIC[name],
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    return routes


def _next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path of this site only (no open redirect)."""
    if value and value.startswith("/dashboard") and not value.startswith("//") and "\\" not in value:
        return value
    return "/dashboard"


def _pages(total: int, page: int) -> dict:
    last = max(1, -(-total // PAGE_SIZE))
    return {
        "page": page,
        "last": last,
        "prev": page - 1 if page > 1 else None,
        "next": page + 1 if page < last else None,
        "first_row": (page - 1) * PAGE_SIZE + 1 if total else 0,
        "last_row": min(total, page * PAGE_SIZE),
    }


def _decorated(row: dict, now: datetime) -> dict:
    zone = views.zone_of(row["policy"], row["policy_version"])
    row["due_local"] = views.local(row["decision_due_at"], zone)
    row["left"] = views.time_left(row["decision_due_at"], now)
    row["received_local"] = views.local(row["received_at"], zone)
    row["rule"] = views.deadline_rule(
        row["policy"],
        row["policy_version"],
        row["line_of_business"],
        row["urgent"],
        row["extension_days"],
        row["extension_reason"],
    )
    row["hold_due_local"] = views.local(row["hold_due_at"], zone) if row["hold_due_at"] else ""
    row["hold_left"] = views.time_left(row["hold_due_at"], now) if row["hold_due_at"] else ""
    row["hold_overdue"] = bool(row["hold_due_at"] and views.parse(row["hold_due_at"]) <= now)
    row["program"] = views.program_of(row["policy"], row["policy_version"])
    row["plan"] = views.plan_of(row["policy"], row["policy_version"])
    row["line"] = views.LINES.get(row["line_of_business"], row["line_of_business"])
    return row


def _pct(numerator: float, denominator: float) -> float | None:
    return round(100 * numerator / denominator, 1) if denominator else None


def _rates(f: dict, partial: str) -> dict:
    """The CMS-0057-F figures of one group of counters (partial approvals counted as ``partial`` says)."""
    approved = f["approved"] + (f["partial"] if partial == "approved" else 0)
    overturned = f["overturned"] + (f["partially_overturned"] if partial == "approved" else 0)
    extended_approved = f["extended_approved"] + (f["extended_partial"] if partial == "approved" else 0)
    return {
        "decided": int(f["decided"]),
        "approved": _pct(approved, f["decided"]),
        "approved_n": int(approved),
        "denied": _pct(f["decided"] - approved, f["decided"]),
        "denied_n": int(f["decided"] - approved),
        "average_hours": round(f["seconds"] / f["decided"] / 3600, 1) if f["decided"] else None,
        "median_hours": f.get("median_hours"),
        "approved_after_appeal": _pct(overturned, f["appealed"]),
        "overturned_n": int(overturned),
        "appealed": int(f["appealed"]),
        "extended_then_approved": _pct(extended_approved, f["decided"]),
        "extended_approved_n": int(extended_approved),
        "auto": _pct(f["auto"], f["decided"]),
        "auto_n": int(f["auto"]),
        "overturn": _pct(f["overturned"] + f["partially_overturned"], f["appeal_decided"]),
        "appeal_decided": int(f["appeal_decided"]),
        "overturns_n": int(f["overturned"] + f["partially_overturned"]),
    }


def _sum(rows: list[dict]) -> dict:
    total = {c: 0 for c in board.COUNTERS}
    for r in rows:
        for c in board.COUNTERS:
            total[c] += r[c]
    return total


def _totals(weekly: list[dict], partial: str, medians: dict[bool, float]) -> dict:
    return {
        kind: _rates(
            {**_sum([r for r in weekly if r["urgent"] == urgent]), "median_hours": medians.get(urgent)}, partial
        )
        for kind, urgent in (("standard", False), ("expedited", True))
    } | {"all": _rates(_sum(weekly), partial)}


def _figure_charts(weeks: list[date], weekly: list[dict], by_policy: list[dict], aging: dict, partial: str) -> dict:
    labels = [w.strftime("%d %b") for w in weeks]
    index = {(r["week"], r["urgent"]): r for r in weekly}
    empty = {c: 0 for c in board.COUNTERS}

    def per_week(urgent: bool | None, key: str) -> tuple[list, list]:
        values, notes = [], []
        for w in weeks:
            if urgent is None:
                rows = [index[k] for k in ((w.isoformat(), False), (w.isoformat(), True)) if k in index]
                f = _sum(rows) if rows else empty
            else:
                f = index.get((w.isoformat(), urgent), {**empty, "median_hours": None})
            rates = _rates(f, partial)
            values.append(rates[key])
            notes.append(_note(key, rates))
        return values, notes

    out = {}
    for kind, urgent in (("standard", False), ("expedited", True)):
        approved, approved_notes = per_week(urgent, "approved")
        denied, denied_notes = per_week(urgent, "denied")
        out[kind] = Markup(
            charts.bars(
                f"{kind.capitalize()} requests: % approved and % denied, by decision week",
                labels,
                [
                    charts.Series("% approved", charts.PALETTE["approved"], approved, approved_notes),
                    charts.Series("% denied", charts.PALETTE["denied"], denied, denied_notes),
                ],
                unit="%",
                y_max=100,
            )
        )
    series = []
    for kind, urgent, colour in (("standard", False, "standard"), ("expedited", True, "expedited")):
        avg, avg_notes = per_week(urgent, "average_hours")
        med, med_notes = per_week(urgent, "median_hours")
        series += [
            charts.Series(f"{kind} average", charts.PALETTE[colour], avg, avg_notes),
            charts.Series(f"{kind} median", charts.PALETTE["grey" if urgent else "teal"], med, med_notes),
        ]
    out["time"] = Markup(charts.lines("Hours from receipt to decision, by decision week", labels, series, unit=" h"))
    rates = []
    for label, key, urgent, colour in (
        ("% standard approved after appeal", "approved_after_appeal", False, "standard"),
        ("% extended then approved", "extended_then_approved", None, "held"),
        ("auto-approval rate", "auto", None, "approved"),
        ("appeal overturn rate", "overturn", None, "denied"),
    ):
        values, notes = per_week(urgent, key)
        rates.append(charts.Series(label, charts.PALETTE[colour], values, notes))
    out["rates"] = Markup(
        charts.lines("Appeals, extensions and automation, by decision week", labels, rates, unit="%")
    )
    names = sorted({r["policy"] for r in by_policy})
    policy_labels = [views.program_of(p) for p in names]
    by_key = {(r["policy"], r["urgent"]): r for r in by_policy}
    bars = []
    for kind, urgent, colour in (("standard", False, "standard"), ("expedited", True, "expedited")):
        values, notes = [], []
        for p in names:
            f = by_key.get((p, urgent))
            r = _rates(f, partial) if f else None
            values.append(r["approved"] if r else None)
            notes.append(_note("approved", r) if r else "")
        bars.append(charts.Series(f"{kind} % approved", charts.PALETTE[colour], values, notes))
    out["policy"] = Markup(
        charts.bars("% approved by policy over the period", policy_labels, bars, unit="%", y_max=100)
    )
    out["aging"] = Markup(
        charts.bars(
            "Outstanding requests by age since receipt",
            aging["labels"],
            [
                charts.Series(
                    "pending", charts.PALETTE["pending"], [float(v) for v in aging["by_status"].get("pending", [])]
                ),
                charts.Series("held", charts.PALETTE["held"], [float(v) for v in aging["by_status"].get("held", [])]),
            ],
        )
    )
    return out


def _note(key: str, r: dict) -> str:
    match key:
        case "approved":
            return f"{r['approved_n']} of {r['decided']}"
        case "denied":
            return f"{r['denied_n']} of {r['decided']}"
        case "approved_after_appeal":
            return f"{r['overturned_n']} of {r['appealed']} appealed"
        case "extended_then_approved":
            return f"{r['extended_approved_n']} of {r['decided']}"
        case "auto":
            return f"{r['auto_n']} of {r['decided']}"
        case "overturn":
            return f"{r['overturns_n']} of {r['appeal_decided']} appeals decided"
    return f"{r['decided']} decided"


def _policy_table(by_policy: list[dict], partial: str) -> list[dict]:
    out = []
    for r in sorted(by_policy, key=lambda r: (r["policy"], r["urgent"])):
        out.append(
            {
                "policy": r["policy"],
                "program": views.program_of(r["policy"]),
                "plan": views.plan_of(r["policy"]),
                "kind": "expedited" if r["urgent"] else "standard",
                **_rates(r, partial),
            }
        )
    return out


def _services(today: date) -> list[dict]:
    """Each policy's row in force today (or its first), as the list of services that require PA."""
    out = []
    for pid in POLICY_IDS:
        rows = [r for r in POLICY_TABLE if r.id == pid]
        current = [r for r in rows if r.effective_from <= today]
        row = max(current, key=lambda r: r.effective_from) if current else min(rows, key=lambda r: r.effective_from)
        out.append(
            {
                "id": pid,
                "plan": row.plan,
                "program": row.program,
                "version": row.version,
                "effective_from": row.effective_from.isoformat(),
                "in_force": bool(current),
                "lines": ", ".join(views.LINES.get(x, x) for x in row.lines_of_business),
                "codes": ", ".join(row.program_codes) or "every code of the program",
                "excluded": sorted(row.excluded_places_of_service.items()),
                "allowed": ", ".join(sorted(row.allowed_places_of_service))
                if row.allowed_places_of_service
                else "any other",
                "observation": row.observation_excluded,
                "flags": sorted(row.excluded_clinical_flags.items()),
                "earliest": row.earliest_date_of_service.isoformat() if row.earliest_date_of_service else "",
                "urgent_hours": row.urgent_decision_hours,
                "standard": ", ".join(
                    f"{views.LINES.get(line, line)} {row.standard_limit_days[line]} days"
                    for line in row.lines_of_business
                    if line in row.standard_limit_days
                ),
                "per_dos": len(row.per_date_of_service_codes),
                "p2p": row.pre_decision_p2p,
                "retro": (
                    f"{row.retro.amount} {row.retro.unit.replace('_', ' ')} after the service"
                    if row.retro
                    else "not accepted"
                ),
                "validity": row.validity.kind.replace("_", " "),
                "appeal_levels": row.appeal_levels,
                "auto": ", ".join(f"{k} = {v}" for k, v in (row.auto_approve_when or {}).items()),
            }
        )
    return out
