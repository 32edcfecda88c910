"""What a rebuild of the read models cannot go below on a store (issue 13's replay target), in process.

    .venv/bin/python -m bench.replay_bound --data-dir STORE    # a store loaded before (e.g. by bench.read_models --sizes)
    .venv/bin/python -m bench.replay_bound --cases 2000        # or a fresh one loaded by bench/loader.py

On a copy of the store, one after the other:
- the rebuild itself (``ProjectionRunner.rebuild``, every projection), timed;
- its reading alone: the log read and decoded into records as the rebuild reads it, with its
  collector settings, nothing folded;
- its final writes alone: every read-model table's rows as the rebuild left them, dumped, the tables
  made again without their secondary indexes and the rows inserted in their order of insertion (rowid),
  in as many slices as the rebuild has batches, as many slices to a commit as it folds, through the
  store's cursor; then the secondary indexes built.
Reading, the final inserts and the indexes are work any rebuild with today's reader, batching, schema
and case ids does (it also updates and deletes rows, reads rows ahead and folds): their sum bounds its
rate from above, for this design.
Prints each figure in microseconds per event and that bound, and writes bench/out/replay_bound.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.read_models import loaded_store  # noqa: E402
from infra.bootstrap import bootstrap  # noqa: E402
from infra.settings import Settings  # noqa: E402
from infra.store.runner import BATCHES_PER_COMMIT, few_collections  # noqa: E402

OUT = ROOT / "bench" / "out"


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def read_only(runner) -> int:
    """The rebuild's reading (runner._stored_reader) with the collector set as the rebuild sets it."""
    with few_collections():
        read, events = runner._stored_reader(), 0
        while batch := read(None):
            events += len(batch)
        return events


def table_rows(db, runner) -> dict[str, tuple[list[str], list[tuple]]]:
    """Each read-model table's columns and rows (``Projection.tables``), in their order of insertion."""
    dump = {}
    with db.read() as cur:
        for name in sorted({t for p in runner.projections for t in p.tables}):
            columns = [r[1] for r in cur.execute(f"PRAGMA table_info({name})").fetchall()]
            dump[name] = (columns, cur.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY rowid").fetchall())
    return dump


def insert_final_rows(db, runner, dump, batches: int) -> None:
    with db.transaction() as cur:
        for p in runner.projections:
            p.drop(cur)
            p.create(cur, indexes=False)
    with db.bulk():
        for first in range(0, batches, BATCHES_PER_COMMIT):
            with db.transaction() as cur:
                for b in range(first, min(first + BATCHES_PER_COMMIT, batches)):
                    for name, (columns, rows) in dump.items():
                        lo, hi = len(rows) * b // batches, len(rows) * (b + 1) // batches
                        if hi > lo:
                            cur.insert_many(name, columns, rows[lo:hi])


def measure(store: Path) -> dict:
    system = bootstrap(Settings(data_dir=store))
    db, runner = system.db, system.runner
    try:
        if db.dialect != "sqlite":
            raise SystemExit("replay_bound measures the embedded SQLite store")
        rebuild, events = timed(runner.rebuild)
        if not events:
            raise SystemExit("the store holds no events: nothing to rebuild")
        reading, read = timed(lambda: read_only(runner))
        if read != events:  # another writer on the copy: the figures would not be of one store
            raise SystemExit(f"the rebuild applied {events} events and the log then held {read}")
        dump = table_rows(db, runner)
        batches = max(1, -(-events // runner.batch))
        inserts, _ = timed(lambda: insert_final_rows(db, runner, dump, batches))
        indexes, _ = timed(lambda: runner._create_indexes(runner.projections))
    finally:
        system.close()
    us = {k: round(1e6 * v / events, 1) for k, v in
          {"rebuild": rebuild, "reading": reading, "final_inserts": inserts, "indexes": indexes}.items()}
    floor = us["reading"] + us["final_inserts"] + us["indexes"]
    return {"events": events, "rows": {name: len(rows) for name, (_, rows) in dump.items()},
            "seconds": {"rebuild": round(rebuild, 2), "reading": round(reading, 2), "final_inserts": round(inserts, 2),
                        "indexes": round(indexes, 2)},
            "us_per_event": us, "bound_us_per_event": round(floor, 1),
            "rebuild_events_per_second": round(events / rebuild), "bound_events_per_second": round(1e6 / floor),
            "rest_us_per_event": round(us["rebuild"] - floor, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="a loaded store (copied: the rebuild rewrites its read models)")
    parser.add_argument("--cases", type=int, default=2000, help="without --data-dir: load a store of this many cases")
    parser.add_argument("--out", default=str(OUT / "replay_bound.json"))
    args = parser.parse_args()
    if args.cases < 1:
        parser.error("--cases: at least 1")
    with tempfile.TemporaryDirectory(prefix="replay-bound-") as scratch:
        copy = Path(scratch) / "store"
        if args.data_dir:
            if not (Path(args.data_dir) / "caselog.db").exists():
                parser.error(f"--data-dir: no caselog.db in {args.data_dir}")
            shutil.copytree(args.data_dir, copy)
        else:
            loaded_store(copy, args.cases)
        figures = measure(copy)
    figures["store"] = args.data_dir or f"{args.cases} cases loaded by bench/loader.py"
    OUT.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))
    us = figures["us_per_event"]
    print(f"replay bound, {figures['events']:,} events (us per event; in process, no start-up)")
    print("| rebuild | reading alone | final inserts alone | indexes | bound (the three) | bound events/s | rebuild events/s | rest |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {us['rebuild']} | {us['reading']} | {us['final_inserts']} | {us['indexes']} | {figures['bound_us_per_event']} |"
          f" {figures['bound_events_per_second']:,} | {figures['rebuild_events_per_second']:,} | {figures['rest_us_per_event']} |")


if __name__ == "__main__":
    main()
