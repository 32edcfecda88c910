"""Our own tables beside the event store (registry, projections, deadlines), on SQLite or
PostgreSQL, through one small interface. SQL is written with ``?`` placeholders."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict

from infra.settings import SettingError, Settings, StoreUnavailable, private, private_file, usable_dir


WAL_PAGES = 10_000  # pages of WAL between automatic checkpoints (4 KB pages: ~40 MB)
BULK_WAL_PAGES = 100_000  # during a rebuild (~400 MB)


def connection_params(settings: Settings) -> dict[str, Any]:
    """Every parameter of CASELOG_DATABASE_URL (a postgresql:// URL or a key=value string): host, port,
    dbname, user, password and the options in its query string (sslmode, sslrootcert, application_name,
    options, ...), plus connect_timeout from CASELOG_CONNECT_TIMEOUT unless the URL sets its own."""
    try:
        params = conninfo_to_dict(settings.database_url or "")
    except psycopg.ProgrammingError:  # libpq's reason may quote the password: not repeated
        raise SettingError("CASELOG_DATABASE_URL", "not a postgresql:// URL or key=value connection string "
                           "libpq accepts (check its query-string options)") from None
    params.setdefault("connect_timeout", str(settings.connect_timeout))
    return params


def _where(params: dict[str, Any]) -> str:
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    return f"database {params.get('dbname') or '(default)'} at {host}:{params.get('port') or 5432}"


def check_postgres(settings: Settings) -> dict[str, Any]:
    """Connect once, within the connect timeout, so a command facing an unreachable or refusing server
    fails at once with libpq's reason (StoreUnavailable naming CASELOG_DATABASE_URL) instead of waiting
    for a connection pool's 30 s. Returns the connection parameters."""
    params = connection_params(settings)
    try:
        psycopg.connect(**params).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()).removeprefix("connection failed: ")  # libpq's reason spans lines
        raise StoreUnavailable("CASELOG_DATABASE_URL", f"cannot connect to the {_where(params)}: {reason}") from None
    return params


def events_table(db: "Database", recorder: Any) -> tuple[str, str]:
    """(table, position column) of the event store's rows, for SQL beside the library's: counting them
    (the relay), rewriting their state in place (``caselog rekey``)."""
    if db.dialect == "postgres":
        return f'"{recorder.datastore.schema}"."{recorder.events_table_name}"', "notification_id"
    return recorder.events_table_name, "rowid"


class LogRow(NamedTuple):
    """A stored event as ``log_rows`` reads it: a Notification's fields without its objects."""

    id: int  # the position
    originator_id: str  # the case id: canonical text on PostgreSQL, 32 hex digits on SQLite
    originator_version: int
    topic: str
    state: bytes  # as stored (encrypted when the store encrypts)


def log_rows(db: "Database", recorder: Any, start: int, limit: int, cur: "Cursor | None" = None) -> list[LogRow]:
    """Up to ``limit`` stored events from position ``start`` on, in order, read with SQL of our own in a
    snapshot read (it neither waits for nor blocks the writer) rather than the recorder's
    ``select_notifications``, which builds a Notification and a UUID object for every row: a tenth
    of a rebuild, and of what the relay does per event besides sending it. ``cur``: read in that
    transaction instead (a rebuild reads the log inside its own write transaction)."""
    table, position = events_table(db, recorder)
    case = "originator_id::text" if db.dialect == "postgres" else "originator_id"
    sql = (f"SELECT {position}, {case}, originator_version, topic, state FROM {table}"
           f" WHERE {position} >= ? ORDER BY {position} LIMIT ?")
    if cur is not None:
        rows = cur.execute(sql, (start, limit)).fetchall()
    else:
        with db.read() as read:
            rows = read.execute(sql, (start, limit)).fetchall()
    return [LogRow._make(r) for r in rows]


def secure_sqlite(path: Path) -> None:
    """The SQLite database file made (or closed to) 0600 before anything opens it; SQLite gives its -wal and
    -shm files the database file's mode, and any left from before are closed too."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        private(path.with_name(path.name + suffix))


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """A write transaction on a SQLite connection (BEGIN IMMEDIATE: the write lock at once),
    committed when the block ends, rolled back if it raises."""
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        yield cur
    except BaseException:
        if conn.in_transaction:  # (SQLite may have rolled back already: a full disk, an I/O error)
            conn.execute("ROLLBACK")
        raise
    else:
        try:
            conn.execute("COMMIT")
        except BaseException:  # a commit that failed leaves the transaction open, holding the write
            if conn.in_transaction:  # lock for good: SQLite's advice is an explicit ROLLBACK
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
    finally:
        cur.close()


class Cursor:
    def __init__(self, raw: Any, dialect: str):
        self._raw = raw
        self._dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "Cursor":
        if self._dialect == "postgres":
            sql = sql.replace("?", "%s")
        self._raw.execute(sql, tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._dialect == "postgres":
            sql = sql.replace("?", "%s")
        self._raw.executemany(sql, rows)  # sqlite3 and psycopg take lists and tuples alike

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """New rows, many at once: COPY on PostgreSQL (one stream, no statement per row nor query
        text of thousands of placeholders to parse), an executemany'd INSERT on SQLite."""
        if self._dialect == "postgres":
            with self._raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        self._raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", rows)

    def fetchone(self) -> tuple | None:
        return self._raw.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._raw.fetchall()

    @property
    def rowcount(self) -> int:
        return self._raw.rowcount


class Database:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.dialect = "postgres" if settings.uses_postgres else "sqlite"
        self._local = threading.local()
        # SQLite takes one writer at a time and makes the others poll (sleeps of 1 to 25 ms); the
        # threads of this process queue here instead, the group-commit writer (infra/store/writer.py)
        # included. Another process still meets SQLite's busy timeout.
        self.write_lock = threading.RLock()
        self._pool = None
        if self.dialect == "postgres":
            from psycopg_pool import ConnectionPool

            params = check_postgres(settings)
            self._pool = ConnectionPool("", min_size=1, max_size=8, open=True, kwargs={**params, "autocommit": False})
        else:
            usable_dir(Path(settings.data_dir))
            secure_sqlite(settings.sqlite_path)

    def connect(self, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
        """A new SQLite connection to the store (WAL). ``synchronous=FULL`` for the one that commits
        events: each commit is on disk (fsync) before it is acknowledged, as eventsourcing's own."""
        conn = sqlite3.connect(str(self.settings.sqlite_path), timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MB of page cache: projections update several indexes per event
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")  # fewer, larger checkpoints while projections write
        return conn

    def _sqlite(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        if self.dialect == "postgres":
            with self._pool.connection() as conn:
                with conn.transaction():
                    with conn.cursor() as cur:
                        yield Cursor(cur, "postgres")
        else:
            with self.write_lock, immediate(self._sqlite()) as cur:
                yield Cursor(cur, "sqlite")

    def read_one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        """The first row of one query that writes nothing (a statement on its own: no BEGIN and
        COMMIT around it)."""
        if self.dialect == "postgres":
            with self._statements() as cur:
                return cur.execute(sql, params).fetchone()
        return self._sqlite().execute(sql, tuple(params)).fetchone()

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        """Queries that write nothing. On SQLite a deferred transaction, a snapshot (WAL) that takes no
        write lock, so it neither waits for the writer nor holds up the writers (the write path's reads,
        a relay polling often). On PostgreSQL each statement on its own (``_statements``)."""
        if self.dialect == "postgres":
            with self._statements() as cur:
                yield cur
            return
        conn = self._sqlite()
        cur = conn.cursor()
        cur.execute("BEGIN")
        try:
            yield Cursor(cur, "sqlite")
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
            cur.close()

    @contextmanager
    def _statements(self) -> Iterator[Cursor]:
        """A pooled PostgreSQL connection in autocommit: each statement its own transaction, without
        the BEGIN and COMMIT round trips around it (two of a lone query's three, and the client CPU
        of each; a served submission makes several such reads). Only for what writes nothing, and
        for one query at a time: statements here share no snapshot (in a READ COMMITTED transaction
        they would not either, but a server whose default level is higher would give them one)."""
        import psycopg

        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    yield Cursor(cur, "postgres")
            finally:
                try:
                    conn.autocommit = False
                except psycopg.Error:  # broken (the pool discards it) or not idle (the pool rolls it back): a
                    pass  # connection left in autocommit is harmless, transaction() sends its own BEGIN

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Around a rebuild on SQLite: checkpoint the WAL every ~400 MB instead of every ~40 MB
        (a page dirtied by many batches is copied into the database file once, not each time:
        measured 53 s -> 45 s for a 1M-event replay), then checkpoint and go back to normal."""
        if self.dialect != "sqlite":
            yield
            return
        conn = self._sqlite()
        conn.execute(f"PRAGMA wal_autocheckpoint={BULK_WAL_PAGES}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def schema(self) -> Iterator[Cursor]:
        """A transaction that creates tables: on PostgreSQL, processes starting together (two
        workers, the API and the scheduler) take turns, since concurrent CREATE TABLE IF NOT
        EXISTS of one table can fail there."""
        with self.transaction() as cur:
            if self.dialect == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('caselog-schema'))")
            yield cur

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @property
    def for_update(self) -> str:
        """The row-lock suffix of a SELECT: FOR UPDATE on PostgreSQL; SQLite's transactions
        (BEGIN IMMEDIATE) already hold the write lock."""
        return " FOR UPDATE" if self.dialect == "postgres" else ""

    @property
    def autoincrement(self) -> str:
        return "BIGSERIAL PRIMARY KEY" if self.dialect == "postgres" else "INTEGER PRIMARY KEY AUTOINCREMENT"
