"""The composition root: settings in, a wired system out. Nothing else builds stores,
clocks or the application."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.conninfo import make_conninfo

from application.caselog import CaseLog
from domain.errors import FieldError, InvalidInput
from domain.validation import parse_instant
from infra.store.access import Access
from infra.store.cipher import Keyring, event_store_env as cipher_env
from infra.clock import LATEST, LONGEST_MOVE, ManualClock, SystemClock
from infra.kafka.message import size_within
from infra.settings import SettingError, Settings, check_choice, usable_dir
from infra.store.database import Database, connection_params
from infra.store.documents import DocumentStore
from infra.store.registry import Registry
from infra.store.runner import ProjectionRunner
from infra.store.transcoder import OrjsonTranscoder
from infra.store.writer import Writer
from projections.board import Board
from projections.case_owners import CaseOwners
from projections.certification import CertificationSummary
from projections.lookup import AuthorizationLookup
from projections.metrics import PriorAuthorizationMetrics
from projections.review_queue import ReviewQueue
from projections.worklist import Worklist
from scheduler.deadlines import Deadlines
from scheduler.service import DeadlineScheduler


def read_models() -> list:
    """Every read model, in one place (the embedded runner and the Kafka workers use this)."""
    return [Worklist(), CertificationSummary(), AuthorizationLookup(), ReviewQueue(), PriorAuthorizationMetrics(), Board()]


# Kept from the store by every process serving the API, whatever CASELOG_PROJECTIONS says: the
# scheduler's deadlines, and whose each case is (who may see it, at once after a write).
ALWAYS_IN_PROCESS = ("deadlines", "case_owners")


def projections() -> list:
    """The read models, whose each case is, and the scheduler's deadlines."""
    return [*read_models(), CaseOwners(), Deadlines()]


def event_store_env(settings: Settings) -> dict[str, str]:
    if settings.uses_postgres:
        info = connection_params(settings)
        return {
            "PERSISTENCE_MODULE": "infra.store.eventstore:PostgresFactory",
            "POSTGRES_CONNINFO": make_conninfo(**info),  # the URL's options too (sslmode, application_name...)
            "POSTGRES_DBNAME": str(info.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(info.get("host") or "localhost"),
            "POSTGRES_PORT": str(info.get("port") or "5432"),
            "POSTGRES_USER": str(info.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(info.get("password") or ""),
            "POSTGRES_POOL_SIZE": "5",
            "POSTGRES_MAX_OVERFLOW": "5",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "CREATE_TABLE": "y",
            **cipher_env(settings),
        }
    usable_dir(settings.data_dir)
    return {
        "PERSISTENCE_MODULE": "infra.store.eventstore:SQLiteFactory",
        "SQLITE_DBNAME": str(settings.sqlite_path),
        "SQLITE_LOCK_TIMEOUT": "30",
        "CREATE_TABLE": "y",
        **cipher_env(settings),  # CASELOG_CIPHER_KEY: events encrypted (AES-GCM) and compressed by the mapper
    }


def make_clock(settings: Settings) -> Any:
    if settings.clock == "manual":
        try:
            start = parse_instant(settings.clock_start) if settings.clock_start else None
            if start is not None and start.tzinfo is not None and start >= LATEST:
                raise ValueError(f"before {LATEST.date().isoformat()}")
            return ManualClock(start)
        except ValueError as exc:
            raise SettingError("CASELOG_CLOCK_START", f"an ISO 8601 instant with a time zone ({exc})") from None
    check_choice("CASELOG_CLOCK", settings.clock)
    return SystemClock()


def projection_worker(settings: Settings | None = None):
    """A `caselog worker`: the read models kept from the Kafka topic into the configured database."""
    from consumers.worker import ProjectionWorker, faust_app
    from infra.heartbeat import Heartbeat, heartbeat_path

    settings = settings or Settings.from_env()
    if not settings.kafka_bootstrap:
        raise SettingError("CASELOG_KAFKA_BOOTSTRAP", "caselog worker needs the Kafka bootstrap servers")
    usable_dir(settings.data_dir)  # 0700: faust's own files (its datadir) are kept behind it
    datadir = usable_dir(settings.data_dir / "faust")
    db = Database(settings)
    models = read_models()
    worker = ProjectionWorker(ProjectionRunner(db, None, models), models, settings.topic)
    app = faust_app(worker, bootstrap=settings.kafka_bootstrap, group=settings.group, datadir=str(datadir),
                    heartbeat=Heartbeat(heartbeat_path(settings.data_dir, "worker"), every=0),
                    security=kafka_security(settings))
    return worker, app, db


def kafka_security(settings: Settings) -> dict:
    """Every Kafka client's security settings (CASELOG_KAFKA_SECURITY_PROTOCOL, SASL, TLS files)."""
    from infra.kafka.clients import security

    return security(settings)


def disclosure(settings: Settings):
    """What the relay publishes (CASELOG_KAFKA_PHI): the full record, or the minimum necessary with the member
    pseudonymized under CASELOG_PSEUDONYM_KEY (else a key derived from the token signing secret)."""
    from infra.identity import load_secret
    from infra.kafka.disclosure import Disclosure, pseudonym_key

    check_choice("CASELOG_KAFKA_PHI", settings.kafka_phi)
    if settings.kafka_phi == "full":
        return Disclosure("full")
    if settings.pseudonym_key is not None and len(settings.pseudonym_key) < 32:
        raise SettingError("CASELOG_PSEUDONYM_KEY", "at least 32 characters (e.g. `openssl rand -base64 32`)")
    secret = "" if settings.pseudonym_key else load_secret(settings.data_dir)
    return Disclosure("minimum", pseudonym_key(settings.pseudonym_key, secret))


@dataclass
class System:
    settings: Settings
    clock: Any
    db: Database
    registry: Registry
    app: CaseLog
    runner: ProjectionRunner
    scheduler: DeadlineScheduler
    access: Access
    documents: DocumentStore

    @property
    def in_process(self) -> list[str]:
        """The projections this process keeps from the store (with CASELOG_PROJECTIONS=workers,
        the read models come from `caselog worker` and only the deadlines are kept here)."""
        if self.settings.projections == "workers":
            return list(ALWAYS_IN_PROCESS)
        return [p.name for p in self.runner.projections]

    def catch_up(self) -> int:
        return self.runner.catch_up(self.in_process)

    def caught_up_to(self, position: int | None) -> None:
        """The read models this process keeps include the event at ``position`` (a write's answer
        waits for its own events): at once when the batch that recorded it applied them."""
        if self.runner.writer is None:
            self.catch_up()
        else:
            self.runner.writer.caught_up_to(position)

    def close(self) -> None:
        self.scheduler.stop()
        if self.runner.writer is not None:
            self.runner.writer.close()
        self.app.close()
        self.db.close()

    def relay(self, shard=None):
        """The Kafka relay for this store (CASELOG_KAFKA_BOOTSTRAP must be set); ``shard`` (a
        ``infra.kafka.relay.Shard``): the partitions it publishes, by default all of them."""
        from infra.kafka.relay import Relay, Shard

        relay = Relay(self.app.recorder, self.db, bootstrap=self.settings.kafka_bootstrap, topic=self.settings.topic,
                      partitions=self.settings.topic_partitions, replication=self.settings.topic_replication,
                      max_message_bytes=self.settings.topic_max_message_bytes, deployment=self.settings.deployment,
                      decode=self.app.stored_state, disclosure=disclosure(self.settings),
                      security=kafka_security(self.settings), shard=shard or Shard())
        relay.wake_on(self.app.on_saved)  # the API's relay (infra/background.py) publishes a write at once
        return relay

    def advance_clock(self, delta: timedelta | None = None, to: datetime | None = None) -> int:
        """Move the manual clock and fire everything that became due, in due order. A move
        backwards, an advance of more than LONGEST_MOVE, or one to LATEST or later is refused
        naming the field."""
        if not getattr(self.clock, "manual", False):
            raise RuntimeError("only the manual clock can be moved")
        field = "to"
        if to is None:
            if delta is None or delta < timedelta(0):
                raise InvalidInput(FieldError("advance", "a duration: the clock only moves forward"))
            if delta > LONGEST_MOVE:
                raise InvalidInput(FieldError("advance", f"the test clock moves {LONGEST_MOVE.days} days at most"))
            field, to = "advance", self.clock.now() + delta
        if to.tzinfo is None or to < self.clock.now():
            raise InvalidInput(FieldError(field, "an instant with a time zone, not before the clock's now"))
        if to >= LATEST:
            raise InvalidInput(FieldError(field, f"the test clock stays before {LATEST.date().isoformat()}"))
        self.clock.set(to)
        return self.scheduler.fire_due()


def bootstrap(settings: Settings | None = None, *, clock: Any = None) -> System:
    settings = settings or Settings.from_env()
    check_choice("CASELOG_PROJECTIONS", settings.projections)
    clock = clock or make_clock(settings)
    usable_dir(settings.data_dir)  # a data dir caselog cannot write is refused first, naming CASELOG_DATA_DIR
    documents_dir = usable_dir(settings.data_dir / "documents")
    keyring = Keyring.of(settings)  # a bad CASELOG_CIPHER_KEY is refused before anything opens
    db = Database(settings)  # on PostgreSQL: one connection within CASELOG_CONNECT_TIMEOUT, or StoreUnavailable
    try:
        documents = DocumentStore(documents_dir, db, keyring)
        registry = Registry(db)
        app = CaseLog(event_store_env(settings), clock=clock, registry=registry, transcoder=OrjsonTranscoder(),
                      published_size=lambda stored: size_within(stored, settings.deployment, settings.max_event_bytes),
                      max_event_bytes=settings.max_event_bytes)
        runner = ProjectionRunner(db, app.recorder, projections(), decode=app.stored_state)
        in_process = [p.name for p in runner.projections]
        if settings.projections == "workers":
            in_process = list(ALWAYS_IN_PROCESS)
        writer = Writer(db, app.recorder, runner, in_process)  # group commit, projections in the same transaction
        app.recorder.writer = runner.writer = writer
    except BaseException:
        db.close()
        raise
    return System(settings=settings, clock=clock, db=db, registry=registry, app=app, runner=runner,
                  scheduler=DeadlineScheduler(app, runner, horizon=timedelta(seconds=settings.scheduler_horizon_seconds)), access=Access(db),
                  documents=documents)
