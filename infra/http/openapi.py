"""The OpenAPI document as clients read it: tags with their descriptions, operation ids from the
handlers' names, every refusal as ``application/problem+json`` with the Problem schema (FastAPI
would say application/json, with its own validation-error shape caselog never answers), and the
documented answer of each operation (``answers``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from infra.http.problems import PROBLEM, ProblemBody

TAGS = [
    {"name": "cases", "description": "Submit a request, act on a case (one operation per command), read a case and "
     "its history. Writes take `Idempotency-Key` (the same key and body answer the same, recording once) and "
     "`If-Match: <version>`; each answers the case view."},
    {"name": "documents", "description": "Upload a clinical document once; attach it to requests by its "
     "`document_id`."},
    {"name": "worklist and lookups", "description": "The read models providers, reviewers and auditors search: the "
     "worklist and whom it is shared with, the certification summary, the authorization lookup, and whether prior "
     "authorization applies."},
    {"name": "operations", "description": "The review queue, the CMS-0057-F public-reporting figures, and the test "
     "clock (only with `CASELOG_CLOCK=manual`)."},
    {"name": "audit", "description": "Signed seals of the store, for auditors."},
    {"name": "dashboard", "description": "The operations dashboard (HTML) and its browser session."},
    {"name": "probes", "description": "Liveness, readiness and Prometheus metrics: no token, no PHI."},
]

PROBLEM_EXAMPLE = {
    "type": "https://caselog.dev/problems/invalid-input", "title": "Invalid input", "status": 422,
    "detail": "service.procedures[0].units: Input should be greater than or equal to 1",
    "errors": [{"field": "service.procedures[0].units", "message": "Input should be greater than or equal to 1"}],
}


def answers(model: type, description: str, *statuses: int) -> dict[int, dict[str, Any]]:
    """The ``responses`` entry documenting an operation's answer (200 unless ``statuses`` say)."""
    return {status: {"model": model, "description": description} for status in statuses or (200,)}


def operation_id(route: APIRoute) -> str:
    """The handler's name: submit_case, get_worklist, hold, appeal_decision..."""
    return route.name


def install(api: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            doc = get_openapi(title=api.title, version=api.version, summary=api.summary, description=api.description,
                              routes=api.routes, tags=TAGS, servers=api.servers)
            api.openapi_schema = problems_as_problem_json(doc)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def problems_as_problem_json(doc: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx answer as application/problem+json with the Problem schema; FastAPI's own
    validation-error schemas, which nothing answers, dropped."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    problem_ref = {"$ref": f"#/components/schemas/{ProblemBody.__name__}"}
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if status[0] not in "45":
                    continue
                html = response.get("content", {}).get("text/html")  # a page for a person, beside the problem
                response["content"] = {PROBLEM: {"schema": problem_ref}, **({"text/html": html} if html is not None else {})}
                if status == "422":
                    response["content"][PROBLEM]["example"] = PROBLEM_EXAMPLE
                if status == "401":
                    response["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
                if response.get("description") in (None, "", "Validation Error", "Successful Response"):
                    response["description"] = DESCRIPTIONS.get(status, "Refused")
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return doc


DESCRIPTIONS = {
    "400": "Malformed request (body not JSON, bad If-Match)",
    "401": "No or invalid bearer token",
    "403": "Not allowed for this role or actor",
    "404": "No such case (or not one this caller may see)",
    "409": "Refused by a rule, a version conflict (If-Match) or an Idempotency-Key reused with another body; "
           "the rule's name ends `type`",
    "413": "Body, document or resulting event too large",
    "422": "Invalid input, each field named in `errors` (unknown query parameters too)",
    "503": "Not ready",
}
