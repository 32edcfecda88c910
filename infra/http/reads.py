"""The read models as providers, reviewers and auditors search them: the worklist (and whom it is
shared with), the certification summary, the authorization lookup, and whether PA applies. Every
answer that shows member data is recorded (one read per request, naming every case it showed);
ops may not search them (infra.authorization.MEMBER_DATA_READERS)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from application import bodies
from domain.errors import FieldError, InvalidInput
from domain.intake import requirement
from domain.policy import POLICY_IDS
from infra.authorization import MEMBER_DATA_READERS
from infra.http.guard import Guard
from infra.http.problems import ERRORS, Problem
from infra.identity import Principal
from projections.certification import certification_page
from projections.lookup import authorizations_found
from projections.worklist import worklist_page


class Listing(BaseModel):
    model_config = ConfigDict(extra="allow")
    items: list[dict[str, Any]]
    total: int | None = None


class ShareWorklist(bodies.Body):
    user_id: bodies.Identifier = Field(min_length=1)
    email: bodies.Email


def router(guard: Guard) -> APIRouter:
    routes = APIRouter(tags=["worklist and lookups"])
    app, system = guard.app, guard.system

    @routes.get("/worklist", response_model=Listing)
    def get_worklist(status: bodies.Code | None = None, q: bodies.Name | None = None, sort: bodies.Code = "-submitted",
                     page: int = Query(default=1, ge=1, le=100000),
                     page_size: int = Query(default=25, ge=1, le=200),
                     who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        found = worklist_page(system.db, npis=system.access.visible_npis(who), status=status, q=q, sort=sort, page=page,
                              page_size=page_size)
        guard.read(who, "worklist", [row["case_id"] for row in found["items"]],
                   {"status": status, "q": q, "sort": sort, "page": page, "page_size": page_size})
        return found

    @routes.post("/worklist/access", status_code=201)
    def share_worklist(body: ShareWorklist, who: Principal = Depends(guard.role("provider"))) -> dict:
        system.access.share(who, body.user_id, body.email, guard.now_iso())
        return {"items": system.access.shares(who)}

    @routes.delete("/worklist/access/{user_id}", responses={404: ERRORS[404]})
    def revoke_worklist(user_id: bodies.Identifier, who: Principal = Depends(guard.role("provider"))) -> dict:
        if not system.access.revoke(who, user_id):
            raise Problem(404, "not-shared", "Not shared", f"the worklist is not shared with {user_id}")
        return {"items": system.access.shares(who)}

    @routes.get("/worklist/access", response_model=Listing)
    def list_worklist_access(who: Principal = Depends(guard.role("provider"))) -> dict:
        items = system.access.shares(who)
        return {"items": items, "total": len(items)}

    @routes.get("/certification-summary", response_model=Listing)
    def certification_summary(authorization_number: bodies.Code | None = None, case_number: bodies.Code | None = None,
                              member_last_name: bodies.PersonName | None = None, npi: bodies.Code | None = None,
                              status: bodies.Code | None = None, page: int = Query(default=1, ge=1, le=100000),
                              page_size: int = Query(default=50, ge=1, le=200),
                              who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        asked = {"authorization_number": authorization_number, "case_number": case_number,
                 "member_last_name": member_last_name, "npi": npi, "status": status, "page": page, "page_size": page_size}
        found = certification_page(system.db, npis=system.access.visible_npis(who), **asked)
        guard.read(who, "certification-summary", [row["case_id"] for row in found["items"]], asked)
        return found

    @routes.get("/authorizations/lookup", response_model=Listing, responses={422: ERRORS[422]})
    def lookup(authorization_number: bodies.Code | None = None, npi: bodies.Code | None = None,
               member_id: bodies.Identifier | None = None, dob: bodies.Code | None = None, last_name: bodies.PersonName | None = None,
               who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        rows = authorizations_found(system.db, authorization_number=authorization_number, npi=npi, member_id=member_id, dob=dob, last_name=last_name)
        npis = system.access.visible_npis(who)
        items = []
        for row in rows:
            if npis is not None and row["ordering_npi"] not in npis and row["site_npi"] not in npis:
                continue
            view = app.view(row["case_id"])
            items.append({**row, "approval_date": row["approved_at"], "p2p_eligibility": view["p2p_eligibility"],
                          "post_decision_options": view["post_decision_options"]})
        guard.read(who, "lookup", [item["case_id"] for item in items],
                   {"authorization_number": authorization_number, "npi": npi, "member_id": member_id, "dob": dob,
                    "last_name": last_name})
        return {"items": items, "total": len(items)}

    @routes.get("/requirements", responses={422: ERRORS[422]})
    def requirements(policy: bodies.Identifier, place_of_service: str = Query(..., pattern=r"^[0-9]{2}$"),
                     date_of_service: date = Query(...), observation: bool = False, who: Principal = Depends(guard.principal)) -> dict:
        if policy not in POLICY_IDS:
            raise InvalidInput(FieldError("policy", f"unknown policy {policy!r}; known: {', '.join(POLICY_IDS)}"))
        return requirement(policy, place_of_service, date_of_service, observation=observation, today=app.clock.now().date())

    return routes
