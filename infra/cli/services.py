"""The long-running processes: the embedded server, the scheduler, the Kafka relay, projection
workers, and their health checks. Each logs JSON lines on stderr (infra.logs, CASELOG_LOG_LEVEL)."""

from __future__ import annotations

import logging

import typer

from domain.errors import FieldError, InvalidInput
from infra import logs
from infra.cli.console import Failure, cli, err, handled, kafka_settings, open_system
from infra.settings import Settings

log = logging.getLogger("caselog.cli")


@cli.command()
@handled
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
) -> None:
    """Run the whole embedded system: HTTP API, dashboard, projections, scheduler."""
    import uvicorn

    from infra.http.app import create_app
    from infra.http.server import TimedH11Protocol
    from infra.identity import load_secret

    system = open_system()
    load_secret(system.settings.data_dir)
    logs.configure(system.settings.log_level)
    store = "postgresql" if system.settings.database_url else str(system.settings.sqlite_path)
    log.info(f"caselog serving on http://{host}:{port} (store: {store}); dashboard at /dashboard, API docs at /docs, "
             "readiness at /readyz, metrics at /metrics; mint a token with `caselog token --role ops --sub you`")
    try:
        settings = system.settings
        protocol = TimedH11Protocol.with_timeouts(settings.http_header_timeout, settings.http_body_timeout)
        uvicorn.run(create_app(system, background=True), host=host, port=port, log_level="warning", http=protocol,
                    log_config=None, access_log=False)  # caselog's JSON logs and its own access log
    finally:
        system.close()


@cli.command()
@handled
def scheduler(
    once: bool = typer.Option(False, "--once", help="fire what is due now and exit"),
) -> None:
    """Run the deadline scheduler alone. One instance is active per store (PostgreSQL advisory
    lock, or a file lock beside SQLite); others wait to take over. With CASELOG_SEAL_KEY the
    active one also seals the store periodically (CASELOG_SEAL_EVERY events, CASELOG_SEAL_SECONDS)."""
    import signal
    import threading
    import time

    from infra.heartbeat import Heartbeat, heartbeat_path
    from infra.seals import periodic_sealer, start_periodic
    from scheduler.service import Leadership

    system = open_system()
    if not once:
        logs.configure(system.settings.log_level)
    try:
        sealer = None if once else periodic_sealer(system)  # CASELOG_SEAL_KEY: seal periodically while active
    except BaseException:
        system.close()
        raise
    sealing = threading.Event()  # set: the sealer stops
    leader = Leadership(system.db)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    alive = Heartbeat(None if once else heartbeat_path(system.settings.data_dir, "scheduler"))
    try:
        while not leader.try_acquire():
            if once or stopping:
                err.print("another scheduler is active; exiting")
                return
            alive.beat()  # a standby is healthy too
            time.sleep(1)
        if once:
            print(f"fired {system.scheduler.fire_due()} deadline events")
            return
        log.info("scheduler active")
        system.scheduler.start()
        if sealer is not None:
            start_periodic(system, sealer, sealing, report=log.warning)
        while not stopping:
            alive.beat()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sealing.set()
        leader.release()
        system.close()


@cli.command()
@handled
def relay(
    retry_parked: bool = typer.Option(False, "--retry-parked",
                                      help="publish the parked events again (after a fix), then exit"),
    shard: str = typer.Option(None, "--shard", metavar="I/N",
                              help="publish only the partitions p with p mod N = I, as shard I of N relay processes "
                                   "(each process one shard, the same N for all, N dividing the topic's partitions; "
                                   "default: every partition)"),
) -> None:
    """Publish every stored event to Kafka (CASELOG_KAFKA_BOOTSTRAP, topic CASELOG_TOPIC) as
    CloudEvents, recording the position only after the broker acknowledged. An event the broker
    refuses or that cannot be encoded is parked (caselog_relay_parked) and the relay goes on.
    Runs until stopped; with --retry-parked, publishes the parked events and exits (1 when some
    are still refused). A relay process is bound by one core: with --shard, N processes share the
    topic's partitions (N must divide their number), each recording its own position; a shard
    started with another N than the running layout's takes over from the lowest position recorded
    (nothing is lost; what the slowest had not recorded is published again) and the relays of the
    old layout stop (exit 1)."""
    import signal
    import threading

    from infra.kafka.relay import RelayStopped

    chosen = _shard(shard)
    if chosen.count > 1 and retry_parked:
        raise InvalidInput(FieldError("--shard", "--retry-parked publishes every parked event whatever its shard: "
                                                 "run it without --shard"))
    settings = kafka_settings()
    if not chosen.fits(settings.topic_partitions):
        raise InvalidInput(FieldError("--shard", f"{chosen.count} shards cannot share the topic's "
                                                 f"{settings.topic_partitions} partitions (CASELOG_TOPIC_PARTITIONS): "
                                                 "N must divide their number"))
    system = open_system()
    relay_ = system.relay(chosen)
    if retry_parked:
        try:
            try:
                published, left = relay_.retry_parked()
            except Exception as exc:  # noqa: BLE001 - the broker is unreachable: nothing was lost
                why = f"{type(exc).__name__}: {exc}"
                raise Failure(f"broker unavailable ({why}); the parked events stay parked") from None
            print(f"published {published} parked events; {left} still parked")
            if left:
                for row in relay_.parked_events():
                    err.print(f"  position {row['position']} case {row['case_id']} version {row['version']}"
                              f" {row['type']}: {row['reason']}", markup=False, highlight=False, soft_wrap=True)
                raise typer.Exit(1)
        finally:
            relay_.close()
            system.close()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs.configure(system.settings.log_level)
    relay_.take_layout()  # (a shard of a new layout starts from the lowest position recorded)
    of = "" if chosen.count == 1 else f" (shard {chosen}: partitions p with p mod {chosen.count} = {chosen.index})"
    log.info(f"relay: publishing to {system.settings.topic}{of} on {system.settings.kafka_bootstrap} from position "
             f"{relay_.position()}")
    try:
        from infra.heartbeat import Heartbeat, heartbeat_path

        relay_.run(stop, report=logging.getLogger("caselog.relay").warning,
                   heartbeat=Heartbeat(heartbeat_path(system.settings.data_dir, chosen.component)))
    except KeyboardInterrupt:
        pass
    except RelayStopped as exc:  # another layout took over, or the topic's partitions do not fit: nothing is lost
        raise Failure(str(exc)) from None
    finally:
        relay_.close()
        system.close()


@cli.command()
@handled
def worker(
    loglevel: str = typer.Option("warning", "--loglevel", help="debug, info, warning or error"),
) -> None:
    """Keep the read models (worklist, certification summary, lookup, review queue, metrics) from
    the Kafka topic into CASELOG_DATABASE_URL, as one member of the consumer group
    CASELOG_WORKER_GROUP (default caselog-projections-<deployment>). Start as many as the topic
    has partitions; run the API with CASELOG_PROJECTIONS=workers. Runs until SIGINT/SIGTERM."""
    from infra.bootstrap import projection_worker

    if loglevel.lower() not in ("debug", "info", "warning", "error"):
        raise InvalidInput(FieldError("--loglevel", "debug, info, warning or error"))
    settings = kafka_settings()
    from consumers.worker import run_worker
    from infra.kafka.clients import security
    from infra.kafka.topic import ensure_topic

    _, app, db = projection_worker(settings)
    logs.configure(settings.log_level)
    if not settings.uses_postgres:
        log.warning("worker: CASELOG_DATABASE_URL is not set; keeping the read models in the SQLite file"
                    " (one worker only)")
    log.info(f"worker: group {settings.group}, topic {settings.topic} on {settings.kafka_bootstrap}")
    try:
        run_worker(app, loglevel=loglevel.lower(), ensure_topic=lambda: ensure_topic(
            settings.kafka_bootstrap, settings.topic, settings.topic_partitions, settings.topic_replication,
            settings.topic_max_message_bytes, security=security(settings)),
            logging_config=logs.dict_config(settings.log_level, libraries=loglevel.lower()))
    finally:
        db.close()


@cli.command()
@handled
def alive(
    component: str = typer.Argument(..., help="relay, scheduler or worker"),
    within: float = typer.Option(60.0, "--within", help="seconds: older heartbeats count as dead"),
    shard: str = typer.Option(None, "--shard", metavar="I/N", help="the relay shard (caselog relay --shard I/N)"),
) -> None:
    """Health check of a long-running process on this host (its data dir): exit 0 when it
    touched its heartbeat file within --within seconds, 1 otherwise. For container health checks."""
    from infra.heartbeat import COMPONENTS, age_seconds, heartbeat_path

    if component not in COMPONENTS:
        raise InvalidInput(FieldError("component", f"one of {', '.join(COMPONENTS)}"))
    if shard is not None and component != "relay":
        raise InvalidInput(FieldError("--shard", "only a relay has shards"))
    if shard is not None:
        component = _shard(shard).component
    age = age_seconds(heartbeat_path(Settings.from_env().data_dir, component))
    if age is None or age > within:
        raise Failure(f"{component}: " + ("no heartbeat yet" if age is None else f"last heartbeat {age:.0f}s ago"))
    print(f"{component}: alive ({age:.0f}s ago)")


def _shard(text: str | None):
    """The relay shard ``--shard`` names (every partition when it is not given)."""
    from infra.kafka.relay import Shard

    if text is None:
        return Shard()
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise InvalidInput(FieldError("--shard", str(exc))) from None
