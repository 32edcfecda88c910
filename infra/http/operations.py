"""What operations watch and run: the review queue, the CMS-0057-F figures, liveness, readiness,
Prometheus metrics, and the test clock (only with CASELOG_CLOCK=manual)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from application import bodies
from domain.errors import FieldError, InvalidInput
from domain.validation import parse_instant
from domain.policy import requiring_prior_authorization
from infra.http.guard import Guard
from infra.http.models import ClockMoved, Health, Policy, PriorAuthorizationFigures, Readiness, ReviewQueue, Seal
from infra.http.observe import Observability
from infra.http.openapi import answers
from infra.http.problems import ERRORS, Problem, ProblemBody
from infra.identity import Principal
from projections.metrics import prior_authorization_figures
from projections.review_queue import review_queue_page


class ClockMove(bodies.Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"advance": "PT36H"},
                                                                             {"to": "2026-12-01T09:00:00Z"}]})
    advance: bodies.Code | None = Field(default=None, description="ISO 8601 duration, e.g. PT36H")
    to: bodies.Code | None = Field(default=None, description="ISO 8601 instant with a time zone")


def router(guard: Guard) -> APIRouter:
    routes = APIRouter()
    app, system = guard.app, guard.system
    operations = ["operations"]

    @routes.get("/queues/review", tags=operations, response_model=None,
                responses=answers(ReviewQueue, "A page of the open cases"))
    def get_review_queue(page: int = Query(default=1, ge=1, le=100000),
                         page_size: int = Query(default=100, ge=1, le=200),
                         who: Principal = Depends(guard.role("reviewer", "ops", "auditor"))) -> dict:
        """Open cases (pending or held), urgent first, then by decision due instant, each flagged at risk (past 75%
        of its time) or overdue. Roles: reviewer, ops, auditor."""
        return review_queue_page(system.db, app.clock.now(), page=page, page_size=page_size)

    @routes.get("/metrics/prior-authorization", tags=operations, response_model=None,
                responses={**answers(PriorAuthorizationFigures, "The CMS-0057-F figures"), 422: ERRORS[422]})
    def get_prior_authorization_metrics(
            from_: datetime | None = Query(default=None, alias="from", description="decided at or after (instant)"),
            to: datetime | None = Query(default=None, description="decided before (instant)"),
            policy: Policy | None = None,
            partial_counts_as: Literal["approved", "denied"] = Query(default="denied"),
            who: Principal = Depends(guard.role("ops", "auditor", "reviewer"))) -> dict:
        """The CMS-0057-F public-reporting figures over the requests decided in [from, to), each percentage with its
        numerator and denominator, standard and expedited apart, and (item 1) the items and services that require
        prior authorization, by policy, as the policy table stands at `to` (or now). Roles: ops, auditor, reviewer."""
        for name, value in (("from", from_), ("to", to)):
            if value is not None and value.tzinfo is None:
                raise InvalidInput(FieldError(name, "an instant must carry a time zone"))
        figures = prior_authorization_figures(system.db, start=from_.isoformat() if from_ else None,
                                              end=to.isoformat() if to else None, policy=policy,
                                              partial_counts_as=partial_counts_as)
        listed_on = (to or app.clock.now()).astimezone(timezone.utc).date()  # the policy table at the period's end
        return {**figures, "items_requiring_prior_authorization": requiring_prior_authorization(listed_on, policy)}

    if getattr(system.clock, "manual", False):
        @routes.post("/admin/clock", tags=operations, response_model=None,
                     responses={**answers(ClockMoved, "The clock's now, and the deadline events fired"),
                                422: ERRORS[422]})
        def move_clock(body: ClockMove, who: Principal = Depends(guard.role("admin"))) -> dict:
            """Move the test clock forward (`advance`, a duration, or `to`, an instant) and fire everything that
            became due, in due order. Only with CASELOG_CLOCK=manual. Role: admin."""
            if (body.advance is None) == (body.to is None):
                raise InvalidInput(FieldError("body", "give exactly one of advance (ISO 8601 duration) or to (instant)"))
            try:
                if body.advance is not None:
                    delta, instant = TypeAdapter(timedelta).validate_python(body.advance), None
                else:
                    delta, instant = None, parse_instant(body.to)
            except (ValidationError, ValueError):
                raise InvalidInput(FieldError("advance" if body.advance is not None else "to", "not an ISO 8601 duration or instant")) from None
            fired = system.advance_clock(delta, to=instant)  # refuses a move out of bounds, naming the field
            system.catch_up()
            return {"now": system.clock.now().isoformat(), "fired": fired}

    @routes.get("/seals/latest", tags=["audit"], response_model=None,
                responses={**answers(Seal, "The newest signed seal"), 404: ERRORS[404]})
    def get_latest_seal(who: Principal = Depends(guard.role("auditor"))) -> dict:
        """The newest signed seal (DESIGN.md, Audit): check it with its key, pinned by fingerprint."""
        from infra.seals import latest_seal as newest

        found = newest(system.db)
        if found is None:
            raise Problem(404, "no-seal", "No seal yet",
                          "the store has not been sealed (caselog seal, or CASELOG_SEAL_KEY for periodic seals)")
        return found

    return routes


def install_probes(api: FastAPI, guard: Guard, observability: Observability) -> None:
    """Liveness, readiness and Prometheus metrics: no token, no PHI."""
    app, system = guard.app, guard.system
    probes = ["probes"]

    @api.get("/healthz", tags=probes, response_model=None, responses=answers(Health, "Alive"))
    def get_health() -> dict:
        """Liveness: the process answers, with the store's newest position."""
        return {"status": "ok", "position": app.max_position()}

    @api.get("/readyz", tags=probes, response_model=None,
             responses={**answers(Readiness, "Ready: the store answers, and Kafka when it is configured"),
                        503: {"model": ProblemBody, "description": "Not ready: the detail says what does not answer"}})
    def get_readiness() -> dict:
        """Readiness: the store answers a query and, when CASELOG_KAFKA_BOOTSTRAP is set, a Kafka broker answers
        (within a few seconds)."""
        checks, failed = {}, []
        try:
            with system.db.transaction() as cur:
                cur.execute("SELECT 1").fetchone()
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - the probe says why, it does not fail
            failed.append(f"store: {type(exc).__name__}: {exc}")
        bootstrap = system.settings.kafka_bootstrap
        if bootstrap:
            from infra.bootstrap import kafka_security
            from infra.kafka.topic import broker_reachable

            try:
                broker_reachable(bootstrap, kafka_security(system.settings))
                checks["kafka"] = "ok"
            except Exception as exc:  # noqa: BLE001
                failed.append(f"kafka {bootstrap}: {type(exc).__name__}: {exc}")
        else:
            checks["kafka"] = "not configured"
        if failed:
            raise Problem(503, "not-ready", "Not ready", "; ".join(failed))
        return {"status": "ready", "checks": checks}

    @api.get("/metrics", tags=probes, response_class=PlainTextResponse,
             responses={200: {"description": "Prometheus text exposition format"}})
    def get_metrics() -> PlainTextResponse:
        """Prometheus metrics: HTTP latency per route template (caselog_http_request_duration_seconds), events,
        open cases by status, cases at risk and overdue, deadlines due and fired, projection lag, relay lag and
        parked events, the workers' positions, and whether the store answered (caselog_store_up)."""
        return PlainTextResponse(observability.exposition(), media_type=CONTENT_TYPE_LATEST)
