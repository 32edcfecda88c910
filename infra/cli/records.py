"""The record and its audit: verify the hash chains, rebuild the read models, list the reads of a case."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.chain import ChainBreak
from domain.errors import FieldError, InvalidInput
from infra.bootstrap import System
from infra.cli.console import Failure, cli, emit, err, handled, open_system


@cli.command()
@handled
def verify() -> None:
    """Walk every case's SHA-256 hash chain. Exit 1 naming the first broken case and version."""
    system = open_system()
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
def replay(
    projection: list[str] = typer.Option([], "--projection", help="rebuild only this projection (repeatable)"),
    source: str = typer.Option("store", "--source", help="store, or kafka (the case-events topic, deduplicated by caseversion)"),
) -> None:
    """Drop and rebuild projections from the event store or the Kafka topic, in batches, with a progress bar."""
    if source not in ("store", "kafka"):
        raise InvalidInput(FieldError("--source", "store or kafka"))
    system = open_system()
    if source == "kafka" and not system.settings.kafka_bootstrap:
        system.close()
        raise InvalidInput(FieldError("--source", "kafka needs CASELOG_KAFKA_BOOTSTRAP"))
    try:
        try:
            names = [p.name for p in system.runner.by_name(projection)]
        except KeyError as exc:
            raise InvalidInput(FieldError("--projection", str(exc.args[0]))) from None
        total = system.app.max_position()
        stored = _check_topic_holds_the_store(system) if source == "kafka" else 0
        read = 0
        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("replay", total=total)
            records = None
            if source == "kafka":
                from consumers.topic import read_topic

                def counted(events):
                    nonlocal read
                    for event in events:
                        read += 1
                        yield event

                records = counted(read_topic(system.settings.kafka_bootstrap, system.settings.topic))
            done = system.runner.rebuild(names, progress=lambda n: bar.update(task, completed=n), source=records)
    finally:
        system.close()
    if read < stored:  # re-deliveries hid missing events from the check above
        raise Failure(f"the topic held {read} distinct events of the {stored} in the store; the read models are"
                      " incomplete: run caselog replay (from the store)")
    print(f"rebuilt {', '.join(names)} from {done} events ({source})")


def _check_topic_holds_the_store(system: System) -> int:
    """Before ``replay --source kafka`` drops anything: refuse (exit 1) when the topic holds fewer
    messages than the store holds events (recreated empty, lost data, events still parked).
    Returns how many events the store holds."""
    from infra.kafka.relay import parked_count, stored_event_count
    from infra.kafka.topic import high_water_marks

    settings = system.settings
    try:
        marks = high_water_marks(settings.kafka_bootstrap, settings.topic)
    except Exception as exc:  # noqa: BLE001 - an unreachable broker is a failure, not a traceback
        raise Failure(f"cannot read topic {settings.topic} on {settings.kafka_bootstrap}"
                      f" ({type(exc).__name__}: {exc})") from None
    held = sum(end - begin for begin, end in (marks or {}).values())
    stored = stored_event_count(system.db, system.app.recorder)
    if held < stored:
        parked = parked_count(system.db, settings.topic)
        parked_note = f" ({parked} parked by the relay)" if parked else ""
        raise Failure(f"topic {settings.topic} holds {held} messages, fewer than the {stored} events in the store"
                      f"{parked_note}; nothing was replaced: replay from the store, or let the relay republish first")
    return stored


@cli.command("audit-report")
@handled
def audit_report(case: str = typer.Option(..., "--case", help="case id")) -> None:
    """List every read of a case: who, when, what."""
    system = open_system()
    try:
        system.app.load(case)
        emit({"case_id": case, "reads": system.access.reads(case)})
    finally:
        system.close()
