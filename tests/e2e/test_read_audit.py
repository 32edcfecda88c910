"""Every read of member data is recorded, one record per request naming every case it showed:
the case view, its history, worklist and certification-summary rows, the authorization lookup
(HTTP and the CLI). A refused read, and the views without member data (queues, metrics, the
dashboard), record none. `caselog audit-report` filters them; reads recorded before are kept."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from infra.bootstrap import bootstrap
from infra.demo.samples import OTHER_PROVIDER_NPI, PROVIDER_NPI, later, request
from infra.identity import Principal
from infra.store.access import Access
from infra.store.database import Database
from tests.e2e.http_support import make_api
from tests.e2e.test_cli import caselog, token
from tests.support import DME

AUDITOR = Principal(role="auditor", sub="audit-1")


@pytest.fixture
def api(system):
    return make_api(system)


def submit(api, member_no: int, who: str = "provider", npi: str = PROVIDER_NPI) -> str:
    body = request(DME, date_of_service=later(api.system.clock.now(), 5 + member_no), member_no=member_no,
                   provider_npi=npi, documents=[])
    r = api.post("/cases", body, who=who)
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def newest(api) -> dict:
    return api.system.access.reads()[-1]


def test_each_read_of_member_data_is_one_record_naming_who_when_what_and_every_case_shown(api):
    first, second = submit(api, 1), submit(api, 2)
    theirs = submit(api, 3, who="other_provider", npi=OTHER_PROVIDER_NPI)
    assert api.post(f"/cases/{first}/determination", {"outcome": "approved"}, who="md").status_code == 200
    now = api.system.clock.now().isoformat(timespec="microseconds")
    assert api.system.access.reads() == []  # writes are audited by their events, not as reads

    assert api.get(f"/cases/{first}").status_code == 200
    read = newest(api)
    assert {k: read[k] for k in ("at", "who", "what", "query", "case_ids")} == {
        "at": now, "who": {"kind": "provider", "id": "dr-doe"}, "what": "case", "query": {}, "case_ids": [first]}

    assert api.get(f"/cases/{second}/history", who="md", as_of="2026-12-01T00:00:00Z").status_code == 200
    read = newest(api)
    assert read["who"] == {"kind": "reviewer", "id": "dr-okafor", "credential": "MD"}
    assert (read["what"], read["case_ids"]) == ("history", [second])
    assert read["query"] == {"as_of": "2026-12-01T00:00:00+00:00"}

    shown = [i["case_id"] for i in api.get("/worklist", who="md", q="Rivera").json()["items"]]
    assert len(shown) == 3
    read = newest(api)
    assert (read["what"], read["case_ids"]) == ("worklist", shown)
    assert read["query"] == {"q": "Rivera", "sort": "-submitted", "page": 1, "page_size": 25}

    mine = [i["case_id"] for i in api.get("/worklist").json()["items"]]
    assert set(mine) == {first, second} and newest(api)["case_ids"] == mine  # dr-doe's rows only, in their order

    rows = api.get("/certification-summary", who="auditor", member_last_name="Rivera3").json()["items"]
    assert [r["case_id"] for r in rows] == [theirs]
    assert (newest(api)["what"], newest(api)["case_ids"]) == ("certification-summary", [theirs])
    assert newest(api)["query"]["member_last_name"] == "Rivera3"

    number = api.get(f"/cases/{first}").json()["authorization_number"]
    assert api.get("/authorizations/lookup", authorization_number=number, npi=PROVIDER_NPI).json()["total"] == 1
    assert (newest(api)["what"], newest(api)["case_ids"]) == ("lookup", [first])
    found = api.get("/authorizations/lookup", who="admin", member_id="M00000001", dob="1958-04-02", last_name="Rivera1")
    assert found.json()["total"] == 1 and newest(api)["case_ids"] == [first]
    assert newest(api)["who"] == {"kind": "admin", "id": "root"}

    assert api.get("/worklist", q="Nobody").json()["items"] == []  # a search that showed nothing: recorded, no case
    assert (newest(api)["what"], newest(api)["case_ids"]) == ("worklist", [])

    count = len(api.system.access.reads())
    for path, who in ((f"/cases/{theirs}", "provider"), (f"/cases/{first}", "ops"), ("/worklist", "ops"),
                      (f"/cases/{first}/history", "ops"), ("/queues/review", "ops"),
                      ("/metrics/prior-authorization", "ops"), ("/dashboard", "ops")):
        api.get(path, who=who)
    assert len(api.system.access.reads()) == count, "a refused read or one without member data was recorded"
    assert [r["id"] for r in api.system.access.reads(first)] == [r["id"] for r in api.system.access.reads()
                                                                 if first in r["case_ids"]]


def test_the_cli_reads_are_recorded_as_the_token_and_refused_to_ops(store, tmp_path):
    system = bootstrap(store)
    try:
        body = request(DME, date_of_service=later(system.clock.now(), 10), documents=[])
        case_id = system.app.submit(body, actor={"kind": "provider", "id": "dr-doe"}).view["case_id"]
    finally:
        system.close()
    out = caselog(store, "show", case_id, token=token(store, "auditor", "audit-1"))
    assert out.returncode == 0 and json.loads(out.stdout)["member"]["last_name"] == "Rivera1", out.stderr
    out = caselog(store, "history", case_id, token=token(store, "ops", "ops-1"))
    assert out.returncode == 2 and "forbidden" in out.stderr and out.stdout == "", out.stderr
    out = caselog(store, "show", case_id)
    assert out.returncode == 2 and "CASELOG_TOKEN" in out.stderr
    report = json.loads(caselog(store, "audit-report", "--case", case_id).stdout)
    assert [(r["who"], r["what"], r["query"]) for r in report["reads"]] == [
        ({"kind": "auditor", "id": "audit-1"}, "case", {"via": "cli"})]


def test_audit_report_filters_by_case_user_and_time_as_json_or_csv(store, tmp_path):
    system = bootstrap(store)
    try:
        body = request(DME, date_of_service=later(system.clock.now(), 10), documents=[])
        one, two = (system.app.submit({**body, "member": {**body["member"], "id": f"M{n}"}},
                                      actor={"kind": "provider", "id": "dr-doe"}).view["case_id"] for n in (1, 2))
        start = system.clock.now()
        md = Principal(role="reviewer", sub="dr-okafor", credential="MD")
        system.access.record_read(AUDITOR, "case", [one], start)
        system.access.record_read(md, "worklist", [two, one], start + timedelta(hours=1), {"q": "Rivera, Alex"})
        system.access.record_read(AUDITOR, "history", [two], start + timedelta(hours=2))
    finally:
        system.close()

    def report(*args: str) -> list[tuple[str, list[str]]]:
        out = caselog(store, "audit-report", *args)
        assert out.returncode == 0, out.stderr
        return [(r["what"], r["case_ids"]) for r in json.loads(out.stdout)["reads"]]

    assert report() == [("case", [one]), ("worklist", [two, one]), ("history", [two])]
    assert report("--case", one) == [("case", [one]), ("worklist", [two, one])]
    assert report("--case", one, "--user", "dr-okafor") == [("worklist", [two, one])]
    later_ = (start + timedelta(hours=1)).isoformat()
    assert report("--since", later_) == [("worklist", [two, one]), ("history", [two])]
    assert report("--until", later_) == [("case", [one])]
    assert report("--user", "audit-1", "--since", later_.replace("+00:00", "Z")) == [("history", [two])]
    out = caselog(store, "audit-report", "--user", "dr-okafor", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["who_kind"], r["who_id"], r["who_credential"], r["what"], r["case_ids"]) for r in rows] == [
        ("reviewer", "dr-okafor", "MD", "worklist", f"{two} {one}")]
    assert json.loads(rows[0]["query"]) == {"q": "Rivera, Alex"}
    for bad in (("--format", "xml"), ("--since", "yesterday"), ("--case", "no-such-case")):
        out = caselog(store, "audit-report", *bad)
        assert out.returncode == 2 and (bad[0] in out.stderr or "no case" in out.stderr), out.stderr


def test_reads_recorded_one_row_per_case_before_are_kept_one_record_each(store):
    db = Database(store)
    try:
        with db.transaction() as cur:
            cur.execute(f"CREATE TABLE caselog_case_reads (id {db.autoincrement}, at TEXT NOT NULL, who_kind TEXT"
                        " NOT NULL, who_id TEXT NOT NULL, case_id TEXT NOT NULL, what TEXT NOT NULL)")
            for at, who, case, what in (("2026-03-10T14:00:00+00:00", "audit-1", "c-1", "case"),
                                        ("2026-03-10T15:30:00.250000+00:00", "dr-doe", "c-2", "lookup")):
                kind = "auditor" if who == "audit-1" else "provider"
                cur.execute("INSERT INTO caselog_case_reads (at, who_kind, who_id, case_id, what)"
                            " VALUES (?, ?, ?, ?, ?)", (at, kind, who, case, what))
        access = Access(db)
        assert [(r["at"], r["who"]["id"], r["what"], r["case_ids"]) for r in access.reads()] == [
            ("2026-03-10T14:00:00.000000+00:00", "audit-1", "case", ["c-1"]),
            ("2026-03-10T15:30:00.250000+00:00", "dr-doe", "lookup", ["c-2"])]
        assert [r["what"] for r in access.reads("c-2")] == ["lookup"]
        Access(db)  # a second start finds nothing to migrate
        assert len(access.reads()) == 2
        with db.transaction() as cur:
            table = "to_regclass('caselog_case_reads')" if db.dialect == "postgres" else (
                "(SELECT name FROM sqlite_master WHERE name = 'caselog_case_reads')")
            assert cur.execute(f"SELECT {table}").fetchone()[0] is None
    finally:
        db.close()
