"""The provider worklist: one row per submitted case, searchable and sortable."""

from __future__ import annotations

from domain.policy import policy_version
from infra.database import Cursor
from projections.base import Projection, update, upsert
from projections.facts import STATUS_BUCKETS, authorization_after, member_name, status_after
from projections.records import EventRecord


class Worklist(Projection):
    name = "worklist"
    tables = ("worklist",)
    schema = (
        "CREATE TABLE IF NOT EXISTS worklist (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, authorization_number TEXT,"
        " member_id TEXT NOT NULL, member_name TEXT NOT NULL, member_last_lc TEXT NOT NULL, member_first_lc TEXT NOT NULL,"
        " status TEXT NOT NULL, bucket TEXT NOT NULL, submitted_at TEXT NOT NULL, end_date TEXT, procedure_code TEXT NOT NULL,"
        " provider_npi TEXT NOT NULL, provider_name TEXT NOT NULL, provider_name_lc TEXT NOT NULL, site_name TEXT NOT NULL,"
        " insurer TEXT NOT NULL, policy TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS worklist_npi_submitted ON worklist (provider_npi, submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_submitted ON worklist (submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_case_number ON worklist (case_number)",
        "CREATE INDEX IF NOT EXISTS worklist_authorization ON worklist (authorization_number)",
        "CREATE INDEX IF NOT EXISTS worklist_member_id ON worklist (member_id)",
        "CREATE INDEX IF NOT EXISTS worklist_member_last ON worklist (member_last_lc)",
        "CREATE INDEX IF NOT EXISTS worklist_provider_name ON worklist (provider_name_lc)",
    )

    def process_event(self, cur: Cursor, event: EventRecord) -> None:
        d, case_id, at = event["data"], event["case_id"], event["occurred_at"]
        match event["type"]:
            case "CaseSubmitted":
                row = policy_version(d["policy"], d["policy_version"])
                upsert(cur, "worklist", ["case_id"], {
                    "case_id": case_id, "case_number": d["case_number"], "authorization_number": None,
                    "member_id": d["member"]["id"], "member_name": member_name(d),
                    "member_last_lc": d["member"]["last_name"].lower(), "member_first_lc": d["member"]["first_name"].lower(),
                    "status": "pending", "bucket": "Pending", "submitted_at": d["received_at"], "end_date": None,
                    "procedure_code": d["service"]["procedures"][0]["code"], "provider_npi": d["ordering_provider"]["npi"],
                    "provider_name": d["ordering_provider"]["name"], "provider_name_lc": d["ordering_provider"]["name"].lower(),
                    "site_name": d["site"]["name"], "insurer": row.plan, "policy": d["policy"], "updated_at": at,
                })
            case "AuthorizationExtended":
                update(cur, "worklist", case_id, end_date=d["valid_to"], updated_at=at)
            case "AuthorizationUpdated" if d["kind"] == "site" and "name" in d["changes"]:
                update(cur, "worklist", case_id, site_name=d["changes"]["name"], updated_at=at)
            case "AuthorizationUpdated" if d["kind"] == "code_correction":
                cur.execute("UPDATE worklist SET procedure_code = ?, updated_at = ? WHERE case_id = ? AND procedure_code = ?",
                            (d["changes"]["to_code"], at, case_id, d["changes"]["from_code"]))
            case _:
                pass
        status = status_after(event)
        if status and event["type"] not in ("DraftStarted", "CaseSubmitted"):
            update(cur, "worklist", case_id, status=status, bucket=STATUS_BUCKETS[status], updated_at=at)
        granted = authorization_after(event)
        if granted:
            update(cur, "worklist", case_id, authorization_number=granted[0], end_date=granted[2])
