"""Benchmark for the deadline scheduler (issue 4), on the embedded store.

    .venv/bin/python -m bench.scheduler

1. 100,000 armed deadlines: resident memory of a running `caselog scheduler` (default
   10-minute timer horizon, and with every deadline inside the horizon), against an idle
   caselog process.
2. After a restart, 10,000 overdue deadlines: wall time of `caselog scheduler --once`, against
   the same 10,000 firings made directly through the application in this process.
3. On the real clock: how late after its instant each of 200 deadlines fires.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain.case import Case  # noqa: E402
from domain.context import Context  # noqa: E402
from infra.bootstrap import bootstrap  # noqa: E402
from infra.clock import ManualClock, SystemClock  # noqa: E402
from infra.demo.samples import PROVIDER_NPI, later, request  # noqa: E402
from infra.settings import Settings  # noqa: E402

UTC = timezone.utc
OUT = ROOT / "bench" / "out"
MD = {"kind": "reviewer", "id": "dr-bench", "credential": "MD"}


def fresh(name: str) -> Settings:
    path = OUT / name
    shutil.rmtree(path, ignore_errors=True)
    return Settings(data_dir=path)


def arm_held_cases(system, cases: int, batch: int = 500) -> None:
    """Each held case arms three deadlines: hold due, decision warning, decision due."""
    clock = system.clock
    made = 0
    while made < cases:
        ids = [uuid.uuid4() for _ in range(min(batch, cases - made))]
        numbers = system.registry.case_numbers([str(i) for i in ids])
        aggregates = []
        for case_id in ids:
            made += 1
            body = request("cigna-commercial/dme", date_of_service=later(clock.now(), 10), member_no=made, documents=[])
            case = Case.submit(Context(clock.now(), {"kind": "provider", "id": PROVIDER_NPI}), case_id=case_id,
                               case_number=numbers[str(case_id)], request=body)
            case.place_hold(Context(clock.now(), MD), ["notes"])
            aggregates.append(case)
        system.app.save(*aggregates)
    system.runner.catch_up()


def env_for(settings: Settings, **extra: str) -> dict:
    env = {**os.environ, "CASELOG_DATA_DIR": str(settings.data_dir), **extra}
    env.pop("CASELOG_DATABASE_URL", None)
    return env


def rss_of_running(cmd: list[str], env: dict, settle: float) -> float:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak, end = 0, time.monotonic() + settle
    while time.monotonic() < end and proc.poll() is None:
        peak = max(peak, ps.memory_info().rss)
        time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=30)
    return peak / 2**20


def main() -> None:
    results: dict = {}
    caselog = [sys.executable, "-m", "infra.cli"]

    # 1. memory with 100,000 armed deadlines (real clock: all of them in the future)
    settings = fresh("sched-memory")
    system = bootstrap(settings, clock=SystemClock())
    t = time.perf_counter()
    arm_held_cases(system, 33_334)
    with system.db.transaction() as cur:
        armed = cur.execute("SELECT COUNT(*) FROM deadlines").fetchone()[0]
    system.close()
    idle = rss_of_running([sys.executable, "-c", "import time, infra.bootstrap as b; s=b.bootstrap(); time.sleep(30)"], env_for(settings), 4)
    default = rss_of_running([*caselog, "scheduler"], env_for(settings), 12)
    everything = rss_of_running([*caselog, "scheduler"], env_for(settings, CASELOG_SCHEDULER_HORIZON_SECONDS=str(60 * 86400)), 40)
    results["memory"] = {"armed_deadlines": armed, "setup_seconds": round(time.perf_counter() - t, 1),
                         "idle_process_rss_mb": round(idle, 1), "scheduler_rss_mb_default_horizon": round(default, 1),
                         "scheduler_rss_mb_60_day_horizon_10k_timer_jobs": round(everything, 1),
                         "ratio_10k_jobs_vs_idle": round(everything / idle, 2)}
    print(json.dumps(results["memory"]), flush=True)

    # 2. 10,000 overdue deadlines after a restart, against direct firing in this process
    start = datetime(2026, 3, 10, 14, tzinfo=UTC)
    past_all = (start + timedelta(days=30)).isoformat()
    settings = fresh("sched-restart")
    system = bootstrap(settings, clock=ManualClock(start))
    arm_held_cases(system, 3_334)
    system.close()
    t = time.perf_counter()
    out = subprocess.run([*caselog, "scheduler", "--once"], env=env_for(settings, CASELOG_CLOCK="manual", CASELOG_CLOCK_START=past_all),
                         capture_output=True, text=True, check=True)
    scheduler_seconds = time.perf_counter() - t
    fired = int(out.stdout.split()[1])
    base = fresh("sched-direct")
    direct_clock = ManualClock(start)
    system = bootstrap(base, clock=direct_clock)
    arm_held_cases(system, 3_334)
    with system.db.transaction() as cur:
        due = cur.execute("SELECT case_id, kind, instant FROM deadlines ORDER BY fire_at").fetchall()
    direct_clock.set(datetime.fromisoformat(past_all))
    t = time.perf_counter()
    for case_id, kind, instant in due:
        system.app.fire_deadline(kind, case_id, datetime.fromisoformat(instant))
    direct_seconds = time.perf_counter() - t
    system.close()
    results["restart"] = {"overdue_fired": fired, "scheduler_process_seconds": round(scheduler_seconds, 2),
                          "direct_application_calls": len(due), "direct_seconds": round(direct_seconds, 2),
                          "ratio_scheduler_vs_direct_time": round(scheduler_seconds / direct_seconds, 2)}
    print(json.dumps(results["restart"]), flush=True)

    # 3. punctuality on the real clock
    settings = fresh("sched-punctual")
    system = bootstrap(settings, clock=SystemClock())
    proc = subprocess.Popen([*caselog, "scheduler"], env=env_for(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    instants = {}
    first = datetime.now(UTC) + timedelta(seconds=3)
    for i in range(200):
        body = request("cigna-commercial/dme", date_of_service=later(datetime.now(UTC), 10), member_no=i, documents=[])
        cid = system.app.submit(body, actor={"kind": "provider", "id": PROVIDER_NPI}).view["case_id"]
        due_at = first + timedelta(milliseconds=100 * i)
        system.app.place_hold(cid, ["notes"], due_at.isoformat(), actor=MD)
        instants[cid] = due_at
    time.sleep((first - datetime.now(UTC)).total_seconds() + 20 + 5)
    late = []
    for cid, due_at in instants.items():
        lapsed = [e for e in system.app.history(cid)["events"] if e["type"] == "HoldLapsed"]
        late.append((datetime.fromisoformat(lapsed[0]["occurred_at"]) - due_at).total_seconds() if lapsed else float("inf"))
    proc.terminate()
    proc.wait(timeout=30)
    system.close()
    late.sort()
    results["punctuality"] = {"deadlines": len(late), "fired": sum(x != float("inf") for x in late),
                              "late_p50_s": round(statistics.median(late), 3), "late_p95_s": round(late[int(0.95 * len(late)) - 1], 3),
                              "late_max_s": round(late[-1], 3), "ratio_max_vs_1s_target": round(late[-1] / 1.0, 3)}
    print(json.dumps(results["punctuality"]), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scheduler.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
