"""Every lifecycle path of POLICIES.md through HTTP, on each policy, on SQLite and PostgreSQL.

The paths a program offers come from its policy row, so the same test walks each program."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.policy import policy_in_force
from domain.vocabulary import MEDICARE_LINES
from infra.demo.samples import PROGRAMS, later, request
from tests.conftest import START
from tests.e2e.http_support import make_api
from tests.support import ALL_POLICIES


@pytest.fixture
def api(system):
    return make_api(system)


def submit(api, policy: str, *, days: int = 14, urgent: bool = False, line: str | None = None, **kw) -> dict:
    doc = api.upload(content=f"%PDF-1.4 notes {policy} {days} {kw}".encode())
    body = request(policy, date_of_service=later(api.system.clock.now(), days), documents=[doc], urgent=urgent, line_of_business=line, **kw)
    r = api.post("/cases", body)
    assert r.status_code == 201, r.text
    return r.json()


def approve_body(row, now) -> dict:
    body: dict = {"outcome": "approved"}
    if row.approval_requires:
        body.update(technique="IMRT", fractions=20, igrt=True)
    if row.validity.kind == "stated":
        body["valid_to"] = later(now, 60).isoformat()
    return body


def deny_body() -> dict:
    return {"outcome": "denied", "rationale": "criteria not met", "guidelines": ["guideline 4.2"]}


def ok(r, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def problem(r, status: int, rule: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    if rule:
        assert body["type"].endswith("/" + rule), body
    return body


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_every_lifecycle_path_through_http(api, policy):
    clock = api.system.clock
    row = policy_in_force(policy, START.date())
    line = PROGRAMS[policy]["line_of_business"]
    medicare = line in MEDICARE_LINES

    # hold -> information (P2P where offered, else upload) -> approval -> administrative update -> clinical update
    case = submit(api, policy)
    cid = case["case_id"]
    held = ok(api.post(f"/cases/{cid}/holds", {"requested_items": ["clinical notes"]}, who="md"))
    assert held["status"] == "held" and held["hold_due_at"]
    if row.pre_decision_p2p:
        slot = (clock.now() + timedelta(hours=4)).isoformat()
        view = ok(api.post(f"/cases/{cid}/p2p", {"level": "pre_decision", "slot": slot, "reviewer": "Dr. Okafor",
                                                   "contact": {"name": "Office", "phone": "555-0100"}}))
        p2p = view["p2ps"][0]["p2p_id"]
        ok(api.post(f"/cases/{cid}/p2p/{p2p}/reschedule", {"slot": (clock.now() + timedelta(hours=5)).isoformat()}))
        ok(api.post("/admin/clock", {"advance": "PT5H"}, who="admin"))
        assert ok(api.post(f"/cases/{cid}/p2p/{p2p}/complete", {"outcome": "plan discussed"}, who="md"))["status"] == "pending"
    else:
        doc = api.upload(content=b"%PDF-1.4 more notes " + cid.encode())
        assert ok(api.post(f"/cases/{cid}/clinical", {"documents": [doc], "notes": "attached"}))["status"] == "pending"
    approved = ok(api.post(f"/cases/{cid}/determination", approve_body(row, clock.now()), who="md"))
    assert approved["status"] == "approved" and approved["authorization_number"]
    ok(api.post(f"/cases/{cid}/authorization/updates", {"kind": "contact", "changes": {"phone": "555-0199"}}))
    clinical_kind = sorted(row.clinical_update_kinds)[0]
    successor = ok(api.post(f"/cases/{cid}/authorization/updates", {"kind": clinical_kind, "changes": {clinical_kind: "changed"}}), 201)
    sid = successor["case_id"]
    assert successor["predecessor_case_id"] == cid
    ok(api.post(f"/cases/{sid}/determination", approve_body(row, clock.now()), who="md"))
    assert ok(api.get(f"/cases/{cid}"))["status"] == "withdrawn"
    if row.authorization_extensions:
        assert ok(api.post(f"/cases/{sid}/authorization/extension", {"valid_to": later(clock.now(), 300).isoformat()}))["valid_to_date"]

    # denial (with the Medicare notice where required) -> reconsideration where offered -> appeal
    denied_case = submit(api, policy, days=20)["case_id"]
    if medicare:
        problem(api.post(f"/cases/{denied_case}/determination", deny_body(), who="md"), 409, "pre-denial-notice-required")
        ok(api.post(f"/cases/{denied_case}/pre-denial-notice", {"channel": "phone_and_writing"}, who="md"))
    problem(api.post(f"/cases/{denied_case}/determination", deny_body(), who="rn"), 403, "physician-required")
    denied = ok(api.post(f"/cases/{denied_case}/determination", deny_body(), who="md"))
    assert denied["status"] == "denied" and "appeal" in denied["post_decision_options"]
    if row.reconsideration_allowed_for(line):
        assert denied["p2p_eligibility"]["level"] == "reconsideration"
        ok(api.post(f"/cases/{denied_case}/reconsideration", {"reason": "new information"}))
        assert ok(api.post(f"/cases/{denied_case}/reconsideration/decision", deny_body(), who="md"))["status"] == "denied"
    else:
        problem(api.post(f"/cases/{denied_case}/reconsideration", {"reason": "new information"}), 409)
        assert denied["p2p_eligibility"]["level"] == "consultative_only"
    overturn = {"outcome": "overturned"} | ({"valid_to": later(clock.now(), 60).isoformat()} if row.validity.kind == "stated" else {})
    ok(api.post(f"/cases/{denied_case}/appeals", {"reason": "member needs the service"}))
    assert ok(api.post(f"/cases/{denied_case}/appeals/1/decision", overturn, who="md"))["status"] == "approved"

    # extension of the decision clock, cancellation, and the appeal window closing on the clock
    other = submit(api, policy, days=30)["case_id"]
    reason = sorted(row.timeframe_extensions[line].reasons)[0]
    ok(api.post(f"/cases/{other}/extension-of-timeframe", {"reason": reason, "days": 3}, who="md"))
    problem(api.post(f"/cases/{other}/extension-of-timeframe", {"reason": reason, "days": 3}, who="md"), 409, "extension-once")
    assert ok(api.post(f"/cases/{other}/cancel", {"reason": "duplicate"}))["status"] == "cancelled"
    late = submit(api, policy, days=40)["case_id"]
    if medicare:
        ok(api.post(f"/cases/{late}/pre-denial-notice", {"channel": "phone_and_writing"}, who="md"))
    deadline = ok(api.post(f"/cases/{late}/determination", deny_body(), who="md"))["appeal_deadline"]
    ok(api.post("/admin/clock", {"to": deadline}, who="admin"))
    problem(api.post(f"/cases/{late}/appeals", {"reason": "too late?"}), 409, "appeal-window-closed")

    # urgent, alternative recommendation, expiry
    urgent = submit(api, policy, urgent=True)
    assert urgent["urgent"] is True
    if row.alternative_acceptance_business_days:
        alt = submit(api, policy)["case_id"]
        ok(api.post(f"/cases/{alt}/determination", {**deny_body(), "outcome": "alternative_recommended"}, who="md"))
        assert ok(api.post(f"/cases/{alt}/alternative/accept"))["status"] == "approved"
    expiring = submit(api, policy)["case_id"]
    valid_to = ok(api.post(f"/cases/{expiring}/determination", approve_body(row, clock.now()), who="md"))["valid_to"]
    ok(api.post("/admin/clock", {"to": valid_to}, who="admin"))
    assert ok(api.get(f"/cases/{expiring}"))["status"] == "expired"

    history = ok(api.get(f"/cases/{denied_case}/history", who="auditor"))
    assert history["events"][0]["type"] == "CaseSubmitted"
    assert api.system.app.verify().events == api.system.app.max_position()


def test_idempotent_retry_version_conflict_and_roles(api):
    doc = api.upload()
    body = request("cigna-commercial/dme", date_of_service=later(api.system.clock.now(), 5), documents=[doc])
    first = ok(api.post("/cases", body, **{"Idempotency-Key": "retry-1"}), 201)
    again = ok(api.post("/cases", body, **{"Idempotency-Key": "retry-1"}), 201)
    assert again == first
    problem(api.post("/cases", {**body, "urgent": True}, **{"Idempotency-Key": "retry-1"}), 409, "idempotency-key-reused")
    cid = first["case_id"]
    problem(api.post(f"/cases/{cid}/holds", {"requested_items": ["x"]}, who="md", **{"If-Match": "7"}), 409, "version-conflict")
    assert ok(api.post(f"/cases/{cid}/holds", {"requested_items": ["x"]}, who="md", **{"If-Match": str(first["version"])}))["status"] == "held"
    problem(api.get(f"/cases/{cid}", who="other_provider"), 404)
    problem(api.post(f"/cases/{cid}/clinical", {"notes": "hi"}, who="other_provider"), 404)
    problem(api.post(f"/cases/{cid}/cancel", {"reason": "x"}, who="auditor"), 403, "forbidden")
    problem(api.post("/cases", body, who="auditor"), 403)
    other_npi = request("cigna-commercial/dme", date_of_service=later(api.system.clock.now(), 5), documents=[doc], provider_npi="1987654320")
    problem(api.post("/cases", other_npi), 403)
    problem(api.client.get(f"/cases/{cid}"), 401)
    problem(api.client.get(f"/cases/{cid}", headers={"Authorization": "Bearer not-a-token"}), 401, "invalid-token")
    assert ok(api.get(f"/cases/{cid}", who="auditor"))["case_id"] == cid
    reads = api.system.access.reads(cid)
    assert [(r["who"]["kind"], r["what"]) for r in reads] == [("auditor", "case")]


def test_bad_input_is_problem_json_and_records_nothing(api):
    before = api.system.app.max_position()
    problem(api.post("/cases", {"policy": "cigna-commercial/dme"}), 422, "invalid-input")
    r = api.client.post("/cases", content=b'{"policy":', headers={**api.as_("provider"), "content-type": "application/json"})
    problem(r, 400, "malformed-json")
    body = request("cigna-commercial/dme", date_of_service=later(api.system.clock.now(), 5), documents=[])
    body["service"]["diagnoses"] = ["M5.451"]
    err = problem(api.post("/cases", body), 422)
    assert err["errors"][0]["field"] == "service.diagnoses[0]"
    body = request("cigna-commercial/dme", date_of_service=later(api.system.clock.now(), 5), documents=[{"name": "x.pdf", "size": 10, "sha256": "a" * 64}])
    problem(api.post("/cases", body), 422)
    big = api.client.post("/documents", files={"file": ("mri.pdf", b"0" * (25 * 1024 * 1024 + 1), "application/pdf")}, headers=api.as_("provider"))
    problem(big, 413, "document-too-large")
    problem(api.client.post("/documents", files={"file": ("x.exe", b"MZ", "application/octet-stream")}, headers=api.as_("provider")), 422)
    assert api.system.app.max_position() == before


def test_worklist_search_sort_paging_and_sharing(api):
    ids = [submit(api, "cigna-commercial/dme", days=5 + i, member_no=100 + i)["case_id"] for i in range(5)]
    ok(api.post(f"/cases/{ids[0]}/determination", {"outcome": "approved"}, who="md"))
    page = ok(api.get("/worklist", page_size=2, sort="submitted"))
    assert page["total"] == 5 and len(page["items"]) == 2
    assert ok(api.get("/worklist", status="Approved"))["total"] == 1
    hit = ok(api.get("/worklist", q="rivera102"))
    assert [i["case_id"] for i in hit["items"]] == [ids[2]]
    number = ok(api.get(f"/cases/{ids[3]}"))["case_number"]
    assert ok(api.get("/worklist", q=number))["items"][0]["case_id"] == ids[3]
    assert ok(api.get("/worklist", who="other_provider"))["total"] == 0
    ok(api.post("/worklist/access", {"user_id": "dr-roe", "email": "roe@example.org"}), 201)
    assert ok(api.get("/worklist", who="other_provider"))["total"] == 5
    assert ok(api.get("/worklist/access"))["items"][0]["user_id"] == "dr-roe"
    ok(api.client.delete("/worklist/access/dr-roe", headers=api.as_("provider")))
    assert ok(api.get("/worklist", who="other_provider"))["total"] == 0
    problem(api.get("/worklist", sort="shoe-size"), 422)


def test_certification_summary_lookup_queue_metrics_requirements_dashboard(api):
    clock = api.system.clock
    urgent = submit(api, "cigna-commercial/medical-oncology", urgent=True, member_no=2)["case_id"]
    standard = submit(api, "cigna-commercial/medical-oncology")
    approved = ok(api.post(f"/cases/{standard['case_id']}/determination", {"outcome": "approved"}, who="md"))
    summary = ok(api.get("/certification-summary", authorization_number=approved["authorization_number"]))
    assert summary["items"][0]["correspondence_count"] == 3 and summary["items"][0]["expiration_date"] == approved["valid_to"]
    by_number = ok(api.get("/authorizations/lookup", authorization_number=approved["authorization_number"], npi=approved["ordering_provider"]["npi"]))
    assert by_number["items"][0]["status"] == "approved" and by_number["items"][0]["post_decision_options"] == ["authorization_update"]
    member = approved["member"]
    by_member = ok(api.get("/authorizations/lookup", member_id=member["id"], dob=member["dob"], last_name=member["last_name"]))
    assert by_member["total"] == 1
    problem(api.get("/authorizations/lookup", member_id=member["id"]), 422)
    queue = ok(api.get("/queues/review", who="ops"))
    assert [i["case_id"] for i in queue["items"]] == [urgent]
    ok(api.post("/admin/clock", {"advance": "PT60H"}, who="admin"))
    assert ok(api.get("/queues/review", who="ops"))["items"][0]["at_risk"] is True
    ok(api.post("/admin/clock", {"advance": "PT13H"}, who="admin"))
    assert ok(api.get("/queues/review", who="ops"))["items"][0]["overdue"] is True
    figures = ok(api.get("/metrics/prior-authorization", who="ops"))
    assert figures["standard"]["approved"] == {"numerator": 1, "denominator": 1, "percent": 100.0}
    assert figures["expedited"]["decided"] == 0
    req = ok(api.get("/requirements", policy="cigna-commercial/dme", place_of_service="31", date_of_service=later(clock.now(), 3).isoformat()))
    assert req["required"] is False and "skilled nursing" in req["reason"]
    assert ok(api.get("/requirements", policy="cigna-commercial/dme", place_of_service="12", date_of_service=later(clock.now(), 3).isoformat()))["required"]
    page = api.client.get("/dashboard", headers=api.as_("ops"))
    assert page.status_code == 200 and "Review queue" in page.text
    problem(api.get("/dashboard", who="provider"), 403)
    problem(api.client.get("/dashboard", params={"token": api.tokens["ops"]}), 401)  # no token in a URL: POST /session
    problem(api.client.get("/dashboard"), 401)


def test_the_clock_endpoint_exists_only_with_the_manual_clock(tmp_path):
    from infra.bootstrap import bootstrap
    from infra.clock import SystemClock
    from infra.settings import Settings

    system = bootstrap(Settings(data_dir=tmp_path), clock=SystemClock())
    try:
        api = make_api(system)
        problem(api.post("/admin/clock", {"advance": "PT1H"}, who="admin"), 404)
    finally:
        system.close()


def test_only_admin_moves_the_clock_and_bad_durations_are_422(api):
    problem(api.post("/admin/clock", {"advance": "PT1H"}, who="ops"), 403)
    problem(api.post("/admin/clock", {"advance": "soon"}, who="admin"), 422)
    problem(api.post("/admin/clock", {"advance": "PT1H", "to": "2027-01-01T00:00:00Z"}, who="admin"), 422)
    problem(api.post("/admin/clock", {"to": "2020-01-01T00:00:00Z"}, who="admin"), 422)
    assert ok(api.post("/admin/clock", {"advance": "P1D"}, who="admin"))["now"] == "2026-03-11T14:00:00+00:00"
