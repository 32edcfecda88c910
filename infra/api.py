"""The HTTP API of DESIGN.md (FastAPI). Thin: authenticate, parse, call the application,
let projections catch up, answer. Refusals become RFC 9457 problem JSON here, in one place."""

from __future__ import annotations

import html
import threading
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Any, Callable

import jwt
from fastapi import APIRouter, Depends, FastAPI, File, Header, Query, Request, UploadFile
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.intake import requirement
from domain.errors import (CaseNotFound, DocumentTooLarge, DomainError, FieldError, IdempotencyConflict, InvalidInput,
                           NotPermitted, RuleViolation, VersionConflict)
from domain.policy import POLICY_IDS
from domain.validation import MAX_DOCUMENT_BYTES
from infra import requests as rq
from infra.application import Answer
from infra.auth import Principal, load_secret, verify
from infra.bootstrap import System
from projections import queries

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://caselog.dev/problems/"
MAX_JSON_BODY = 1024 * 1024
MULTIPART_FRAMING = 64 * 1024  # boundaries and part headers around the one `file` part
MAX_UPLOAD_BODY = MAX_DOCUMENT_BYTES + MULTIPART_FRAMING


class Problem(Exception):
    def __init__(self, status: int, rule: str, title: str, detail: str, errors: list[FieldError] | None = None):
        super().__init__(detail)
        self.status, self.rule, self.title, self.detail, self.errors = status, rule, title, detail, errors


class ProblemBody(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


class Listing(BaseModel):
    model_config = ConfigDict(extra="allow")
    items: list[dict[str, Any]]
    total: int | None = None


class ShareWorklist(rq.Body):
    user_id: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


class ClockMove(rq.Body):
    advance: str | None = Field(default=None, description="ISO 8601 duration, e.g. PT36H")
    to: str | None = Field(default=None, description="ISO 8601 instant with a time zone")


ERRORS = {code: {"model": ProblemBody, "content": {PROBLEM: {}}} for code in (400, 401, 403, 404, 409, 413, 422)}


def status_of(exc: DomainError) -> int:
    if isinstance(exc, DocumentTooLarge):
        return 413
    if isinstance(exc, InvalidInput):
        return 422
    if isinstance(exc, NotPermitted):
        return 403
    if isinstance(exc, CaseNotFound):
        return 404
    if isinstance(exc, (RuleViolation, VersionConflict, IdempotencyConflict)):
        return 409
    return 400


def problem_response(status: int, rule: str, title: str, detail: str, errors: list[FieldError] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + rule, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class BodyCap:
    """Caps a request body on the bytes actually received, chunked or not, before anything buffers it:
    a document plus multipart framing for a multipart upload to one of ``uploads``, 1 MiB for any other.
    Past the cap (or when Content-Length already says so) it answers 413 problem JSON with
    ``Connection: close`` and hands the application a disconnect, so the refused request records
    nothing and nothing the application says after that is sent."""

    def __init__(self, app: Callable, *, uploads: set[str]):
        self.app, self.uploads = app, uploads

    def cap_of(self, scope: dict) -> tuple[int, JSONResponse]:
        """The cap of this request's body, and the 413 that refuses it."""
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if scope["path"] in self.uploads and content_type.startswith(b"multipart/"):
            detail = f"documents are at most 25 MB ({MAX_DOCUMENT_BYTES} bytes)"
            cap, refusal = MAX_UPLOAD_BODY, problem_response(413, "document-too-large", "Document too large", detail,
                                                             [FieldError("file", detail)])
        else:
            cap, refusal = MAX_JSON_BODY, problem_response(413, "body-too-large", "Request body too large",
                                                           f"JSON bodies are at most {MAX_JSON_BODY} bytes")
        refusal.headers["connection"] = "close"  # the rest of the body is not read
        return cap, refusal

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap, refusal = self.cap_of(scope)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > cap:
            return await refusal(scope, receive, send)
        received, started, refused = 0, False, False

        async def capped_receive() -> dict:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    if not started and not refused:
                        refused = True
                        await refusal(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def answer(message: dict) -> None:
            nonlocal started
            if refused:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, answer)
        except Exception:
            if not refused:
                raise


def create_app(system: System, *, background: bool = False) -> FastAPI:
    app_ = system.app
    secret = load_secret(system.settings.data_dir)
    bearer = HTTPBearer(auto_error=False, description="a token from `caselog token`")
    api = FastAPI(title="caselog", version="1.0", description="Prior-authorization case lifecycle (see DESIGN.md)",
                  responses={400: ERRORS[400], 422: ERRORS[422]})
    router = APIRouter(responses={401: ERRORS[401], 403: ERRORS[403]})

    # ---- errors, in one place --------------------------------------------------------------

    @api.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(status_of(exc), exc.rule, exc.title, exc.detail, getattr(exc, "errors", None))

    @api.exception_handler(Problem)
    async def problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.rule, exc.title, exc.detail, exc.errors)

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), e["msg"]) for e in exc.errors()]
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        if malformed:
            return problem_response(400, "malformed-json", "Malformed JSON", "the request body is not valid JSON", errors)
        return problem_response(422, "invalid-input", "Invalid input", "; ".join(f"{e.field}: {e.message}" for e in errors), errors)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, f"http-{exc.status_code}", str(exc.detail), str(exc.detail))

    api.add_middleware(BodyCap, uploads={"/documents"})

    # ---- who is asking ---------------------------------------------------------------------

    def principal(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        if creds is None:
            raise Problem(401, "unauthenticated", "Authentication required", "send Authorization: Bearer <token from `caselog token`>")
        try:
            return verify(secret, creds.credentials)
        except jwt.InvalidTokenError as exc:
            raise Problem(401, "invalid-token", "Invalid token", f"the bearer token was not accepted: {exc}") from None

    def role(*allowed: str) -> Callable[..., Principal]:
        def check(who: Principal = Depends(principal)) -> Principal:
            if who.role not in allowed and who.role != "admin":
                raise Problem(403, "forbidden", "Not allowed", f"role {who.role!r} may not do this (allowed: {', '.join(allowed + ('admin',))})")
            return who
        return check

    def idempotency_key(key: str | None = Header(default=None, alias="Idempotency-Key", max_length=200)) -> str | None:
        return key or None

    def if_match(value: str | None = Header(default=None, alias="If-Match", max_length=40)) -> int | None:
        if value is None:
            return None
        raw = value.strip().removeprefix("W/").strip('"')
        if not raw.isdigit():
            raise Problem(400, "invalid-if-match", "Invalid If-Match", "If-Match takes the case version, e.g. If-Match: 3")
        return int(raw)

    def visible(who: Principal, view: dict) -> dict:
        npis = system.access.visible_npis(who)
        if npis is not None and view.get("ordering_provider", {}).get("npi") not in npis:
            raise CaseNotFound(f"no case {view['case_id']}")  # do not reveal other providers' cases
        return view

    def documents_exist(docs: list[dict]) -> list[dict]:
        for i, doc in enumerate(docs):
            if not system.documents.exists(doc["sha256"]):
                raise InvalidInput(FieldError(f"documents[{i}].sha256", "no uploaded document has this sha256; POST /documents first"))
            if (wrong := system.documents.misnamed(doc["sha256"], doc["name"])) is not None:
                raise InvalidInput(FieldError(f"documents[{i}].name", wrong))
        return docs

    def answer(ans: Answer) -> JSONResponse:
        system.catch_up()
        return JSONResponse(ans.view, status_code=201 if ans.created else 200)

    def write(who: Principal, case_id: str, key: str | None, version: int | None, call: Callable[[dict], Answer]) -> JSONResponse:
        if who.role == "provider":
            visible(who, app_.view(case_id))
        return answer(call({"actor": who.actor, "key": key, "expected_version": version}))

    def now_iso() -> str:
        return app_.clock.now().isoformat()

    # ---- writes ----------------------------------------------------------------------------

    @router.post("/documents", status_code=201, responses={413: ERRORS[413], 422: ERRORS[422]})
    def upload_document(file: UploadFile = File(...), who: Principal = Depends(role("provider", "reviewer"))) -> dict:
        return system.documents.put(file.filename or "", file.file)

    @router.post("/cases", status_code=201, responses={409: ERRORS[409], 422: ERRORS[422]})
    def submit_case(body: rq.SubmitCase, who: Principal = Depends(role("provider")), key: str | None = Depends(idempotency_key)) -> JSONResponse:
        data = body.model_dump(mode="json")
        if who.role == "provider" and data["ordering_provider"]["npi"] not in who.npis:
            raise NotPermitted("a provider submits for its own NPIs only", rule="not-your-npi")
        documents_exist(data["documents"])
        return answer(app_.submit(data, actor=who.actor, key=key))

    @router.post("/drafts", status_code=201, responses={409: ERRORS[409]})
    def start_draft(body: rq.StartDraft, who: Principal = Depends(role("provider")), key: str | None = Depends(idempotency_key)) -> JSONResponse:
        return answer(app_.start_draft(body.model_dump(mode="json"), actor=who.actor, key=key))

    @router.post("/cases/{case_id}/submit", responses={404: ERRORS[404], 409: ERRORS[409]})
    def submit_draft(case_id: str, body: rq.SubmitCase, who: Principal = Depends(role("provider")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        data = body.model_dump(mode="json")
        documents_exist(data["documents"])
        return write(who, case_id, key, version, lambda kw: app_.submit_draft(case_id, data, **kw))

    @router.post("/cases/{case_id}/holds", responses={404: ERRORS[404], 409: ERRORS[409]})
    def place_hold(case_id: str, body: rq.Hold, who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.place_hold(case_id, body.requested_items, body.due_at, **kw))

    @router.post("/cases/{case_id}/clinical", responses={404: ERRORS[404], 409: ERRORS[409], 413: ERRORS[413]})
    def upload_clinical(case_id: str, body: rq.Clinical, who: Principal = Depends(role("provider", "reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        docs = documents_exist(body.model_dump(mode="json")["documents"])
        return write(who, case_id, key, version, lambda kw: app_.upload_clinical(case_id, docs, body.notes, **kw))

    @router.post("/cases/{case_id}/p2p", responses={404: ERRORS[404], 409: ERRORS[409]})
    def schedule_p2p(case_id: str, body: rq.ScheduleP2P, who: Principal = Depends(role("provider", "reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        data = body.model_dump(mode="json")
        if who.role == "provider":
            for other in data["also_cases"]:
                visible(who, app_.view(other))
        return write(who, case_id, key, version, lambda kw: app_.schedule_p2p(case_id, **data, **kw))

    @router.post("/cases/{case_id}/p2p/{p2p_id}/reschedule", responses={404: ERRORS[404], 409: ERRORS[409]})
    def reschedule_p2p(case_id: str, p2p_id: str, body: rq.RescheduleP2P, who: Principal = Depends(role("provider", "reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.reschedule_p2p(case_id, p2p_id, body.slot, **kw))

    @router.post("/cases/{case_id}/p2p/{p2p_id}/cancel", responses={404: ERRORS[404], 409: ERRORS[409]})
    def cancel_p2p(case_id: str, p2p_id: str, body: rq.Reason, who: Principal = Depends(role("provider", "reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.cancel_p2p(case_id, p2p_id, body.reason, **kw))

    @router.post("/cases/{case_id}/p2p/{p2p_id}/complete", responses={404: ERRORS[404], 409: ERRORS[409]})
    def complete_p2p(case_id: str, p2p_id: str, body: rq.CompleteP2P, who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.complete_p2p(case_id, p2p_id, body.outcome, **kw))

    @router.post("/cases/{case_id}/pre-denial-notice", responses={404: ERRORS[404], 409: ERRORS[409]})
    def pre_denial_notice(case_id: str, body: rq.PreDenialNotice, who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.give_pre_denial_notice(case_id, body.channel, body.notes, **kw))

    @router.post("/cases/{case_id}/extension-of-timeframe", responses={404: ERRORS[404], 409: ERRORS[409]})
    def extend_timeframe(case_id: str, body: rq.ExtendTimeframe, who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.extend_timeframe(case_id, body.reason, body.days, **kw))

    @router.post("/cases/{case_id}/determination", responses={404: ERRORS[404], 409: ERRORS[409]})
    def determine(case_id: str, body: rq.Determination, who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        data = body.model_dump(mode="json")
        return write(who, case_id, key, version, lambda kw: app_.determine(case_id, **data, **kw))

    @router.post("/cases/{case_id}/alternative/accept", responses={404: ERRORS[404], 409: ERRORS[409]})
    def accept_alternative(case_id: str, who: Principal = Depends(role("provider")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.accept_alternative(case_id, **kw))

    @router.post("/cases/{case_id}/reconsideration", responses={404: ERRORS[404], 409: ERRORS[409]})
    def request_reconsideration(case_id: str, body: rq.ReconsiderationRequest, who: Principal = Depends(role("provider")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        docs = documents_exist(body.model_dump(mode="json")["documents"])
        return write(who, case_id, key, version, lambda kw: app_.request_reconsideration(case_id, body.reason, docs, **kw))

    @router.post("/cases/{case_id}/reconsideration/decision", responses={404: ERRORS[404], 409: ERRORS[409]})
    def decide_reconsideration(case_id: str, body: rq.ReconsiderationDecision, who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        data = body.model_dump(mode="json")
        return write(who, case_id, key, version, lambda kw: app_.decide_reconsideration(case_id, **data, **kw))

    @router.post("/cases/{case_id}/appeals", responses={404: ERRORS[404], 409: ERRORS[409]})
    def file_appeal(case_id: str, body: rq.AppealRequest, who: Principal = Depends(role("provider")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.file_appeal(case_id, body.reason, body.filed_at, **kw))

    @router.post("/cases/{case_id}/appeals/{level}/decision", responses={404: ERRORS[404], 409: ERRORS[409]})
    def decide_appeal(case_id: str, body: rq.AppealDecision, level: int = FastAPIPath(..., ge=1, le=10), who: Principal = Depends(role("reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        data = body.model_dump(mode="json")
        return write(who, case_id, key, version, lambda kw: app_.decide_appeal(case_id, level, **data, **kw))

    @router.post("/cases/{case_id}/authorization/updates", responses={404: ERRORS[404], 409: ERRORS[409]})
    def update_authorization(case_id: str, body: rq.AuthorizationUpdate, who: Principal = Depends(role("provider")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.update_authorization(case_id, body.kind, body.changes, **kw))

    @router.post("/cases/{case_id}/authorization/extension", responses={404: ERRORS[404], 409: ERRORS[409]})
    def extend_authorization(case_id: str, body: rq.AuthorizationExtension, who: Principal = Depends(role("provider")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.extend_authorization(case_id, body.valid_to, **kw))

    @router.post("/cases/{case_id}/withdrawal", responses={404: ERRORS[404], 409: ERRORS[409]})
    def withdraw(case_id: str, body: rq.Reason, who: Principal = Depends(role("provider", "reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.withdraw(case_id, body.reason, **kw))

    @router.post("/cases/{case_id}/cancel", responses={404: ERRORS[404], 409: ERRORS[409]})
    def cancel(case_id: str, body: rq.Reason, who: Principal = Depends(role("provider", "reviewer")), key=Depends(idempotency_key), version=Depends(if_match)) -> JSONResponse:
        return write(who, case_id, key, version, lambda kw: app_.cancel(case_id, body.reason, **kw))

    # ---- reads -----------------------------------------------------------------------------

    @router.get("/cases/{case_id}", responses={404: ERRORS[404]})
    def get_case(case_id: str, who: Principal = Depends(role("provider", "reviewer", "auditor", "ops"))) -> dict:
        view = visible(who, app_.view(case_id))
        system.access.record_read(who, view["case_id"], "case", now_iso())
        return view

    @router.get("/cases/{case_id}/history", responses={404: ERRORS[404], 422: ERRORS[422]})
    def get_history(case_id: str, as_of: datetime | None = Query(default=None, description="ISO 8601 instant"),
                    who: Principal = Depends(role("provider", "reviewer", "auditor"))) -> dict:
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidInput(FieldError("as_of", "an instant must carry a time zone"))
        visible(who, app_.view(case_id))
        result = app_.history(case_id, as_of)
        system.access.record_read(who, result["case"]["case_id"], "history", now_iso())
        return result

    @router.get("/worklist", response_model=Listing)
    def get_worklist(status: str | None = Query(default=None, max_length=40), q: str | None = Query(default=None, max_length=100),
                     sort: str = Query(default="-submitted", max_length=40), page: int = Query(default=1, ge=1, le=100000),
                     page_size: int = Query(default=25, ge=1, le=200), who: Principal = Depends(role("provider", "reviewer", "auditor", "ops"))) -> dict:
        return queries.worklist(system.db, npis=system.access.visible_npis(who), status=status, q=q, sort=sort, page=page, page_size=page_size)

    @router.post("/worklist/access", status_code=201)
    def share_worklist(body: ShareWorklist, who: Principal = Depends(role("provider"))) -> dict:
        system.access.share(who, body.user_id, body.email, now_iso())
        return {"items": system.access.shares(who)}

    @router.delete("/worklist/access/{user_id}", responses={404: ERRORS[404]})
    def revoke_worklist(user_id: str, who: Principal = Depends(role("provider"))) -> dict:
        if not system.access.revoke(who, user_id):
            raise Problem(404, "not-shared", "Not shared", f"the worklist is not shared with {user_id}")
        return {"items": system.access.shares(who)}

    @router.get("/worklist/access", response_model=Listing)
    def list_worklist_access(who: Principal = Depends(role("provider"))) -> dict:
        items = system.access.shares(who)
        return {"items": items, "total": len(items)}

    @router.get("/certification-summary", response_model=Listing)
    def certification_summary(authorization_number: str | None = Query(default=None, max_length=40), case_number: str | None = Query(default=None, max_length=40),
                              member_last_name: str | None = Query(default=None, max_length=100), npi: str | None = Query(default=None, max_length=20),
                              status: str | None = Query(default=None, max_length=40), page: int = Query(default=1, ge=1, le=100000),
                              page_size: int = Query(default=50, ge=1, le=200), who: Principal = Depends(role("provider", "reviewer", "auditor", "ops"))) -> dict:
        return queries.certification_summary(system.db, npis=system.access.visible_npis(who), authorization_number=authorization_number,
                                             case_number=case_number, member_last_name=member_last_name, npi=npi, status=status,
                                             page=page, page_size=page_size)

    @router.get("/authorizations/lookup", response_model=Listing, responses={422: ERRORS[422]})
    def lookup(authorization_number: str | None = Query(default=None, max_length=40), npi: str | None = Query(default=None, max_length=20),
               member_id: str | None = Query(default=None, max_length=64), dob: str | None = Query(default=None, max_length=10),
               last_name: str | None = Query(default=None, max_length=100), who: Principal = Depends(role("provider", "reviewer", "auditor", "ops"))) -> dict:
        rows = queries.lookup(system.db, authorization_number=authorization_number, npi=npi, member_id=member_id, dob=dob, last_name=last_name)
        npis = system.access.visible_npis(who)
        items = []
        for row in rows:
            if npis is not None and row["ordering_npi"] not in npis and row["site_npi"] not in npis:
                continue
            view = app_.view(row["case_id"])
            system.access.record_read(who, row["case_id"], "lookup", now_iso())
            items.append({**row, "approval_date": row["approved_at"], "p2p_eligibility": view["p2p_eligibility"],
                          "post_decision_options": view["post_decision_options"]})
        return {"items": items, "total": len(items)}

    @router.get("/requirements", responses={422: ERRORS[422]})
    def requirements(policy: str = Query(..., max_length=80), place_of_service: str = Query(..., pattern=r"^[0-9]{2}$"),
                     date_of_service: date = Query(...), observation: bool = False, who: Principal = Depends(principal)) -> dict:
        if policy not in POLICY_IDS:
            raise InvalidInput(FieldError("policy", f"unknown policy {policy!r}; known: {', '.join(POLICY_IDS)}"))
        return requirement(policy, place_of_service, date_of_service, observation=observation, today=app_.clock.now().date())

    @router.get("/queues/review", response_model=Listing)
    def review_queue(page: int = Query(default=1, ge=1, le=100000), page_size: int = Query(default=100, ge=1, le=200),
                     who: Principal = Depends(role("reviewer", "ops", "auditor"))) -> dict:
        return queries.review_queue(system.db, app_.clock.now(), page=page, page_size=page_size)

    @router.get("/metrics/prior-authorization", responses={422: ERRORS[422]})
    def pa_metrics(from_: datetime | None = Query(default=None, alias="from"), to: datetime | None = Query(default=None),
                   policy: str | None = Query(default=None, max_length=80),
                   partial_counts_as: str = Query(default="denied", pattern="^(approved|denied)$"),
                   who: Principal = Depends(role("ops", "auditor", "reviewer"))) -> dict:
        for name, value in (("from", from_), ("to", to)):
            if value is not None and value.tzinfo is None:
                raise InvalidInput(FieldError(name, "an instant must carry a time zone"))
        return queries.prior_authorization_metrics(system.db, start=from_.isoformat() if from_ else None,
                                                   end=to.isoformat() if to else None, policy=policy, partial_counts_as=partial_counts_as)

    def browser_principal(token: str | None = Query(default=None, max_length=4096, description="a token, for a browser that sends no header"),
                          creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        if creds is None and token:
            creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        who = principal(creds)
        if who.role not in ("ops", "reviewer", "auditor", "admin"):
            raise Problem(403, "forbidden", "Not allowed", f"role {who.role!r} may not see the dashboard")
        return who

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(who: Principal = Depends(browser_principal)) -> HTMLResponse:
        queue = queries.review_queue(system.db, app_.clock.now(), page_size=50)
        figures = queries.prior_authorization_metrics(system.db)
        rows = "".join(
            f"<tr><td>{html.escape(i['case_number'])}</td><td>{html.escape(i['status'])}</td><td>{'urgent' if i['urgent'] else ''}</td>"
            f"<td>{html.escape(i['decision_due_at'])}</td><td>{'AT RISK' if i['at_risk'] else ''}{'OVERDUE' if i['overdue'] else ''}</td></tr>"
            for i in queue["items"])
        s, e = figures["standard"], figures["expedited"]
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>caselog operations</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>caselog operations</h1><p>Open cases: <b>{queue['total']}</b> &middot; events: {app_.max_position()}</p>"
            f"<h2>Decisions</h2><p>standard: {s['decided']} decided, {s['approved']['percent']}% approved, median {s['median_hours_to_decision']} h"
            f" &middot; expedited: {e['decided']} decided, {e['approved']['percent']}% approved, median {e['median_hours_to_decision']} h</p>"
            f"<h2>Review queue</h2><table><tr><th>case</th><th>status</th><th></th><th>decision due</th><th></th></tr>{rows}</table>"
            "</body></html>")
        return HTMLResponse(page)

    if getattr(system.clock, "manual", False):
        @router.post("/admin/clock", responses={422: ERRORS[422]})
        def move_clock(body: ClockMove, who: Principal = Depends(role("admin"))) -> dict:
            if (body.advance is None) == (body.to is None):
                raise InvalidInput(FieldError("body", "give exactly one of advance (ISO 8601 duration) or to (instant)"))
            try:
                if body.advance is not None:
                    delta = TypeAdapter(timedelta).validate_python(body.advance)
                    if delta < timedelta(0):
                        raise InvalidInput(FieldError("advance", "the clock only moves forward"))
                    fired = system.advance_clock(delta)
                else:
                    instant = datetime.fromisoformat(body.to.replace("Z", "+00:00"))
                    if instant.tzinfo is None or instant < system.clock.now():
                        raise InvalidInput(FieldError("to", "an instant with a time zone, not before the clock's now"))
                    fired = system.advance_clock(to=instant)
            except (ValidationError, ValueError):
                raise InvalidInput(FieldError("advance" if body.advance is not None else "to", "not an ISO 8601 duration or instant")) from None
            system.catch_up()
            return {"now": system.clock.now().isoformat(), "fired": fired}

    @router.get("/seals/latest", responses={404: ERRORS[404]})
    def latest_seal(who: Principal = Depends(role("auditor"))) -> dict:
        """The newest signed seal (DESIGN.md, Audit): check it with its key, pinned by fingerprint."""
        from infra.seals import latest_seal as newest

        found = newest(system.db)
        if found is None:
            raise Problem(404, "no-seal", "No seal yet",
                          "the store has not been sealed (caselog seal, or CASELOG_SEAL_KEY for periodic seals)")
        return found

    api.include_router(router)

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "position": app_.max_position()}

    @api.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        head = app_.max_position()
        lines = ["# HELP caselog_events_total Events in the store.", "# TYPE caselog_events_total counter", f"caselog_events_total {head}",
                 "# HELP caselog_projection_lag Events not yet applied, per projection.", "# TYPE caselog_projection_lag gauge"]
        for name in system.in_process:
            lines.append(f'caselog_projection_lag{{projection="{name}"}} {head - system.runner.position(name)}')
        if system.settings.projections == "workers":
            lines += ["# HELP caselog_worker_position Store position applied by the Kafka workers, per projection and partition.",
                      "# TYPE caselog_worker_position gauge"]
            for (name, partition), position in sorted(system.runner.partition_positions(system.settings.topic).items()):
                lines.append(f'caselog_worker_position{{projection="{name}",partition="{partition}"}} {position}')
        if system.settings.kafka_bootstrap:
            from infra.relay import Relay

            relay_position = system.runner.position(f"{Relay.TRACKING}:{system.settings.topic}")
            lines += ["# HELP caselog_relay_lag Events not yet acknowledged by Kafka.", "# TYPE caselog_relay_lag gauge",
                      f"caselog_relay_lag {head - relay_position}"]
        lines += ["# HELP caselog_deadlines_fired_total Deadline events recorded by this process.",
                  "# TYPE caselog_deadlines_fired_total counter", f"caselog_deadlines_fired_total {system.scheduler.fired}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    if background:
        start_background(system, api)
    return api


def start_background(system: System, api: FastAPI) -> None:
    """Projections poll the notification log (SQLite has no subscription); the scheduler
    runs in process on the real clock."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            try:
                system.catch_up()
            except Exception:  # noqa: BLE001 - retried on the next poll
                pass

    from infra.seals import periodic_sealer, start_periodic
    from scheduler.service import Leadership

    leader = Leadership(system.db)
    sealer = periodic_sealer(system)

    def lead() -> None:
        """Run the scheduler (and the periodic sealer) here once no other process holds the store's
        scheduler lock."""
        while not stop.is_set():
            if leader.try_acquire():
                system.scheduler.start()
                if sealer is not None:
                    start_periodic(system, sealer, stop)
                return
            stop.wait(5.0)

    relay = system.relay() if system.settings.kafka_bootstrap else None

    def _start() -> None:
        system.catch_up()
        threading.Thread(target=poll, name="projections", daemon=True).start()
        if relay is not None:
            threading.Thread(target=relay.run, args=(stop,), kwargs={"report": print}, name="relay", daemon=True).start()
        if not getattr(system.clock, "manual", False):
            threading.Thread(target=lead, name="scheduler-leadership", daemon=True).start()

    def _stop() -> None:
        stop.set()
        system.scheduler.stop()
        leader.release()
        if relay is not None:
            relay.close()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        _start()
        try:
            yield
        finally:
            _stop()

    api.router.lifespan_context = lifespan  # FastAPI's replacement for on_event startup/shutdown

