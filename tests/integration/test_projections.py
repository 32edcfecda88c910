"""Projections: rebuilt from the store they equal the ones kept live, row for row; a
re-delivered batch changes nothing; ignored events are tracked too."""

from __future__ import annotations

from infra.demo.workload import run_demo


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


def test_events_read_from_kafka_partitions_apply_once_however_often_they_arrive(system):
    """What a worker does with a batch: re-delivered (same offsets) and re-published (new
    offsets, same store positions) events change nothing; a replay from the store is a floor."""
    from bench.loader import load
    from infra.bootstrap import read_models
    from projections.records import from_stored

    run_demo(system)
    load(system, 40, seed=3)
    system.runner.catch_up()
    embedded = snapshot(system)
    models = [p for p in system.runner.projections if p.name != "deadlines"]
    records = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state)
               for n in system.app.recorder.select_notifications(1, 10**9)]
    partitions = 3
    on_topic = [(hash(r["case_id"]) % partitions, offset, r) for offset, r in enumerate(records)]

    system.runner.rebuild([p.name for p in read_models()])  # the floor: every position already applied
    assert system.runner.apply_partitioned(models, "t", on_topic) == 0
    for p in models:  # start over as a worker would: empty tables, nothing tracked
        with system.db.transaction() as cur:
            p.drop(cur)
            p.create(cur)
            cur.execute("UPDATE caselog_tracking SET position = 0 WHERE projection = ?", (p.name,))
            cur.execute("DELETE FROM caselog_partition_tracking WHERE projection = ?", (p.name,))

    half = len(on_topic) // 2
    assert system.runner.apply_partitioned(models, "t", on_topic[:half]) == half * len(models)
    assert system.runner.apply_partitioned(models, "t", on_topic[:half]) == 0  # re-delivered
    republished = [(part, offset + 10**6, r) for part, offset, r in on_topic[half - 20:]]  # relay restarted mid-batch
    assert system.runner.apply_partitioned(models, "t", republished) == (len(on_topic) - half) * len(models)
    assert {k: v for k, v in snapshot(system).items() if k != "deadlines"} == {k: v for k, v in embedded.items() if k != "deadlines"}


def test_batches_folded_in_memory_equal_events_applied_one_by_one(system, monkeypatch):
    """A rebuild folds each batch in memory (projections.rows.Staged) and writes each changed row
    once; cut into batches of every size, cases spanning batches, it gives the rows the
    statements run event by event (projections.rows.Direct) give."""
    from bench.loader import load
    from projections.records import from_stored

    run_demo(system)
    load(system, 30, seed=5)
    records = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state)
               for n in system.app.recorder.select_notifications(1, 10**9)]
    system.runner.rebuild()
    for p in system.runner.projections:  # event by event, each written at once
        with system.db.transaction() as cur:
            p.drop(cur)
            p.create(cur)
            cur.execute("UPDATE caselog_tracking SET position = 0 WHERE projection = ?", (p.name,))
    for record in records:
        system.runner.apply_all(system.runner.projections, [record])
    one_by_one = snapshot(system)
    assert sum(len(rows) for rows in one_by_one.values()) > 100
    for size in (1, 7, 64, 5000):
        system.runner.batch = size
        assert system.runner.rebuild(source=iter(records)) == len(records) * len(system.runner.projections)
        assert snapshot(system) == one_by_one, size
    monkeypatch.setattr("infra.store.runner.MET_CAP", 5)  # past it every case is read ahead
    system.runner.batch = 7
    assert system.runner.rebuild() == len(records)
    assert snapshot(system) == one_by_one


def test_a_read_model_changes_nothing_for_the_event_types_it_does_not_handle(system):
    """A batch folded in memory skips the event types outside a read model's ``handles``: folding
    one of them must not touch a row (every type the demo and the loader record is tried)."""
    from bench.loader import load
    from projections.records import from_stored

    class Watched:
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *args, **kwargs: self.calls.append(name)

    run_demo(system)
    load(system, 30, seed=5)
    records = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state)
               for n in system.app.recorder.select_notifications(1, 10**9)]
    types = {r["type"] for r in records}
    assert len(types) > 15
    for p in system.runner.projections:
        if p.handles is None:
            continue
        for record in records:
            if record["type"] not in p.handles:
                rows = Watched()
                p.fold(rows, record)
                assert rows.calls == [], (p.name, record["type"])


def indexes(system) -> set[str]:
    """The read models' secondary indexes in the store."""
    names = {statement.split(" IF NOT EXISTS ")[1].split()[0] for p in system.runner.projections
             for statement in p.schema if statement.startswith("CREATE INDEX")}
    with system.db.transaction() as cur:
        if system.db.dialect == "postgres":
            present = {r[0] for r in cur.execute("SELECT indexname FROM pg_indexes").fetchall()}
        else:
            present = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()}
    return names & present


def projected_with_records(system, seed: int) -> tuple[dict[str, list[tuple]], list]:
    """The demo and 30 loaded cases recorded and projected: the rows, and every stored event as a record."""
    from bench.loader import load
    from projections.records import from_stored

    run_demo(system)
    load(system, 30, seed=seed)
    system.runner.catch_up()
    records = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state)
               for n in system.app.recorder.select_notifications(1, 10**9)]
    return snapshot(system), records


def test_a_rebuild_cut_short_keeps_the_rows_of_what_it_tracked_and_catches_up_from_there(system, monkeypatch):
    """A rebuild commits several batches at a time; whatever stops it, the rows it committed are
    those of exactly the events its tracking reached, and a catch-up from there gives the rows a
    whole rebuild gives."""
    whole, records = projected_with_records(system, seed=7)
    assert len(records) > 100
    monkeypatch.setattr("infra.store.runner.BATCHES_PER_COMMIT", 3)
    system.runner.batch = 7
    every_index = indexes(system)
    assert len(every_index) > 20
    board = next(p for p in system.runner.projections if p.name == "board")
    # an event the board folds, past the first batch of a transaction (so that batches read inside
    # the transaction are rolled back with it)
    stop = next(i for i in range(80, len(records))
                if (board.handles is None or records[i]["type"] in board.handles) and i % 21 >= 7)
    fold, stop_at, committed = board.fold, records[stop]["position"], stop // 21 * 21  # transactions of 3 batches of 7
    assert committed >= 63

    def failing(rows, event):
        if event["position"] == stop_at:
            raise RuntimeError("stopped")
        fold(rows, event)

    monkeypatch.setattr(board, "fold", failing)
    try:
        system.runner.rebuild()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the rebuild did not stop")
    reached = {p.name: system.runner.position(p.name) for p in system.runner.projections}
    assert set(reached.values()) == {records[committed - 1]["position"]}
    assert indexes(system) == every_index, "a server beside the rebuild would scan whole tables"
    cut_short = snapshot(system)

    monkeypatch.setattr(board, "fold", fold)
    system.runner.catch_up()
    assert snapshot(system) == whole
    system.runner.rebuild(source=iter(records[:committed]))
    assert snapshot(system) == cut_short


def test_a_rebuild_beside_another_writer_of_the_same_projections_gives_each_event_once(system, monkeypatch):
    """A server on the same store keeps the projections while a replay rebuilds them: between two of
    the replay's transactions it applies the next events itself (cases submitted there among them,
    with later events). The replay skips what it finds applied, reads those cases' rows as any
    other, and ends with the rows of every event once."""
    whole, records = projected_with_records(system, seed=7)
    monkeypatch.setattr("infra.store.runner.BATCHES_PER_COMMIT", 2)
    system.runner.batch = 7
    # the server's share starts after the replay's first transaction (14 events) and ends with a
    # submission whose case has a later event in the replay's same batch of 7 (the replay meets the
    # case there first: nothing of it was folded by the replay before)
    end = next(i for i, r in enumerate(records) if i >= 14 and r["type"] == "CaseSubmitted" and any(
        later["case_id"] == r["case_id"] for later in records[i + 1:(i // 7 + 1) * 7])) + 1
    served = []

    def the_server_applies_the_next_events(done: int) -> None:
        if not served:
            assert done == 14  # called once the transaction is committed, outside it
            served.extend(records[done:end])
            system.runner.apply_all(system.runner.projections, served)

    assert system.runner.rebuild(progress=the_server_applies_the_next_events) == len(records)
    assert served
    assert snapshot(system) == whole
