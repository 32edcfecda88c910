"""Group commit: every command of this process is recorded by one transaction at a time, and the
commands waiting meanwhile are recorded together by the next one.

A command's unit is its events, the new case's number and its idempotency key. Then, in the same
transaction, the projections this process keeps are applied up to the last event (read-your-writes:
a command is answered after its events are in the read models), and the batch commits once: one
fsync for all of them. A unit is answered only after that commit.

A batch first runs without savepoints (on PostgreSQL each costs round trips of the pipeline). If
anything in it fails before the commit, that transaction is rolled back whole and the batch runs
again carefully: each unit in its own savepoint, so a unit that loses a race (its case changed: a
version already taken) is undone alone and told so (IntegrityError) and the others are kept; a batch
of one unit has no savepoint even then (its failure rolls back a transaction that held nothing else).

No thread of its own: the first caller to find no batch running leads (runs the next batch, the
units queued so far), the others wait to be answered or to lead the batch after. A projection that
fails (in the careful run) is rolled back alone, to its savepoint, and the events are kept; the next
catch-up tries again and raises, as before."""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Sequence

from eventsourcing.persistence import IntegrityError, StoredEvent

from infra.store.database import Database
from infra.store.eventstore import is_integrity_error
from infra.store.registry import CASE_NUMBER_BASE
from infra.store.runner import ProjectionRunner

log = logging.getLogger("caselog.writer")

MAX_BATCH = 64  # units per transaction
INSERT_NUMBER = ("INSERT INTO caselog_case_numbers (n, case_id) VALUES (?, ?)"
                 " ON CONFLICT (case_id) DO UPDATE SET n = excluded.n")
# A key already recorded fails its unit (IntegrityError: nothing of it is recorded); the command then
# looks again and finds the key taken: its earlier answer, or a refusal of the reused key.
INSERT_KEY = "INSERT INTO caselog_idempotency (key, digest, case_id) VALUES (?, ?, ?)"


class Undone(Exception):
    """A batch's first attempt, without savepoints, failed before its commit: rolled back, nothing recorded."""


def as_recorded(exc: BaseException) -> BaseException:
    """What a unit's caller is told of the store's error: a version already taken (or a key already
    recorded) as eventsourcing's IntegrityError, whichever store raised it."""
    return IntegrityError(str(exc)) if is_integrity_error(exc) and not isinstance(exc, IntegrityError) else exc


@dataclass(eq=False)
class Unit:
    events: Sequence[StoredEvent] = ()
    numbers: Sequence[tuple[str, str]] = ()  # (case number, case id) of new cases
    keys: Sequence[tuple[str, str, str]] = ()  # (scoped key, digest, case id)
    flush: bool = False  # no rows: a batch to bring the projections up to date
    positions: list[int] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False
    lead: bool = False  # this unit's caller is to lead the next batch
    # held until the unit is done or its caller is to lead: the caller waits on it alone
    wake: Any = field(default_factory=threading.Lock)


class Writer:
    def __init__(self, db: Database, recorder: Any, runner: ProjectionRunner, projections: Sequence[str]):
        self.db = db
        self.recorder = recorder
        self.runner = runner
        self.projections = list(projections)
        self._lock = threading.Lock()
        self._queue: list[Unit] = []
        self._leading = False
        self.batches = 0
        self.units = 0
        self.projected = 0  # the position the projections reached in the last batch committed
        names = ", ".join("?" for _ in self.projections)
        self._lag_sql = (f"SELECT ({recorder.head_sql}),"
                         f" (SELECT MIN(position) FROM caselog_tracking WHERE projection IN ({names}))")

    # ---- what callers use ----------------------------------------------------------------------

    def commit(self, stored_events: Sequence[StoredEvent], *, case_numbers: Sequence[tuple[str, str]] = (),
               idempotency: Sequence[tuple[str, str, str]] = (), **_: Any) -> list[int]:
        """Record these events with their registry rows; their positions once committed. Raises
        IntegrityError when one of them takes a version already recorded (nothing is recorded)."""
        unit = self._run(Unit(stored_events, case_numbers, idempotency))
        return unit.positions

    def flush(self) -> int:
        """A batch now (with whatever else is queued): the projections caught up with the store."""
        self._run(Unit(flush=True))
        return 0

    def caught_up_to(self, position: int | None) -> None:
        """Return once the projections include the event at ``position`` (read-your-writes: a
        command's answer waits for its own events): at once when the batch that recorded it
        applied them, else after a catch-up (``None``: a position not known, e.g. an answer given
        again for a command recorded earlier)."""
        if position is None or self.projected < position:
            self.catch_up()

    def catch_up(self) -> int:
        """Bring the projections up to the store's last event, if they are not already (events
        recorded by another process, a backlog longer than one batch applies, or a batch whose
        projections failed: then this raises as that batch did). Returns about how many events."""
        done, lag = 0, self.lag()
        while lag > 0:
            self.flush()
            done, before, lag = done + lag, lag, self.lag()
            if lag >= before:  # nothing moved: nothing more to do now
                break
        return done

    def lag(self) -> int:
        """Events in the store past the slowest of our projections."""
        if not self.projections:
            return 0
        head, tracked = self.db.read_one(self._lag_sql, self.projections)
        return int(head or 0) - int(tracked or 0)

    def close(self) -> None:
        with self._lock:
            self.recorder.close_writer()

    # ---- leading -------------------------------------------------------------------------------

    def _run(self, unit: Unit) -> Unit:
        """Queue the unit; lead a batch at once if none is running, else wait until the unit is
        done or this caller is handed the next batch (each waiter is woken alone: no stampede)."""
        unit.wake.acquire()
        with self._lock:
            self._queue.append(unit)
            unit.lead = not self._leading
            self._leading = True
        while True:
            if not unit.lead:
                try:
                    unit.wake.acquire()  # released by the leader that recorded it or hands over to it
                except BaseException:  # interrupted while waiting (a signal in the main thread)
                    self._abandon(unit)
                    raise
            if unit.done:
                break
            unit.lead = False
            with self._lock:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                self._record(batch)
            finally:
                with self._lock:
                    after = self._queue[0] if self._queue else None
                    if after is not None:
                        after.lead = True  # the next batch is the oldest waiter's to lead
                    else:
                        self._leading = False
                for done in batch:
                    if done is not unit:
                        done.wake.release()
                if after is not None and after is not unit:
                    after.wake.release()
            if unit.done:
                break
        if unit.error is not None:
            raise unit.error
        return unit

    def _abandon(self, unit: Unit) -> None:
        """A caller gives up waiting: its unit leaves the queue if no batch took it yet (a batch that
        did records it regardless, as a crash after the commit would), and the lead it may have been
        handed passes on, so that no later command waits for a leader that is gone."""
        with self._lock:
            if unit in self._queue:
                self._queue.remove(unit)
            if not unit.lead:
                return
            unit.lead = False
            after = self._queue[0] if self._queue else None
            if after is not None:
                after.lead = True
            else:
                self._leading = False
        if after is not None:
            after.wake.release()

    def _record(self, batch: list[Unit]) -> None:
        """Record the batch in one transaction, first without a savepoint anywhere (on PostgreSQL each
        costs pipeline round trips): if any statement fails there, that transaction is rolled back
        before its commit, and the batch runs again with each unit and the projections in savepoints
        of their own, so that only what failed is left out."""
        try:
            outcome = self._attempt(batch, careful=False)
        except Undone:
            outcome = self._attempt(batch, careful=True)
        if outcome is None:
            return
        results, failed, projection_error, reached = outcome
        self.batches += 1
        self.units += len(batch)
        if projection_error is None:
            self.projected = max(self.projected, reached)
        for i, unit in enumerate(batch):
            if i in failed:
                unit.error = failed[i]
            elif unit.flush:
                unit.error = projection_error
            else:
                unit.positions = results.get(i, [])
            unit.done = True

    def _attempt(self, batch: list[Unit], *, careful: bool) -> tuple | None:
        """One transaction for the batch. Not ``careful``: no savepoints, and whatever fails before the
        commit raises Undone (nothing of it recorded). ``careful``: each unit in a savepoint (but a unit
        alone: its failure rolls back a transaction that held nothing else), so a unit that fails is
        told so and the others are kept, and the projections in one too. None when the batch did not
        commit (each unit is told why); else what each unit is answered."""
        results: dict[int, list[int]] = {}
        failed: dict[int, BaseException] = {}
        alone = len(batch) == 1
        try:
            with self.recorder.batch(self.db) as tx:
                try:
                    units = [(i, unit) for i, unit in enumerate(batch) if not unit.flush]
                    if not careful:
                        results = self._insert(tx, units)
                    else:
                        for i, unit in units:
                            try:
                                with nullcontext() if alone else tx.savepoint():
                                    results.update(self._insert(tx, [(i, unit)]))
                                    if alone:  # no savepoint's exit to bring its registry rows' errors back
                                        tx.settle()  # (PostgreSQL's pipeline): they are raised here, as its own
                            except Exception as exc:  # noqa: BLE001 - this unit's rows are undone, the batch goes on
                                if alone or not tx.open():  # (the store dropped the whole transaction, e.g. a
                                    raise  # full disk: nothing of the batch is recorded)
                                failed[i] = as_recorded(exc)
                    recent = [(position, e.originator_id, e.originator_version, e.topic, e.state)
                              for i, positions in results.items() if i not in failed
                              for position, e in zip(positions, batch[i].events)]
                    projection_error, reached = self._project(tx, recent, careful=careful)
                    if not careful:
                        tx.settle()  # every statement answered: an error of one of them is raised here
                except Exception as exc:
                    if careful:
                        raise
                    raise Undone() from exc  # rolled back by the batch's exit: the careful attempt follows
        except Undone:
            raise
        except BaseException as exc:  # the batch did not commit: nothing of it is recorded
            for unit in batch:
                unit.error, unit.done = as_recorded(exc), True
            if not isinstance(exc, Exception):
                raise
            return None
        return results, failed, projection_error, reached

    @staticmethod
    def _insert(tx: Any, units: list[tuple[int, Unit]]) -> dict[int, list[int]]:
        """These units' rows: their events in one insert (on PostgreSQL its positions are read back, a
        round trip: a batch's first attempt makes one for all its units), then their case numbers and
        their keys, one executemany each. Each unit's positions, by its place in the batch."""
        positions = tx.insert([event for _, unit in units for event in unit.events])
        results, at = {}, 0
        for i, unit in units:
            results[i], at = positions[at:at + len(unit.events)], at + len(unit.events)
        numbers = [(int(n) - CASE_NUMBER_BASE, c) for _, unit in units for n, c in unit.numbers]
        if numbers:
            tx.cursor.executemany(INSERT_NUMBER, numbers)
        keys = [key for _, unit in units for key in unit.keys]
        if keys:
            tx.cursor.executemany(INSERT_KEY, keys)
        return results

    def _project(self, tx: Any, recent: list[tuple], *, careful: bool = True) -> tuple[BaseException | None, int]:
        """Apply the projections in the batch's transaction, in a savepoint of their own when ``careful``:
        a failing projection leaves the events recorded and the projections where they were. The
        error, if any, and the position the projections reached (not careful: a failure raises)."""
        if not self.projections:
            return None, 0
        if not careful:
            return None, self.runner.apply_pending(tx.cursor, tx.notifications, self.projections, recent)
        try:
            with tx.savepoint():
                return None, self.runner.apply_pending(tx.cursor, tx.notifications, self.projections, recent)
        except Exception as exc:  # reported to whoever asks for the projections
            if not tx.open():  # the transaction itself is gone, or failed before the projections (an
                raise  # earlier statement's error comes back late in a pipeline): the batch fails as a whole
            log.exception("applying the projections failed; the events are recorded, a catch-up retries")
            return exc, 0
