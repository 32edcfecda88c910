"""The Kafka relay (outbox): publishes every stored event, in store order, to the case-events
topic as a CloudEvents 1.0 structured JSON message, and records its position only after the
broker acknowledged. A crash re-publishes at most the unacknowledged tail, with the same
CloudEvents ``id``; subscribers dedupe by ``caseversion`` (see ``consumers/dedupe.py``).

One batch stays in flight while the relay reads, encodes and sends the next; a batch's position is
recorded once every event in it was acknowledged or parked (while ``run`` goes, by a thread of its
own, so that sending never waits for the store's write lock), so a crash or an outage re-publishes
at most the two unsettled batches and what was settled in the last moments before it.

SQLite has no subscription, so the relay polls (10 ms after catching up, backing off to
``poll_seconds``); a write committed in the relay's own process wakes it at once (``wake_on``,
``CaseLog.on_saved``), and on PostgreSQL it also listens (the eventsourcing subscription,
LISTEN/NOTIFY) to wake early, and polls anyway, since a lost NOTIFY must not stall it. While the
broker is down, writes go on; the relay retries with backoff and reports its lag.

A broker outage is not the same as a message the broker refuses (too large, invalid) or a stored
event that cannot be encoded: such an event is parked in ``caselog_relay_parked`` with the
reason, logged once, and the relay goes on past it (the case's later events are parked behind
it, so a subscriber still sees each case in order). That holds for what is refused when it is sent
(it cannot be encoded, or is over the producer's size limit, which is the topic's): a refusal the
broker answers later, in the acknowledgement, is parked when it comes back, and later events of
the case already sent (in the same batch, or the one in flight after it) are on the topic.
``caselog relay --retry-parked`` publishes
them after the fix. The relay also checks that the topic still holds what it acknowledged: a
topic recreated empty (or one that lost data) is re-published from the start.

One relay publishes every partition; N relay processes can share the work (``caselog relay --shard
I/N``): shard I publishes the partitions p with p mod N = I (a case's events, in one partition, stay
with one process, in order), keeping its own position. N divides the topic's partitions, so that a
case's shard is its key's hash mod N whatever their number (partitions added keep every case with
its shard; a number N does not divide stops the shards, which would otherwise lose the events of
the cases that moved from a slower shard to a faster one). Every shard of a layout starts where the
lowest position recorded for the topic stood (the layout before, one relay or another N), and the
rows of that earlier layout are then dropped: changing N re-publishes at most what the slowest relay
had not yet recorded, and loses nothing; a relay of the earlier layout still running finds its row
gone and stops (``RelayStopped``). A relay's process is bound by one core (the GIL): two
shards on two cores published 1.4 to 1.8 times as fast as one (bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from uuid import UUID

from infra.heartbeat import Heartbeat
from infra.kafka.clients import Security, producer
from infra.kafka.disclosure import Disclosure
from infra.kafka.message import case_id_text, stored_message_fields
from infra.kafka.topic import ensure_topic, high_water_marks
from infra.settings import KAFKA_MAX_MESSAGE_BYTES
from infra.store.database import Database, events_table, log_rows
from infra.store.runner import TRACKING

log = logging.getLogger("caselog.relay")
PARKED = (
    "CREATE TABLE IF NOT EXISTS caselog_relay_parked (topic TEXT NOT NULL, position BIGINT NOT NULL,"
    " case_id TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,"
    " parked_at TEXT NOT NULL, PRIMARY KEY (topic, position))"
)
# How many stored events up to ``position`` are of a shard's cases (``Relay._acknowledged``): a fact of the
# store alone (the shard of a case is its key's hash mod N), kept so that a start does not count the log again.
COUNTED = ("CREATE TABLE IF NOT EXISTS caselog_relay_counted (shard TEXT PRIMARY KEY, position BIGINT NOT NULL,"
           " events BIGINT NOT NULL)")


class StoreUnreadable(RuntimeError):
    """A stored event no configured key decrypts: the relay stops there (and retries) rather than park it."""


class RelayStopped(RuntimeError):
    """The relay cannot go on as configured, and retrying cannot help: a relay of another layout took
    the topic over (this one's position row is gone), or the topic's partitions are a number its
    shards do not divide. Raised out of ``run``; nothing is lost (the position stays recorded)."""


def refused(exc: BaseException) -> bool:
    """A message the broker (or the producer's own size check) refuses for what it is, so that
    sending it again can only fail again; anything else is taken for an outage and retried."""
    from kafka.errors import CorruptRecordError, InvalidRecordError, MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError, CorruptRecordError))


def stored_event_count(db: Database, recorder: Any, upto: int | None = None) -> int:
    """How many events the store holds (at or below position ``upto``). Positions can have gaps
    (a PostgreSQL sequence skips a number on a rolled-back insert), so they are counted."""
    table, column = events_table(db, recorder)
    with db.transaction() as cur:
        if upto is None:
            return int(cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return int(cur.execute(f"SELECT count(*) FROM {table} WHERE {column} <= ?", (upto,)).fetchone()[0])


def parked_count(db: Database, topic: str) -> int:
    """Events of ``topic`` parked by the relay (refused by the broker or not encodable)."""
    with db.schema() as cur:
        cur.execute(PARKED)
        return int(cur.execute("SELECT count(*) FROM caselog_relay_parked WHERE topic = ?", (topic,)).fetchone()[0])


@dataclass(frozen=True)
class Shard:
    """Which partitions a relay publishes: those p with p mod ``count`` = ``index``."""

    index: int = 0
    count: int = 1
    MOST = 64  # shards: more than any topic's partitions a relay would share

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``I/N`` (0 <= I < N <= MOST); ValueError saying what is wrong."""
        numbers = re.fullmatch(r"\s*(\d{1,3})\s*/\s*(\d{1,3})\s*", text, re.ASCII)
        if numbers is None:
            raise ValueError(f"{text!r} is not I/N (this relay's shard I of N, e.g. 0/2)")
        shard = cls(int(numbers[1]), int(numbers[2]))
        if not 1 <= shard.count <= cls.MOST or shard.index >= shard.count:
            raise ValueError(f"{text!r}: N from 1 to {cls.MOST} and I from 0 to N-1")
        return shard

    def owns(self, partition: int) -> bool:
        return partition % self.count == self.index

    def fits(self, partitions: int) -> bool:
        """Whether N shards can share this many partitions: N divides it (then partition mod N is the
        key's hash mod N, the same for any such number)."""
        return partitions > 0 and partitions % self.count == 0

    def tracking_name(self, topic: str) -> str:
        """Its position's row: ``relay:<topic>`` for the one relay of a topic (as before shards),
        ``relay:<topic>#I/N`` for a shard."""
        base = f"{Relay.TRACKING}:{topic}"
        return base if self.count == 1 else f"{base}#{self.index}/{self.count}"

    @property
    def component(self) -> str:
        """Its heartbeat's name (``caselog alive relay --shard I/N``)."""
        return "relay" if self.count == 1 else f"relay-{self.index}of{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def topic_positions(cur: Any, topic: str) -> dict[str, int]:
    """Every relay position recorded for ``topic``, of whatever layout: row name -> position."""
    base = Shard().tracking_name(topic)
    rows = cur.execute("SELECT projection, position FROM caselog_tracking").fetchall()
    return {name: int(position) for name, position in rows if name == base or name.startswith(base + "#")}


def relay_position(db: Database, topic: str) -> int:
    """The position up to which every event of ``topic`` was acknowledged (or parked): the lowest of
    its relays' (one, or each shard's); 0 before any relay ran."""
    with db.read() as cur:  # (the projections' runner made the table)
        return min(topic_positions(cur, topic).values(), default=0)


def _identity(n: Any) -> tuple[str, int, str]:
    """(case id, version, event type) of a stored notification, whatever its state holds."""
    return str(UUID(str(n.originator_id))), n.originator_version, n.topic.rsplit(":", 1)[-1]


@dataclass
class _Batch:
    """Stored events sent and not yet settled: positions ``start`` to ``last`` (``rows``), and the
    (event, future) of each one sent (the others were parked)."""

    start: int
    last: int
    rows: list
    sent: list


class Relay:
    TRACKING = "relay"
    MIN_POLL = 0.01  # seconds: the first poll after catching up
    GATHER = 0.005  # seconds: after a wake, for the writes that follow it to come in the same batch
    RECORD_EVERY = 0.1  # seconds: the recording thread writes the position at most this often
    BATCH_BYTES = 256 * 1024  # a producer record batch per partition (kafka-python's default: 16 KB)

    def __init__(self, recorder: Any, db: Database, *, bootstrap: str, topic: str, partitions: int, deployment: str,
                 decode: Callable[[Any], dict], disclosure: Disclosure, security: Security | None = None,
                 replication: int = 1, max_message_bytes: int = KAFKA_MAX_MESSAGE_BYTES, batch: int = 1000,
                 poll_seconds: float = 0.1, check_seconds: float = 60.0, producer_config: dict | None = None,
                 window: int = 1, shard: Shard = Shard()):
        """``decode``: a stored row's state as written (``CaseLog.stored_state``: the store may encrypt);
        ``disclosure``: what each message discloses (CASELOG_KAFKA_PHI); ``security``: every client's
        Kafka security (``infra.kafka.clients.security``); ``shard``: the partitions it publishes."""
        self.recorder = recorder
        self.db = db
        self.decode = decode
        self.disclosure = disclosure
        self.security = dict(security or {})
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.replication = replication
        self.max_message_bytes = max_message_bytes
        self.deployment = deployment
        self.batch = batch
        self.window = window  # batches left in flight while the next one is read, encoded and sent
        self._inflight: deque[_Batch] = deque()
        self._all_partitions: list[int] = []  # the topic's, sorted, as the producer knows them
        self._partitions: dict[bytes, int] = {}  # case key -> partition (the default partitioner's choice)
        self.poll_seconds = poll_seconds
        self.check_seconds = check_seconds
        self.report_seconds = 5.0  # behind and without an acknowledgement this long: run's report says so
        self.producer_config = producer_config or {}
        self.shard = shard
        self.name = shard.tracking_name(topic)
        self._layout_taken = False  # its position's row made (``take_layout``)
        self._counted = (0, 0)  # (position, events up to it in this shard's partitions): ``check_topic``
        self._producer = None
        self._wake = threading.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self._settled: int | None = None  # the last position settled in this process (maybe not yet written)
        self._recording: threading.Event | None = None  # set: run's recording thread writes the position
        self._pending: int | None = None
        self._pending_lock = threading.Lock()
        self._reset_lock = threading.Lock()
        self.published = 0
        self.parked = 0
        self.last_error: str | None = None
        self._failure: RelayStopped | None = None  # found by the recording thread: the loop raises it
        with db.schema() as cur:
            cur.execute(TRACKING)
            cur.execute(PARKED)
            cur.execute(COUNTED)

    # ---- position and lag ------------------------------------------------------------------

    def take_layout(self) -> None:
        """Make the position rows of this relay's layout (every shard of it), each at the lowest
        position recorded for the topic, and drop those of another layout: at the relay's first
        publish, not when it is made (``--retry-parked`` keeps the layout running)."""
        if self._layout_taken:
            return
        mine = [Shard(i, self.shard.count).tracking_name(self.topic) for i in range(self.shard.count)]
        with self.db.transaction() as cur:
            if self.db.dialect == "postgres":  # two layouts starting at once: one after the other (SQLite's
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('caselog-relay-layout'))")  # write lock does it)
            recorded = topic_positions(cur, self.topic)
            start = min(recorded.values(), default=0)
            for name in mine:
                if name not in recorded:
                    cur.execute("INSERT INTO caselog_tracking (projection, position) VALUES (?, ?)"
                                " ON CONFLICT (projection) DO NOTHING", (name, start))
            dropped = sorted(set(recorded) - set(mine))
            for name in dropped:
                cur.execute("DELETE FROM caselog_tracking WHERE projection = ?", (name,))
        if dropped:
            log.warning("relay: %d shard(s) take over from %s, every shard from position %d",
                        self.shard.count, ", ".join(dropped), start)
        self._layout_taken = True

    def position(self) -> int:
        """The position recorded: 0 before the layout is taken; RelayStopped once another layout took it."""
        with self.db.read() as cur:  # polled often: on SQLite, without the write lock
            row = cur.execute("SELECT position FROM caselog_tracking WHERE projection = ?", (self.name,)).fetchone()
        if row is None and self._layout_taken:
            raise self._taken_over()
        return int(row[0]) if row else 0

    def _taken_over(self) -> RelayStopped:
        return RelayStopped(f"relay {self.name}: its position row is gone: a relay of another layout (another"
                            " --shard N) took the topic over; this relay stops (run one layout at a time)")

    def lag(self) -> int:
        return (self.recorder.max_notification_id() or 0) - self.position()

    def _record(self, position: int) -> None:
        """Record ``position`` (every event up to it acknowledged or parked): at once, or, while ``run``
        goes, by its recording thread, so that the loop never waits behind the store's writers for
        the write lock (on SQLite a busy writer can hold it up for a hundred milliseconds)."""
        self._settled = position if self._settled is None else max(self._settled, position)
        if self._recording is None:
            self._write(position)
            return
        with self._pending_lock:
            self._pending = position if self._pending is None else max(self._pending, position)
        self._recording.set()

    def _write(self, position: int) -> None:
        with self.db.transaction() as cur:
            moved = cur.execute("UPDATE caselog_tracking SET position = ? WHERE projection = ? AND position < ?",
                                (position, self.name, position)).rowcount
            if not moved and cur.execute("SELECT 1 FROM caselog_tracking WHERE projection = ?", (self.name,)).fetchone() is None:
                raise self._taken_over()

    def _write_pending(self) -> None:
        """Write the last position settled and not yet written (the recording thread, and before
        the topic check); a reset of the position (the topic check) waits for a write under way."""
        with self._reset_lock:
            with self._pending_lock:
                position, self._pending = self._pending, None
            if position is not None:
                self._write(position)

    def _record_while(self, stop: threading.Event, recording: threading.Event, ended: threading.Event) -> None:
        """Write the position settled last, at most every RECORD_EVERY: each write takes the store's
        write lock from the writers (more acknowledged events are re-sent after a crash: at most
        that much more); until ``stop`` (or the loop ``ended``: it raised) and nothing is left."""
        while True:
            recording.wait(0.5)
            recording.clear()
            try:
                self._write_pending()
            except RelayStopped as exc:  # the loop raises it
                self._failure = exc
                self._wake.set()
                return
            except Exception as exc:  # noqa: BLE001 - the store may be busy or closing: written at the next turn
                log.warning("relay: could not record the position yet (%s)", exc)
            if (stop.is_set() or ended.is_set()) and self._pending is None:
                return
            ended.wait(self.RECORD_EVERY)

    # ---- parked events ---------------------------------------------------------------------

    def _parked(self) -> tuple[set[int], dict[str, int]]:
        """The parked positions, and each case's first parked version."""
        with self.db.read() as cur:
            rows = cur.execute("SELECT position, case_id, version FROM caselog_relay_parked WHERE topic = ?",
                               (self.topic,)).fetchall()
        first: dict[str, int] = {}
        for _, case_id, version in rows:
            first[case_id] = min(int(version), first.get(case_id, int(version)))
        return {int(r[0]) for r in rows}, first

    def _park(self, n: Any, reason: str) -> None:
        case_id, version, type_name = _identity(n)
        now = datetime.now(timezone.utc).isoformat()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO caselog_relay_parked (topic, position, case_id, version, type, reason, parked_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, position) DO NOTHING",
                        (self.topic, n.id, case_id, version, type_name, reason[:2000], now))
        self.parked += 1
        log.warning("relay: parked position %d (case %s version %d, %s): %s",
                    n.id, case_id, version, type_name, reason)

    def parked_events(self) -> list[dict]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT position, case_id, version, type, reason, parked_at FROM caselog_relay_parked"
                               " WHERE topic = ? ORDER BY position", (self.topic,)).fetchall()
        return [dict(zip(("position", "case_id", "version", "type", "reason", "parked_at"), r)) for r in rows]

    # ---- Kafka -----------------------------------------------------------------------------

    def ensure_topic(self) -> None:
        ensure_topic(self.bootstrap, self.topic, self.partitions, self.replication, self.max_message_bytes,
                     security=self.security)

    def producer_options(self) -> dict[str, Any]:
        """The producer's settings. ``batch_size``: at kafka-python's 16 KB (~14 events) a partition's
        batch fills while the one before it is still being sent, and from then on every send wakes the
        sender thread (a syscall and a turn of its loop per event); at 256 KB the relay wakes it about
        once a hundred events and publishes twice as fast (bench/RESULTS.md, Kafka relay). Half the
        topic's message limit at most: a batch is one message to the broker's size check."""
        return {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_in_flight_requests_per_connection": 5,
                "batch_size": min(self.BATCH_BYTES, self.max_message_bytes // 2),
                "retries": 2**31 - 1, "request_timeout_ms": 10_000, "max_request_size": self.max_message_bytes,
                "client_id": "caselog-relay",
                "allow_auto_create_topics": False,  # the relay creates it, with its partitions and configs
                **self.producer_config}

    def producer(self):
        if self._producer is None:
            self._producer = producer(self.bootstrap, self.security, **self.producer_options())
        return self._producer

    def _send(self, n: Any) -> tuple[Any, str | None]:
        """Send one stored event: (its future, None), or (None, why it cannot be published: it
        cannot be encoded, or the producer's size check refuses it). Anything else raises: an outage. A
        state that cannot be read (no key decrypts it, or it is ciphertext and no key is set) raises
        StoreUnreadable: a wrong or missing CASELOG_CIPHER_KEY must not park the store."""
        try:
            state = self.decode(n.state)
        except Exception as exc:  # noqa: BLE001 - NotDecryptable, zlib or JSON errors: the store, not the event
            raise StoreUnreadable(f"position {n.id}: {type(exc).__name__}: {exc}") from None
        try:
            key, value, headers = stored_message_fields(n.id, n.originator_id, n.originator_version, n.topic, state,
                                                        self.deployment, self.disclosure)
        except Exception as exc:  # noqa: BLE001 - whatever a stored event holds, it must not stop the relay
            return None, f"cannot be encoded as a CloudEvent: {type(exc).__name__}: {exc}"
        try:
            return self.producer().send(self.topic, key=key, value=value, headers=headers,
                                        partition=self._partition_of(key)), None
        except Exception as exc:
            if not refused(exc):
                raise
            return None, f"refused by the producer: {type(exc).__name__}: {exc}"

    def publish_once(self, timeout: float = 15.0) -> int:
        """Send the next batch after what was sent, parking what cannot be published, then settle
        the batches sent before it: record the position once every event up to it was acknowledged
        or parked. While the relay is behind (a full batch read), one batch stays in flight while the
        next is read, encoded and sent (``window``); a read that reaches the end of the log settles
        every batch in flight. Returns how many stored events were read (fewer than ``batch``: the
        relay has caught up, and settled everything it sent)."""
        self.take_layout()
        try:
            start = (self._inflight[-1].last if self._inflight else
                     self._settled if self._settled is not None else self.position()) + 1
            rows = log_rows(self.db, self.recorder, start, self.batch)
            if rows:
                self._inflight.append(self._send_batch(start, rows))
            behind = len(rows) >= self.batch  # else this read reached the end of the log: nothing to overlap
            while len(self._inflight) > (self.window if behind else 0):
                self._settle(self._inflight[0], timeout, flush=not behind)
                self._inflight.popleft()
        except BaseException:
            self._inflight.clear()  # what was not settled is sent again from the recorded position
            raise
        return len(rows)

    def _partition_of(self, key: bytes) -> int | None:
        """The partition kafka-python's default partitioner picks for ``key`` (murmur2 of the key over
        the topic's sorted partitions), remembered per case: a case's events are most of a batch."""
        partition = self._partitions.get(key)
        if partition is None and self._all_partitions:
            from kafka.partitioner.default import murmur2

            partition = self._all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(self._all_partitions)]
            if len(self._partitions) >= 100_000:
                self._partitions.clear()
            self._partitions[key] = partition
        return partition

    def _read_partitions(self) -> None:
        """The topic's partitions as the producer knows them (read per batch: partitions may be added)."""
        known = self.producer().partitions_for(self.topic)
        partitions = sorted(known) if known else []
        if partitions != self._all_partitions:  # (a case's shard stays the same: N divides both numbers)
            self._all_partitions, self._partitions = partitions, {}
        if self.shard.count > 1 and not partitions:  # which events are this shard's cannot be told
            raise RuntimeError(f"the partitions of topic {self.topic} are not known yet")
        if self.shard.count > 1 and not self.shard.fits(len(partitions)):
            raise RelayStopped(f"topic {self.topic} has {len(partitions)} partitions, which {self.shard.count} shards"
                               f" cannot share (N must divide the number of partitions): shard {self.shard} stops")

    def _owns(self, originator_id: Any) -> bool:
        """Whether this relay publishes the case (its partition is this shard's)."""
        return self.shard.count == 1 or self.shard.owns(self._partition_of(case_id_text(originator_id).encode()))

    def _send_batch(self, start: int, rows: list) -> "_Batch":
        self._read_partitions()
        parked_positions, first_parked = self._parked()
        sent: list[tuple[Any, Any]] = []
        for n in rows:
            if not self._owns(n.originator_id):
                continue
            if n.id in parked_positions:
                continue
            if first_parked:
                case_id, version, _ = _identity(n)
                if version > first_parked.get(case_id, version):
                    self._park(n, f"held behind the case's parked version {first_parked[case_id]}"
                                  " (a case is published in order)")
                    continue
            future, reason = self._send(n)
            if future is None:
                self._park(n, reason)
                case_id, version, _ = _identity(n)
                first_parked[case_id] = min(version, first_parked.get(case_id, version))
            else:
                sent.append((n, future))
        return _Batch(start, rows[-1].id, rows, sent)

    def _settle(self, batch: "_Batch", timeout: float, flush: bool) -> None:
        """Wait for a batch's acknowledgements (parking what the broker refused) and record the
        position up to the first event that failed; raise that failure (an outage). ``flush``: send
        what lingers in the producer now (nothing is sent after it: no reason to wait for more)."""
        if flush and any(not f.is_done for _, f in batch.sent):
            self.producer().flush(timeout=timeout)
        failed: dict[int, Exception] = {}
        for n, future in batch.sent:
            if future.succeeded():
                continue
            try:
                future.get(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - sorted below: a refusal is parked, the rest is an outage
                if refused(exc):
                    self._park(n, f"refused by the broker: {type(exc).__name__}: {exc}")
                else:
                    failed[n.id] = exc
        start, rows = batch.start, batch.rows
        done = batch.last if not failed else max((n.id for n in rows if n.id < min(failed)), default=start - 1)
        if done >= start:
            self._record(done)
        self.published += sum(1 for n, _ in batch.sent if n.id <= done and n.id not in failed)
        if failed:
            raise failed[min(failed)]

    def settle(self, timeout: float = 15.0) -> None:
        """Settle every batch in flight (its acknowledgements waited for, the position recorded)."""
        try:
            while self._inflight:
                self._settle(self._inflight[0], timeout, flush=True)
                self._inflight.popleft()
        except BaseException:
            self._inflight.clear()
            raise

    def retry_parked(self, timeout: float = 15.0) -> tuple[int, int]:
        """Publish the parked events again, in store order, one at a time; each acknowledged one
        leaves the table. A case whose event is refused again keeps it and its later events
        parked. Returns (published, still parked). A broker outage raises."""
        self.ensure_topic()
        published, blocked = 0, set()
        for row in self.parked_events():
            if row["case_id"] in blocked:
                continue
            found = log_rows(self.db, self.recorder, row["position"], 1)
            if not found or found[0].id != row["position"]:
                blocked.add(row["case_id"])
                continue
            n = found[0]
            future, reason = self._send(n)
            if future is not None:
                self.producer().flush(timeout=timeout)
                try:
                    future.get(timeout=timeout)
                except Exception as exc:
                    if not refused(exc):
                        raise
                    future, reason = None, f"refused by the broker: {type(exc).__name__}: {exc}"
            if future is None:
                log.warning("relay: parked position %d still cannot be published: %s", n.id, reason)
                with self.db.transaction() as cur:
                    cur.execute("UPDATE caselog_relay_parked SET reason = ? WHERE topic = ? AND position = ?",
                                (reason[:2000], self.topic, n.id))
                blocked.add(row["case_id"])
                continue
            with self.db.transaction() as cur:
                cur.execute("DELETE FROM caselog_relay_parked WHERE topic = ? AND position = ?", (self.topic, n.id))
            published += 1
            self.published += 1
        return published, parked_count(self.db, self.topic)

    # ---- a topic that lost data ------------------------------------------------------------

    def check_topic(self, report: Callable[[str], None] | None = None, beat: Callable[[], None] | None = None) -> bool:
        """Compare the topic with what the relay recorded as acknowledged: when it holds fewer
        messages (recreated empty, or it lost data), start again from position 0. Re-published
        events keep their ids, so a subscriber's dedupe still sees each one once. ``beat``: called
        while a shard counts its events (a first count reads the whole log)."""
        self.take_layout()
        self.settle()  # compare with every acknowledgement recorded, and none recorded after a reset
        self._write_pending()
        position = self.position()
        if position == 0:
            return False
        acknowledged = self._acknowledged(position, beat)
        marks = high_water_marks(self.bootstrap, self.topic, security=self.security)
        if marks is None:  # deleted: create it again now rather than wait for the producer to give up
            self.ensure_topic()
        held = sum(end for partition, (_, end) in (marks or {}).items() if self.shard.owns(partition))
        if held >= acknowledged:
            return False
        of = "" if self.shard.count == 1 else f" (the partitions of shard {self.shard})"
        line = (f"relay: topic {self.topic} holds {held} messages{of} but {acknowledged} events up to position {position}"
                " were acknowledged: the topic lost data; republishing every event from position 0")
        log.warning(line)
        if report is not None:
            report(line)
        with self._reset_lock:  # no position settled before the reset is written after it
            with self._pending_lock:
                self._pending = None
            self._settled = None
            with self.db.transaction() as cur:
                if not cur.execute("UPDATE caselog_tracking SET position = 0 WHERE projection = ?", (self.name,)).rowcount:
                    raise self._taken_over()
        # Republished by a new producer: the old one's idempotence state (its producer id, each partition's
        # sequence number) is of the topic that was lost, and a broker that kept that state for the new topic
        # acknowledges batches it takes for duplicates without storing them (tansu dropped 83 and 121 of 288
        # events so, in two runs of seven; with a new producer none in 8).
        self._reset_producer()
        return True

    def _acknowledged(self, position: int, beat: Callable[[], None] | None = None) -> int:
        """How many events up to ``position`` this relay had acknowledged: the stored events of its
        partitions, less those parked. A shard counts its own by case, reading only the positions
        after those it counted before, in this process or another (``caselog_relay_counted``: what
        was counted is a fact of the store, kept across restarts and layouts)."""
        with self.db.read() as cur:
            parked = cur.execute("SELECT case_id FROM caselog_relay_parked WHERE topic = ? AND position <= ?",
                                 (self.topic, position)).fetchall()
        if self.shard.count == 1:
            return stored_event_count(self.db, self.recorder, position) - len(parked)
        self._read_partitions()
        key = str(self.shard)
        if self._counted == (0, 0):
            with self.db.read() as cur:
                row = cur.execute("SELECT position, events FROM caselog_relay_counted WHERE shard = ?", (key,)).fetchone()
            self._counted = (int(row[0]), int(row[1])) if row else (0, 0)
        upto, count = self._counted if self._counted[0] <= position else (0, 0)
        start = upto
        table, column = events_table(self.db, self.recorder)
        while upto < position:
            end = min(upto + 50_000, position)
            with self.db.read() as cur:
                ids = cur.execute(f"SELECT originator_id FROM {table} WHERE {column} > ? AND {column} <= ?",
                                  (upto, end)).fetchall()
            count += sum(1 for (originator_id,) in ids if self._owns(originator_id))
            upto = end
            if beat is not None:
                beat()
        self._counted = (position, count)
        if position > start:
            with self.db.transaction() as cur:
                cur.execute("INSERT INTO caselog_relay_counted (shard, position, events) VALUES (?, ?, ?)"
                            " ON CONFLICT (shard) DO UPDATE SET position = excluded.position, events = excluded.events",
                            (key, position, count))
        return count - sum(1 for (case_id,) in parked if self._owns(case_id))

    # ---- the loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was committed: publish now rather than at the next poll."""
        self._wake.set()

    def wake_on(self, subscribe: Callable[[Callable[[], None]], Callable[[], None]]) -> None:
        """Wake on each write committed in this process (``subscribe``: ``CaseLog.on_saved``); the
        relay polls anyway, for writers in other processes."""
        self._unsubscribe.append(subscribe(self.wake))

    def _listen(self, stop: threading.Event) -> None:
        """PostgreSQL only: wake the loop on NOTIFY (the loop polls anyway)."""
        try:
            with self.recorder.subscribe(gt=self.recorder.max_notification_id() or 0) as subscription:  # new writes
                for _ in subscription:
                    self._wake.set()
                    if stop.is_set():
                        return
        except Exception as exc:  # noqa: BLE001 - polling carries on without the subscription
            log.info("subscription ended (%s); polling only", exc)

    def _watch(self, stop: threading.Event, report: Callable[[str], None]) -> None:
        """Report the lag while the relay is behind and not moving (a frozen or lost broker
        blocks a send without raising at once), every ``report_seconds``."""
        every, last = self.report_seconds, self.position()
        while not stop.wait(every):
            try:
                now, lag = self.position(), self.lag()
            except Exception:  # noqa: BLE001 - the store may be closing
                continue
            if lag > 0 and now == last:
                report(f"relay: lag {lag} events, no acknowledgement for {every:.0f}s"
                       + (f" ({self.last_error})" if self.last_error else " (waiting for the broker)"))
            last = now

    def run(self, stop: threading.Event, report: Callable[[str], None] | None = None, heartbeat: Heartbeat | None = None) -> None:
        if self.db.dialect == "postgres":
            threading.Thread(target=self._listen, args=(stop,), daemon=True, name="relay-listen").start()
        if report is not None:
            threading.Thread(target=self._watch, args=(stop, report), daemon=True, name="relay-lag").start()
        self._recording, ended = threading.Event(), threading.Event()
        recorder = threading.Thread(target=self._record_while, args=(stop, self._recording, ended), daemon=True,
                                    name="relay-record")
        recorder.start()
        try:
            self._loop(stop, report, heartbeat)
        finally:
            ended.set()
            self._recording.set()
            recorder.join(timeout=30)
            self._recording = None
            try:
                self._write_pending()  # what the thread could not write
            except Exception as exc:  # noqa: BLE001 - the store is closing: those events are sent again
                log.warning("relay: could not record the last position (%s)", exc)

    def _loop(self, stop: threading.Event, report: Callable[[str], None] | None, heartbeat: Heartbeat | None) -> None:
        backoff, topic_ready, checked, idle = 0.5, False, None, self.MIN_POLL
        beat = heartbeat.beat if heartbeat is not None else None
        while not stop.is_set():
            if beat is not None:
                beat()
            if self._failure is not None:
                raise self._failure
            try:
                if not topic_ready:
                    self.ensure_topic()
                    topic_ready, checked = True, None
                if checked is None or time.monotonic() - checked >= self.check_seconds:
                    self.check_topic(report, beat)
                    checked = time.monotonic()
                read = self.publish_once()
                backoff = 0.5
                self.last_error = None
                if read >= self.batch:
                    continue
                # caught up: poll again soon, then less often the longer nothing comes (up to
                # poll_seconds); a write committed in this process, or a NOTIFY, wakes it at once,
                # and the writes of the next few milliseconds go in the same batch
                idle = self.MIN_POLL if read else min(idle * 2, self.poll_seconds)
                if self._wake.wait(idle):
                    self._wake.clear()
                    stop.wait(self.GATHER)
            except RelayStopped as exc:
                log.error("relay: %s", exc)
                raise
            except Exception as exc:  # noqa: BLE001 - the broker may be down: back off and retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._reset_producer()
                topic_ready = False  # a broker that comes back may have lost the topic: check it again
                if isinstance(exc, StoreUnreadable):
                    log.error("relay: cannot read the store (%s): check CASELOG_CIPHER_KEY; retrying in %.1fs",
                              exc, backoff)
                else:
                    log.warning("relay: broker unavailable (%s); retrying in %.1fs", self.last_error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _reset_producer(self) -> None:
        self._inflight.clear()  # unsettled: sent again from the recorded position
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # noqa: BLE001
                pass
            self._producer = None

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._reset_producer()
