"""The subscriber's side of at-least-once delivery: keep the highest ``caseversion`` per case
and drop anything at or below it. Events of one case share a partition (key = case id), so
they arrive in order; a relay restart may re-send a tail with the same CloudEvents ids.

    deduper = CaseVersionDeduper()
    for message in consumer:
        event = parse_message(message.value)
        if deduper.accept_event(event):
            handle(event)

Keep ``deduper.state()`` with your own offsets to survive restarts.
"""

from __future__ import annotations


class CaseVersionDeduper:
    def __init__(self, state: dict[str, int] | None = None):
        self._highest: dict[str, int] = dict(state or {})

    def accept(self, case_id: str, caseversion: int) -> bool:
        if caseversion <= self._highest.get(case_id, 0):
            return False
        self._highest[case_id] = caseversion
        return True

    def accept_event(self, event) -> bool:
        """``accept`` for a CloudEvent of the topic: its subject (case id) and caseversion."""
        return self.accept(event.get_subject(), int(event.get_extension("caseversion")))

    def state(self) -> dict[str, int]:
        return dict(self._highest)
