"""No input stops the system (issue 10): text, free-form objects and the test clock are bounded
at the boundary, HTTP and CLI alike. Each refusal is a 422 problem naming the field, records
nothing, and leaves the system answering, on SQLite and on PostgreSQL (which cannot hold a NUL)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.bootstrap import bootstrap, make_clock
from infra.demo.samples import later, request
from infra.settings import SettingError, Settings
from tests.e2e.http_support import make_api
from tests.support import DME, MEDONC, recorded

NAME_FIELDS = [("member", "first_name"), ("member", "last_name"), ("member", "id"), ("ordering_provider", "name"),
               ("ordering_provider", "phone"), ("site", "name"), ("site", "npi")]
CONTROLS = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]
BIDI = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
NOT_IN_NAMES = CONTROLS + BIDI + ["\u2028", "\u2029"]


@pytest.fixture
def api(system):
    return make_api(system)


def case_request(api, policy: str = DME, **kw) -> dict:
    return request(policy, date_of_service=later(api.system.clock.now(), 10), documents=[], **kw)


def answered(r, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def refused_naming(api, send: Callable[[], object], field: str) -> dict:
    """A 422 problem whose errors name ``field``; the store holds what it held before."""
    before = recorded(api.system)
    r = send()
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("/invalid-input") and body["status"] == 422
    assert field in [e["field"] for e in body["errors"]], body
    assert recorded(api.system) == before, "a refused request recorded something"
    return body


def nested(depth: int, leaf: object = "x") -> dict:
    value: object = leaf
    for _ in range(depth - 1):
        value = {"k": value}
    return {"k": value}


DEEP = nested(300)
DEEP_AT = "k" + ".k" * 15  # where the 17th object begins: the first past the bound of 16

# (what is changed in a POST /cases body, the field the refusal names)
SUBMISSIONS: list[tuple[Callable[[dict], None], str]] = [
    (lambda b: b["member"].update(last_name="Ada\u0000x"), "member.last_name"),
    (lambda b: b["member"].update(first_name="Ada\nLovelace"), "member.first_name"),
    (lambda b: b["member"].update(last_name="Ada\u202etxt.exe"), "member.last_name"),
    (lambda b: b["member"].update(id="M\u2066001"), "member.id"),
    (lambda b: b["member"].update(last_name="x" * 101), "member.last_name"),
    (lambda b: b["member"].update(dob="1958-04-02\u0000"), "member.dob"),
    (lambda b: b["ordering_provider"].update(name="Dr.\rDoe"), "ordering_provider.name"),
    (lambda b: b["ordering_provider"].update(phone="555\u00000100"), "ordering_provider.phone"),
    (lambda b: b["site"].update(name="Home\tCare"), "site.name"),
    (lambda b: b["service"]["procedures"][0].update(code="E0601\u0000"), "service.procedures[0].code"),
    (lambda b: b["service"]["procedures"][0].update(modifiers=["R\u001bT"]), "service.procedures[0].modifiers[0]"),
    (lambda b: b["service"].update(diagnoses=["G47.33\u0085"]), "service.diagnoses[0]"),
    (lambda b: b.update(policy="cigna-commercial/dme\u0000"), "policy"),
    (lambda b: b.update(policy="p" * 101), "policy"),
    (lambda b: b.update(clinical={"ahi": "22\u0000"}), "clinical.ahi"),
    (lambda b: b.update(clinical={"history": ["ok", {"note": "bell\u0007"}]}), "clinical.history[1].note"),
    (lambda b: b.update(clinical={"a\u0000b": 1}), "clinical"),
    (lambda b: b.update(clinical={"a\nb": 1}), "clinical"),
    (lambda b: b.update(clinical={"k" * 101: 1}), "clinical"),
    (lambda b: b.update(clinical=DEEP), "clinical." + DEEP_AT),
    (lambda b: b.update(clinical={f"q{i}": i for i in range(201)}), "clinical"),
    (lambda b: b.update(clinical={"answers": list(range(501))}), "clinical.answers"),
    (lambda b: b.update(clinical={"text": "x" * 10_001}), "clinical.text"),
    (lambda b: b.update(clinical={"big": 2**64}), "clinical.big"),
    (lambda b: b.update(documents=[{"name": "notes\u0000.pdf", "size": 10, "sha256": "a" * 64}]), "documents[0].name"),
]


@pytest.mark.parametrize("change, field", SUBMISSIONS, ids=[f for _, f in SUBMISSIONS])
def test_a_submission_with_bad_text_or_a_bad_free_form_object_is_refused_naming_the_field(api, change, field):
    body = case_request(api)
    change(body)
    refused_naming(api, lambda: api.post("/cases", body), field)
    answered(api.post("/cases", case_request(api)), 201)  # and the system goes on
    api.system.catch_up()


def held_case(api) -> str:
    return answered(api.post("/cases", case_request(api)), 201)["case_id"]


# (the path under /cases/{id}, who sends it, the body, the field the refusal names)
COMMANDS: list[tuple[str, str, dict, str]] = [
    ("holds", "md", {"requested_items": ["sleep\u0000study"]}, "requested_items[0]"),
    ("holds", "md", {"requested_items": ["sleep study"], "due_at": "2026-03-11T00:00:00Z\u0000"}, "due_at"),
    ("clinical", "provider", {"notes": "attached\u0000"}, "notes"),
    ("clinical", "provider", {"notes": "vertical\u000btab"}, "notes"),
    ("clinical", "provider", {"notes": "x" * 20_001}, "notes"),
    ("p2p", "provider", {"level": "pre_decision", "slot": "2026-03-11T14:00:00Z", "reviewer": "Dr. O\u202ekafor",
                         "contact": {"name": "Office", "phone": "555-0100"}}, "reviewer"),
    ("p2p", "provider", {"level": "pre_decision", "slot": "2026-03-11T14:00:00Z", "reviewer": "Dr. Okafor",
                         "contact": {"name": "Office", "phone": "555-0100", "instructions": "ask for\u0000Jo"}},
     "contact.instructions"),
    ("cancel", "provider", {"reason": "duplicate\u0000"}, "reason"),
    ("cancel", "provider", {"reason": "x" * 2_001}, "reason"),
    ("determination", "md", {"outcome": "denied", "rationale": "not met\u0000", "guidelines": ["4.2"]}, "rationale"),
    ("determination", "md", {"outcome": "denied", "rationale": "not met", "guidelines": ["4.2\n"]}, "guidelines[0]"),
    ("extension-of-timeframe", "md", {"reason": "matters_beyond_reviewer_control\u0000", "days": 3}, "reason"),
    ("authorization/updates", "provider", {"kind": "contact", "changes": {"phone": "555\u00000199"}}, "changes.phone"),
    ("authorization/updates", "provider", {"kind": "site", "changes": {"name": "New\nSite"}}, "changes.name"),
    ("authorization/updates", "provider", {"kind": "regimen", "changes": {"re\u0000gimen": "x"}}, "changes"),
    ("authorization/updates", "provider", {"kind": "regimen", "changes": DEEP}, "changes." + DEEP_AT),
]


@pytest.mark.parametrize("path, who, body, field", COMMANDS, ids=[f"{c[0]}:{c[3]}" for c in COMMANDS])
def test_a_command_with_bad_text_is_refused_naming_the_field(api, path, who, body, field):
    cid = held_case(api)
    refused_naming(api, lambda: api.post(f"/cases/{cid}/{path}", body, who=who), field)
    answered(api.post(f"/cases/{cid}/clinical", {"notes": "the system goes on"}))
    api.system.catch_up()


def test_the_write_headers_are_checked_after_the_caller_and_refused_naming_the_header(api):
    """Idempotency-Key and If-Match come with the caller's token in one dependency: a caller without a
    token is told so (401), one of another role is refused (403), before the headers are looked at; a
    header too long is then a 422 naming it beside the body's own errors, a bad If-Match a 400."""
    cid = held_case(api)
    long_key = {"Idempotency-Key": "k" * 201}
    before = recorded(api.system)
    assert api.client.post(f"/cases/{cid}/clinical", json={"notes": "x"}, headers=long_key).status_code == 401
    assert api.post(f"/cases/{cid}/determination", {"outcome": "approved"}, who="provider", **long_key).status_code == 403
    assert api.post("/cases", {}, who="md", **long_key).status_code == 403
    assert recorded(api.system) == before
    body = refused_naming(api, lambda: api.post(f"/cases/{cid}/clinical", {"notes": "x" * 20_001}, **long_key), "notes")
    assert "Idempotency-Key" in [e["field"] for e in body["errors"]], body
    refused_naming(api, lambda: api.post(f"/cases/{cid}/clinical", {"notes": "x"}, **{"If-Match": "1" * 41}), "If-Match")
    refused_naming(api, lambda: api.post("/cases", case_request(api), **long_key), "Idempotency-Key")
    bad = api.post(f"/cases/{cid}/clinical", {"notes": "x"}, **{"If-Match": "three"})
    assert bad.status_code == 400 and bad.json()["type"].endswith("/invalid-if-match"), bad.text
    assert recorded(api.system) == before
    version = answered(api.get(f"/cases/{cid}"))["version"]
    answered(api.post(f"/cases/{cid}/clinical", {"notes": "the system goes on"}, **{"If-Match": f'W/"{version}"'}))
    # a creation takes no If-Match (there is no version yet): not documented, and not read
    paths = api.client.app.openapi()["paths"]
    for path in ("/cases", "/drafts"):
        assert [p["name"] for p in paths[path]["post"]["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    answered(api.post("/cases", case_request(api), **{"If-Match": "three"}), 201)


@pytest.mark.parametrize("extra, field", [
    ({"member": {"last_name": "Ada\u0000"}}, "member.last_name"),
    ({"notes\u0000": "x"}, "body"),
    ({"clinical": nested(16)}, "clinical." + "k" + ".k" * 14),
    ({f"f{i}": i for i in range(201)}, "body"),
])
def test_draft_fields_are_a_bounded_free_form_object(api, extra, field):
    body = {"policy": DME, "line_of_business": "commercial", **copy.deepcopy(extra)}
    refused_naming(api, lambda: api.post("/drafts", body), field)
    assert answered(api.post("/drafts", {"policy": DME, "line_of_business": "commercial", "clinical": nested(15)}), 201)


def test_free_text_keeps_tab_cr_lf_and_right_to_left_text_on_both_stores(api):
    notes = "line one\r\nline two\tend \u05e9\u05dc\u05d5\u05dd \u202bembedded\u202c"
    body = case_request(api, clinical={"history": "first\nsecond", "\u05e9\u05d0\u05dc\u05d4": "\u05db\u05df"})
    cid = answered(api.post("/cases", body), 201)["case_id"]
    answered(api.post(f"/cases/{cid}/clinical", {"notes": notes}))
    api.system.catch_up()
    events = answered(api.get(f"/cases/{cid}/history", who="auditor"))["events"]
    assert events[0]["data"]["clinical"]["history"] == "first\nsecond"
    assert events[-1]["data"]["notes"] == notes


NAME_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=BIDI),
                    max_size=15)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(NAME_FIELDS), before=NAME_TEXT, bad=st.sampled_from(NOT_IN_NAMES), after=NAME_TEXT)
def test_any_control_line_break_or_bidi_character_in_a_name_is_refused(api, where, before, bad, after):
    body = case_request(api)
    part, key = where
    body[part][key] = before + bad + after
    refused_naming(api, lambda: api.post("/cases", body), f"{part}.{key}")


FREE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\r\n"),
                    min_size=1, max_size=80)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notes=FREE_TEXT)
def test_any_free_text_without_control_characters_is_kept_as_sent(api, notes):
    cid = api.system.app.submit(case_request(api, MEDONC), actor={"kind": "provider", "id": "h"}).view["case_id"]
    assert answered(api.post(f"/cases/{cid}/clinical", {"notes": notes}))["case_id"] == cid
    assert api.system.app.history(cid)["events"][-1]["data"]["notes"] == notes
    api.system.catch_up()


@pytest.mark.parametrize("path, params, field", [
    ("/worklist", {"q": "Rivera\u0000"}, "q"),
    ("/certification-summary", {"member_last_name": "Rivera\u0000"}, "member_last_name"),
    ("/authorizations/lookup", {"member_id": "M\u0000", "dob": "1958-04-02", "last_name": "Rivera"}, "member_id"),
])
def test_a_search_with_a_control_character_is_refused_not_a_server_error(api, path, params, field):
    refused_naming(api, lambda: api.get(path, **params), field)


def test_a_document_whose_file_name_a_request_could_not_carry_is_refused(api):
    def upload(name: str) -> Callable[[], object]:
        return lambda: api.client.post("/documents", files={"file": (name, b"%PDF-1.4", "application/pdf")},
                                       headers=api.as_("provider"))

    refused_naming(api, upload("notes\u202efdp.exe.pdf"), "file")
    refused_naming(api, upload("x" * 256 + ".pdf"), "file")


def test_a_worklist_share_with_bad_text_is_refused(api):
    def share(body: dict) -> Callable[[], object]:
        return lambda: api.post("/worklist/access", body)

    refused_naming(api, share({"user_id": "dr\u0000roe", "email": "roe@example.org"}), "user_id")
    refused_naming(api, share({"user_id": "dr-roe", "email": "roe\u0000@example.org"}), "email")


# ---- the test clock ----------------------------------------------------------------------------

@pytest.mark.parametrize("move, field", [
    ({"advance": "P3000000D"}, "advance"),
    ({"advance": "P2000D"}, "advance"),
    ({"to": "9999-12-31T00:00:00Z"}, "to"),
    ({"to": "9999-12-31T23:59:59-10:00"}, "to"),
    ({"to": "2100-01-01T00:00:00Z"}, "to"),
    ({"to": "2026-03-11T00:00:00"}, "to"),
    ({"advance": "PT1H\u0000"}, "advance"),
])
def test_the_test_clock_moves_within_bounds_and_nothing_after_a_refused_move_fails(api, move, field):
    now = api.system.clock.now()
    refused_naming(api, lambda: api.post("/admin/clock", move, who="admin"), field)
    assert api.system.clock.now() == now
    cid = answered(api.post("/cases", case_request(api)), 201)["case_id"]
    answered(api.post("/admin/clock", {"advance": "P1800D"}, who="admin"))  # the longest move, firing what fell due
    answered(api.post("/admin/clock", {"to": "2099-06-01T00:00:00Z"}, who="admin"))
    late = case_request(api)
    late["member"]["dob"] = (api.system.clock.now() - timedelta(days=40 * 365)).date().isoformat()
    later_case = answered(api.post("/cases", late), 201)["case_id"]
    answered(api.post(f"/cases/{later_case}/determination", {"outcome": "approved"}, who="md"))
    assert answered(api.get(f"/cases/{cid}"))["case_id"] == cid
    api.system.catch_up()


def test_the_manual_clock_cannot_start_past_the_bound(tmp_path):
    with pytest.raises(SettingError) as refused:
        make_clock(Settings(data_dir=tmp_path, clock="manual", clock_start="9999-12-31T00:00:00Z"))
    assert "CASELOG_CLOCK_START" in str(refused.value)
    latest_start = make_clock(Settings(data_dir=tmp_path, clock="manual", clock_start="2099-12-31T00:00:00Z"))
    assert latest_start.now().year == 2099



# ---- the CLI parses with the same models ---------------------------------------------------------

def test_the_cli_refuses_the_same_text_exit_2_naming_the_field(store, tmp_path):
    def caselog(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "CASELOG_DATA_DIR": str(store.data_dir), "COLUMNS": "200"}
        env.pop("CASELOG_DATABASE_URL", None)
        if store.database_url:
            env["CASELOG_DATABASE_URL"] = store.database_url
        return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=300)

    def state() -> tuple[int, int]:
        system = bootstrap(store)
        try:
            return recorded(system)
        finally:
            system.close()

    body = request(DME, date_of_service=later(datetime.now(timezone.utc), 10), documents=[])
    body["member"]["last_name"] = "Ada\u0000x"
    (tmp_path / "nul.json").write_text(json.dumps(body))
    (tmp_path / "deep.json").write_text(json.dumps({"kind": "regimen", "changes": DEEP}))
    before = state()
    out = caselog("submit", str(tmp_path / "nul.json"))
    assert out.returncode == 2 and "member.last_name" in out.stderr and "U+0000" in out.stderr, out.stderr
    out = caselog("act", "7d1c1b0e-0000-4000-8000-000000000000", "authorization-update", str(tmp_path / "deep.json"))
    assert out.returncode == 2 and "changes." + DEEP_AT in out.stderr, out.stderr
    out = caselog("act", "7d1c1b0e-0000-4000-8000-000000000000", "cancel", "-", "--key", "k\u0001",
                  stdin='{"reason": "x"}')
    assert out.returncode == 2 and "--key" in out.stderr, out.stderr
    assert state() == before
