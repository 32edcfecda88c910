"""Benchmark for verify and seals (issue 12), on the embedded store.

    .venv/bin/python -m bench.verify [--cases 206000] [--reuse]

Loads ~5 events per case (bench/loader.py; 206,000 cases is about 1,000,000 events), then,
each command in its own process (wall time with start-up, peak resident memory):
- `caselog seal --out FILE` on the unsealed store (walks it all, signs capped seals);
- `caselog verify` (every chain) and `caselog verify --seals FILE` (chains and the seal the
  file has), and against every seal the table holds, against a bare scan of the notification
  log (decode only) in this process; and against a seal every 1,000 events (the periodic
  sealer's default cadence: about 1,000 seals), written in this process;
- after deleting one case's last event, `caselog verify --seals FILE` exits 1 naming it.
Target: verify on 1,000,000 events in under 60 s. Prints the figures and writes them to
bench/out/verify.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loader import load  # noqa: E402
from bench.stats import watched  # noqa: E402
from infra.bootstrap import bootstrap  # noqa: E402
from infra.clock import ManualClock  # noqa: E402
from infra.settings import Settings  # noqa: E402


def run(cmd: list[str], env: dict) -> dict:
    """Wall time, peak RSS, exit status and output of a command."""
    seconds, peak, status, out, err = watched(cmd, env)
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "exit": status,
        "stdout": out.strip()[-400:],
        "stderr": err.strip()[-600:],
    }


def cadence(data: Path, keys: Path, env: dict, caselog: list[str], every: int) -> dict:
    """Seals as the periodic sealer makes them at CASELOG_SEAL_EVERY=every (each with the heads
    changed since the one before), written in this process, then `verify --seals` over them all."""
    from domain.seal import Heads, new_seal, seal_digest
    from infra.seals import load_key

    key = load_key(Settings(data_dir=data, seal_key=str(keys / "seal.key")))
    system = bootstrap(Settings(data_dir=data))
    path = keys / "cadence.jsonl"
    heads, changed, previous, after, seq = Heads(), set(), None, 0, 0
    started = time.perf_counter()
    with path.open("wb") as out:

        def emit() -> None:
            nonlocal previous, after, seq, changed
            seq += 1
            signed = new_seal(
                heads, deployment="bench", seq=seq, previous=previous, sealed_at="2026-11-23T00:00:00Z", key=key
            )
            entries = [heads.get(c).entry(c) for c in sorted(changed)]
            out.write(json.dumps({**signed, "heads_after": after, "heads": entries}).encode() + b"\n")
            previous, after, changed = seal_digest(signed), heads.position, set()

        for position, case_id, version, _type, state in system.app.stored_events(batch=5000):
            heads.record(position, case_id, version, state["hash"])
            changed.add(case_id)
            if heads.events % every == 0:
                emit()
        if changed:
            emit()
    sealing = time.perf_counter() - started
    system.close()
    verified = run([*caselog, "verify", "--seals", str(path)], env)
    return {
        **verified,
        "seals": seq,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "sealing_in_process_seconds": round(sealing, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=206_000)
    parser.add_argument("--data-dir", default=str(ROOT / "bench" / "out" / "verify"))
    parser.add_argument("--reuse", action="store_true", help="keep a store loaded by an earlier run")
    parser.add_argument("--every", type=int, default=1000, help="the periodic cadence to emulate (CASELOG_SEAL_EVERY)")
    args = parser.parse_args()
    data = Path(args.data_dir)
    keys = Path(tempfile.mkdtemp(prefix="caselog-bench-keys-"))
    results: dict = {}
    if not (args.reuse and (data / "caselog.db").exists()):
        results["cases_requested"] = args.cases
        shutil.rmtree(data, ignore_errors=True)
        system = bootstrap(Settings(data_dir=data), clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))
        print(f"loading {args.cases} cases ...", flush=True)
        loaded = load(
            system,
            args.cases,
            progress=lambda c, e: print(f"  {c} cases, {e} events", flush=True) if c % 20000 == 0 else None,
        )
        loaded.pop("sample")
        results["load"] = loaded
        system.close()
    system = bootstrap(Settings(data_dir=data))
    with system.db.transaction() as cur:
        cur.execute("DROP TABLE IF EXISTS caselog_seals")  # a reused store is sealed afresh
    t = time.perf_counter()
    scanned = sum(1 for _ in system.app.stored_events(batch=5000))
    results["baseline_scan"] = {
        "events": scanned,
        "seconds": round(time.perf_counter() - t, 1),
        "events_per_second": round(scanned / (time.perf_counter() - t)),
    }
    system.close()
    print(f"store: {scanned} events; bare scan {results['baseline_scan']['seconds']} s", flush=True)

    env = {**os.environ, "CASELOG_DATA_DIR": str(data), "CASELOG_SEAL_KEY": str(keys / "seal.key")}
    env.pop("CASELOG_DATABASE_URL", None)
    caselog = [sys.executable, "-m", "infra.cli"]
    seals = keys / "seals.jsonl"
    results["seal"] = run([*caselog, "seal", "--out", str(seals)], env)
    print(f"seal: {results['seal']}", flush=True)
    results["seals_file_mb"] = round(seals.stat().st_size / 2**20, 1)
    results["verify"] = run([*caselog, "verify"], env)
    print(f"verify: {results['verify']}", flush=True)
    results["verify_seals"] = run([*caselog, "verify", "--seals", str(seals)], env)
    print(f"verify --seals: {results['verify_seals']}", flush=True)
    every = keys / "every-seal.jsonl"  # every seal of the table (capped at 4,000 heads each), as Kafka carries them
    system = bootstrap(Settings(data_dir=data))
    from infra.seals import table_seals

    rows = table_seals(system.db)
    system.close()
    every.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    results["verify_every_seal"] = {**run([*caselog, "verify", "--seals", str(every)], env), "seals": len(rows)}
    print(f"verify --seals (all {len(rows)} seals): {results['verify_every_seal']}", flush=True)

    results["verify_cadence"] = cadence(data, keys, env, caselog, args.every)
    print(f"verify --seals (a seal every {args.every} events): {results['verify_cadence']}", flush=True)

    system = bootstrap(Settings(data_dir=data))
    with system.db.transaction() as cur:
        rowid, victim, version = cur.execute(
            "SELECT rowid, originator_id, originator_version FROM stored_events ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        cur.execute("DELETE FROM stored_events WHERE rowid = ?", (rowid,))
    system.close()
    tampered = run([*caselog, "verify", "--seals", str(seals)], env)
    from uuid import UUID

    named = f"case {UUID(victim)} version {version}" in tampered["stderr"]
    results["verify_seals_after_deleting_the_last_event"] = {**tampered, "names_the_case": named}
    print(f"tampered: exit {tampered['exit']}, names the case: {named}", flush=True)

    events = results["baseline_scan"]["events"]
    for name in ("verify", "verify_seals", "verify_every_seal", "verify_cadence"):
        results[name]["events_per_second"] = round(events / results[name]["seconds"])
    results["ratios"] = {
        "verify_seals_vs_verify": round(results["verify_seals"]["seconds"] / results["verify"]["seconds"], 2),
        "verify_seals_vs_bare_scan": round(
            results["verify_seals"]["seconds"] / results["baseline_scan"]["seconds"], 2
        ),
    }
    results["target_met"] = all(
        results[n]["seconds"] < 60 for n in ("verify", "verify_seals", "verify_every_seal", "verify_cadence")
    )
    out_path = ROOT / "bench" / "out" / "verify.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    shutil.rmtree(keys, ignore_errors=True)


if __name__ == "__main__":
    main()
