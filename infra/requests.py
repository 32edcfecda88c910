"""Request bodies (HTTP and CLI share them): shapes, types and the text every field may hold.
The domain checks the rules.

Text is checked here, once, for both entry points: every text field has a kind (``Name``,
``Identifier``, ``Code``, ``FreeText``, ``Narrative``) that bounds its length and the
characters it may hold, and every free-form object (clinical answers, update changes, draft
fields) has a ``Shape`` that bounds its depth and size. ``parse`` (and the HTTP error
handler, through ``field_errors``) turns a failure into InvalidInput with one entry per field.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError,
                      ValidatorFunctionWrapHandler, WrapSerializer, WrapValidator, model_validator)
from pydantic_core import PydanticCustomError

from domain.errors import FieldError, InvalidInput

INT64 = 2**63 - 1


# ---- text ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextKind:
    """What a kind of text refuses, and how the refusal says so."""

    refuses: re.Pattern
    rule: str

    def problem(self, value: str) -> str | None:
        found = self.refuses.search(value)
        if found is None:
            return None
        return f"character {found.start() + 1} is {_describe(found.group())}: {self.rule}"

    def check(self, value: str) -> str:
        problem = self.problem(value)
        if problem:
            raise PydanticCustomError("text", "{problem}", {"problem": problem})
        return value


def _describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if "\ud800" <= char <= "\udfff":
        return f"{code}, a lone surrogate (not valid Unicode)"
    if char == "\t":
        return f"{code}, a tab"
    if char in "\n\r":
        return f"{code}, a line break"
    if unicodedata.category(char) == "Cc":
        return f"{code}, a control character"
    return f"{code} ({unicodedata.name(char, 'unnamed').lower()})"


_SURROGATES = "\ud800-\udfff"  # what UTF-8 (and so the store) cannot hold
_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 and C1 controls but tab, LF and CR (PostgreSQL holds no NUL)
_LINE_BREAKS = "\t\n\r\u2028\u2029"
_BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"  # embeddings, overrides, isolates: text that displays as other text

FREE_TEXT = TextKind(re.compile(f"[{_SURROGATES}{_CONTROLS}]"),
                     "text takes no control characters but tab, CR and LF, and must be valid Unicode")
NAME_TEXT = TextKind(re.compile(f"[{_SURROGATES}{_CONTROLS}{_LINE_BREAKS}{_BIDI_CONTROLS}]"),
                     "names, identifiers and codes take no control characters, line breaks or bidirectional overrides")


def _text(kind: TextKind, max_length: int, description: str) -> Any:
    return Annotated[str, Field(max_length=max_length, description=description), AfterValidator(kind.check)]


# The vocabulary of text fields: each field says what it holds by its type. A field's own
# Field(max_length=...) does not override its type's (pydantic keeps the type's): pick the type that fits.
Code = _text(NAME_TEXT, 40, "a code, number or ISO 8601 value: NPI, TIN, procedure, diagnosis, phone, date, instant")
Identifier = _text(NAME_TEXT, 100, "an identifier: member, document, case, P2P, policy, a reason from a list")
PersonName = _text(NAME_TEXT, 100, "a person's given or family name")
Name = _text(NAME_TEXT, 200, "a name or a short label: provider, site, reviewer, requested item, guideline")
FileName = _text(NAME_TEXT, 255, "a document's file name")
FreeText = _text(FREE_TEXT, 2_000, "free text: a reason, an outcome, instructions (tab, CR and LF allowed)")
Narrative = _text(FREE_TEXT, 20_000, "long free text: clinical notes, a rationale (tab, CR and LF allowed)")
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"),
                  AfterValidator(NAME_TEXT.check)]


def checked(field: str, value: str | None, kind: TextKind = NAME_TEXT, max_length: int = 200) -> str | None:
    """Text that arrives outside a body (a header, a CLI option), checked as its kind."""
    if value is None:
        return None
    problem = kind.problem(value) or (f"at most {max_length} characters" if len(value) > max_length else None)
    if problem:
        raise InvalidInput(FieldError(field, problem))
    return value


# ---- free-form objects -----------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """The bounds of a free-form JSON object: how deep, how wide, how much in all, and the kind
    of text its keys and its string values hold."""

    values: TextKind = FREE_TEXT
    depth: int = 16          # objects and lists inside one another, the outermost counting 1
    keys: int = 200          # per object
    items: int = 500         # per list
    total: int = 5_000       # values, keys and containers in all
    key_length: int = 100
    text_length: int = 10_000


class Unsafe(Exception):
    def __init__(self, at: tuple, message: str):
        super().__init__(message)
        self.at, self.message = at, message


def json_safe(value: Any, shape: Shape | None = None, at: tuple = ()) -> None:
    """Refuse what the store cannot keep exactly or what would stop the system: lone surrogates,
    control characters (NUL above all: PostgreSQL text cannot hold it), integers beyond 64
    bits, non-finite numbers (JSON has none), and, within a ``shape``, keys that are not
    identifiers, text beyond its length, nesting or size beyond its bounds (orjson refuses to
    write JSON nested ~255 deep). Raises Unsafe naming where. Models inside are skipped: they
    checked themselves."""
    values = shape.values if shape else FREE_TEXT
    seen = 0
    stack: list[tuple[Any, tuple, int]] = [(value, at, 1)]
    while stack:
        value, at, depth = stack.pop()
        seen += 1
        if shape and seen > shape.total:
            raise Unsafe(at, f"free-form objects hold at most {shape.total} values in all")
        if isinstance(value, str):
            problem = values.problem(value)
            if problem:
                raise Unsafe(at, problem)
            if shape and len(value) > shape.text_length:
                raise Unsafe(at, f"text here is at most {shape.text_length} characters")
        elif isinstance(value, bool) or value is None or isinstance(value, BaseModel):
            continue
        elif isinstance(value, int):
            if not -INT64 - 1 <= value <= INT64:
                raise Unsafe(at, "integers must fit in 64 bits")
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise Unsafe(at, "numbers must be finite")
        elif isinstance(value, (dict, list, tuple)):
            if shape and depth > shape.depth:
                raise Unsafe(at, f"free-form objects nest at most {shape.depth} deep")
            if isinstance(value, dict):
                if shape and len(value) > shape.keys:
                    raise Unsafe(at, f"a free-form object has at most {shape.keys} keys")
                for key, item in value.items():
                    key = str(key)
                    problem = NAME_TEXT.problem(key) if shape else FREE_TEXT.problem(key)
                    if problem or (shape and not 0 < len(key) <= shape.key_length):
                        problem = problem or f"keys are 1 to {shape.key_length} characters"
                        raise Unsafe(at, f"the key {key[:40]!r}{'...' if len(key) > 40 else ''}: {problem}")
                    seen += 1
                    stack.append((item, (*at, key), depth + 1))
            else:
                if shape and len(value) > shape.items:
                    raise Unsafe(at, f"a free-form list has at most {shape.items} items")
                stack.extend((item, (*at, i), depth + 1) for i, item in enumerate(value))


def _refusal(exc: Unsafe) -> PydanticCustomError:
    return PydanticCustomError("unsafe", "{problem}", {"problem": exc.message, "at": exc.at})


def _free_form(shape: Shape) -> Any:
    def check(value: dict) -> dict:
        try:
            json_safe(value, shape)
        except Unsafe as exc:
            raise _refusal(exc) from None
        return value

    return Annotated[dict[str, Any], AfterValidator(check)]


CLINICAL = Shape()
CHANGES = Shape(values=NAME_TEXT, keys=50, items=100, total=500, text_length=200)  # site, contact, codes, regimen...
DRAFT = Shape(total=10_000)  # a request in the making: its fields, their parts, their clinical answers
ClinicalAnswers = _free_form(CLINICAL)
Changes = _free_form(CHANGES)


class JsonSafe(BaseModel):
    @model_validator(mode="after")
    def _json_safe(self):
        try:
            json_safe(self.__dict__)
            if self.model_extra:
                json_safe(self.model_extra, DRAFT)
        except Unsafe as exc:
            raise _refusal(exc) from None
        return self


class Body(JsonSafe):
    model_config = ConfigDict(extra="forbid")


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
    line_of_business: Literal["medicare", "medicaid", "duals", "commercial"]
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
    channel: Literal["portal", "phone", "fax"] = Field(default="portal", description=(
        "how the request came in: portal (web), phone or fax; letters to the provider go by e-notification only "
        "for web-initiated requests"))


class StartDraft(JsonSafe):
    """The fields of a request in the making: any of SubmitCase's, kept as a free-form object (DRAFT)."""

    model_config = ConfigDict(extra="allow")
    policy: Identifier
    line_of_business: Literal["medicare", "medicaid", "duals", "commercial"]


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
    level: Literal["pre_decision", "reconsideration", "consultative_only"]
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
    channel: Literal["phone", "fax", "e-notification", "mail", "phone_and_writing"] = Field(description=(
        "Medicare lines: a denial needs the provider told telephonically and in writing: one notice by "
        "phone_and_writing, or one by phone and one in writing (fax, e-notification, mail)"))
    notes: Narrative | None = None


class ExtendTimeframe(Body):
    reason: Identifier
    days: StrictInt = Field(ge=-1000, le=1000)


class Line(Body):
    code: Code
    units_requested: StrictInt | None = Field(default=None, ge=0, le=100_000)
    units_approved: StrictInt | None = Field(default=None, ge=-100_000, le=100_000)
    decision: Literal["approved", "partially_approved", "denied"] | None = None
    rental: Literal["days", "months"] | None = None


class Determination(Body):
    outcome: Literal["approved", "partially_approved", "denied", "alternative_recommended"]
    lines: list[Line] = Field(default=[], max_length=50)
    rationale: Narrative | None = None
    guidelines: list[Name] = Field(default=[], max_length=50)
    valid_from: Code | None = Field(default=None, description=LOCAL_DATE_DESCRIPTION)
    valid_to: Code | None = Field(default=None, description=LOCAL_DATE_DESCRIPTION + "; default: the policy's validity")
    technique: Name | None = None
    fractions: StrictInt | None = Field(default=None, ge=-1000, le=1000)
    igrt: StrictBool | None = None
    site_of_care_redirect: StrictBool = False


class ReconsiderationRequest(Body):
    reason: FreeText = Field(min_length=1)
    documents: list[DocumentRef] = documents_field()


class ReconsiderationDecision(Body):
    outcome: Literal["approved", "partially_approved", "denied"]
    lines: list[Line] = Field(default=[], max_length=50)
    rationale: Narrative | None = None
    guidelines: list[Name] = Field(default=[], max_length=50)
    valid_to: Code | None = Field(default=None, description="ISO date; required where the program states the treatment span")


class AppealRequest(Body):
    reason: FreeText = Field(min_length=1)
    filed_at: Code | None = None


class AppealDecision(Body):
    outcome: Literal["upheld", "overturned", "partially_overturned"]
    rationale: Narrative | None = None
    lines: list[Line] = Field(default=[], max_length=50)
    valid_to: Code | None = Field(default=None, description="ISO date; required where the program states the treatment span")


class AuthorizationUpdate(Body):
    kind: Literal["site", "code_correction", "contact", "technique", "igrt", "fractions", "cancer_type", "timespan", "regimen"]
    changes: Changes


class AuthorizationExtension(Body):
    valid_to: Code = Field(description=LOCAL_DATE_DESCRIPTION)


class Empty(Body):
    pass


M = TypeVar("M", bound=BaseModel)


def field_name(*parts: Any) -> str:
    """A location as the domain writes fields: ``service.procedures[0].code``."""
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f"{'.' if name else ''}{part}"
    return name


def field_errors(errors: list[dict], *, skip: int = 0) -> list[FieldError]:
    """pydantic's errors as FieldErrors, each naming its field (inside a free-form object too)."""
    return [FieldError(field_name(*e["loc"][skip:], *(e.get("ctx") or {}).get("at", ())) or "body", e["msg"])
            for e in errors]


def parse(model: type[M], data: Any) -> dict:
    """Validate ``data`` against ``model``; return plain JSON values (no None-only defaults lost)."""
    if not isinstance(data, dict):
        raise InvalidInput(FieldError("body", "expected a JSON object"))
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidInput(field_errors(exc.errors())) from None
