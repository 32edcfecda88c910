"""Case numbers and idempotency keys: the two facts that span cases.

Case numbers come from a sequence (10 digits, never reused): this process reserves them in blocks
(one short transaction per block) and hands them out from memory, after a submission passed
validation; the row tying a number to its case is recorded with the case's first events, by the
writer (infra/store/writer.py), as is an idempotency key with the events of its command. A number
whose case was refused or lost a race before it was recorded goes back to this process's block.
Numbers reserved by a process that stops are not issued: the sequence has gaps, never repeats.

An idempotency key is also recorded on the events its command produced, so a retry never records
twice; this table catches a key reused on another case.
"""

from __future__ import annotations

import heapq
import threading

from infra.store.database import Database

CASE_NUMBER_BASE = 1_000_000_000
BLOCK = 32  # case numbers reserved per transaction


class Registry:
    def __init__(self, db: Database):
        self.db = db
        self._free: list[int] = []  # reserved, not issued (a heap: the lowest first)
        self._lock = threading.Lock()
        with db.schema() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS caselog_case_numbers (n {db.autoincrement}, case_id TEXT NOT NULL UNIQUE)")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS caselog_idempotency (key TEXT PRIMARY KEY, digest TEXT NOT NULL, case_id TEXT NOT NULL)"
            )

    def case_number(self, case_id: str) -> str:
        """A number for a case about to be created (recorded with its first events)."""
        with self._lock:
            if not self._free:
                self._free = self._reserve(BLOCK)
                heapq.heapify(self._free)
            return str(CASE_NUMBER_BASE + heapq.heappop(self._free))

    def release_case_numbers(self, numbers: list[str]) -> None:
        """Numbers issued for cases that were not recorded (refused, or lost a race): issued again."""
        with self._lock:
            for number in numbers:
                heapq.heappush(self._free, int(number) - CASE_NUMBER_BASE)

    def _reserve(self, count: int) -> list[int]:
        """``count`` numbers of the sequence, taken from it for this process."""
        with self.db.transaction() as cur:
            if self.db.dialect == "postgres":
                rows = cur.execute("SELECT nextval(pg_get_serial_sequence('caselog_case_numbers', 'n'))"
                                   " FROM generate_series(1, CAST(? AS INTEGER))", (count,)).fetchall()
                return [int(r[0]) for r in rows]
            # AUTOINCREMENT's own counter: rows inserted without a number (case_numbers) come after it
            row = cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'caselog_case_numbers'").fetchone()
            if row is None:
                top = int(cur.execute("SELECT COALESCE(MAX(n), 0) FROM caselog_case_numbers").fetchone()[0])
                cur.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('caselog_case_numbers', ?)",
                            (top + count,))
            else:
                top = int(row[0])
                cur.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'caselog_case_numbers'", (top + count,))
        return list(range(top + 1, top + count + 1))

    def case_numbers(self, case_ids: list[str]) -> dict[str, str]:
        """Case numbers for many cases in one transaction, recorded at once (bulk loads that save
        through the event store directly)."""
        with self.db.transaction() as cur:
            cur.executemany("INSERT INTO caselog_case_numbers (case_id) VALUES (?) ON CONFLICT (case_id) DO NOTHING", [(c,) for c in case_ids])
            numbers = {}
            for i in range(0, len(case_ids), 500):
                chunk = case_ids[i:i + 500]
                rows = cur.execute(f"SELECT case_id, n FROM caselog_case_numbers WHERE case_id IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
                numbers.update({r[0]: str(CASE_NUMBER_BASE + int(r[1])) for r in rows})
        return numbers

    def find_key(self, key: str) -> tuple[str, str] | None:
        row = self.db.read_one("SELECT digest, case_id FROM caselog_idempotency WHERE key = ?", (key,))
        return (row[0], row[1]) if row else None
