"""Who may read and complete a draft, what the worklist finds and filters, and which documents
a provider may attach: through HTTP, on SQLite and PostgreSQL. Every refusal records nothing."""

from __future__ import annotations

import io
import zipfile

import pytest

from infra.identity import load_secret, mint
from infra.demo.samples import OTHER_PROVIDER_NPI, PROVIDER_NPI, later, request
from projections import worklist
from tests.e2e.http_support import make_api
from tests.support import DME, recorded

DRAFT = {"policy": DME, "line_of_business": "commercial"}


@pytest.fixture
def api(system):
    api = make_api(system)
    secret = load_secret(system.settings.data_dir)
    api.tokens["staff"] = mint(secret, role="provider", sub="office-kim")  # front-office staff: no NPI of its own
    return api


def ok(r, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def refused(api, call, status: int, rule: str | None = None) -> dict:
    """The call answers problem JSON with this status (and rule), and records nothing."""
    before = recorded(api.system)
    r = call()
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if rule:
        assert body["type"].endswith("/" + rule), body
    assert recorded(api.system) == before, "a refused command recorded something"
    return body


def body_for(api, *, npi: str = PROVIDER_NPI, documents: list | None = None, days: int = 5, **kw) -> dict:
    return request(DME, date_of_service=later(api.system.clock.now(), days), provider_npi=npi,
                   documents=documents if documents is not None else [], **kw)


def recorded_data(api, case_id: str, event_type: str) -> dict:
    return [e for e in ok(api.get(f"/cases/{case_id}/history"))["events"] if e["type"] == event_type][-1]["data"]


def share(api, owner: str, user_id: str) -> None:
    ok(api.post("/worklist/access", {"user_id": user_id, "email": f"{user_id}@example.org"}, who=owner), 201)


# ---- item 4: drafts ("finish later") -----------------------------------------------------------


def test_a_draft_belongs_to_the_provider_who_started_it(api):
    draft = ok(api.post("/drafts", DRAFT), 201)
    cid = draft["case_id"]
    assert draft["status"] == "draft" and draft["ordering_provider"] == {}
    assert ok(api.get(f"/cases/{cid}"))["status"] == "draft"
    assert [e["type"] for e in ok(api.get(f"/cases/{cid}/history"))["events"]] == ["DraftStarted"]
    for who in ("other_provider", "staff"):
        refused(api, lambda: api.get(f"/cases/{cid}", who=who), 404)
        refused(api, lambda: api.get(f"/cases/{cid}/history", who=who), 404)
        refused(api, lambda: api.post(f"/cases/{cid}/submit", body_for(api, npi=OTHER_PROVIDER_NPI), who=who), 404)
        refused(api, lambda: api.post(f"/cases/{cid}/cancel", {"reason": "not mine"}, who=who), 404)
    submitted = ok(api.post(f"/cases/{cid}/submit", body_for(api)))
    assert submitted["status"] == "pending" and submitted["ordering_provider"]["npi"] == PROVIDER_NPI
    assert ok(api.get(f"/cases/{cid}"))["status"] == "pending"  # now the ordering provider's case
    refused(api, lambda: api.get(f"/cases/{cid}", who="other_provider"), 404)


def test_a_draft_is_shared_with_the_users_its_starters_worklist_is_shared_with(api):
    share(api, "provider", "office-kim")
    cid = ok(api.post("/drafts", DRAFT), 201)["case_id"]
    assert ok(api.get(f"/cases/{cid}", who="staff"))["status"] == "draft"
    submitted = ok(api.post(f"/cases/{cid}/submit", body_for(api), who="staff"))  # staff completes it, starter's NPI
    assert submitted["status"] == "pending" and submitted["ordering_provider"]["npi"] == PROVIDER_NPI
    assert ok(api.get(f"/cases/{cid}"))["status"] == ok(api.get(f"/cases/{cid}", who="staff"))["status"] == "pending"
    later_draft = ok(api.post("/drafts", DRAFT), 201)["case_id"]
    ok(api.client.delete("/worklist/access/office-kim", headers=api.as_("provider")))
    refused(api, lambda: api.get(f"/cases/{later_draft}", who="staff"), 404)
    refused(api, lambda: api.post(f"/cases/{later_draft}/submit", body_for(api), who="staff"), 404)


def test_a_draft_is_submitted_for_the_npis_of_who_completes_it_or_of_its_starter_only(api):
    cid = ok(api.post("/drafts", DRAFT), 201)["case_id"]
    theirs = body_for(api, npi=OTHER_PROVIDER_NPI)
    err = refused(api, lambda: api.post(f"/cases/{cid}/submit", theirs), 403, "not-your-npi")
    assert "NPI" in err["detail"]
    share(api, "provider", "office-kim")
    staffs = ok(api.post("/drafts", DRAFT, who="staff"), 201)["case_id"]  # its own draft: its own NPIs, as POST /cases
    refused(api, lambda: api.post(f"/cases/{staffs}/submit", body_for(api), who="staff"), 403, "not-your-npi")
    refused(api, lambda: api.get(f"/cases/{staffs}"), 404)
    assert ok(api.post(f"/cases/{cid}/submit", body_for(api)))["status"] == "pending"


def test_an_expired_draft_stays_with_its_starter_and_can_no_longer_be_submitted(api):
    draft = ok(api.post("/drafts", DRAFT), 201)
    cid = draft["case_id"]
    ok(api.post("/admin/clock", {"to": draft["draft_expires_at"]}, who="admin"))
    assert ok(api.get(f"/cases/{cid}"))["status"] == "cancelled"
    refused(api, lambda: api.post(f"/cases/{cid}/submit", body_for(api)), 409, "not-a-draft")
    refused(api, lambda: api.get(f"/cases/{cid}", who="other_provider"), 404)


# ---- item 7: worklist search and filters ------------------------------------------------------


def member(first: str, last: str, n: int) -> dict:
    return {"id": f"M{n:08d}", "first_name": first, "last_name": last, "dob": "1961-07-14"}


def submit(api, who: str = "provider", npi: str = PROVIDER_NPI, **kw) -> dict:
    return ok(api.post("/cases", body_for(api, npi=npi, **kw), who=who), 201)


def found(api, who: str = "provider", **params) -> list[str]:
    return [i["case_id"] for i in ok(api.get("/worklist", who=who, **params))["items"]]


def test_worklist_finds_a_member_by_full_name_as_typed_or_as_the_row_shows_it(api):
    grace = submit(api, member=member("Grace", "Hopperfield", 1))["case_id"]
    submit(api, member=member("Ada", "Hopperfield", 2))
    submit(api, member=member("Grace", "Smith", 3))
    van_buren = submit(api, member=member("Mary Ann", "Van Buren", 4))["case_id"]
    for who in ("provider", "md"):  # a provider's own rows, and the unscoped search
        for q in ("Grace Hopperfield", "Hopperfield, Grace", "hopperfield,grace", "  GRACE   HOPPERFIELD ",
                  "Grace Hopp", "Hopperfield, Gr", "Hopperfield Grace"):
            assert found(api, who, q=q) == [grace], (who, q)
        for q in ("Mary Ann Van Buren", "Van Buren, Mary Ann", "mary ann van b", "Van Buren, Mary"):
            assert found(api, who, q=q) == [van_buren], (who, q)
        assert len(found(api, who, q="Hopperfield")) == 2 and len(found(api, who, q="Grace")) == 2
        assert found(api, who, q="Grace Hopperfieldx") == [] and found(api, who, q="Hopperfield, Ada Grace") == []
    row = ok(api.get("/worklist", q="Grace Hopperfield"))["items"][0]
    assert row["patient"] == "Hopperfield, Grace"


def test_worklist_status_takes_bucket_names_in_any_case_with_underscores_or_hyphens(api):
    approved = submit(api)["case_id"]
    partial = submit(api, days=6)["case_id"]
    pending = submit(api, days=7)["case_id"]
    ok(api.post(f"/cases/{approved}/determination", {"outcome": "approved"}, who="md"))
    ok(api.post(f"/cases/{partial}/determination", {
        "outcome": "partially_approved", "rationale": "supplies not needed", "guidelines": ["DME 7"],
        "lines": [{"code": "E0601", "decision": "approved"}, {"code": "A7030", "decision": "denied"}]}, who="md"))
    for who in ("provider", "md"):
        for status in ("approved", "APPROVED", "Approved", " approved "):
            assert found(api, who, status=status) == [approved], (who, status)
        for status in ("partially_approved", "Partially Approved", "PARTIALLY-APPROVED", "partially approved",
                       "Partially_Approved"):
            assert found(api, who, status=status) == [partial], (who, status)
        assert found(api, who, status="pending") == [pending]
        assert len(found(api, who, status="all")) == 3 and len(found(api, who, status="ALL")) == 3
        assert found(api, who, status="approved", q="Rivera1") == [approved]
    err = refused(api, lambda: api.get("/worklist", status="approvedish"), 422, "invalid-input")
    assert err["errors"][0]["field"] == "status" and "Partially Approved" in err["errors"][0]["message"]


def test_worklist_search_finds_the_providers_own_cases_however_many_others_match(api, monkeypatch):
    monkeypatch.setattr(worklist, "SEARCH_CAP", 3)  # the cap for an unscoped search; 5,000 in use
    theirs = [submit(api, who="other_provider", npi=OTHER_PROVIDER_NPI, member=member("Alex", f"Rivera{n}", n))
              ["case_id"] for n in range(1, 6)]
    mine = submit(api, member=member("Alex", "Rivera9", 9))["case_id"]
    assert found(api, q="Rivera") == [mine] and ok(api.get("/worklist", q="Alex"))["total"] == 1
    assert set(found(api, who="other_provider", q="Rivera", page_size=10)) == set(theirs)  # a provider's: no cap
    assert ok(api.get("/worklist", who="other_provider", q="Rivera"))["total"] == 5
    ok(api.post(f"/cases/{mine}/determination", {"outcome": "approved"}, who="md"))
    assert found(api, who="md", q="Rivera", status="Approved") == [mine]  # the bucket is filtered before the cap
    number = ok(api.get(f"/cases/{mine}"))["case_number"]
    assert found(api, who="md", q=number) == [mine]


# ---- item 8: documents in bodies --------------------------------------------------------------


def test_a_document_named_by_its_id_takes_the_name_type_and_size_it_was_uploaded_with(api):
    doc = api.upload("sleep-study.pdf", b"%PDF-1.4 polysomnography")
    assert doc["document_id"] == doc["sha256"]
    case = submit(api, documents=[doc["document_id"]])
    assert case["documents"] == [{"document_id": doc["sha256"], "name": "sleep-study.pdf",
                                  "media_type": "application/pdf", "size": len(b"%PDF-1.4 polysomnography"),
                                  "sha256": doc["sha256"]}]
    cid = case["case_id"]
    scan = api.upload("mask-fit.png", b"\x89PNG\r\n\x1a\n mask fit")
    view = ok(api.post(f"/cases/{cid}/clinical", {"documents": [scan["document_id"], doc], "notes": "fit and study"}))
    uploaded = recorded_data(api, cid, "ClinicalUploaded")
    assert [(d["name"], d["media_type"]) for d in uploaded["documents"]] == [("mask-fit.png", "image/png"),
                                                                           ("sleep-study.pdf", "application/pdf")]
    assert view["status"] == "pending"
    denial = {"outcome": "denied", "rationale": "AHI below 15", "guidelines": ["DME 3"]}
    ok(api.post(f"/cases/{cid}/determination", denial, who="md"))
    letter = api.upload("appeal-letter.docx", word_document("letter"))
    ok(api.post(f"/cases/{cid}/reconsideration", {"reason": "new study", "documents": [letter["document_id"]]}))
    assert recorded_data(api, cid, "ReconsiderationRequested")["documents"][0]["name"] == "appeal-letter.docx"


def test_an_unknown_or_malformed_document_id_is_422_naming_the_document(api):
    err = refused(api, lambda: api.post("/cases", body_for(api, documents=["0" * 64])), 422, "invalid-input")
    assert err["errors"] == [{"field": "documents[0]",
                              "message": f"no uploaded document has the id {'0' * 64}; POST /documents first"}]
    err = refused(api, lambda: api.post("/cases", body_for(api, documents=["notes.pdf"])), 422, "invalid-input")
    assert err["errors"][0]["field"] == "documents[0]" and "64 lowercase hex" in err["errors"][0]["message"]
    refused(api, lambda: api.post("/cases", body_for(api, documents=[42])), 422, "invalid-input")


def test_a_provider_attaches_only_documents_it_or_a_provider_sharing_its_worklist_uploaded(api):
    cid = submit(api)["case_id"]
    theirs = api.upload("their-notes.pdf", b"%PDF-1.4 their notes", who="other_provider")
    reviewers = api.upload("reviewer-notes.pdf", b"%PDF-1.4 reviewer notes", who="md")
    mine = api.upload("my-notes.pdf", b"%PDF-1.4 my notes")
    for docs in ([theirs["document_id"]], [theirs], [mine, reviewers["document_id"]]):
        i = 0 if docs[0] is not mine else 1
        err = refused(api, lambda: api.post("/cases", body_for(api, documents=docs)), 403, "document-not-yours")
        assert [e["field"] for e in err["errors"]] == [f"documents[{i}]"] and f"documents[{i}]" in err["detail"]
        refused(api, lambda: api.post(f"/cases/{cid}/clinical", {"documents": docs}), 403, "document-not-yours")
    share(api, "other_provider", "dr-doe")  # dr-roe shares its worklist with dr-doe: dr-doe may use dr-roe's uploads
    ok(api.post(f"/cases/{cid}/clinical", {"documents": [theirs["document_id"]]}))
    attached = submit(api, documents=[theirs["document_id"], mine])["documents"]
    assert [d["name"] for d in attached] == ["their-notes.pdf", "my-notes.pdf"]
    with_mine = body_for(api, documents=[mine], npi=OTHER_PROVIDER_NPI)
    refused(api, lambda: api.post("/cases", with_mine, who="other_provider"), 403,
            "document-not-yours")  # sharing runs one way: dr-doe shared nothing with dr-roe
    by_reviewer = {"documents": [reviewers["document_id"], theirs, mine["document_id"]]}
    assert ok(api.post(f"/cases/{cid}/clinical", by_reviewer, who="md"))["status"] == "pending"  # reviewers: any


def word_document(text: str) -> bytes:
    """A minimal .docx: a zip holding a word/ part, as uploads are typed by their content."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", f"<w:document>{text}</w:document>")
    return out.getvalue()
