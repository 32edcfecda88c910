"""The write path's cost counted in CPU instructions (issue 13): caselog against the bare app, each whole
and each with its handlers answering at once (its HTTP layer alone), counted by valgrind's callgrind.

    .venv/bin/python -m bench.instructions [--requests 200] [--only submit,determine,in_process] [--out FILE]

Why a count: on this kind of shared machine the write bench's rates move by up to 1.4x from one run to the
next, and changes of a few per cent cannot be told from noise; an instruction count of the same code and
input is the same within a fraction of a per cent whatever else the machine is doing. It is a count, not a
time (no cache misses, no system calls' kernel side, no fsync, no waiting on locks), so it bounds what a
change can do and compares code paths; the rates themselves stay bench.write's.

Each figure is one child process run under ``valgrind --tool=callgrind --instr-atstart=no``: it builds the
app, answers a warm-up, then asks ``callgrind_control`` to count while it sends ``--requests`` requests one
at a time (one client) through the ASGI app in process, no sockets (so uvicorn's h11 parsing and the kernel
are left out, for both apps alike). Every thread is counted: the thread pool's, and with them the group
commit that one of them runs for the others. No access log line is written (logging is not configured, as
`caselog serve` configures it: about 4% of a served request in a profile), nor anything sent to a broker.
The stores (SQLite) are prepared beforehand, outside valgrind, as bench.write prepares them; the caselog
store grows from one child to the next, so compare runs with the same ``--only``:

- ``bare``: bench/bare_app.py, POST /cases and POST /cases/{id}/determination on aggregates with history;
- ``bare, HTTP layer``: the same routes and bodies, handlers that answer without the application;
- ``caselog``: `caselog serve`'s app (create_app, without the background services `caselog serve` starts:
  the scheduler, a relay), the requests of bench.write, each with an Idempotency-Key;
- ``caselog, HTTP layer``: the same app, requests and tokens (authentication, validation, authorization,
  the answer), the application's command answered by a view made once;
- ``in process``: ``CaseLog.submit`` with its read models caught up, against the bare app's ``submit``.

Printed: instructions per request (millions), caselog's over the bare app's, and the bound that ratio sets:
``K x bare / caselog`` is the request rate caselog could reach against the bare app in one process if both
were bound by their CPU alike and caselog's work were spread over K processes with nothing lost. Writes
bench/out/instructions.json. Needs valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from uuid import UUID

from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bare_app import Bare, Decision, Submission, create_app as bare_app  # noqa: E402

OUT = ROOT / "bench" / "out"
WARM_UP = 30
REQUESTS = ("submit", "determine", "in_process")
LABELS = {"submit": "POST /cases", "determine": "determination", "in_process": "submit in process"}
COLLECTED = re.compile(r"Collected : (\d+)")


# ---- in the child, under valgrind --------------------------------------------------------------

async def asgi_request(app, method: str, path: str, headers: dict, body) -> int:
    """One request through an ASGI app in process; its status."""
    raw = json.dumps(body).encode() if body is not None else b""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
             + [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), (b"host", b"bench")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    sent, statuses = False, []

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the answer is awaited
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def counting(on: bool) -> None:
    """Switch callgrind's count on or off in this process. callgrind_control exits 0 whatever happened
    (a process it cannot find included): what it prints tells."""
    state = "on" if on else "off"
    switched = subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], capture_output=True, text=True)
    said = switched.stdout + switched.stderr
    if f"sending command instrumentation {state}" not in said or "Error" in said:
        raise RuntimeError(f"callgrind's count could not be switched {state}: {said.strip()}")


def child(spec: dict) -> dict:
    """Build what ``spec`` names, answer its warm-up, count its requests; the statuses answered."""
    who, request, floor = spec["who"], spec["request"], spec["floor"]
    closing: list = []
    if who == "bare":
        from bench.write import SUBMITTED

        bare = Bare(env=spec["bare_env"])
        closing.append(bare.close)
        if request == "in_process":
            calls = [lambda i=i: bare.submit(SUBMITTED[i % len(SUBMITTED)], f"M{i:08d}") for i in range(WARM_UP + spec["n"])]
        else:
            app = bare_floor_app() if floor else bare_app(bare)
    else:
        from infra.bootstrap import bootstrap
        from infra.clock import ManualClock
        from infra.http.app import create_app
        from infra.settings import Settings

        from bench.write import SERVED_FROM, PROVIDER

        system = bootstrap(Settings(data_dir=Path(spec["data_dir"])), clock=ManualClock(SERVED_FROM))
        closing.append(system.close)
        if request == "in_process":
            def submit(body: dict) -> None:
                system.caught_up_to(system.app.submit(body, actor=PROVIDER, key=f"bench-{uuid.uuid4().hex}").position)
            calls = [lambda b=item[3]: submit(b) for item in spec["warm"] + spec["items"]]
        else:
            if floor:
                answer_at_once(system, spec["view_of"])
            app = create_app(system)
    try:
        if request == "in_process":
            for call in calls[:WARM_UP]:
                call()
            counting(True)
            for call in calls[WARM_UP:]:
                call()
            counting(False)
            return {"201": len(calls) - WARM_UP}
        return asyncio.run(drive(app, spec["warm"], spec["items"]))
    finally:
        for close in closing:
            close()


async def drive(app, warm: list, items: list) -> dict:
    statuses: dict[str, int] = {}
    for item in warm:
        await asgi_request(app, *item)
    counting(True)
    for item in items:
        status = str(await asgi_request(app, *item))
        statuses[status] = statuses.get(status, 0) + 1
    counting(False)
    return statuses


def bare_floor_app():
    """The bare app's routes and bodies, with handlers that answer without the application (its models
    imported at the top: FastAPI reads the handlers' annotations, strings here, in this module's globals)."""
    api = FastAPI(title="bare, HTTP layer")

    @api.post("/cases", status_code=201)
    def submit(body: Submission) -> dict:
        return {"case_id": "00000000-0000-0000-0000-000000000000", "version": 1}

    @api.post("/cases/{case_id}/determination")
    def determine(case_id: UUID, body: Decision) -> dict:
        return {"case_id": str(case_id), "version": 4, "status": body.outcome}

    return api


def answer_at_once(system, case_id: str) -> None:
    """caselog's submit and determine answer one case's view, made once, recording nothing; the answer
    names a position the read models hold, so it does not wait for them."""
    from application.caselog import Answer

    view, position = system.app.view(case_id), system.app.max_position()
    system.app.submit = lambda request, *, actor, key=None: Answer(view, True, position)
    system.app.determine = lambda case_id, *, actor, key=None, expected_version=None, **decision: Answer(view, False, position)


# ---- in the parent ---------------------------------------------------------------------------

def prepare(scratch: Path, n: int, only: list[str]) -> list[dict]:
    """The stores (SQLite, prepared natively) and every child's spec."""
    from infra.settings import Settings

    from bench.write import (Members, bearer, child_env, determinations, prepare_caselog, sqlite_store, submissions,
                             PROVIDER_NPI)

    members = Members()
    data = scratch / "caselog"
    counts = [WARM_UP, n] * 2  # (warm-up, measured) for caselog and for its HTTP layer
    doc, levels = prepare_caselog(Settings(data_dir=data), counts, members)
    env = child_env(CASELOG_DATA_DIR=str(data))
    provider = bearer(env, "--role", "provider", "--sub", "bench-provider", "--npi", PROVIDER_NPI)
    reviewer = bearer(env, "--role", "reviewer", "--sub", "bench-reviewer", "--credential", "MD")
    bare_env = sqlite_store(scratch / "bare")["bare_env"]  # as bench.write configures the bare app
    bare = Bare(env=bare_env)
    try:
        bare_ids = bare.prepare(2 * (WARM_UP + n))
    finally:
        bare.close()
    specs = []
    for request in only:
        for who, floor in (("bare", True), ("bare", False), ("caselog", True), ("caselog", False)):
            if request == "in_process" and floor:
                continue
            spec = {"who": who, "request": request, "floor": floor, "n": n, "bare_env": bare_env,
                    "data_dir": str(data), "view_of": levels[2][0]}  # (a case no child determines)
            if request == "determine":
                ids = (bare_ids[:WARM_UP + n] if floor else bare_ids[WARM_UP + n:]) if who == "bare" else \
                    (levels[2] + levels[3] if floor else levels[0] + levels[1])
                spec["warm"], spec["items"] = [determinations(part, {} if who == "bare" else reviewer, True)
                                               for part in (ids[:WARM_UP], ids[WARM_UP:])]
            else:
                made = submissions(WARM_UP + n, members, doc, {} if who == "bare" else provider, True)
                spec["warm"], spec["items"] = made[:WARM_UP], made[WARM_UP:]
            specs.append(spec)
    return specs


def count(spec: dict, scratch: Path) -> dict:
    """Run one child under callgrind; its instructions per request."""
    from bench.write import child_env

    name = f"{spec['who']}-{spec['request']}{'-floor' if spec['floor'] else ''}"
    spec_file, log = scratch / f"{name}.json", scratch / f"{name}.valgrind.log"
    spec_file.write_text(json.dumps(spec))
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={scratch / name}.callgrind",
         f"--log-file={log}", sys.executable, "-m", "bench.instructions", "--child", str(spec_file)],
        cwd=ROOT, env=child_env(PYTHONHASHSEED="0"), capture_output=True, text=True, timeout=1800)
    said = log.read_text() if log.exists() else ""
    if run.returncode != 0:
        raise RuntimeError(f"{name}: exit {run.returncode}: {run.stderr[-3000:]}\nvalgrind: {said[-2000:]}")
    statuses = json.loads(run.stdout.strip().splitlines()[-1])
    if set(statuses) - {"200", "201"} or sum(statuses.values()) != spec["n"]:
        raise RuntimeError(f"{name}: answered {statuses}, expected {spec['n']} 2xx")
    found = COLLECTED.findall(said)
    if not found or not int(found[-1]):
        raise RuntimeError(f"{name}: no count in valgrind's log: {said[-2000:]}")
    per = int(found[-1]) / spec["n"]
    print(f"  {name:28} {per / 1e6:7.3f} M instructions a request ({spec['n']} requests)", flush=True)
    return {"name": name, "who": spec["who"], "request": spec["request"], "floor": spec["floor"],
            "instructions_per_request": round(per)}


def summarise(figures: list[dict]) -> list[dict]:
    rows = []
    for request in REQUESTS:
        got = {(f["who"], f["floor"]): f["instructions_per_request"] for f in figures if f["request"] == request}
        if ("bare", False) not in got or ("caselog", False) not in got:
            continue
        bare, caselog = got[("bare", False)], got[("caselog", False)]
        rows.append({"request": request, "bare_floor": got.get(("bare", True)), "bare": bare,
                     "caselog_floor": got.get(("caselog", True)), "caselog": caselog,
                     "ratio": round(caselog / bare, 2), "bound_1": round(bare / caselog, 3),
                     "bound_2": round(2 * bare / caselog, 3)})
    return rows


def table(rows: list[dict]) -> str:
    m = lambda v: f"{v / 1e6:.2f}" if v else "-"  # noqa: E731
    lines = ["| request | bare, HTTP layer | bare | caselog, HTTP layer | caselog | caselog / bare |"
             " bound: 1 process | 2 processes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {LABELS[r['request']]} | {m(r['bare_floor'])} | {m(r['bare'])} | {m(r['caselog_floor'])} |"
                     f" {m(r['caselog'])} | {r['ratio']:.2f} | {r['bound_1']:.3f} | {r['bound_2']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests counted per figure (one client)")
    parser.add_argument("--only", default=",".join(REQUESTS), help=f"comma-separated: {', '.join(REQUESTS)}")
    parser.add_argument("--out", default=str(OUT / "instructions.json"), help="where to write the figures (JSON)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(Path(args.child).read_text()))))
        return
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = [r for r in only if r not in REQUESTS]
    if unknown or not only:
        parser.error(f"--only takes {', '.join(REQUESTS)} (not {', '.join(unknown) or 'nothing'})")
    if args.requests < 1:
        parser.error("--requests: at least 1")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install valgrind)")
    scratch = Path(tempfile.mkdtemp(prefix="caselog-instructions-"))
    try:
        print(f"instructions per request, {args.requests} requests a figure, one client (callgrind)", flush=True)
        figures = [count(spec, scratch) for spec in prepare(scratch, args.requests, only)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = summarise(figures)
    print("\nmillions of instructions a request; bound: K x bare / caselog, the request rate caselog could reach"
          " against the bare app in one process, both bound by their CPU, caselog spread over K processes\n")
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": {"requests": args.requests, "only": only, "warm_up": WARM_UP},
                               "figures": figures, "summary": rows}, indent=2))


if __name__ == "__main__":
    main()
