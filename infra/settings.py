"""Every ``CASELOG_*`` setting, read once from the environment by the composition root."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


class SettingError(ValueError):
    """A CASELOG_* variable with a value caselog cannot use (the CLI exits 2 naming it)."""

    def __init__(self, variable: str, message: str):
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class StoreUnavailable(RuntimeError):
    """The store or the data dir a CASELOG_* setting names cannot be used: PostgreSQL unreachable or
    refusing us, a data dir that cannot be created or written (the CLI exits 1 naming the variable)."""

    def __init__(self, variable: str, message: str):
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


def usable_dir(path: Path) -> Path:
    """``path``, created if missing (0700, whatever the umask: the data dir holds member data) and checked
    writable, else StoreUnavailable naming CASELOG_DATA_DIR. One of ours left open to others is closed."""
    if path.exists() and not path.is_dir():
        raise StoreUnavailable("CASELOG_DATA_DIR", f"cannot use {path}: it is a file, not a directory")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        private(path)
        with tempfile.TemporaryFile(dir=path, prefix=".caselog-probe-"):
            pass
    except OSError as exc:
        raise StoreUnavailable("CASELOG_DATA_DIR", f"cannot use {path}: {exc.strerror or exc}") from None
    return path


def private(path: Path) -> Path:
    """Close ``path`` (a directory: 0700; a file: 0600) to group and others when it is ours and open to
    them; a path that does not exist is left alone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty when missing, 0600 whatever the umask (an existing one is closed as by ``private``)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return private(path)


KAFKA_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's default message.max.bytes (1 MiB + 12)
RECORD_OVERHEAD = 1024  # a record's framing in its batch, with room to spare
CHOICES = {"CASELOG_CLOCK": ("system", "manual"), "CASELOG_PROJECTIONS": ("in-process", "workers"),
           "CASELOG_LOG_LEVEL": ("info", "debug", "warning", "error"),

           "CASELOG_KAFKA_PHI": ("minimum", "full"),
           "CASELOG_KAFKA_SECURITY_PROTOCOL": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}


def _number(env: Mapping[str, str], variable: str, default: float, kind: type = int, minimum: float = 1):
    raw = env.get(variable)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingError(variable, f"{raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if value < minimum:
        raise SettingError(variable, f"must be at least {minimum}")
    return value


def check_choice(variable: str, value: str) -> str:
    """``value`` if it is one of the choices of ``variable``, else a SettingError naming them."""
    if value not in CHOICES[variable]:
        raise SettingError(variable, f"one of {', '.join(CHOICES[variable])}, not {value!r}")
    return value


def _choice(env: Mapping[str, str], variable: str, upper: bool = False) -> str:
    raw = env.get(variable) or CHOICES[variable][0]
    return check_choice(variable, raw.upper() if upper else raw.lower())


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./caselog-data")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic: str = "caselog.case-events"
    topic_partitions: int = 6
    topic_replication: int = 1
    topic_max_message_bytes: int = KAFKA_MAX_MESSAGE_BYTES
    max_event_bytes: int = 512 * 1024  # a command whose event would publish larger is refused: every event fits
    deployment: str = "default"
    clock: str = "system"
    clock_start: str | None = None
    scheduler_horizon_seconds: float = 600.0
    projections: str = "in-process"  # or "workers": `caselog worker` processes keep the read models from Kafka
    worker_group: str | None = None
    connect_timeout: int = 4  # seconds to reach PostgreSQL before a command gives up (libpq's connect_timeout)
    http_header_timeout: float = 10.0  # seconds a connection has to deliver a request's complete headers
    http_body_timeout: float = 30.0  # seconds a request body may go without a byte before its connection is closed
    seal_key: str | None = None  # the Ed25519 seal signing key file, outside the data dir (unset: no periodic seals)
    seal_every: int = 1000  # seal once this many events are unsealed...
    seal_seconds: float = 60.0  # ...or this many seconds after the last seal, when any are
    seal_topic: str = "caselog.seals"
    log_level: str = "info"  # the long-running commands' JSON logs (infra.logs)
    session_seconds: int = 3600  # a dashboard sign-in (POST /session) lasts this long, never past its token
    token_ttl_hours: float = 12.0  # `caselog token` without --ttl-hours
    token_max_ttl_hours: float = 24.0  # no token is minted or accepted with a longer lifetime
    # Encryption at rest (infra/store/cipher.py): AES-GCM keys, base64 of 16, 24 or 32 bytes. Stored events and
    # uploaded documents are encrypted under cipher_key; cipher_old_key still decrypts during a rotation.
    cipher_key: str | None = field(default=None, repr=False)
    cipher_old_key: str | None = field(default=None, repr=False)
    # What the case-events topic carries (infra/kafka/disclosure.py): "minimum" (member id pseudonymized, no
    # names, dates of birth, free text or document names) or "full"; pseudonym_key keys the member pseudonym.
    kafka_phi: str = "minimum"
    pseudonym_key: str | None = field(default=None, repr=False)
    # Every Kafka client's security (infra/kafka/clients.py builds their config from these).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ca_file: str | None = None
    kafka_cert_file: str | None = None
    kafka_key_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        topic_max = _number(env, "CASELOG_TOPIC_MAX_MESSAGE_BYTES", KAFKA_MAX_MESSAGE_BYTES, minimum=4096)
        room = topic_max - RECORD_OVERHEAD
        max_event = _number(env, "CASELOG_MAX_EVENT_BYTES", min(cls.max_event_bytes, room), minimum=1024)
        if max_event > room:
            raise SettingError("CASELOG_MAX_EVENT_BYTES", f"at most CASELOG_TOPIC_MAX_MESSAGE_BYTES"
                               f" - {RECORD_OVERHEAD} ({room}), so that every stored event can be published")
        token_max = _number(env, "CASELOG_TOKEN_MAX_TTL_HOURS", cls.token_max_ttl_hours, float, minimum=0.01)
        token_ttl = _number(env, "CASELOG_TOKEN_TTL_HOURS", min(cls.token_ttl_hours, token_max), float, minimum=0.01)
        if token_ttl > token_max:
            raise SettingError("CASELOG_TOKEN_TTL_HOURS", f"at most CASELOG_TOKEN_MAX_TTL_HOURS ({token_max:g})")
        return cls(
            data_dir=Path(env.get("CASELOG_DATA_DIR") or "./caselog-data"),
            database_url=env.get("CASELOG_DATABASE_URL") or None,
            kafka_bootstrap=env.get("CASELOG_KAFKA_BOOTSTRAP") or None,
            topic=env.get("CASELOG_TOPIC") or "caselog.case-events",
            topic_partitions=_number(env, "CASELOG_TOPIC_PARTITIONS", 6),
            topic_replication=_number(env, "CASELOG_TOPIC_REPLICATION", 1),
            topic_max_message_bytes=topic_max,
            max_event_bytes=max_event,
            deployment=env.get("CASELOG_DEPLOYMENT") or "default",
            clock=_choice(env, "CASELOG_CLOCK"),
            clock_start=env.get("CASELOG_CLOCK_START") or None,
            scheduler_horizon_seconds=_number(env, "CASELOG_SCHEDULER_HORIZON_SECONDS", 600.0, float, minimum=0),
            projections=_choice(env, "CASELOG_PROJECTIONS"),
            worker_group=env.get("CASELOG_WORKER_GROUP") or None,
            connect_timeout=_number(env, "CASELOG_CONNECT_TIMEOUT", 4),
            http_header_timeout=_number(env, "CASELOG_HTTP_HEADER_TIMEOUT", 10.0, float, minimum=0.1),
            http_body_timeout=_number(env, "CASELOG_HTTP_BODY_TIMEOUT", 30.0, float, minimum=0.1),
            seal_key=env.get("CASELOG_SEAL_KEY") or None,
            seal_every=_number(env, "CASELOG_SEAL_EVERY", 1000),
            seal_seconds=_number(env, "CASELOG_SEAL_SECONDS", 60.0, float, minimum=0.1),
            seal_topic=env.get("CASELOG_SEAL_TOPIC") or "caselog.seals",
            log_level=_choice(env, "CASELOG_LOG_LEVEL"),
            session_seconds=_number(env, "CASELOG_SESSION_SECONDS", 3600, minimum=60),
            token_ttl_hours=token_ttl,
            token_max_ttl_hours=token_max,
            cipher_key=env.get("CASELOG_CIPHER_KEY") or None,
            cipher_old_key=env.get("CASELOG_CIPHER_OLD_KEY") or None,
            kafka_phi=_choice(env, "CASELOG_KAFKA_PHI"),
            pseudonym_key=env.get("CASELOG_PSEUDONYM_KEY") or None,
            kafka_security_protocol=_choice(env, "CASELOG_KAFKA_SECURITY_PROTOCOL", upper=True),
            kafka_sasl_mechanism=(env.get("CASELOG_KAFKA_SASL_MECHANISM") or "").upper() or None,
            kafka_sasl_username=env.get("CASELOG_KAFKA_SASL_USERNAME") or None,
            kafka_sasl_password=env.get("CASELOG_KAFKA_SASL_PASSWORD") or None,
            kafka_ca_file=env.get("CASELOG_KAFKA_CA_FILE") or None,
            kafka_cert_file=env.get("CASELOG_KAFKA_CERT_FILE") or None,
            kafka_key_file=env.get("CASELOG_KAFKA_KEY_FILE") or None,
        )

    @property
    def group(self) -> str:
        """The Kafka consumer group of this deployment's projection workers."""
        return self.worker_group or f"caselog-projections-{self.deployment}"

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "caselog.db"
