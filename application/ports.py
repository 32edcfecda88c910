"""What the application needs from the world, named here and provided by the composition root
(infra/bootstrap.py): the clock, the case-number and idempotency registry, and the size an
event will have on the Kafka topic. The application imports no adapter."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class Registry(Protocol):
    """Case numbers (taken only after a submission passed validation) and idempotency keys."""

    def case_number(self, case_id: str) -> str: ...

    def release_case_numbers(self, case_ids: list[str]) -> None: ...

    def find_key(self, key: str) -> tuple[str, str] | None: ...

    def remember_key(self, key: str, digest: str, case_id: str) -> None: ...


# a stored event -> its size in bytes as published; raises TypeError/ValueError when it cannot be encoded
PublishedSize = Callable[[Any], int]
