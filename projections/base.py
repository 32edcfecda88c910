"""What every read model is: tables, and one ``fold`` with a match per event type, written
against ``projections.rows`` (``process_event`` folds one event with each change written at once;
the runner folds a batch in memory and writes each changed row once).

The runner writes a projection's rows and its tracking position in one transaction, and
tracks the events a projection ignores too, so a crash or a re-delivery neither skips nor
doubles a row."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any, Protocol, Sequence

from domain.errors import FieldError, InvalidInput
from projections.records import EventRecord
from projections.rows import Direct

MAX_PAGE_SIZE = 200


class Cursor(Protocol):
    """What a projection writes and reads through (the store's cursor; SQL with ``?`` markers)."""

    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "Cursor": ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchone(self) -> tuple | None: ...

    def fetchall(self) -> list[tuple]: ...


class ReadStore(Protocol):
    """Where a read model's queries run: one read transaction at a time, on a known SQL dialect.
    ``read()`` for a query that writes nothing: it does not wait for the store's writer."""

    dialect: str

    def transaction(self) -> AbstractContextManager[Cursor]: ...

    def read(self) -> AbstractContextManager[Cursor]: ...


class Projection:
    name: str = ""
    tables: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()  # CREATE TABLE / CREATE INDEX statements
    # the tables ``fold`` writes (projections.rows.Table), for a batch folded in memory (Staged)
    row_tables: tuple = ()
    # the event types ``fold`` may change a row for (None: any); a batch folded in memory skips the
    # others (a letter, half of all events, changes nothing in most read models)
    handles: frozenset[str] | None = None

    def create(self, cur: Cursor, *, indexes: bool = True) -> None:
        for statement in self.schema:
            if indexes or not statement.startswith("CREATE INDEX"):
                cur.execute(statement)

    def create_indexes(self, cur: Cursor) -> None:
        for statement in self.schema:
            if statement.startswith("CREATE INDEX"):
                cur.execute(statement)

    def drop(self, cur: Cursor) -> None:
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")

    def process_event(self, cur: Cursor, event: EventRecord) -> None:
        """One event, its changes written at once (a projection kept live, a Kafka worker)."""
        self.fold(Direct(cur), event)

    def fold(self, rows: Any, event: EventRecord) -> None:  # pragma: no cover - abstract
        """What one event does to the rows (``projections.rows.Rows``: written now or staged)."""
        raise NotImplementedError


@lru_cache(maxsize=512)
def _upsert_sql(table: str, keys: tuple[str, ...], cols: tuple[str, ...]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
    )


@lru_cache(maxsize=512)
def _update_sql(table: str, cols: tuple[str, ...]) -> str:
    return f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} WHERE case_id = ?"


def upsert(cur: Cursor, table: str, keys: Sequence[str], row: dict[str, Any]) -> None:
    cur.execute(_upsert_sql(table, tuple(keys), tuple(row)), list(row.values()))


def update(cur: Cursor, table: str, case_id: str, **values: Any) -> None:
    cur.execute(_update_sql(table, tuple(values)), [*values.values(), case_id])


def page_window(page: int, page_size: int) -> tuple[int, int]:
    if page < 1:
        raise InvalidInput(FieldError("page", "pages start at 1"))
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(FieldError("page_size", f"between 1 and {MAX_PAGE_SIZE}"))
    return page_size, (page - 1) * page_size


def npi_filter(npis: set[str] | None, column: str, where: list[str], params: list[Any]) -> None:
    if npis is not None:
        if not npis:
            where.append("1 = 0")
        else:
            where.append(f"{column} IN ({', '.join('?' for _ in npis)})")
            params.extend(sorted(npis))
