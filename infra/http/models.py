"""What the API answers, as schemas: the case view, its history, the read models' rows, and the
small answers of uploads, probes and operations. They document the answers (OpenAPI) and the
test suite checks every answer against them; the handlers answer the dicts the application and
the read models build, unchanged. Objects that came in as free-form JSON (a member, a site, the
changes of an update) take more properties than they name."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.events import EVENT_TYPES
from domain.policy import POLICY_IDS
from domain.vocabulary import (APPEAL_OUTCOMES, LINE_DECISIONS, LINES_OF_BUSINESS, OUTCOMES, P2P_LEVELS,
                               POST_DECISION_OPTIONS, RENTAL_UNITS, STATUSES)
from projections.facts import BUCKETS

Instant = Annotated[datetime, Field(description="an instant, ISO 8601 with its UTC offset")]
CaseNumber = Annotated[str, Field(pattern=r"^[0-9]{10}$", description="the case number: 10 digits")]
AuthorizationNumber = Annotated[str, Field(pattern=r"^A[0-9]{10}$", description="A + the case number")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Status = Literal[STATUSES]
Policy = Literal[POLICY_IDS]
Bucket = Literal[BUCKETS]


class Answer(BaseModel):
    """Every property named, none more."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """The properties named, and any others the request carried."""

    model_config = ConfigDict(extra="allow")


# ---- the case view -------------------------------------------------------------------------------------


class MemberView(Open):
    id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    dob: date | None = None


class ProviderView(Open):
    npi: str | None = None
    tin: str | None = None
    name: str | None = None
    phone: str | None = None
    fax: str | None = None
    notify_by_email: bool | None = None


class SiteView(Open):
    npi: str | None = None
    tin: str | None = None
    name: str | None = None
    place_of_service: str | None = None


class ProcedureView(Open):
    code: str
    units: int = Field(ge=1)
    modifiers: list[str] = []


class ServiceView(Open):
    date_of_service: date | None = None
    procedures: list[ProcedureView] = []
    diagnoses: list[str] = []
    observation: bool | None = None


class DocumentView(Answer):
    document_id: Sha256 | None = Field(default=None, description="the id POST /documents returned (its sha256)")
    name: str
    media_type: str | None = None
    size: int = Field(ge=0)
    sha256: Sha256


class HoldView(Answer):
    requested_items: list[str]
    due_at: Instant
    held_at: Instant


class LineView(Answer):
    code: str
    units_requested: int = Field(ge=0)
    units_approved: int = Field(ge=0)
    decision: Literal[LINE_DECISIONS]
    rental: Literal[RENTAL_UNITS] | None = None


class ApprovalView(Answer):
    technique: str | None
    fractions: int | None = Field(ge=1)
    igrt: bool | None


class ContactView(Open):
    name: str
    phone: str
    instructions: str | None = None


class P2PView(Answer):
    p2p_id: str
    level: Literal[P2P_LEVELS]
    slot: Instant
    reviewer: str
    contact: ContactView
    also_cases: list[UUID]
    status: Literal["scheduled", "cancelled", "completed", "missed"]
    reason: str | None = Field(default=None, description="why it was cancelled")
    outcome: str | None = Field(default=None, description="what the call concluded")


class AppealView(Answer):
    level: int = Field(ge=1)
    reason: str
    filed_at: Instant
    outcome: Literal[APPEAL_OUTCOMES] | None


class ReconsiderationView(Answer):
    requested_at: Instant
    reason: str
    outcome: Literal[LINE_DECISIONS] | None


class P2PEligibility(Answer):
    eligible: bool
    level: Literal[P2P_LEVELS] | None
    valid_until: Instant | None
    consultative_only: bool
    message: str


class CaseView(Answer):
    """A case as it stands (DESIGN.md, GET /cases/{id}); every write answers it too."""

    case_id: UUID
    case_number: CaseNumber
    authorization_number: AuthorizationNumber | None = Field(description="null until approved")
    status: Status
    urgent: bool = Field(description="processed as urgent")
    urgent_requested: bool
    urgent_note: str | None = Field(description="why an urgent request is processed as standard")
    retro: bool = Field(description="requested after the date of service")
    policy: Policy
    policy_version: int = Field(ge=1)
    line_of_business: Literal[LINES_OF_BUSINESS]
    member: MemberView | None = Field(default=None, description="empty for a draft")
    ordering_provider: ProviderView
    site: SiteView
    service: ServiceView
    received_at: Instant | None = Field(description="null for a draft")
    decision_due_at: Instant | None = Field(description="the hard limit: the urgent clock, or 7 / 15 calendar days")
    decision_warning_at: Instant | None = Field(description="75% of the time from receipt to decision_due_at")
    decision_target_at: Instant | None = Field(description="2 business days after complete clinical")
    timeframe_extended: bool
    hold_due_at: Instant | None
    hold: HoldView | None
    appeal_deadline: Instant | None
    reconsideration_deadline: Instant | None
    alternative_deadline: Instant | None
    draft_expires_at: Instant | None
    valid_from: Instant | None
    valid_to: Instant | None
    valid_from_date: date | None = Field(description="valid_from as a date in the plan's time zone")
    valid_to_date: date | None = Field(description="valid_to as a date in the plan's time zone")
    outcome: Literal[OUTCOMES] | None
    lines: list[LineView]
    determined_at: Instant | None
    approval: ApprovalView | None
    documents: list[DocumentView]
    p2ps: list[P2PView]
    appeals: list[AppealView]
    reconsideration: ReconsiderationView | None
    post_decision_options: list[Literal[POST_DECISION_OPTIONS]]
    p2p_eligibility: P2PEligibility
    letters: int = Field(ge=0, description="letters issued")
    version: int = Field(ge=1, description="send it as If-Match to write only on this version")
    successor_case_id: UUID | None
    predecessor_case_id: UUID | None


class Actor(Open):
    kind: str = Field(description="provider, reviewer, system, scheduler, admin, ...")
    id: str


class HistoryEvent(Answer):
    case_id: UUID
    version: int = Field(ge=1)
    type: Literal[tuple(EVENT_TYPES)]
    occurred_at: Instant
    actor: Actor
    data: dict[str, Any] = Field(description="the event's fields (see `caselog schema` for each type)")
    prev_hash: Sha256
    hash: Sha256


class History(Answer):
    events: list[HistoryEvent]
    case: CaseView = Field(description="the case as it stood after the last event listed")


# ---- uploads and shares --------------------------------------------------------------------------------


class Uploaded(Answer):
    document_id: Sha256
    name: str
    sha256: Sha256
    media_type: str
    size: int = Field(ge=0)


class Share(Answer):
    user_id: str
    email: str
    granted_at: Instant


class Shares(Answer):
    items: list[Share]
    total: int | None = Field(default=None, ge=0)


# ---- read models ---------------------------------------------------------------------------------------


class WorklistRow(Answer):
    case_id: UUID
    case_number: CaseNumber
    request_id: CaseNumber
    authorization_number: AuthorizationNumber | None
    authorization_id: AuthorizationNumber | None
    patient: str | None = Field(default=None, description="Last, First")
    member_id: str | None = None
    status: Bucket = Field(description="the status bucket")
    case_status: Status
    submitted: Instant
    end_date: Instant | None = Field(description="valid_to of the authorization")
    procedure: str
    ordering_provider: str
    ordering_provider_npi: str
    site: str
    insurer: str


class WorklistPage(Answer):
    items: list[WorklistRow]
    total: int = Field(ge=0)


class CertificationRow(Answer):
    case_id: UUID
    authorization_number: AuthorizationNumber | None
    case_number: CaseNumber
    member_last_name: str | None = None
    provider_last_name: str
    provider_npi: str
    status: Status
    initiated_at: Instant
    procedure_code: str
    service_description: str
    site_name: str
    expiration_date: Instant | None
    correspondence_count: int = Field(ge=0)


class CertificationPage(Answer):
    items: list[CertificationRow]
    total: int = Field(ge=0)


class AuthorizationFound(Answer):
    case_id: UUID
    case_number: CaseNumber
    authorization_number: AuthorizationNumber | None
    ordering_npi: str
    site_npi: str
    status: Status
    approved_at: Instant | None
    approval_date: Instant | None
    service: str = Field(description="the procedure codes")
    site_name: str
    expiration_date: Instant | None
    last_updated: Instant
    correspondence_count: int = Field(ge=0)
    p2p_eligibility: P2PEligibility
    post_decision_options: list[Literal[POST_DECISION_OPTIONS]]


class Authorizations(Answer):
    items: list[AuthorizationFound]
    total: int = Field(ge=0)


class Requirement(Answer):
    required: bool
    reason: str
    rule: str | None = Field(description="why not, as a rule name; null when it is required")


class QueueRow(Answer):
    case_id: UUID
    case_number: CaseNumber
    status: Literal["pending", "held"]
    urgent: bool
    decision_due_at: Instant
    hold_due_at: Instant | None
    at_risk: bool = Field(description="past 75% of the time to decision_due_at")
    overdue: bool = Field(description="past decision_due_at")
    policy: Policy


class ReviewQueue(Answer):
    items: list[QueueRow]
    total: int = Field(ge=0)


# ---- operations ----------------------------------------------------------------------------------------


class Ratio(Answer):
    numerator: int = Field(ge=0)
    denominator: int = Field(ge=0)
    percent: float | None = Field(ge=0, le=100, description="null when the denominator is 0")


class DecisionFigures(Answer):
    decided: int = Field(ge=0)
    approved: Ratio
    denied: Ratio
    total_hours_to_decision: float = Field(ge=0, description="the average's numerator (its denominator: decided)")
    average_hours_to_decision: float | None
    median_hours_to_decision: float | None
    average_hours_to_notification: float | None


class Period(Answer):
    from_: Instant | None = Field(alias="from")
    to: Instant | None
    policy: Policy | None
    partial_approvals_count_as: Literal["approved", "denied"]


class NotRequired(Answer):
    place_of_service: str | None = Field(description="a CMS place-of-service code; null: not about a place")
    reason: str


class ServicesRequiringPA(Answer):
    """One policy's entry of CMS-0057-F item 1 (domain.policy.requiring_prior_authorization)."""

    policy: Policy
    policy_version: int = Field(ge=1)
    effective_from: date
    plan: str
    program: str = Field(description="the items and services the program reviews")
    lines_of_business: list[Literal[LINES_OF_BUSINESS]]
    program_codes: list[str]
    not_required: list[NotRequired] = Field(description="where prior authorization does not apply, and why")
    only_places_of_service: list[str] | None = Field(description="the only places of service covered, if limited")
    dates_of_service_from: date | None
    request_per_date_of_service: list[str] = Field(description="codes needing a request per date of service")


class PriorAuthorizationFigures(Answer):
    """CMS-0057-F public reporting: each percentage with its numerator and denominator."""

    period: Period
    standard: DecisionFigures
    expedited: DecisionFigures
    standard_approved_after_appeal: Ratio
    extended_then_approved: Ratio
    items_requiring_prior_authorization: list[ServicesRequiringPA] = Field(description="item 1, by policy")


class ClockMoved(Answer):
    now: Instant
    fired: int = Field(ge=0, description="deadline events recorded")


class SealBody(Open):
    format: str
    deployment: str
    seq: int = Field(ge=1)
    position: int = Field(ge=0)
    events: int = Field(ge=0)
    cases: int = Field(ge=0)
    heads_digest: Sha256
    previous: Sha256 | None
    sealed_at: Instant
    key: str = Field(description="the Ed25519 public key, base64")
    fingerprint: str = Field(pattern=r"^SHA256:")


class Seal(Answer):
    seal: SealBody
    signature: str = Field(description="Ed25519 over the canonical seal body, base64")


class Health(Answer):
    status: Literal["ok"]
    position: int = Field(ge=0, description="the store's newest event position")


class Readiness(Answer):
    status: Literal["ready"]
    checks: dict[str, Literal["ok", "not configured"]] = Field(description="store, kafka")
