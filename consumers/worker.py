"""The scaled-out read side: a faust-streaming app that consumes the case-events topic and keeps
the projections, with the same projection code as the embedded mode, in PostgreSQL.

Any number of ``caselog worker`` processes join one consumer group; Kafka splits the topic's
partitions among them. Exactly-once comes from our own tracking rows (one per projection and
partition, written in the same transaction as the rows, see
``ProjectionRunner.apply_partitioned``), not from faust's ``exactly_once`` or its tables, which
have open recovery and rebalance bugs upstream. ``take_events`` acknowledges a batch only after
its transaction committed, so the group's committed offsets never run ahead of the tracking
rows; a worker that restarts (or takes over a partition) re-reads at most the batches in
flight and skips them by their store position. A batch whose transaction fails is retried with
backoff and never acknowledged. A message that is not a CloudEvent of ours is logged and kept
in ``caselog_worker_rejects`` (with its partition and offset), never silently dropped.

The read models show and search members by name, date of birth and id, which a topic published in
minimum mode (``CASELOG_KAFKA_PHI=minimum``, the default) does not carry: the workers read a topic
published with ``CASELOG_KAFKA_PHI=full``, kept internal (TLS, SASL and ACLs; subscribers outside get a
minimum topic from a second relay). A minimum-mode event is set aside in ``caselog_worker_rejects``
with the reason, never applied half-blank.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Sequence

from consumers.topic import record_of
from infra.heartbeat import Heartbeat
from infra.kafka.clients import Security, faust_credentials
from infra.kafka.message import parse_message
from projections.base import Projection
from infra.store.runner import ProjectionRunner

log = logging.getLogger("caselog.worker")

REJECTS = (
    "CREATE TABLE IF NOT EXISTS caselog_worker_rejects (topic TEXT NOT NULL, partition INTEGER NOT NULL,"
    " kafka_offset BIGINT NOT NULL, error TEXT NOT NULL, value BYTEA, PRIMARY KEY (topic, partition, kafka_offset))"
)


def headers_of(message: Any) -> dict[str, bytes]:
    headers = message.headers or {}
    return dict(headers.items() if hasattr(headers, "items") else headers)


class ProjectionWorker:
    """Decodes a batch of messages into records and hands them to the runner; nothing else."""

    def __init__(self, runner: ProjectionRunner, projections: Sequence[Projection], topic: str,
                 retry_seconds: tuple[float, float] = (0.5, 30.0)):
        self.runner = runner
        self.projections = list(projections)
        self.topic = topic
        self.retry_seconds = retry_seconds
        with runner.db.schema() as cur:
            cur.execute(REJECTS if runner.db.dialect == "postgres" else REJECTS.replace("BYTEA", "BLOB"))

    def decode(self, messages: Sequence[Any]) -> tuple[list, list]:
        """(partition, offset, record) of every message, and the ones that are not our events."""
        batch, rejects = [], []
        for m in messages:
            try:
                event = parse_message(m.value, headers_of(m), m.key)
                batch.append((m.partition, m.offset, record_of(event, require_full=True)))
            except Exception as error:  # noqa: BLE001 - kept, not dropped
                rejects.append((self.topic, m.partition, m.offset, f"{type(error).__name__}: {error}", m.value))
        return batch, rejects

    def apply(self, messages: Sequence[Any]) -> int:
        batch, rejects = self.decode(messages)
        if rejects:
            log.error("%d message(s) on %s cannot be applied (%s); kept in caselog_worker_rejects",
                      len(rejects), self.topic, rejects[0][3])
            with self.runner.db.transaction() as cur:
                cur.executemany("INSERT INTO caselog_worker_rejects (topic, partition, kafka_offset, error, value)"
                                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rejects)
        return self.runner.apply_partitioned(self.projections, self.topic, batch)

    async def apply_until_done(self, messages: Sequence[Any]) -> int:
        """Apply in a thread (the event loop keeps heartbeating); retry until it commits."""
        delay, ceiling = self.retry_seconds
        while True:
            try:
                return await asyncio.to_thread(self.apply, messages)
            except Exception:  # noqa: BLE001 - a database outage must not lose the batch
                log.exception("applying %d message(s) failed; retrying in %.1f s", len(messages), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ceiling)


def faust_app(worker: ProjectionWorker, *, bootstrap: str, group: str, datadir: str, batch: int = 5000,
              within_seconds: float = 0.5, session_timeout: float = 10.0, heartbeat: Heartbeat | None = None,
              security: Security | None = None):
    """The faust app: one agent over the case-events topic, batches of ``batch`` events.
    ``heartbeat`` is a file touched every 10 s while the worker runs (for health checks); ``security``:
    the deployment's Kafka security (``infra.kafka.clients.security``), as faust's broker credentials."""
    import faust

    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(security),
        datadir=datadir,
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_every=batch,
        broker_commit_interval=1.0,
        # Kafka's classic defaults rather than faust's 60 s: a worker that died (SIGKILL, lost
        # host) hands its partitions to the others within seconds, not a minute.
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=session_timeout / 3,
        broker_rebalance_timeout=session_timeout,
    )
    topic = app.topic(worker.topic, key_type=bytes, value_type=bytes, internal=False)

    @app.agent(topic, name="projections")
    async def project(stream):
        async for events in stream.take_events(batch, within=within_seconds):
            await worker.apply_until_done([e.message for e in events])

    if heartbeat is not None:
        @app.timer(interval=10.0, on_leader=False)
        async def alive() -> None:
            heartbeat.beat()

    return app


def run_worker(app, loglevel: str = "warning", ensure_topic: Callable[[], None] | None = None,
               logging_config: dict | None = None) -> None:
    """Run until SIGINT/SIGTERM (faust's worker handles both and leaves the group cleanly).
    ``ensure_topic`` creates the topic first when the relay has not yet (a broker that cannot
    be reached now is left to faust, which waits for it); ``logging_config`` replaces faust's."""
    from faust.worker import Worker

    if ensure_topic is not None:
        try:
            ensure_topic()
        except Exception as error:  # noqa: BLE001
            log.warning("could not make sure the topic exists (%s); joining the group anyway", error)

    Worker(app, loglevel=loglevel, redirect_stdouts=False, logging_config=logging_config).execute_from_commandline()
