"""Who may see what: worklists shared between users, and the audit of every read of a case
(who, when, what), in the store beside the events."""

from __future__ import annotations

from infra.identity import Principal
from infra.store.database import Database


class Access:
    """Worklists shared between users, and the record of every read of a case."""

    def __init__(self, db: Database):
        self.db = db
        with db.schema() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS caselog_worklist_access (owner TEXT NOT NULL, npi TEXT NOT NULL,"
                        " user_id TEXT NOT NULL, email TEXT NOT NULL, granted_at TEXT NOT NULL, PRIMARY KEY (owner, npi, user_id))")
            cur.execute(f"CREATE TABLE IF NOT EXISTS caselog_case_reads (id {db.autoincrement}, at TEXT NOT NULL, who_kind TEXT NOT NULL,"
                        " who_id TEXT NOT NULL, case_id TEXT NOT NULL, what TEXT NOT NULL)")
            cur.execute("CREATE INDEX IF NOT EXISTS caselog_case_reads_case ON caselog_case_reads (case_id, at)")

    def visible_npis(self, who: Principal) -> set[str] | None:
        """None: every case. Otherwise the ordering-provider NPIs this user may see."""
        if who.role != "provider":
            return None
        with self.db.transaction() as cur:
            shared = cur.execute("SELECT npi FROM caselog_worklist_access WHERE user_id = ?", (who.sub,)).fetchall()
        return set(who.npis) | {r[0] for r in shared}

    def sharing_with(self, who: Principal) -> set[str]:
        """The users (providers) who share their worklist with this one."""
        with self.db.transaction() as cur:
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
            with self.db.transaction() as cur:
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

    def record_read(self, who: Principal, case_id: str, what: str, at: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO caselog_case_reads (at, who_kind, who_id, case_id, what) VALUES (?, ?, ?, ?, ?)",
                        (at, who.role, who.sub, case_id, what))

    def reads(self, case_id: str) -> list[dict]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT at, who_kind, who_id, what FROM caselog_case_reads WHERE case_id = ? ORDER BY id", (case_id,)).fetchall()
        return [{"at": r[0], "who": {"kind": r[1], "id": r[2]}, "what": r[3]} for r in rows]
