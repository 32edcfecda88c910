"""The deadline projection: every due instant derived from events, armed when the event
that creates it is recorded and disarmed when an event makes it moot. Deadlines live here,
in the store, not in the timer's memory."""

from __future__ import annotations

from datetime import datetime

from domain.review import P2P_MISSED_AFTER
from projections.base import Cursor, Projection
from projections.records import EventRecord
from projections.rows import Rows, Table

DEADLINES = Table("deadlines", ("case_id", "kind", "p2p_id", "instant", "fire_at"), keys=("case_id", "kind", "p2p_id"))


def arm(rows: Rows, case_id: str, kind: str, instant: str | None, p2p_id: str = "", fire_at: str | None = None) -> None:
    if not instant:
        disarm(rows, case_id, kind, p2p_id)
        return
    rows.put(DEADLINES, {"case_id": case_id, "kind": kind, "p2p_id": p2p_id, "instant": instant, "fire_at": fire_at or instant})


def disarm(rows: Rows, case_id: str, kind: str, p2p_id: str = "") -> None:
    rows.delete(DEADLINES, (case_id, kind, p2p_id))


def rearm(rows: Rows, case_id: str, instants: dict[str, str | None], clear: tuple[str, ...] = ()) -> None:
    """Disarm ``clear`` and every kind whose instant is None, arm the others."""
    for kind in [k for k in clear if k not in instants] + [k for k, v in instants.items() if not v]:
        disarm(rows, case_id, kind)
    arm_many(rows, case_id, {k: v for k, v in instants.items() if v})


def arm_many(rows: Rows, case_id: str, instants: dict[str, str]) -> None:
    for kind, instant in instants.items():
        rows.put(DEADLINES, {"case_id": case_id, "kind": kind, "p2p_id": "", "instant": instant, "fire_at": instant})


def _after_slot(slot: str) -> str:
    return (datetime.fromisoformat(slot) + P2P_MISSED_AFTER).isoformat()


class Deadlines(Projection):
    name = "deadlines"
    row_tables = (DEADLINES,)
    handles = frozenset({
        "DraftStarted", "DraftExpired", "CaseSubmitted", "CaseHeld", "HoldReleased", "HoldLapsed", "DecisionTimeframeExtended",
        "DecisionDueSoon", "DecisionOverdue", "CaseDetermined", "CaseAutoApproved", "AlternativeRecommendationAccepted",
        "AlternativeRecommendationLapsed", "ReconsiderationRequested", "ReconsiderationWindowClosed", "ReconsiderationDecided",
        "AppealFiled", "AppealWindowClosed", "AppealDecided", "AuthorizationExtended", "AuthorizationWithdrawn",
        "AuthorizationExpired", "CaseCancelled", "P2PScheduled", "P2PRescheduled", "P2PCancelled", "P2PCompleted",
        "P2PSlotMissed"})
    tables = ("deadlines",)
    schema = (
        "CREATE TABLE IF NOT EXISTS deadlines (case_id TEXT NOT NULL, kind TEXT NOT NULL, p2p_id TEXT NOT NULL,"
        " instant TEXT NOT NULL, fire_at TEXT NOT NULL, PRIMARY KEY (case_id, kind, p2p_id))",
        "CREATE INDEX IF NOT EXISTS deadlines_fire_at ON deadlines (fire_at)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, c = event["data"], event["case_id"]
        match event["type"]:
            case "DraftStarted":
                arm(rows, c, "draft_expiry", d["expires_at"])
            case "DraftExpired":
                disarm(rows, c, "draft_expiry")
            case "CaseSubmitted":
                if event["version"] > 1:
                    disarm(rows, c, "draft_expiry")
                arm_many(rows, c, {"decision_warning": d["decision_warning_at"], "decision_due": d["decision_due_at"]})
            case "CaseHeld":
                arm(rows, c, "hold_due", d["due_at"])
            case "HoldReleased" | "HoldLapsed":
                disarm(rows, c, "hold_due")
            case "DecisionTimeframeExtended":
                arm(rows, c, "decision_warning", d["decision_warning_at"])
                arm(rows, c, "decision_due", d["decision_due_at"])
            case "DecisionDueSoon":
                disarm(rows, c, "decision_warning")
            case "DecisionOverdue":
                disarm(rows, c, "decision_due")
            case "CaseDetermined" | "CaseAutoApproved":
                rearm(rows, c, {"appeal_window": d.get("appeal_deadline"), "reconsideration_window": d.get("reconsideration_deadline"),
                               "alternative_lapse": d.get("alternative_deadline"), "authorization_expiry": d.get("valid_to")},
                      clear=("decision_warning", "decision_due", "hold_due"))
            case "AlternativeRecommendationAccepted":
                for kind in ("alternative_lapse", "appeal_window", "reconsideration_window"):
                    disarm(rows, c, kind)
                arm(rows, c, "authorization_expiry", d["valid_to"])
            case "AlternativeRecommendationLapsed":
                disarm(rows, c, "alternative_lapse")
            case "ReconsiderationRequested" | "ReconsiderationWindowClosed":
                disarm(rows, c, "reconsideration_window")
            case "ReconsiderationDecided":
                if d.get("valid_to"):
                    arm(rows, c, "authorization_expiry", d["valid_to"])
            case "AppealFiled" | "AppealWindowClosed":
                disarm(rows, c, "appeal_window")
            case "AppealDecided":
                arm(rows, c, "appeal_window", d.get("next_appeal_deadline"))
                if d.get("valid_to"):
                    arm(rows, c, "authorization_expiry", d["valid_to"])
            case "AuthorizationExtended":
                arm(rows, c, "authorization_expiry", d["valid_to"])
            case "AuthorizationWithdrawn" | "AuthorizationExpired":
                disarm(rows, c, "authorization_expiry")
            case "CaseCancelled":
                rows.delete_case(DEADLINES, c)
            case "P2PScheduled" | "P2PRescheduled":
                arm(rows, c, "p2p_slot", d["slot"], d["p2p_id"], fire_at=_after_slot(d["slot"]))
            case "P2PCancelled" | "P2PCompleted" | "P2PSlotMissed":
                disarm(rows, c, "p2p_slot", d["p2p_id"])
            case _:
                pass


def due(cur: Cursor, until: str, limit: int = 1000) -> list[tuple[str, str, str, str, str]]:
    """(fire_at, case_id, kind, instant, p2p_id) due by ``until``, in due order."""
    return cur.execute(
        "SELECT fire_at, case_id, kind, instant, p2p_id FROM deadlines WHERE fire_at <= ? ORDER BY fire_at, case_id, kind LIMIT ?",
        (until, limit),
    ).fetchall()



def due_count(cur: Cursor, until: str) -> int:
    """How many deadlines are due by ``until`` and not yet fired."""
    return int(cur.execute("SELECT COUNT(*) FROM deadlines WHERE fire_at <= ?", (until,)).fetchone()[0])
