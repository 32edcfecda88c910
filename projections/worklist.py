"""The provider worklist: one row per submitted case, searchable and sortable."""

from __future__ import annotations

import re
from typing import Any

from domain.errors import FieldError, InvalidInput
from domain.events import EVENT_TYPES
from domain.policy import policy_version
from projections.base import Projection, ReadStore, npi_filter, page_window
from projections.facts import BUCKETS, STATUS_BUCKETS, lifecycle_changes, member_name
from projections.records import EventRecord
from projections.rows import Rows, Table

WORKLIST = Table("worklist", (
    "case_id", "case_number", "authorization_number", "member_id", "member_name", "member_last_lc", "member_first_lc",
    "status", "bucket", "submitted_at", "end_date", "procedure_code", "provider_npi", "provider_name", "provider_name_lc",
    "site_name", "insurer", "policy", "updated_at"))
# per-bucket totals of every case, so an unscoped page needs no COUNT(*) over the whole table (a
# provider's pages count their own rows through the NPI index)
COUNTS = Table("worklist_counts", ("scope", "bucket", "n"), keys=("scope", "bucket"), case="", counters=("n",))


class Worklist(Projection):
    name = "worklist"
    row_tables = (WORKLIST, COUNTS)
    handles = frozenset(EVENT_TYPES) - {"LetterIssued"}  # a letter carries no status, authorization nor code
    tables = ("worklist", "worklist_counts")
    schema = (
        "CREATE TABLE IF NOT EXISTS worklist (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, authorization_number TEXT,"
        " member_id TEXT NOT NULL, member_name TEXT NOT NULL, member_last_lc TEXT NOT NULL, member_first_lc TEXT NOT NULL,"
        " status TEXT NOT NULL, bucket TEXT NOT NULL, submitted_at TEXT NOT NULL, end_date TEXT, procedure_code TEXT NOT NULL,"
        " provider_npi TEXT NOT NULL, provider_name TEXT NOT NULL, provider_name_lc TEXT NOT NULL, site_name TEXT NOT NULL,"
        " insurer TEXT NOT NULL, policy TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS worklist_counts (scope TEXT NOT NULL, bucket TEXT NOT NULL, n BIGINT NOT NULL,"
        " PRIMARY KEY (scope, bucket))",
        "CREATE INDEX IF NOT EXISTS worklist_npi_submitted ON worklist (provider_npi, submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_submitted ON worklist (submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_bucket_submitted ON worklist (bucket, submitted_at)",
        "CREATE INDEX IF NOT EXISTS worklist_case_number ON worklist (case_number)",
        "CREATE INDEX IF NOT EXISTS worklist_authorization ON worklist (authorization_number)",
        "CREATE INDEX IF NOT EXISTS worklist_member_id ON worklist (member_id)",
        # a full name ("Grace Hopperfield", "Hopperfield, Grace") is one range of one of these two
        "DROP INDEX IF EXISTS worklist_member_last",
        "DROP INDEX IF EXISTS worklist_member_first",
        "CREATE INDEX IF NOT EXISTS worklist_member_last_first ON worklist (member_last_lc, member_first_lc)",
        "CREATE INDEX IF NOT EXISTS worklist_member_first_last ON worklist (member_first_lc, member_last_lc)",
        "CREATE INDEX IF NOT EXISTS worklist_provider_name ON worklist (provider_name_lc)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, case_id, at = event["data"], event["case_id"], event["occurred_at"]
        match event["type"]:
            case "CaseSubmitted":
                row = policy_version(d["policy"], d["policy_version"])
                rows.put(WORKLIST, {
                    "case_id": case_id, "case_number": d["case_number"], "authorization_number": None,
                    "member_id": d["member"]["id"], "member_name": member_name(d),
                    "member_last_lc": d["member"]["last_name"].lower(), "member_first_lc": d["member"]["first_name"].lower(),
                    "status": "pending", "bucket": "Pending", "submitted_at": d["received_at"], "end_date": None,
                    "procedure_code": d["service"]["procedures"][0]["code"], "provider_npi": d["ordering_provider"]["npi"],
                    "provider_name": d["ordering_provider"]["name"], "provider_name_lc": d["ordering_provider"]["name"].lower(),
                    "site_name": d["site"]["name"], "insurer": row.plan, "policy": d["policy"], "updated_at": at,
                })
                rows.tally(COUNTS, ("*", "Pending"), (1,))
                return
            case "AuthorizationUpdated" if d["kind"] == "code_correction":
                rows.update(WORKLIST, (case_id,), {"procedure_code": d["changes"]["to_code"], "updated_at": at},
                            when={"procedure_code": d["changes"]["from_code"]})
                return
            case _:
                pass
        changes = lifecycle_changes(event, valid_to="end_date")
        if "status" in changes:
            changes["bucket"] = STATUS_BUCKETS[changes["status"]]
            before = rows.get(WORKLIST, (case_id,))
            if before and before["bucket"] != changes["bucket"]:
                rows.tally(COUNTS, ("*", before["bucket"]), (-1,))
                rows.tally(COUNTS, ("*", changes["bucket"]), (1,))
        if changes:
            rows.update(WORKLIST, (case_id,), {**changes, "updated_at": at})


# ---- queries ------------------------------------------------------------------------------


WORKLIST_SORTS = {
    "submitted": "submitted_at", "end_date": "end_date", "patient": "member_last_lc", "status": "bucket",
    "case_number": "case_number", "procedure": "procedure_code",
}
SEARCH_CAP = 5000  # an unscoped search (reviewers, ops) pages through at most this many matches
NAME_WORDS = 6  # a longer query is not split into first and last names


def bucket_named(status: str | None) -> str | None:
    """The worklist bucket a status filter names, in any case, with spaces, underscores or hyphens
    between words ("approved", "Partially Approved", "partially_approved", "PARTIALLY-APPROVED");
    None for every bucket (no filter, or "All")."""
    if status is None or not status.strip():
        return None
    spoken = " ".join(re.split(r"[\s_-]+", status.strip())).casefold()
    if spoken == "all":
        return None
    for bucket in BUCKETS:
        if bucket.casefold() == spoken:
            return bucket
    raise InvalidInput(FieldError("status", f"one of {', '.join(('All',) + BUCKETS)} (any case; _ or - for spaces)"))


def _prefix(column: str, text: str) -> tuple[str, list[Any]]:
    return f"{column} >= ? AND {column} < ?", [text, text + "\uffff"]


def _search_terms(q: str, numbers_only: bool = False) -> list[tuple[str, list[Any]]]:
    """What `q` may match, each term one index range: case number, authorization number, member id
    or provider NPI exactly; the start of a member's last or first name or of the provider's name;
    a member's full name as typed ("Grace Hopperfield", "Hopperfield Grace") or as the row shows it
    ("Hopperfield, Grace"), the last word possibly cut short. Names compare in lower case."""
    needle = q.strip()
    low = " ".join(needle.lower().split())
    terms: list[tuple[str, list[Any]]] = [(f"{column} = ?", [needle]) for column in
                                          ("case_number", "authorization_number", "member_id", "provider_npi")]
    if numbers_only:  # who may not see members searches by case or authorization number alone
        return terms[:2]
    terms += [_prefix(column, low) for column in ("member_last_lc", "member_first_lc", "provider_name_lc")]
    if "," in low:
        last, _, first = (" ".join(part.split()) for part in low.partition(","))
        if last:
            sql, params = _prefix("member_first_lc", first)
            terms.append((f"member_last_lc = ? AND {sql}", [last, *params]))
    words = low.split()
    if 2 <= len(words) <= NAME_WORDS:
        for k in range(1, len(words)):
            head, tail = " ".join(words[:k]), " ".join(words[k:])
            for whole, cut in (("member_first_lc", "member_last_lc"), ("member_last_lc", "member_first_lc")):
                sql, params = _prefix(cut, tail)
                terms.append((f"{whole} = ? AND {sql}", [head, *params]))
    return terms


def worklist_page(db: ReadStore, *, npis: set[str] | None = None, status: str | None = None, q: str | None = None,
             sort: str = "-submitted", page: int = 1, page_size: int = 25, numbers_only: bool = False) -> dict:
    """A page of the worklist. A provider's page (``npis``: its NPIs and those of worklists shared
    with it) is filtered in the query itself, search included, and counted exactly through the NPI
    index. An unscoped search collects the matching case ids term by term, each through its own
    index and already filtered by bucket, up to SEARCH_CAP rows, then pages through those."""
    limit, offset = page_window(page, page_size)
    column = WORKLIST_SORTS.get(sort.lstrip("-"))
    if column is None:
        raise InvalidInput(FieldError("sort", f"one of {', '.join(sorted(WORKLIST_SORTS))}, optionally prefixed with -"))
    direction = "DESC" if sort.startswith("-") else "ASC"
    bucket = bucket_named(status)
    terms = _search_terms(q, numbers_only) if q and q.strip() else []
    where: list[str] = []
    params: list[Any] = []
    npi_filter(npis, "provider_npi", where, params)
    with db.transaction() as cur:
        if npis is not None:
            # the NPI index is the way in; `|| ''` and `+column` keep SQLite's planner (no
            # statistics) from walking a whole bucket or name range instead of the provider's rows
            if bucket:
                where.append("(bucket || '') = ?")
                params.append(bucket)
            if terms:
                where.append("(" + " OR ".join(f"({_unindexed(sql, db.dialect)})" for sql, _ in terms) + ")")
                params += [p for _, term in terms for p in term]
        elif terms:
            status_sql = " AND (bucket || '') = ?" if bucket else ""
            status_params = [bucket] if bucket else []
            # UNION ALL streams, term by term (exact matches first), and stops at the cap
            union = " UNION ALL ".join(f"SELECT case_id FROM worklist WHERE {sql}{status_sql}" for sql, _ in terms)
            found = cur.execute(f"{union} LIMIT {SEARCH_CAP}",
                                [p for _, term in terms for p in (*term, *status_params)])
            hits = list(dict.fromkeys(r[0] for r in found.fetchall()))
            if not hits:
                return {"items": [], "total": 0}
            where.append(f"case_id IN ({', '.join('?' for _ in hits)})")
            params += hits
        elif bucket:
            where.append("bucket = ?")
            params.append(bucket)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        if npis is not None:
            total = cur.execute(f"SELECT COUNT(*) FROM worklist{clause}", params).fetchone()[0]
        elif terms:
            total = len(hits)
        else:
            total = _counted(cur, bucket)
        rows = cur.execute(
            "SELECT case_id, case_number, authorization_number, member_name, member_id, bucket, submitted_at, end_date,"
            " procedure_code, provider_name, provider_npi, site_name, insurer, status"
            f" FROM worklist{clause} ORDER BY {column} {direction}, case_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
    keys = ("case_id", "case_number", "authorization_number", "patient", "member_id", "status", "submitted", "end_date",
            "procedure", "ordering_provider", "ordering_provider_npi", "site", "insurer", "case_status")
    items = [{**dict(zip(keys, r)), "request_id": r[1], "authorization_id": r[2]} for r in rows]
    return {"items": items, "total": total}


_COLUMN = re.compile(r"\b(case_number|authorization_number|member_id|provider_npi|member_last_lc|member_first_lc"
                     r"|provider_name_lc)\b")


def _unindexed(sql: str, dialect: str) -> str:
    """A search term as a filter on rows the NPI index found: on SQLite `+column` is no index's
    column (and costs nothing); PostgreSQL's planner, which has statistics, needs no hint."""
    return _COLUMN.sub(lambda m: f"+{m.group(1)}", sql) if dialect == "sqlite" else sql


def _counted(cur, bucket: str | None) -> int:
    """The total of an unscoped worklist page from the per-bucket counters (no scan)."""
    sql = "SELECT COALESCE(SUM(n), 0) FROM worklist_counts WHERE scope = '*'"
    params: list[Any] = []
    if bucket:
        sql += " AND bucket = ?"
        params.append(bucket)
    return int(cur.execute(sql, params).fetchone()[0])
