"""Named refusals. Every command that breaks a rule raises one of these and records nothing.

The HTTP layer maps the classes to problem JSON in one place; the CLI maps them to exit 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    """Base of every refusal. ``rule`` is a stable slug used in problem ``type`` URIs."""

    rule: str = "domain-error"
    title: str = "Request refused"

    def __init__(self, detail: str, *, rule: str | None = None):
        super().__init__(detail)
        self.detail = detail
        if rule is not None:
            self.rule = rule


class InvalidInput(DomainError):
    """A field breaks an input rule (format, range, size). Nothing is recorded."""

    rule = "invalid-input"
    title = "Invalid input"

    def __init__(self, errors: list[FieldError] | FieldError, detail: str | None = None):
        if isinstance(errors, FieldError):
            errors = [errors]
        self.errors = errors
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in errors))


class DocumentTooLarge(InvalidInput):
    rule = "document-too-large"
    title = "Document too large"


class EventTooLarge(InvalidInput):
    """The command's event would not fit the Kafka topic's message size (CASELOG_MAX_EVENT_BYTES)."""

    rule = "event-too-large"
    title = "Event too large"


class RuleViolation(DomainError):
    """The command is well formed but a policy rule refuses it now."""

    title = "Rule violated"

    def __init__(self, rule: str, detail: str):
        super().__init__(detail, rule=rule)


class NotApplicable(RuleViolation):
    """Prior authorization does not apply to this request (it is refused, with the reason)."""

    title = "Prior authorization does not apply"


class NotPermitted(DomainError):
    """The actor may not do this (role, credential)."""

    rule = "not-permitted"
    title = "Not permitted"


class CaseNotFound(DomainError):
    rule = "case-not-found"
    title = "Case not found"


class UnknownPolicy(InvalidInput):
    rule = "unknown-policy"
    title = "Unknown policy"


class VersionConflict(DomainError):
    rule = "version-conflict"
    title = "Version conflict"


class IdempotencyConflict(DomainError):
    rule = "idempotency-key-reused"
    title = "Idempotency key reused with another request"
