"""The Case aggregate: decide in the public command methods, then trigger; events evolve.

Every command takes a ``Context`` carrying ``now`` (no clock is read here), the actor and
the command identity (idempotency key and digest). Every rule lives in a command method
or comes from the case's policy row; the events' ``apply`` methods never refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import events as ev
from domain.calendar import BusinessCalendar
from domain.chain import GENESIS, event_hash
from domain.errors import FieldError, InvalidInput, NotApplicable, NotPermitted, RuleViolation
from domain.policy import (
    ADMINISTRATIVE_UPDATES,
    EXTENSION_REASONS,
    LINES_OF_BUSINESS,
    MEDICARE_LINES,
    PREFERENCE,
    UPDATE_KINDS,
    PolicyRow,
    policy_in_force,
    policy_version,
)
from domain.validation import (
    check_date,
    check_documents,
    check_icd10,
    check_instant,
    check_local_date,
    check_npi,
    check_procedure,
    check_tin,
)

UTC = timezone.utc
OUTCOMES = ("approved", "partially_approved", "denied", "alternative_recommended")
ADVERSE = frozenset({"partially_approved", "denied", "alternative_recommended"})
APPEAL_OUTCOMES = ("upheld", "overturned", "partially_overturned")
P2P_LEVELS = ("pre_decision", "reconsideration", "consultative_only")
PHYSICIAN_CREDENTIALS = frozenset({"MD", "DO"})
OPEN_STATUSES = frozenset({"pending", "held"})
AUTHORIZED_STATUSES = frozenset({"approved", "partially_approved"})
CLOSED_STATUSES = frozenset({"cancelled", "withdrawn", "expired"})
CHANNELS = ("portal", "phone", "fax")
NOTICE_CHANNELS = ("phone", "fax", "e-notification", "mail", "phone_and_writing")
TELEPHONIC_NOTICE = frozenset({"phone", "phone_and_writing"})
WRITTEN_NOTICE = frozenset({"fax", "e-notification", "mail", "phone_and_writing"})
P2P_MISSED_AFTER = timedelta(hours=1)
LATE_ENTRY_LIMIT = timedelta(days=366)  # a request entered late (phone, fax) was received within the last year
# a date of service at most five years before the request (retrospective windows refuse most of
# those with their own reason) and at most two years after it
DATE_OF_SERVICE_PAST = timedelta(days=5 * 366)
DATE_OF_SERVICE_AHEAD = timedelta(days=2 * 366)


def iso(instant: datetime | None) -> str | None:
    return instant.astimezone(UTC).isoformat() if instant is not None else None


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise ValueError(day)  # unreachable


@lru_cache(maxsize=8)
def calendar_for(tz: str) -> BusinessCalendar:
    return BusinessCalendar(tz)


@dataclass(frozen=True)
class Context:
    """Who is acting, when, and as which command (for idempotency)."""

    now: datetime
    actor: dict
    command: dict | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Context.now must be timezone-aware")
        object.__setattr__(self, "now", self.now.astimezone(UTC))


def rules_actor(row: PolicyRow) -> dict:
    """The actor of a decision made by the rules of a policy row (never a person)."""
    rule = " and ".join(f"{k}={v}" for k, v in (row.auto_approve_when or {}).items())
    return {"kind": "system", "id": f"rules:{row.key}", "policy": row.id, "policy_version": row.version,
            "rule": f"auto_approve_when: {rule}"}


def _need(value: Any, field: str, message: str = "is required") -> Any:
    if value is None or value == "" or value == [] or value == {}:
        raise InvalidInput(FieldError(field, message))
    return value


class Case(Aggregate):
    """A prior-authorization request, from draft or submission to its last event."""

    # ---- state -----------------------------------------------------------------------------

    def blank(self) -> None:
        self.last_hash = GENESIS
        self.commands: dict[str, dict] = {}  # idempotency key -> digest, last version, instant
        self.case_number = ""
        self.policy = ""
        self.policy_version = 0
        self.line_of_business = ""
        self.status = "draft"
        self.draft: dict | None = None
        self.draft_expires_at: datetime | None = None
        self.member: dict = {}
        self.ordering_provider: dict = {}
        self.site: dict = {}
        self.service: dict = {}
        self.urgent_requested = False
        self.urgent = False
        self.urgent_note: str | None = None
        self.retro = False
        self.clinical: dict = {}
        self.documents: list = []
        self.channel = "portal"
        self.received_at: datetime | None = None
        self.decision_due_at: datetime | None = None
        self.decision_warning_at: datetime | None = None
        self.decision_target_at: datetime | None = None
        self.decision_due_soon = False
        self.decision_overdue = False
        self.timeframe_extended = False
        self.hold: dict | None = None
        self.hold_due_at: datetime | None = None
        self.holds = 0
        self.hold_lapsed = False
        self.uploads = 0
        self.p2ps: dict[str, dict] = {}
        self.pre_denial_notice_at: datetime | None = None
        self.pre_denial_channels: list[str] = []
        self.outcome: str | None = None
        self.lines: list = []
        self.determined_at: datetime | None = None
        self.decided_by: str | None = None
        self.approval_details: dict = {}
        self.authorization_number: str | None = None
        self.valid_from: datetime | None = None
        self.valid_to: datetime | None = None
        self.authorization_extensions = 0
        self.appeal_deadline: datetime | None = None
        self.appeal_window_closed = False
        self.appeals: list[dict] = []
        self.reconsideration_open = False
        self.reconsideration_deadline: datetime | None = None
        self.reconsideration: dict | None = None
        self.alternative_deadline: datetime | None = None
        self.alternative_lapsed = False
        self.successor_case_id: str | None = None
        self.predecessor_case_id: str | None = None
        self.letters = 0

    def record_decision(self, outcome: str, lines: list, valid_from, valid_to, authorization_number) -> None:
        """Shared by the events that set an outcome (called from ``apply`` only)."""
        self.status = outcome
        self.outcome = outcome
        self.lines = list(lines)
        if authorization_number:
            self.authorization_number = authorization_number
            self.valid_from = valid_from
            self.valid_to = valid_to

    def apply_administrative_change(self, kind: str, changes: dict) -> None:
        if kind == "site":
            self.site = {**self.site, **changes}
        elif kind == "contact":
            self.ordering_provider = {**self.ordering_provider, **changes}
        elif kind == "code_correction":
            self.service = {
                **self.service,
                "procedures": [
                    {**p, "code": changes["to_code"]} if p["code"] == changes["from_code"] else p
                    for p in self.service["procedures"]
                ],
            }
            self.lines = [
                {**ln, "code": changes["to_code"]} if ln["code"] == changes["from_code"] else ln for ln in self.lines
            ]

    @property
    def row(self) -> PolicyRow:
        return policy_version(self.policy, self.policy_version)

    @property
    def calendar(self) -> BusinessCalendar:
        return calendar_for(self.row.timezone)

    @property
    def date_of_service(self) -> date | None:
        dos = self.service.get("date_of_service")
        return date.fromisoformat(dos) if dos else None

    @property
    def open_appeal(self) -> dict | None:
        return self.appeals[-1] if self.appeals and self.appeals[-1]["outcome"] is None else None

    def authorization_active(self, now: datetime) -> bool:
        return self.status in AUTHORIZED_STATUSES and self.valid_to is not None and now <= self.valid_to

    # ---- triggering (hash chain) ------------------------------------------------------------

    def _trigger(self, ctx: Context, event_class: type[ev.CaseEvent], **data: Any) -> None:
        version = self.version + 1
        h = event_hash(
            case_id=str(self.id), version=version, type_name=event_class.__name__, occurred_at=ctx.now,
            actor=ctx.actor, command=ctx.command, prev_hash=self.last_hash, data=data,
        )
        self.trigger_event(
            event_class, timestamp=ctx.now, actor=ctx.actor, command=ctx.command, prev_hash=self.last_hash, hash=h, **data
        )

    @classmethod
    def _start(cls, ctx: Context, case_id: UUID, event_class: type[ev.CaseEvent], **data: Any) -> Case:
        h = event_hash(
            case_id=str(case_id), version=1, type_name=event_class.__name__, occurred_at=ctx.now,
            actor=ctx.actor, command=ctx.command, prev_hash=GENESIS, data=data,
        )
        first = event_class(
            originator_id=case_id, originator_version=1, timestamp=ctx.now, actor=ctx.actor,
            command=ctx.command, prev_hash=GENESIS, hash=h, **data,
        )
        case = first.mutate(None)
        case.pending_events.append(first)
        return case

    def _letters(self, ctx: Context, letter_kind: str, family: str) -> None:
        """The letters of one kind, to the recipients and by the channels the policy row routes it."""
        for route in self.row.letter_routes(family):
            channel = route.channel
            if route.recipient == "provider":
                if channel == PREFERENCE:
                    web = self.channel == "portal" and self.ordering_provider.get("notify_by_email", True)
                    channel = "e-notification" if web else "fax"
                address = {"npi": self.ordering_provider.get("npi"), "fax": self.ordering_provider.get("fax")}
            elif route.recipient == "facility":
                address = {"npi": self.site.get("npi"), "name": self.site.get("name")}
            else:
                address = {"member_id": self.member.get("id")}
            self._trigger(ctx, ev.LetterIssued, recipient=route.recipient, channel=channel, letter_kind=letter_kind,
                          address=address)

    # ---- intake -----------------------------------------------------------------------------

    @classmethod
    def start_draft(cls, ctx: Context, *, case_id: UUID, case_number: str, policy: str, line_of_business: str, draft: dict) -> Case:
        row = policy_in_force(_need(policy, "policy"), calendar_for("America/New_York").local_date(ctx.now))
        _check_line(row, line_of_business)
        expires = calendar_for(row.timezone).end_of_day(ctx.now)
        return cls._start(
            ctx, case_id, ev.DraftStarted, case_number=case_number, policy=row.id, policy_version=row.version,
            line_of_business=line_of_business, draft=draft, expires_at=iso(expires),
        )

    @classmethod
    def submit(cls, ctx: Context, *, case_id: UUID, case_number: str, request: dict, predecessor_case_id: str | None = None) -> Case:
        data = intake(ctx, case_number, request, predecessor_case_id)
        case = cls._start(ctx, case_id, ev.CaseSubmitted, **data)
        case._after_submission(ctx)
        return case

    def submit_draft(self, ctx: Context, request: dict) -> None:
        if self.status != "draft":
            raise RuleViolation("not-a-draft", f"case is {self.status}; only a draft can be submitted")
        if self.draft_expires_at is not None and ctx.now > self.draft_expires_at:
            raise RuleViolation("draft-expired", f"the draft expired at {iso(self.draft_expires_at)}; start a new request")
        self._trigger(ctx, ev.CaseSubmitted, **intake(ctx, self.case_number, request, None))
        self._after_submission(ctx)

    def _after_submission(self, ctx: Context) -> None:
        row = self.row
        rule = row.auto_approve_when
        if rule and all(self.clinical.get(k) == v for k, v in rule.items()):
            # The rules approve, not the requesting provider: the actor names the policy row and the rule.
            ctx = Context(ctx.now, rules_actor(row), ctx.command)
            lines = [
                {"code": p["code"], "units_requested": p["units"], "units_approved": p["units"], "decision": "approved"}
                for p in self.service["procedures"]
            ]
            start, end = self._validity(ctx, lines, None, None, False)
            self._trigger(
                ctx, ev.CaseAutoApproved, rule=dict(rule), lines=lines,
                authorization_number=self._authorization_number(), valid_from=iso(start), valid_to=iso(end),
            )
            self._letters(ctx, "approval", "decision")

    def expire_draft(self, ctx: Context, expires_at: datetime) -> None:
        if self.status != "draft" or self.draft_expires_at != expires_at:
            raise RuleViolation("deadline-disarmed", "the draft was submitted, cancelled or already expired")
        _due(ctx, expires_at)
        self._trigger(ctx, ev.DraftExpired, expires_at=iso(expires_at))

    def cancel(self, ctx: Context, reason: str) -> None:
        _need(reason, "reason")
        if self.status not in OPEN_STATUSES | {"draft"}:
            raise RuleViolation("cancel-after-determination", f"case is {self.status}; only a request not yet determined can be cancelled (withdraw an authorization instead)")
        self._trigger(ctx, ev.CaseCancelled, reason=reason)

    # ---- holds and clinical information ---------------------------------------------------

    def place_hold(self, ctx: Context, requested_items: list[str], due_at: datetime | None = None) -> None:
        _need(requested_items, "requested_items", "name at least one item the provider must send")
        if self.status != "pending":
            raise RuleViolation("hold-not-pending", f"case is {self.status}; only a pending case can be held")
        if self.holds >= 1:
            raise RuleViolation("hold-once", "this request was already held once; it is determined on what was received")
        default = (
            ctx.now + timedelta(hours=self.row.hold_default_urgent_hours)
            if self.urgent
            else self.calendar.add_business_days(ctx.now, self.row.hold_default_business_days)
        )
        if due_at is None:
            due_at = min(default, self.decision_due_at)
        else:
            due_at = check_instant("due_at", due_at).astimezone(UTC)
            if due_at > self.decision_due_at:
                raise RuleViolation("hold-beyond-decision-due", f"the hold due instant {iso(due_at)} is after the decision due instant {iso(self.decision_due_at)}")
        if due_at <= ctx.now:
            raise InvalidInput(FieldError("due_at", "the hold due instant must be in the future"))
        self._trigger(ctx, ev.CaseHeld, requested_items=list(requested_items), due_at=iso(due_at))
        self._letters(ctx, "request_for_information", "hold")

    def upload_clinical(self, ctx: Context, documents: list[dict], notes: str | None = None) -> None:
        if not documents and not notes:
            raise InvalidInput(FieldError("documents", "send at least one document or a note"))
        if self.status in CLOSED_STATUSES or self.status == "draft":
            raise RuleViolation("case-closed", f"case is {self.status}; clinical information can no longer be added")
        docs = check_documents("documents", documents or [], urgent=self.urgent)
        if self.status == "held" and ctx.now >= self.hold_due_at:
            self._trigger(ctx, ev.HoldLapsed, due_at=iso(self.hold_due_at))
        target = self.calendar.add_business_days(ctx.now, self.row.decision_target_business_days)
        open_request = self.status in OPEN_STATUSES
        self._trigger(ctx, ev.ClinicalUploaded, documents=docs, notes=notes, decision_target_at=iso(target) if open_request else None)
        if self.status == "held":
            self._trigger(ctx, ev.HoldReleased, reason="clinical_uploaded", decision_target_at=iso(target))
            for p2p in list(self.p2ps.values()):
                if p2p["status"] == "scheduled" and p2p["level"] == "pre_decision":
                    self._trigger(ctx, ev.P2PCancelled, p2p_id=p2p["p2p_id"], reason="clinical uploaded: the hold ended")

    def lapse_hold(self, ctx: Context, due_at: datetime) -> None:
        if self.status != "held" or self.hold_due_at != due_at:
            raise RuleViolation("deadline-disarmed", "the hold was released, lapsed already or was re-dated")
        _due(ctx, due_at)
        self._trigger(ctx, ev.HoldLapsed, due_at=iso(due_at))

    # ---- peer to peer ---------------------------------------------------------------------

    def p2p_eligibility(self, now: datetime) -> dict:
        row = self.row
        if self.status == "held" and self.hold_due_at and now < self.hold_due_at:
            if row.pre_decision_p2p:
                return _eligibility(True, "pre_decision", self.hold_due_at, False, "A pre-decision peer-to-peer may be held instead of sending records, before the hold due date.")
            return _eligibility(False, None, None, False, "This program does not offer a pre-decision peer-to-peer; send the requested information.")
        if self.status in OPEN_STATUSES | {"draft"}:
            return _eligibility(False, None, None, False, "No peer-to-peer is offered before a determination unless the case is held for information.")
        if self.status in CLOSED_STATUSES:
            return _eligibility(False, None, None, False, f"The case is {self.status}.")
        if self.reconsideration_allowed(now):
            return _eligibility(True, "reconsideration", self.reconsideration_deadline, False, "A reconsideration peer-to-peer may change the decision.")
        return _eligibility(True, "consultative_only", None, True, "Post-decision options are exhausted or not offered: a peer-to-peer is consultative only and cannot change the decision.")

    def schedule_p2p(self, ctx: Context, *, p2p_id: str, level: str, slot: datetime, reviewer: str, contact: dict, also_cases: list[str] = ()) -> None:
        if level not in P2P_LEVELS:
            raise InvalidInput(FieldError("level", f"must be one of {', '.join(P2P_LEVELS)}"))
        slot = check_instant("slot", slot).astimezone(UTC)
        _need(reviewer, "reviewer")
        _need((contact or {}).get("name"), "contact.name")
        _need((contact or {}).get("phone"), "contact.phone")
        if p2p_id in self.p2ps:
            raise RuleViolation("p2p-exists", f"P2P {p2p_id} is already on this case")
        if any(p["status"] == "scheduled" for p in self.p2ps.values()):
            raise RuleViolation("p2p-already-scheduled", "a P2P is already scheduled on this case; reschedule or cancel it")
        self._check_slot(ctx, level, slot)
        self._trigger(ctx, ev.P2PScheduled, p2p_id=p2p_id, level=level, slot=iso(slot), reviewer=reviewer, contact=dict(contact), also_cases=list(also_cases))

    def _check_slot(self, ctx: Context, level: str, slot: datetime) -> None:
        if slot <= ctx.now:
            raise InvalidInput(FieldError("slot", "the P2P slot must be in the future"))
        eligibility = self.p2p_eligibility(ctx.now)
        if not eligibility["eligible"] or eligibility["level"] != level:
            offered = eligibility["level"] or "none"
            raise RuleViolation("p2p-not-eligible", f"a {level} P2P is not available now (offered: {offered}). {eligibility['message']}")
        if level == "pre_decision" and slot >= self.hold_due_at:
            raise RuleViolation("p2p-after-hold-due", f"a pre-decision P2P must take place before the hold due instant {iso(self.hold_due_at)}")
        if level == "reconsideration" and self.reconsideration_deadline and slot > self.reconsideration_deadline:
            raise RuleViolation("p2p-after-reconsideration-window", f"the reconsideration P2P must take place by {iso(self.reconsideration_deadline)}")

    def _scheduled_p2p(self, p2p_id: str) -> dict:
        p2p = self.p2ps.get(p2p_id)
        if p2p is None:
            raise RuleViolation("p2p-unknown", f"no P2P {p2p_id} on this case")
        if p2p["status"] != "scheduled":
            raise RuleViolation("p2p-not-scheduled", f"P2P {p2p_id} is {p2p['status']}")
        return p2p

    def reschedule_p2p(self, ctx: Context, p2p_id: str, slot: datetime) -> None:
        p2p = self._scheduled_p2p(p2p_id)
        slot = check_instant("slot", slot).astimezone(UTC)
        self._check_slot(ctx, p2p["level"], slot)
        self._trigger(ctx, ev.P2PRescheduled, p2p_id=p2p_id, slot=iso(slot))

    def cancel_p2p(self, ctx: Context, p2p_id: str, reason: str) -> None:
        self._scheduled_p2p(p2p_id)
        _need(reason, "reason", "a cancelled P2P needs a reason")
        self._trigger(ctx, ev.P2PCancelled, p2p_id=p2p_id, reason=reason)

    def complete_p2p(self, ctx: Context, p2p_id: str, outcome: str) -> None:
        p2p = self._scheduled_p2p(p2p_id)
        _need(outcome, "outcome")
        if ctx.now < datetime.fromisoformat(p2p["slot"]):
            raise RuleViolation("p2p-not-started", f"the P2P is scheduled for {p2p['slot']}; it cannot be completed before it starts")
        self._trigger(ctx, ev.P2PCompleted, p2p_id=p2p_id, outcome=outcome)
        if p2p["level"] == "pre_decision" and self.status == "held":
            target = self.calendar.add_business_days(ctx.now, self.row.decision_target_business_days)
            self._trigger(ctx, ev.HoldReleased, reason="p2p_completed", decision_target_at=iso(target))

    def miss_p2p(self, ctx: Context, p2p_id: str, slot: datetime) -> None:
        p2p = self.p2ps.get(p2p_id)
        if p2p is None or p2p["status"] != "scheduled" or p2p["slot"] != iso(slot):
            raise RuleViolation("deadline-disarmed", "the P2P was completed, cancelled or moved")
        _due(ctx, slot + P2P_MISSED_AFTER)
        self._trigger(ctx, ev.P2PSlotMissed, p2p_id=p2p_id, slot=iso(slot))

    # ---- the decision clock ---------------------------------------------------------------

    def give_pre_denial_notice(self, ctx: Context, channel: str, notes: str | None = None) -> None:
        if channel not in NOTICE_CHANNELS:
            raise InvalidInput(FieldError("channel", f"must be one of {', '.join(NOTICE_CHANNELS)}"))
        if self.status not in OPEN_STATUSES:
            raise RuleViolation("notice-after-determination", f"case is {self.status}; a pre-denial notice is given before the determination")
        self._trigger(ctx, ev.PreDenialNoticeGiven, channel=channel, notes=notes)
        self._letters(ctx, "pre_denial_notice", "pre_denial_notice")

    def extend_timeframe(self, ctx: Context, reason: str, days: int) -> None:
        if self.status not in OPEN_STATUSES:
            raise RuleViolation("extension-after-determination", f"case is {self.status}; only an open request's clock can be extended")
        if self.timeframe_extended:
            raise RuleViolation("extension-once", "the decision timeframe was already extended once for this request")
        rule = self.row.timeframe_extensions[self.line_of_business]
        if reason not in EXTENSION_REASONS:
            raise InvalidInput(FieldError("reason", f"unknown reason {reason!r}; one of {', '.join(sorted(EXTENSION_REASONS))}"))
        if reason not in rule.reasons:
            raise RuleViolation("extension-reason-not-allowed", f"{reason!r} does not allow extending a {self.line_of_business} request; allowed: {', '.join(sorted(rule.reasons))}")
        if self.urgent and not rule.allowed_when_urgent:
            raise RuleViolation("extension-not-for-urgent", f"an urgent {self.line_of_business} request cannot be extended beyond {self.row.urgent_decision_hours} h")
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= rule.max_days:
            raise InvalidInput(FieldError("days", f"must be between 1 and {rule.max_days} calendar days for {self.line_of_business}"))
        if ctx.now >= self.decision_due_at:
            raise RuleViolation("extension-after-due", f"the decision was due at {iso(self.decision_due_at)}; the clock can only be extended before it runs out")
        due = self.decision_due_at + timedelta(days=days)
        self._trigger(ctx, ev.DecisionTimeframeExtended, reason=reason, days=days, decision_due_at=iso(due), decision_warning_at=iso(_warning(self.received_at, due)))
        self._letters(ctx, "timeframe_extension", "timeframe_extension")

    def warn_decision_due(self, ctx: Context, warning_at: datetime) -> None:
        if self.status not in OPEN_STATUSES or self.decision_due_soon or self.decision_warning_at != warning_at:
            raise RuleViolation("deadline-disarmed", "the case was determined, warned already or its clock moved")
        _due(ctx, warning_at)
        self._trigger(ctx, ev.DecisionDueSoon, decision_due_at=iso(self.decision_due_at))

    def mark_decision_overdue(self, ctx: Context, due_at: datetime) -> None:
        if self.status not in OPEN_STATUSES or self.decision_overdue or self.decision_due_at != due_at:
            raise RuleViolation("deadline-disarmed", "the case was determined, marked already or its clock moved")
        _due(ctx, due_at)
        self._trigger(ctx, ev.DecisionOverdue, decision_due_at=iso(due_at))

    # ---- determination --------------------------------------------------------------------

    def determine(
        self, ctx: Context, *, outcome: str, lines: list[dict] | None = None, rationale: str | None = None,
        guidelines: list[str] | None = None, valid_from: date | str | None = None, valid_to: date | str | None = None,
        technique: str | None = None, fractions: int | None = None, igrt: bool | None = None,
        site_of_care_redirect: bool = False,
    ) -> None:
        row = self.row
        if outcome not in OUTCOMES:
            raise InvalidInput(FieldError("outcome", f"must be one of {', '.join(OUTCOMES)}"))
        if self.status == "held":
            raise RuleViolation("case-held", f"the case is held for information until {iso(self.hold_due_at)}; it is determined after the information arrives or the hold lapses")
        if self.status != "pending":
            raise RuleViolation("already-determined", f"case is {self.status}; a determination is made once (use reconsideration or appeal)")
        if outcome == "alternative_recommended" and row.alternative_acceptance_business_days is None:
            raise RuleViolation("alternative-not-offered", f"{row.program} has no alternative recommendations")
        if outcome == "partially_approved" and row.partial_approval == "none":
            raise RuleViolation("no-partial-approval", f"{row.program} makes no partial approvals: approve or deny the request")
        self._check_adverse(ctx, outcome, rationale, guidelines)
        if outcome in ADVERSE and self.line_of_business in row.pre_denial_notice_lines:
            self._check_pre_denial_notice()
        decided = self._decide_lines(outcome, lines)
        details = {"technique": technique, "fractions": fractions, "igrt": igrt}
        approves = outcome in ("approved", "partially_approved")
        if approves:
            missing = [k for k in row.approval_requires if details.get(k) is None]
            if missing:
                raise InvalidInput([FieldError(k, f"an approval under {row.program} states {k}") for k in missing])
            if fractions is not None and (not isinstance(fractions, int) or isinstance(fractions, bool) or fractions < 1):
                raise InvalidInput(FieldError("fractions", "must be a positive whole number"))
        if site_of_care_redirect and row.validity.site_of_care_redirect_days is None:
            raise RuleViolation("no-site-of-care-redirect", f"{row.program} has no site-of-care redirect authorization")
        start = end = None
        if approves:
            start, end = self._validity(ctx, decided, valid_from, valid_to, site_of_care_redirect)
        review_day = self.calendar.local_date(ctx.now)
        appeal_deadline = recon_deadline = alt_deadline = None
        recon_open = False
        if outcome in ADVERSE:
            window = row.appeal_window_days.get(self.line_of_business)
            if window:
                appeal_deadline = self.calendar.end_of_day(review_day + timedelta(days=window))
            if row.reconsideration_allowed_for(self.line_of_business):
                if row.reconsideration == "before_date_of_service":
                    dos_end = self.calendar.end_of_day(self.date_of_service)
                    recon_open, recon_deadline = (ctx.now <= dos_end), (dos_end if ctx.now <= dos_end else None)
                else:
                    recon_open = True
            if outcome == "alternative_recommended":
                alt_deadline = self.calendar.end_of_day(
                    self.calendar.add_business_days_to_date(review_day, row.alternative_acceptance_business_days)
                )
        self._trigger(
            ctx, ev.CaseDetermined, outcome=outcome, lines=decided, rationale=rationale, guidelines=list(guidelines or []),
            technique=technique, fractions=fractions, igrt=igrt, site_of_care_redirect=bool(site_of_care_redirect),
            valid_from=iso(start), valid_to=iso(end), authorization_number=self._authorization_number() if approves else None,
            reviewer=_reviewer(ctx), appeal_deadline=iso(appeal_deadline), reconsideration_deadline=iso(recon_deadline),
            reconsideration_open=recon_open, alternative_deadline=iso(alt_deadline),
        )
        self._letters(ctx, f"determination_{outcome}", "decision")

    def _check_pre_denial_notice(self) -> None:
        """Medicare lines: the provider is told telephonically and in writing before a denial (seed 000)."""
        channels = set(self.pre_denial_channels)
        missing = [what for what, by in (("telephonically", TELEPHONIC_NOTICE), ("in writing", WRITTEN_NOTICE))
                   if not channels & by]
        if missing:
            given = f" (given so far: {', '.join(sorted(channels))})" if channels else ""
            raise RuleViolation(
                "pre-denial-notice-required",
                f"on a Medicare line the provider is notified telephonically and in writing before a denial is issued; "
                f"not yet notified {' or '.join(missing)}{given}",
            )

    def _check_adverse(self, ctx: Context, outcome: str, rationale: str | None, guidelines: list[str] | None) -> None:
        if outcome in ADVERSE or outcome == "upheld":
            if ctx.actor.get("credential") not in PHYSICIAN_CREDENTIALS:
                raise NotPermitted("only a physician reviewer (MD or DO) may deny, partly deny or uphold a denial", rule="physician-required")
            _need(rationale, "rationale", "an adverse decision carries its rationale")
            if outcome != "upheld":
                _need(guidelines, "guidelines", "an adverse decision names the guideline relied on")

    def _decide_lines(self, outcome: str, lines: list[dict] | None) -> list[dict]:
        requested: dict[str, int] = {}
        for p in self.service["procedures"]:
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
            if decision not in ("approved", "denied", "partially_approved"):
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
            if line.get("rental") in ("days", "months"):
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
        if outcome == "partially_approved" and self.row.partial_approval == "per_line" and any(
            d["decision"] == "partially_approved" for d in decided
        ):
            raise RuleViolation("partial-approval-per-line", f"{self.row.program} approves or denies each code line whole")
        return decided

    def _authorization_number(self) -> str:
        return f"A{self.case_number}"

    def _validity(self, ctx: Context, lines: list[dict], valid_from, valid_to, redirect: bool) -> tuple[datetime, datetime]:
        """(valid_from, valid_to) instants of an approval under the row's validity rule."""
        row, cal = self.row, self.calendar
        rule = row.validity
        review_day = cal.local_date(ctx.now)
        # an approval starts no earlier than a year before its review and no later than a year after
        # its date of service: nothing a reviewer types can push the arithmetic below out of range
        earliest = min(review_day, self.date_of_service) - timedelta(days=366)
        latest = max(review_day, self.date_of_service) + timedelta(days=366)
        if valid_from is not None:
            start = check_local_date("valid_from", valid_from, cal.local_date, earliest=earliest, latest=latest)
        elif self.retro and row.retro and row.retro.approval_starts_on_request_date:
            start = cal.local_date(self.received_at)
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

    # ---- alternative recommendation (DME) -------------------------------------------------

    def accept_alternative(self, ctx: Context) -> None:
        if self.status != "alternative_recommended" or self.alternative_lapsed:
            raise RuleViolation("no-alternative-open", f"case is {self.status}; there is no alternative recommendation to accept")
        if ctx.now > self.alternative_deadline:
            raise RuleViolation("alternative-lapsed", f"the alternative could be accepted until {iso(self.alternative_deadline)}")
        start, end = self._validity(ctx, [{**ln, "units_approved": ln["units_requested"]} for ln in self.lines], None, None, False)
        self._trigger(ctx, ev.AlternativeRecommendationAccepted, authorization_number=self._authorization_number(), valid_from=iso(start), valid_to=iso(end))
        self._letters(ctx, "alternative_accepted", "decision")

    def lapse_alternative(self, ctx: Context, deadline: datetime) -> None:
        if self.status != "alternative_recommended" or self.alternative_deadline != deadline:
            raise RuleViolation("deadline-disarmed", "the alternative was accepted or already lapsed")
        _due(ctx, deadline)
        self._trigger(ctx, ev.AlternativeRecommendationLapsed, deadline=iso(deadline))

    # ---- reconsideration and appeal -------------------------------------------------------

    def reconsideration_allowed(self, now: datetime) -> bool:
        return (
            self.reconsideration_open
            and self.status in ADVERSE
            and (self.reconsideration_deadline is None or now <= self.reconsideration_deadline)
        )

    def request_reconsideration(self, ctx: Context, reason: str, documents: list[dict] | None = None) -> None:
        _need(reason, "reason")
        if self.line_of_business in MEDICARE_LINES:
            raise RuleViolation("medicare-no-reconsideration", "Medicare lines have no reconsideration; file an appeal with the plan")
        if not self.row.reconsideration_allowed_for(self.line_of_business):
            raise RuleViolation("reconsideration-not-offered", f"{self.row.program} ({self.row.plan}) offers no reconsideration; file an appeal")
        if self.status not in ADVERSE:
            raise RuleViolation("nothing-to-reconsider", f"case is {self.status}; only an adverse determination can be reconsidered")
        if self.appeals:
            raise RuleViolation("reconsideration-after-appeal", "an appeal was filed; reconsideration is no longer available")
        if self.reconsideration is not None:
            raise RuleViolation("reconsideration-once", "a reconsideration was already requested")
        if not self.reconsideration_allowed(ctx.now):
            raise RuleViolation("reconsideration-window-closed", "the reconsideration window has closed (on or before the anticipated date of service); file an appeal")
        docs = check_documents("documents", documents or [], urgent=self.urgent)
        self._trigger(ctx, ev.ReconsiderationRequested, reason=reason, documents=docs)

    def decide_reconsideration(self, ctx: Context, *, outcome: str, lines: list[dict] | None = None, rationale: str | None = None,
                               guidelines: list[str] | None = None, valid_to: date | str | None = None) -> None:
        if self.reconsideration is None or self.reconsideration.get("outcome") is not None:
            raise RuleViolation("no-reconsideration-open", "there is no reconsideration waiting for a decision")
        if outcome not in ("approved", "partially_approved", "denied"):
            raise InvalidInput(FieldError("outcome", "must be approved, partially_approved or denied"))
        if outcome == "partially_approved" and self.row.partial_approval == "none":
            raise RuleViolation("no-partial-approval", f"{self.row.program} makes no partial approvals")
        self._check_adverse(ctx, outcome, rationale, guidelines)
        decided = self._decide_lines(outcome, lines)
        start = end = None
        if outcome != "denied":
            start, end = self._validity(ctx, decided, None, valid_to, False)
        self._trigger(
            ctx, ev.ReconsiderationDecided, outcome=outcome, lines=decided, rationale=rationale, reviewer=_reviewer(ctx),
            authorization_number=self._authorization_number() if outcome != "denied" else None, valid_from=iso(start), valid_to=iso(end),
        )
        self._letters(ctx, f"reconsideration_{outcome}", "decision")

    def close_reconsideration_window(self, ctx: Context, deadline: datetime) -> None:
        if not self.reconsideration_open or self.reconsideration_deadline != deadline:
            raise RuleViolation("deadline-disarmed", "the reconsideration was requested, or the window already closed")
        _due(ctx, deadline)
        self._trigger(ctx, ev.ReconsiderationWindowClosed, deadline=iso(deadline))

    def file_appeal(self, ctx: Context, reason: str, filed_at: datetime | None = None) -> None:
        _need(reason, "reason")
        filed = ctx.now
        if filed_at is not None:  # an appeal entered late was filed after the decision it appeals
            filed = check_instant("filed_at", filed_at, earliest=self.determined_at or ctx.now).astimezone(UTC)
        if filed > ctx.now:
            raise InvalidInput(FieldError("filed_at", "an appeal cannot be filed in the future"))
        if self.status not in ADVERSE:
            raise RuleViolation("nothing-to-appeal", f"case is {self.status}; only an adverse determination can be appealed")
        if self.open_appeal is not None:
            raise RuleViolation("appeal-in-progress", f"appeal level {self.open_appeal['level']} is still being decided")
        if self.reconsideration is not None and self.reconsideration.get("outcome") is None:
            raise RuleViolation("reconsideration-in-progress", "a reconsideration is being decided; appeal after its decision")
        level = len(self.appeals) + 1
        if level > self.row.appeal_levels:
            raise RuleViolation("appeals-exhausted", f"all {self.row.appeal_levels} appeal levels were used")
        if self.appeal_deadline is None or filed > self.appeal_deadline:
            raise RuleViolation("appeal-window-closed", "the appeal window has closed")
        self._trigger(ctx, ev.AppealFiled, level=level, reason=reason, filed_at=iso(filed))

    def decide_appeal(self, ctx: Context, *, level: int, outcome: str, rationale: str | None = None, lines: list[dict] | None = None,
                      valid_to: date | str | None = None) -> None:
        appeal = self.open_appeal
        if appeal is None or appeal["level"] != level:
            raise RuleViolation("no-appeal-open", f"appeal level {level} is not waiting for a decision")
        if outcome not in APPEAL_OUTCOMES:
            raise InvalidInput(FieldError("outcome", f"must be one of {', '.join(APPEAL_OUTCOMES)}"))
        self._check_adverse(ctx, outcome, rationale, None)
        decided, start, end, number, next_deadline = self.lines, None, None, None, None
        if outcome == "partially_overturned":
            if self.row.partial_approval == "none":
                raise RuleViolation("no-partial-approval", f"{self.row.program} makes no partial approvals")
            decided = self._decide_lines("partially_approved", lines)
        elif outcome == "overturned":
            decided = self._decide_lines("approved", None)
        if outcome != "upheld":
            start, end = self._validity(ctx, decided, None, valid_to, False)
            number = self._authorization_number()
        if outcome != "overturned" and level < self.row.appeal_levels:
            window = self.row.appeal_window_days.get(self.line_of_business)
            if window:
                next_deadline = self.calendar.end_of_day(self.calendar.local_date(ctx.now) + timedelta(days=window))
        self._trigger(
            ctx, ev.AppealDecided, level=level, outcome=outcome, rationale=rationale, reviewer=_reviewer(ctx), lines=decided,
            authorization_number=number, valid_from=iso(start), valid_to=iso(end), next_appeal_deadline=iso(next_deadline),
        )
        self._letters(ctx, f"appeal_{outcome}", "appeal_decision")

    def close_appeal_window(self, ctx: Context, deadline: datetime) -> None:
        if self.appeal_deadline is None or self.appeal_deadline != deadline:
            raise RuleViolation("deadline-disarmed", "an appeal was filed or the window already closed")
        _due(ctx, deadline)
        self._trigger(ctx, ev.AppealWindowClosed, deadline=iso(deadline))

    # ---- the authorization ----------------------------------------------------------------

    def _require_active_authorization(self, ctx: Context) -> None:
        if not self.authorization_active(ctx.now):
            raise RuleViolation("no-active-authorization", f"case is {self.status}; there is no active authorization to change")

    def update_authorization_in_place(self, ctx: Context, kind: str, changes: dict) -> None:
        if kind not in UPDATE_KINDS:
            raise InvalidInput(FieldError("kind", f"must be one of {', '.join(sorted(UPDATE_KINDS))}"))
        if kind not in ADMINISTRATIVE_UPDATES:
            raise RuleViolation("update-not-offered", f"{self.row.program} authorizations take no {kind} update")
        self._require_active_authorization(ctx)
        changes = _check_administrative_changes(kind, changes or {}, self)
        self._trigger(ctx, ev.AuthorizationUpdated, kind=kind, changes=changes)
        self._letters(ctx, "authorization_updated", "authorization_change")

    def supersede(self, ctx: Context, *, kind: str, changes: dict, successor_case_id: str) -> dict:
        """Record that a clinical change opened a successor case; returns its request."""
        if kind not in UPDATE_KINDS:
            raise InvalidInput(FieldError("kind", f"must be one of {', '.join(sorted(UPDATE_KINDS))}"))
        if not self.row.update_is_clinical(kind):
            raise RuleViolation("update-not-offered", f"{self.row.program} authorizations take no {kind} update")
        self._require_active_authorization(ctx)
        if self.successor_case_id is not None:
            raise RuleViolation("successor-pending", f"a clinical change is already under review as case {self.successor_case_id}")
        _need(changes, "changes")
        request = self.successor_request(kind, changes)
        self._trigger(ctx, ev.AuthorizationSuperseded, successor_case_id=successor_case_id, kind=kind, changes=dict(changes))
        return request

    def successor_request(self, kind: str, changes: dict) -> dict:
        service = dict(self.service)
        for key in ("procedures", "diagnoses", "date_of_service"):
            if key in changes:
                service[key] = changes[key]
        clinical = {**self.clinical, **{k: v for k, v in changes.items() if k not in ("procedures", "diagnoses", "date_of_service")}, "update_kind": kind}
        return {
            "policy": self.policy, "line_of_business": self.line_of_business, "member": self.member,
            "ordering_provider": self.ordering_provider, "site": self.site, "service": service,
            "urgent": False, "clinical": clinical, "documents": [], "channel": self.channel,
        }

    def withdraw(self, ctx: Context, reason: str, successor_case_id: str | None = None) -> None:
        _need(reason, "reason")
        if self.status not in AUTHORIZED_STATUSES:
            raise RuleViolation("nothing-to-withdraw", f"case is {self.status}; only an approved authorization can be withdrawn")
        if successor_case_id is not None and successor_case_id != self.successor_case_id:
            raise RuleViolation("not-the-successor", f"{successor_case_id} is not this authorization's successor")
        self._trigger(ctx, ev.AuthorizationWithdrawn, reason=reason, successor_case_id=successor_case_id)
        self._letters(ctx, "authorization_withdrawn", "authorization_withdrawn")

    def extend_authorization(self, ctx: Context, valid_to: date | str) -> None:
        new_end = check_local_date("valid_to", valid_to, self.calendar.local_date)
        if self.row.authorization_extensions == 0:
            raise RuleViolation("extension-not-offered", f"{self.row.program} authorizations cannot be extended")
        self._require_active_authorization(ctx)
        if self.authorization_extensions >= self.row.authorization_extensions:
            raise RuleViolation("authorization-extended-once", "this authorization was already extended once")
        end = self.calendar.end_of_day(new_end)
        if end <= self.valid_to:
            raise InvalidInput(FieldError("valid_to", f"must be after the current end {iso(self.valid_to)}"))
        self._trigger(ctx, ev.AuthorizationExtended, previous_valid_to=iso(self.valid_to), valid_to=iso(end))
        self._letters(ctx, "authorization_extended", "authorization_change")

    def expire_authorization(self, ctx: Context, valid_to: datetime) -> None:
        if self.status not in AUTHORIZED_STATUSES or self.valid_to != valid_to:
            raise RuleViolation("deadline-disarmed", "the authorization was withdrawn, extended or already expired")
        _due(ctx, valid_to)
        self._trigger(ctx, ev.AuthorizationExpired, valid_to=iso(valid_to))


# ---- helpers ------------------------------------------------------------------------------


def _eligibility(eligible: bool, level: str | None, valid_until: datetime | None, consultative: bool, message: str) -> dict:
    return {"eligible": eligible, "level": level, "valid_until": iso(valid_until), "consultative_only": consultative, "message": message}


def _reviewer(ctx: Context) -> dict:
    return {"id": ctx.actor.get("id"), "credential": ctx.actor.get("credential")}


def _due(ctx: Context, instant: datetime) -> None:
    if ctx.now < instant:
        raise RuleViolation("deadline-not-due", f"not due until {iso(instant)}")


def _warning(received: datetime, due: datetime) -> datetime:
    """75% of the time from receipt to the decision due instant."""
    return received + (due - received) * 3 / 4


def _check_line(row: PolicyRow, line_of_business: str) -> None:
    if line_of_business not in LINES_OF_BUSINESS:
        raise InvalidInput(FieldError("line_of_business", "must be medicare, medicaid, duals or commercial"))
    if not row.serves(line_of_business):
        raise NotApplicable("line-not-served", f"{row.id} serves {', '.join(row.lines_of_business)}, not {line_of_business}")


def _check_administrative_changes(kind: str, changes: dict, case: Case) -> dict:
    if kind == "site":
        out = {}
        if "npi" in changes:
            out["npi"] = check_npi("changes.npi", changes["npi"])
        if "tin" in changes:
            out["tin"] = check_tin("changes.tin", changes["tin"])
        for key in ("name", "place_of_service"):
            if key in changes:
                out[key] = str(changes[key])
        if "place_of_service" in out and out["place_of_service"] in case.row.excluded_places_of_service:
            raise NotApplicable("place-of-service-excluded", case.row.excluded_places_of_service[out["place_of_service"]])
        return _need(out, "changes", "name the site fields that change (npi, tin, name, place_of_service)")
    if kind == "contact":
        out = {k: str(changes[k]) for k in ("name", "phone", "fax") if k in changes}
        if "notify_by_email" in changes:
            out["notify_by_email"] = bool(changes["notify_by_email"])
        return _need(out, "changes", "name the contact fields that change (name, phone, fax, notify_by_email)")
    # code_correction
    frm, to = str(changes.get("from_code", "")).upper(), str(changes.get("to_code", "")).upper()
    if frm not in {p["code"] for p in case.service["procedures"]}:
        raise InvalidInput(FieldError("changes.from_code", f"{frm!r} is not a code on this authorization"))
    check_procedure("changes.to_code", to, case.row.program_codes, case.row.id)
    return {"from_code": frm, "to_code": to}


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
    policy_id = _need(request.get("policy"), "policy")
    row = policy_in_force(policy_id, calendar_for("America/New_York").local_date(received))
    cal = calendar_for(row.timezone)
    _check_line(row, line)
    member = dict(_need(request.get("member"), "member"))
    for key in ("id", "first_name", "last_name"):
        _need(member.get(key), f"member.{key}")
    received_day = cal.local_date(received)
    dob = check_date("member.dob", _need(member.get("dob"), "member.dob"))
    if dob > received_day:
        raise InvalidInput(FieldError("member.dob", "date of birth is in the future"))
    member["dob"] = dob.isoformat()
    provider = dict(_need(request.get("ordering_provider"), "ordering_provider"))
    check_npi("ordering_provider.npi", provider.get("npi"))
    check_tin("ordering_provider.tin", provider.get("tin"))
    _need(provider.get("name"), "ordering_provider.name")
    provider["notify_by_email"] = bool(provider.get("notify_by_email", True))
    site = dict(_need(request.get("site"), "site"))
    check_npi("site.npi", site.get("npi"))
    check_tin("site.tin", site.get("tin"))
    _need(site.get("name"), "site.name")
    pos = str(_need(site.get("place_of_service"), "site.place_of_service"))
    if not (len(pos) == 2 and pos.isdigit()):
        raise InvalidInput(FieldError("site.place_of_service", "a two-digit CMS place-of-service code (e.g. 11 office, 12 home, 22 outpatient)"))
    site["place_of_service"] = pos
    service = dict(_need(request.get("service"), "service"))
    dos = check_date("service.date_of_service", _need(service.get("date_of_service"), "service.date_of_service"),
                     earliest=received_day - DATE_OF_SERVICE_PAST, latest=received_day + DATE_OF_SERVICE_AHEAD)
    procedures = []
    for i, p in enumerate(_need(service.get("procedures"), "service.procedures")):
        code = check_procedure(f"service.procedures[{i}].code", p.get("code"), row.program_codes, row.id)
        units = p.get("units", 1)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise InvalidInput(FieldError(f"service.procedures[{i}].units", "must be a whole number of at least 1"))
        procedures.append({"code": code, "units": units, "modifiers": [str(m) for m in p.get("modifiers") or []]})
    diagnoses = [check_icd10(f"service.diagnoses[{i}]", d) for i, d in enumerate(_need(service.get("diagnoses"), "service.diagnoses"))]
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
        "decision_warning_at": iso(_warning(received, due)),
        "decision_target_at": iso(cal.add_business_days(received, row.decision_target_business_days)),
        "predecessor_case_id": predecessor_case_id,
    }
