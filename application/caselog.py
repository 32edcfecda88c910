"""The application service: one method per command; each loads, makes one domain call, saves.

Idempotency: a command given a key records ``{"key", "digest"}`` on its events. A retry
with the same key and body finds them and answers as the first call did, recording
nothing; the same key with another body is refused. A creation's case id is derived from
its key, so even a crash between the save and the answer cannot create a second case.

Concurrency: a save that loses a race to another command on the same case is decided again
on the case as it now stands (``race_attempts``); only a client that sent the version it
expects (If-Match) is told of the conflict.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import orjson
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Mapper, Transcoder
from eventsourcing.utils import Environment

from application.deadlines import DEADLINES
from application.ports import Clock, PublishedSize, Registry
from domain.case import Case
from domain.chain import ChainWalker, decode_state
from domain.context import Context
from domain.errors import (CaseNotFound, DomainError, EventTooLarge, FieldError, IdempotencyConflict, InvalidInput,
                           RuleViolation, VersionConflict)
from domain.events import CaseEvent
from domain.intake import intake
from domain.views import case_view

log = logging.getLogger("caselog.app")
KEY_NAMESPACE = uuid5(NAMESPACE_URL, "https://caselog/idempotency")
SCHEDULER = {"kind": "scheduler", "id": "scheduler"}


RACE_ATTEMPTS = 5
RACE_PAUSE = 0.002  # seconds; doubled at each attempt, jittered


def race_attempts(attempts: int = RACE_ATTEMPTS) -> Iterator[bool]:
    """The attempts at a command whose save may lose a race (another command recorded on one of
    its cases after it was loaded); yields whether each is the last, pausing a short random
    while before each retry so racing commands spread out. A command retried this way loads
    the case again and decides again: a keyed retry then finds the earlier answer, a client
    that sent If-Match meets its version check (409), any other is decided on the case as it
    now stands, so a race is invisible to a client that did not ask to see one."""
    for n in range(attempts):
        if n:
            time.sleep(random.uniform(0, RACE_PAUSE * 2**n))
        yield n == attempts - 1


class UnreadableState(RuntimeError):
    """A stored event whose state cannot be decoded: encrypted under a key not given (CASELOG_CIPHER_KEY,
    CASELOG_CIPHER_OLD_KEY), ciphertext read without a key, or damaged."""


def _replay(case: Case | None, events: Iterable[CaseEvent]) -> Case | None:
    """eventsourcing's project_aggregate without its assertion against a runtime Protocol (an
    isinstance check that costs more than applying the event)."""
    for event in events:
        case = event.mutate(case)
    return case


@dataclass(frozen=True)
class Answer:
    view: dict
    created: bool = False
    position: int | None = None  # the store position of the command's last event (None: nothing recorded now)


def digest_of(name: str, case_id: Any, body: Any) -> str:
    payload = orjson.dumps({"command": name, "case_id": str(case_id) if case_id else None, "body": body},
                           option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(payload).hexdigest()


def event_record(event: CaseEvent) -> dict:
    """An event as readers see it (history, CLI, Kafka ``data``)."""
    return {
        "case_id": str(event.originator_id),
        "version": event.originator_version,
        "type": type(event).__name__,
        "occurred_at": event.timestamp.isoformat(),
        "actor": event.actor,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


class CaseLog(Application):
    name = "caselog"

    def __init__(self, env: dict, *, clock: Clock, registry: Registry, transcoder: Transcoder,
                 published_size: PublishedSize, max_event_bytes: int = 512 * 1024):
        self.clock = clock
        self.registry = registry
        self.transcoder_ = transcoder
        self.published_size = published_size
        self.max_event_bytes = max_event_bytes
        self._saved_listeners: list[Callable[[], None]] = []
        super().__init__(env)
        self._plain = Mapper(transcoder=transcoder)  # an event as published: neither compressed nor encrypted

    def on_saved(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (no arguments, quick: it must not block the writer) after each save of
        this application committed; returns the function that removes it. The relay in this process
        wakes on it instead of waiting for its next poll."""
        self._saved_listeners = [*self._saved_listeners, listener]

        def remove() -> None:
            self._saved_listeners = [f for f in self._saved_listeners if f is not listener]

        return remove

    def _notify(self, recordings: list) -> None:
        super()._notify(recordings)
        for listener in self._saved_listeners:
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener's failure is not the committed write's
                log.exception("a save listener failed")

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Only what the composition root gives: eventsourcing would also take the process environment, where
        CASELOG_CIPHER_KEY (say) reads as this application's CIPHER_KEY whatever the settings say."""
        return Environment(name, dict(env or {}))

    def construct_transcoder(self) -> Transcoder:
        return self.transcoder_

    def stored_state(self, raw: bytes | dict) -> dict:
        """A stored row's state as written (decrypted and decompressed by the store's mapper when it
        encrypts): what verify and the seals hash, the projections and the relay read."""
        return decode_state(raw, self.mapper.cipher, self.mapper.compressor)

    def save(self, *objs: Any, **kwargs: Any) -> list:
        """Application.save, without its runtime-protocol isinstance checks for cases (a tenth of a
        submission's time): their events collected, recorded with ``kwargs``, then notified."""
        if not all(isinstance(obj, Case) for obj in objs):
            return super().save(*objs, **kwargs)
        processing: ProcessingEvent = ProcessingEvent()
        for case in objs:
            processing.events.extend(case.collect_events())
            processing.aggregates[case.id] = case
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    # ---- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _scoped(actor: dict, key: str | None) -> str | None:
        return f"{actor.get('kind')}:{actor.get('id')}:{key}" if key else None

    @staticmethod
    def _uuid(case_id: Any) -> UUID:
        try:
            return case_id if isinstance(case_id, UUID) else UUID(str(case_id))
        except ValueError:
            raise CaseNotFound(f"no case {case_id!r}") from None

    def load(self, case_id: Any, version: int | None = None) -> Case:
        uid = self._uuid(case_id)
        try:
            return self.repository.get(uid, version=version, projector_func=_replay)
        except AggregateNotFoundError:
            raise CaseNotFound(f"no case {case_id}") from None

    def exists(self, case_id: UUID) -> bool:
        return case_id in self.repository

    def _refuse_unpublishable(self, cases: tuple[Case, ...]) -> None:
        """Every stored event must be publishable: its CloudEvent must encode and fit the topic
        (``max_event_bytes``, below its message limit), or the command is refused before
        anything is saved."""
        for case in cases:
            for event in case.pending_events:
                name = type(event).__name__
                try:
                    size = self.published_size(self._plain.to_stored_event(event))
                except (TypeError, ValueError) as exc:  # orjson: nesting too deep, a value JSON cannot hold
                    why = f"the {name} event it makes cannot be stored and published as JSON ({exc})"
                    error: InvalidInput = InvalidInput(FieldError("body", why))
                else:
                    if size <= self.max_event_bytes:
                        continue
                    why = (f"the {name} event it makes would be {size} bytes on the Kafka topic;"
                           f" at most {self.max_event_bytes} (CASELOG_MAX_EVENT_BYTES)")
                    error = EventTooLarge(FieldError("body", why))
                raise error

    def _save(self, *cases: Case, key: tuple[str, str, str] | None = None) -> int | None:
        """Save the cases' new events in one transaction with the number of each new case and the
        command's idempotency key (scoped key, digest, case id); the position of the last. A new
        case's number goes back when nothing is saved."""
        numbers = [(c.case_number, str(c.id)) for c in cases if c.version == len(c.pending_events)]
        try:
            self._refuse_unpublishable(cases)
        except DomainError:
            self.registry.release_case_numbers([n for n, _ in numbers])
            raise
        try:
            recordings = self.save(*cases, case_numbers=numbers, idempotency=[key] if key else [])
        except IntegrityError:  # nothing was recorded (another command took a version first)
            self.registry.release_case_numbers([n for n, _ in numbers])
            raise VersionConflict("the case changed while this command ran; reload it and try again") from None
        return max((r.notification.id for r in recordings), default=None)

    def _earlier_answer(self, case: Case, scoped: str, digest: str, *, created: bool = False) -> Answer | None:
        done = case.commands.get(scoped)
        if done is None:
            return None
        if done["digest"] != digest:
            raise IdempotencyConflict("this Idempotency-Key was used with another request")
        target = self.load(done["successor"]) if done.get("successor") else case
        then = self.load(target.id, version=target.commands[scoped]["version"])
        return Answer(case_view(then, done["at"]), created or bool(done.get("successor")))

    def _check_key(self, scoped: str | None, digest: str, case_id: UUID | None) -> tuple[str, str] | None:
        if scoped is None:
            return None
        known = self.registry.find_key(scoped)
        if known and (known[0] != digest or (case_id is not None and known[1] != str(case_id))):
            raise IdempotencyConflict("this Idempotency-Key was used with another request")
        return known

    def _change(
        self, name: str, case_id: Any, body: dict, actor: dict, key: str | None, expected_version: int | None,
        decide: Callable[[Case, Context], Iterable[Case] | None],
        answer: Callable[[Case, list[Case], datetime], Answer] | None = None,
    ) -> Answer:
        scoped = self._scoped(actor, key)
        for last in race_attempts():
            case = self.load(case_id)
            digest = digest_of(name, case.id, body)
            if scoped:
                self._check_key(scoped, digest, case.id)
                earlier = self._earlier_answer(case, scoped, digest)
                if earlier:
                    return earlier
            if expected_version is not None and case.version != expected_version:
                raise VersionConflict(f"expected version {expected_version}, the case is at version {case.version}")
            ctx = Context(self.clock.now(), actor, {"key": scoped, "digest": digest} if scoped else None)
            others = list(decide(case, ctx) or [])
            try:
                position = self._save(case, *others, key=(scoped, digest, str(case.id)) if scoped else None)
            except VersionConflict:
                if last:
                    raise
                continue  # lost a race: load the case as it now stands and decide again
            made = answer(case, others, ctx.now) if answer is not None else Answer(case_view(case, ctx.now))
            return replace(made, position=position)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _create(self, name: str, body: dict, actor: dict, key: str | None, build: Callable[[Context, UUID, str], Case]) -> Answer:
        scoped = self._scoped(actor, key)
        digest = digest_of(name, None, body)
        case_id = uuid5(KEY_NAMESPACE, scoped) if scoped else uuid4()
        for attempt, last in enumerate(race_attempts()):
            if scoped:
                known = self._check_key(scoped, digest, None)
                # the key is recorded in the transaction that records the case: no key, no case (but for a
                # case recorded before keys were, found once a save lost to it: on a later attempt)
                if (known or attempt) and self.exists(case_id):
                    earlier = self._earlier_answer(self.load(case_id), scoped, digest, created=True)
                    if earlier:
                        return earlier
            ctx = Context(self.clock.now(), actor, {"key": scoped, "digest": digest} if scoped else None)
            number = self.registry.case_number(str(case_id))
            try:
                case = build(ctx, case_id, number)
            except BaseException:
                self.registry.release_case_numbers([number])  # a refused request keeps no case number
                raise
            try:
                position = self._save(case, key=(scoped, digest, str(case_id)) if scoped else None)
            except VersionConflict:
                if last:
                    raise
                continue  # the same key's request created it meanwhile: answer as it did
            return Answer(case_view(case, ctx.now), True, position)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ---- intake ---------------------------------------------------------------------------

    def submit(self, request: dict, *, actor: dict, key: str | None = None) -> Answer:
        return self._create(
            "submit", request, actor, key,
            lambda ctx, case_id, number: Case.submit(ctx, case_id=case_id, case_number=number, request=request),
        )

    def start_draft(self, request: dict, *, actor: dict, key: str | None = None) -> Answer:
        return self._create(
            "start_draft", request, actor, key,
            lambda ctx, case_id, number: Case.start_draft(
                ctx, case_id=case_id, case_number=number, policy=request.get("policy"),
                line_of_business=request.get("line_of_business"), draft=request,
            ),
        )

    def submit_draft(self, case_id, request: dict, *, actor: dict, key: str | None = None, expected_version: int | None = None) -> Answer:
        return self._change("submit_draft", case_id, request, actor, key, expected_version, lambda c, ctx: c.submit_draft(ctx, request))

    def cancel(self, case_id, reason: str, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("cancel", case_id, {"reason": reason}, actor, key, expected_version, lambda c, ctx: c.cancel(ctx, reason))

    # ---- holds, clinical, P2P --------------------------------------------------------------

    def place_hold(self, case_id, requested_items: list[str], due_at: datetime | str | None = None, *, actor: dict, key=None, expected_version=None) -> Answer:
        body = {"requested_items": requested_items, "due_at": due_at}
        return self._change("place_hold", case_id, body, actor, key, expected_version, lambda c, ctx: c.place_hold(ctx, requested_items, due_at))

    def upload_clinical(self, case_id, documents: list[dict], notes: str | None = None, *, actor: dict, key=None, expected_version=None) -> Answer:
        body = {"documents": documents, "notes": notes}
        return self._change("upload_clinical", case_id, body, actor, key, expected_version, lambda c, ctx: c.upload_clinical(ctx, documents, notes))

    def schedule_p2p(self, case_id, *, level: str, slot, reviewer: str, contact: dict, also_cases: list[str] = (), actor: dict, key=None, expected_version=None, p2p_id: str | None = None) -> Answer:
        body = {"level": level, "slot": slot, "reviewer": reviewer, "contact": contact, "also_cases": list(also_cases)}
        p2p_id = p2p_id or (str(uuid5(KEY_NAMESPACE, f"p2p:{self._scoped(actor, key)}")) if key else str(uuid4()))

        def decide(case: Case, ctx: Context) -> list[Case]:
            others = [self.load(other) for other in also_cases if str(other) != str(case.id)]
            case.schedule_p2p(ctx, p2p_id=p2p_id, level=level, slot=slot, reviewer=reviewer, contact=contact, also_cases=[str(o.id) for o in others])
            for other in others:
                other.schedule_p2p(ctx, p2p_id=p2p_id, level=level, slot=slot, reviewer=reviewer, contact=contact, also_cases=[str(case.id)] + [str(o.id) for o in others if o is not other])
            return others

        return self._change("schedule_p2p", case_id, body, actor, key, expected_version, decide)

    def _on_shared_p2p(self, name: str, case_id, p2p_id: str, body: dict, act: Callable[[Case, Context], None], *,
                       actor: dict, key=None, expected_version=None) -> Answer:
        """A command on a P2P appointment, applied to every case it still covers (one appointment may
        cover several cases), in one save."""
        def decide(case: Case, ctx: Context) -> list[Case]:
            linked = [self.load(other) for other in (case.p2ps.get(p2p_id) or {}).get("also_cases", [])]
            others = [o for o in linked if o.p2ps.get(p2p_id, {}).get("status") == "scheduled"]
            for c in [case, *others]:
                act(c, ctx)
            return others

        return self._change(name, case_id, {"p2p_id": p2p_id, **body}, actor, key, expected_version, decide)

    def reschedule_p2p(self, case_id, p2p_id: str, slot, **kw: Any) -> Answer:
        return self._on_shared_p2p("reschedule_p2p", case_id, p2p_id, {"slot": slot},
                                   lambda c, ctx: c.reschedule_p2p(ctx, p2p_id, slot), **kw)

    def cancel_p2p(self, case_id, p2p_id: str, reason: str, **kw: Any) -> Answer:
        return self._on_shared_p2p("cancel_p2p", case_id, p2p_id, {"reason": reason},
                                   lambda c, ctx: c.cancel_p2p(ctx, p2p_id, reason), **kw)

    def complete_p2p(self, case_id, p2p_id: str, outcome: str, **kw: Any) -> Answer:
        return self._on_shared_p2p("complete_p2p", case_id, p2p_id, {"outcome": outcome},
                                   lambda c, ctx: c.complete_p2p(ctx, p2p_id, outcome), **kw)

    # ---- decision clock and determination -------------------------------------------------

    def give_pre_denial_notice(self, case_id, channel: str, notes: str | None = None, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("pre_denial_notice", case_id, {"channel": channel, "notes": notes}, actor, key, expected_version,
                            lambda c, ctx: c.give_pre_denial_notice(ctx, channel, notes))

    def extend_timeframe(self, case_id, reason: str, days: int, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("extend_timeframe", case_id, {"reason": reason, "days": days}, actor, key, expected_version,
                            lambda c, ctx: c.extend_timeframe(ctx, reason, days))

    def determine(self, case_id, *, actor: dict, key=None, expected_version=None, **decision: Any) -> Answer:
        def decide(case: Case, ctx: Context) -> list[Case]:
            case.determine(ctx, **decision)
            return self._withdraw_predecessor(case, ctx)

        return self._change("determine", case_id, decision, actor, key, expected_version, decide)

    def _withdraw_predecessor(self, case: Case, ctx: Context, original: Case | None = None) -> list[Case]:
        """When a successor (clinical change) is approved, its original is withdrawn, atomically."""
        if case.predecessor_case_id and case.status in ("approved", "partially_approved"):
            original = original or self.load(case.predecessor_case_id)
            if original.status in ("approved", "partially_approved") and original.successor_case_id == str(case.id):
                original.withdraw(ctx, "superseded by the approved successor authorization", successor_case_id=str(case.id))
                return [original]
        return []

    def accept_alternative(self, case_id, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("accept_alternative", case_id, {}, actor, key, expected_version, lambda c, ctx: c.accept_alternative(ctx))

    def request_reconsideration(self, case_id, reason: str, documents: list[dict] | None = None, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("request_reconsideration", case_id, {"reason": reason, "documents": documents}, actor, key, expected_version,
                            lambda c, ctx: c.request_reconsideration(ctx, reason, documents))

    def decide_reconsideration(self, case_id, *, actor: dict, key=None, expected_version=None, **decision: Any) -> Answer:
        def decide(case: Case, ctx: Context) -> list[Case]:
            case.decide_reconsideration(ctx, **decision)
            return self._withdraw_predecessor(case, ctx)

        return self._change("decide_reconsideration", case_id, decision, actor, key, expected_version, decide)

    def file_appeal(self, case_id, reason: str, filed_at=None, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("file_appeal", case_id, {"reason": reason, "filed_at": filed_at}, actor, key, expected_version,
                            lambda c, ctx: c.file_appeal(ctx, reason, filed_at))

    def decide_appeal(self, case_id, level: int, *, actor: dict, key=None, expected_version=None, **decision: Any) -> Answer:
        def decide(case: Case, ctx: Context) -> list[Case]:
            case.decide_appeal(ctx, level=level, **decision)
            return self._withdraw_predecessor(case, ctx)

        return self._change("decide_appeal", case_id, {"level": level, **decision}, actor, key, expected_version, decide)

    # ---- the authorization ----------------------------------------------------------------

    def update_authorization(self, case_id, kind: str, changes: dict, *, actor: dict, key=None, expected_version=None) -> Answer:
        """Administrative kinds change the authorization in place (200); clinical kinds open a
        linked successor case (201, the successor's view)."""

        def decide(case: Case, ctx: Context) -> list[Case]:
            if not case.row.update_is_clinical(kind):
                case.update_authorization_in_place(ctx, kind, changes)
                return []
            successor_id = uuid5(KEY_NAMESPACE, f"successor:{ctx.command['key']}") if ctx.command else uuid4()
            request = case.supersede(ctx, kind=kind, changes=changes, successor_case_id=str(successor_id))
            intake(ctx, "0000000000", request, str(case.id))  # validate before taking a case number
            number = self.registry.case_number(str(successor_id))
            successor = Case.submit(ctx, case_id=successor_id, case_number=number, request=request, predecessor_case_id=str(case.id))
            self._withdraw_predecessor(successor, ctx, original=case)  # approved by rules at once
            return [successor]

        def answer(case: Case, successors: list[Case], now: datetime) -> Answer:
            return Answer(case_view(successors[0], now), True) if successors else Answer(case_view(case, now))

        return self._change("update_authorization", case_id, {"kind": kind, "changes": changes}, actor, key, expected_version, decide, answer)

    def extend_authorization(self, case_id, valid_to, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("extend_authorization", case_id, {"valid_to": valid_to}, actor, key, expected_version,
                            lambda c, ctx: c.extend_authorization(ctx, valid_to))

    def withdraw(self, case_id, reason: str, *, actor: dict, key=None, expected_version=None) -> Answer:
        return self._change("withdraw", case_id, {"reason": reason}, actor, key, expected_version, lambda c, ctx: c.withdraw(ctx, reason))

    # ---- deadlines (called by the scheduler) ----------------------------------------------

    def fire_deadline(self, kind: str, case_id, instant: datetime, p2p_id: str | None = None) -> Answer:
        """Turn a due instant into its event (``application.deadlines``). A second firing is refused
        by the aggregate (the deadline is disarmed once its event is recorded), so it records nothing."""
        fire = DEADLINES[kind]
        return self._change(f"deadline:{kind}", case_id, {"instant": instant, "p2p_id": p2p_id}, SCHEDULER, None, None,
                            lambda c, ctx: fire(c, ctx, instant, p2p_id))

    def fire_deadlines(self, due: Sequence[tuple[str, Any, datetime, str | None]]) -> int:
        """Fire due deadlines (kind, case id, due instant, P2P id or None) of distinct cases in one
        transaction, their events in the order given (a scheduler's backlog: one commit for the
        lot, not one each). A deadline its case refuses (already fired, or made moot) is left out.
        Returns how many fired. Raises VersionConflict, recording nothing, when another writer
        changed one of the cases meanwhile: then fire them one by one (``fire_deadline`` decides
        again on each case as it now stands)."""
        if len({str(case_id) for _, case_id, _, _ in due}) != len(due):
            raise ValueError("fire_deadlines takes one deadline per case (a case's next one goes in the next call)")
        ctx = Context(self.clock.now(), SCHEDULER, None)
        fired: list[Case] = []
        for kind, case_id, instant, p2p_id in due:
            case = self.load(case_id)
            try:
                DEADLINES[kind](case, ctx, instant, p2p_id)
            except RuleViolation:
                continue  # left out of the save: whatever the refusal did to this object is dropped with it
            fired.append(case)
        if fired:
            self._save(*fired)
        return len(fired)

    # ---- reads ----------------------------------------------------------------------------

    def view(self, case_id, now: datetime | None = None) -> dict:
        return case_view(self.load(case_id), now or self.clock.now())

    def history(self, case_id, as_of: datetime | None = None) -> dict:
        case = self.load(case_id)
        events = [e for e in self.events.get(case.id) if as_of is None or e.timestamp <= as_of]
        if not events:
            raise CaseNotFound(f"case {case_id} had no events by {as_of.isoformat()}")
        then = self.load(case.id, version=events[-1].originator_version)
        return {"events": [event_record(e) for e in events], "case": case_view(then, as_of or self.clock.now())}

    def stored_events(self, batch: int = 1000, start: int = 1) -> Iterator[tuple[int, str, int, str, dict]]:
        """(position, case_id, version, type, stored state) in store order, in bounded memory."""
        while True:
            rows = self.recorder.select_notifications(start, batch)
            for n in rows:
                try:
                    state = self.stored_state(n.state)
                except Exception as exc:  # noqa: BLE001 - cipher, zlib or JSON: said with where and why
                    raise UnreadableState(
                        f"the stored event at position {n.id} (case {n.originator_id} version {n.originator_version})"
                        f" cannot be read: {type(exc).__name__}: {exc} (CASELOG_CIPHER_KEY: is it the key the store"
                        " is encrypted under, or CASELOG_CIPHER_OLD_KEY during a rotation?)") from None
                yield n.id, str(n.originator_id), n.originator_version, n.topic.rsplit(":", 1)[-1], state
            if len(rows) < batch:
                return
            start = rows[-1].id + 1

    def verify(self, progress: Callable[[int], None] | None = None) -> ChainWalker:
        """Walk every case's chain in store order; raises ChainBreak at the first break."""
        walker = ChainWalker()
        for position, case_id, version, type_name, state in self.stored_events():
            walker.feed(case_id, version, type_name, state)
            if progress and walker.events % 1000 == 0:
                progress(walker.events)
        return walker

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

