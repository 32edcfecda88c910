"""What the dashboard says about a case: instants in the plan's time zone, the time left on a clock,
the rule that set a deadline (from the case's policy row), and each event told in a line, with
member data only for the roles the contract lets see it (never ops)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.policy import POLICY_IDS, POLICY_TABLE, PolicyRow, policy_version

# Who may see member names, dates of birth, diagnoses and free text (DESIGN.md, Roles): not ops.
PHI_ROLES = frozenset({"reviewer", "auditor", "admin"})
LINES = {
    "medicare": "Medicare Advantage",
    "duals": "Medicare-Medicaid (duals)",
    "medicaid": "Medicaid",
    "commercial": "commercial",
}
STATUS_LABELS = {"partially_approved": "partially approved", "alternative_recommended": "alternative recommended"}
ZONES = sorted({row.timezone for row in POLICY_TABLE})
DISPLAY_TZ = ZoneInfo(ZONES[0] if len(ZONES) == 1 else "UTC")  # the day of "P2P today", the weeks of the charts


def sees_phi(role: str) -> bool:
    return role in PHI_ROLES


def zone_of(policy: str | None, version: int | None) -> ZoneInfo:
    if policy and version:
        try:
            return ZoneInfo(policy_version(policy, int(version)).timezone)
        except KeyError:
            pass
    return DISPLAY_TZ


def parse(instant: str | datetime | None) -> datetime | None:
    if instant is None or isinstance(instant, datetime):
        return instant
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


def local(instant: str | datetime | None, zone: ZoneInfo = DISPLAY_TZ) -> str:
    """``Tue 10 Mar 2026 10:00 EDT``: an instant as the plan's office reads it."""
    at = parse(instant)
    if at is None:
        return ""
    return at.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")


def span(delta: timedelta) -> str:
    """A duration in its two largest units: ``2 d 4 h``, ``5 h 10 min``, ``12 min``."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def time_left(due: str | datetime | None, now: datetime) -> str:
    """``3 d 2 h left`` or ``overdue by 5 h 10 min``."""
    at = parse(due)
    if at is None:
        return ""
    delta = at - now
    return f"{span(delta)} left" if delta.total_seconds() > 0 else f"overdue by {span(delta)}"


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status or "", status or "")


def program_of(policy: str, version: int | None = None) -> str:
    row = _row(policy, version)
    return row.program if row else policy


def plan_of(policy: str, version: int | None = None) -> str:
    row = _row(policy, version)
    return row.plan if row else policy


def _row(policy: str, version: int | None) -> PolicyRow | None:
    try:
        if version:
            return policy_version(policy, int(version))
        return max((r for r in POLICY_TABLE if r.id == policy), key=lambda r: r.effective_from)
    except (KeyError, ValueError):
        return None


def deadline_rule(
    policy: str,
    version: int,
    line_of_business: str,
    urgent: bool,
    extension_days: int = 0,
    extension_reason: str | None = None,
) -> str:
    """The rule that set the decision deadline, from the case's policy row: ``urgent 24 h
    (radiation oncology)``, ``standard 7 days (Medicare Advantage)``, plus any extension."""
    row = _row(policy, version)
    if row is None:
        return ""
    if urgent:
        text = f"urgent {row.urgent_decision_hours} h ({row.program.lower()})"
    else:
        days = row.standard_limit_days.get(line_of_business)
        text = f"standard {days} days ({LINES.get(line_of_business, line_of_business)})"
    if extension_days:
        reason = (extension_reason or "").replace("_", " ")
        text += f" + {extension_days} days extension ({reason})" if reason else f" + {extension_days} days extension"
    return text


def policy_choices() -> list[tuple[str, str]]:
    return [(pid, f"{plan_of(pid)}: {program_of(pid)}") for pid in POLICY_IDS]


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


# ---- the timeline -----------------------------------------------------------------------------


def _items(values) -> str:
    return ", ".join(str(v) for v in values or [])


def summary(event: dict, zone: ZoneInfo, phi: bool) -> str:
    """One line for an event of a case's history; member data and free text only when ``phi``."""
    d, kind = event.get("data") or {}, event["type"]
    at = lambda key: local(d.get(key), zone)  # noqa: E731
    match kind:
        case "DraftStarted":
            return f"draft started ({d.get('policy')}); expires {at('expires_at')}"
        case "DraftExpired":
            return "draft expired"
        case "CaseSubmitted":
            text = (
                f"submitted by {d.get('channel')}, {'urgent' if d.get('urgent') else 'standard'}"
                f"{' (urgent requested)' if d.get('urgent_requested') and not d.get('urgent') else ''};"
                f" decision due {at('decision_due_at')}"
            )
            if phi:
                member = d.get("member") or {}
                procedures = _items(p.get("code") for p in (d.get("service") or {}).get("procedures", []))
                text += (
                    f"; member {member.get('last_name')}, {member.get('first_name')} (DOB {member.get('dob')});"
                    f" procedures {procedures}; diagnoses {_items((d.get('service') or {}).get('diagnoses'))}"
                )
            return text
        case "CaseAutoApproved":
            rule = (d.get("rule") or {}).get("rule", "")
            return f"approved by rules ({rule}); authorization {d.get('authorization_number')}"
        case "CaseHeld":
            return f"held for: {_items(d.get('requested_items'))}; information due {at('due_at')}"
        case "ClinicalUploaded":
            docs = d.get("documents") or []
            text = f"{len(docs)} document(s) uploaded"
            if phi:
                text += f": {_items(doc.get('name') for doc in docs)}"
                if d.get("notes"):
                    text += f"; notes: {d['notes']}"
            return text
        case "HoldReleased":
            return f"hold released ({str(d.get('reason', '')).replace('_', ' ')})"
        case "HoldLapsed":
            return f"hold lapsed at {at('due_at')}: review continues on the original submission"
        case "P2PScheduled":
            level = str(d.get("level", "")).replace("_", " ")
            return f"P2P ({level}) scheduled for {at('slot')} with {d.get('reviewer')}"
        case "P2PRescheduled":
            return f"P2P moved to {at('slot')}"
        case "P2PCancelled":
            return "P2P cancelled" + (f": {d.get('reason')}" if phi else "")
        case "P2PCompleted":
            return "P2P completed" + (f": {d.get('outcome')}" if phi else "")
        case "P2PSlotMissed":
            return f"P2P slot {at('slot')} missed"
        case "PreDenialNoticeGiven":
            return f"pre-denial notice given by {str(d.get('channel', '')).replace('_', ' ')}"
        case "DecisionTimeframeExtended":
            return (
                f"decision clock extended {d.get('days')} days ({str(d.get('reason', '')).replace('_', ' ')});"
                f" now due {at('decision_due_at')}"
            )
        case "DecisionDueSoon":
            return f"decision due soon: due {at('decision_due_at')}"
        case "DecisionOverdue":
            return f"decision overdue: was due {at('decision_due_at')}"
        case "CaseDetermined":
            text = f"determined: {status_label(d.get('outcome'))}"
            if d.get("authorization_number"):
                text += f"; authorization {d['authorization_number']} valid to {at('valid_to')}"
            if phi and d.get("rationale"):
                text += f"; rationale: {d['rationale']}"
            return text
        case "AlternativeRecommendationAccepted":
            return f"alternative accepted; authorization {d.get('authorization_number')}"
        case "AlternativeRecommendationLapsed":
            return "alternative recommendation lapsed"
        case "ReconsiderationRequested":
            return "reconsideration requested" + (f": {d.get('reason')}" if phi else "")
        case "ReconsiderationDecided":
            return f"reconsideration decided: {status_label(d.get('outcome'))}"
        case "ReconsiderationWindowClosed":
            return "reconsideration window closed"
        case "AppealFiled":
            return f"appeal level {d.get('level')} filed" + (f": {d.get('reason')}" if phi else "")
        case "AppealDecided":
            return f"appeal level {d.get('level')} decided: {str(d.get('outcome', '')).replace('_', ' ')}"
        case "AppealWindowClosed":
            return "appeal window closed"
        case "AuthorizationUpdated":
            return f"authorization updated ({str(d.get('kind', '')).replace('_', ' ')})"
        case "AuthorizationExtended":
            return f"authorization extended to {at('valid_to')}"
        case "AuthorizationSuperseded":
            return f"superseded by a new linked case ({str(d.get('kind', '')).replace('_', ' ')})"
        case "AuthorizationWithdrawn":
            return "authorization withdrawn" + (f": {d.get('reason')}" if phi else "")
        case "AuthorizationExpired":
            return "authorization expired"
        case "CaseCancelled":
            return "cancelled" + (f": {d.get('reason')}" if phi else "")
        case "LetterIssued":
            letter = str(d.get("letter_kind", "")).replace("_", " ")
            return f"{letter} letter to the {d.get('recipient')} by {d.get('channel')}"
    return kind


def actor_label(actor: dict | None) -> str:
    actor = actor or {}
    kind, who = actor.get("kind", ""), actor.get("id", "")
    if kind == "system" and actor.get("rule"):
        return f"rules ({actor.get('policy', '')})"
    return f"{kind} {who}".strip()


def clocks(view: dict, now: datetime, extension_days: int = 0, extension_reason: str | None = None) -> list[dict]:
    """A case's clocks as the case page lists them: what, when (plan time), time left, the rule."""
    zone = zone_of(view.get("policy"), view.get("policy_version"))
    open_case = view.get("status") in ("pending", "held")
    rows = [("received", view.get("received_at"), None, False)]
    rule = ""
    if view.get("policy") and view.get("received_at"):
        rule = deadline_rule(
            view["policy"],
            view.get("policy_version"),
            view.get("line_of_business"),
            bool(view.get("urgent")),
            extension_days,
            extension_reason,
        )
    rows += [
        ("decision due", view.get("decision_due_at"), rule, open_case),
        (
            "decision at risk from",
            view.get("decision_warning_at"),
            "75% of the time from receipt to the due instant",
            open_case,
        ),
        ("decision target", view.get("decision_target_at"), "2 business days after complete clinical", open_case),
        ("hold: information due", view.get("hold_due_at"), "", view.get("status") == "held"),
        ("reconsideration deadline", view.get("reconsideration_deadline"), "", True),
        ("appeal deadline", view.get("appeal_deadline"), "", True),
        ("alternative acceptance deadline", view.get("alternative_deadline"), "", True),
        ("draft expires", view.get("draft_expires_at"), "", view.get("status") == "draft"),
        ("valid from", view.get("valid_from"), "", False),
        ("valid to", view.get("valid_to"), "", view.get("status") in ("approved", "partially_approved")),
        ("determined", view.get("determined_at"), "", False),
    ]
    out = []
    for label, instant, why, ticking in rows:
        if not instant:
            continue
        out.append(
            {
                "label": label,
                "at": local(instant, zone),
                "iso": instant,
                "rule": why or "",
                "left": time_left(instant, now) if ticking else "",
                "overdue": bool(ticking and parse(instant) <= now),
            }
        )
    return out
