"""The certification summary: one line per case for plan portals and letters."""

from __future__ import annotations

from typing import Any

from domain.policy import policy_version
from projections.base import Projection, ReadStore, npi_filter, page_window
from projections.facts import lifecycle_changes
from projections.records import EventRecord
from projections.rows import Rows, Table

SUMMARY = Table("certification_summary", (
    "case_id", "authorization_number", "case_number", "member_last_name", "provider_last_name", "provider_npi", "status",
    "initiated_at", "procedure_code", "service_description", "site_name", "expiration_date", "correspondence_count"))


class CertificationSummary(Projection):
    name = "certification_summary"
    row_tables = (SUMMARY,)
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

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, case_id = event["data"], event["case_id"]
        match event["type"]:
            case "CaseSubmitted":
                row = policy_version(d["policy"], d["policy_version"])
                codes = [p["code"] for p in d["service"]["procedures"]]
                rows.put(SUMMARY, {
                    "case_id": case_id, "authorization_number": None, "case_number": d["case_number"],
                    "member_last_name": d["member"]["last_name"],
                    "provider_last_name": d["ordering_provider"]["name"].replace(",", " ").split()[-1],
                    "provider_npi": d["ordering_provider"]["npi"], "status": "pending", "initiated_at": d["received_at"],
                    "procedure_code": codes[0], "service_description": f"{row.program}: {', '.join(codes)}",
                    "site_name": d["site"]["name"], "expiration_date": None, "correspondence_count": 0,
                })
                return
            case "LetterIssued":
                rows.update(SUMMARY, (case_id,), add={"correspondence_count": 1})
                return
            case _:
                pass
        changes = lifecycle_changes(event, valid_to="expiration_date")
        if changes:
            rows.update(SUMMARY, (case_id,), changes)


# ---- queries ------------------------------------------------------------------------------


def certification_page(db: ReadStore, *, npis: set[str] | None = None, authorization_number: str | None = None,
                          case_number: str | None = None, member_last_name: str | None = None, npi: str | None = None,
                          status: str | None = None, page: int = 1, page_size: int = 50) -> dict:
    limit, offset = page_window(page, page_size)
    where: list[str] = []
    params: list[Any] = []
    npi_filter(npis, "provider_npi", where, params)
    for column, value in (("authorization_number", authorization_number), ("case_number", case_number),
                          ("member_last_name", member_last_name), ("provider_npi", npi), ("status", status)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cols = ("case_id", "authorization_number", "case_number", "member_last_name", "provider_last_name", "provider_npi", "status",
            "initiated_at", "procedure_code", "service_description", "site_name", "expiration_date", "correspondence_count")
    with db.transaction() as cur:
        total = cur.execute(f"SELECT COUNT(*) FROM certification_summary{clause}", params).fetchone()[0]
        rows = cur.execute(f"SELECT {', '.join(cols)} FROM certification_summary{clause} ORDER BY initiated_at DESC, case_id LIMIT ? OFFSET ?",
                           [*params, limit, offset]).fetchall()
    return {"items": [dict(zip(cols, r)) for r in rows], "total": total}
