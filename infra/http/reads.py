"""The read models as providers, reviewers and auditors search them: the worklist (and whom it is
shared with), the certification summary, the authorization lookup, and whether PA applies. Every
answer that shows member data is recorded (one read per request, naming every case it showed);
ops may not search them (infra.authorization.MEMBER_DATA_READERS)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import ConfigDict, Field

from application import bodies
from domain.intake import requirement
from domain.vocabulary import STATUSES
from infra.authorization import MEMBER_DATA_READERS
from infra.http.guard import Guard
from infra.http.models import Authorizations, CertificationPage, Policy, Requirement, Shares, WorklistPage
from infra.http.openapi import answers
from infra.http.problems import ERRORS, Problem
from infra.identity import Principal
from projections.certification import certification_page
from projections.facts import BUCKETS
from projections.lookup import authorizations_found
from projections.worklist import WORKLIST_SORTS, worklist_page

# the status filter: a bucket, in any case, with _ or - for spaces (projections.worklist.bucket_named)
STATUS_FILTER = ["All", *BUCKETS, "all", *(b.lower().replace(" ", "_") for b in BUCKETS)]
WorklistSort = Literal[tuple(f"{sign}{key}" for key in WORKLIST_SORTS for sign in ("", "-"))]


class ShareWorklist(bodies.Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "front-desk-2", "email": "front.desk@doe-clinic.example"}]})
    user_id: bodies.Identifier = Field(min_length=1)
    email: bodies.Email


def router(guard: Guard) -> APIRouter:
    routes = APIRouter(tags=["worklist and lookups"])
    app, system = guard.app, guard.system

    @routes.get("/worklist", response_model=None, responses=answers(WorklistPage, "A page of the worklist"))
    def get_worklist(status: bodies.Code | None = Query(default=None, json_schema_extra={"enum": STATUS_FILTER},
                                                          description="a status bucket, or All (any case; _ or - for "
                                                          "spaces)"),
                     q: bodies.Name | None = Query(default=None, description=(
                         "case number, authorization number, member id or provider NPI; or the start of a member's or "
                         "the provider's name, a member's full name")),
                     sort: WorklistSort = Query(default="-submitted", description="a column; - for descending"),
                     page: int = Query(default=1, ge=1, le=100000),
                     page_size: int = Query(default=25, ge=1, le=200),
                     who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        """The worklist: one row per submitted case, newest first by default. A provider sees the rows of its NPIs
        and of worklists shared with it. Each request is recorded for the audit report, with the cases shown.
        Roles: provider, reviewer, auditor."""
        found = worklist_page(system.db, npis=system.access.visible_npis(who), status=status, q=q, sort=sort, page=page,
                              page_size=page_size)
        guard.read(who, "worklist", [row["case_id"] for row in found["items"]],
                   {"status": status, "q": q, "sort": sort, "page": page, "page_size": page_size})
        return found

    @routes.post("/worklist/access", status_code=201, response_model=None,
                 responses=answers(Shares, "Whom the worklist is shared with now", 201))
    def share_worklist(body: ShareWorklist, who: Principal = Depends(guard.role("provider"))) -> dict:
        """Share the provider's worklist (and its cases) with another user. Role: provider."""
        system.access.share(who, body.user_id, body.email, guard.now_iso())
        return {"items": system.access.shares(who)}

    @routes.delete("/worklist/access/{user_id}", response_model=None,
                   responses={**answers(Shares, "Whom the worklist is still shared with"), 404: ERRORS[404]})
    def revoke_worklist(user_id: bodies.Identifier, who: Principal = Depends(guard.role("provider"))) -> dict:
        """Stop sharing the worklist with a user. Role: provider."""
        if not system.access.revoke(who, user_id):
            raise Problem(404, "not-shared", "Not shared", f"the worklist is not shared with {user_id}")
        return {"items": system.access.shares(who)}

    @routes.get("/worklist/access", response_model=None, responses=answers(Shares, "Whom the worklist is shared with"))
    def list_worklist_access(who: Principal = Depends(guard.role("provider"))) -> dict:
        """Whom the provider's worklist is shared with. Role: provider."""
        items = system.access.shares(who)
        return {"items": items, "total": len(items)}

    @routes.get("/certification-summary", response_model=None,
                responses=answers(CertificationPage, "A page of the certification summary"))
    def get_certification_summary(authorization_number: bodies.Code | None = None,
                              case_number: bodies.Code | None = None,
                              member_last_name: bodies.PersonName | None = None, npi: bodies.Code | None = None,
                              status: Literal[STATUSES] | None = None, page: int = Query(default=1, ge=1, le=100000),
                              page_size: int = Query(default=50, ge=1, le=200),
                              who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        """One line per case for plan portals and letters, newest first, filtered by any of the parameters. Each
        request is recorded for the audit report, with the cases shown. Roles: provider (its own cases), reviewer,
        auditor."""
        asked = {"authorization_number": authorization_number, "case_number": case_number,
                 "member_last_name": member_last_name, "npi": npi, "status": status, "page": page, "page_size": page_size}
        found = certification_page(system.db, npis=system.access.visible_npis(who), **asked)
        guard.read(who, "certification-summary", [row["case_id"] for row in found["items"]], asked)
        return found

    @routes.get("/authorizations/lookup", response_model=None,
                responses={**answers(Authorizations, "The authorizations found (at most 50)"), 422: ERRORS[422]})
    def lookup_authorizations(authorization_number: bodies.Code | None = None, npi: bodies.Code | None = None,
               member_id: bodies.Identifier | None = None, dob: bodies.Code | None = None, last_name: bodies.PersonName | None = None,
               who: Principal = Depends(guard.role(*MEMBER_DATA_READERS))) -> dict:
        """Find authorizations by authorization number and NPI (ordering or rendering), or by member id, date of
        birth and last name; each read is recorded for the audit report. Roles: provider, reviewer, auditor."""
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

    @routes.get("/requirements", response_model=None,
                responses={**answers(Requirement, "Whether prior authorization applies, and why not"),
                           422: ERRORS[422]})
    def check_requirements(policy: Policy, place_of_service: str = Query(..., pattern=r"^[0-9]{2}$"),
                           date_of_service: date = Query(...), observation: bool = False,
                           who: Principal = Depends(guard.principal)) -> dict:
        """Whether a service needs prior authorization under a policy, and why not. Any role."""
        return requirement(policy, place_of_service, date_of_service, observation=observation, today=app.clock.now().date())

    return routes
