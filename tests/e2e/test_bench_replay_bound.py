"""`caselog bench replay-bound` at a toy size: it rebuilds, reads, rewrites the final rows and prints
each figure per event with their sum as the bound (a smoke test, not a measurement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli", "bench", "replay-bound", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_replay_bound_prints_the_rebuild_its_parts_and_the_bound(tmp_path):
    out = tmp_path / "bound.json"
    run = bench("--cases", "300", "--out", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    us = figures["us_per_event"]
    assert figures["events"] > 300 and figures["rows"]["worklist"] == 300  # one worklist row per case loaded
    assert all(us[k] > 0 for k in ("rebuild", "reading", "final_inserts", "indexes"))
    assert figures["bound_us_per_event"] == round(us["reading"] + us["final_inserts"] + us["indexes"], 1)
    assert figures["bound_events_per_second"] == round(1e6 / figures["bound_us_per_event"])
    row = run.stdout.splitlines()[-1]
    assert f"| {us['rebuild']} | {us['reading']} |" in row and f"{figures['bound_events_per_second']:,}" in row


def test_a_data_dir_without_a_store_or_no_cases_is_refused_with_status_2(tmp_path):
    run = bench("--data-dir", str(tmp_path))
    assert run.returncode == 2 and "no caselog.db" in run.stderr
    run = bench("--cases", "0")
    assert run.returncode == 2 and "--cases: at least 1" in run.stderr
