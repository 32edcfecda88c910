"""The write benchmark's baseline: what a user would build by hand with the same libraries.

A bare ``eventsourcing`` application (one small aggregate, one event per command, one aggregate
saved per transaction, the library's own SQLite or PostgreSQL persistence configured from the
environment: PERSISTENCE_MODULE, SQLITE_DBNAME or POSTGRES_*) behind the same stack as
``caselog serve``: FastAPI with plain ``def`` endpoints (Starlette's thread pool), uvicorn with
its h11 protocol on the asyncio loop. No authentication, no validation beyond two fields, no
read models.

    PERSISTENCE_MODULE=eventsourcing.sqlite SQLITE_DBNAME=/tmp/bare.db python -m bench.bare_app --port 8001

- ``POST /cases`` (a caselog submission body; ``policy`` and ``member.id`` are kept): creates one
  aggregate, 201 ``{"case_id", "version"}``;
- ``POST /cases/{id}/determination`` (``{"outcome": ...}``): appends one event to an existing one;
- ``GET /ping``: a trivial answer, the stack's ceiling.
"""

from __future__ import annotations

import argparse
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict


class Request(Aggregate):
    """A prior-authorization request, reduced to a couple of fields."""

    def __init__(self, policy: str, member_id: str):
        self.policy = policy
        self.member_id = member_id
        self.status = "pending"

    @event("Held")
    def hold(self, items: list[str]) -> None:
        self.status = "held"

    @event("ClinicalUploaded")
    def upload_clinical(self, notes: str) -> None:
        self.status = "pending"

    @event("Determined")
    def determine(self, outcome: str) -> None:
        self.status = outcome


class Bare(Application):
    name = "bare"

    def submit(self, policy: str, member_id: str) -> Request:
        request = Request(policy, member_id)
        self.save(request)
        return request

    def determine(self, request_id: UUID, outcome: str) -> Request:
        request: Request = self.repository.get(request_id)
        request.determine(outcome)
        self.save(request)
        return request

    def prepare(self, count: int, batch: int = 200) -> list[str]:
        """``count`` requests with history (created, held, clinical uploaded), saved in batches."""
        ids = []
        while len(ids) < count:
            made = []
            for _ in range(min(batch, count - len(ids))):
                request = Request("cigna-commercial/dme", f"P{len(ids) + len(made):08d}")
                request.hold(["clinical notes"])
                request.upload_clinical("attached")
                made.append(request)
            self.save(*made)
            ids += [str(r.id) for r in made]
        return ids


class Member(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str


class Submission(BaseModel):
    model_config = ConfigDict(extra="ignore")
    policy: str
    member: Member


class Decision(BaseModel):
    model_config = ConfigDict(extra="ignore")
    outcome: str


def create_app(bare: Bare) -> FastAPI:
    api = FastAPI(title="bare")

    @api.post("/cases", status_code=201)
    def submit(body: Submission) -> dict:
        request = bare.submit(body.policy, body.member.id)
        return {"case_id": str(request.id), "version": request.version}

    @api.post("/cases/{case_id}/determination")
    def determine(case_id: UUID, body: Decision) -> dict:
        try:
            request = bare.determine(case_id, body.outcome)
        except AggregateNotFoundError:
            raise HTTPException(404, "no such request") from None
        return {"case_id": str(request.id), "version": request.version, "status": request.status}

    @api.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    return api


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    bare = Bare()
    try:
        uvicorn.run(create_app(bare), host="127.0.0.1", port=args.port, log_level="warning", http="h11")
    finally:
        bare.close()


if __name__ == "__main__":
    main()
