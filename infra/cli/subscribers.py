"""For subscribers of the case-events topic: follow it, and the schemas of what it carries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import orjson
import typer

from infra.cli.console import Failure, cli, emit, handled, kafka_settings
from infra.settings import Settings


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
    from infra.kafka.message import parse_message

    settings = kafka_settings()
    from kafka import TopicPartition

    from infra.kafka.clients import security

    c = make_consumer(settings.kafka_bootstrap, security(settings))
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
    from infra.kafka.schema import asyncapi, event_schemas

    settings = Settings.from_env()
    events, doc = event_schemas(settings), asyncapi(settings)
    if out is None:
        emit({"events": events, "asyncapi": doc})
        return
    (out / "events").mkdir(parents=True, exist_ok=True)
    for name, body in events.items():
        (out / "events" / f"{name}.json").write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    (out / "asyncapi.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"wrote {len(events)} event schemas and asyncapi.json to {out}")
