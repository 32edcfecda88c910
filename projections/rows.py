"""How a read model changes its rows: ``fold(rows, event)`` says what each event does to them
through a small interface (get, put, update, delete, tally), with two implementations.

- ``Direct``: every change is one SQL statement at once, in the caller's transaction (a
  projection kept live, a Kafka worker): what ``process_event`` does.
- ``Staged``: a batch of events (a rebuild, a catch-up) first reads every row the batch's cases
  already have, in a few statements, then folds the events over those rows in memory, and writes
  each changed row once at the end (one ``executemany`` per table and kind of change). A case
  submitted and decided inside one batch costs one INSERT per table instead of a statement per
  event and table. Counters (``tally``) are summed in memory and added once per key.

The two give the same rows: ``Staged`` keeps the semantics of the statements ``Direct`` runs (an
update of a missing row does nothing, ``when`` conditions, increments, upserts replace the row).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Iterable, Protocol, Sequence

Cursor = Any  # projections.base.Cursor (which imports this module: not imported back)


NOT_NULL = object()  # a ``when`` condition: the column IS NOT NULL


class Table:
    """A table a fold writes: its columns, its key, and the column naming the case (rows are read
    ahead by case). A tally table (counters) has ``counters``: what ``tally`` adds to."""

    def __init__(self, name: str, columns: tuple[str, ...], keys: tuple[str, ...] = ("case_id",), case: str = "case_id",
                 counters: tuple[str, ...] = ()):
        self.name, self.columns, self.keys, self.case, self.counters = name, tuple(columns), tuple(keys), case, tuple(counters)
        # whether a batch reads this table's rows ahead by case (its key starts with the case, so the
        # primary key's index serves that); else each row is read on first use, by its key
        self.ahead = not self.counters and self.keys[0] == self.case
        self.rest = tuple(c for c in self.columns if c not in self.keys)
        self.values = itemgetter(*self.columns)  # a row's values, in column order
        self.replacing = itemgetter(*self.rest, *self.keys)  # the parameters of "replace"
        self._sql: dict[str, str] = {}
        if len(self.keys) == 1:
            only = self.keys[0]
            self.key_of = lambda row: (row[only],)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    def key_of(self, row: dict) -> tuple:
        return tuple(row[k] for k in self.keys)

    def sql(self, kind: str) -> str:
        found = self._sql.get(kind)
        if found is None:
            found = self._sql[kind] = self._build(kind)
        return found

    def _build(self, kind: str) -> str:
        where = " AND ".join(f"{k} = ?" for k in self.keys)
        cols = ", ".join(self.columns)
        marks = ", ".join("?" for _ in self.columns)
        rest = [c for c in self.columns if c not in self.keys]
        if kind == "upsert":
            updates = ", ".join(f"{c} = excluded.{c}" for c in rest)
            return (f"INSERT INTO {self.name} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(self.keys)}) DO "
                    + (f"UPDATE SET {updates}" if updates else "NOTHING"))
        if kind == "insert":
            return f"INSERT INTO {self.name} ({cols}) VALUES ({marks})"
        if kind == "replace":  # the whole row but its key, found by its key
            return f"UPDATE {self.name} SET {', '.join(f'{c} = ?' for c in rest)} WHERE {where}"
        if kind == "get":
            return f"SELECT {cols} FROM {self.name} WHERE {where}"
        if kind == "delete":
            return f"DELETE FROM {self.name} WHERE {where}"
        if kind == "delete_case":
            return f"DELETE FROM {self.name} WHERE {self.case} = ?"
        if kind == "tally":
            keys = ", ".join(self.keys)
            return (f"INSERT INTO {self.name} ({keys}, {', '.join(self.counters)}) VALUES ("
                    + ", ".join("?" for _ in (*self.keys, *self.counters))
                    + f") ON CONFLICT ({keys}) DO UPDATE SET "
                    + ", ".join(f"{c} = {self.name}.{c} + excluded.{c}" for c in self.counters))
        raise KeyError(kind)


class Rows(Protocol):
    def get(self, table: Table, key: tuple) -> dict | None: ...

    def put(self, table: Table, row: dict) -> None: ...

    def update(self, table: Table, key: tuple, values: dict | None = None, *, add: dict | None = None,
               when: dict | None = None) -> None: ...

    def delete(self, table: Table, key: tuple) -> None: ...

    def delete_case(self, table: Table, case_id: str) -> None: ...

    def tally(self, table: Table, key: tuple, deltas: Sequence[int]) -> None: ...


def _conditions(when: dict | None) -> tuple[list[str], list[Any]]:
    sql, params = [], []
    for column, expected in (when or {}).items():
        if expected is None:
            sql.append(f"{column} IS NULL")
        elif expected is NOT_NULL:
            sql.append(f"{column} IS NOT NULL")
        else:
            sql.append(f"{column} = ?")
            params.append(expected)
    return sql, params


def _holds(row: dict, when: dict | None) -> bool:
    for column, expected in (when or {}).items():
        value = row[column]
        if expected is None:
            if value is not None:
                return False
        elif expected is NOT_NULL:
            if value is None:
                return False
        elif value != expected:
            return False
    return True


class Direct:
    """Each change one statement, now, through ``cur``."""

    def __init__(self, cur: Cursor):
        self.cur = cur

    def get(self, table: Table, key: tuple) -> dict | None:
        found = self.cur.execute(table.sql("get"), key).fetchone()
        return dict(zip(table.columns, found)) if found else None

    def put(self, table: Table, row: dict) -> None:
        self.cur.execute(table.sql("upsert"), [row[c] for c in table.columns])

    def update(self, table: Table, key: tuple, values: dict | None = None, *, add: dict | None = None,
               when: dict | None = None) -> None:
        values, add = values or {}, add or {}
        sets = [f"{c} = ?" for c in values] + [f"{c} = {c} + ?" for c in add]
        conditions, params = _conditions(when)
        where = " AND ".join([*(f"{k} = ?" for k in table.keys), *conditions])
        self.cur.execute(f"UPDATE {table.name} SET {', '.join(sets)} WHERE {where}",
                         [*values.values(), *add.values(), *key, *params])

    def delete(self, table: Table, key: tuple) -> None:
        self.cur.execute(table.sql("delete"), key)

    def delete_case(self, table: Table, case_id: str) -> None:
        self.cur.execute(table.sql("delete_case"), (case_id,))

    def tally(self, table: Table, key: tuple, deltas: Sequence[int]) -> None:
        self.cur.execute(table.sql("tally"), [*key, *deltas])


_ABSENT = None


class Staged:
    """Changes folded in memory over rows read ahead, written once by ``flush``."""

    CHUNK = 500  # case ids per read-ahead statement (well under every bound on parameters)

    def __init__(self, cur: Cursor, tables: Iterable[Table], dialect: str = "sqlite"):
        self.cur = cur
        self.dialect = dialect
        self.tables = [t for t in tables if not t.counters]
        self.lazy = {t.name: t for t in self.tables if not t.ahead}
        self.rows: dict[str, dict[tuple, dict | None]] = {t.name: {} for t in self.tables}
        self.stored: dict[str, set[tuple]] = {t.name: set() for t in self.tables}  # keys the database holds
        self.dirty: dict[str, dict[tuple, None]] = {t.name: {} for t in self.tables}  # in first-change order
        self.by_case: dict[str, dict[str, set[tuple]]] = {t.name: {} for t in self.tables if t.keys != (t.case,)}
        self.tallies: dict[str, tuple[Table, dict[tuple, list[int]]]] = {}

    def read_ahead(self, case_ids: Iterable[str]) -> None:
        """Read every row the cases already have; from here on a key of a case the batch holds
        and not read is no row (a rebuild leaves out the cases it has not met yet: none)."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return
        for table in self.tables:
            if not table.ahead:
                continue
            rows, stored = self.rows[table.name], self.stored[table.name]
            many = self.by_case.get(table.name)
            cols = ", ".join(table.columns)
            for i in range(0, len(ids), self.CHUNK):
                chunk = ids[i:i + self.CHUNK]
                found = self.cur.execute(f"SELECT {cols} FROM {table.name} WHERE {table.case} IN"
                                         f" ({', '.join('?' for _ in chunk)})", chunk).fetchall()
                for values in found:
                    row = dict(zip(table.columns, values))
                    key = table.key_of(row)
                    rows[key] = row
                    stored.add(key)
                    if many is not None:
                        many.setdefault(row[table.case], set()).add(key)

    def _read(self, table: Table, key: tuple) -> dict | None:
        rows = self.rows[table.name]
        if key in rows or table.name not in self.lazy:
            return rows.get(key)
        found = self.cur.execute(table.sql("get"), key).fetchone()
        row = rows[key] = dict(zip(table.columns, found)) if found else None
        if row is not None:
            self.stored[table.name].add(key)
        return row

    def get(self, table: Table, key: tuple) -> dict | None:
        return self._read(table, key)

    def put(self, table: Table, row: dict) -> None:
        key = table.key_of(row)
        if table.name in self.lazy:
            self._read(table, key)
        self.rows[table.name][key] = row  # the fold's own dict, not kept by it
        self.dirty[table.name][key] = None
        many = self.by_case.get(table.name)
        if many is not None:
            many.setdefault(row[table.case], set()).add(key)

    def update(self, table: Table, key: tuple, values: dict | None = None, *, add: dict | None = None,
               when: dict | None = None) -> None:
        row = self.rows[table.name].get(key)
        if row is None:
            if table.name not in self.lazy or (row := self._read(table, key)) is None:
                return
        if when and not _holds(row, when):
            return
        if values:
            row.update(values)
        if add:
            for column, n in add.items():
                row[column] += n
        self.dirty[table.name][key] = None

    def delete(self, table: Table, key: tuple) -> None:
        rows = self.rows[table.name]
        if self._read(table, key) is not None:
            rows[key] = _ABSENT
            self.dirty[table.name][key] = None

    def delete_case(self, table: Table, case_id: str) -> None:
        if table.name in self.lazy:
            raise NotImplementedError(f"{table.name}: rows are not read ahead by case")
        many = self.by_case.get(table.name)
        for key in list(many.get(case_id, ())) if many is not None else [(case_id,)]:
            self.delete(table, key)

    def tally(self, table: Table, key: tuple, deltas: Sequence[int]) -> None:
        _, sums = self.tallies.setdefault(table.name, (table, {}))
        found = sums.get(key)
        if found is None:
            sums[key] = list(deltas)
        else:
            for i, n in enumerate(deltas):
                found[i] += n

    def flush(self) -> int:
        """Write every changed row once: deletions, new rows, changed rows, then counters (a key
        whose deltas sum to zero is still written, as the statements one by one would)."""
        statements = 0
        for table in self.tables:
            rows, stored = self.rows[table.name], self.stored[table.name]
            gone, new, changed = [], [], []
            for key in self.dirty[table.name]:
                row = rows[key]
                if row is None:
                    if key in stored:
                        gone.append(key)
                elif key in stored:
                    changed.append(row)
                else:
                    new.append(row)
            if gone:
                self.cur.executemany(table.sql("delete"), gone)
                statements += 1
            if new:
                statements += self._insert(table, new)
            if changed:
                self.cur.executemany(table.sql("replace"), list(map(table.replacing, changed)))
                statements += 1
        for table, sums in self.tallies.values():
            self.cur.executemany(table.sql("tally"), [[*key, *deltas] for key, deltas in sums.items()])
            statements += 1
        return statements

    def _insert(self, table: Table, new: list[dict]) -> int:
        rows = list(map(table.values, new))
        insert_many = getattr(self.cur, "insert_many", None)  # the store's cursor: COPY on PostgreSQL
        if insert_many is not None:
            insert_many(table.name, table.columns, rows)
        else:
            self.cur.executemany(table.sql("insert"), rows)
        return 1
