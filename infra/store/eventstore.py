"""The event store's recorders: eventsourcing's SQLite and PostgreSQL application recorders, whose
inserts go to the group-commit writer (infra/store/writer.py) once one is attached, with the rows
that must be recorded with the events: a new case's number and the command's idempotency key
(``Application.save(..., case_numbers=[(number, case_id)], idempotency=[(key, digest, case_id)])``
reaches ``insert_events`` as keyword arguments, as eventsourcing's own tracking records do).

Each recorder also opens the writer's transaction on its store (``batch``): the events, the
registry rows and the projections' rows in one transaction, on one connection."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from eventsourcing import postgres as es_postgres
from eventsourcing import sqlite as es_sqlite
from eventsourcing.persistence import ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from infra.store.database import Cursor, immediate

REGISTRY_KEYWORDS = ("case_numbers", "idempotency")
# a PostgreSQL transaction statements can still go on in: not gone (IDLE, UNKNOWN) nor failed (INERROR:
# everything until its end is refused, and its COMMIT rolls back)
USABLE = (TransactionStatus.INTRANS, TransactionStatus.ACTIVE)
# (position, originator_id, originator_version, topic, state) of the events after a position
Notifications = Callable[[int, int], list[tuple]]


class Batch:
    """The writer's transaction: ``cursor`` for our own tables, ``insert`` for events (their
    positions back), ``savepoint`` to undo one command's rows, ``notifications`` as this
    transaction sees them (its own inserts included)."""

    def __init__(self, cursor: Cursor, insert: Callable[[Sequence[StoredEvent]], list[int]],
                 savepoint: Callable[[], Any], notifications: Notifications, open_: Callable[[], bool],
                 settle: Callable[[], None] = lambda: None):
        self.cursor = cursor
        self.settle = settle  # wait for every statement's answer, raising the first error (PostgreSQL's pipeline)
        self.insert = insert
        self.savepoint = savepoint
        self.notifications = notifications
        self.open = open_  # whether the transaction is still there and usable (SQLite rolls back on its own on a
        # full disk; a PostgreSQL transaction with a failed statement refuses the rest)


class PipelineCursor(Cursor):
    """Our Cursor on a connection in pipeline mode: each statement on a new psycopg cursor, and
    what ``execute`` returns reads that statement's result only (see PostgresRecorder.batch)."""

    def __init__(self, conn: Any, pipeline: Any):
        super().__init__(None, "postgres")
        self._conn = conn
        self._pipeline = pipeline

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._raw = self._conn.cursor(row_factory=tuple_row)
        return Cursor(self._raw, "postgres").execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._raw = self._conn.cursor(row_factory=tuple_row)
        Cursor(self._raw, "postgres").executemany(sql, rows)

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """An executemany'd INSERT: psycopg has no COPY in pipeline mode."""
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", rows)

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()  # a statement's row count is known once its result came back
        return self._raw.rowcount


class _Committed:
    writer: Any = None

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if self.writer is not None:
            return self.writer.commit(stored_events, **kwargs)
        if any(kwargs.get(k) for k in REGISTRY_KEYWORDS):
            raise ProgrammingError("case numbers and idempotency keys are recorded by the writer; none is attached")
        return super().insert_events(stored_events, **kwargs)  # type: ignore[misc]


class SQLiteRecorder(_Committed, es_sqlite.SQLiteApplicationRecorder):
    def __init__(self, datastore: es_sqlite.SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self.head_sql = f"SELECT MAX(rowid) FROM {self.events_table_name}"
        self._notifications_sql = (f"SELECT rowid, originator_id, originator_version, topic, state FROM"
                                   f" {self.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?")

    @contextmanager
    def batch(self, db: Any) -> Iterator[Batch]:
        """BEGIN IMMEDIATE on the writer's own connection (synchronous=FULL: the commit is on disk
        before anyone is answered), holding the process's SQLite write lock."""
        with db.write_lock:
            conn = getattr(self, "_writer_conn", None)
            if conn is None:
                conn = self._writer_conn = db.connect(synchronous="FULL")
            with immediate(conn) as raw:
                es_cursor = es_sqlite.SQLiteCursor(raw)
                names = iter(range(1 << 62))

                @contextmanager
                def savepoint() -> Iterator[None]:
                    name = f"unit{next(names)}"
                    raw.execute(f"SAVEPOINT {name}")
                    try:
                        yield
                    except BaseException:
                        raw.execute(f"ROLLBACK TO {name}")
                        raw.execute(f"RELEASE {name}")
                        raise
                    raw.execute(f"RELEASE {name}")

                def notifications(after: int, limit: int) -> list[tuple]:
                    rows = raw.execute(self._notifications_sql, (after, limit)).fetchall()
                    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

                yield Batch(Cursor(raw, "sqlite"), lambda events: list(self._insert_events(es_cursor, events) or []),
                            savepoint, notifications, lambda: conn.in_transaction)

    def close_writer(self) -> None:
        conn = getattr(self, "_writer_conn", None)
        if conn is not None:
            self._writer_conn = None
            conn.close()


class SQLiteFactory(es_sqlite.SQLiteFactory):
    application_recorder_class = SQLiteRecorder


class PostgresRecorder(_Committed, PostgresApplicationRecorder):
    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        names = (self.datastore.schema, self.events_table_name)
        quoted = ".".join('"' + name.replace('"', '""') + '"' for name in names)
        self.head_sql = f"SELECT MAX(notification_id) FROM {quoted}"  # for our own cursors (plain text SQL)
        self._notifications_sql = SQL("SELECT notification_id, originator_id, originator_version, topic, state"
                                      " FROM {0} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
                                      ).format(table)

    @contextmanager
    def batch(self, db: Any) -> Iterator[Batch]:
        """One pooled connection of the event store, one transaction, in psycopg's pipeline mode
        (statements sent without waiting for each answer: a batch's inserts and projection rows
        cost a round trip where a result is read, not one per statement); the events table is
        locked first (EXCLUSIVE, as eventsourcing does for each insert), so positions are issued in
        commit order and every event at or below ours is visible to the projections applied here.

        Every statement runs on a cursor of its own (PipelineCursor): in pipeline mode psycopg
        hands a statement's result to the cursor that sent it whenever it arrives, so a cursor
        reused before an earlier result came back can read that one instead of its own (seen once:
        a fetch that got an INSERT's status; psycopg 3.3's _fetch_pipeline does not wait when the
        cursor already holds a result)."""
        with self.datastore.get_connection() as conn, conn.pipeline() as pipeline, conn.transaction():
            self._lock_table(conn.cursor())
            self._notify_channel(conn.cursor())  # once per transaction (listeners hear of it at commit)

            def insert(events: Sequence[StoredEvent]) -> list[int]:
                if not events:
                    return []
                cur = conn.cursor()  # the library's insert without its lock and notification (done above)
                es_postgres.PostgresAggregateRecorder._insert_stored_events(self, cur, events)
                return [row["notification_id"] for row in cur.fetchall()]

            def notifications(after: int, limit: int) -> list[tuple]:
                rows = conn.cursor(row_factory=tuple_row).execute(self._notifications_sql, (after, limit)).fetchall()
                return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

            yield Batch(PipelineCursor(conn, pipeline), insert, conn.transaction, notifications,
                        lambda: conn.info.transaction_status in USABLE, pipeline.sync)

    def close_writer(self) -> None:
        pass


class PostgresFactory(es_postgres.PostgresFactory):
    """eventsourcing's PostgreSQL persistence connecting with every parameter of CASELOG_DATABASE_URL: its
    POSTGRES_* settings carry only dbname, host, port, user and password, so the whole connection string
    also comes in POSTGRES_CONNINFO and replaces the pool's connection parameters (sslmode, sslrootcert,
    application_name, connect_timeout, several hosts... reach libpq instead of being dropped)."""

    application_recorder_class = PostgresRecorder

    def __init__(self, env: Any):
        super().__init__(env)
        conninfo = self.env.get("POSTGRES_CONNINFO")
        if conninfo:
            pool = self.datastore.pool
            pool.kwargs = {**pool.kwargs, **conninfo_to_dict(conninfo)}


def is_integrity_error(exc: BaseException) -> bool:
    import psycopg
    from eventsourcing.persistence import IntegrityError

    return isinstance(exc, (sqlite3.IntegrityError, psycopg.IntegrityError, IntegrityError))
