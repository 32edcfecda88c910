"""Refusals as RFC 9457 problem JSON, in one place: a domain error's HTTP status, the problem
body and its schema, and the exception handlers an app installs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from application import bodies
from domain.errors import (CaseNotFound, DocumentTooLarge, DomainError, EventTooLarge, FieldError, IdempotencyConflict,
                           InvalidInput, NotPermitted, RuleViolation, VersionConflict)

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://caselog.dev/problems/"


class Problem(Exception):
    def __init__(self, status: int, rule: str, title: str, detail: str, errors: list[FieldError] | None = None):
        super().__init__(detail)
        self.status, self.rule, self.title, self.detail, self.errors = status, rule, title, detail, errors


class FieldProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(description="the field, parameter or header, as `service.procedures[0].code`")
    message: str


class ProblemBody(BaseModel):
    """A refusal (RFC 9457 problem details), answered as application/problem+json."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(description=f"{PROBLEM_BASE}<rule>: the rule that refused", json_schema_extra={"format": "uri"})
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldProblem] | None = Field(default=None, description="one entry per field refused")


# Refusals as operations document them (infra.http.openapi puts them under application/problem+json).
ERRORS = {code: {"model": ProblemBody} for code in (400, 401, 403, 404, 409, 413, 422)}


def status_of(exc: DomainError) -> int:
    if isinstance(exc, (DocumentTooLarge, EventTooLarge)):
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


def install(api: FastAPI) -> None:
    """Every refusal, whoever raises it, answers problem JSON."""

    @api.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(status_of(exc), exc.rule, exc.title, exc.detail, getattr(exc, "errors", None))

    @api.exception_handler(Problem)
    async def problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.rule, exc.title, exc.detail, exc.errors)

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = bodies.field_errors(exc.errors(), skip=1)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(400, "malformed-json", "Malformed JSON", "the request body is not valid JSON", errors)
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem_response(422, "invalid-input", "Invalid input", detail, errors)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, f"http-{exc.status_code}", str(exc.detail), str(exc.detail))
