"""The case resource: uploads, submissions and drafts, every command on a case (one route per row
of ``application.commands.CASE_COMMANDS``), and reading a case and its history."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, File, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from application import bodies, commands
from application.commands import CaseCommand
from domain.errors import FieldError, InvalidInput
from infra.authorization import MEMBER_DATA_READERS, SUBMITTERS
from infra.http.guard import Guard, Writing
from infra.http.models import CaseView, History, Uploaded
from infra.http.openapi import answers
from infra.http.problems import ERRORS
from infra.identity import Principal

WRITE_ERRORS = {404: ERRORS[404], 409: ERRORS[409], 413: ERRORS[413]}


def router(guard: Guard) -> APIRouter:
    routes = APIRouter()
    app, system = guard.app, guard.system
    cases = ["cases"]

    @routes.post("/documents", status_code=201, tags=["documents"], response_model=None,
                 responses={**answers(Uploaded, "The stored document: attach it by its document_id", 201),
                            413: ERRORS[413], 422: ERRORS[422]})
    def upload_document(file: UploadFile = File(...), who: Principal = Depends(guard.role("provider", "reviewer"))) -> dict:
        """Upload one clinical document (.pdf, .doc, .docx or .png, at most 25 MB). Roles: provider, reviewer."""
        name = bodies.checked("file", file.filename or "", max_length=255)  # it comes back as a Document's FileName
        return system.documents.put(name, file.file, uploader=who.actor, at=guard.now_iso())

    @routes.post("/cases", status_code=201, tags=cases, response_model=None,
                 responses={**answers(CaseView, "The case, as submitted", 201), 409: ERRORS[409], 422: ERRORS[422]})
    def submit_case(body: commands.SubmitCase,
                    writing: Writing = Depends(guard.writing(*SUBMITTERS, creates=True))) -> JSONResponse:
        """Submit a prior-authorization request for one of the provider's NPIs; the rules may approve it at
        once (never deny). Role: provider."""
        data = guard.authz.submission(writing.who, body.model_dump(mode="json"))
        return guard.answer(app.submit(data, actor=writing.who.actor, key=writing.key))

    @routes.post("/drafts", status_code=201, tags=cases, response_model=None,
                 responses={**answers(CaseView, "The draft (status draft)", 201), 409: ERRORS[409]})
    def start_draft(body: commands.StartDraft,
                    writing: Writing = Depends(guard.writing(*SUBMITTERS, creates=True))) -> JSONResponse:
        """Start a request to finish later (any fields of POST /cases); it expires if not submitted. Role: provider."""
        return guard.answer(app.start_draft(body.model_dump(mode="json"), actor=writing.who.actor, key=writing.key))

    @routes.post("/cases/{case_id}/submit", tags=cases, response_model=None,
                 responses={**answers(CaseView, "The case, as submitted"), 404: ERRORS[404], 409: ERRORS[409]})
    def submit_draft(case_id: str, body: commands.SubmitCase,
                     writing: Writing = Depends(guard.writing(*SUBMITTERS))) -> JSONResponse:
        """Submit a draft as a complete request (the body of POST /cases). Role: provider."""
        data = guard.authz.draft_submission(writing.who, case_id, body.model_dump(mode="json"))
        return guard.write(writing, lambda kw: app.submit_draft(case_id, data, **kw))

    for command in commands.CASE_COMMANDS:
        _command_route(routes, guard, command)

    @routes.get("/cases/{case_id}", tags=cases, response_model=None,
                responses={**answers(CaseView, "The case as it stands"), 404: ERRORS[404]})
    def get_case(case_id: str, who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        """A case as it stands now: status, clocks, decisions, P2P eligibility and post-decision options. The read
        is recorded for the audit report. Roles: provider (its own cases), reviewer, auditor."""
        guard.authz.reading(who, case_id)
        view = app.view(case_id)
        guard.read(who, "case", [view["case_id"]])
        return view

    @routes.get("/cases/{case_id}/history", tags=cases, response_model=None,
                responses={**answers(History, "The events and the case as it then stood"), 404: ERRORS[404],
                           422: ERRORS[422]})
    def get_history(case_id: str, as_of: datetime | None = Query(default=None, description="ISO 8601 instant"),
                    who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        """A case's events in order (each with its hash in the case's chain), up to `as_of` when given, and the
        case as it stood then. Roles: provider (its own cases), reviewer, auditor."""
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidInput(FieldError("as_of", "an instant must carry a time zone"))
        guard.authz.reading(who, case_id)
        result = app.history(case_id, as_of)
        guard.read(who, "history", [result["case"]["case_id"]], {"as_of": as_of.isoformat() if as_of else None})
        return result

    return routes


def _command_route(routes: APIRouter, guard: Guard, command: CaseCommand) -> None:
    """``POST /cases/{case_id}<path>`` for one command: its body, path parameters and roles from
    the table; visibility, documents and the write headers the same for every command."""

    def handler(case_id: str, writing: Writing, body: Any = None, **params: Any) -> JSONResponse:
        data = guard.authz.command(writing.who, command, case_id, body.model_dump(mode="json") if body is not None else {})
        return guard.write(writing, lambda kw: command.run(guard.app, case_id, data, params, **kw))

    keyword = inspect.Parameter.KEYWORD_ONLY
    signature = [inspect.Parameter("case_id", keyword, annotation=str)]
    for name in command.params:
        if name == "level":
            signature.append(inspect.Parameter(name, keyword, annotation=int, default=PathParam(..., ge=1, le=10)))
        else:
            signature.append(inspect.Parameter(name, keyword, annotation=bodies.Identifier))
    if command.body is not None:
        examples = {"example": {"summary": command.summary, "value": command.example}} if command.example else None
        signature.append(inspect.Parameter("body", keyword, annotation=command.body,
                                           default=Body(..., openapi_examples=examples)))
    signature.append(inspect.Parameter("writing", keyword, annotation=Writing, default=Depends(guard.writing(*command.roles))))
    handler.__signature__ = inspect.Signature(signature, return_annotation=JSONResponse)  # type: ignore[attr-defined]
    handler.__name__ = command.action.replace("-", "_")
    statuses = (200, 201) if command.creates else (200,)
    roles = ", ".join(command.roles)
    routes.post("/cases/{case_id}" + command.path, tags=["cases"], summary=command.summary,
                description=f"{command.summary}. Roles: {roles} (and admin).", response_model=None,
                responses={**answers(CaseView, "The case after the command", *statuses), **WRITE_ERRORS},
                operation_id=command.action.replace("-", "_"))(handler)
