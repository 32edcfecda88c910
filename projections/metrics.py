"""Prior-authorization metrics (CMS-0057-F public reporting): one fact row per request,
keeping the received, decided and notified instants apart."""

from __future__ import annotations

import math
import statistics
from datetime import date, datetime, timezone

from domain.errors import FieldError, InvalidInput
from domain.policy import requiring_prior_authorization
from projections.base import Projection, ReadStore
from projections.records import EventRecord
from projections.rows import NOT_NULL, Rows, Table

REQUESTS = Table("pa_requests", ("case_id", "policy", "urgent", "received_at", "decided_at", "notified_at", "outcome",
                                 "extended", "appealed", "appeal_outcome", "final_outcome"))


class PriorAuthorizationMetrics(Projection):
    name = "pa_metrics"
    row_tables = (REQUESTS,)
    handles = frozenset({"CaseSubmitted", "DecisionTimeframeExtended", "CaseDetermined", "CaseAutoApproved", "LetterIssued",
                         "AlternativeRecommendationAccepted", "ReconsiderationDecided", "AppealFiled", "AppealDecided"})
    tables = ("pa_requests",)
    schema = (
        "CREATE TABLE IF NOT EXISTS pa_requests (case_id TEXT PRIMARY KEY, policy TEXT NOT NULL, urgent INTEGER NOT NULL,"
        " received_at TEXT NOT NULL, decided_at TEXT, notified_at TEXT, outcome TEXT, extended INTEGER NOT NULL,"
        " appealed INTEGER NOT NULL, appeal_outcome TEXT, final_outcome TEXT)",
        "CREATE INDEX IF NOT EXISTS pa_requests_decided ON pa_requests (decided_at)",
        "CREATE INDEX IF NOT EXISTS pa_requests_policy ON pa_requests (policy, decided_at)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, case_id, at = event["data"], event["case_id"], event["occurred_at"]
        key = (case_id,)
        match event["type"]:
            case "CaseSubmitted":
                rows.put(REQUESTS, {
                    "case_id": case_id, "policy": d["policy"], "urgent": int(d["urgent"]), "received_at": d["received_at"],
                    "decided_at": None, "notified_at": None, "outcome": None, "extended": 0, "appealed": 0,
                    "appeal_outcome": None, "final_outcome": None,
                })
            case "DecisionTimeframeExtended":
                rows.update(REQUESTS, key, {"extended": 1})
            case "CaseDetermined" | "CaseAutoApproved":
                outcome = d.get("outcome", "approved")
                rows.update(REQUESTS, key, {"decided_at": at, "outcome": outcome, "final_outcome": outcome})
            case "LetterIssued" if d["recipient"] == "provider" and (d["letter_kind"].startswith("determination_") or d["letter_kind"] == "approval"):
                rows.update(REQUESTS, key, {"notified_at": at}, when={"notified_at": None, "decided_at": NOT_NULL})
            case "AlternativeRecommendationAccepted":
                rows.update(REQUESTS, key, {"final_outcome": "approved"})
            case "ReconsiderationDecided":
                rows.update(REQUESTS, key, {"final_outcome": d["outcome"]})
            case "AppealFiled":
                rows.update(REQUESTS, key, {"appealed": 1})
            case "AppealDecided":
                final = {"overturned": "approved", "partially_overturned": "partially_approved"}.get(d["outcome"])
                rows.update(REQUESTS, key, {"appeal_outcome": d["outcome"]})
                if final:
                    rows.update(REQUESTS, key, {"final_outcome": final})
            case _:
                pass


# ---- queries ------------------------------------------------------------------------------


def _hours(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 3600


def _ratio(numerator: int, denominator: int) -> dict:
    return {"numerator": numerator, "denominator": denominator, "percent": round(100 * numerator / denominator, 2) if denominator else None}


def prior_authorization_figures(db: ReadStore, *, start: str | None = None, end: str | None = None, policy: str | None = None,
                                partial_counts_as: str = "denied") -> dict:
    """CMS-0057-F figures over requests decided in [start, end), each with numerator and denominator."""
    if partial_counts_as not in ("approved", "denied"):
        raise InvalidInput(FieldError("partial_counts_as", "approved or denied"))
    where, params = ["decided_at IS NOT NULL"], []
    if start:
        where.append("decided_at >= ?")
        params.append(start)
    if end:
        where.append("decided_at < ?")
        params.append(end)
    if policy:
        where.append("policy = ?")
        params.append(policy)
    with db.transaction() as cur:
        rows = cur.execute(
            f"SELECT urgent, received_at, decided_at, notified_at, outcome, extended, appealed, appeal_outcome, final_outcome FROM pa_requests WHERE {' AND '.join(where)}",
            params).fetchall()
    approved_set = {"approved"} | ({"partially_approved"} if partial_counts_as == "approved" else set())

    def figures(subset: list[tuple]) -> dict:
        times = [_hours(r[1], r[2]) for r in subset]
        notified = [_hours(r[1], r[3]) for r in subset if r[3]]
        return {
            "decided": len(subset),
            "approved": _ratio(sum(r[4] in approved_set for r in subset), len(subset)),
            "denied": _ratio(sum(r[4] not in approved_set for r in subset), len(subset)),
            "total_hours_to_decision": round(math.fsum(times), 2),
            "average_hours_to_decision": round(statistics.fmean(times), 2) if times else None,
            "median_hours_to_decision": round(statistics.median(times), 2) if times else None,
            "average_hours_to_notification": round(statistics.fmean(notified), 2) if notified else None,
        }

    standard = [r for r in rows if not r[0]]
    expedited = [r for r in rows if r[0]]
    appealed = [r for r in standard if r[6]]
    overturned = {"overturned"} | ({"partially_overturned"} if partial_counts_as == "approved" else set())
    return {
        "period": {"from": start, "to": end, "policy": policy, "partial_approvals_count_as": partial_counts_as},
        "standard": figures(standard),
        "expedited": figures(expedited),
        "standard_approved_after_appeal": _ratio(sum(r[7] in overturned for r in appealed), len(appealed)),
        "extended_then_approved": _ratio(sum(bool(r[5]) and r[8] in approved_set for r in rows), len(rows)),
    }


# ---- the annual public posting (42 CFR 422.122(c), 438.210(f), 457.732(f), 440.230(e); 45 CFR 156.223(c)) -----


def annual_posting(db: ReadStore, year: int, *, policy: str | None = None, partial_counts_as: str = "denied") -> dict:
    """The CMS-0057-F annual posting for the requests decided in ``year`` (UTC), all nine items,
    every figure with its numerator and denominator; item 1 lists the services as the policy table
    stands at the year's end. Made from the prior-authorization read model alone, which replaying
    the events rebuilds, so the same events give the same posting."""
    if not 2000 <= year <= 2098:
        raise InvalidInput(FieldError("year", "a year from 2000 to 2098"))
    start, end = datetime(year, 1, 1, tzinfo=timezone.utc), datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    f = prior_authorization_figures(db, start=start.isoformat(), end=end.isoformat(), policy=policy,
                                    partial_counts_as=partial_counts_as)
    standard, expedited = f["standard"], f["expedited"]

    def share(item: int, title: str, ratio: dict) -> dict:
        return {"item": item, "title": title, "figures": [{"figure": "percent", **ratio, "value": ratio["percent"],
                                                           "unit": "percent"}]}

    def times(item: int, title: str, figures: dict) -> dict:
        n = figures["decided"]
        return {"item": item, "title": title, "figures": [
            {"figure": "average", "numerator": figures["total_hours_to_decision"], "denominator": n,
             "value": figures["average_hours_to_decision"], "unit": "hours"},
            {"figure": "median", "numerator": None, "denominator": n, "value": figures["median_hours_to_decision"],
             "unit": "hours"}]}

    return {
        "report": "CMS-0057-F prior authorization metrics",
        "year": year,
        "period": {"from": start.isoformat(), "to": end.isoformat(), "decided": "from <= decided_at < to"},
        "policy": policy,
        "partial_approvals_count_as": partial_counts_as,
        "items": [
            {"item": 1, "title": "Items and services that require prior authorization",
             "services": requiring_prior_authorization(date(year, 12, 31), policy)},
            share(2, "Standard prior authorization requests approved", standard["approved"]),
            share(3, "Standard prior authorization requests denied", standard["denied"]),
            share(4, "Standard prior authorization requests approved after appeal",
                  f["standard_approved_after_appeal"]),
            share(5, "Prior authorization requests whose review timeframe was extended, then approved",
                  f["extended_then_approved"]),
            share(6, "Expedited prior authorization requests approved", expedited["approved"]),
            share(7, "Expedited prior authorization requests denied", expedited["denied"]),
            times(8, "Standard requests: time from submission to determination", standard),
            times(9, "Expedited requests: time from submission to determination", expedited),
        ],
    }
