"""`caselog bench instructions` at a toy size (determinations only, two requests a figure): each child runs
under callgrind, answers every request 2xx, and the table gives each count with its ratio and bounds (a smoke
test, not a measurement: bench/RESULTS.md has the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_instructions_counts_each_app_and_its_http_layer(tmp_path):
    out = tmp_path / "instructions.json"
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "bench", "instructions", "--only", "determine", "--requests", "2",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    counted = {f["name"]: f["instructions_per_request"] for f in figures["figures"]}
    assert set(counted) == {"bare-determine-floor", "bare-determine", "caselog-determine-floor", "caselog-determine"}
    # each app costs more than its HTTP layer alone: the application's work was counted, and the layer's
    assert counted["bare-determine"] > counted["bare-determine-floor"] > 100_000
    assert counted["caselog-determine"] > counted["caselog-determine-floor"] > 100_000
    assert counted["caselog-determine-floor"] > counted["bare-determine-floor"]  # a token, authorization: more work
    (row,) = figures["summary"]
    assert row["ratio"] == round(counted["caselog-determine"] / counted["bare-determine"], 2)
    assert row["bound_2"] == round(2 * counted["bare-determine"] / counted["caselog-determine"], 3)
    assert f"| determination | {counted['bare-determine-floor'] / 1e6:.2f} |" in run.stdout


def test_bench_instructions_refuses_what_it_does_not_measure():
    run = subprocess.run([sys.executable, "-m", "bench.instructions", "--only", "replay"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--only takes submit, determine, in_process (not replay)" in run.stderr
