"""The state of a case and how it records events: what every command of ``Case`` reads (the
fields its events set, the policy row, derived answers such as P2P eligibility) and writes
(events in the per-case hash chain, letters routed by the policy row)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import events as ev
from domain.calendar import BusinessCalendar
from domain.chain import GENESIS, event_hash
from domain.context import Context, calendar_for, iso
from domain.policy import PREFERENCE, PolicyRow, policy_version
from domain.vocabulary import ADVERSE, AUTHORIZED_STATUSES, CLOSED_STATUSES, OPEN_STATUSES


class CaseState(Aggregate):
    """A case's fields, set only by its events' ``apply``; the queries every decision shares."""

    def blank(self) -> None:
        self.last_hash = GENESIS
        self.commands: dict[str, dict] = {}  # idempotency key -> digest, last version, instant
        self.case_number = ""
        self.policy = ""
        self.policy_version = 0
        self.line_of_business = ""
        self.status = "draft"
        self.draft: dict | None = None
        self.draft_expires_at: datetime | None = None
        self.member: dict = {}
        self.ordering_provider: dict = {}
        self.site: dict = {}
        self.service: dict = {}
        self.urgent_requested = False
        self.urgent = False
        self.urgent_note: str | None = None
        self.retro = False
        self.clinical: dict = {}
        self.documents: list = []
        self.channel = "portal"
        self.received_at: datetime | None = None
        self.decision_due_at: datetime | None = None
        self.decision_warning_at: datetime | None = None
        self.decision_target_at: datetime | None = None
        self.decision_due_soon = False
        self.decision_overdue = False
        self.timeframe_extended = False
        self.hold: dict | None = None
        self.hold_due_at: datetime | None = None
        self.holds = 0
        self.hold_lapsed = False
        self.uploads = 0
        self.p2ps: dict[str, dict] = {}
        self.pre_denial_notice_at: datetime | None = None
        self.pre_denial_channels: list[str] = []
        self.outcome: str | None = None
        self.lines: list = []
        self.determined_at: datetime | None = None
        self.decided_by: str | None = None
        self.approval_details: dict = {}
        self.authorization_number: str | None = None
        self.valid_from: datetime | None = None
        self.valid_to: datetime | None = None
        self.authorization_extensions = 0
        self.appeal_deadline: datetime | None = None
        self.appeal_window_closed = False
        self.appeals: list[dict] = []
        self.reconsideration_open = False
        self.reconsideration_deadline: datetime | None = None
        self.reconsideration: dict | None = None
        self.alternative_deadline: datetime | None = None
        self.alternative_lapsed = False
        self.successor_case_id: str | None = None
        self.predecessor_case_id: str | None = None
        self.letters = 0

    @property
    def row(self) -> PolicyRow:
        return policy_version(self.policy, self.policy_version)

    @property
    def calendar(self) -> BusinessCalendar:
        return calendar_for(self.row.timezone)

    @property
    def date_of_service(self) -> date | None:
        dos = self.service.get("date_of_service")
        return date.fromisoformat(dos) if dos else None

    @property
    def open_appeal(self) -> dict | None:
        return self.appeals[-1] if self.appeals and self.appeals[-1]["outcome"] is None else None

    def authorization_active(self, now: datetime) -> bool:
        return self.status in AUTHORIZED_STATUSES and self.valid_to is not None and now <= self.valid_to

    def reconsideration_allowed(self, now: datetime) -> bool:
        return (
            self.reconsideration_open
            and self.status in ADVERSE
            and (self.reconsideration_deadline is None or now <= self.reconsideration_deadline)
        )

    def p2p_eligibility(self, now: datetime) -> dict:
        row = self.row
        if self.status == "held" and self.hold_due_at and now < self.hold_due_at:
            if row.pre_decision_p2p:
                return _eligibility(True, "pre_decision", self.hold_due_at, False, "A pre-decision peer-to-peer may be held instead of sending records, before the hold due date.")
            return _eligibility(False, None, None, False, "This program does not offer a pre-decision peer-to-peer; send the requested information.")
        if self.status in OPEN_STATUSES | {"draft"}:
            return _eligibility(False, None, None, False, "No peer-to-peer is offered before a determination unless the case is held for information.")
        if self.status in CLOSED_STATUSES:
            return _eligibility(False, None, None, False, f"The case is {self.status}.")
        if self.reconsideration_allowed(now):
            return _eligibility(True, "reconsideration", self.reconsideration_deadline, False, "A reconsideration peer-to-peer may change the decision.")
        return _eligibility(True, "consultative_only", None, True, "Post-decision options are exhausted or not offered: a peer-to-peer is consultative only and cannot change the decision.")

    def _authorization_number(self) -> str:
        return f"A{self.case_number}"

    # ---- triggering (hash chain) ------------------------------------------------------------

    def _trigger(self, ctx: Context, event_class: type[ev.CaseEvent], **data: Any) -> None:
        version = self.version + 1
        h = event_hash(
            case_id=str(self.id), version=version, type_name=event_class.__name__, occurred_at=ctx.now,
            actor=ctx.actor, command=ctx.command, prev_hash=self.last_hash, data=data,
        )
        self.trigger_event(
            event_class, timestamp=ctx.now, actor=ctx.actor, command=ctx.command, prev_hash=self.last_hash, hash=h, **data
        )

    @classmethod
    def _start(cls, ctx: Context, case_id: UUID, event_class: type[ev.CaseEvent], **data: Any) -> CaseState:
        h = event_hash(
            case_id=str(case_id), version=1, type_name=event_class.__name__, occurred_at=ctx.now,
            actor=ctx.actor, command=ctx.command, prev_hash=GENESIS, data=data,
        )
        first = event_class(
            originator_id=case_id, originator_version=1, timestamp=ctx.now, actor=ctx.actor,
            command=ctx.command, prev_hash=GENESIS, hash=h, **data,
        )
        case = first.mutate(None)
        case.pending_events.append(first)
        return case

    def _letters(self, ctx: Context, letter_kind: str, family: str) -> None:
        """The letters of one kind, to the recipients and by the channels the policy row routes it."""
        for route in self.row.letter_routes(family):
            channel = route.channel
            if route.recipient == "provider":
                if channel == PREFERENCE:
                    web = self.channel == "portal" and self.ordering_provider.get("notify_by_email", True)
                    channel = "e-notification" if web else "fax"
                address = {"npi": self.ordering_provider.get("npi"), "fax": self.ordering_provider.get("fax")}
            elif route.recipient == "facility":
                address = {"npi": self.site.get("npi"), "name": self.site.get("name")}
            else:
                address = {"member_id": self.member.get("id")}
            self._trigger(ctx, ev.LetterIssued, recipient=route.recipient, channel=channel, letter_kind=letter_kind,
                          address=address)


def _eligibility(eligible: bool, level: str | None, valid_until: datetime | None, consultative: bool, message: str) -> dict:
    return {"eligible": eligible, "level": level, "valid_until": iso(valid_until), "consultative_only": consultative, "message": message}
