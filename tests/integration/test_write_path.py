"""The write path (issue 13): a command's events, its new case's number and its idempotency key are
recorded in one transaction, concurrent commands are committed together (group commit), each
answered only once its transaction committed and its events are in the read models."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.case import Case
from domain.context import Context
from domain.errors import DomainError, InvalidInput, VersionConflict
from infra.bootstrap import bootstrap
from infra.demo.samples import PROVIDER_NPI
from infra.kafka.message import published_size, size_within
from infra.settings import Settings
from infra.store.database import events_table, immediate
from infra.store.eventstore import Batch
from infra.store.writer import Unit, Writer
from projections.case_owners import owners_of
from tests.support import DME, MD, PROVIDER, WELLSENSE, event_types, later, recorded, request, submit


def gate_first_batch(writer, queued: int, first: threading.Event | None = None):
    """Hold the writer's first batch until ``queued`` more units wait behind it (``first`` is set
    once it is held); returns the size of every batch recorded."""
    sizes: list[int] = []
    record = writer._record
    first = first or threading.Event()

    def gated(batch):
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 20
            while len(writer._queue) < queued and time.monotonic() < deadline:
                time.sleep(0.005)
        sizes.append(len(batch))
        record(batch)

    writer._record = gated
    return sizes


def run_together(calls) -> list:
    """Each call in its own thread; what each returned or raised."""
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_submissions_are_committed_together_and_each_answer_sees_its_case(system, app):
    sizes = gate_first_batch(system.runner.writer, queued=11)
    seen: dict[str, dict | None] = {}

    def one(i):
        view = app.submit(request(DME, date_of_service=later(app.clock.now(), 5), member_no=100 + i), actor=PROVIDER,
                          key=f"k{i}").view
        seen[view["case_id"]] = owners_of(system.db, view["case_id"])  # no catch-up: the read model already has it
        return view

    views = run_together([lambda i=i: one(i) for i in range(12)])
    assert all(isinstance(v, dict) for v in views), views
    assert len({v["case_number"] for v in views}) == 12
    assert max(sizes) > 1 and sum(sizes) == 12  # the eleven that waited were recorded together
    assert all(owners is not None for owners in seen.values())
    for i, view in enumerate(views):  # each key was recorded with its case: a retry answers as the first call did
        assert app.submit(request(DME, date_of_service=later(app.clock.now(), 5), member_no=100 + i), actor=PROVIDER,
                          key=f"k{i}").view == view


def test_a_command_that_loses_a_race_in_a_batch_is_refused_alone(system, app):
    case = submit(app, WELLSENSE)
    writer, held = system.runner.writer, threading.Event()
    sizes = gate_first_batch(writer, queued=4, first=held)
    flushing = threading.Thread(target=writer.flush)  # the first batch, held until the four below wait
    flushing.start()
    assert held.wait(20)
    version = case["version"]
    results = run_together([
        lambda: app.place_hold(case["case_id"], ["notes"], actor=MD, expected_version=version, key="a"),
        lambda: app.place_hold(case["case_id"], ["x-rays"], actor=MD, expected_version=version, key="b"),
        lambda: submit(app, DME, member_no=7),
        lambda: submit(app, DME, member_no=8),
    ])
    flushing.join(20)
    assert sizes[:2] == [1, 4], sizes  # the four commands in one transaction
    assert sum(isinstance(r, VersionConflict) for r in results[:2]) == 1, results
    assert all(isinstance(r, dict) for r in results[2:]), results
    assert [e["type"] for e in app.history(case["case_id"])["events"]].count("CaseHeld") == 1


def test_a_refused_submission_takes_no_number_and_records_nothing(system, app):
    before = recorded(system)
    bad = request(DME, date_of_service=later(app.clock.now(), 5), member={"id": ""})
    with pytest.raises(InvalidInput):
        app.submit(bad, actor=PROVIDER, key="bad")
    assert recorded(system) == before
    first = submit(app, DME)
    second = submit(app, DME, member_no=2)
    assert int(second["case_number"]) == int(first["case_number"]) + 1  # the refused one's number was issued again


def test_case_numbers_never_repeat_across_processes_and_bulk_loads(store, clock):
    numbers = []
    for _ in range(2):
        s = bootstrap(store, clock=clock)
        try:
            numbers.append(submit(s.app, DME)["case_number"])
            bulk = s.registry.case_numbers([f"00000000-0000-0000-0000-00000000000{len(numbers)}"])
            numbers += list(bulk.values())
            numbers.append(submit(s.app, DME, member_no=2)["case_number"])
        finally:
            s.close()
    assert len(set(numbers)) == len(numbers), numbers


def test_a_failing_projection_keeps_the_events_and_catch_up_raises_until_it_is_fixed(system, app, monkeypatch):
    worklist = next(p for p in system.runner.projections if p.name == "worklist")
    process = worklist.process_event

    def broken(cur, event):
        raise RuntimeError("worklist is broken")

    monkeypatch.setattr(worklist, "process_event", broken)
    view = submit(app, DME)  # recorded: a read model's failure does not refuse a command
    assert app.view(view["case_id"])["version"] == view["version"]
    with pytest.raises(RuntimeError, match="worklist is broken"):
        system.catch_up()
    monkeypatch.setattr(worklist, "process_event", process)
    system.catch_up()
    assert system.runner.position("worklist") == app.max_position()


def test_the_cheap_size_bound_is_never_below_the_published_size(system, app):
    view = submit(app, DME, clinical={"history": [{"note": "é" * 200, "codes": ["G47.33"] * 20}] * 10})
    app.place_hold(view["case_id"], ["sleep study"], actor=MD)
    for n in app.recorder.select_notifications(1, 100):
        assert published_size(n, "default") <= size_within(n, "default", 10**9)


def test_an_answer_waits_for_its_own_events_only_when_its_batch_did_not_apply_them(store, clock, system, app):
    view = app.submit(request(DME, date_of_service=later(clock.now(), 5)), actor=PROVIDER, key="mine")
    assert view.position and system.runner.writer.projected >= view.position  # applied in its own transaction
    other = bootstrap(store, clock=clock)  # another process, recording without applying the read models
    try:
        other.app.recorder.writer = None  # eventsourcing's own insert, as before the writer existed
        theirs = Case.submit(Context(clock.now(), PROVIDER), case_id=uuid4(), case_number="1999999999",
                             request=request(DME, date_of_service=later(clock.now(), 5), member_no=2))
        other.app.save(theirs)
    finally:
        other.close()
    assert owners_of(system.db, str(theirs.id)) is None
    again = app.submit(request(DME, date_of_service=later(clock.now(), 5)), actor=PROVIDER, key="mine")
    assert again.view == view.view and again.position is None  # an earlier answer: nothing recorded now
    system.caught_up_to(again.position)  # not known: caught up with the store, the other process's case included
    assert owners_of(system.db, str(theirs.id)) is not None


def test_a_backlog_written_by_another_process_is_folded_by_the_writer_as_a_replay_would(store, clock, system,
                                                                                       monkeypatch):
    """Events recorded by a process that keeps no read models (CASELOG_PROJECTIONS=workers) reach this
    process's read models through its writer: a backlog of 64 events or more is folded in memory in
    the writer's transaction (Staged rows; on PostgreSQL inside the pipelined transaction) and the
    rows equal a replay's."""
    from dataclasses import replace

    from infra.demo.workload import run_demo
    from tests.integration.test_projections import snapshot

    other = bootstrap(replace(store, projections="workers"), clock=clock)
    try:
        run_demo(other)
    finally:
        other.close()
    backlog = system.app.max_position() - system.runner.position("worklist")
    assert backlog >= 64
    folded = []
    fold = system.runner._fold
    monkeypatch.setattr(system.runner, "_fold", lambda cur, *a, **k: folded.append(cur) or fold(cur, *a, **k))
    system.catch_up()
    assert folded  # the writer folded it (apply_pending: 64 events or more)
    assert system.runner.position("worklist") == system.app.max_position()
    caught_up = snapshot(system)
    assert sum(len(rows) for rows in caught_up.values()) > 50
    system.runner.rebuild()
    assert snapshot(system) == caught_up


# ---- when things go wrong inside the writer (found by a second reader) ----------------------------

class SlowRecorder:
    """A recorder whose every insert takes ``delay`` seconds (no store)."""

    head_sql = "SELECT 1"

    def __init__(self, delay: float):
        self.delay = delay

    @contextmanager
    def batch(self, db):
        def insert(events):
            time.sleep(self.delay)
            return list(range(len(events)))
        yield Batch(None, insert, nullcontext, None, lambda: True)

    def close_writer(self):
        pass


def stored(version: int = 1) -> StoredEvent:
    return StoredEvent(originator_id=uuid4(), originator_version=version, topic="t", state=b"{}")


def test_a_caller_interrupted_while_waiting_leaves_no_later_command_waiting():
    writer = Writer(None, SlowRecorder(0.5), None, [])
    leader = threading.Thread(target=writer.commit, args=([stored()],))
    leader.start()
    time.sleep(0.1)  # the leader is in its batch; this thread queues behind it and is interrupted
    old = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("interrupted")))
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(TimeoutError):
            writer.commit([stored()])
    finally:
        signal.signal(signal.SIGALRM, old)
    leader.join(5)
    later = threading.Thread(target=writer.commit, args=([stored()],), daemon=True)
    later.start()
    later.join(5)
    assert not later.is_alive(), "a later command waits for a leader that is gone"
    assert not writer._queue and not writer._leading


def test_a_transaction_the_store_drops_mid_batch_fails_every_command_of_it_and_records_none(tmp_path):
    """SQLite rolls a transaction back on its own on a full disk or an I/O error: the commands after
    that point must not be committed one by one (a savepoint outside a transaction commits) while
    their callers are told the batch failed. The disk stays full: the batch's first attempt (no
    savepoints, every command's events in one insert) and its careful one (a savepoint and an insert
    a command) both fail at their second command's events."""
    system = bootstrap(Settings(data_dir=tmp_path))
    try:
        recorder, attempts = system.app.recorder, []
        real = type(recorder).batch

        @contextmanager
        def batch(self, db):
            with real(self, db) as tx:
                calls = []
                attempts.append(calls)

                def insert(events):
                    calls.append(events)
                    if sum(map(len, calls)) >= 2:  # what SQLITE_FULL leaves: no transaction any more
                        tx.cursor._raw.execute("ROLLBACK")
                        raise sqlite3.OperationalError("database or disk is full")
                    return tx.insert(events)
                yield Batch(tx.cursor, insert, tx.savepoint, tx.notifications, tx.open)

        recorder.batch = batch.__get__(recorder)
        units = [Unit([stored()]), Unit([stored()]), Unit([stored()])]
        Writer(system.db, recorder, system.runner, [])._record(units)
        assert all(u.error is not None and u.done for u in units)
        assert [[len(events) for events in calls] for calls in attempts] == [[3], [1, 1]]
        with system.db.read() as cur:
            kept = cur.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
        assert kept == 0
        later = Writer(system.db, type(recorder)(recorder.datastore), system.runner, [])
        assert later.commit([stored()])  # and the store takes the next batch
    finally:
        system.close()


def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError):
        with immediate(conn) as cur:
            cur.execute("INSERT INTO c VALUES (1)")  # refused only at COMMIT
    assert not conn.in_transaction
    with immediate(conn) as cur:  # the write lock is free again
        cur.execute("INSERT INTO p VALUES (1)")
    assert conn.execute("SELECT COUNT(*) FROM p").fetchone()[0] == 1


def test_a_command_whose_registry_rows_conflict_is_undone_alone(system):
    writer = system.runner.writer
    units = [Unit([stored()], numbers=[("1000000900", "a")]), Unit([stored()], numbers=[("1000000900", "b")]),
             Unit([stored()], numbers=[("1000000901", "c")], keys=[("k", "d", "c")])]
    writer._record(units)
    assert [type(u.error).__name__ if u.error else "ok" for u in units] == ["ok", "IntegrityError", "ok"]
    assert [bool(system.app.recorder.select_events(u.events[0].originator_id)) for u in units] == [True, False, True]


def test_a_batch_runs_without_savepoints_unless_one_of_its_commands_fails(tmp_path):
    """Savepoints cost PostgreSQL's pipeline round trips: a batch takes them only on its second, careful
    attempt, after its first failed somewhere and was rolled back whole (nothing of it is kept twice)."""
    system = bootstrap(Settings(data_dir=tmp_path))
    try:
        writer, statements = Writer(system.db, system.app.recorder, system.runner, []), []  # (bare events: no read models)
        writer.commit([stored()])  # the writer's connection, opened
        system.app.recorder._writer_conn.set_trace_callback(statements.append)
        fine = [Unit([stored()], numbers=[(str(1000000800 + i), f"c{i}")]) for i in range(3)]
        writer._record(fine)
        assert [u.error for u in fine] == [None] * 3 and all(u.positions for u in fine)
        assert not [s for s in statements if "SAVEPOINT" in s.upper()]
        statements.clear()
        head = system.app.max_position()
        racing = [Unit([stored()], numbers=[("1000000900", "a")]), Unit([stored()], numbers=[("1000000900", "b")]),
                  Unit([stored()], numbers=[("1000000901", "c")])]
        writer._record(racing)
        assert [type(u.error).__name__ if u.error else "ok" for u in racing] == ["ok", "IntegrityError", "ok"]
        assert [s for s in statements if s.upper().startswith("SAVEPOINT")]  # the careful attempt
        assert system.app.max_position() - head == 2 == len({p for u in racing for p in u.positions})
    finally:
        system.close()


def test_each_command_of_a_batch_is_answered_with_the_positions_of_its_own_events(system):
    """A batch's first attempt inserts every command's events at once: each command still gets the
    positions its own events were recorded at, in order, on either store."""
    writer = Writer(system.db, system.app.recorder, system.runner, [])  # (bare events: no read models)
    cases = [uuid4() for _ in range(4)]  # the events of one command are one case's
    units = [Unit([StoredEvent(case, v, "t", b"{}") for v in range(1, n + 1)]) for case, n in zip(cases, (1, 3, 0, 2))]
    head = system.app.max_position()
    writer._record(units)
    assert [u.error for u in units] == [None] * 4
    assert [u.positions for u in units] == [[head + 1], [head + 2, head + 3, head + 4], [], [head + 5, head + 6]]
    table, position = events_table(system.db, system.app.recorder)
    with system.db.read() as cur:
        rows = cur.execute(f"SELECT originator_id, originator_version, {position} FROM {table}").fetchall()
    recorded_at = {(UUID(str(r[0])).hex, int(r[1])): int(r[2]) for r in rows}
    for unit in units:
        assert unit.positions == [recorded_at[(e.originator_id.hex, e.originator_version)] for e in unit.events]


def test_a_command_alone_in_its_batch_that_takes_a_version_already_recorded_is_refused_and_records_nothing(system, app):
    case = submit(app, WELLSENSE)
    head = app.max_position()
    taken = StoredEvent(originator_id=UUID(case["case_id"]), originator_version=case["version"], topic="t", state=b"{}")
    with pytest.raises(IntegrityError):  # a batch of one has no savepoint: its transaction is rolled back
        system.runner.writer.commit([stored(), taken], case_numbers=[("1000000950", "x")])
    assert app.max_position() == head
    with system.db.read() as cur:
        assert cur.execute("SELECT COUNT(*) FROM caselog_case_numbers WHERE case_id = 'x'").fetchone()[0] == 0
    assert app.place_hold(case["case_id"], ["notes"], actor=MD).view["status"] == "held"  # and the writer goes on
    assert app.max_position() > head


def test_a_command_alone_in_its_batch_whose_key_or_number_is_taken_is_refused_and_records_nothing(system, app,
                                                                                                  monkeypatch):
    """In PostgreSQL's pipeline a registry row's conflict comes back late, with the next answer read: a
    command alone in its batch whose idempotency key or case number is already taken is refused
    (IntegrityError) with nothing recorded, never answered as recorded while its transaction rolls
    back (found by a second reader: the projections' savepoint took the conflict for theirs)."""
    writer = system.runner.writer
    a, b = submit(app, WELLSENSE)["case_id"], submit(app, WELLSENSE)["case_id"]
    app.place_hold(a, ["notes"], actor=MD, key="k1")
    monkeypatch.setattr(app.registry, "find_key", lambda scoped: None)  # b's look ran before a's commit
    head = app.max_position()
    with pytest.raises(DomainError):  # the writer's IntegrityError, retried as a race and refused
        app.place_hold(b, ["notes"], actor=MD, key="k1")
    assert app.max_position() == head and event_types(app, b) == ["CaseSubmitted"]
    writer.commit([stored()], case_numbers=[("1000000960", "x")])
    head, taken = app.max_position(), stored()
    with pytest.raises(IntegrityError):
        writer.commit([taken], case_numbers=[("1000000960", "y")])
    assert app.max_position() == head and not app.recorder.select_events(taken.originator_id)
    monkeypatch.undo()
    assert app.place_hold(b, ["notes"], actor=MD).view["status"] == "held"  # and the writer goes on


def test_a_write_is_answered_as_done_when_the_read_models_cannot_take_it(system, monkeypatch):
    """Recorded is recorded: a failing read model is logged (and shows as projection lag), never a
    5xx that a client without an Idempotency-Key would answer by sending the request again."""
    from fastapi.testclient import TestClient

    from infra.http.app import create_app
    from infra.identity import load_secret, mint

    worklist = next(p for p in system.runner.projections if p.name == "worklist")
    monkeypatch.setattr(worklist, "process_event", lambda cur, event: (_ for _ in ()).throw(RuntimeError("broken")))
    token = mint(load_secret(system.settings.data_dir), role="provider", sub="dr", npis=[PROVIDER_NPI])
    client = TestClient(create_app(system))
    answer = client.post("/cases", json=request(DME, date_of_service=later(system.clock.now(), 5), documents=[]),
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    assert system.app.view(answer.json()["case_id"])["status"] == "pending"
