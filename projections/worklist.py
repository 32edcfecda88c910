"""The provider worklist: one row per submitted case, searchable and sortable."""

from __future__ import annotations

from domain.policy import policy_version
from infra.database import Cursor
from projections.base import Projection, update, upsert
from projections.facts import STATUS_BUCKETS, lifecycle_changes, member_name
from projections.records import EventRecord


def count(cur: Cursor, moves: list[tuple[str, int]]) -> None:
    """Keep per-bucket totals of every case, so an unscoped page needs no COUNT(*) over the whole
    table (a provider's pages count their own rows through the NPI index)."""
    cur.executemany(
        "INSERT INTO worklist_counts (scope, bucket, n) VALUES ('*', ?, ?) ON CONFLICT (scope, bucket) DO UPDATE SET n = worklist_counts.n + excluded.n",
        moves,
    )


class Worklist(Projection):
    name = "worklist"
    tables = ("worklist", "worklist_counts")
    schema = (
        "CREATE TABLE IF NOT EXISTS worklist (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, authorization_number TEXT,"
        " member_id TEXT NOT NULL, member_name TEXT NOT NULL, member_last_lc TEXT NOT NULL, member_first_lc TEXT NOT NULL,"
        " status TEXT NOT NULL, bucket TEXT NOT NULL, submitted_at TEXT NOT NULL, end_date TEXT, procedure_code TEXT NOT NULL,"
        " provider_npi TEXT NOT NULL, provider_name TEXT NOT NULL, provider_name_lc TEXT NOT NULL, site_name TEXT NOT NULL,"
        " insurer TEXT NOT NULL, policy TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS worklist_counts (scope TEXT NOT NULL, bucket TEXT NOT NULL, n BIGINT NOT NULL,"
        " PRIMARY KEY (scope, bucket))",
        "CREATE INDEX IF NOT EXISTS worklist_npi_submitted ON worklist (provider_npi, submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_submitted ON worklist (submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_bucket_submitted ON worklist (bucket, submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_case_number ON worklist (case_number)",
        "CREATE INDEX IF NOT EXISTS worklist_authorization ON worklist (authorization_number)",
        "CREATE INDEX IF NOT EXISTS worklist_member_id ON worklist (member_id)",
        # a full name ("Grace Hopperfield", "Hopperfield, Grace") is one range of one of these two
        "DROP INDEX IF EXISTS worklist_member_last",
        "DROP INDEX IF EXISTS worklist_member_first",
        "CREATE INDEX IF NOT EXISTS worklist_member_last_first ON worklist (member_last_lc, member_first_lc)",
        "CREATE INDEX IF NOT EXISTS worklist_member_first_last ON worklist (member_first_lc, member_last_lc)",
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
                count(cur, [("Pending", 1)])
                return
            case "AuthorizationUpdated" if d["kind"] == "code_correction":
                cur.execute("UPDATE worklist SET procedure_code = ?, updated_at = ? WHERE case_id = ? AND procedure_code = ?",
                            (d["changes"]["to_code"], at, case_id, d["changes"]["from_code"]))
                return
            case _:
                pass
        changes = lifecycle_changes(event, valid_to="end_date")
        if "status" in changes:
            changes["bucket"] = STATUS_BUCKETS[changes["status"]]
            before = cur.execute("SELECT bucket FROM worklist WHERE case_id = ?", (case_id,)).fetchone()
            if before and before[0] != changes["bucket"]:
                count(cur, [(before[0], -1), (changes["bucket"], 1)])
        if changes:
            update(cur, "worklist", case_id, **changes, updated_at=at)
