"""Keeps projections up to date from the store's notification log (SQLite has no
subscription, so it polls), each batch in one transaction per projection together with
that projection's tracking position. Safe to run from several threads or processes: the
position is re-read inside the transaction (FOR UPDATE on PostgreSQL)."""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import contextmanager
from itertools import compress, islice
from typing import Any, Callable, Iterable, Iterator, Sequence

from infra.store.database import Cursor, Database, log_rows
from projections.base import Projection
from projections.records import EventRecord, from_stored
from projections.rows import Staged

log = logging.getLogger("caselog.projections")

MET_CAP = 500_000  # cases a rebuild remembers having met (see rebuild)
# A batch at least this long is folded in memory (Staged: each table's rows of its cases read ahead, every
# changed row written once), a shorter one written event by event. A PostgreSQL statement costs ~80 us of
# client CPU in the writer's pipeline against ~27 on SQLite, so there folding pays from two events (16
# callers submitting in process: 1.17 -> 0.98 ms of client CPU per command); on SQLite the read-ahead
# costs more than it saves below 64 (submissions over HTTP 318 -> 271 per s with 2).
STAGED_FROM = {"sqlite": 64, "postgres": 2}
# A rebuild commits every this many batches (25,000 events at the default batch, about a second of
# work holding the store's write lock), not every batch: a commit writes every page the transaction
# dirtied, and a batch's cases are spread over each table's key index (case ids are random), so a page
# changed by several batches is written once. 10^6 events: 12.2 s of commits in 200 -> 6.4 s in 40.
BATCHES_PER_COMMIT = 5
TRACKING = "CREATE TABLE IF NOT EXISTS caselog_tracking (projection TEXT PRIMARY KEY, position BIGINT NOT NULL)"
# Kafka workers track per partition: the highest store position applied from it (what decides
# whether an event is new, re-published or re-delivered) and the offset last read.
PARTITION_TRACKING = (
    "CREATE TABLE IF NOT EXISTS caselog_partition_tracking (projection TEXT NOT NULL, topic TEXT NOT NULL,"
    " partition INTEGER NOT NULL, position BIGINT NOT NULL, kafka_offset BIGINT NOT NULL, PRIMARY KEY (projection, topic, partition))"
)


@contextmanager
def few_collections() -> Iterator[None]:
    """Around a rebuild: the cyclic collector, run every 700 allocations over every object alive (the
    modules' too), cost ~10% of a rebuild, which makes few cycles: what is alive now is left out of its
    walks and it runs every 100,000 allocations instead (process-wide, for the block's duration)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def ensure_tracking(cur: Cursor, name: str) -> None:
    """The tracking row of a reader of the notification log (a projection, the relay)."""
    cur.execute(TRACKING)
    cur.execute("INSERT INTO caselog_tracking (projection, position) VALUES (?, 0) ON CONFLICT (projection) DO NOTHING", (name,))


def tracked_position(db: Database, name: str) -> int:
    with db.read() as cur:
        row = cur.execute("SELECT position FROM caselog_tracking WHERE projection = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


class ProjectionRunner:
    def __init__(self, db: Database, recorder, projections: Sequence[Projection], batch: int = 5000,
                 decode: Callable[[Any], dict] | None = None):
        """``decode``: a stored row's state as written (``CaseLog.stored_state``: the store may encrypt);
        the Kafka workers' runner has no store (``recorder`` None)."""
        self.db = db
        self.recorder = recorder
        self.decode = decode or (lambda state: state)
        self.projections = list(projections)
        self.batch = batch
        self.writer = None  # the group-commit writer, once attached (infra/bootstrap.py)
        self._lock = threading.Lock()
        with db.schema() as cur:
            cur.execute(PARTITION_TRACKING)
            for p in self.projections:
                p.create(cur)
                ensure_tracking(cur, p.name)

    def by_name(self, names: Iterable[str] | None) -> list[Projection]:
        if not names:
            return self.projections
        known = {p.name: p for p in self.projections}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"unknown projection {', '.join(unknown)}; known: {', '.join(known)}")
        return [known[n] for n in names]

    def position(self, name: str) -> int:
        return tracked_position(self.db, name)

    def _tracked(self, cur: Cursor, name: str, *, lock: bool = True) -> int:
        suffix = self.db.for_update if lock else ""
        return int(cur.execute(f"SELECT position FROM caselog_tracking WHERE projection = ?{suffix}", (name,)).fetchone()[0])

    def apply(self, projection: Projection, events: Sequence[EventRecord]) -> int:
        """Apply a batch to one projection with its tracking row, in one transaction."""
        return self.apply_all([projection], events)

    def apply_all(self, projections: Sequence[Projection], events: Sequence[EventRecord]) -> int:
        """Apply a batch to several projections and move each one's tracking row, all in one
        transaction (one commit per batch: commits dominate a rebuild's cost)."""
        if not events:
            return 0
        with self.db.transaction() as cur:
            return self._apply(cur, projections, events, self._positions(cur, projections))

    def _positions(self, cur: Cursor, projections: Sequence[Projection]) -> dict[str, int]:
        """Each projection's tracked position, read in one statement (locked on PostgreSQL)."""
        names = [p.name for p in projections]
        rows = cur.execute(f"SELECT projection, position FROM caselog_tracking WHERE projection IN"
                           f" ({', '.join('?' for _ in names)}){self.db.for_update}", names).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def _apply(self, cur: Cursor, projections: Sequence[Projection], events: Sequence[EventRecord],
               positions: dict[str, int]) -> int:
        """Apply ``events`` (in store order) to each projection past its position, and move the
        tracking rows (``positions`` is updated)."""
        applied, moved = 0, {}
        for projection in projections:
            tracked = positions[projection.name]
            fresh = [e for e in events if e["position"] > tracked]
            for event in fresh:
                projection.process_event(cur, event)
            if fresh:
                positions[projection.name] = fresh[-1]["position"]
                moved.setdefault(fresh[-1]["position"], []).append(projection.name)
            applied += len(fresh)
        for position, names in moved.items():  # usually one statement (one round trip): they reach the same event
            marks = ", ".join("?" for _ in names)
            cur.execute(f"UPDATE caselog_tracking SET position = ? WHERE projection IN ({marks})", (position, *names))
        return applied

    def apply_pending(self, cur: Cursor, notifications, names: Iterable[str], recent: Sequence[tuple] = ()) -> int:
        """Inside a transaction that already holds the store's write lock (the group-commit
        writer's): apply the events past each projection's position, at most ``batch`` of them, as
        ``notifications(after, limit)`` reads them in that transaction. ``recent``: the events this
        transaction recorded, (position, case id, version, topic, state) in order: when the
        projections stand just before the first of them they are all there is to apply (no other
        writer records meanwhile) and are not read back. Returns the position all of them reached."""
        chosen = self.by_name(names)
        positions = self._positions(cur, chosen)
        after = min(positions.values())
        if recent and after == recent[0][0] - 1 and len(recent) <= self.batch:
            rows = list(recent)
        else:
            rows = notifications(after, self.batch)
        if rows:
            events = [from_stored(r[0], r[1], r[2], r[3], self.decode(r[4])) for r in rows]
            (self._fold if len(events) >= STAGED_FROM[self.db.dialect] else self._apply)(cur, chosen, events, positions)
        return min(positions.values())

    def apply_staged(self, projections: Sequence[Projection], events: Sequence[EventRecord]) -> int:
        """What ``apply_all`` does, each projection's share of the batch folded in memory over the
        rows its cases already have (read ahead in a few statements) and every changed row written
        once at the end (``projections.rows.Staged``); rows and tracking in one transaction still."""
        if not events:
            return 0
        with self.db.transaction() as cur:
            return self._fold(cur, projections, events, self._positions(cur, projections))

    def _fold(self, cur: Cursor, projections: Sequence[Projection], events: Sequence[EventRecord],
              positions: dict[str, int], met: set[str] | None = None) -> int:
        """``apply_staged`` inside a transaction already open (``positions`` is updated, as ``_apply``
        does). ``met`` (a rebuild, over tables it emptied): the cases earlier batches held, the only
        ones that can have rows yet; this batch's cases are added to it."""
        cases = {e["case_id"]: None for e in events}
        if met is not None and len(met) < MET_CAP:  # the cases met before: no other can have rows yet
            ahead = [c for c in cases if c in met]
            met.update(cases)
        else:
            ahead = list(cases)
        applied = 0
        types = [e["type"] for e in events]
        for projection in projections:
            tracked = positions[projection.name]
            fresh = events if events[0]["position"] > tracked else [e for e in events if e["position"] > tracked]
            if not fresh:
                continue
            if projection.row_tables:
                staged = Staged(cur, projection.row_tables, self.db.dialect)
                handles = projection.handles
                if handles is None:
                    relevant = fresh
                elif fresh is events:  # the filter in C: ~3% of a rebuild in a comprehension
                    relevant = list(compress(events, map(handles.__contains__, types)))
                else:
                    relevant = [e for e in fresh if e["type"] in handles]
                staged.read_ahead(ahead)  # (some cases may have no relevant event: no matter)
                fold = projection.fold
                for event in relevant:
                    fold(staged, event)
                staged.flush()
            else:
                for event in fresh:
                    projection.process_event(cur, event)
            positions[projection.name] = fresh[-1]["position"]
            cur.execute("UPDATE caselog_tracking SET position = ? WHERE projection = ?", (fresh[-1]["position"], projection.name))
            applied += len(fresh)
        return applied

    def apply_partitioned(self, projections: Sequence[Projection], topic: str,
                          batch: Sequence[tuple[int, int, EventRecord]]) -> int:
        """Apply (partition, offset, record) read from Kafka to projections, rows and per-partition
        tracking in one transaction. An event is new when its store position is above both the
        partition's tracked position and the projection's own (a replay from the store moves
        that one): a partition keeps its cases' store order, and a re-published or re-delivered
        event carries a position already passed. Two workers briefly holding one partition
        during a rebalance serialize on the partition's tracking row (FOR UPDATE)."""
        if not batch:
            return 0
        by_partition: dict[int, list[tuple[int, EventRecord]]] = {}
        for partition, offset, record in batch:
            by_partition.setdefault(partition, []).append((offset, record))
        applied = 0
        with self.db.transaction() as cur:
            for projection in projections:
                floor = self._tracked(cur, projection.name, lock=False)  # workers must not queue on it
                for partition in sorted(by_partition):
                    key = (projection.name, topic, partition)
                    cur.execute("INSERT INTO caselog_partition_tracking (projection, topic, partition, position, kafka_offset)"
                                " VALUES (?, ?, ?, 0, -1) ON CONFLICT (projection, topic, partition) DO NOTHING", key)
                    done, last_offset = cur.execute("SELECT position, kafka_offset FROM caselog_partition_tracking"
                                                    f" WHERE projection = ? AND topic = ? AND partition = ?{self.db.for_update}", key).fetchone()
                    done = max(int(done), floor)
                    for offset, record in by_partition[partition]:
                        if record["position"] > done:
                            projection.process_event(cur, record)
                            done = record["position"]
                            applied += 1
                        last_offset = max(int(last_offset), offset)
                    cur.execute("UPDATE caselog_partition_tracking SET position = ?, kafka_offset = ?"
                                " WHERE projection = ? AND topic = ? AND partition = ?", (done, last_offset, *key))
        return applied

    def partition_positions(self, topic: str) -> dict[tuple[str, int], int]:
        """(projection, partition) -> the store position the Kafka workers applied up to."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT projection, partition, position FROM caselog_partition_tracking WHERE topic = ?", (topic,)).fetchall()
        return {(r[0], int(r[1])): int(r[2]) for r in rows}

    def catch_up(self, names: Iterable[str] | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Process every event recorded since the slowest projection's position. With a writer
        attached that keeps these projections (infra/store/writer.py), through it: one writer
        per store connection, no transaction of ours racing it."""
        chosen = self.by_name(names)
        writer = self.writer
        if writer is not None and progress is None and {p.name for p in chosen} <= set(writer.projections):
            return writer.catch_up()
        return self._catch_up(chosen, progress)

    def _catch_up(self, chosen: list[Projection], progress: Callable[[int], None] | None = None) -> int:
        with self._lock:
            start = min(self.position(p.name) for p in chosen) + 1 if chosen else 1
            done = 0
            for events in self._stored_batches(start):
                (self.apply_staged if len(events) >= STAGED_FROM[self.db.dialect] else self.apply_all)(chosen, events)
                done += len(events)
                if progress:
                    progress(done)
            return done

    def _stored_batches(self, start: int) -> Iterator[list[EventRecord]]:
        """The store's events from ``start`` on, decoded, in batches, each in a snapshot read."""
        read = self._stored_reader(start)
        while events := read(None):
            yield events
            if len(events) < self.batch:
                return

    def rebuild(self, names: Iterable[str] | None = None, progress: Callable[[int], None] | None = None,
                source: Iterable[EventRecord] | None = None) -> int:
        """Drop and rebuild projections from the store (or from ``source``: records in store
        order, e.g. read back from Kafka), in batches (bounded memory). Secondary indexes are
        built once at the end (a bulk load is faster without them)."""
        chosen = self.by_name(names)
        with self._lock:
            with self.db.transaction() as cur:
                for p in chosen:
                    p.drop(cur)
                    p.create(cur, indexes=False)
                    cur.execute("UPDATE caselog_tracking SET position = 0 WHERE projection = ?", (p.name,))
                    cur.execute("DELETE FROM caselog_partition_tracking WHERE projection = ?", (p.name,))
        # the cases met so far: the only ones the emptied tables can hold rows of (up to MET_CAP of
        # them, ~130 bytes each; past it every batch's cases are read ahead: memory stays bounded)
        met: set[str] = set()
        with few_collections():
            return self._rebuild(chosen, progress, source, met)

    def _rebuild(self, chosen: list[Projection], progress: Callable[[int], None] | None,
                 source: Iterable[EventRecord] | None, met: set[str] | None) -> int:
        """Batch after batch folded in memory (``_fold``), ``BATCHES_PER_COMMIT`` of the store's to a
        transaction, each transaction holding its batches' rows and the tracking they reach; ``progress``
        is told the events committed after each. A batch from ``source`` (a broker, which may stall) is read
        outside the transaction, one to each. Returns the events read from the store, or the (event,
        projection) pairs applied from ``source``."""
        read = self._stored_reader() if source is None else self._chunks(iter(source))
        per_commit = BATCHES_PER_COMMIT if source is None else 1
        done = applied = 0
        reached = {p.name: 0 for p in chosen}  # each projection's position as our last commit left it
        with self._lock, self.db.bulk():
            try:
                events = read(None)
                while events:
                    with self.db.transaction() as cur:
                        positions = self._positions(cur, chosen)
                        if positions != reached:  # another writer applied events meanwhile (a server on the
                            met = None  # same store): it wrote rows of cases not met here: read every case ahead
                        for held in range(per_commit):
                            if held:
                                events = read(cur)
                                if not events:
                                    break
                            applied += self._fold(cur, chosen, events, positions, met)
                            done += len(events)
                        reached = positions  # (_fold moved it; the next transaction reads a dict of its own)
                    if progress:  # what is committed
                        progress(done)
                    if events:
                        events = read(None)
            except BaseException:  # cut short (an error, Ctrl-C): a server beside us reading these tables
                try:  # keeps their indexes, over the rows committed so far
                    log.warning("the rebuild was cut short: building its tables' indexes before it stops")
                    self._create_indexes(chosen)
                except Exception:  # noqa: BLE001 - the store failing too: the first error is the one to see
                    log.exception("a rebuild cut short could not build its indexes: the next start builds them")
                raise
            self._create_indexes(chosen)
        return done if source is None else applied

    def _create_indexes(self, chosen: list[Projection]) -> None:
        with self.db.transaction() as cur:
            for p in chosen:
                p.create_indexes(cur)

    def _stored_reader(self, start: int = 1) -> Callable[[Cursor | None], list[EventRecord]]:
        """The store's next batch of events from ``start`` on at each call, read in the transaction of
        the cursor given, else in a snapshot read of its own (``log_rows``: no Notification nor UUID
        object per row), each decoded state handed over to its record (``owned``)."""
        decode = self.decode

        def read(cur: Cursor | None) -> list[EventRecord]:
            nonlocal start
            rows = log_rows(self.db, self.recorder, start, self.batch, cur)
            if rows:
                start = rows[-1][0] + 1
            return [from_stored(n[0], n[1], n[2], n[3], decode(n[4]), owned=True) for n in rows]
        return read

    def _chunks(self, records: Iterator[EventRecord]) -> Callable[[Cursor | None], list[EventRecord]]:
        """The next ``batch`` records of ``records`` at each call."""
        return lambda cur: list(islice(records, self.batch))
