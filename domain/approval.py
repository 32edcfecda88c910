"""Pure calculations on a policy row for an approval: the decision on each requested line, how
long the authorization is valid, and the actor of an approval made by the rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.context import calendar_for
from domain.errors import FieldError, InvalidInput, RuleViolation
from domain.policy import PolicyRow
from domain.validation import check_local_date
from domain.vocabulary import LINE_DECISIONS, RENTAL_UNITS


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise ValueError(day)  # unreachable


def rules_actor(row: PolicyRow) -> dict:
    """The actor of a decision made by the rules of a policy row (never a person)."""
    rule = " and ".join(f"{k}={v}" for k, v in (row.auto_approve_when or {}).items())
    return {"kind": "system", "id": f"rules:{row.key}", "policy": row.id, "policy_version": row.version,
            "rule": f"auto_approve_when: {rule}"}


def decide_lines(row: PolicyRow, procedures: list[dict], outcome: str, lines: list[dict] | None) -> list[dict]:
    """The per-line decisions of an outcome: every requested code decided once, units that add up."""
    requested: dict[str, int] = {}
    for p in procedures:
        requested[p["code"]] = requested.get(p["code"], 0) + p["units"]
    if not lines:
        if outcome == "partially_approved":
            raise InvalidInput(FieldError("lines", "a partial approval lists the decision on each line"))
        decision = "approved" if outcome == "approved" else "denied"
        return [
            {"code": c, "units_requested": u, "units_approved": u if decision == "approved" else 0, "decision": decision}
            for c, u in requested.items()
        ]
    decided, seen = [], set()
    for i, line in enumerate(lines):
        code = str(line.get("code", "")).upper()
        if code not in requested:
            raise InvalidInput(FieldError(f"lines[{i}].code", f"{code!r} was not requested on this case"))
        if code in seen:
            raise InvalidInput(FieldError(f"lines[{i}].code", f"{code!r} is decided twice"))
        seen.add(code)
        want = requested[code]
        decision = line.get("decision") or ("approved" if outcome == "approved" else "denied")
        if decision not in LINE_DECISIONS:
            raise InvalidInput(FieldError(f"lines[{i}].decision", "must be approved, partially_approved or denied"))
        units = line.get("units_approved")
        if units is None:
            units = want if decision == "approved" else 0
        if not isinstance(units, int) or isinstance(units, bool) or not 0 <= units <= want:
            raise InvalidInput(FieldError(f"lines[{i}].units_approved", f"must be between 0 and the {want} units requested"))
        if (decision == "approved" and units != want) or (decision == "denied" and units != 0) or (
            decision == "partially_approved" and not 0 < units < want
        ):
            raise InvalidInput(FieldError(f"lines[{i}].units_approved", f"{units} units do not fit the line decision {decision!r}"))
        entry = {"code": code, "units_requested": want, "units_approved": units, "decision": decision}
        if line.get("rental") in RENTAL_UNITS:
            entry["rental"] = line["rental"]
        decided.append(entry)
    missing = set(requested) - seen
    if missing:
        raise InvalidInput(FieldError("lines", f"every requested line is decided; missing {', '.join(sorted(missing))}"))
    approved_units = sum(d["units_approved"] for d in decided)
    requested_units = sum(d["units_requested"] for d in decided)
    consistent = {
        "approved": approved_units == requested_units,
        "denied": approved_units == 0,
        "alternative_recommended": approved_units == 0,
        "partially_approved": 0 < approved_units < requested_units,
    }[outcome]
    if not consistent:
        raise InvalidInput(FieldError("lines", f"the line decisions do not add up to {outcome!r}"))
    if outcome == "partially_approved" and row.partial_approval == "per_line" and any(
        d["decision"] == "partially_approved" for d in decided
    ):
        raise RuleViolation("partial-approval-per-line", f"{row.program} approves or denies each code line whole")
    return decided


def validity(row: PolicyRow, now: datetime, lines: list[dict], *, date_of_service: date, retro: bool,
             received_at: datetime, valid_from, valid_to, redirect: bool) -> tuple[datetime, datetime]:
    """(valid_from, valid_to) instants of an approval reviewed at ``now`` under the row's validity rule."""
    cal = calendar_for(row.timezone)
    rule = row.validity
    review_day = cal.local_date(now)
    # an approval starts no earlier than a year before its review and no later than a year after
    # its date of service: nothing a reviewer types can push the arithmetic below out of range
    earliest = min(review_day, date_of_service) - timedelta(days=366)
    latest = max(review_day, date_of_service) + timedelta(days=366)
    if valid_from is not None:
        start = check_local_date("valid_from", valid_from, cal.local_date, earliest=earliest, latest=latest)
    elif retro and row.retro and row.retro.approval_starts_on_request_date:
        start = cal.local_date(received_at)
    else:
        start = review_day
    given_end = None
    if valid_to is not None:
        given_end = check_local_date("valid_to", valid_to, cal.local_date, latest=latest + timedelta(days=5 * 366))
    if rule.kind == "days_from_review":
        limit = default = start + timedelta(days=rule.days)
    elif rule.kind == "months_from_determination":
        if redirect:
            limit = default = start + timedelta(days=rule.site_of_care_redirect_days)
        else:
            default, limit = add_months(start, rule.months_default), add_months(start, rule.months_max)
    elif rule.kind == "purchase_or_rental":
        ends = []
        for ln in lines:
            if ln["units_approved"] <= 0:
                continue
            if ln.get("rental") == "days":
                ends.append(start + timedelta(days=ln["units_approved"]))
            elif ln.get("rental") == "months":
                ends.append(add_months(start, ln["units_approved"]))
            else:
                ends.append(start + timedelta(days=rule.days))
        limit = default = max(ends)
    else:  # stated
        if given_end is None:
            raise InvalidInput(FieldError("valid_to", f"an approval under {row.program} states the treatment span (valid_to)"))
        limit = default = given_end
    end = given_end or default
    if end > limit:
        raise RuleViolation("validity-too-long", f"{row.program} approvals are valid until {limit.isoformat()} at the latest")
    if end < start:
        raise InvalidInput(FieldError("valid_to", "must not be before valid_from"))
    return cal.start_of_day(start), cal.end_of_day(end)
