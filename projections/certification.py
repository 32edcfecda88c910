"""The certification summary: one line per case for plan portals and letters."""

from __future__ import annotations

from domain.policy import policy_version
from infra.database import Cursor
from projections.base import Projection, update, upsert
from projections.facts import lifecycle_changes
from projections.records import EventRecord


class CertificationSummary(Projection):
    name = "certification_summary"
    tables = ("certification_summary",)
    schema = (
        "CREATE TABLE IF NOT EXISTS certification_summary (case_id TEXT PRIMARY KEY, authorization_number TEXT,"
        " case_number TEXT NOT NULL, member_last_name TEXT NOT NULL, provider_last_name TEXT NOT NULL, provider_npi TEXT NOT NULL,"
        " status TEXT NOT NULL, initiated_at TEXT NOT NULL, procedure_code TEXT NOT NULL, service_description TEXT NOT NULL,"
        " site_name TEXT NOT NULL, expiration_date TEXT, correspondence_count INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS certification_authorization ON certification_summary (authorization_number)",
        "CREATE INDEX IF NOT EXISTS certification_case_number ON certification_summary (case_number)",
        "CREATE INDEX IF NOT EXISTS certification_npi ON certification_summary (provider_npi, initiated_at)",
    )

    def process_event(self, cur: Cursor, event: EventRecord) -> None:
        d, case_id = event["data"], event["case_id"]
        match event["type"]:
            case "CaseSubmitted":
                row = policy_version(d["policy"], d["policy_version"])
                codes = [p["code"] for p in d["service"]["procedures"]]
                upsert(cur, "certification_summary", ["case_id"], {
                    "case_id": case_id, "authorization_number": None, "case_number": d["case_number"],
                    "member_last_name": d["member"]["last_name"],
                    "provider_last_name": d["ordering_provider"]["name"].replace(",", " ").split()[-1],
                    "provider_npi": d["ordering_provider"]["npi"], "status": "pending", "initiated_at": d["received_at"],
                    "procedure_code": codes[0], "service_description": f"{row.program}: {', '.join(codes)}",
                    "site_name": d["site"]["name"], "expiration_date": None, "correspondence_count": 0,
                })
                return
            case "LetterIssued":
                cur.execute("UPDATE certification_summary SET correspondence_count = correspondence_count + 1 WHERE case_id = ?", (case_id,))
                return
            case _:
                pass
        changes = lifecycle_changes(event, valid_to="expiration_date")
        if changes:
            update(cur, "certification_summary", case_id, **changes)
