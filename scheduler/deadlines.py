"""The deadline projection: every due instant derived from events, armed when the event
that creates it is recorded and disarmed when an event makes it moot. Deadlines live here,
in the store, not in the timer's memory."""

from __future__ import annotations

from datetime import datetime

from domain.review import P2P_MISSED_AFTER
from projections.base import Cursor, Projection
from projections.records import EventRecord

ARM = ("INSERT INTO deadlines (case_id, kind, p2p_id, instant, fire_at) VALUES (?, ?, ?, ?, ?) "
       "ON CONFLICT (case_id, kind, p2p_id) DO UPDATE SET instant = excluded.instant, fire_at = excluded.fire_at")


def arm(cur: Cursor, case_id: str, kind: str, instant: str | None, p2p_id: str = "", fire_at: str | None = None) -> None:
    if not instant:
        disarm(cur, case_id, kind, p2p_id)
        return
    cur.execute(ARM, (case_id, kind, p2p_id, instant, fire_at or instant))


def disarm(cur: Cursor, case_id: str, kind: str, p2p_id: str = "") -> None:
    cur.execute("DELETE FROM deadlines WHERE case_id = ? AND kind = ? AND p2p_id = ?", (case_id, kind, p2p_id))


def rearm(cur: Cursor, case_id: str, instants: dict[str, str | None], clear: tuple[str, ...] = ()) -> None:
    """Disarm ``clear`` and every kind whose instant is None, arm the others: few statements."""
    gone = [k for k in clear if k not in instants] + [k for k, v in instants.items() if not v]
    if gone:
        cur.execute(f"DELETE FROM deadlines WHERE case_id = ? AND p2p_id = '' AND kind IN ({', '.join('?' for _ in gone)})", (case_id, *gone))
    arm_many(cur, case_id, {k: v for k, v in instants.items() if v})


def arm_many(cur: Cursor, case_id: str, instants: dict[str, str]) -> None:
    cur.executemany(ARM, [(case_id, kind, "", instant, instant) for kind, instant in instants.items()])


def _after_slot(slot: str) -> str:
    return (datetime.fromisoformat(slot) + P2P_MISSED_AFTER).isoformat()


class Deadlines(Projection):
    name = "deadlines"
    tables = ("deadlines",)
    schema = (
        "CREATE TABLE IF NOT EXISTS deadlines (case_id TEXT NOT NULL, kind TEXT NOT NULL, p2p_id TEXT NOT NULL,"
        " instant TEXT NOT NULL, fire_at TEXT NOT NULL, PRIMARY KEY (case_id, kind, p2p_id))",
        "CREATE INDEX IF NOT EXISTS deadlines_fire_at ON deadlines (fire_at)",
    )

    def process_event(self, cur: Cursor, event: EventRecord) -> None:
        d, c = event["data"], event["case_id"]
        match event["type"]:
            case "DraftStarted":
                arm(cur, c, "draft_expiry", d["expires_at"])
            case "DraftExpired":
                disarm(cur, c, "draft_expiry")
            case "CaseSubmitted":
                if event["version"] > 1:
                    disarm(cur, c, "draft_expiry")
                arm_many(cur, c, {"decision_warning": d["decision_warning_at"], "decision_due": d["decision_due_at"]})
            case "CaseHeld":
                arm(cur, c, "hold_due", d["due_at"])
            case "HoldReleased" | "HoldLapsed":
                disarm(cur, c, "hold_due")
            case "DecisionTimeframeExtended":
                arm(cur, c, "decision_warning", d["decision_warning_at"])
                arm(cur, c, "decision_due", d["decision_due_at"])
            case "DecisionDueSoon":
                disarm(cur, c, "decision_warning")
            case "DecisionOverdue":
                disarm(cur, c, "decision_due")
            case "CaseDetermined" | "CaseAutoApproved":
                rearm(cur, c, {"appeal_window": d.get("appeal_deadline"), "reconsideration_window": d.get("reconsideration_deadline"),
                               "alternative_lapse": d.get("alternative_deadline"), "authorization_expiry": d.get("valid_to")},
                      clear=("decision_warning", "decision_due", "hold_due"))
            case "AlternativeRecommendationAccepted":
                for kind in ("alternative_lapse", "appeal_window", "reconsideration_window"):
                    disarm(cur, c, kind)
                arm(cur, c, "authorization_expiry", d["valid_to"])
            case "AlternativeRecommendationLapsed":
                disarm(cur, c, "alternative_lapse")
            case "ReconsiderationRequested" | "ReconsiderationWindowClosed":
                disarm(cur, c, "reconsideration_window")
            case "ReconsiderationDecided":
                if d.get("valid_to"):
                    arm(cur, c, "authorization_expiry", d["valid_to"])
            case "AppealFiled" | "AppealWindowClosed":
                disarm(cur, c, "appeal_window")
            case "AppealDecided":
                arm(cur, c, "appeal_window", d.get("next_appeal_deadline"))
                if d.get("valid_to"):
                    arm(cur, c, "authorization_expiry", d["valid_to"])
            case "AuthorizationExtended":
                arm(cur, c, "authorization_expiry", d["valid_to"])
            case "AuthorizationWithdrawn" | "AuthorizationExpired":
                disarm(cur, c, "authorization_expiry")
            case "CaseCancelled":
                cur.execute("DELETE FROM deadlines WHERE case_id = ?", (c,))
            case "P2PScheduled" | "P2PRescheduled":
                arm(cur, c, "p2p_slot", d["slot"], d["p2p_id"], fire_at=_after_slot(d["slot"]))
            case "P2PCancelled" | "P2PCompleted" | "P2PSlotMissed":
                disarm(cur, c, "p2p_slot", d["p2p_id"])
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
