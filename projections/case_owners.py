"""Whose a case is: the NPIs of its ordering provider and rendering site once submitted, and who
started it as a draft ("finish later"). The HTTP API asks it who may see or write a case, instead
of replaying the case. Kept in every process that serves the API (like the deadlines), so a
write's next read sees it at once."""

from __future__ import annotations

from projections.base import Projection, ReadStore
from projections.records import EventRecord
from projections.rows import Rows, Table


OWNERS = Table("case_owners", ("case_id", "ordering_npi", "site_npi", "starter_kind", "starter_id"))


class CaseOwners(Projection):
    name = "case_owners"
    row_tables = (OWNERS,)
    handles = frozenset({"DraftStarted", "CaseSubmitted", "AuthorizationUpdated"})
    tables = ("case_owners",)
    schema = (
        "CREATE TABLE IF NOT EXISTS case_owners (case_id TEXT PRIMARY KEY, ordering_npi TEXT, site_npi TEXT,"
        " starter_kind TEXT, starter_id TEXT)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, case_id = event["data"], event["case_id"]
        match event["type"]:
            case "DraftStarted":
                rows.put(OWNERS, {
                    "case_id": case_id, "ordering_npi": None, "site_npi": None,
                    "starter_kind": event["actor"].get("kind"), "starter_id": event["actor"].get("id"),
                })
            case "CaseSubmitted":
                if event["version"] == 1:
                    rows.put(OWNERS, {
                        "case_id": case_id, "ordering_npi": d["ordering_provider"]["npi"], "site_npi": d["site"]["npi"],
                        "starter_kind": None, "starter_id": None,
                    })
                else:
                    rows.update(OWNERS, (case_id,), {"ordering_npi": d["ordering_provider"]["npi"], "site_npi": d["site"]["npi"]})
            case "AuthorizationUpdated" if d["kind"] == "site" and "npi" in d["changes"]:
                rows.update(OWNERS, (case_id,), {"site_npi": d["changes"]["npi"]})
            case _:
                pass


# ---- queries ------------------------------------------------------------------------------


def owners_of(db: ReadStore, case_id: str) -> dict | None:
    """{"ordering_npi", "site_npi", "starter"} of a case, or None for no case of that id."""
    with db.read() as cur:
        row = cur.execute("SELECT ordering_npi, site_npi, starter_kind, starter_id FROM case_owners WHERE case_id = ?",
                          (str(case_id),)).fetchone()
    if row is None:
        return None
    starter = {"kind": row[2], "id": row[3]} if row[2] else None
    return {"ordering_npi": row[0], "site_npi": row[1], "starter": starter}
