"""Projections: rebuilt from the store they equal the ones kept live, row for row; a
re-delivered batch changes nothing; ignored events are tracked too."""

from __future__ import annotations

from infra.demo import run_demo


def snapshot(system) -> dict[str, list[tuple]]:
    tables = {}
    with system.db.transaction() as cur:
        for p in system.runner.projections:
            for table in p.tables:
                tables[table] = sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return tables


def test_replay_rebuilds_every_projection_equal_to_the_live_one_row_for_row(system):
    run_demo(system)  # a mixed workload on every policy, with deadlines fired
    system.runner.catch_up()
    live = snapshot(system)
    assert sum(len(rows) for rows in live.values()) > 50
    assert system.runner.rebuild() == system.app.max_position()
    assert snapshot(system) == live


def test_redelivered_events_change_nothing_and_ignored_events_are_tracked(system):
    run_demo(system)
    system.runner.catch_up()
    before = snapshot(system)
    head = system.app.max_position()
    rows = system.app.recorder.select_notifications(1, head)
    from projections.records import from_stored

    events = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in rows]
    for p in system.runner.projections:
        assert system.runner.apply(p, events) == 0  # everything is at or below the tracked position
        assert system.runner.position(p.name) == head
    assert snapshot(system) == before


def test_a_projection_rebuilt_alone_catches_up_without_touching_the_others(system):
    run_demo(system)
    system.runner.catch_up()
    before = snapshot(system)
    system.runner.rebuild(["worklist"])
    assert snapshot(system) == before
