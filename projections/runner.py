"""Keeps projections up to date from the store's notification log (SQLite has no
subscription, so it polls), each batch in one transaction per projection together with
that projection's tracking position. Safe to run from several threads or processes: the
position is re-read inside the transaction (FOR UPDATE on PostgreSQL)."""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Sequence

from infra.database import Cursor, Database
from projections.base import Projection
from projections.records import EventRecord, from_stored

TRACKING = "CREATE TABLE IF NOT EXISTS caselog_tracking (projection TEXT PRIMARY KEY, position BIGINT NOT NULL)"


def ensure_tracking(cur: Cursor, name: str) -> None:
    """The tracking row of a reader of the notification log (a projection, the relay)."""
    cur.execute(TRACKING)
    cur.execute("INSERT INTO caselog_tracking (projection, position) VALUES (?, 0) ON CONFLICT (projection) DO NOTHING", (name,))


def tracked_position(db: Database, name: str) -> int:
    with db.transaction() as cur:
        row = cur.execute("SELECT position FROM caselog_tracking WHERE projection = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


class ProjectionRunner:
    def __init__(self, db: Database, recorder, projections: Sequence[Projection], batch: int = 5000):
        self.db = db
        self.recorder = recorder
        self.projections = list(projections)
        self.batch = batch
        self._lock = threading.Lock()
        with db.transaction() as cur:
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

    def _tracked(self, cur: Cursor, name: str) -> int:
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        return int(cur.execute(f"SELECT position FROM caselog_tracking WHERE projection = ?{lock}", (name,)).fetchone()[0])

    def apply(self, projection: Projection, events: Sequence[EventRecord]) -> int:
        """Apply a batch to one projection with its tracking row, in one transaction."""
        return self.apply_all([projection], events)

    def apply_all(self, projections: Sequence[Projection], events: Sequence[EventRecord]) -> int:
        """Apply a batch to several projections and move each one's tracking row, all in one
        transaction (one commit per batch: commits dominate a rebuild's cost)."""
        if not events:
            return 0
        applied = 0
        with self.db.transaction() as cur:
            for projection in projections:
                tracked = self._tracked(cur, projection.name)
                fresh = [e for e in events if e["position"] > tracked]
                for event in fresh:
                    projection.process_event(cur, event)
                if fresh:
                    cur.execute("UPDATE caselog_tracking SET position = ? WHERE projection = ?", (fresh[-1]["position"], projection.name))
                applied += len(fresh)
        return applied

    def catch_up(self, names: Iterable[str] | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Process every event recorded since the slowest projection's position."""
        chosen = self.by_name(names)
        with self._lock:
            start = min(self.position(p.name) for p in chosen) + 1 if chosen else 1
            done = 0
            while True:
                rows = self.recorder.select_notifications(start, self.batch)
                if not rows:
                    return done
                events = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in rows]
                self.apply_all(chosen, events)
                done += len(events)
                if progress:
                    progress(done)
                if len(rows) < self.batch:
                    return done
                start = rows[-1].id + 1

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
        if source is None:
            done = self.catch_up([p.name for p in chosen], progress)
        else:
            done, chunk = 0, []
            for record in source:
                chunk.append(record)
                if len(chunk) == self.batch:
                    done += self.apply_all(chosen, chunk)
                    chunk = []
                    if progress:
                        progress(done)
            done += self.apply_all(chosen, chunk)
        with self.db.transaction() as cur:
            for p in chosen:
                p.create_indexes(cur)
        return done
