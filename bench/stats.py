"""Latency percentiles as every benchmark reports them."""

from __future__ import annotations

import statistics


def percentiles(samples: list[float]) -> dict:
    """p50 / p95 / p99 / mean of ``samples`` (seconds), in milliseconds: the nearest-rank sample, no interpolation."""
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "n": 0}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50) * 1000, 2), "p95_ms": round(pick(0.95) * 1000, 2),
            "p99_ms": round(pick(0.99) * 1000, 2), "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
            "n": len(ordered)}


def watched(cmd: list[str], env: dict) -> tuple[float, int, int, str, str]:
    """Run ``cmd`` to its end, sampling its resident memory: (seconds, peak RSS in bytes, exit
    status, stdout, stderr)."""
    import subprocess
    import time

    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    return time.perf_counter() - started, peak, proc.returncode, out, err
