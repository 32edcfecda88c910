"""Facts several read models derive from single events (status, authorization)."""

from __future__ import annotations

from projections.records import EventRecord

STATUS_BUCKETS = {
    "pending": "Pending", "held": "Pending", "draft": "Pending",
    "approved": "Approved", "expired": "Approved",
    "partially_approved": "Partially Approved",
    "denied": "Denied", "alternative_recommended": "Denied",
    "cancelled": "Cancelled", "withdrawn": "Cancelled",
}
BUCKETS = ("Pending", "Approved", "Partially Approved", "Denied", "Cancelled")


# every event type status_after gives a status for
STATUS_EVENTS = frozenset({
    "DraftStarted", "CaseSubmitted", "HoldReleased", "HoldLapsed", "CaseHeld", "CaseAutoApproved",
    "AlternativeRecommendationAccepted", "CaseDetermined", "ReconsiderationDecided", "AppealDecided",
    "AuthorizationWithdrawn", "AuthorizationExpired", "CaseCancelled", "DraftExpired",
})


def status_after(event: EventRecord) -> str | None:
    """The case status this event leaves, or None when it does not change it."""
    d = event["data"]
    match event["type"]:
        case "DraftStarted":
            return "draft"
        case "CaseSubmitted" | "HoldReleased" | "HoldLapsed":
            return "pending"
        case "CaseHeld":
            return "held"
        case "CaseAutoApproved" | "AlternativeRecommendationAccepted":
            return "approved"
        case "CaseDetermined" | "ReconsiderationDecided":
            return d["outcome"]
        case "AppealDecided":
            return {"overturned": "approved", "partially_overturned": "partially_approved"}.get(d["outcome"])
        case "AuthorizationWithdrawn":
            return "withdrawn"
        case "AuthorizationExpired":
            return "expired"
        case "CaseCancelled" | "DraftExpired":
            return "cancelled"
    return None


def authorization_after(event: EventRecord) -> tuple[str, str, str] | None:
    """(authorization number, valid_from, valid_to) when this event grants or extends one."""
    d = event["data"]
    if d.get("authorization_number") and d.get("valid_to"):
        return d["authorization_number"], d["valid_from"], d["valid_to"]
    return None


def lifecycle_changes(event: EventRecord, *, valid_to: str = "valid_to") -> dict:
    """What an event changes in a case's summary row: ``status``; when it grants or extends an
    authorization, ``authorization_number`` and the end date (in the column named by
    ``valid_to``); a rendering-site correction's ``site_name``."""
    changes: dict = {}
    if event["type"] == "AuthorizationUpdated" and event["data"]["kind"] == "site" and "name" in event["data"]["changes"]:
        changes["site_name"] = event["data"]["changes"]["name"]
    status = status_after(event)
    if status and event["type"] != "DraftStarted":
        changes["status"] = status
    granted = authorization_after(event)
    if granted:
        changes["authorization_number"], changes[valid_to] = granted[0], granted[2]
    elif event["type"] == "AuthorizationExtended":
        changes[valid_to] = event["data"]["valid_to"]
    return changes


def member_name(submitted: dict) -> str:
    m = submitted["member"]
    return f"{m['last_name']}, {m['first_name']}"
