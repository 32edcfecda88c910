"""Authorization lookup: by authorization number and NPI, or by member id, DOB and last name."""

from __future__ import annotations

from typing import Any

from domain.errors import FieldError, InvalidInput
from projections.base import Projection, ReadStore
from projections.facts import lifecycle_changes
from projections.records import EventRecord
from projections.rows import Rows, Table

LOOKUP = Table("authorization_lookup", (
    "case_id", "case_number", "authorization_number", "ordering_npi", "site_npi", "member_id", "member_dob", "member_last_lc",
    "status", "approved_at", "service", "site_name", "expiration_date", "last_updated", "correspondence_count"))


class AuthorizationLookup(Projection):
    name = "authorization_lookup"
    row_tables = (LOOKUP,)
    tables = ("authorization_lookup",)
    schema = (
        "CREATE TABLE IF NOT EXISTS authorization_lookup (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL,"
        " authorization_number TEXT, ordering_npi TEXT NOT NULL, site_npi TEXT NOT NULL, member_id TEXT NOT NULL,"
        " member_dob TEXT NOT NULL, member_last_lc TEXT NOT NULL, status TEXT NOT NULL, approved_at TEXT, service TEXT NOT NULL,"
        " site_name TEXT NOT NULL, expiration_date TEXT, last_updated TEXT NOT NULL, correspondence_count INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS lookup_authorization ON authorization_lookup (authorization_number)",
        "CREATE INDEX IF NOT EXISTS lookup_member ON authorization_lookup (member_id, member_dob)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, case_id, at = event["data"], event["case_id"], event["occurred_at"]
        match event["type"]:
            case "CaseSubmitted":
                rows.put(LOOKUP, {
                    "case_id": case_id, "case_number": d["case_number"], "authorization_number": None,
                    "ordering_npi": d["ordering_provider"]["npi"], "site_npi": d["site"]["npi"],
                    "member_id": d["member"]["id"], "member_dob": d["member"]["dob"],
                    "member_last_lc": d["member"]["last_name"].lower(), "status": "pending", "approved_at": None,
                    "service": ", ".join(p["code"] for p in d["service"]["procedures"]), "site_name": d["site"]["name"],
                    "expiration_date": None, "last_updated": at, "correspondence_count": 0,
                })
                return
            case "LetterIssued":
                rows.update(LOOKUP, (case_id,), {"last_updated": at}, add={"correspondence_count": 1})
                return
            case _:
                pass
        changes = lifecycle_changes(event, valid_to="expiration_date")
        if event["type"] == "AuthorizationUpdated" and d["kind"] == "site" and "npi" in d["changes"]:
            changes["site_npi"] = d["changes"]["npi"]
        if "authorization_number" in changes:
            changes["approved_at"] = at
        rows.update(LOOKUP, (case_id,), {**changes, "last_updated": at})


# ---- queries ------------------------------------------------------------------------------


LOOKUP_COLUMNS = ("case_id", "case_number", "authorization_number", "ordering_npi", "site_npi", "status", "approved_at", "service",
                  "site_name", "expiration_date", "last_updated", "correspondence_count")


def authorizations_found(db: ReadStore, *, authorization_number: str | None = None, npi: str | None = None, member_id: str | None = None,
           dob: str | None = None, last_name: str | None = None) -> list[dict]:
    if authorization_number and npi:
        sql = "authorization_number = ? AND (ordering_npi = ? OR site_npi = ?)"
        params: list[Any] = [authorization_number, npi, npi]
    elif member_id and dob and last_name:
        sql = "member_id = ? AND member_dob = ? AND member_last_lc = ?"
        params = [member_id, dob, last_name.lower()]
    else:
        raise InvalidInput(FieldError("query", "give authorization_number and npi, or member_id, dob and last_name"))
    with db.transaction() as cur:
        rows = cur.execute(f"SELECT {', '.join(LOOKUP_COLUMNS)} FROM authorization_lookup WHERE {sql} ORDER BY last_updated DESC LIMIT 50", params).fetchall()
    return [dict(zip(LOOKUP_COLUMNS, r)) for r in rows]
