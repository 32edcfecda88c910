"""What every read model is: tables, and one ``process_event`` with a match per event type.

The runner writes a projection's rows and its tracking position in one transaction, and
tracks the events a projection ignores too, so a crash or a re-delivery neither skips nor
doubles a row."""

from __future__ import annotations

from typing import Any, Sequence

from infra.database import Cursor
from projections.records import EventRecord


class Projection:
    name: str = ""
    tables: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()  # CREATE TABLE / CREATE INDEX statements

    def create(self, cur: Cursor) -> None:
        for statement in self.schema:
            cur.execute(statement)

    def drop(self, cur: Cursor) -> None:
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")

    def process_event(self, cur: Cursor, event: EventRecord) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def upsert(cur: Cursor, table: str, keys: Sequence[str], row: dict[str, Any]) -> None:
    cols = list(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
    sql = (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
    )
    cur.execute(sql, [row[c] for c in cols])


def update(cur: Cursor, table: str, case_id: str, **values: Any) -> None:
    sets = ", ".join(f"{c} = ?" for c in values)
    cur.execute(f"UPDATE {table} SET {sets} WHERE case_id = ?", [*values.values(), case_id])
