"""Who may see what: worklists shared between users, the tokens revoked before they expire, and
the audit of every read of member data (who, when, what, which cases), in the store beside the
events."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

import orjson

from infra.identity import Principal
from infra.store.database import Cursor, Database

READS = "caselog_reads"  # one row per request that showed member data
READ_CASES = "caselog_read_cases"  # the cases each read showed, to find the reads of a case
REVOKED = "caselog_revoked_tokens"  # token ids refused before their expiry
OLD_READS = "caselog_case_reads"  # before: one row per case read, no listings (migrated, then dropped)


def audit_instant(at: datetime | str) -> str:
    """An instant as the audit stores it: UTC, microseconds, so that text order is time order."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


class Access:
    """Worklists shared between users, revoked tokens, and the record of every read of member data."""

    def __init__(self, db: Database):
        self.db = db
        with db.schema() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS caselog_worklist_access (owner TEXT NOT NULL, npi TEXT NOT NULL,"
                        " user_id TEXT NOT NULL, email TEXT NOT NULL, granted_at TEXT NOT NULL, PRIMARY KEY (owner, npi, user_id))")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {REVOKED} (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL,"
                        " revoked_at TEXT NOT NULL, reason TEXT NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {READS} (id {db.autoincrement}, at TEXT NOT NULL,"
                        " who_kind TEXT NOT NULL, who_id TEXT NOT NULL, who_credential TEXT, what TEXT NOT NULL,"
                        " query TEXT NOT NULL, case_ids TEXT NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {READ_CASES} (case_id TEXT NOT NULL, read_id BIGINT NOT NULL,"
                        " PRIMARY KEY (case_id, read_id))")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {READS}_at ON {READS} (at)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {READS}_who ON {READS} (who_id, at)")
            if self._exists(cur, OLD_READS):
                self._migrate(cur)

    # ---- worklists shared ------------------------------------------------------------------------

    def visible_npis(self, who: Principal) -> set[str] | None:
        """None: every case. Otherwise the ordering-provider NPIs this user may see."""
        if who.role != "provider":
            return None
        with self.db.read() as cur:
            shared = cur.execute("SELECT npi FROM caselog_worklist_access WHERE user_id = ?", (who.sub,)).fetchall()
        return set(who.npis) | {r[0] for r in shared}

    def sharing_with(self, who: Principal) -> set[str]:
        """The users (providers) who share their worklist with this one."""
        with self.db.read() as cur:
            rows = cur.execute("SELECT DISTINCT owner FROM caselog_worklist_access WHERE user_id = ?",
                               (who.sub,)).fetchall()
        return {r[0] for r in rows}

    def acts_for(self, who: Principal, starter: dict | None) -> bool:
        """Whether this user may read and complete what ``starter`` (an actor) began, a draft: it
        is that user, or a provider who shares its worklist with this one."""
        if starter is None:
            return False
        if (starter.get("kind"), starter.get("id")) == (who.role, who.sub):
            return True
        return starter.get("kind") == "provider" and starter.get("id") in self.sharing_with(who)

    def ordering_npis(self, who: Principal, starter: dict | None) -> set[str]:
        """The NPIs this provider may submit a draft ``starter`` began under: its own, and those
        of the starter's worklist when the starter shares it with this user."""
        npis = set(who.npis)
        if starter is not None and starter.get("kind") == "provider" and starter.get("id") != who.sub:
            with self.db.read() as cur:
                rows = cur.execute("SELECT npi FROM caselog_worklist_access WHERE owner = ? AND user_id = ?",
                                   (starter.get("id"), who.sub)).fetchall()
            npis |= {r[0] for r in rows}
        return npis

    def share(self, owner: Principal, user_id: str, email: str, at: str) -> None:
        with self.db.transaction() as cur:
            for npi in sorted(owner.npis):
                cur.execute("INSERT INTO caselog_worklist_access (owner, npi, user_id, email, granted_at) VALUES (?, ?, ?, ?, ?)"
                            " ON CONFLICT (owner, npi, user_id) DO UPDATE SET email = excluded.email", (owner.sub, npi, user_id, email, at))

    def revoke(self, owner: Principal, user_id: str) -> int:
        with self.db.transaction() as cur:
            return cur.execute("DELETE FROM caselog_worklist_access WHERE owner = ? AND user_id = ?", (owner.sub, user_id)).rowcount

    def shares(self, owner: Principal) -> list[dict]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT DISTINCT user_id, email, granted_at FROM caselog_worklist_access WHERE owner = ? ORDER BY user_id", (owner.sub,)).fetchall()
        return [{"user_id": r[0], "email": r[1], "granted_at": r[2]} for r in rows]

    # ---- revoked tokens --------------------------------------------------------------------------

    def revoke_token(self, jti: str, expires_at: int, at: datetime, reason: str = "") -> bool:
        """Refuse the token ``jti`` from now on (until it would have expired anyway; rows of tokens
        past their expiry are dropped). False when it was revoked already."""
        with self.db.transaction() as cur:
            cur.execute(f"DELETE FROM {REVOKED} WHERE expires_at < ?", (int(at.timestamp()) - 3600,))
            added = cur.execute(f"INSERT INTO {REVOKED} (jti, expires_at, revoked_at, reason) VALUES (?, ?, ?, ?)"
                                " ON CONFLICT (jti) DO NOTHING", (jti, expires_at, audit_instant(at), reason))
            return added.rowcount == 1

    def is_revoked(self, jti: str | None) -> bool:
        with self.db.read() as cur:  # a snapshot: never waits for a write in progress
            return cur.execute(f"SELECT 1 FROM {REVOKED} WHERE jti = ?", (jti or "",)).fetchone() is not None

    # ---- the read audit --------------------------------------------------------------------------

    def record_read(self, who: Principal, what: str, case_ids: Iterable[str], at: datetime | str,
                    query: dict | None = None) -> None:
        """One request that showed member data: who, when, what (the read and what was asked),
        and every case it showed, in the order shown (a listing that found nothing records none)."""
        shown = list(dict.fromkeys(str(c) for c in case_ids))
        asked = {k: v for k, v in (query or {}).items() if v is not None}
        with self.db.transaction() as cur:
            row = cur.execute(f"INSERT INTO {READS} (at, who_kind, who_id, who_credential, what, query, case_ids)"
                              " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                              (audit_instant(at), who.role, who.sub, who.credential, what,
                               orjson.dumps(asked, default=str).decode(), orjson.dumps(shown).decode())).fetchone()
            cur.executemany(f"INSERT INTO {READ_CASES} (case_id, read_id) VALUES (?, ?)", [(c, row[0]) for c in shown])

    def reads(self, case_id: str | None = None, *, user: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> list[dict]:
        """The reads recorded, oldest first: those that showed ``case_id``, made by ``user`` (a
        token's sub), at or after ``since`` and before ``until`` (each when given)."""
        where, params = [], []
        if case_id is not None:
            where.append(f"id IN (SELECT read_id FROM {READ_CASES} WHERE case_id = ?)")
            params.append(case_id)
        if user is not None:
            where.append("who_id = ?")
            params.append(user)
        if since is not None:
            where.append("at >= ?")
            params.append(audit_instant(since))
        if until is not None:
            where.append("at < ?")
            params.append(audit_instant(until))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.db.transaction() as cur:
            rows = cur.execute(f"SELECT id, at, who_kind, who_id, who_credential, what, query, case_ids FROM {READS}"
                               f"{clause} ORDER BY id", params).fetchall()
        return [{"id": r[0], "at": r[1], "who": {"kind": r[2], "id": r[3], **({"credential": r[4]} if r[4] else {})},
                 "what": r[5], "query": orjson.loads(r[6]), "case_ids": orjson.loads(r[7])} for r in rows]

    def _exists(self, cur: Cursor, table: str) -> bool:
        if self.db.dialect == "postgres":
            return cur.execute("SELECT to_regclass(?)", (table,)).fetchone()[0] is not None
        found = cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        return found is not None

    def _migrate(self, cur: Cursor) -> None:
        """The reads recorded before listings were (one row per case read) become one read each,
        in their order; the old table goes in the same transaction, so a failure leaves it whole."""
        rows = cur.execute(f"SELECT at, who_kind, who_id, case_id, what FROM {OLD_READS} ORDER BY id").fetchall()
        for at, kind, who_id, case_id, what in rows:
            read = cur.execute(f"INSERT INTO {READS} (at, who_kind, who_id, who_credential, what, query, case_ids)"
                               " VALUES (?, ?, ?, NULL, ?, '{}', ?) RETURNING id",
                               (audit_instant(at), kind, who_id, what, orjson.dumps([case_id]).decode())).fetchone()
            cur.execute(f"INSERT INTO {READ_CASES} (case_id, read_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (case_id, read[0]))
        cur.execute(f"DROP TABLE {OLD_READS}")
