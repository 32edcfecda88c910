"""The deck rules corrected in issue 9, through HTTP, on SQLite and PostgreSQL: what a portal
user and an auditor see. Every refusal is checked to have recorded nothing."""

from __future__ import annotations

import pytest

from infra.demo.samples import later, request
from tests.e2e.http_support import make_api
from tests.e2e.test_http_lifecycle import ok, problem


@pytest.fixture
def api(system):
    return make_api(system)


def position(api) -> int:
    return ok(api.client.get("/healthz"))["position"]


def test_urgent_portal_request_without_an_upload_is_processed_as_standard_and_says_so(api):
    body = request("healthspring-ma/radiation-oncology", date_of_service=later(api.system.clock.now(), 5),
                   urgent=True, documents=[])
    view = ok(api.post("/cases", body), 201)
    assert view["urgent"] is False and "processed as standard" in view["urgent_note"]
    by_phone = ok(api.post("/cases", {**body, "channel": "phone"}), 201)
    assert by_phone["urgent"] is True


def test_an_auditor_sees_the_rules_as_the_actor_of_an_approval_by_rules(api):
    body = request("cigna-commercial/medical-oncology", date_of_service=later(api.system.clock.now(), 5),
                   clinical={"nccn_preferred_regimen": True}, documents=[])
    view = ok(api.post("/cases", body), 201)
    assert view["status"] == "approved"
    events = ok(api.get(f"/cases/{view['case_id']}/history", who="auditor"))["events"]
    approved = next(e for e in events if e["type"] == "CaseAutoApproved")
    assert approved["actor"]["kind"] == "system" and approved["actor"]["policy"] == "cigna-commercial/medical-oncology"


def test_the_clinical_answer_that_approves_by_rules_is_documented(api):
    schema = ok(api.client.get("/openapi.json"))["components"]["schemas"]["SubmitCase"]
    assert "nccn_preferred_regimen" in schema["properties"]["clinical"]["description"]
    assert any(e["clinical"].get("nccn_preferred_regimen") for e in schema["examples"])


@pytest.mark.parametrize("field, change", [
    ("service.date_of_service", lambda b: b["service"].update(date_of_service="9999-12-31")),
    ("submitted_at", lambda b: b.update(submitted_at="0001-01-01T00:00:00Z")),
    ("member.dob", lambda b: b["member"].update(dob="1800-01-01")),
])
def test_a_date_out_of_range_is_a_422_naming_the_field(api, field, change):
    body = request("cigna-commercial/dme", date_of_service=later(api.system.clock.now(), 5), documents=[])
    change(body)
    before = position(api)
    errors = problem(api.post("/cases", body), 422)["errors"]
    assert [e["field"] for e in errors] == [field]
    assert position(api) == before


def test_an_approval_valid_from_year_one_is_a_422_and_the_case_can_still_be_approved(api):
    body = request("cigna-commercial/dme", date_of_service=later(api.system.clock.now(), 5), documents=[])
    case_id = ok(api.post("/cases", body), 201)["case_id"]
    before = position(api)
    errors = problem(api.post(f"/cases/{case_id}/determination", {"outcome": "approved", "valid_from": "0001-01-01"},
                              who="md"), 422)["errors"]
    assert [e["field"] for e in errors] == ["valid_from"]
    assert position(api) == before
    view = ok(api.post(f"/cases/{case_id}/determination", {"outcome": "approved", "valid_to": "2026-06-01T02:00:00Z"},
                       who="md"))
    assert view["valid_to_date"] == "2026-05-31"
