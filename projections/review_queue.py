"""The review queue: open cases, urgent first, then by decision due instant."""

from __future__ import annotations

from datetime import datetime

from projections.base import Projection, ReadStore, page_window
from projections.facts import STATUS_EVENTS, status_after
from projections.records import EventRecord
from projections.rows import Rows, Table

OPEN = ("pending", "held")


QUEUE = Table("review_queue", ("case_id", "case_number", "status", "urgent", "policy", "received_at", "decision_due_at",
                               "decision_warning_at", "hold_due_at"))


class ReviewQueue(Projection):
    name = "review_queue"
    row_tables = (QUEUE,)
    handles = STATUS_EVENTS | {"CaseSubmitted", "CaseHeld", "HoldReleased", "HoldLapsed", "DecisionTimeframeExtended"}
    tables = ("review_queue",)
    schema = (
        "CREATE TABLE IF NOT EXISTS review_queue (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, status TEXT NOT NULL,"
        " urgent INTEGER NOT NULL, policy TEXT NOT NULL, received_at TEXT NOT NULL, decision_due_at TEXT NOT NULL,"
        " decision_warning_at TEXT NOT NULL, hold_due_at TEXT)",
        "CREATE INDEX IF NOT EXISTS review_queue_urgent_due ON review_queue (urgent DESC, decision_due_at ASC, case_id)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, key = event["data"], (event["case_id"],)
        match event["type"]:
            case "CaseSubmitted":
                rows.put(QUEUE, {
                    "case_id": event["case_id"], "case_number": d["case_number"], "status": "pending", "urgent": int(d["urgent"]),
                    "policy": d["policy"], "received_at": d["received_at"], "decision_due_at": d["decision_due_at"],
                    "decision_warning_at": d["decision_warning_at"], "hold_due_at": None,
                })
            case "CaseHeld":
                rows.update(QUEUE, key, {"status": "held", "hold_due_at": d["due_at"]})
            case "HoldReleased" | "HoldLapsed":
                rows.update(QUEUE, key, {"status": "pending", "hold_due_at": None})
            case "DecisionTimeframeExtended":
                rows.update(QUEUE, key, {"decision_due_at": d["decision_due_at"], "decision_warning_at": d["decision_warning_at"]})
            case _:
                status = status_after(event)
                if status and status not in OPEN:
                    rows.delete(QUEUE, key)


# ---- queries ------------------------------------------------------------------------------


def review_queue_page(db: ReadStore, now: datetime, *, page: int = 1, page_size: int = 100) -> dict:
    limit, offset = page_window(page, page_size)
    with db.transaction() as cur:
        total = cur.execute("SELECT COUNT(*) FROM review_queue").fetchone()[0]
        rows = cur.execute(
            "SELECT case_id, case_number, status, urgent, decision_due_at, hold_due_at, decision_warning_at, policy FROM review_queue"
            " ORDER BY urgent DESC, decision_due_at ASC, case_id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
    stamp = now.isoformat()
    items = [{
        "case_id": r[0], "case_number": r[1], "status": r[2], "urgent": bool(r[3]), "decision_due_at": r[4], "hold_due_at": r[5],
        "at_risk": r[6] <= stamp < r[4], "overdue": r[4] <= stamp, "policy": r[7],
    } for r in rows]
    return {"items": items, "total": total}


def queue_counts(db: ReadStore, now: datetime) -> dict[str, int]:
    """How many open cases are pending and held, and how many of them are at risk (past 75% of their
    time to the decision due instant) and overdue (past it): the figures /metrics reports."""
    stamp = now.isoformat()
    with db.transaction() as cur:
        by_status = dict(cur.execute("SELECT status, COUNT(*) FROM review_queue GROUP BY status").fetchall())
        at_risk = cur.execute("SELECT COUNT(*) FROM review_queue WHERE decision_warning_at <= ?"
                              " AND decision_due_at > ?", (stamp, stamp)).fetchone()[0]
        overdue = cur.execute("SELECT COUNT(*) FROM review_queue WHERE decision_due_at <= ?", (stamp,)).fetchone()[0]
    counts = {status: int(by_status.get(status, 0)) for status in OPEN}
    return {**counts, "at_risk": int(at_risk), "overdue": int(overdue)}
