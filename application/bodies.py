"""The machinery of request bodies, shared by HTTP and CLI: the kinds of text a field may hold,
the shape of a free-form object, the ``Body`` base every command body derives from, and
``parse``, which turns a failure into InvalidInput with one entry per field.

Text is checked here, once, for both entry points: every text field has a kind (``Name``,
``Identifier``, ``Code``, ``FreeText``, ``Narrative``) that bounds its length and the
characters it may hold, and every free-form object (clinical answers, update changes, draft
fields) has a ``Shape`` that bounds its depth and size.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
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
