"""What the application needs from the world, named here and provided by the composition root
(infra/bootstrap.py): the clock, the case-number and idempotency registry, and the size an
event will have on the Kafka topic. The application imports no adapter."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class Registry(Protocol):
    """Case numbers and idempotency keys. A case's number and a command's key are recorded with
    the events, in the same transaction: ``Application.save(*cases, case_numbers=[(number,
    case_id)], idempotency=[(scoped_key, digest, case_id)])``."""

    def case_number(self, case_id: str) -> str: ...

    def release_case_numbers(self, numbers: list[str]) -> None: ...  # issued, never recorded: issue again

    def find_key(self, key: str) -> tuple[str, str] | None: ...  # (digest, case id) of a recorded key


# a stored event -> its size in bytes as published; raises TypeError/ValueError when it cannot be encoded
PublishedSize = Callable[[Any], int]
