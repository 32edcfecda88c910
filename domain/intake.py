"""Intake: whether prior authorization applies, and what a submission is (validated, its clocks
computed). Pure: the caller gives ``now`` in the Context."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.calendar import PLAN_TIME_ZONE
from domain.context import UTC, Context, calendar_for, iso, require
from domain.errors import FieldError, InvalidInput, NotApplicable, RuleViolation
from domain.policy import PolicyRow, policy_in_force
from domain.validation import (
    check_date,
    check_documents,
    check_icd10,
    check_instant,
    check_npi,
    check_procedure,
    check_tin,
)
from domain.vocabulary import CHANNELS, LINES_OF_BUSINESS

LATE_ENTRY_LIMIT = timedelta(days=366)  # a request entered late (phone, fax) was received within the last year
# a date of service at most five years before the request (retrospective windows refuse most of
# those with their own reason) and at most two years after it
DATE_OF_SERVICE_PAST = timedelta(days=5 * 366)
DATE_OF_SERVICE_AHEAD = timedelta(days=2 * 366)


def warning_instant(received: datetime, due: datetime) -> datetime:
    """75% of the time from receipt to the decision due instant."""
    return received + (due - received) * 3 / 4



def check_line(row: PolicyRow, line_of_business: str) -> None:
    if line_of_business not in LINES_OF_BUSINESS:
        raise InvalidInput(FieldError("line_of_business", "must be medicare, medicaid, duals or commercial"))
    if not row.serves(line_of_business):
        raise NotApplicable("line-not-served", f"{row.id} serves {', '.join(row.lines_of_business)}, not {line_of_business}")


def check_applies(row: PolicyRow, pos: str, dos: date, *, observation: bool = False, clinical: dict | None = None) -> None:
    """Raise NotApplicable, with the reason, where prior authorization does not apply."""
    clinical = clinical or {}
    if pos in row.excluded_places_of_service:
        raise NotApplicable("place-of-service-excluded", row.excluded_places_of_service[pos])
    if row.allowed_places_of_service is not None and pos not in row.allowed_places_of_service:
        raise NotApplicable("place-of-service-excluded", f"{row.program} covers place of service {', '.join(sorted(row.allowed_places_of_service))} only (home based)")
    if observation and row.observation_excluded:
        raise NotApplicable("observation-excluded", "23-hour observation services do not require prior authorization")
    for flag, reason in row.excluded_clinical_flags.items():
        if clinical.get(flag):
            raise NotApplicable(f"{flag.replace('_', '-')}-excluded", reason)
    if row.earliest_date_of_service and dos < row.earliest_date_of_service:
        raise NotApplicable("date-of-service-before-program", f"{row.program} covers dates of service from {row.earliest_date_of_service.isoformat()}")


def requirement(policy_id: str, place_of_service: str, date_of_service: date, *, observation: bool = False, today: date) -> dict:
    """Whether prior authorization applies to a service, and why not (GET /requirements)."""
    try:
        row = policy_in_force(policy_id, today)
        check_applies(row, place_of_service, date_of_service, observation=observation)
    except NotApplicable as exc:
        return {"required": False, "reason": exc.detail, "rule": exc.rule}
    return {"required": True, "reason": f"{row.program} ({row.plan}) requires prior authorization for this service", "rule": None}


def intake(ctx: Context, case_number: str, request: dict, predecessor_case_id: str | None) -> dict:
    """Validate a submission and compute its clocks: the CaseSubmitted data."""
    now = ctx.now
    received = now
    if request.get("submitted_at"):
        received = check_instant("submitted_at", request["submitted_at"], earliest=now - LATE_ENTRY_LIMIT).astimezone(UTC)
    if received > now:
        raise InvalidInput(FieldError("submitted_at", "a request cannot be received in the future"))
    line = request.get("line_of_business")
    policy_id = require(request.get("policy"), "policy")
    row = policy_in_force(policy_id, calendar_for(PLAN_TIME_ZONE).local_date(received))
    cal = calendar_for(row.timezone)
    check_line(row, line)
    member = dict(require(request.get("member"), "member"))
    for key in ("id", "first_name", "last_name"):
        require(member.get(key), f"member.{key}")
    received_day = cal.local_date(received)
    dob = check_date("member.dob", require(member.get("dob"), "member.dob"))
    if dob > received_day:
        raise InvalidInput(FieldError("member.dob", "date of birth is in the future"))
    member["dob"] = dob.isoformat()
    provider = dict(require(request.get("ordering_provider"), "ordering_provider"))
    check_npi("ordering_provider.npi", provider.get("npi"))
    check_tin("ordering_provider.tin", provider.get("tin"))
    require(provider.get("name"), "ordering_provider.name")
    provider["notify_by_email"] = bool(provider.get("notify_by_email", True))
    site = dict(require(request.get("site"), "site"))
    check_npi("site.npi", site.get("npi"))
    check_tin("site.tin", site.get("tin"))
    require(site.get("name"), "site.name")
    pos = str(require(site.get("place_of_service"), "site.place_of_service"))
    if not (len(pos) == 2 and pos.isdigit()):
        raise InvalidInput(FieldError("site.place_of_service", "a two-digit CMS place-of-service code (e.g. 11 office, 12 home, 22 outpatient)"))
    site["place_of_service"] = pos
    service = dict(require(request.get("service"), "service"))
    dos = check_date("service.date_of_service", require(service.get("date_of_service"), "service.date_of_service"),
                     earliest=received_day - DATE_OF_SERVICE_PAST, latest=received_day + DATE_OF_SERVICE_AHEAD)
    procedures = []
    for i, p in enumerate(require(service.get("procedures"), "service.procedures")):
        code = check_procedure(f"service.procedures[{i}].code", p.get("code"), row.program_codes, row.id)
        units = p.get("units", 1)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise InvalidInput(FieldError(f"service.procedures[{i}].units", "must be a whole number of at least 1"))
        procedures.append({"code": code, "units": units, "modifiers": [str(m) for m in p.get("modifiers") or []]})
    diagnoses = [check_icd10(f"service.diagnoses[{i}]", d) for i, d in enumerate(require(service.get("diagnoses"), "service.diagnoses"))]
    observation = bool(service.get("observation", False))
    clinical = dict(request.get("clinical") or {})
    check_applies(row, pos, dos, observation=observation, clinical=clinical)
    # --- retrospective requests
    retro = dos < received_day
    if retro and {p["code"] for p in procedures} & row.per_date_of_service_codes:
        raise RuleViolation(
            "interventional-pain-pre-service",
            f"interventional pain needs a separate pre-service request for each date of service; {dos} has passed",
        )
    if retro:
        window = row.retro
        if window is None:
            raise RuleViolation("retro-not-accepted", f"{row.program} accepts no retrospective requests; the date of service {dos} has passed")
        last = cal.add_business_days_to_date(dos, window.amount) if window.unit == "business_days" else dos + timedelta(days=window.amount)
        if received_day > last:
            unit = window.unit.replace("_", " ")
            raise RuleViolation("retro-window-passed", f"retrospective requests are accepted within {window.amount} {unit} of the date of service (until {last}); {window.refusal_hint}")
    # --- urgency and documents
    channel = request.get("channel") or "portal"
    if channel not in CHANNELS:
        raise InvalidInput(FieldError("channel", f"must be one of {', '.join(CHANNELS)}"))
    urgent_requested = bool(request.get("urgent", False))
    documents = check_documents("documents", request.get("documents") or [], urgent=urgent_requested)
    urgent, note = urgent_requested, None
    # a request taken by phone may be urgent without an upload (seeds 000, 001, 003, 004)
    if urgent_requested and row.urgent_requires_upload and not documents and channel != "phone":
        urgent, note = False, "marked urgent without a successful clinical upload: processed as standard"
    due = received + timedelta(hours=row.urgent_decision_hours) if urgent else received + timedelta(days=row.standard_limit_days[line])
    return {
        "case_number": case_number, "policy": row.id, "policy_version": row.version, "line_of_business": line,
        "member": member, "ordering_provider": provider, "site": site,
        "service": {"date_of_service": dos.isoformat(), "place_of_service": pos, "observation": observation, "procedures": procedures, "diagnoses": diagnoses},
        "urgent_requested": urgent_requested, "urgent": urgent, "urgent_note": note, "retro": retro, "clinical": clinical,
        "documents": documents, "channel": channel, "received_at": iso(received), "decision_due_at": iso(due),
        "decision_warning_at": iso(warning_instant(received, due)),
        "decision_target_at": iso(cal.add_business_days(received, row.decision_target_business_days)),
        "predecessor_case_id": predecessor_case_id,
    }
