"""The read side: queries over the projection tables (no event is read here)."""

from __future__ import annotations

import re
import statistics
from datetime import datetime
from typing import Any

from domain.errors import FieldError, InvalidInput
from infra.database import Database
from projections.facts import BUCKETS

WORKLIST_SORTS = {
    "submitted": "submitted_at", "end_date": "end_date", "patient": "member_last_lc", "status": "bucket",
    "case_number": "case_number", "procedure": "procedure_code",
}
MAX_PAGE_SIZE = 200
SEARCH_CAP = 5000  # an unscoped search (reviewers, ops) pages through at most this many matches
NAME_WORDS = 6  # a longer query is not split into first and last names


def _page(page: int, page_size: int) -> tuple[int, int]:
    if page < 1:
        raise InvalidInput(FieldError("page", "pages start at 1"))
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(FieldError("page_size", f"between 1 and {MAX_PAGE_SIZE}"))
    return page_size, (page - 1) * page_size


def _npi_filter(npis: set[str] | None, column: str, where: list[str], params: list[Any]) -> None:
    if npis is not None:
        if not npis:
            where.append("1 = 0")
        else:
            where.append(f"{column} IN ({', '.join('?' for _ in npis)})")
            params.extend(sorted(npis))


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


def _search_terms(q: str) -> list[tuple[str, list[Any]]]:
    """What `q` may match, each term one index range: case number, authorization number, member id
    or provider NPI exactly; the start of a member's last or first name or of the provider's name;
    a member's full name as typed ("Grace Hopperfield", "Hopperfield Grace") or as the row shows it
    ("Hopperfield, Grace"), the last word possibly cut short. Names compare in lower case."""
    needle = q.strip()
    low = " ".join(needle.lower().split())
    terms: list[tuple[str, list[Any]]] = [(f"{column} = ?", [needle]) for column in
                                          ("case_number", "authorization_number", "member_id", "provider_npi")]
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


def worklist(db: Database, *, npis: set[str] | None = None, status: str | None = None, q: str | None = None,
             sort: str = "-submitted", page: int = 1, page_size: int = 25) -> dict:
    """A page of the worklist. A provider's page (``npis``: its NPIs and those of worklists shared
    with it) is filtered in the query itself, search included, and counted exactly through the NPI
    index. An unscoped search collects the matching case ids term by term, each through its own
    index and already filtered by bucket, up to SEARCH_CAP rows, then pages through those."""
    limit, offset = _page(page, page_size)
    column = WORKLIST_SORTS.get(sort.lstrip("-"))
    if column is None:
        raise InvalidInput(FieldError("sort", f"one of {', '.join(sorted(WORKLIST_SORTS))}, optionally prefixed with -"))
    direction = "DESC" if sort.startswith("-") else "ASC"
    bucket = bucket_named(status)
    terms = _search_terms(q) if q and q.strip() else []
    where: list[str] = []
    params: list[Any] = []
    _npi_filter(npis, "provider_npi", where, params)
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


def certification_summary(db: Database, *, npis: set[str] | None = None, authorization_number: str | None = None,
                          case_number: str | None = None, member_last_name: str | None = None, npi: str | None = None,
                          status: str | None = None, page: int = 1, page_size: int = 50) -> dict:
    limit, offset = _page(page, page_size)
    where: list[str] = []
    params: list[Any] = []
    _npi_filter(npis, "provider_npi", where, params)
    for column, value in (("authorization_number", authorization_number), ("case_number", case_number),
                          ("member_last_name", member_last_name), ("provider_npi", npi), ("status", status)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cols = ("case_id", "authorization_number", "case_number", "member_last_name", "provider_last_name", "provider_npi", "status",
            "initiated_at", "procedure_code", "service_description", "site_name", "expiration_date", "correspondence_count")
    with db.transaction() as cur:
        total = cur.execute(f"SELECT COUNT(*) FROM certification_summary{clause}", params).fetchone()[0]
        rows = cur.execute(f"SELECT {', '.join(cols)} FROM certification_summary{clause} ORDER BY initiated_at DESC, case_id LIMIT ? OFFSET ?",
                           [*params, limit, offset]).fetchall()
    return {"items": [dict(zip(cols, r)) for r in rows], "total": total}


LOOKUP_COLUMNS = ("case_id", "case_number", "authorization_number", "ordering_npi", "site_npi", "status", "approved_at", "service",
                  "site_name", "expiration_date", "last_updated", "correspondence_count")


def lookup(db: Database, *, authorization_number: str | None = None, npi: str | None = None, member_id: str | None = None,
           dob: str | None = None, last_name: str | None = None) -> list[dict]:
    if authorization_number and npi:
        sql = "authorization_number = ? AND (ordering_npi = ? OR site_npi = ?)"
        params: list[Any] = [authorization_number, npi, npi]
    elif member_id and dob and last_name:
        sql = "member_id = ? AND member_dob = ? AND member_last_lc = ?"
        params = [member_id, dob, last_name.lower()]
    else:
        raise InvalidInput(FieldError("query", "give authorization_number and npi, or member_id, dob and last_name"))
    with db.transaction() as cur:
        rows = cur.execute(f"SELECT {', '.join(LOOKUP_COLUMNS)} FROM authorization_lookup WHERE {sql} ORDER BY last_updated DESC LIMIT 50", params).fetchall()
    return [dict(zip(LOOKUP_COLUMNS, r)) for r in rows]


def review_queue(db: Database, now: datetime, *, page: int = 1, page_size: int = 100) -> dict:
    limit, offset = _page(page, page_size)
    with db.transaction() as cur:
        total = cur.execute("SELECT COUNT(*) FROM review_queue").fetchone()[0]
        rows = cur.execute(
            "SELECT case_id, case_number, status, urgent, decision_due_at, hold_due_at, decision_warning_at, policy FROM review_queue"
            " ORDER BY urgent DESC, decision_due_at ASC, case_id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
    stamp = now.isoformat()
    items = [{
        "case_id": r[0], "case_number": r[1], "status": r[2], "urgent": bool(r[3]), "decision_due_at": r[4], "hold_due_at": r[5],
        "at_risk": r[6] <= stamp < r[4], "overdue": r[4] <= stamp, "policy": r[7],
    } for r in rows]
    return {"items": items, "total": total}


def _hours(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 3600


def _ratio(numerator: int, denominator: int) -> dict:
    return {"numerator": numerator, "denominator": denominator, "percent": round(100 * numerator / denominator, 2) if denominator else None}


def prior_authorization_metrics(db: Database, *, start: str | None = None, end: str | None = None, policy: str | None = None,
                                partial_counts_as: str = "denied") -> dict:
    """CMS-0057-F figures over requests decided in [start, end), each with numerator and denominator."""
    if partial_counts_as not in ("approved", "denied"):
        raise InvalidInput(FieldError("partial_counts_as", "approved or denied"))
    where, params = ["decided_at IS NOT NULL"], []
    if start:
        where.append("decided_at >= ?")
        params.append(start)
    if end:
        where.append("decided_at < ?")
        params.append(end)
    if policy:
        where.append("policy = ?")
        params.append(policy)
    with db.transaction() as cur:
        rows = cur.execute(
            f"SELECT urgent, received_at, decided_at, notified_at, outcome, extended, appealed, appeal_outcome, final_outcome FROM pa_requests WHERE {' AND '.join(where)}",
            params).fetchall()
    approved_set = {"approved"} | ({"partially_approved"} if partial_counts_as == "approved" else set())

    def figures(subset: list[tuple]) -> dict:
        times = [_hours(r[1], r[2]) for r in subset]
        notified = [_hours(r[1], r[3]) for r in subset if r[3]]
        return {
            "decided": len(subset),
            "approved": _ratio(sum(r[4] in approved_set for r in subset), len(subset)),
            "denied": _ratio(sum(r[4] not in approved_set for r in subset), len(subset)),
            "average_hours_to_decision": round(statistics.fmean(times), 2) if times else None,
            "median_hours_to_decision": round(statistics.median(times), 2) if times else None,
            "average_hours_to_notification": round(statistics.fmean(notified), 2) if notified else None,
        }

    standard = [r for r in rows if not r[0]]
    expedited = [r for r in rows if r[0]]
    appealed = [r for r in standard if r[6]]
    overturned = {"overturned"} | ({"partially_overturned"} if partial_counts_as == "approved" else set())
    return {
        "period": {"from": start, "to": end, "policy": policy, "partial_approvals_count_as": partial_counts_as},
        "standard": figures(standard),
        "expedited": figures(expedited),
        "standard_approved_after_appeal": _ratio(sum(r[7] in overturned for r in appealed), len(appealed)),
        "extended_then_approved": _ratio(sum(bool(r[5]) and r[8] in approved_set for r in rows), len(rows)),
    }
