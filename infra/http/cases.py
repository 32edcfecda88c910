"""The case resource: uploads, submissions and drafts, every command on a case (one route per row
of ``application.commands.CASE_COMMANDS``), and reading a case and its history."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from application import bodies, commands
from application.commands import CaseCommand
from domain.errors import FieldError, InvalidInput
from infra.authorization import MEMBER_DATA_READERS, SUBMITTERS
from infra.http.guard import Guard
from infra.http.problems import ERRORS
from infra.identity import Principal

WRITE_ERRORS = {404: ERRORS[404], 409: ERRORS[409], 413: ERRORS[413]}


def router(guard: Guard) -> APIRouter:
    routes = APIRouter(tags=["cases"])
    app, system = guard.app, guard.system

    @routes.post("/documents", status_code=201, responses={413: ERRORS[413], 422: ERRORS[422]}, tags=["documents"])
    def upload_document(file: UploadFile = File(...), who: Principal = Depends(guard.role("provider", "reviewer"))) -> dict:
        name = bodies.checked("file", file.filename or "", max_length=255)  # it comes back as a Document's FileName
        return system.documents.put(name, file.file, uploader=who.actor, at=guard.now_iso())

    @routes.post("/cases", status_code=201, responses={409: ERRORS[409], 422: ERRORS[422]})
    def submit_case(body: commands.SubmitCase, who: Principal = Depends(guard.role(*SUBMITTERS)),
                    key: str | None = Depends(guard.idempotency_key)) -> JSONResponse:
        data = guard.authz.submission(who, body.model_dump(mode="json"))
        return guard.answer(app.submit(data, actor=who.actor, key=key))

    @routes.post("/drafts", status_code=201, responses={409: ERRORS[409]})
    def start_draft(body: commands.StartDraft, who: Principal = Depends(guard.role(*SUBMITTERS)),
                    key: str | None = Depends(guard.idempotency_key)) -> JSONResponse:
        return guard.answer(app.start_draft(body.model_dump(mode="json"), actor=who.actor, key=key))

    @routes.post("/cases/{case_id}/submit", responses={404: ERRORS[404], 409: ERRORS[409]})
    def submit_draft(case_id: str, body: commands.SubmitCase, who: Principal = Depends(guard.role(*SUBMITTERS)),
                     key=Depends(guard.idempotency_key), version=Depends(guard.if_match)) -> JSONResponse:
        data = guard.authz.draft_submission(who, case_id, body.model_dump(mode="json"))
        return guard.write(who, key, version, lambda kw: app.submit_draft(case_id, data, **kw))

    for command in commands.CASE_COMMANDS:
        _command_route(routes, guard, command)

    @routes.get("/cases/{case_id}", responses={404: ERRORS[404]})
    def get_case(case_id: str, who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        guard.authz.reading(who, case_id)
        view = app.view(case_id)
        guard.read(who, "case", [view["case_id"]])
        return view

    @routes.get("/cases/{case_id}/history", responses={404: ERRORS[404], 422: ERRORS[422]})
    def get_history(case_id: str, as_of: datetime | None = Query(default=None, description="ISO 8601 instant"),
                    who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
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

    def handler(case_id: str, who: Principal, key: str | None, version: int | None, body: Any = None,
                **params: Any) -> JSONResponse:
        data = guard.authz.command(who, command, case_id, body.model_dump(mode="json") if body is not None else {})
        return guard.write(who, key, version, lambda kw: command.run(guard.app, case_id, data, params, **kw))

    keyword = inspect.Parameter.KEYWORD_ONLY
    signature = [inspect.Parameter("case_id", keyword, annotation=str)]
    for name in command.params:
        if name == "level":
            signature.append(inspect.Parameter(name, keyword, annotation=int, default=PathParam(..., ge=1, le=10)))
        else:
            signature.append(inspect.Parameter(name, keyword, annotation=bodies.Identifier))
    if command.body is not None:
        signature.append(inspect.Parameter("body", keyword, annotation=command.body))
    signature += [
        inspect.Parameter("who", keyword, annotation=Principal, default=Depends(guard.role(*command.roles))),
        inspect.Parameter("key", keyword, annotation=str | None, default=Depends(guard.idempotency_key)),
        inspect.Parameter("version", keyword, annotation=int | None, default=Depends(guard.if_match)),
    ]
    handler.__signature__ = inspect.Signature(signature, return_annotation=JSONResponse)  # type: ignore[attr-defined]
    handler.__name__ = command.action.replace("-", "_")
    routes.post("/cases/{case_id}" + command.path, responses=WRITE_ERRORS, summary=command.summary,
                operation_id=command.action.replace("-", "_"))(handler)
