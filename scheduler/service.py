"""Turns due instants into events, exactly once, even across crashes.

The deadlines live in the store (the ``deadlines`` projection). APScheduler 3 only wakes us
up: one date job per upcoming deadline, id ``case:{id}:{kind}:{instant}``, with
``misfire_grace_time=None`` (its default of 1 s silently drops a late job) and
``coalesce=True``. Every wake-up fires *everything* due, in due order, through the
application; the aggregate refuses a second firing, so a double wake-up or two racing
schedulers record nothing twice. On start, whatever became due while we were down fires
at once, in due order. With the manual clock there is no timer: advancing the clock calls
``fire_due``.

A deadline that cannot be fired (its event refused, the store failing) is not tried at every
wake-up: it waits RETRY_FIRST after its first failure, twice as long after each one after it, at
most RETRY_MOST, while every other deadline fires (its timer job is set for its retry, so a
deadline failing for good costs a log line per retry, not a hot loop). Kept in memory: a restart
tries it at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from domain.errors import RuleViolation, VersionConflict
from infra.settings import private
from infra.store.runner import ProjectionRunner
from scheduler.deadlines import due

log = logging.getLogger("caselog.scheduler")
UTC = timezone.utc
ADVISORY_LOCK_KEY = 0x43A5E106  # "caselog scheduler"
FIRE_TOGETHER = 100  # due deadlines of distinct cases fired in one transaction
DUE_PAGE = 1000  # due deadlines read at a time, besides those already tried or waiting for a retry
SYNC_WINDOW = 10_000  # upcoming deadlines given a timer job at each sync, besides those waiting for a retry
RETRY_FIRST = timedelta(seconds=1)  # a deadline that failed is tried again after this, then twice as long
RETRY_MOST = timedelta(minutes=5)  # each time, up to this

Deadline = tuple[str, str, str, str]  # case_id, kind, instant, p2p_id as the deadlines table holds them


@dataclass(frozen=True)
class Retry:
    """A deadline whose firing failed ``failures`` times in a row: not tried again before ``at``."""

    failures: int
    at: datetime

    def after(self, now: datetime) -> "Retry":
        """The retry after one more failure at ``now``."""
        doublings = min(self.failures, 20)  # (RETRY_FIRST * 2**20 is past RETRY_MOST; no overflow however many)
        return Retry(self.failures + 1, now + min(RETRY_MOST, RETRY_FIRST * 2 ** doublings))


def runs(rows: list[tuple], most: int) -> Iterator[list[tuple]]:
    """Due rows (fire_at, case_id, ...) cut, in due order, into runs of at most ``most`` rows of
    distinct cases: a case's next deadline starts the next run (it is decided on the case as its
    earlier one left it), so the events keep due order in the store."""
    run: list[tuple] = []
    cases: set[str] = set()
    for row in rows:
        if row[1] in cases or len(run) == most:
            yield run
            run, cases = [], set()
        run.append(row)
        cases.add(row[1])
    if run:
        yield run


class DeadlineScheduler:
    def __init__(self, app: Any, runner: ProjectionRunner, *, horizon: timedelta = timedelta(minutes=10), sync_seconds: float = 0.5):
        self.app = app
        self.runner = runner
        self.db = runner.db
        self.clock = app.clock
        self.horizon = horizon
        self.sync_seconds = sync_seconds
        self.fired = 0
        self._fire_lock = threading.Lock()
        self._timer = None
        self._retries: dict[Deadline, Retry] = {}
        # APScheduler 3's shutdown(wait=True) holds its job stores' lock while it waits for running
        # jobs, and the sync job takes that lock (get_job, add_job): a sync running at a stop would wait
        # for the stop and the stop for it. The stop waits for a sync to finish first, and no sync
        # starts after it.
        self._sync_lock = threading.Lock()
        self._stopping = False

    @property
    def failing(self) -> int:
        """Deadlines whose last firing failed, waiting for their retry."""
        return len(self._retries)

    def _waiting(self, deadline: Deadline, now: datetime) -> bool:
        retry = self._retries.get(deadline)
        return retry is not None and retry.at > now

    # ---- firing ----------------------------------------------------------------------------

    def fire_due(self) -> int:
        """Fire every deadline due at the clock's now, in due order; returns how many events."""
        with self._fire_lock:
            attempted: set[tuple[str, str, str, str]] = set()
            fired, failed = self.fired, None
            while True:
                self.runner.catch_up(["deadlines"])
                now = self.clock.now()
                skipped = len(attempted) + len(self._retries)  # at most this many rows of a page are not tried
                with self.db.transaction() as cur:
                    page = due(cur, now.isoformat(), limit=DUE_PAGE + skipped)
                if len(page) < DUE_PAGE + skipped:  # every due deadline: forget the retries of those gone
                    for key in self._retries.keys() - {tuple(r[1:]) for r in page}:
                        del self._retries[key]
                rows = [r for r in page if (key := tuple(r[1:])) not in attempted and not self._waiting(key, now)]
                if not rows:
                    if failed is not None:
                        raise failed  # after every other due deadline fired; this one is retried later (Retry)
                    return self.fired - fired
                for run in runs(rows, FIRE_TOGETHER):
                    keys = [tuple(r[1:]) for r in run]
                    attempted.update(keys)
                    deadlines = [(kind, case_id, datetime.fromisoformat(instant), p2p_id or None)
                                 for _, case_id, kind, instant, p2p_id in run]
                    try:
                        self.fired += self.app.fire_deadlines(deadlines)
                    except Exception:  # noqa: BLE001 - a case changed meanwhile (a racing scheduler?), or one
                        # the run cannot fire (its event refused, say): each alone, so that one case's error
                        # stops no other case's deadline
                        for key, deadline in zip(keys, deadlines):
                            try:
                                self.fired += self._fire_alone(*deadline)
                            except Exception as exc:  # noqa: BLE001 - raised once the rest are fired
                                failed_at = self.clock.now()  # (the wait counts from the failure, not the page read)
                                retry = self._retries.get(key, Retry(0, failed_at)).after(failed_at)
                                self._retries[key] = retry
                                log.error("deadline %s %s %s could not be fired (%d in a row; next try at %s): %r",
                                          *deadline[:3], retry.failures, retry.at.isoformat(), exc)
                                failed = failed or exc
                            else:
                                self._retries.pop(key, None)
                    else:
                        for key in keys:
                            self._retries.pop(key, None)

    def _fire_alone(self, kind: str, case_id: str, instant: datetime, p2p_id: str | None) -> bool:
        try:
            self.app.fire_deadline(kind, case_id, instant, p2p_id)
            return True
        except (RuleViolation, VersionConflict) as exc:
            # already fired (by us before a crash, or by a racing scheduler) or made moot
            log.debug("deadline %s %s %s not fired: %s", kind, case_id, instant, exc)
            return False

    # ---- timing (real clock) ---------------------------------------------------------------

    def start(self) -> None:
        """Fire what became due while down, then keep APScheduler jobs for upcoming deadlines."""
        from apscheduler.schedulers.background import BackgroundScheduler

        self._wake()  # a deadline that cannot be fired is logged and must not keep the scheduler from starting
        self._timer = BackgroundScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1})
        self._timer.add_job(self.sync, "interval", seconds=self.sync_seconds, id="sync", next_run_time=datetime.now(UTC))
        self._timer.start()

    def sync(self) -> None:
        """Catch up the deadline projection and add a date job per deadline in the horizon."""
        with self._sync_lock:
            if self._stopping:
                return
            self.runner.catch_up(["deadlines"])
            until = (self.clock.now() + self.horizon).isoformat()
            with self.db.transaction() as cur:  # (past those waiting for a retry, which may all come first)
                rows = due(cur, until, limit=SYNC_WINDOW + len(self._retries))
            for fire_at, case_id, kind, instant, p2p_id in rows:
                job_id = f"case:{case_id}:{kind}:{instant}" + (f":{p2p_id}" if p2p_id else "")
                if self._timer.get_job(job_id) is None:
                    run_date = datetime.fromisoformat(fire_at)
                    if (retry := self._retries.get((case_id, kind, instant, p2p_id))) is not None:
                        run_date = max(run_date, retry.at)  # not before its retry
                    self._timer.add_job(self._wake, "date", run_date=run_date, id=job_id,
                                        misfire_grace_time=None, coalesce=True, replace_existing=True)

    def _wake(self) -> None:
        try:
            self.fire_due()
        except Exception:  # noqa: BLE001 - a failed wake-up is retried by the next one
            log.exception("firing deadlines failed; the next wake-up retries")

    def stop(self) -> None:
        """Stop the timer once the jobs running have finished (a wake-up fires what it took)."""
        if self._timer is not None:
            with self._sync_lock:  # a sync running finishes first; none runs after
                self._stopping = True
            try:
                self._timer.shutdown(wait=True)
            finally:
                self._timer = None
                self._stopping = False


class Leadership:
    """One active scheduler per store: a PostgreSQL advisory lock, or a file lock next to the
    SQLite store. Held for the life of the process; others wait for it."""

    def __init__(self, db: Any):
        self.db = db
        self._conn = None
        self._file = None

    def try_acquire(self) -> bool:
        if self.db.dialect == "postgres":
            import psycopg

            if self._conn is None:
                self._conn = psycopg.connect(self.db.settings.database_url, autocommit=True)
            return bool(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0])
        path = self.db.settings.data_dir / "scheduler.lock"
        if self._file is None:  # held for the process lifetime; 0600 like everything in the data dir
            self._file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
            private(path)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None
