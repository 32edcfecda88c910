"""The command bodies HTTP and CLI share (one model per write), built on the domain's
vocabularies. The shapes and text are checked here; the rules are the domain's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidatorFunctionWrapHandler,
    WrapSerializer,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from application.bodies import (
    Body,
    Changes,
    ClinicalAnswers,
    Code,
    FileName,
    FreeText,
    Identifier,
    JsonSafe,
    Name,
    Narrative,
    PersonName,
)
from domain.policy import FEDERAL_EXTENSIONS
from domain.vocabulary import (
    APPEAL_OUTCOMES,
    CHANNELS,
    LINE_DECISIONS,
    LINES_OF_BUSINESS,
    NOTICE_CHANNELS,
    OUTCOMES,
    P2P_LEVELS,
    RECONSIDERATION_OUTCOMES,
    RENTAL_UNITS,
    UPDATE_KINDS,
)


LONGEST_EXTENSION_DAYS = max(rule.max_days for rule in FEDERAL_EXTENSIONS.values())


class Member(Body):
    id: Identifier = Field(min_length=1)
    first_name: PersonName = Field(min_length=1)
    last_name: PersonName = Field(min_length=1)
    dob: Code = Field(description="ISO 8601 date", examples=["1958-04-02"])


class OrderingProvider(Body):
    npi: Code
    tin: Code
    name: Name = Field(min_length=1)
    phone: Code | None = None
    fax: Code | None = None
    notify_by_email: StrictBool = True


class Site(Body):
    npi: Code
    tin: Code
    name: Name = Field(min_length=1)
    place_of_service: Code = Field(description="two-digit CMS place-of-service code", examples=["11", "12", "22"])


class Procedure(Body):
    code: Code
    units: StrictInt = Field(default=1, ge=1, le=100_000)
    modifiers: list[Code] = Field(default=[], max_length=10)


class Service(Body):
    date_of_service: Code = Field(description="ISO 8601 date")
    procedures: list[Procedure] = Field(min_length=1, max_length=50)
    diagnoses: list[Code] = Field(min_length=1, max_length=25)
    observation: StrictBool = False


class Document(Body):
    document_id: Identifier | None = None
    name: FileName
    media_type: Identifier | None = None
    size: StrictInt = Field(ge=0, le=2**40)
    sha256: Identifier


DOCUMENT_ID = re.compile(r"^[0-9a-f]{64}$")
DocumentId = Annotated[str, Field(pattern=DOCUMENT_ID.pattern,
                                  description="the document_id (sha256) POST /documents returned")]


def _document_ref(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A document in a body: the object POST /documents returned, or its id alone (resolved
    against the uploads at the entry, which needs the store)."""
    if isinstance(value, str):
        if not DOCUMENT_ID.match(value):
            raise PydanticCustomError("document_id",
                                      "a document id is the sha256 POST /documents returned (64 lowercase hex digits)")
        return value
    if not isinstance(value, (dict, Document)):
        raise PydanticCustomError("document", "a document is the object POST /documents returned, or its document_id")
    return handler(value)


DocumentRef = Annotated[
    Document,
    WrapValidator(_document_ref, json_schema_input_type=Union[Document, DocumentId]),
    WrapSerializer(lambda value, serialize: value if isinstance(value, str) else serialize(value)),
]


def documents_field() -> Any:
    return Field(default=[], max_length=50, description="each the object POST /documents returned, or its document_id")


SUBMIT_EXAMPLE = {
    "policy": "cigna-commercial/dme",
    "line_of_business": "commercial",
    "member": {"id": "M00001234", "first_name": "Alex", "last_name": "Rivera", "dob": "1958-04-02"},
    "ordering_provider": {"npi": "1234567893", "tin": "123456789", "name": "Dr. Jane Doe", "phone": "555-555-0100",
                          "fax": "555-555-0101", "notify_by_email": True},
    "site": {"npi": "1555555550", "tin": "987654321", "name": "HomeCare Medical Supply", "place_of_service": "12"},
    "service": {"date_of_service": "2026-12-15", "procedures": [{"code": "E0601", "units": 1, "modifiers": []}], "diagnoses": ["G47.33"]},
    "urgent": False,
    "clinical": {"ahi": 22},
    "documents": [],
}


# Medical oncology: a preferred NCCN regimen is approved by the rules on submission (CaseAutoApproved,
# actor kind "system" naming the policy row and rule); rules never deny.
AUTO_APPROVAL_EXAMPLE = {
    **SUBMIT_EXAMPLE,
    "policy": "cigna-commercial/medical-oncology",
    "site": {**SUBMIT_EXAMPLE["site"], "name": "Harbor Oncology Associates", "place_of_service": "11"},
    "service": {"date_of_service": "2026-12-15", "procedures": [{"code": "J9271", "units": 20, "modifiers": []}],
                "diagnoses": ["C34.90"]},
    "clinical": {"nccn_preferred_regimen": True, "regimen": "pembrolizumab 200 mg q3w"},
}

CLINICAL_DESCRIPTION = (
    "Answers to the program's clinical questions, as a JSON object. Answers the rules read: "
    "`nccn_preferred_regimen` (boolean, medical oncology): true when the requested regimen is an NCCN preferred "
    "regimen for the diagnosis; the rules then approve the request on submission (CaseAutoApproved, recorded with "
    "the rules as actor); `active_transplant` (boolean, medical oncology): the patient is active in transplant, "
    "outside the program (refused with the reason)."
)
LOCAL_DATE_DESCRIPTION = (
    "ISO 8601 date (YYYY-MM-DD), or an instant with a time zone whose date in the plan's time zone is taken"
)


class SubmitCase(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SUBMIT_EXAMPLE, AUTO_APPROVAL_EXAMPLE]})
    policy: Identifier
    line_of_business: Literal[LINES_OF_BUSINESS]
    member: Member
    ordering_provider: OrderingProvider
    site: Site
    service: Service
    urgent: StrictBool = Field(default=False, description=(
        "the requester marks the request clinically urgent; where the program requires it, it is processed as urgent "
        "only with at least one clinical document (or when taken by phone), otherwise as standard and the answer's "
        "`urgent_note` says so"))
    clinical: ClinicalAnswers = Field(default={}, description=CLINICAL_DESCRIPTION,
                                      examples=[{"nccn_preferred_regimen": True}])
    documents: list[DocumentRef] = documents_field()
    submitted_at: Code | None = Field(default=None, description=(
        "ISO 8601 instant with time zone, for requests entered late (phone, fax): within the last year, not in the "
        "future"))
    channel: Literal[CHANNELS] = Field(default="portal", description=(
        "how the request came in: portal (web), phone or fax; letters to the provider go by e-notification only "
        "for web-initiated requests"))


class StartDraft(JsonSafe):
    """The fields of a request in the making: any of SubmitCase's, kept as a free-form object (DRAFT)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "policy": "cigna-commercial/dme", "line_of_business": "commercial",
        "member": {"id": "M00001234", "first_name": "Alex", "last_name": "Rivera"},
        "service": {"procedures": [{"code": "E0601", "units": 1}]}}]})
    policy: Identifier
    line_of_business: Literal[LINES_OF_BUSINESS]


class Hold(Body):
    requested_items: list[Name] = Field(min_length=1, max_length=50)
    due_at: Code | None = None


class Clinical(Body):
    documents: list[DocumentRef] = documents_field()
    notes: Narrative | None = None


class Contact(Body):
    name: Name = Field(min_length=1)
    phone: Code = Field(min_length=1)
    instructions: FreeText | None = None


class ScheduleP2P(Body):
    level: Literal[P2P_LEVELS]
    slot: Code
    reviewer: Name = Field(min_length=1)
    contact: Contact
    also_cases: list[Identifier] = Field(default=[], max_length=20)


class RescheduleP2P(Body):
    slot: Code


class Reason(Body):
    reason: FreeText = Field(min_length=1)


class CompleteP2P(Body):
    outcome: FreeText = Field(min_length=1)


class PreDenialNotice(Body):
    channel: Literal[NOTICE_CHANNELS] = Field(description=(
        "Medicare lines: a denial needs the provider told telephonically and in writing: one notice by "
        "phone_and_writing, or one by phone and one in writing (fax, e-notification, mail)"))
    notes: Narrative | None = None


class ExtendTimeframe(Body):
    reason: Identifier = Field(description="a reason the line of business allows: " + "; ".join(
        f"{line}: {', '.join(sorted(rule.reasons))}" for line, rule in FEDERAL_EXTENSIONS.items()))
    days: StrictInt = Field(ge=1, le=LONGEST_EXTENSION_DAYS, description=(
        "calendar days added to the decision clock, at most what the line of business allows (14, commercial 15)"))


class Line(Body):
    code: Code
    units_requested: StrictInt | None = Field(default=None, ge=0, le=100_000)
    units_approved: StrictInt | None = Field(default=None, ge=0, le=100_000)
    decision: Literal[LINE_DECISIONS] | None = None
    rental: Literal[RENTAL_UNITS] | None = None


class Determination(Body):
    outcome: Literal[OUTCOMES]
    lines: list[Line] = Field(default=[], max_length=50)
    rationale: Narrative | None = None
    guidelines: list[Name] = Field(default=[], max_length=50)
    valid_from: Code | None = Field(default=None, description=LOCAL_DATE_DESCRIPTION)
    valid_to: Code | None = Field(default=None, description=LOCAL_DATE_DESCRIPTION + "; default: the policy's validity")
    technique: Name | None = None
    fractions: StrictInt | None = Field(default=None, ge=1, le=1000)
    igrt: StrictBool | None = None
    site_of_care_redirect: StrictBool = False


class ReconsiderationRequest(Body):
    reason: FreeText = Field(min_length=1)
    documents: list[DocumentRef] = documents_field()


class ReconsiderationDecision(Body):
    outcome: Literal[RECONSIDERATION_OUTCOMES]
    lines: list[Line] = Field(default=[], max_length=50)
    rationale: Narrative | None = None
    guidelines: list[Name] = Field(default=[], max_length=50)
    valid_to: Code | None = Field(default=None, description="ISO date; required where the program states the treatment span")


class AppealRequest(Body):
    reason: FreeText = Field(min_length=1)
    filed_at: Code | None = None


class AppealDecision(Body):
    outcome: Literal[APPEAL_OUTCOMES]
    rationale: Narrative | None = None
    lines: list[Line] = Field(default=[], max_length=50)
    valid_to: Code | None = Field(default=None, description="ISO date; required where the program states the treatment span")


class AuthorizationUpdate(Body):
    kind: Literal[UPDATE_KINDS]
    changes: Changes


class AuthorizationExtension(Body):
    valid_to: Code = Field(description=LOCAL_DATE_DESCRIPTION)


class Empty(Body):
    pass


# ---- the commands on a case, once for both entry points --------------------------------------

@dataclass(frozen=True)
class CaseCommand:
    """One command on an existing case: its CLI action name, its HTTP path under
    ``/cases/{case_id}``, its body, the roles that may send it (admin always may), the path
    parameters it takes (``p2p_id``, ``level``), whether its body attaches documents, and how it
    runs on the application (the body's fields handed on once, here)."""

    action: str
    path: str
    body: type[Body] | None
    roles: tuple[str, ...]
    run: Callable[..., Any]  # (app, case_id, body: dict, params: dict, actor=, key=, expected_version=) -> Answer
    params: tuple[str, ...] = ()
    attaches_documents: bool = False
    linked_cases: bool = False  # the body names other cases (``also_cases``) the sender must be able to see
    summary: str = ""
    example: dict | None = None  # a body the OpenAPI document shows (checked against ``body`` by the tests)
    creates: bool = False  # may answer 201 with a new case (a clinical update opens a linked case)


PROVIDER, REVIEWER = ("provider",), ("reviewer",)
EXAMPLE_DOCUMENT_ID = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a POST /documents id
EITHER = ("provider", "reviewer")
CASE_COMMANDS: tuple[CaseCommand, ...] = (
    CaseCommand("hold", "/holds", Hold, REVIEWER,
                lambda app, c, b, p, **kw: app.place_hold(c, b["requested_items"], b["due_at"], **kw),
                summary="Hold a pending case for missing information until a due instant",
                example={"requested_items": ["sleep study report", "face-to-face visit notes"]}),
    CaseCommand("clinical", "/clinical", Clinical, EITHER,
                lambda app, c, b, p, **kw: app.upload_clinical(c, b["documents"], b["notes"], **kw),
                attaches_documents=True, summary="Add clinical documents or notes (ends a hold)",
                example={"documents": [EXAMPLE_DOCUMENT_ID], "notes": "Polysomnography attached: AHI 22."}),
    CaseCommand("p2p", "/p2p", ScheduleP2P, EITHER, lambda app, c, b, p, **kw: app.schedule_p2p(c, **b, **kw),
                linked_cases=True, summary="Schedule a peer-to-peer call, possibly covering several cases",
                example={"level": "pre_decision", "slot": "2026-12-01T15:00:00Z", "reviewer": "Dr. Okafor",
                         "contact": {"name": "Office of Dr. Doe", "phone": "555-555-0100",
                                     "instructions": "ask for the nurse line"}, "also_cases": []}),
    CaseCommand("p2p-reschedule", "/p2p/{p2p_id}/reschedule", RescheduleP2P, EITHER,
                lambda app, c, b, p, **kw: app.reschedule_p2p(c, p["p2p_id"], b["slot"], **kw), ("p2p_id",),
                summary="Move a scheduled peer-to-peer call", example={"slot": "2026-12-02T15:00:00Z"}),
    CaseCommand("p2p-cancel", "/p2p/{p2p_id}/cancel", Reason, EITHER,
                lambda app, c, b, p, **kw: app.cancel_p2p(c, p["p2p_id"], b["reason"], **kw), ("p2p_id",),
                summary="Cancel a scheduled peer-to-peer call, with a reason",
                example={"reason": "the ordering provider is in surgery"}),
    CaseCommand("p2p-complete", "/p2p/{p2p_id}/complete", CompleteP2P, REVIEWER,
                lambda app, c, b, p, **kw: app.complete_p2p(c, p["p2p_id"], b["outcome"], **kw), ("p2p_id",),
                summary="Record the outcome of a peer-to-peer call",
                example={"outcome": "criteria discussed; the office sends the sleep study"}),
    CaseCommand("pre-denial-notice", "/pre-denial-notice", PreDenialNotice, REVIEWER,
                lambda app, c, b, p, **kw: app.give_pre_denial_notice(c, b["channel"], b["notes"], **kw),
                summary="Tell the provider before a denial (Medicare lines: by phone and in writing)",
                example={"channel": "phone_and_writing", "notes": "spoke with the office manager; letter faxed"}),
    CaseCommand("extension-of-timeframe", "/extension-of-timeframe", ExtendTimeframe, REVIEWER,
                lambda app, c, b, p, **kw: app.extend_timeframe(c, b["reason"], b["days"], **kw),
                summary="Extend the decision clock once, for a reason the line of business allows",
                example={"reason": "matters_beyond_reviewer_control", "days": 15}),
    CaseCommand("determination", "/determination", Determination, REVIEWER,
                lambda app, c, b, p, **kw: app.determine(c, **b, **kw),
                summary="Approve, partly approve, deny or recommend an alternative",
                example={"outcome": "partially_approved", "rationale": "the CPAP meets criteria, the extra masks not",
                         "guidelines": ["DME 3.2"], "lines": [{"code": "E0601", "decision": "approved"},
                                                             {"code": "A7030", "decision": "denied"}]}),
    CaseCommand("alternative-accept", "/alternative/accept", None, PROVIDER,
                lambda app, c, b, p, **kw: app.accept_alternative(c, **kw),
                summary="Accept the recommended alternative (DME)"),
    CaseCommand("reconsideration", "/reconsideration", ReconsiderationRequest, PROVIDER,
                lambda app, c, b, p, **kw: app.request_reconsideration(c, b["reason"], b["documents"], **kw),
                attaches_documents=True, summary="Ask for a reconsideration of an adverse decision (commercial lines)",
                example={"reason": "a new sleep study shows AHI 22", "documents": [EXAMPLE_DOCUMENT_ID]}),
    CaseCommand("reconsideration-decision", "/reconsideration/decision", ReconsiderationDecision, REVIEWER,
                lambda app, c, b, p, **kw: app.decide_reconsideration(c, **b, **kw),
                summary="Decide a reconsideration",
                example={"outcome": "approved", "rationale": "the new study meets criteria"}),
    CaseCommand("appeal", "/appeals", AppealRequest, PROVIDER,
                lambda app, c, b, p, **kw: app.file_appeal(c, b["reason"], b["filed_at"], **kw),
                summary="File an appeal of an adverse decision",
                example={"reason": "the member cannot tolerate the alternative", "filed_at": "2026-12-03T16:00:00Z"}),
    CaseCommand("appeal-decision", "/appeals/{level}/decision", AppealDecision, REVIEWER,
                lambda app, c, b, p, **kw: app.decide_appeal(c, p["level"], **b, **kw), ("level",),
                summary="Decide an appeal at its level",
                example={"outcome": "overturned", "rationale": "the records support medical necessity"}),
    CaseCommand("authorization-update", "/authorization/updates", AuthorizationUpdate, PROVIDER,
                lambda app, c, b, p, **kw: app.update_authorization(c, b["kind"], b["changes"], **kw),
                summary="Change an authorization in place, or open a new review for a clinical change (201)",
                example={"kind": "contact", "changes": {"phone": "555-555-0199"}}, creates=True),
    CaseCommand("authorization-extension", "/authorization/extension", AuthorizationExtension, PROVIDER,
                lambda app, c, b, p, **kw: app.extend_authorization(c, b["valid_to"], **kw),
                summary="Extend an active authorization once (DME)", example={"valid_to": "2027-06-30"}),
    CaseCommand("withdrawal", "/withdrawal", Reason, EITHER, lambda app, c, b, p, **kw: app.withdraw(c, b["reason"], **kw),
                summary="Withdraw an authorization, with a reason",
                example={"reason": "replaced by a request for another device"}),
    CaseCommand("cancel", "/cancel", Reason, EITHER, lambda app, c, b, p, **kw: app.cancel(c, b["reason"], **kw),
                summary="Cancel a request before its determination, with a reason",
                example={"reason": "duplicate of an earlier request"}),
)
BY_ACTION = {command.action: command for command in CASE_COMMANDS}
