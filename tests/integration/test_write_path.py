"""The write path (issue 13): a command's events, its new case's number and its idempotency key are
recorded in one transaction, concurrent commands are committed together (group commit), each
answered only once its transaction committed and its events are in the read models."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import pytest

from domain.case import Case
from domain.context import Context
from domain.errors import InvalidInput, VersionConflict
from infra.bootstrap import bootstrap
from infra.kafka.message import published_size, size_within
from projections.case_owners import owners_of
from tests.support import DME, MD, PROVIDER, WELLSENSE, later, recorded, request, submit


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
