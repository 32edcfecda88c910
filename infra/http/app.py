"""The HTTP API of DESIGN.md (FastAPI): one app, its error mapping, body caps and routers, one per
resource. Entry points stay thin: authenticate, parse, call the application, answer."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from infra.bootstrap import System
from infra.http import cases, dashboard, docs, openapi, operations, problems, reads
from infra.http.guard import Guard
from infra.http.limits import BodyCap
from infra.http.observe import AccessLog, Observability
from infra.http.params import known_query_only
from infra.http.problems import ERRORS

DESCRIPTION = """Prior-authorization cases as an event-sourced record (DESIGN.md, HTTP API).

Authenticate with `Authorization: Bearer <token>` (`caselog token --role ROLE --sub ID`). Every refusal
is `application/problem+json` (RFC 9457) naming its rule in `type` and, for input, each field in
`errors`; query parameters an operation does not take are refused too. Instants are ISO 8601 with
their offset (answers are in UTC); dates are `YYYY-MM-DD`."""


def create_app(system: System, *, background: bool = False) -> FastAPI:
    api = FastAPI(title="caselog", version="1.0", description=DESCRIPTION,
                  responses={400: ERRORS[400], 413: ERRORS[413], 422: ERRORS[422]}, docs_url=None, redoc_url=None,
                  dependencies=[Depends(known_query_only)], generate_unique_id_function=openapi.operation_id)
    problems.install(api)
    docs.install(api)
    openapi.install(api)
    observability = Observability(system)
    api.add_middleware(BodyCap, uploads={"/documents"})
    api.add_middleware(AccessLog, observability=observability)  # outermost: times and logs every answer
    guard = Guard(system)
    for module in (cases, reads, operations, dashboard):
        api.include_router(module.router(guard), responses={401: ERRORS[401], 403: ERRORS[403]})
    operations.install_probes(api, guard, observability)
    if background:
        from infra.background import start_background

        start_background(system, api)
    return api
