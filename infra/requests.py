"""Request bodies (HTTP and CLI share them): shapes and types. The domain checks the rules.

``parse`` turns a pydantic failure into InvalidInput with one entry per field.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from domain.errors import FieldError, InvalidInput

Text = str


class Body(BaseModel):
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
    units: StrictInt = 1
    modifiers: list[Text] = []


class Service(Body):
    date_of_service: Text = Field(description="ISO 8601 date")
    procedures: list[Procedure] = Field(min_length=1, max_length=50)
    diagnoses: list[Text] = Field(min_length=1, max_length=25)
    observation: StrictBool = False


class Document(Body):
    document_id: Text | None = None
    name: Text
    media_type: Text | None = None
    size: StrictInt
    sha256: Text


class SubmitCase(Body):
    policy: Text
    line_of_business: Literal["medicare", "medicaid", "duals", "commercial"]
    member: Member
    ordering_provider: OrderingProvider
    site: Site
    service: Service
    urgent: StrictBool = False
    clinical: dict[str, Any] = {}
    documents: list[Document] = Field(default=[], max_length=50)
    submitted_at: Text | None = Field(default=None, description="ISO 8601 instant with time zone, for requests entered late")
    channel: Literal["portal", "phone", "fax"] = "portal"


class StartDraft(BaseModel):
    model_config = ConfigDict(extra="allow")
    policy: Text
    line_of_business: Literal["medicare", "medicaid", "duals", "commercial"]


class Hold(Body):
    requested_items: list[Text] = Field(min_length=1, max_length=50)
    due_at: Text | None = None


class Clinical(Body):
    documents: list[Document] = Field(default=[], max_length=50)
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
    channel: Literal["phone", "fax", "e-notification", "mail", "phone_and_writing"]
    notes: Text | None = None


class ExtendTimeframe(Body):
    reason: Text
    days: StrictInt


class Line(Body):
    code: Text
    units_requested: StrictInt | None = None
    units_approved: StrictInt | None = None
    decision: Literal["approved", "partially_approved", "denied"] | None = None
    rental: Literal["days", "months"] | None = None


class Determination(Body):
    outcome: Literal["approved", "partially_approved", "denied", "alternative_recommended"]
    lines: list[Line] = []
    rationale: Text | None = None
    guidelines: list[Text] = []
    valid_from: Text | None = None
    valid_to: Text | None = None
    technique: Text | None = None
    fractions: StrictInt | None = None
    igrt: StrictBool | None = None
    site_of_care_redirect: StrictBool = False


class ReconsiderationRequest(Body):
    reason: Text = Field(min_length=1)
    documents: list[Document] = []


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
    valid_to: Text


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
