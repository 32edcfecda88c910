"""Input rules of POLICIES.md. Each check raises InvalidInput naming the field and the rule."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Callable

from domain.errors import DocumentTooLarge, FieldError, InvalidInput

MAX_DOCUMENT_BYTES = 25 * 1024 * 1024
MAX_URGENT_DOCUMENTS = 5
DOCUMENT_MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_CPT = re.compile(r"^([0-9]{5}|[0-9]{4}[FTU])$")
_HCPCS = re.compile(r"^[A-V][0-9]{4}$")
_TIN = re.compile(r"^[0-9]{9}$")
_NPI = re.compile(r"^[0-9]{10}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# The plausible range of any date or instant a client sends: wide enough for every real case
# (a member born in 1900, an authorization valid into the 2090s), narrow enough that no
# calendar arithmetic on it can overflow later (``date.max`` is 9999-12-31).
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2099, 12, 31)
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_INSTANT = datetime(2099, 12, 31, tzinfo=timezone.utc)


def npi_is_valid(npi: str) -> bool:
    """10 digits whose last is the Luhn check digit of the 80840-prefixed first nine."""
    if not isinstance(npi, str) or not _NPI.match(npi):
        return False
    digits = [int(c) for c in "80840" + npi]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def npi_check_digit(first_nine: str) -> str:
    """The check digit that makes ``first_nine`` a valid NPI (used by test data and the demo)."""
    for c in "0123456789":
        if npi_is_valid(first_nine + c):
            return c
    raise ValueError(first_nine)  # unreachable: exactly one digit fits


def check_npi(field: str, npi: str) -> str:
    if not npi_is_valid(npi):
        raise InvalidInput(FieldError(field, f"{npi!r} is not a valid NPI (10 digits, Luhn check with prefix 80840)"))
    return npi


def check_tin(field: str, tin: str) -> str:
    if not isinstance(tin, str) or not _TIN.match(tin):
        raise InvalidInput(FieldError(field, f"{tin!r} is not a valid TIN (9 digits)"))
    return tin


def check_icd10(field: str, code: str) -> str:
    if not isinstance(code, str) or not _ICD10.match(code.upper()):
        raise InvalidInput(
            FieldError(field, f"{code!r} is not an ICD-10-CM code (letter, digit, letter-or-digit, optional dot and up to 4 more)")
        )
    return code.upper()


def procedure_kind(code: str, program_codes: tuple[str, ...]) -> str | None:
    """'cpt', 'hcpcs', 'program' or None when the code is none of them."""
    if _CPT.match(code):
        return "cpt"
    if _HCPCS.match(code):
        return "hcpcs"
    for prefix in program_codes:
        if prefix.endswith("*") and code.startswith(prefix[:-1]) and len(code) > len(prefix) - 1:
            return "program"
        if code == prefix:
            return "program"
    return None


def check_procedure(field: str, code: str, program_codes: tuple[str, ...], policy_id: str) -> str:
    code = code.upper() if isinstance(code, str) else code
    if not isinstance(code, str) or procedure_kind(code, program_codes) is None:
        allowed = ", ".join(program_codes) or "none"
        raise InvalidInput(
            FieldError(
                field,
                f"{code!r} is not a CPT code (5 digits or 4 digits + F/T/U), a HCPCS level II code (letter + 4 digits) "
                f"or a program code of {policy_id} ({allowed})",
            )
        )
    return code


def _in_range(field: str, value, earliest, latest, shown: Callable[[object], str]):
    if not earliest <= value <= latest:
        raise InvalidInput(FieldError(field, f"{shown(value)} is out of range: expected {shown(earliest)} to {shown(latest)}"))
    return value


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as written (``Z`` or an offset); ValueError when it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def extension_of(name: str) -> str:
    """A file name's extension, lower case with its dot (``.pdf``), or "" when it has none."""
    return name[name.rfind("."):].lower() if "." in name else ""


def check_instant(field: str, value: datetime | str, *, earliest: datetime = EARLIEST_INSTANT,
                  latest: datetime = LATEST_INSTANT) -> datetime:
    """An ISO 8601 instant with a time zone, within [earliest, latest]."""
    if isinstance(value, str):
        try:
            value = parse_instant(value)
        except ValueError:
            raise InvalidInput(FieldError(field, f"{value!r} is not an ISO 8601 instant")) from None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(FieldError(field, "an instant must carry a time zone (e.g. 2026-03-09T14:00:00Z)"))
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInput(FieldError(field, f"{value.isoformat()} is out of range")) from None
    return _in_range(field, value, earliest, latest, lambda v: v.isoformat())


def check_date(field: str, value: date | str, *, earliest: date = EARLIEST_DATE, latest: date = LATEST_DATE) -> date:
    """An ISO 8601 date (YYYY-MM-DD) within [earliest, latest]."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(FieldError(field, f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)")) from None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidInput(FieldError(field, "expected an ISO 8601 date (YYYY-MM-DD)"))
    return _in_range(field, value, earliest, latest, lambda v: v.isoformat())


def check_local_date(field: str, value: date | datetime | str, local_date: Callable[[datetime], date], *,
                     earliest: date = EARLIEST_DATE, latest: date = LATEST_DATE) -> date:
    """A date, or an instant whose date in the plan's time zone (``local_date``) is taken."""
    if isinstance(value, datetime) or (isinstance(value, str) and "T" in value):
        return check_date(field, local_date(check_instant(field, value)), earliest=earliest, latest=latest)
    return check_date(field, value, earliest=earliest, latest=latest)


def check_document(field: str, doc: dict) -> dict:
    """A document reference: id, name, media_type, size, sha256."""
    name = str(doc.get("name", ""))
    ext = extension_of(name)
    if ext not in DOCUMENT_MEDIA_TYPES:
        raise InvalidInput(FieldError(f"{field}.name", f"{name!r}: documents must be .doc, .docx, .pdf or .png"))
    size = doc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise InvalidInput(FieldError(f"{field}.size", "size must be a positive number of bytes"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(
            FieldError(f"{field}.size", f"{name!r} is {size} bytes; documents are at most 25 MB ({MAX_DOCUMENT_BYTES} bytes)")
        )
    sha = str(doc.get("sha256", ""))
    if not _SHA256.match(sha):
        raise InvalidInput(FieldError(f"{field}.sha256", "sha256 must be 64 lowercase hex digits"))
    return {
        "document_id": str(doc.get("document_id") or sha),
        "name": name,
        "media_type": DOCUMENT_MEDIA_TYPES[ext],
        "size": size,
        "sha256": sha,
    }


def check_documents(field: str, docs: list[dict], *, urgent: bool) -> list[dict]:
    checked = [check_document(f"{field}[{i}]", d) for i, d in enumerate(docs)]
    if urgent and len(checked) > MAX_URGENT_DOCUMENTS:
        raise InvalidInput(FieldError(field, f"urgent requests take at most {MAX_URGENT_DOCUMENTS} documents, got {len(checked)}"))
    return checked
