"""The operations board: the read model behind the dashboard an operations lead keeps open.

- ``board_open``: every open case (pending or held) with its clocks, what a hold asked for, the
  policy row and line of business that set its decision deadline, and any timeframe extension;
- ``board_p2p``: every peer-to-peer appointment, by slot;
- ``board_cases``: one row per submitted case with its decision facts (the CMS-0057-F inputs), from
  which ``board_weekly`` (counters per decision week, policy and standard/expedited) and
  ``board_hours`` (a histogram of hours to decision, for medians) are kept by difference: when an
  event changes a case's facts, its old contribution is taken off and the new one added, so every
  figure by week and policy is a read of a few hundred rows whatever the size of the store.

Weeks start on Monday, in the time zone of the case's policy row, and a request counts in the
week it was decided (as ``GET /metrics/prior-authorization`` filters by the decision instant)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson

from domain.policy import policy_version
from projections.base import Projection, ReadStore, page_window
from projections.facts import STATUS_EVENTS, status_after
from projections.records import EventRecord
from projections.rows import Rows, Table

OPEN = ("pending", "held")
COUNTERS = (
    "decided",
    "approved",
    "partial",
    "seconds",
    "auto",
    "extended",
    "extended_approved",
    "extended_partial",
    "appealed",
    "appeal_decided",
    "overturned",
    "partially_overturned",
)
DECISION_EVENTS = frozenset(
    {
        "DecisionTimeframeExtended",
        "CaseDetermined",
        "CaseAutoApproved",
        "AlternativeRecommendationAccepted",
        "ReconsiderationDecided",
        "AppealFiled",
        "AppealDecided",
    }
)
CASE_FACTS = (
    "case_id",
    "case_number",
    "policy",
    "policy_version",
    "urgent",
    "received_at",
    "decided_at",
    "week",
    "seconds",
    "outcome",
    "auto",
    "extended",
    "appealed",
    "appeal_outcome",
    "final_outcome",
)


OPEN_ROWS = Table("board_open", (
    "case_id", "case_number", "status", "urgent", "policy", "policy_version", "line_of_business", "received_at",
    "decision_due_at", "decision_warning_at", "hold_due_at", "held_at", "hold_items", "extension_days", "extension_reason"))
P2P_ROWS = Table("board_p2p", ("p2p_id", "case_id", "case_number", "policy", "level", "slot", "reviewer", "status", "outcome"),
                 keys=("p2p_id", "case_id"))
CASE_ROWS = Table("board_cases", CASE_FACTS)
WEEKLY = Table("board_weekly", ("week", "policy", "urgent", *COUNTERS), keys=("week", "policy", "urgent"), case="",
               counters=COUNTERS)
HOURS = Table("board_hours", ("week", "policy", "urgent", "minutes", "n"), keys=("week", "policy", "urgent", "minutes"),
              case="", counters=("n",))


def _utc(instant: datetime) -> str:
    """An instant as the events store it (UTC ISO 8601), so text comparisons order it right."""
    return instant.astimezone(timezone.utc).isoformat()


def hours_bucket(hours: float) -> int:
    """The histogram bucket of a time to decision, as its lower bound in minutes: 6-minute steps
    under a day, 30-minute steps under a week, 2-hour steps beyond."""
    minutes = max(0.0, hours * 60)
    step = 6 if minutes < 24 * 60 else 30 if minutes < 7 * 24 * 60 else 120
    return int(minutes // step) * step


def bucket_width(lower_minutes: int) -> int:
    return 6 if lower_minutes < 24 * 60 else 30 if lower_minutes < 7 * 24 * 60 else 120


def week_of(instant: str, tz: str) -> str:
    """The Monday (ISO date) of the week holding ``instant`` in the time zone ``tz``."""
    local = datetime.fromisoformat(instant).astimezone(ZoneInfo(tz)).date()
    return (local - timedelta(days=local.weekday())).isoformat()


class Board(Projection):
    name = "board"
    row_tables = (OPEN_ROWS, P2P_ROWS, CASE_ROWS, WEEKLY, HOURS)
    handles = DECISION_EVENTS | STATUS_EVENTS | {
        "CaseSubmitted", "CaseHeld", "HoldReleased", "HoldLapsed", "DecisionTimeframeExtended", "P2PScheduled",
        "P2PRescheduled", "P2PCancelled", "P2PCompleted", "P2PSlotMissed"}
    tables = ("board_open", "board_p2p", "board_cases", "board_weekly", "board_hours")
    schema = (
        "CREATE TABLE IF NOT EXISTS board_open (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL,"
        " status TEXT NOT NULL, urgent INTEGER NOT NULL, policy TEXT NOT NULL, policy_version INTEGER NOT NULL,"
        " line_of_business TEXT NOT NULL, received_at TEXT NOT NULL, decision_due_at TEXT NOT NULL,"
        " decision_warning_at TEXT NOT NULL, hold_due_at TEXT,"
        " held_at TEXT, hold_items TEXT, extension_days INTEGER NOT NULL, extension_reason TEXT)",
        "CREATE TABLE IF NOT EXISTS board_p2p (p2p_id TEXT NOT NULL, case_id TEXT NOT NULL, case_number TEXT NOT NULL,"
        " policy TEXT NOT NULL, level TEXT NOT NULL, slot TEXT NOT NULL, reviewer TEXT NOT NULL, status TEXT NOT NULL,"
        " outcome TEXT, PRIMARY KEY (p2p_id, case_id))",
        "CREATE TABLE IF NOT EXISTS board_cases (case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL,"
        " policy TEXT NOT NULL, policy_version INTEGER NOT NULL, urgent INTEGER NOT NULL, received_at TEXT NOT NULL,"
        " decided_at TEXT, week TEXT,"
        " seconds BIGINT, outcome TEXT, auto INTEGER NOT NULL, extended INTEGER NOT NULL, appealed INTEGER NOT NULL,"
        " appeal_outcome TEXT, final_outcome TEXT)",
        "CREATE TABLE IF NOT EXISTS board_weekly (week TEXT NOT NULL, policy TEXT NOT NULL, urgent INTEGER NOT NULL, "
        + ", ".join(f"{c} BIGINT NOT NULL" for c in COUNTERS)
        + ", PRIMARY KEY (week, policy, urgent))",
        "CREATE TABLE IF NOT EXISTS board_hours (week TEXT NOT NULL, policy TEXT NOT NULL, urgent INTEGER NOT NULL,"
        " minutes INTEGER NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (week, policy, urgent, minutes))",
        "CREATE INDEX IF NOT EXISTS board_open_urgent_due ON board_open (urgent DESC, decision_due_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_due ON board_open (decision_due_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_warning ON board_open (decision_warning_at)",
        "CREATE INDEX IF NOT EXISTS board_open_received ON board_open (received_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_number ON board_open (case_number, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_policy ON board_open (policy, urgent DESC, decision_due_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_held ON board_open (status, hold_due_at, case_id)",
        # the held cases in each order the queue offers, and their ages, from an index alone
        "CREATE INDEX IF NOT EXISTS board_open_status_urgent"
        " ON board_open (status, urgent DESC, decision_due_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_status_due ON board_open (status, decision_due_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_status_received ON board_open (status, received_at, case_id)",
        "CREATE INDEX IF NOT EXISTS board_open_status_number ON board_open (status, case_number, case_id)",
        "CREATE INDEX IF NOT EXISTS board_p2p_slot ON board_p2p (slot)",
    )

    def fold(self, rows: Rows, event: EventRecord) -> None:
        d, case_id, kind = event["data"], event["case_id"], event["type"]
        key = (case_id,)
        if kind in DECISION_EVENTS:
            self._decision_facts(rows, event)
        match kind:
            case "CaseSubmitted":
                rows.put(
                    OPEN_ROWS,
                    {
                        "case_id": case_id,
                        "case_number": d["case_number"],
                        "status": "pending",
                        "urgent": int(d["urgent"]),
                        "policy": d["policy"],
                        "policy_version": d["policy_version"],
                        "line_of_business": d["line_of_business"],
                        "received_at": d["received_at"],
                        "decision_due_at": d["decision_due_at"],
                        "decision_warning_at": d["decision_warning_at"],
                        "hold_due_at": None,
                        "held_at": None,
                        "hold_items": None,
                        "extension_days": 0,
                        "extension_reason": None,
                    },
                )
                rows.put(
                    CASE_ROWS,
                    {
                        "case_id": case_id,
                        "case_number": d["case_number"],
                        "policy": d["policy"],
                        "policy_version": d["policy_version"],
                        "urgent": int(d["urgent"]),
                        "received_at": d["received_at"],
                        "decided_at": None,
                        "week": None,
                        "seconds": None,
                        "outcome": None,
                        "auto": 0,
                        "extended": 0,
                        "appealed": 0,
                        "appeal_outcome": None,
                        "final_outcome": None,
                    },
                )
            case "CaseHeld":
                rows.update(
                    OPEN_ROWS,
                    key,
                    {
                        "status": "held",
                        "hold_due_at": d["due_at"],
                        "held_at": event["occurred_at"],
                        "hold_items": orjson.dumps(d["requested_items"]).decode(),
                    },
                )
            case "HoldReleased" | "HoldLapsed":
                rows.update(OPEN_ROWS, key, {"status": "pending", "hold_due_at": None, "held_at": None, "hold_items": None})
            case "DecisionTimeframeExtended":
                rows.update(
                    OPEN_ROWS,
                    key,
                    {"decision_due_at": d["decision_due_at"], "decision_warning_at": d["decision_warning_at"],
                     "extension_reason": d["reason"]},
                    add={"extension_days": d["days"]},
                )
            case "P2PScheduled":
                found = rows.get(CASE_ROWS, key)
                number, policy = (found["case_number"], found["policy"]) if found else ("", "")
                rows.put(
                    P2P_ROWS,
                    {
                        "p2p_id": d["p2p_id"],
                        "case_id": case_id,
                        "case_number": number,
                        "policy": policy,
                        "level": d["level"],
                        "slot": d["slot"],
                        "reviewer": d["reviewer"],
                        "status": "scheduled",
                        "outcome": None,
                    },
                )
            case "P2PRescheduled":
                rows.update(P2P_ROWS, (d["p2p_id"], case_id), {"slot": d["slot"]})
            case "P2PCancelled":
                rows.update(P2P_ROWS, (d["p2p_id"], case_id), {"status": "cancelled", "outcome": d["reason"]})
            case "P2PCompleted":
                rows.update(P2P_ROWS, (d["p2p_id"], case_id), {"status": "completed", "outcome": d["outcome"]})
            case "P2PSlotMissed":
                rows.update(P2P_ROWS, (d["p2p_id"], case_id), {"status": "missed"})
            case _:
                status = status_after(event)
                if status and status not in OPEN:
                    rows.delete(OPEN_ROWS, key)

    # ---- the decision facts, kept by difference ------------------------------------------------

    def _decision_facts(self, rows: Rows, event: EventRecord) -> None:
        found = rows.get(CASE_ROWS, (event["case_id"],))
        if found is None:
            return
        before = {k: found[k] for k in CASE_FACTS}
        after = dict(before)
        d, at = event["data"], event["occurred_at"]
        match event["type"]:
            case "DecisionTimeframeExtended":
                after["extended"] = 1
            case "CaseDetermined" | "CaseAutoApproved":
                outcome = d.get("outcome", "approved")
                tz = policy_version(before["policy"], before["policy_version"]).timezone
                taken = datetime.fromisoformat(at) - datetime.fromisoformat(before["received_at"])
                after.update(
                    decided_at=at,
                    week=week_of(at, tz),
                    seconds=int(taken.total_seconds()),
                    outcome=outcome,
                    final_outcome=outcome,
                    auto=int(event["type"] == "CaseAutoApproved"),
                )
            case "AlternativeRecommendationAccepted":
                after["final_outcome"] = "approved"
            case "ReconsiderationDecided":
                after["final_outcome"] = d["outcome"]
            case "AppealFiled":
                after["appealed"] = 1
            case "AppealDecided":
                after["appeal_outcome"] = d["outcome"]
                final = {"overturned": "approved", "partially_overturned": "partially_approved"}.get(d["outcome"])
                if final:
                    after["final_outcome"] = final
        if after == before:
            return
        changed = {k: v for k, v in after.items() if before[k] != v}
        rows.update(CASE_ROWS, (event["case_id"],), changed)
        old, new = _contribution(before), _contribution(after)
        for sign, part in ((-1, old), (1, new)):
            if part is None:
                continue
            key, counters, bucket = part
            rows.tally(WEEKLY, key, [sign * counters[c] for c in COUNTERS])
            rows.tally(HOURS, (*key, bucket), (sign,))


def _contribution(facts: dict) -> tuple[tuple, dict, int] | None:
    """What one case adds to the counters of its decision week, policy and kind, or None undecided."""
    if facts["decided_at"] is None:
        return None
    final, appeal = facts["final_outcome"], facts["appeal_outcome"]
    extended = bool(facts["extended"])
    counters = {
        "decided": 1,
        "approved": int(facts["outcome"] == "approved"),
        "partial": int(facts["outcome"] == "partially_approved"),
        "seconds": int(facts["seconds"]),
        "auto": int(facts["auto"]),
        "extended": int(extended),
        "extended_approved": int(extended and final == "approved"),
        "extended_partial": int(extended and final == "partially_approved"),
        "appealed": int(facts["appealed"]),
        "appeal_decided": int(appeal is not None),
        "overturned": int(appeal == "overturned"),
        "partially_overturned": int(appeal == "partially_overturned"),
    }
    return (facts["week"], facts["policy"], int(facts["urgent"])), counters, hours_bucket(int(facts["seconds"]) / 3600)


# ---- queries ------------------------------------------------------------------------------

OPEN_COLUMNS = (
    "case_id",
    "case_number",
    "status",
    "urgent",
    "policy",
    "policy_version",
    "line_of_business",
    "received_at",
    "decision_due_at",
    "decision_warning_at",
    "hold_due_at",
    "held_at",
    "hold_items",
    "extension_days",
    "extension_reason",
)
QUEUE_SORTS = {
    "urgent": "urgent DESC, decision_due_at ASC, case_id ASC",
    "due": "decision_due_at ASC, case_id ASC",
    "-due": "decision_due_at DESC, case_id DESC",
    "received": "received_at ASC, case_id ASC",
    "-received": "received_at DESC, case_id DESC",
    "case": "case_number ASC",
    "-case": "case_number DESC",
    "policy": "policy ASC, urgent DESC, decision_due_at ASC, case_id ASC",
}
QUEUE_FLAGS = ("all", "urgent", "at_risk", "overdue", "held")


def _open_row(r: tuple, stamp: str) -> dict:
    row = dict(zip(OPEN_COLUMNS, r))
    row["urgent"] = bool(row["urgent"])
    row["hold_items"] = orjson.loads(row["hold_items"]) if row["hold_items"] else []
    row["overdue"] = row["decision_due_at"] <= stamp
    row["at_risk"] = row["decision_warning_at"] <= stamp < row["decision_due_at"]
    return row


def open_cases(
    db: ReadStore,
    now: datetime,
    *,
    sort: str = "urgent",
    flag: str = "all",
    policy: str | None = None,
    page: int = 1,
    page_size: int = 25,
) -> dict:
    """A page of the open cases (the review queue), each with its clocks and the facts that set its
    deadline; ``flag`` narrows to urgent, at-risk, overdue or held cases."""
    limit, offset = page_window(page, page_size)
    order = QUEUE_SORTS.get(sort, QUEUE_SORTS["urgent"])
    stamp = _utc(now)
    where, params = [], []
    if policy:
        where.append("policy = ?")
        params.append(policy)
    if flag == "urgent":
        where.append("urgent = 1")
    elif flag == "overdue":
        where.append("decision_due_at <= ?")
        params.append(stamp)
    elif flag == "at_risk":
        # "+": the due range (a few cases at any time) leads, not the warning range (every warned case)
        where.append(f"{'+' if db.dialect == 'sqlite' else ''}decision_warning_at <= ? AND decision_due_at > ?")
        params += [stamp, stamp]
        if db.dialect == "sqlite":  # the due range (a few cases) leads, not a walk of an ordering index
            order = ", ".join(f"+{term}" for term in order.split(", "))
    elif flag == "held":
        where.append("status = 'held'")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with db.transaction() as cur:
        total = cur.execute(f"SELECT COUNT(*) FROM board_open{clause}", params).fetchone()[0]
        # the page's keys first (an index alone serves them, or a sort of keys only), then its rows
        ids = [r[0] for r in cur.execute(f"SELECT case_id FROM board_open{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                                         [*params, limit, offset]).fetchall()]
        rows = cur.execute(f"SELECT {', '.join(OPEN_COLUMNS)} FROM board_open WHERE case_id IN"
                           f" ({', '.join('?' for _ in ids)})", ids).fetchall() if ids else []
    place = {case_id: i for i, case_id in enumerate(ids)}
    rows.sort(key=lambda r: place[r[0]])
    return {"items": [_open_row(r, stamp) for r in rows], "total": int(total)}


def open_counts(db: ReadStore, now: datetime) -> dict:
    """How many open cases, urgent, at risk, overdue and held, each an index range."""
    stamp = _utc(now)
    with db.transaction() as cur:
        one = lambda sql, *p: int(cur.execute(sql, p).fetchone()[0])  # noqa: E731
        total = one("SELECT COUNT(*) FROM board_open")
        urgent = one("SELECT COUNT(*) FROM board_open WHERE urgent = 1")
        overdue = one("SELECT COUNT(*) FROM board_open WHERE decision_due_at <= ?", stamp)
        warned = one("SELECT COUNT(*) FROM board_open WHERE decision_warning_at <= ?", stamp)
        held = one("SELECT COUNT(*) FROM board_open WHERE status = 'held'")
    # the warning instant is always before the due instant: every overdue case was warned
    return {"open": total, "urgent": urgent, "overdue": overdue, "at_risk": max(0, warned - overdue), "held": held}


def held_cases(db: ReadStore, now: datetime, *, page: int = 1, page_size: int = 25) -> dict:
    """Held cases, the soonest hold due first, with what was requested."""
    limit, offset = page_window(page, page_size)
    stamp = _utc(now)
    with db.transaction() as cur:
        total = cur.execute("SELECT COUNT(*) FROM board_open WHERE status = 'held'").fetchone()[0]
        rows = cur.execute(
            f"SELECT {', '.join(OPEN_COLUMNS)} FROM board_open WHERE status = 'held'"
            " ORDER BY hold_due_at ASC, case_id ASC LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
    return {"items": [_open_row(r, stamp) for r in rows], "total": int(total)}


def p2p_between(db: ReadStore, start: datetime, end: datetime, *, limit: int = 200) -> list[dict]:
    """P2P appointments with a slot in [start, end), in slot order."""
    cols = ("p2p_id", "case_id", "case_number", "policy", "level", "slot", "reviewer", "status", "outcome")
    with db.transaction() as cur:
        rows = cur.execute(
            f"SELECT {', '.join(cols)} FROM board_p2p WHERE slot >= ? AND slot < ? ORDER BY slot, case_number LIMIT ?",
            (_utc(start), _utc(end), limit),
        ).fetchall()
    return [dict(zip(cols, r)) for r in rows]


def aging(db: ReadStore, now: datetime, *, policy: str | None = None) -> dict:
    """Outstanding (open) requests by status and by age since receipt: under 1 day, 1-3, 3-7, 7-14,
    14 days or more. Unfiltered, each figure is a range of the (status, received_at) index."""
    edges = [_utc(now - timedelta(days=d)) for d in (1, 3, 7, 14)]
    labels = ["< 1 day", "1-3 days", "3-7 days", "7-14 days", ">= 14 days"]
    table = {status: [0] * 5 for status in OPEN}
    with db.transaction() as cur:
        if policy:
            cases = (
                "CASE WHEN received_at > ? THEN 0 WHEN received_at > ? THEN 1 WHEN received_at > ? THEN 2"
                " WHEN received_at > ? THEN 3 ELSE 4 END"
            )
            rows = cur.execute(f"SELECT status, {cases} AS age, COUNT(*) FROM board_open WHERE policy = ?"
                               " GROUP BY status, age", [*edges, policy]).fetchall()
            for status, age, n in rows:
                table.setdefault(status, [0] * 5)[int(age)] += int(n)
            oldest = cur.execute("SELECT MIN(received_at) FROM board_open WHERE policy = ?", [policy]).fetchone()[0]
        else:
            for status in OPEN:
                newer = [int(cur.execute("SELECT COUNT(*) FROM board_open WHERE status = ? AND received_at > ?",
                                         (status, edge)).fetchone()[0]) for edge in edges]
                every = int(cur.execute("SELECT COUNT(*) FROM board_open WHERE status = ?", (status,)).fetchone()[0])
                bounds = [0, *newer, every]
                table[status] = [bounds[k + 1] - bounds[k] for k in range(5)]
            oldest = cur.execute("SELECT MIN(received_at) FROM board_open").fetchone()[0]
    return {
        "labels": labels,
        "by_status": table,
        "total": sum(sum(v) for v in table.values()),
        "oldest_received_at": oldest,
    }


def weekly_figures(db: ReadStore, *, start: date, end: date, policy: str | None = None) -> list[dict]:
    """Counters per decision week in [start, end] (Mondays) and kind (standard or expedited), with the
    median hours to decision from the histogram."""
    where, params = "week >= ? AND week <= ?", [start.isoformat(), end.isoformat()]
    if policy:
        where += " AND policy = ?"
        params.append(policy)
    with db.transaction() as cur:
        rows = cur.execute(
            f"SELECT week, urgent, {', '.join(f'SUM({c})' for c in COUNTERS)} FROM board_weekly WHERE {where}"
            " GROUP BY week, urgent",
            params,
        ).fetchall()
        hist = cur.execute(
            f"SELECT week, urgent, minutes, SUM(n) FROM board_hours WHERE {where}"
            " GROUP BY week, urgent, minutes ORDER BY week, urgent, minutes",
            params,
        ).fetchall()
    medians = _medians({(w, u): [] for w, u, *_ in rows}, hist)
    return [
        {
            "week": r[0],
            "urgent": bool(r[1]),
            **dict(zip(COUNTERS, (int(v or 0) for v in r[2:]))),
            "median_hours": medians.get((r[0], r[1])),
        }
        for r in rows
    ]


def medians_by_kind(db: ReadStore, *, start: date, end: date, policy: str | None = None) -> dict[bool, float]:
    """The median hours to decision over the weeks in [start, end], standard (False) and expedited (True)."""
    where, params = "week >= ? AND week <= ?", [start.isoformat(), end.isoformat()]
    if policy:
        where += " AND policy = ?"
        params.append(policy)
    with db.transaction() as cur:
        hist = cur.execute(
            f"SELECT 0, urgent, minutes, SUM(n) FROM board_hours WHERE {where}"
            " GROUP BY urgent, minutes ORDER BY urgent, minutes",
            params,
        ).fetchall()
    return {bool(urgent): median for (_, urgent), median in _medians({}, hist).items()}


def policy_figures(db: ReadStore, *, start: date, end: date) -> list[dict]:
    """Counters per policy and kind over the decision weeks in [start, end], with medians."""
    params = [start.isoformat(), end.isoformat()]
    with db.transaction() as cur:
        rows = cur.execute(
            f"SELECT policy, urgent, {', '.join(f'SUM({c})' for c in COUNTERS)} FROM board_weekly"
            " WHERE week >= ? AND week <= ? GROUP BY policy, urgent",
            params,
        ).fetchall()
        hist = cur.execute(
            "SELECT policy, urgent, minutes, SUM(n) FROM board_hours WHERE week >= ? AND week <= ?"
            " GROUP BY policy, urgent, minutes ORDER BY policy, urgent, minutes",
            params,
        ).fetchall()
    medians = _medians({}, hist)
    return [
        {
            "policy": r[0],
            "urgent": bool(r[1]),
            **dict(zip(COUNTERS, (int(v or 0) for v in r[2:]))),
            "median_hours": medians.get((r[0], r[1])),
        }
        for r in rows
    ]


def _medians(groups: dict, hist: list[tuple]) -> dict:
    """The median (hours) of each group's histogram, to the bucket's midpoint."""
    counts: dict[tuple, list[tuple[int, int]]] = {}
    for a, b, minutes, n in hist:
        if int(n) > 0:
            counts.setdefault((a, b), []).append((int(minutes), int(n)))
    out = {}
    for key, buckets in counts.items():
        total = sum(n for _, n in buckets)
        middle, seen = (total + 1) / 2, 0
        for minutes, n in buckets:
            seen += n
            if seen >= middle:
                out[key] = round((minutes + bucket_width(minutes) / 2) / 60, 2)
                break
    return out
