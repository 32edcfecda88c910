"""What operations watch and run: the review queue, the CMS-0057-F figures, liveness, Prometheus
metrics, and the test clock (only with CASELOG_CLOCK=manual)."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse
from pydantic import Field, TypeAdapter, ValidationError

from application import bodies
from domain.errors import FieldError, InvalidInput
from domain.validation import parse_instant
from infra.http.guard import Guard
from infra.http.problems import ERRORS, Problem
from infra.http.reads import Listing
from infra.identity import Principal
from projections.metrics import prior_authorization_figures
from projections.review_queue import review_queue_page


class ClockMove(bodies.Body):
    advance: bodies.Code | None = Field(default=None, description="ISO 8601 duration, e.g. PT36H")
    to: bodies.Code | None = Field(default=None, description="ISO 8601 instant with a time zone")


def router(guard: Guard) -> APIRouter:
    routes = APIRouter(tags=["operations"])
    app, system = guard.app, guard.system

    @routes.get("/queues/review", response_model=Listing)
    def review_queue(page: int = Query(default=1, ge=1, le=100000), page_size: int = Query(default=100, ge=1, le=200),
                     who: Principal = Depends(guard.role("reviewer", "ops", "auditor"))) -> dict:
        return review_queue_page(system.db, app.clock.now(), page=page, page_size=page_size)

    @routes.get("/metrics/prior-authorization", responses={422: ERRORS[422]})
    def pa_metrics(from_: datetime | None = Query(default=None, alias="from"), to: datetime | None = Query(default=None),
                   policy: bodies.Identifier | None = None,
                   partial_counts_as: str = Query(default="denied", pattern="^(approved|denied)$"),
                   who: Principal = Depends(guard.role("ops", "auditor", "reviewer"))) -> dict:
        for name, value in (("from", from_), ("to", to)):
            if value is not None and value.tzinfo is None:
                raise InvalidInput(FieldError(name, "an instant must carry a time zone"))
        return prior_authorization_figures(system.db, start=from_.isoformat() if from_ else None,
                                                   end=to.isoformat() if to else None, policy=policy, partial_counts_as=partial_counts_as)

    if getattr(system.clock, "manual", False):
        @routes.post("/admin/clock", responses={422: ERRORS[422]})
        def move_clock(body: ClockMove, who: Principal = Depends(guard.role("admin"))) -> dict:
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

    @routes.get("/seals/latest", responses={404: ERRORS[404]}, tags=["audit"])
    def latest_seal(who: Principal = Depends(guard.role("auditor"))) -> dict:
        """The newest signed seal (DESIGN.md, Audit): check it with its key, pinned by fingerprint."""
        from infra.seals import latest_seal as newest

        found = newest(system.db)
        if found is None:
            raise Problem(404, "no-seal", "No seal yet",
                          "the store has not been sealed (caselog seal, or CASELOG_SEAL_KEY for periodic seals)")
        return found

    return routes


def install_probes(api: FastAPI, guard: Guard) -> None:
    """Liveness and Prometheus metrics: no token, no PHI."""
    app, system = guard.app, guard.system

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "position": app.max_position()}

    @api.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        head = app.max_position()
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
            from infra.kafka.relay import Relay, parked_count

            relay_position = system.runner.position(f"{Relay.TRACKING}:{system.settings.topic}")
            parked = parked_count(system.db, system.settings.topic)
            lines += ["# HELP caselog_relay_lag Events not yet acknowledged by Kafka.", "# TYPE caselog_relay_lag gauge",
                      f"caselog_relay_lag {head - relay_position}",
                      "# HELP caselog_relay_parked Events the relay parked: refused by the broker, or not encodable.",
                      "# TYPE caselog_relay_parked gauge", f"caselog_relay_parked {parked}"]
        lines += ["# HELP caselog_deadlines_fired_total Deadline events recorded by this process.",
                  "# TYPE caselog_deadlines_fired_total counter", f"caselog_deadlines_fired_total {system.scheduler.fired}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
