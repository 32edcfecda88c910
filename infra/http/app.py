"""The HTTP API of DESIGN.md (FastAPI): one app, its error mapping, body caps and routers, one per
resource. Entry points stay thin: authenticate, parse, call the application, answer."""

from __future__ import annotations

from fastapi import FastAPI

from infra.bootstrap import System
from infra.http import cases, dashboard, docs, operations, problems, reads
from infra.http.guard import Guard
from infra.http.limits import BodyCap
from infra.http.problems import ERRORS


def create_app(system: System, *, background: bool = False) -> FastAPI:
    api = FastAPI(title="caselog", version="1.0", description="Prior-authorization case lifecycle (see DESIGN.md)",
                  responses={400: ERRORS[400], 422: ERRORS[422]}, docs_url=None, redoc_url=None)
    problems.install(api)
    docs.install(api)
    api.add_middleware(BodyCap, uploads={"/documents"})
    guard = Guard(system)
    for module in (cases, reads, operations, dashboard):
        api.include_router(module.router(guard), responses={401: ERRORS[401], 403: ERRORS[403]})
    operations.install_probes(api, guard)
    if background:
        from infra.background import start_background

        start_background(system, api)
    return api
