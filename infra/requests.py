"""Request bodies (HTTP and CLI share them): shapes and types. The domain checks the rules.

``parse`` turns a pydantic failure into InvalidInput with one entry per field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError,
                      ValidatorFunctionWrapHandler, WrapSerializer, WrapValidator, model_validator)
from pydantic_core import PydanticCustomError

from domain.errors import FieldError, InvalidInput

Text = str
INT64 = 2**63 - 1


def json_safe(value: Any, path: str = "body") -> None:
    """Refuse what the store cannot keep exactly: lone surrogates, integers beyond 64 bits,
    non-finite numbers (JSON has none)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path}: text must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -INT64 - 1 <= value <= INT64:
            raise ValueError(f"{path}: integers must fit in 64 bits")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{path}: numbers must be finite")
    elif isinstance(value, dict):
        for k, v in value.items():
            json_safe(k, path)
            json_safe(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            json_safe(v, f"{path}[{i}]")
    elif isinstance(value, BaseModel):
        json_safe(value.__dict__, path)
        if value.model_extra:
            json_safe(value.model_extra, path)


class JsonSafe(BaseModel):
    @model_validator(mode="after")
    def _json_safe(self):
        json_safe(self.__dict__, type(self).__name__)
        if self.model_extra:
            json_safe(self.model_extra, type(self).__name__)
        return self


class Body(JsonSafe):
    model_config = ConfigDict(extra="forbid")


class Member(Body):
    id: Text = Field(min_length=1, max_length=64)
    first_name: Text = Field(min_length=1, max_length=100)
    last_name: Text = Field(min_length=1, max_length=100)
    dob: Text = Field(description="ISO 8601 date", examples=["1958-04-02"])


class OrderingProvider(Body):
    npi: Text
    tin: Text
    name: Text = Field(min_length=1, max_length=200)
    phone: Text | None = None
    fax: Text | None = None
    notify_by_email: StrictBool = True


class Site(Body):
    npi: Text
    tin: Text
    name: Text = Field(min_length=1, max_length=200)
    place_of_service: Text = Field(description="two-digit CMS place-of-service code", examples=["11", "12", "22"])


class Procedure(Body):
    code: Text
    units: StrictInt = Field(default=1, ge=1, le=100_000)
    modifiers: list[Text] = Field(default=[], max_length=10)


class Service(Body):
    date_of_service: Text = Field(description="ISO 8601 date")
    procedures: list[Procedure] = Field(min_length=1, max_length=50)
    diagnoses: list[Text] = Field(min_length=1, max_length=25)
    observation: StrictBool = False


class Document(Body):
    document_id: Text | None = None
    name: Text
    media_type: Text | None = None
    size: StrictInt = Field(ge=0, le=2**40)
    sha256: Text


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
    policy: Text
    line_of_business: Literal["medicare", "medicaid", "duals", "commercial"]
    member: Member
    ordering_provider: OrderingProvider
    site: Site
    service: Service
    urgent: StrictBool = Field(default=False, description=(
        "the requester marks the request clinically urgent; where the program requires it, it is processed as urgent "
        "only with at least one clinical document (or when taken by phone), otherwise as standard and the answer's "
        "`urgent_note` says so"))
    clinical: dict[str, Any] = Field(default={}, description=CLINICAL_DESCRIPTION,
                                     examples=[{"nccn_preferred_regimen": True}])
    documents: list[DocumentRef] = documents_field()
    submitted_at: Text | None = Field(default=None, description=(
        "ISO 8601 instant with time zone, for requests entered late (phone, fax): within the last year, not in the "
        "future"))
    channel: Literal["portal", "phone", "fax"] = Field(default="portal", description=(
        "how the request came in: portal (web), phone or fax; letters to the provider go by e-notification only "
        "for web-initiated requests"))


class StartDraft(JsonSafe):
    model_config = ConfigDict(extra="allow")
    policy: Text
    line_of_business: Literal["medicare", "medicaid", "duals", "commercial"]


class Hold(Body):
    requested_items: list[Text] = Field(min_length=1, max_length=50)
    due_at: Text | None = None


class Clinical(Body):
    documents: list[DocumentRef] = documents_field()
    notes: Text | None = Field(default=None, max_length=20000)


class Contact(Body):
    name: Text = Field(min_length=1)
    phone: Text = Field(min_length=1)
    instructions: Text | None = None


class ScheduleP2P(Body):
    level: Literal["pre_decision", "reconsideration", "consultative_only"]
    slot: Text
    reviewer: Text = Field(min_length=1)
    contact: Contact
    also_cases: list[Text] = Field(default=[], max_length=20)


class RescheduleP2P(Body):
    slot: Text


class Reason(Body):
    reason: Text = Field(min_length=1, max_length=2000)


class CompleteP2P(Body):
    outcome: Text = Field(min_length=1, max_length=2000)


class PreDenialNotice(Body):
    channel: Literal["phone", "fax", "e-notification", "mail", "phone_and_writing"] = Field(description=(
        "Medicare lines: a denial needs the provider told telephonically and in writing: one notice by "
        "phone_and_writing, or one by phone and one in writing (fax, e-notification, mail)"))
    notes: Text | None = None


class ExtendTimeframe(Body):
    reason: Text
    days: StrictInt = Field(ge=-1000, le=1000)


class Line(Body):
    code: Text
    units_requested: StrictInt | None = Field(default=None, ge=0, le=100_000)
    units_approved: StrictInt | None = Field(default=None, ge=-100_000, le=100_000)
    decision: Literal["approved", "partially_approved", "denied"] | None = None
    rental: Literal["days", "months"] | None = None


class Determination(Body):
    outcome: Literal["approved", "partially_approved", "denied", "alternative_recommended"]
    lines: list[Line] = []
    rationale: Text | None = None
    guidelines: list[Text] = []
    valid_from: Text | None = Field(default=None, description=LOCAL_DATE_DESCRIPTION)
    valid_to: Text | None = Field(default=None, description=LOCAL_DATE_DESCRIPTION + "; default: the policy's validity")
    technique: Text | None = None
    fractions: StrictInt | None = Field(default=None, ge=-1000, le=1000)
    igrt: StrictBool | None = None
    site_of_care_redirect: StrictBool = False


class ReconsiderationRequest(Body):
    reason: Text = Field(min_length=1)
    documents: list[DocumentRef] = documents_field()


class ReconsiderationDecision(Body):
    outcome: Literal["approved", "partially_approved", "denied"]
    lines: list[Line] = []
    rationale: Text | None = None
    guidelines: list[Text] = []
    valid_to: Text | None = Field(default=None, description="ISO date; required where the program states the treatment span")


class AppealRequest(Body):
    reason: Text = Field(min_length=1)
    filed_at: Text | None = None


class AppealDecision(Body):
    outcome: Literal["upheld", "overturned", "partially_overturned"]
    rationale: Text | None = None
    lines: list[Line] = []
    valid_to: Text | None = Field(default=None, description="ISO date; required where the program states the treatment span")


class AuthorizationUpdate(Body):
    kind: Literal["site", "code_correction", "contact", "technique", "igrt", "fractions", "cancer_type", "timespan", "regimen"]
    changes: dict[str, Any]


class AuthorizationExtension(Body):
    valid_to: Text = Field(description=LOCAL_DATE_DESCRIPTION)


class Empty(Body):
    pass


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> dict:
    """Validate ``data`` against ``model``; return plain JSON values (no None-only defaults lost)."""
    if not isinstance(data, dict):
        raise InvalidInput(FieldError("body", "expected a JSON object"))
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidInput([FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]) from None
