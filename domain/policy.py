"""The policy table: every plan and program rule of POLICIES.md, as data.

Adding a plan is adding a row; changing a rule on a date is adding a row version with a
later ``effective_from``. A case records the id and version of the row in force when it
was received and is governed by that row for life. Nothing outside this module asks
which plan a case belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType
from typing import Literal, Mapping

from domain.calendar import PLAN_TIME_ZONE
from domain.errors import FieldError, NotApplicable, UnknownPolicy
from domain.vocabulary import MEDICARE_LINES

# CMS place-of-service codes named by the decks.
POS_HOME = "12"
POS_EMERGENCY_ROOM = "23"
POS_INPATIENT = "21"
POS_OUTPATIENT_ON_CAMPUS = "22"
POS_OUTPATIENT_OFF_CAMPUS = "19"
POS_ASC = "24"
POS_SNF = "31"
POS_NURSING_FACILITY = "32"


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class TimeframeExtension:
    """Extending the decision clock: once per request, for the reasons the line allows."""

    max_days: int
    reasons: frozenset[str]
    allowed_when_urgent: bool


@dataclass(frozen=True)
class RetroWindow:
    """How late after the date of service a retrospective request is still accepted."""

    amount: int
    unit: Literal["business_days", "calendar_days"]
    approval_starts_on_request_date: bool = False
    refusal_hint: str = "submit it as an appeal instead"


@dataclass(frozen=True)
class Validity:
    """How long an approval is valid.

    kind: ``days_from_review`` (``days`` from the determination date),
    ``months_from_determination`` (``months_default``, an explicit valid_to may go to
    ``months_max``), ``purchase_or_rental`` (purchases ``days``; rentals the approved number
    of days or months), ``stated`` (the reviewer states the treatment span: valid_to required).
    """

    kind: Literal["days_from_review", "months_from_determination", "purchase_or_rental", "stated"]
    days: int | None = None
    months_default: int | None = None
    months_max: int | None = None
    site_of_care_redirect_days: int | None = None


# Federal rules that sit on top of every plan row (42 CFR 422.568/572, 438.210, 29 CFR 2560.503-1).
FEDERAL_EXTENSIONS = _frozen(
    {
        "medicare": TimeframeExtension(14, frozenset({"enrollee_request", "non_contract_provider_information"}), True),
        "duals": TimeframeExtension(14, frozenset({"enrollee_request", "non_contract_provider_information"}), True),
        "medicaid": TimeframeExtension(
            14, frozenset({"enrollee_request", "additional_information_in_enrollee_interest"}), False
        ),
        "commercial": TimeframeExtension(15, frozenset({"matters_beyond_reviewer_control"}), False),
    }
)
EXTENSION_REASONS = frozenset().union(*(e.reasons for e in FEDERAL_EXTENSIONS.values())) | {
    "contracted_provider_records"  # never allowed: named so the refusal can say why
}
# Standard hard limit before and after the CMS interoperability rule (7 days from 2026-01-01).
STANDARD_LIMIT_DAYS_BEFORE_2026 = _frozen({"medicare": 14, "duals": 14, "medicaid": 14, "commercial": 15})
STANDARD_LIMIT_DAYS_FROM_2026 = _frozen({"medicare": 7, "duals": 7, "medicaid": 7, "commercial": 15})
FEDERAL_APPEAL_WINDOW_DAYS = _frozen({"medicare": 60, "duals": 60, "medicaid": 60, "commercial": 180})


# Correspondence (POLICIES.md, notifications): which letter goes to whom by which channel.
# ``preference`` is the ordering provider's: e-notification for a web-initiated (portal) case
# unless the provider opted out of it, fax otherwise.
PREFERENCE = "preference"


@dataclass(frozen=True)
class LetterRoute:
    recipient: Literal["provider", "facility", "member"]
    channel: Literal["e-notification", "fax", "mail", "preference"]


def _routes(*pairs: str) -> tuple[LetterRoute, ...]:
    """``_routes("provider:fax", "member:mail")``: a letter family's recipients and channels."""
    return tuple(LetterRoute(*pair.split(":")) for pair in pairs)  # type: ignore[arg-type]


# Letter families: ``decision`` (determinations, approvals by rules, reconsideration decisions,
# an accepted alternative), ``hold`` (request for information), ``appeal_decision``,
# ``pre_denial_notice``, ``timeframe_extension``, ``authorization_change`` (updated, extended),
# ``authorization_withdrawn``.
DEFAULT_LETTERS = _frozen(
    {
        "decision": _routes("provider:preference", "facility:fax", "member:mail"),
        "hold": _routes("provider:fax"),
        "appeal_decision": _routes("member:mail", "provider:fax"),
        "pre_denial_notice": _routes("provider:preference"),
        "timeframe_extension": _routes("provider:preference", "member:mail"),
        "authorization_change": _routes("provider:preference"),
        "authorization_withdrawn": _routes("provider:preference", "facility:fax"),
    }
)
LETTER_FAMILIES = tuple(DEFAULT_LETTERS)

HOSPITAL_SETTINGS = {
    POS_EMERGENCY_ROOM: "emergency room services do not require prior authorization",
    POS_INPATIENT: "inpatient services do not require prior authorization",
}
OBSERVATION_REASON = "23-hour observation services do not require prior authorization"


@dataclass(frozen=True)
class PolicyRow:
    id: str
    version: int
    effective_from: date
    plan: str
    program: str
    seed: str
    lines_of_business: tuple[str, ...]
    program_codes: tuple[str, ...]
    # scope
    excluded_places_of_service: Mapping[str, str]
    allowed_places_of_service: frozenset[str] | None
    observation_excluded: bool
    excluded_clinical_flags: Mapping[str, str]
    earliest_date_of_service: date | None
    # clocks
    urgent_decision_hours: int
    standard_limit_days: Mapping[str, int]
    decision_target_business_days: int
    timeframe_extensions: Mapping[str, TimeframeExtension]
    urgent_requires_upload: bool
    hold_default_business_days: int
    hold_default_urgent_hours: int
    pre_decision_p2p: bool
    retro: RetroWindow | None
    validity: Validity
    alternative_acceptance_business_days: int | None
    appeal_window_days: Mapping[str, int]
    appeal_levels: int
    reconsideration: Literal["before_date_of_service", "until_appeal"] | None
    # determinations
    partial_approval: Literal["none", "per_line", "units"]
    approval_requires: tuple[str, ...]
    pre_denial_notice_lines: frozenset[str]
    auto_approve_when: Mapping[str, object] | None
    per_date_of_service_codes: frozenset[str]
    # after the decision
    clinical_update_kinds: frozenset[str]
    authorization_extensions: int
    letters: Mapping[str, tuple[LetterRoute, ...]] = field(default_factory=lambda: DEFAULT_LETTERS)
    draft_expires_end_of_day: bool = True
    timezone: str = PLAN_TIME_ZONE
    notes: Mapping[str, str] = field(default_factory=lambda: _frozen({}))

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def serves(self, line_of_business: str) -> bool:
        return line_of_business in self.lines_of_business

    def reconsideration_allowed_for(self, line_of_business: str) -> bool:
        return self.reconsideration is not None and line_of_business not in MEDICARE_LINES

    def update_is_clinical(self, kind: str) -> bool:
        return kind in self.clinical_update_kinds

    def letter_routes(self, family: str) -> tuple[LetterRoute, ...]:
        return self.letters[family]


# Interventional pain injections: a separate pre-service request for each date of service (seed 003).
INTERVENTIONAL_PAIN_CODES = frozenset(
    {"62320", "62321", "62322", "62323", "64479", "64480", "64483", "64484", "64490", "64491",
     "64492", "64493", "64494", "64495", "64633", "64634", "64635", "64636", "27096", "20610"}
)

_HEALTHSPRING_RADONC = PolicyRow(
    id="healthspring-ma/radiation-oncology",
    version=1,
    effective_from=date(2020, 1, 1),
    plan="HealthSpring",
    program="Radiation oncology",
    seed="000",
    lines_of_business=("medicare",),
    program_codes=("RC*",),
    excluded_places_of_service=_frozen(HOSPITAL_SETTINGS),
    allowed_places_of_service=None,
    observation_excluded=True,
    excluded_clinical_flags=_frozen({}),
    earliest_date_of_service=None,
    urgent_decision_hours=24,
    standard_limit_days=STANDARD_LIMIT_DAYS_BEFORE_2026,
    decision_target_business_days=2,
    timeframe_extensions=FEDERAL_EXTENSIONS,
    urgent_requires_upload=True,
    hold_default_business_days=2,
    hold_default_urgent_hours=24,
    pre_decision_p2p=True,
    retro=RetroWindow(1, "business_days"),
    validity=Validity("stated"),
    alternative_acceptance_business_days=None,
    appeal_window_days=_frozen({"medicare": 60}),
    appeal_levels=2,
    reconsideration=None,
    partial_approval="units",
    approval_requires=("technique", "fractions", "igrt"),
    pre_denial_notice_lines=MEDICARE_LINES,
    auto_approve_when=None,
    per_date_of_service_codes=frozenset(),
    clinical_update_kinds=frozenset({"technique", "igrt", "fractions", "cancer_type", "timespan"}),
    authorization_extensions=0,
)

_AETNA_RADIOLOGY = PolicyRow(
    id="aetna-bh-il/radiology",
    version=1,
    effective_from=date(2025, 6, 1),
    plan="Aetna Better Health of Illinois",
    program="Radiology & cardiology",
    seed="001",
    lines_of_business=("medicaid", "duals"),
    program_codes=(),
    excluded_places_of_service=_frozen(HOSPITAL_SETTINGS),
    allowed_places_of_service=None,
    observation_excluded=True,
    excluded_clinical_flags=_frozen({}),
    earliest_date_of_service=None,
    urgent_decision_hours=72,
    standard_limit_days=STANDARD_LIMIT_DAYS_BEFORE_2026,
    decision_target_business_days=2,
    timeframe_extensions=FEDERAL_EXTENSIONS,
    urgent_requires_upload=True,
    hold_default_business_days=2,
    hold_default_urgent_hours=24,
    pre_decision_p2p=False,
    retro=None,
    validity=Validity("stated"),
    alternative_acceptance_business_days=None,
    appeal_window_days=FEDERAL_APPEAL_WINDOW_DAYS,
    appeal_levels=2,
    reconsideration=None,
    partial_approval="units",
    approval_requires=(),
    pre_denial_notice_lines=MEDICARE_LINES,
    auto_approve_when=None,
    per_date_of_service_codes=frozenset(),
    clinical_update_kinds=frozenset({"timespan"}),
    authorization_extensions=0,
    notes=_frozen({"validity": "the deck states no default validity: the reviewer states valid_to"}),
)

_AETNA_MSK = replace(
    _AETNA_RADIOLOGY,
    id="aetna-bh-il/msk",
    program="Musculoskeletal",
    program_codes=("SPINE", "JOINT"),
    per_date_of_service_codes=INTERVENTIONAL_PAIN_CODES,
)

_CIGNA_MEDONC = PolicyRow(
    id="cigna-commercial/medical-oncology",
    version=1,
    effective_from=date(2022, 3, 1),
    plan="Cigna",
    program="Medical oncology",
    seed="002",
    lines_of_business=("commercial",),
    program_codes=(),
    excluded_places_of_service=_frozen(HOSPITAL_SETTINGS),
    allowed_places_of_service=None,
    observation_excluded=True,
    excluded_clinical_flags=_frozen(
        {"active_transplant": "patients active in transplant are outside the medical oncology program"}
    ),
    earliest_date_of_service=None,
    urgent_decision_hours=72,
    standard_limit_days=STANDARD_LIMIT_DAYS_FROM_2026,
    decision_target_business_days=2,
    timeframe_extensions=FEDERAL_EXTENSIONS,
    urgent_requires_upload=False,
    hold_default_business_days=2,
    hold_default_urgent_hours=24,
    pre_decision_p2p=False,
    retro=RetroWindow(30, "calendar_days", refusal_hint="services performed more than 30 days ago go to appeal"),
    validity=Validity("months_from_determination", months_default=8, months_max=12, site_of_care_redirect_days=30),
    alternative_acceptance_business_days=None,
    appeal_window_days=_frozen({"commercial": 180}),
    appeal_levels=2,
    reconsideration="before_date_of_service",
    partial_approval="none",
    approval_requires=(),
    pre_denial_notice_lines=MEDICARE_LINES,
    auto_approve_when=_frozen({"nccn_preferred_regimen": True}),
    per_date_of_service_codes=frozenset(),
    clinical_update_kinds=frozenset({"regimen", "cancer_type", "timespan"}),
    authorization_extensions=0,
    # seed 002: decision letters are faxed to the ordering provider and the facility
    letters=_frozen({**DEFAULT_LETTERS, "decision": _routes("provider:fax", "facility:fax", "member:mail")}),
)

_WELLSENSE_MSK = PolicyRow(
    id="wellsense-ma-nh/msk",
    version=1,
    effective_from=date(2023, 3, 1),
    plan="WellSense (MA, NH)",
    program="MSK: interventional pain, spine surgery, joint surgery",
    seed="003",
    lines_of_business=("medicare", "medicaid", "commercial"),
    program_codes=("SPINE", "JOINT"),
    excluded_places_of_service=_frozen({}),
    allowed_places_of_service=None,
    observation_excluded=False,
    excluded_clinical_flags=_frozen({}),
    earliest_date_of_service=date(2023, 3, 1),
    urgent_decision_hours=72,
    standard_limit_days=STANDARD_LIMIT_DAYS_BEFORE_2026,
    decision_target_business_days=2,
    timeframe_extensions=FEDERAL_EXTENSIONS,
    urgent_requires_upload=True,
    hold_default_business_days=2,
    hold_default_urgent_hours=24,
    pre_decision_p2p=False,
    retro=None,
    validity=Validity("days_from_review", days=180),
    alternative_acceptance_business_days=None,
    appeal_window_days=FEDERAL_APPEAL_WINDOW_DAYS,
    appeal_levels=2,
    reconsideration=None,
    partial_approval="units",
    approval_requires=(),
    pre_denial_notice_lines=MEDICARE_LINES,
    auto_approve_when=None,
    per_date_of_service_codes=INTERVENTIONAL_PAIN_CODES,
    clinical_update_kinds=frozenset({"timespan"}),
    authorization_extensions=0,
)

_CIGNA_DME = PolicyRow(
    id="cigna-commercial/dme",
    version=1,
    effective_from=date(2026, 3, 7),
    plan="Cigna",
    program="Durable medical equipment",
    seed="004",
    lines_of_business=("commercial",),
    program_codes=("DME",),
    excluded_places_of_service=_frozen(
        {
            POS_INPATIENT: "DME in a hospital setting does not require prior authorization under this program",
            POS_OUTPATIENT_ON_CAMPUS: "DME in a hospital setting does not require prior authorization under this program",
            POS_OUTPATIENT_OFF_CAMPUS: "DME in a hospital setting does not require prior authorization under this program",
            POS_EMERGENCY_ROOM: "DME in a hospital setting does not require prior authorization under this program",
            POS_SNF: "DME in a skilled nursing facility does not require prior authorization under this program",
            POS_NURSING_FACILITY: "DME in a skilled nursing facility does not require prior authorization under this program",
            POS_ASC: "DME in a surgical setting does not require prior authorization under this program",
        }
    ),
    allowed_places_of_service=frozenset({POS_HOME}),
    observation_excluded=True,
    excluded_clinical_flags=_frozen({}),
    earliest_date_of_service=date(2026, 3, 7),
    urgent_decision_hours=72,
    standard_limit_days=STANDARD_LIMIT_DAYS_FROM_2026,
    decision_target_business_days=2,
    timeframe_extensions=FEDERAL_EXTENSIONS,
    urgent_requires_upload=True,
    hold_default_business_days=2,
    hold_default_urgent_hours=24,
    pre_decision_p2p=True,
    retro=RetroWindow(15, "business_days", approval_starts_on_request_date=True),
    validity=Validity("purchase_or_rental", days=180),
    alternative_acceptance_business_days=60,
    appeal_window_days=_frozen({"commercial": 180}),
    appeal_levels=2,
    reconsideration="until_appeal",
    partial_approval="per_line",
    approval_requires=(),
    pre_denial_notice_lines=MEDICARE_LINES,
    auto_approve_when=None,
    per_date_of_service_codes=frozenset(),
    clinical_update_kinds=frozenset({"timespan"}),
    authorization_extensions=1,
)


def _from_2026(row: PolicyRow) -> PolicyRow:
    """The 7-calendar-day standard limit for Medicare Advantage and Medicaid from 2026-01-01."""
    return replace(row, version=row.version + 1, effective_from=date(2026, 1, 1), standard_limit_days=STANDARD_LIMIT_DAYS_FROM_2026)


POLICY_TABLE: tuple[PolicyRow, ...] = (
    _HEALTHSPRING_RADONC,
    _from_2026(_HEALTHSPRING_RADONC),
    _AETNA_RADIOLOGY,
    _from_2026(_AETNA_RADIOLOGY),
    _AETNA_MSK,
    _from_2026(_AETNA_MSK),
    _CIGNA_MEDONC,
    _WELLSENSE_MSK,
    _from_2026(_WELLSENSE_MSK),
    _CIGNA_DME,
)

POLICY_IDS: tuple[str, ...] = tuple(dict.fromkeys(r.id for r in POLICY_TABLE))
_BY_KEY = {(r.id, r.version): r for r in POLICY_TABLE}


def policy_version(policy_id: str, version: int) -> PolicyRow:
    """The exact row a case recorded (replay never re-chooses a row)."""
    return _BY_KEY[(policy_id, version)]


def policy_in_force(policy_id: str, on: date) -> PolicyRow:
    rows = [r for r in POLICY_TABLE if r.id == policy_id]
    if not rows:
        raise UnknownPolicy(
            FieldError("policy", f"unknown policy {policy_id!r}; known: {', '.join(POLICY_IDS)}")
        )
    in_force = [r for r in rows if r.effective_from <= on]
    if not in_force:
        first = min(r.effective_from for r in rows)
        raise NotApplicable("program-not-started", f"{policy_id} starts on {first.isoformat()}; requests received before then are not reviewed under it")
    return max(in_force, key=lambda r: r.effective_from)
