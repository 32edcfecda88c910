"""`caselog bench write` at a toy size, on SQLite only: it starts both servers, drives them, and
prints every figure with its baseline and ratio (a smoke test, not a measurement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_write_prints_figures_and_ratios(tmp_path):
    out = tmp_path / "write.json"
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "bench", "write", "--stores", "sqlite", "--clients", "1,2",
         "--seconds", "2", "--requests", "15", "--runs", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = run.stdout[run.stdout.index("write path"):]
    assert "caselog req/s" in table and "bare req/s" in table and "ratio" in table and "GET ceiling" in table
    rows = [line for line in table.splitlines() if line.startswith("sqlite ")]
    assert len(rows) == 6  # submissions and determinations at 1 and 2 clients, and submissions without HTTP
    assert sum("POST /cases " in r for r in rows) == 2 and sum("determination" in r for r in rows) == 2
    assert sum("in process" in r for r in rows) == 2

    figures = json.loads(out.read_text())
    assert figures["machine"]["nproc"] >= 1 and figures["config"]["stores"] == ["sqlite"]
    for row in figures["summary"]:
        assert row["not_2xx"] == 0
        assert row["caselog_rps"] > 0 and row["bare_rps"] > 0
        assert (row["get_ceiling_rps"] or 0) > 0 or row["request"] == "in_process"
        assert row["ratio"] == round(row["caselog_rps"] / row["bare_rps"], 3)  # one run: the median is that run
        assert 0 < row["caselog_p50_ms"] <= row["caselog_p95_ms"] <= row["caselog_p99_ms"]
        label = {"submit": "POST /cases ", "determine": "determination", "in_process": "in process"}[row["request"]]
        assert f"{row['ratio']:.3f}" in next(r for r in rows if f" {row['clients']} |" in r and label in r)
    cells = figures["runs"][0]["sqlite"]
    assert cells["caselog"]["submit"]["2"]["statuses"] == {"201": 15}  # every request answered, each a new case
    assert cells["caselog"]["determine"]["1"]["statuses"] == {"200": 15}
