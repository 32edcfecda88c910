"""The HTTP contract as clients and their tools read it: the docs pages work offline, the OpenAPI
document is valid and typed, and what the app answers is what the document says."""

from __future__ import annotations

import re

import pytest

from infra.bootstrap import bootstrap
from infra.settings import Settings
from tests.conftest import START
from tests.e2e.http_support import make_api


@pytest.fixture
def api(tmp_path):
    from infra.clock import ManualClock

    system = bootstrap(Settings(data_dir=tmp_path, clock="manual"), clock=ManualClock(START))
    yield make_api(system)
    system.close()


# ---- item 1: the docs pages from assets the app serves ------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_reference_only_assets_the_app_serves(api, page):
    r = api.client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", r.text, re.I), "a CDN or other remote URL"
    urls = set(re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text))
    urls |= set(re.findall(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""", r.text))
    assert "/openapi.json" in urls and len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/"), url
        got = api.client.get(url)
        assert got.status_code == 200 and len(got.content) > 0, (url, got.status_code)


# ---- item 2: typed contracts --------------------------------------------------------------------------


PROBLEM_REF = "#/components/schemas/ProblemBody"


def test_the_openapi_document_is_valid_and_every_operation_is_typed(api):
    from openapi_spec_validator import validate

    doc = api.client.get("/openapi.json").json()
    validate(doc)
    ids = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            ids.append(op["operationId"])
            assert op.get("tags") and len(op["tags"]) == 1, where
            assert op.get("description") or op.get("summary"), where
            assert not re.search(r"_(get|post|delete)$", op["operationId"]), (where, op["operationId"])
            for status, response in op["responses"].items():
                content = response.get("content", {})
                if status[0] in "45":
                    assert list(content)[0] == "application/problem+json" and set(content) <= {"application/problem+json", "text/html"}, (where, status)  # noqa: E501 - a page for a person may sit beside the problem
                    assert content["application/problem+json"]["schema"] == {"$ref": PROBLEM_REF}
                elif status[0] == "2" and status != "204":  # 204: no content by definition
                    assert content, (where, status)
                    for media, body in content.items():
                        untyped = ({}, {"type": "object"}, {"additionalProperties": True})
                        assert body["schema"] not in untyped, (where, media)
            json_body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if json_body is not None:  # every write shows a body
                ref = json_body["schema"].get("$ref", "").rpartition("/")[2]
                assert json_body.get("examples") or doc["components"]["schemas"].get(ref, {}).get("examples"), where
    assert len(ids) == len(set(ids)), "operation ids are unique"
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_the_contract_names_its_vocabularies_formats_and_bounds(api):
    doc = api.client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    view = schemas["CaseView"]["properties"]
    assert "partially_approved" in view["status"]["enum"]
    assert {"type": "string", "format": "date-time"}.items() <= view["decision_due_at"]["anyOf"][0].items()
    assert view["valid_to_date"]["anyOf"][0]["format"] == "date"
    fractions = schemas["Determination"]["properties"]["fractions"]["anyOf"][0]
    assert fractions["minimum"] == 1
    assert schemas["ExtendTimeframe"]["properties"]["days"]["minimum"] == 1
    params = {p["name"]: p["schema"] for p in doc["paths"]["/worklist"]["get"]["parameters"]}
    assert "-submitted" in params["sort"]["enum"] and "Partially Approved" in params["status"]["enum"]
    metrics = {p["name"]: p["schema"] for p in doc["paths"]["/metrics/prior-authorization"]["get"]["parameters"]}
    assert metrics["partial_counts_as"]["enum"] == ["approved", "denied"]


def test_an_unknown_query_parameter_is_refused_naming_it(api):
    r = api.get("/worklist", stauts="approved")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == ["stauts"] and "status" in errors[0]["message"]
    assert api.get("/worklist", status="approved").status_code == 200
    r = api.client.get("/healthz", params={"verbose": "1"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "verbose"


def test_out_of_bounds_numbers_are_refused_by_the_contract(api):
    from infra.demo.samples import later, request

    r = api.post("/cases", request("cigna-commercial/dme", date_of_service=later(START, 14),
                                   documents=[api.upload()]))
    assert r.status_code == 201, r.text
    case = r.json()["case_id"]
    extension = {"reason": "matters_beyond_reviewer_control", "days": 0}
    r = api.post(f"/cases/{case}/extension-of-timeframe", extension, who="md")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "days"
    r = api.post(f"/cases/{case}/determination", {"outcome": "approved", "fractions": -1000}, who="md")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "fractions"


def test_an_answer_off_its_documented_schema_fails_the_suite(api):
    from tests.e2e.http_support import DocumentedAnswers

    doc = api.client.get("/openapi.json").json()
    doc["components"]["schemas"]["Health"]["properties"]["position"]["type"] = "string"
    api.client.event_hooks = {"request": [], "response": [DocumentedAnswers(doc)]}
    with pytest.raises(AssertionError, match="not as documented"):
        api.client.get("/healthz")


def test_every_command_example_is_a_valid_body():
    from application.commands import CASE_COMMANDS

    for command in CASE_COMMANDS:
        if command.body is not None:
            assert command.example, command.action
            command.body.model_validate(command.example)
