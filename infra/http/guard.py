"""Who is asking and what they may see: the bearer token's principal, role checks, the write
headers (Idempotency-Key, If-Match), case visibility and the documents a provider may attach.
Every router of the app is given one Guard."""

from __future__ import annotations

from typing import Callable
from uuid import UUID

import jwt
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from application import bodies
from application.caselog import Answer
from domain.errors import CaseNotFound
from infra.bootstrap import System
from infra.http.problems import Problem
from infra.http.sessions import COOKIE, SessionStore
from infra.identity import Principal, load_secret, verify
from projections.case_owners import owners_of

DASHBOARD_ROLES = ("ops", "reviewer", "auditor", "admin")


class Guard:
    def __init__(self, system: System):
        self.system = system
        self.app = system.app
        self.secret = load_secret(system.settings.data_dir)
        self.bearer = HTTPBearer(auto_error=False, description="a token from `caselog token`")
        self.sessions = SessionStore(system.db, self.secret, system.settings.session_seconds)
        self.principal = self._principal_dependency()
        self.browser = self._browser_dependency()

    # ---- who is asking -------------------------------------------------------------------------

    def who(self, creds: HTTPAuthorizationCredentials | None) -> Principal:
        if creds is None:
            raise Problem(401, "unauthenticated", "Authentication required",
                          "send Authorization: Bearer <token from `caselog token`>")
        try:
            return verify(self.secret, creds.credentials)
        except jwt.InvalidTokenError as exc:
            raise Problem(401, "invalid-token", "Invalid token", f"the bearer token was not accepted: {exc}") from None

    def _principal_dependency(self) -> Callable[..., Principal]:
        def principal(request: Request,
                      creds: HTTPAuthorizationCredentials | None = Depends(self.bearer)) -> Principal:
            who = self.who(creds)
            request.state.actor = who.actor  # for the access log (infra.http.observe)
            return who
        return principal

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

    def role(self, *allowed: str) -> Callable[..., Principal]:
        def check(who: Principal = Depends(self.principal)) -> Principal:
            if who.role not in allowed and who.role != "admin":
                may = ", ".join(allowed + ("admin",))
                raise Problem(403, "forbidden", "Not allowed", f"role {who.role!r} may not do this (allowed: {may})")
            return who
        return check

    # ---- the write headers ---------------------------------------------------------------------

    @staticmethod
    def idempotency_key(key: str | None = Header(default=None, alias="Idempotency-Key", max_length=200)) -> str | None:
        return bodies.checked("Idempotency-Key", key) or None

    @staticmethod
    def if_match(value: str | None = Header(default=None, alias="If-Match", max_length=40)) -> int | None:
        if value is None:
            return None
        raw = value.strip().removeprefix("W/").strip('"')
        if not raw.isdigit():
            raise Problem(400, "invalid-if-match", "Invalid If-Match", "If-Match takes the case version, e.g. If-Match: 3")
        return int(raw)

    # ---- what they may see and attach ----------------------------------------------------------

    def owners(self, case_id: str, *, fresh: bool = False) -> dict:
        """Whose the case is (projections.case_owners), or 404 for no such case. ``fresh``: after
        catching the read model up (a write by another process, such as the CLI, not applied yet)."""
        try:
            key = str(UUID(str(case_id)))
        except ValueError:
            raise CaseNotFound(f"no case {case_id!r}") from None
        if fresh:
            self.system.catch_up()
        owners = owners_of(self.system.db, key)
        if owners is None:
            if not fresh:
                return self.owners(case_id, fresh=True)
            raise CaseNotFound(f"no case {case_id}")
        return owners

    def visible(self, who: Principal, case_id: str) -> None:
        """A provider sees the cases of its NPIs and of worklists shared with it; a request never
        submitted (a draft, or one that expired or was cancelled as a draft) has no ordering
        provider yet and belongs to whoever started it and those it shares its worklist with.
        Asked of the case-owners read model, not of a replayed case."""
        access = self.system.access
        npis = access.visible_npis(who)
        if npis is None:
            return
        for fresh in (False, True):  # a refusal is checked again on the read model caught up
            owners = self.owners(case_id, fresh=fresh)
            if owners["ordering_npi"] in npis:
                return
            if owners["ordering_npi"] is None and access.acts_for(who, owners["starter"]):
                return
        raise CaseNotFound(f"no case {case_id}")  # do not reveal other providers' cases

    def attachable(self, who: Principal, docs: list) -> list[dict]:
        """The documents of a body as stored references (an id alone resolved from its upload); a
        provider attaches only its own uploads and those of providers sharing their worklist with it."""
        documents = self.system.documents
        if who.role == "provider":
            return documents.references(docs, user=who.actor, colleagues=self.system.access.sharing_with(who))
        return documents.references(docs)

    # ---- answering ------------------------------------------------------------------------------

    def answer(self, ans: Answer) -> JSONResponse:
        self.system.catch_up()
        return JSONResponse(ans.view, status_code=201 if ans.created else 200)

    def write(self, who: Principal, case_id: str, key: str | None, version: int | None,
              call: Callable[[dict], Answer]) -> JSONResponse:
        if who.role == "provider":
            self.visible(who, case_id)
        return self.answer(call({"actor": who.actor, "key": key, "expected_version": version}))

    def now_iso(self) -> str:
        return self.app.clock.now().isoformat()
