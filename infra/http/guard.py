"""Who is asking and what they may see, over HTTP: the bearer token (header, or a browser's query
parameter), the write headers (Idempotency-Key, If-Match), and the answers. The decisions (roles,
case visibility, NPIs, documents) are infra.authorization's, shared with the CLI. Every router of
the app is given one Guard."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

import jwt
import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from application import bodies
from application.caselog import Answer
from infra.authorization import Authorization, Unauthenticated, require_role
from infra.bootstrap import System
from infra.http.problems import Problem
from infra.http.sessions import COOKIE, SessionStore
from infra.identity import Principal

DASHBOARD_ROLES = ("ops", "reviewer", "auditor", "admin")
log = logging.getLogger("caselog.http")


@dataclass(frozen=True)
class Writing:
    """Who writes, with the write headers: the Idempotency-Key (checked text) and If-Match's version."""

    who: Principal
    key: str | None = None
    version: int | None = None


def _idempotency_header():
    """The Idempotency-Key header parameter of a write (a new one for each route's dependency)."""
    return Header(default=None, alias="Idempotency-Key", max_length=200)


def _idempotency_key(text: str | None) -> str | None:
    return bodies.checked("Idempotency-Key", text) or None


class Encoded(JSONResponse):
    """A write's answer encoded by orjson (the same JSON as the standard encoder's, in a tenth of the time)."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class Guard:
    def __init__(self, system: System):
        self.system = system
        self.app = system.app
        self.authz = Authorization(system)  # who may see and do what: shared with the CLI
        self.bearer = HTTPBearer(auto_error=False, description="a token from `caselog token`")
        self.sessions = SessionStore(system.db, self.authz.secret, system.settings.session_seconds,
                                     accept=self._accepted)
        self._inline = system.db.dialect == "sqlite"
        self.principal = self._principal_dependency()
        self.browser = self._browser_dependency()

    # ---- who is asking -------------------------------------------------------------------------

    def _accepted(self, token: str) -> Principal:
        """A token a session may be opened with: exactly as a bearer token is accepted (revoked and
        over-long tokens too are refused)."""
        try:
            return self.authz.principal(token, how="a token from `caselog token`")
        except Unauthenticated as exc:
            raise jwt.InvalidTokenError(exc.detail) from None

    def who(self, creds: HTTPAuthorizationCredentials | None) -> Principal:
        try:
            return self.authz.principal(creds.credentials if creds else None,
                                        how="Authorization: Bearer <token from `caselog token`>")
        except Unauthenticated as exc:
            raise Problem(401, exc.rule, exc.title, exc.detail) from None

    def _principal_dependency(self) -> Callable[..., Awaitable[Principal]]:
        async def principal(request: Request,
                            creds: HTTPAuthorizationCredentials | None = Depends(self.bearer)) -> Principal:
            return await self._authenticated(request, creds)
        return principal

    async def _authenticated(self, request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
        """On the event loop, not a worker thread (FastAPI runs each plain ``def`` dependency in its
        thread pool: a hand-off per dependency per request). Checking a token is a signature and one
        indexed read of the revoked tokens, which on SQLite is a local snapshot read (no lock); on
        PostgreSQL it is a round trip, made in the thread pool so as not to hold up the loop."""
        who = self.who(creds) if self._inline else await run_in_threadpool(self.who, creds)
        request.state.actor = who.actor  # for the access log (infra.http.observe)
        return who

    def _browser_dependency(self) -> Callable[..., Principal]:
        """The dashboard's reader: a bearer token, or the session cookie of POST /session (never a
        token in the URL)."""
        def browser(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(self.bearer)) -> Principal:
            session = self.sessions.principal(request.cookies.get(COOKIE)) if creds is None else None
            if creds is None and session is None:
                raise Problem(401, "unauthenticated", "Authentication required",
                              "sign in at /dashboard/sign-in (POST /session) or send Authorization: Bearer <token>")
            who = session[0] if session else self.who(creds)
            request.state.actor = who.actor
            if who.role not in DASHBOARD_ROLES:
                raise Problem(403, "forbidden", "Not allowed", f"role {who.role!r} may not see the dashboard")
            return who
        return browser

    def role(self, *allowed: str) -> Callable[..., Awaitable[Principal]]:
        """The caller, refused unless of one of ``allowed`` roles (or admin). Authenticates itself rather
        than through ``principal``: FastAPI's solving of a nested dependency costs more than the check."""
        async def check(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(self.bearer)) -> Principal:
            return require_role(await self._authenticated(request, creds), allowed)
        return check

    # ---- the write headers ---------------------------------------------------------------------

    def writing(self, *allowed: str, creates: bool = False) -> Callable[..., Awaitable[Writing]]:
        """A write's caller (of one of ``allowed`` roles) and its headers, Idempotency-Key and, unless it
        ``creates`` a case, If-Match, as one dependency of the route: three nested dependencies instead of
        five took 5% of the instructions of a determination's HTTP layer (bench/instructions.py). The
        caller is still checked first (401, 403), before the headers' lengths (422, with the body's errors).
        Async: no I/O, run on the loop."""
        role = self.role(*allowed)
        if creates:
            async def creating(who: Principal = Depends(role), key: str | None = _idempotency_header()) -> Writing:
                return Writing(who, _idempotency_key(key))
            return creating

        async def writing(who: Principal = Depends(role), key: str | None = _idempotency_header(),
                          if_match: str | None = Header(default=None, alias="If-Match", max_length=40)) -> Writing:
            return Writing(who, _idempotency_key(key), self._version(if_match))
        return writing

    @staticmethod
    def _version(value: str | None) -> int | None:
        if value is None:
            return None
        raw = value.strip().removeprefix("W/").strip('"')
        if not raw.isdigit():
            raise Problem(400, "invalid-if-match", "Invalid If-Match", "If-Match takes the case version, e.g. If-Match: 3")
        return int(raw)

    # ---- answering ------------------------------------------------------------------------------

    def answer(self, ans: Answer) -> JSONResponse:
        """The write's answer, once the read models hold it (read-your-writes). The command is
        recorded by then: if the read models cannot take it (a failing projection), that is logged
        and the projection lag shows it, and the write is still answered as done, never as a 5xx
        that would have a client without an Idempotency-Key send it again."""
        try:
            self.system.caught_up_to(ans.position)
        except Exception:  # noqa: BLE001 - see above; a catch-up retries at the next write or read
            log.exception("the write is recorded but the read models could not take it")
        return Encoded(ans.view, status_code=201 if ans.created else 200)

    def write(self, writing: Writing, call: Callable[[dict], Answer]) -> JSONResponse:
        return self.answer(call({"actor": writing.who.actor, "key": writing.key, "expected_version": writing.version}))

    def read(self, who: Principal, what: str, case_ids: list[str], query: dict | None = None) -> None:
        """Record a read that shows member data (one record per request, every case it showed)."""
        self.system.access.record_read(who, what, case_ids, self.app.clock.now(), query)

    def now_iso(self) -> str:
        return self.app.clock.now().isoformat()
