"""The case events. Past tense, immutable; ``apply`` only evolves state, never checks a rule.

Every event carries the envelope ``actor``, ``command`` (idempotency key and request digest,
or None), ``prev_hash`` and ``hash``; ``timestamp`` is the command's ``now`` (occurred_at).
Data fields are JSON values (instants as ISO 8601 strings) so what is hashed is what is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from domain.chain import stored_data

# The case's state (``domain.state.CaseState``): an event only sets its fields. Events do not
# import the aggregate; ``domain.case`` registers it as ``CaseEvent.aggregate_class``.
Case = Any


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_decision(case: Case, outcome: str, lines: list, valid_from, valid_to, authorization_number) -> None:
    """Shared by the events that set an outcome."""
    case.status = outcome
    case.outcome = outcome
    case.lines = list(lines)
    if authorization_number:
        case.authorization_number = authorization_number
        case.valid_from = valid_from
        case.valid_to = valid_to


def change_in_place(case: Case, kind: str, changes: dict) -> None:
    """An administrative update: the site, the contact or a code, changed on the authorization."""
    if kind == "site":
        case.site = {**case.site, **changes}
    elif kind == "contact":
        case.ordering_provider = {**case.ordering_provider, **changes}
    elif kind == "code_correction":
        def corrected(code: str) -> str:
            return changes["to_code"] if code == changes["from_code"] else code

        case.service = {**case.service,
                        "procedures": [{**p, "code": corrected(p["code"])} for p in case.service["procedures"]]}
        case.lines = [{**ln, "code": corrected(ln["code"])} for ln in case.lines]


class CaseEvent(Aggregate.Event):
    actor: dict
    command: dict | None
    prev_hash: str
    hash: str
    aggregate_class: ClassVar[type]  # the Case, registered by domain.case

    def mutate(self, aggregate: Case | None) -> Case:  # type: ignore[override]
        if aggregate is None:
            aggregate = self.aggregate_class.__new__(self.aggregate_class)
            aggregate.__base_init__(self.originator_id, self.originator_version, self.timestamp)
            aggregate.blank()
            self.apply(aggregate)
        else:
            super().mutate(aggregate)
        aggregate.last_hash = self.hash
        if self.command:
            done = aggregate.commands.setdefault(self.command["key"], {"digest": self.command["digest"]})
            done["version"] = self.originator_version
            done["at"] = self.timestamp
            if isinstance(self, AuthorizationSuperseded):
                done["successor"] = self.successor_case_id
        return aggregate

    def apply(self, case: Case) -> None:  # pragma: no cover - every event overrides
        pass

    @property
    def data(self) -> dict[str, Any]:
        return stored_data(dict(vars(self)))


# --- intake -------------------------------------------------------------------------------


class DraftStarted(CaseEvent):
    """A provider started a request to finish later ("finish later"): the policy, line of business and the
    fields entered so far (`draft`); it expires at `expires_at` unless submitted."""

    case_number: str
    policy: str
    policy_version: int
    line_of_business: str
    draft: dict
    expires_at: str

    def apply(self, case: Case) -> None:
        case.case_number = self.case_number
        case.policy = self.policy
        case.policy_version = self.policy_version
        case.line_of_business = self.line_of_business
        case.draft = self.draft
        case.draft_expires_at = at(self.expires_at)
        case.status = "draft"


class DraftExpired(CaseEvent):
    """Scheduler: a draft was not submitted by `expires_at`; the request is cancelled."""

    expires_at: str

    def apply(self, case: Case) -> None:
        case.status = "cancelled"
        case.draft_expires_at = None


class CaseSubmitted(CaseEvent):
    """A prior-authorization request was accepted: plan policy and its version, line of business, member,
    ordering provider, rendering site, service (procedures, diagnoses, date of service), urgency as
    requested and as processed, whether it is retrospective, clinical answers, documents, channel,
    and the decision clocks (`decision_due_at` is the hard limit). Always a case's first event, or
    the one after DraftStarted."""

    case_number: str
    policy: str
    policy_version: int
    line_of_business: str
    member: dict
    ordering_provider: dict
    site: dict
    service: dict
    urgent_requested: bool
    urgent: bool
    urgent_note: str | None
    retro: bool
    clinical: dict
    documents: list
    channel: str
    received_at: str
    decision_due_at: str
    decision_warning_at: str
    decision_target_at: str
    predecessor_case_id: str | None

    def apply(self, case: Case) -> None:
        case.case_number = self.case_number
        case.policy = self.policy
        case.policy_version = self.policy_version
        case.line_of_business = self.line_of_business
        case.member = self.member
        case.ordering_provider = self.ordering_provider
        case.site = self.site
        case.service = self.service
        case.urgent_requested = self.urgent_requested
        case.urgent = self.urgent
        case.urgent_note = self.urgent_note
        case.retro = self.retro
        case.clinical = self.clinical
        case.documents = list(self.documents)
        case.channel = self.channel
        case.received_at = at(self.received_at)
        case.decision_due_at = at(self.decision_due_at)
        case.decision_warning_at = at(self.decision_warning_at)
        case.decision_target_at = at(self.decision_target_at)
        case.predecessor_case_id = self.predecessor_case_id
        case.draft = None
        case.draft_expires_at = None
        case.status = "pending"


class CaseAutoApproved(CaseEvent):
    """The policy's rules approved the request on submission (the actor is the rules: kind `system`); rules
    never deny. Carries the authorization number and validity."""

    rule: dict
    lines: list
    authorization_number: str
    valid_from: str
    valid_to: str

    def apply(self, case: Case) -> None:
        record_decision(case, "approved", self.lines, at(self.valid_from), at(self.valid_to), self.authorization_number)
        case.determined_at = self.timestamp
        case.decided_by = "rules"


# --- information and holds ------------------------------------------------------------------


class CaseHeld(CaseEvent):
    """A reviewer pended the case for information: the items requested and the instant (`due_at`) by which
    they must arrive."""

    requested_items: list
    due_at: str

    def apply(self, case: Case) -> None:
        case.status = "held"
        case.hold = {"requested_items": list(self.requested_items), "due_at": self.due_at, "held_at": self.timestamp.isoformat()}
        case.hold_due_at = at(self.due_at)
        case.holds += 1


class ClinicalUploaded(CaseEvent):
    """Documents (id, name, media type, size, sha256) and/or notes were added to the case;
    `decision_target_at` is set when this completes the clinical information."""

    documents: list
    notes: str | None
    decision_target_at: str | None

    def apply(self, case: Case) -> None:
        case.documents.extend(self.documents)
        case.uploads += 1
        if self.decision_target_at:
            case.decision_target_at = at(self.decision_target_at)


class HoldReleased(CaseEvent):
    """The information a hold asked for arrived before its due instant (`reason`: clinical_uploaded or
    p2p_completed); review resumes."""

    reason: str
    decision_target_at: str

    def apply(self, case: Case) -> None:
        case.status = "pending"
        case.hold = None
        case.hold_due_at = None
        case.decision_target_at = at(self.decision_target_at)


class HoldLapsed(CaseEvent):
    """Scheduler: a hold's due instant passed with nothing received; review continues on the original
    submission."""

    due_at: str

    def apply(self, case: Case) -> None:
        case.status = "pending"
        case.hold = None
        case.hold_due_at = None
        case.hold_lapsed = True


# --- peer to peer ---------------------------------------------------------------------------


class P2PScheduled(CaseEvent):
    """A peer-to-peer call was scheduled: its level (pre_decision, reconsideration, consultative_only),
    slot, reviewer, contact, and any other cases it covers."""

    p2p_id: str
    level: str
    slot: str
    reviewer: str
    contact: dict
    also_cases: list

    def apply(self, case: Case) -> None:
        case.p2ps[self.p2p_id] = {
            "p2p_id": self.p2p_id,
            "level": self.level,
            "slot": self.slot,
            "reviewer": self.reviewer,
            "contact": self.contact,
            "also_cases": list(self.also_cases),
            "status": "scheduled",
        }


class P2PRescheduled(CaseEvent):
    """A scheduled peer-to-peer call moved to another slot."""

    p2p_id: str
    slot: str

    def apply(self, case: Case) -> None:
        case.p2ps[self.p2p_id] = {**case.p2ps[self.p2p_id], "slot": self.slot}


class P2PCancelled(CaseEvent):
    """A scheduled peer-to-peer call was cancelled, with the reason."""

    p2p_id: str
    reason: str

    def apply(self, case: Case) -> None:
        case.p2ps[self.p2p_id] = {**case.p2ps[self.p2p_id], "status": "cancelled", "reason": self.reason}


class P2PCompleted(CaseEvent):
    """A peer-to-peer call took place; `outcome` says what it concluded."""

    p2p_id: str
    outcome: str

    def apply(self, case: Case) -> None:
        case.p2ps[self.p2p_id] = {**case.p2ps[self.p2p_id], "status": "completed", "outcome": self.outcome}


class P2PSlotMissed(CaseEvent):
    """Scheduler: a peer-to-peer slot passed and the call was neither completed nor cancelled."""

    p2p_id: str
    slot: str

    def apply(self, case: Case) -> None:
        case.p2ps[self.p2p_id] = {**case.p2ps[self.p2p_id], "status": "missed"}


# --- the decision clock ---------------------------------------------------------------------


class PreDenialNoticeGiven(CaseEvent):
    """Medicare lines: the provider was told before a denial, by `channel` (a denial needs one notice by
    phone and one in writing, or one by phone_and_writing)."""

    channel: str
    notes: str | None

    def apply(self, case: Case) -> None:
        case.pre_denial_notice_at = self.timestamp
        case.pre_denial_channels = [*case.pre_denial_channels, self.channel]


class DecisionTimeframeExtended(CaseEvent):
    """The decision clock was extended once, for a reason the line of business allows, by `days`; carries
    the new due and warning instants. Notice goes to the provider and the member."""

    reason: str
    days: int
    decision_due_at: str
    decision_warning_at: str

    def apply(self, case: Case) -> None:
        case.timeframe_extended = True
        case.decision_due_at = at(self.decision_due_at)
        case.decision_warning_at = at(self.decision_warning_at)
        case.decision_due_soon = False


class DecisionDueSoon(CaseEvent):
    """Scheduler: 75% of the time from receipt to `decision_due_at` has passed without a determination."""

    decision_due_at: str

    def apply(self, case: Case) -> None:
        case.decision_due_soon = True


class DecisionOverdue(CaseEvent):
    """Scheduler: `decision_due_at` passed without a determination."""

    decision_due_at: str

    def apply(self, case: Case) -> None:
        case.decision_overdue = True


# --- determinations ------------------------------------------------------------------------


class CaseDetermined(CaseEvent):
    """A reviewer decided the request: outcome (approved, partially_approved, denied,
    alternative_recommended), the decision on each line with units, rationale and guidelines, the
    approved technique / fractions / IGRT where the program requires them, the validity and
    authorization number of an approval, the reviewer and credential, and the appeal,
    reconsideration and alternative deadlines that open."""

    outcome: str
    lines: list
    rationale: str | None
    guidelines: list
    technique: str | None
    fractions: int | None
    igrt: bool | None
    site_of_care_redirect: bool
    valid_from: str | None
    valid_to: str | None
    authorization_number: str | None
    reviewer: dict
    appeal_deadline: str | None
    reconsideration_deadline: str | None
    reconsideration_open: bool
    alternative_deadline: str | None

    def apply(self, case: Case) -> None:
        record_decision(case, self.outcome, self.lines, at(self.valid_from), at(self.valid_to), self.authorization_number)
        case.determined_at = self.timestamp
        case.decided_by = self.reviewer.get("id")
        case.appeal_deadline = at(self.appeal_deadline)
        case.reconsideration_open = self.reconsideration_open
        case.reconsideration_deadline = at(self.reconsideration_deadline)
        case.alternative_deadline = at(self.alternative_deadline)
        case.approval_details = {"technique": self.technique, "fractions": self.fractions, "igrt": self.igrt}


class AlternativeRecommendationAccepted(CaseEvent):
    """DME: the provider accepted the recommended alternative; the case is approved with this authorization
    number and validity."""

    authorization_number: str
    valid_from: str
    valid_to: str

    def apply(self, case: Case) -> None:
        record_decision(case, "approved", case.lines, at(self.valid_from), at(self.valid_to), self.authorization_number)
        case.alternative_deadline = None
        case.appeal_deadline = None
        case.reconsideration_open = False
        case.reconsideration_deadline = None


class AlternativeRecommendationLapsed(CaseEvent):
    """Scheduler, DME: the recommended alternative was not accepted by its deadline."""

    deadline: str

    def apply(self, case: Case) -> None:
        case.alternative_deadline = None
        case.alternative_lapsed = True


class ReconsiderationRequested(CaseEvent):
    """Commercial lines: the provider asked for a reconsideration of an adverse decision, with its reason
    and documents."""

    reason: str
    documents: list

    def apply(self, case: Case) -> None:
        case.reconsideration = {"requested_at": self.timestamp.isoformat(), "reason": self.reason, "outcome": None}
        case.reconsideration_open = False
        case.reconsideration_deadline = None
        case.documents.extend(self.documents)


class ReconsiderationDecided(CaseEvent):
    """A reviewer decided a reconsideration: outcome, lines, rationale, and for an approval the
    authorization number and validity."""

    outcome: str
    lines: list
    rationale: str | None
    reviewer: dict
    authorization_number: str | None
    valid_from: str | None
    valid_to: str | None

    def apply(self, case: Case) -> None:
        case.reconsideration = {**case.reconsideration, "outcome": self.outcome}
        record_decision(case, self.outcome, self.lines, at(self.valid_from), at(self.valid_to), self.authorization_number)


class ReconsiderationWindowClosed(CaseEvent):
    """Scheduler: the reconsideration window closed (`deadline`) without a request."""

    deadline: str

    def apply(self, case: Case) -> None:
        case.reconsideration_open = False
        case.reconsideration_deadline = None


class AppealFiled(CaseEvent):
    """An appeal of an adverse decision was filed at `level` (1, then 2), with its reason and filing
    instant."""

    level: int
    reason: str
    filed_at: str

    def apply(self, case: Case) -> None:
        case.appeals.append({"level": self.level, "reason": self.reason, "filed_at": self.filed_at, "outcome": None})
        case.appeal_deadline = None
        case.reconsideration_open = False
        case.reconsideration_deadline = None


class AppealDecided(CaseEvent):
    """An appeal was decided at its level: upheld, overturned (the case is approved) or
    partially_overturned (partly approved), with the lines, the authorization number and validity of
    an approval, and the next level's deadline."""

    level: int
    outcome: str
    rationale: str | None
    reviewer: dict
    lines: list
    authorization_number: str | None
    valid_from: str | None
    valid_to: str | None
    next_appeal_deadline: str | None

    def apply(self, case: Case) -> None:
        case.appeals[self.level - 1] = {**case.appeals[self.level - 1], "outcome": self.outcome}
        if self.outcome == "overturned":
            record_decision(case, "approved", self.lines, at(self.valid_from), at(self.valid_to), self.authorization_number)
        elif self.outcome == "partially_overturned":
            record_decision(case, "partially_approved", self.lines, at(self.valid_from), at(self.valid_to), self.authorization_number)
        case.appeal_deadline = at(self.next_appeal_deadline)


class AppealWindowClosed(CaseEvent):
    """Scheduler: the appeal window closed (`deadline`) without an appeal."""

    deadline: str

    def apply(self, case: Case) -> None:
        case.appeal_deadline = None
        case.appeal_window_closed = True


# --- the authorization after approval -------------------------------------------------------


class AuthorizationUpdated(CaseEvent):
    """An administrative change to an authorization in place (`kind`: site, code_correction or contact;
    `changes`: the new values)."""

    kind: str
    changes: dict

    def apply(self, case: Case) -> None:
        change_in_place(case, self.kind, self.changes)


class AuthorizationExtended(CaseEvent):
    """DME: an authorization's end was extended once, from `previous_valid_to` to `valid_to`."""

    previous_valid_to: str
    valid_to: str

    def apply(self, case: Case) -> None:
        case.valid_to = at(self.valid_to)
        case.authorization_extensions += 1


class AuthorizationSuperseded(CaseEvent):
    """A clinical change to an authorization opened a new linked case (`successor_case_id`) for review;
    this authorization stays until the successor is approved."""

    successor_case_id: str
    kind: str
    changes: dict

    def apply(self, case: Case) -> None:
        case.successor_case_id = self.successor_case_id


class AuthorizationWithdrawn(CaseEvent):
    """An authorization was withdrawn: on request, or because its successor (`successor_case_id`) was
    approved."""

    reason: str
    successor_case_id: str | None

    def apply(self, case: Case) -> None:
        case.status = "withdrawn"


class AuthorizationExpired(CaseEvent):
    """Scheduler: the authorization's `valid_to` passed."""

    valid_to: str

    def apply(self, case: Case) -> None:
        case.status = "expired"


class CaseCancelled(CaseEvent):
    """The provider cancelled the request before its determination, with the reason."""

    reason: str

    def apply(self, case: Case) -> None:
        case.status = "cancelled"
        case.hold = None
        case.hold_due_at = None


# --- correspondence -------------------------------------------------------------------------


class LetterIssued(CaseEvent):
    """Correspondence was sent: to the provider, the facility or the member, by e-notification, fax or
    mail; `letter_kind` names the letter (determination_<outcome>, approval,
    request_for_information, pre_denial_notice, timeframe_extension, appeal_<outcome>,
    reconsideration_<outcome>, alternative_accepted, authorization_updated, authorization_extended,
    authorization_withdrawn)."""

    recipient: str
    channel: str
    letter_kind: str
    address: dict

    def apply(self, case: Case) -> None:
        case.letters += 1


EVENT_TYPES: dict[str, type[CaseEvent]] = {
    cls.__name__: cls
    for cls in (
        DraftStarted, DraftExpired, CaseSubmitted, CaseAutoApproved, CaseHeld, ClinicalUploaded,
        HoldReleased, HoldLapsed, P2PScheduled, P2PRescheduled, P2PCancelled, P2PCompleted,
        P2PSlotMissed, PreDenialNoticeGiven, DecisionTimeframeExtended, DecisionDueSoon,
        DecisionOverdue, CaseDetermined, AlternativeRecommendationAccepted,
        AlternativeRecommendationLapsed, ReconsiderationRequested, ReconsiderationDecided,
        ReconsiderationWindowClosed, AppealFiled, AppealDecided, AppealWindowClosed,
        AuthorizationUpdated, AuthorizationExtended, AuthorizationSuperseded,
        AuthorizationWithdrawn, AuthorizationExpired, CaseCancelled, LetterIssued,
    )
}
