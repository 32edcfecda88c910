"""A case before its determination: intake, holds and clinical information, peer to peer, and
the decision clock. Decide in the command, then trigger; the events evolve the state."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from domain import events as ev
from domain.approval import rules_actor, validity
from domain.calendar import PLAN_TIME_ZONE
from domain.context import UTC, Context, calendar_for, due, iso, require
from domain.errors import FieldError, InvalidInput, RuleViolation
from domain.intake import check_line, intake, warning_instant
from domain.policy import EXTENSION_REASONS, policy_in_force
from domain.state import CaseState
from domain.validation import check_documents, check_instant
from domain.vocabulary import CLOSED_STATUSES, NOTICE_CHANNELS, OPEN_STATUSES, P2P_LEVELS

P2P_MISSED_AFTER = timedelta(hours=1)


class CaseUnderReview(CaseState):
    """Commands from the draft or submission up to the determination."""

    def _validity(self, ctx: Context, lines: list[dict], valid_from, valid_to, redirect: bool) -> tuple[datetime, datetime]:
        return validity(self.row, ctx.now, lines, date_of_service=self.date_of_service, retro=self.retro,
                        received_at=self.received_at, valid_from=valid_from, valid_to=valid_to, redirect=redirect)

    # ---- intake -----------------------------------------------------------------------------

    @classmethod
    def start_draft(cls, ctx: Context, *, case_id: UUID, case_number: str, policy: str, line_of_business: str, draft: dict) -> CaseUnderReview:
        row = policy_in_force(require(policy, "policy"), calendar_for(PLAN_TIME_ZONE).local_date(ctx.now))
        check_line(row, line_of_business)
        expires = calendar_for(row.timezone).end_of_day(ctx.now)
        return cls._start(
            ctx, case_id, ev.DraftStarted, case_number=case_number, policy=row.id, policy_version=row.version,
            line_of_business=line_of_business, draft=draft, expires_at=iso(expires),
        )

    @classmethod
    def submit(cls, ctx: Context, *, case_id: UUID, case_number: str, request: dict, predecessor_case_id: str | None = None) -> CaseUnderReview:
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
        due(ctx, expires_at)
        self._trigger(ctx, ev.DraftExpired, expires_at=iso(expires_at))

    def cancel(self, ctx: Context, reason: str) -> None:
        require(reason, "reason")
        if self.status not in OPEN_STATUSES | {"draft"}:
            raise RuleViolation("cancel-after-determination", f"case is {self.status}; only a request not yet determined can be cancelled (withdraw an authorization instead)")
        self._trigger(ctx, ev.CaseCancelled, reason=reason)

    # ---- holds and clinical information ---------------------------------------------------

    def place_hold(self, ctx: Context, requested_items: list[str], due_at: datetime | None = None) -> None:
        require(requested_items, "requested_items", "name at least one item the provider must send")
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
        due(ctx, due_at)
        self._trigger(ctx, ev.HoldLapsed, due_at=iso(due_at))

    # ---- peer to peer ---------------------------------------------------------------------

    def schedule_p2p(self, ctx: Context, *, p2p_id: str, level: str, slot: datetime, reviewer: str, contact: dict, also_cases: list[str] = ()) -> None:
        if level not in P2P_LEVELS:
            raise InvalidInput(FieldError("level", f"must be one of {', '.join(P2P_LEVELS)}"))
        slot = check_instant("slot", slot).astimezone(UTC)
        require(reviewer, "reviewer")
        require((contact or {}).get("name"), "contact.name")
        require((contact or {}).get("phone"), "contact.phone")
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
        require(reason, "reason", "a cancelled P2P needs a reason")
        self._trigger(ctx, ev.P2PCancelled, p2p_id=p2p_id, reason=reason)

    def complete_p2p(self, ctx: Context, p2p_id: str, outcome: str) -> None:
        p2p = self._scheduled_p2p(p2p_id)
        require(outcome, "outcome")
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
        due(ctx, slot + P2P_MISSED_AFTER)
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
        new_due = self.decision_due_at + timedelta(days=days)
        self._trigger(ctx, ev.DecisionTimeframeExtended, reason=reason, days=days, decision_due_at=iso(new_due),
                      decision_warning_at=iso(warning_instant(self.received_at, new_due)))
        self._letters(ctx, "timeframe_extension", "timeframe_extension")

    def warn_decision_due(self, ctx: Context, warning_at: datetime) -> None:
        if self.status not in OPEN_STATUSES or self.decision_due_soon or self.decision_warning_at != warning_at:
            raise RuleViolation("deadline-disarmed", "the case was determined, warned already or its clock moved")
        due(ctx, warning_at)
        self._trigger(ctx, ev.DecisionDueSoon, decision_due_at=iso(self.decision_due_at))

    def mark_decision_overdue(self, ctx: Context, due_at: datetime) -> None:
        if self.status not in OPEN_STATUSES or self.decision_overdue or self.decision_due_at != due_at:
            raise RuleViolation("deadline-disarmed", "the case was determined, marked already or its clock moved")
        due(ctx, due_at)
        self._trigger(ctx, ev.DecisionOverdue, decision_due_at=iso(due_at))
