"""The Case aggregate: the lifecycle state machine of a prior-authorization request.

Decide in the public command methods, then trigger; events evolve. Every command takes a
``Context`` carrying ``now`` (no clock is read here), the actor and the command identity
(idempotency key and digest). Every rule lives in a command method or comes from the case's
policy row; the events' ``apply`` methods never refuse. The commands before the determination
are in ``domain.review``; this module holds the determination and everything after it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain import events as ev
from domain.approval import decide_lines
from domain.context import UTC, Context, due, iso, require
from domain.errors import FieldError, InvalidInput, NotApplicable, NotPermitted, RuleViolation
from domain.review import CaseUnderReview
from domain.validation import check_documents, check_instant, check_local_date, check_npi, check_procedure, check_tin
from domain.vocabulary import (
    ADMINISTRATIVE_UPDATES,
    ADVERSE,
    APPEAL_OUTCOMES,
    AUTHORIZED_STATUSES,
    MEDICARE_LINES,
    OUTCOMES,
    PHYSICIAN_CREDENTIALS,
    RECONSIDERATION_OUTCOMES,
    TELEPHONIC_NOTICE,
    UPDATE_KINDS,
    WRITTEN_NOTICE,
)


class Case(CaseUnderReview):
    """A prior-authorization request, from draft or submission to its last event."""

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

    def _decide_lines(self, outcome: str, lines: list[dict] | None) -> list[dict]:
        return decide_lines(self.row, self.service["procedures"], outcome, lines)

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
            require(rationale, "rationale", "an adverse decision carries its rationale")
            if outcome != "upheld":
                require(guidelines, "guidelines", "an adverse decision names the guideline relied on")



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
        due(ctx, deadline)
        self._trigger(ctx, ev.AlternativeRecommendationLapsed, deadline=iso(deadline))

    # ---- reconsideration and appeal -------------------------------------------------------

    def request_reconsideration(self, ctx: Context, reason: str, documents: list[dict] | None = None) -> None:
        require(reason, "reason")
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
        if outcome not in RECONSIDERATION_OUTCOMES:
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
        due(ctx, deadline)
        self._trigger(ctx, ev.ReconsiderationWindowClosed, deadline=iso(deadline))

    def file_appeal(self, ctx: Context, reason: str, filed_at: datetime | None = None) -> None:
        require(reason, "reason")
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
        due(ctx, deadline)
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
        require(changes, "changes")
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
        require(reason, "reason")
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
        due(ctx, valid_to)
        self._trigger(ctx, ev.AuthorizationExpired, valid_to=iso(valid_to))


# ---- helpers ------------------------------------------------------------------------------


def _reviewer(ctx: Context) -> dict:
    return {"id": ctx.actor.get("id"), "credential": ctx.actor.get("credential")}


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
        return require(out, "changes", "name the site fields that change (npi, tin, name, place_of_service)")
    if kind == "contact":
        out = {k: str(changes[k]) for k in ("name", "phone", "fax") if k in changes}
        if "notify_by_email" in changes:
            out["notify_by_email"] = bool(changes["notify_by_email"])
        return require(out, "changes", "name the contact fields that change (name, phone, fax, notify_by_email)")
    # code_correction
    frm, to = str(changes.get("from_code", "")).upper(), str(changes.get("to_code", "")).upper()
    if frm not in {p["code"] for p in case.service["procedures"]}:
        raise InvalidInput(FieldError("changes.from_code", f"{frm!r} is not a code on this authorization"))
    check_procedure("changes.to_code", to, case.row.program_codes, case.row.id)
    return {"from_code": frm, "to_code": to}


ev.CaseEvent.aggregate_class = Case  # events rebuild a Case without importing it
