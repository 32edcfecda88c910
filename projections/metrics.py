"""Prior-authorization metrics (CMS-0057-F public reporting): one fact row per request,
keeping the received, decided and notified instants apart."""

from __future__ import annotations

from infra.database import Cursor
from projections.base import Projection, update, upsert
from projections.records import EventRecord


class PriorAuthorizationMetrics(Projection):
    name = "pa_metrics"
    tables = ("pa_requests",)
    schema = (
        "CREATE TABLE IF NOT EXISTS pa_requests (case_id TEXT PRIMARY KEY, policy TEXT NOT NULL, urgent INTEGER NOT NULL,"
        " received_at TEXT NOT NULL, decided_at TEXT, notified_at TEXT, outcome TEXT, extended INTEGER NOT NULL,"
        " appealed INTEGER NOT NULL, appeal_outcome TEXT, final_outcome TEXT)",
        "CREATE INDEX IF NOT EXISTS pa_requests_decided ON pa_requests (decided_at)",
        "CREATE INDEX IF NOT EXISTS pa_requests_policy ON pa_requests (policy, decided_at)",
    )

    def process_event(self, cur: Cursor, event: EventRecord) -> None:
        d, case_id, at = event["data"], event["case_id"], event["occurred_at"]
        match event["type"]:
            case "CaseSubmitted":
                upsert(cur, "pa_requests", ["case_id"], {
                    "case_id": case_id, "policy": d["policy"], "urgent": int(d["urgent"]), "received_at": d["received_at"],
                    "decided_at": None, "notified_at": None, "outcome": None, "extended": 0, "appealed": 0,
                    "appeal_outcome": None, "final_outcome": None,
                })
            case "DecisionTimeframeExtended":
                update(cur, "pa_requests", case_id, extended=1)
            case "CaseDetermined" | "CaseAutoApproved":
                outcome = d.get("outcome", "approved")
                update(cur, "pa_requests", case_id, decided_at=at, outcome=outcome, final_outcome=outcome)
            case "LetterIssued" if d["recipient"] == "provider" and (d["letter_kind"].startswith("determination_") or d["letter_kind"] == "approval"):
                cur.execute("UPDATE pa_requests SET notified_at = ? WHERE case_id = ? AND notified_at IS NULL AND decided_at IS NOT NULL", (at, case_id))
            case "AlternativeRecommendationAccepted":
                update(cur, "pa_requests", case_id, final_outcome="approved")
            case "ReconsiderationDecided":
                update(cur, "pa_requests", case_id, final_outcome=d["outcome"])
            case "AppealFiled":
                update(cur, "pa_requests", case_id, appealed=1)
            case "AppealDecided":
                final = {"overturned": "approved", "partially_overturned": "partially_approved"}.get(d["outcome"])
                update(cur, "pa_requests", case_id, appeal_outcome=d["outcome"])
                if final:
                    update(cur, "pa_requests", case_id, final_outcome=final)
            case _:
                pass
