"""Case numbers and idempotency keys: the two facts that span cases.

Case numbers come from a sequence (10 digits, never reused). An idempotency key is also
recorded on the events its command produced, so a crash between saving and registering
never lets a retry record twice; this table catches a key reused on another case.
"""

from __future__ import annotations

from infra.store.database import Database

CASE_NUMBER_BASE = 1_000_000_000


class Registry:
    def __init__(self, db: Database):
        self.db = db
        with db.schema() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS caselog_case_numbers (n {db.autoincrement}, case_id TEXT NOT NULL UNIQUE)")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS caselog_idempotency (key TEXT PRIMARY KEY, digest TEXT NOT NULL, case_id TEXT NOT NULL)"
            )

    def case_number(self, case_id: str) -> str:
        return self.case_numbers([case_id])[case_id]

    def case_numbers(self, case_ids: list[str]) -> dict[str, str]:
        """Case numbers for many cases in one transaction (bulk loads)."""
        with self.db.transaction() as cur:
            cur.executemany("INSERT INTO caselog_case_numbers (case_id) VALUES (?) ON CONFLICT (case_id) DO NOTHING", [(c,) for c in case_ids])
            numbers = {}
            for i in range(0, len(case_ids), 500):
                chunk = case_ids[i:i + 500]
                rows = cur.execute(f"SELECT case_id, n FROM caselog_case_numbers WHERE case_id IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
                numbers.update({r[0]: str(CASE_NUMBER_BASE + int(r[1])) for r in rows})
        return numbers

    def release_case_numbers(self, case_ids: list[str]) -> None:
        """Cases refused before they were saved keep no number (the sequence never reuses it)."""
        if case_ids:
            with self.db.transaction() as cur:
                cur.executemany("DELETE FROM caselog_case_numbers WHERE case_id = ?", [(c,) for c in case_ids])

    def find_key(self, key: str) -> tuple[str, str] | None:
        with self.db.transaction() as cur:
            row = cur.execute("SELECT digest, case_id FROM caselog_idempotency WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def remember_key(self, key: str, digest: str, case_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO caselog_idempotency (key, digest, case_id) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (key, digest, case_id),
            )
