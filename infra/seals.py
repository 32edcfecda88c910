"""Seals in practice (see ``domain/seal.py`` for what a seal is): the signing key file, the
seals table, the sealer (on demand and periodic), and where seals go (a JSON-lines file, the
Kafka topic, ``GET /seals/latest``).

The key is the file named by ``CASELOG_SEAL_KEY`` (PKCS#8 PEM), created 0600 on first use and
refused inside the data dir or when others may read it: a copy of the database must not carry
the means to re-seal it. One sealer per store is active at a time (the process holding the
scheduler's lock); ``caselog seal`` may run beside it: the seals table's sequence decides.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.chain import ChainBreak, ChainWalker
from domain.seal import Heads, SealInvalid, _Chain, check_signature, fingerprint, new_seal, public_raw, seal_digest
from infra.store.database import Database
from infra.settings import SettingError, Settings

log = logging.getLogger("caselog.seals")
KEY_VARIABLE = "CASELOG_SEAL_KEY"
TABLE = "caselog_seals"
MAX_HEADS = 4000  # heads listed beside one seal (~180 bytes each): a seal stays under Kafka's 1 MB message limit


class SealRefused(RuntimeError):
    """The sealer will not sign: the store no longer matches the last seal, or a chain is broken."""


# ---- the key ------------------------------------------------------------------------------


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def load_key(settings: Settings, *, create: bool = True) -> Ed25519PrivateKey:
    """The seal signing key from ``CASELOG_SEAL_KEY``, created (0600) when missing and ``create``."""
    if settings.seal_key is None:
        raise SettingError(
            KEY_VARIABLE,
            "set it to the path of the seal signing key (a file outside the data dir, created on first use)",
        )
    path = Path(os.path.expanduser(settings.seal_key)).resolve()
    data_dir = Path(settings.data_dir).resolve()
    if _inside(path, data_dir):
        raise SettingError(
            KEY_VARIABLE,
            f"{path} is inside the data dir {data_dir}: keep the seal key elsewhere, "
            "so whoever holds a copy of the data cannot re-seal it",
        )
    if path.is_dir():
        raise SettingError(KEY_VARIABLE, f"{path} is a directory, not a key file")
    if not path.exists():
        if not create:
            raise SettingError(KEY_VARIABLE, f"{path} does not exist")
        return _create_key(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SettingError(KEY_VARIABLE, f"{path} may be read by others (mode {mode:o}): chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise SettingError(KEY_VARIABLE, f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SettingError(KEY_VARIABLE, f"{path} is not an Ed25519 key")
    return key


def _create_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return load_key_file(path)
    except OSError as exc:
        raise SettingError(KEY_VARIABLE, f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    log.warning("created the seal key %s (%s)", path, fingerprint(public_raw(key)))
    return key


def load_key_file(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def trusted_fingerprint(settings: Settings) -> str | None:
    """The fingerprint of the local seal key, when CASELOG_SEAL_KEY names an existing one."""
    if settings.seal_key is None or not Path(os.path.expanduser(settings.seal_key)).exists():
        return None
    return fingerprint(public_raw(load_key(settings, create=False)))


# ---- the seals table ----------------------------------------------------------------------


def ensure_table(db: Database) -> None:
    with db.schema() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (seq BIGINT PRIMARY KEY, position BIGINT NOT NULL, "
            "events BIGINT NOT NULL, sealed_at TEXT NOT NULL, signed TEXT NOT NULL, heads_after BIGINT NOT NULL, "
            "heads TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0)"
        )


def _row(signed: str, heads_after: int, heads: str) -> dict[str, Any]:
    return {**orjson.loads(signed), "heads_after": heads_after, "heads": orjson.loads(heads)}


def table_seals(db: Database) -> list[dict[str, Any]]:
    """Every seal in the table, in sequence, with its heads list (signatures not checked here)."""
    ensure_table(db)
    with db.transaction() as cur:
        rows = cur.execute(f"SELECT signed, heads_after, heads FROM {TABLE} ORDER BY seq").fetchall()
    return [_row(*r) for r in rows]


def latest_seal(db: Database) -> dict[str, Any] | None:
    """The newest signed seal (without its heads list), or None."""
    ensure_table(db)
    with db.transaction() as cur:
        row = cur.execute(f"SELECT signed FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    return orjson.loads(row[0]) if row else None


def sealed_position(db: Database) -> int:
    with db.transaction() as cur:
        row = cur.execute(f"SELECT MAX(position) FROM {TABLE}").fetchone()
    return int(row[0] or 0)


# ---- the sealer ---------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Sealer:
    """Seals the store: keeps every case's head from the last seal on, walks the events after
    it (checking their chains: it never signs a broken one), signs, and records the seal."""

    def __init__(
        self,
        app: Any,
        db: Database,
        key: Ed25519PrivateKey,
        *,
        deployment: str,
        max_heads: int = MAX_HEADS,
        batch: int = 5000,
    ):
        self.app, self.db, self.key, self.deployment = app, db, key, deployment
        self.max_heads, self.batch = max_heads, batch
        self.fingerprint = fingerprint(public_raw(key))
        self._heads: Heads | None = None
        self._last: dict[str, Any] | None = None
        self._lock = threading.Lock()
        ensure_table(db)

    # ---- state ----------------------------------------------------------------------------

    def _load(self) -> None:
        """The heads as of the last seal: rebuilt from the table's heads lists when they hash
        to it (and every seal there is ours), else from the store, which must then match it."""
        rows = table_seals(self.db)
        self._heads, self._last = Heads(), None
        if not rows:
            return
        last = rows[-1]
        try:
            body = check_signature(last)
        except SealInvalid as exc:
            raise SealRefused(
                f"the last seal in {TABLE} (#{last.get('seal', {}).get('seq')}) is not valid: {exc}"
            ) from None
        heads = None
        if all(r["seal"].get("fingerprint") == self.fingerprint for r in rows):
            try:
                heads = _Chain([r for r in rows if _valid(r)]).at_seal(body)
            except SealInvalid:
                heads = None
        if heads is None:
            heads = self._walk_to(body["position"])
            if (heads.digest(), heads.events) != (body["heads_digest"], body["events"]):
                raise SealRefused(
                    f"the store no longer matches seal #{body['seq']} (position {body['position']}): "
                    "run `caselog verify --seals` to see what changed; not sealing on top of it"
                )
        heads.position, heads.events, heads.cases = body["position"], body["events"], body["cases"]
        self._heads, self._last = heads, last

    def _walk_to(self, position: int) -> Heads:
        heads = Heads()
        for pos, case_id, version, _type, state in self.app.stored_events(batch=self.batch):
            if pos > position:
                break
            heads.record(pos, case_id, version, str(state.get("hash")))
        return heads

    @property
    def last(self) -> dict[str, Any]:
        """The body of the newest seal (after ``seal()``)."""
        assert self._last is not None
        return self._last["seal"]

    @property
    def position(self) -> int:
        return self._last["seal"]["position"] if self._last else sealed_position(self.db)

    # ---- sealing --------------------------------------------------------------------------

    def seal(self) -> list[dict[str, Any]]:
        """Seal every event not yet sealed (in several seals when more than ``max_heads`` cases
        changed); returns the new seals, each with its heads list. Nothing new and a seal
        already there: returns []."""
        with self._lock:
            for attempt in (1, 2):
                if self._heads is None:
                    self._load()
                try:
                    return self._seal()
                except _Raced:
                    self._heads = None  # another sealer went first: start again from its seal
            raise SealRefused("another sealer keeps sealing first; try again")

    def _seal(self) -> list[dict[str, Any]]:
        heads = self._heads
        assert heads is not None
        walker, changed, made = ChainWalker(), set(), []
        for position, case_id, version, type_name, state in self.app.stored_events(
            batch=self.batch, start=heads.position + 1
        ):
            if case_id not in changed and len(changed) >= self.max_heads:
                made.append(self._emit(heads, changed))
                changed = set()
            if case_id not in changed:
                changed.add(case_id)
                head = heads.get(case_id)
                if head is not None:
                    walker.accept(case_id, head.version, head.hash)
            try:
                walker.feed(case_id, version, type_name, state)
            except ChainBreak as exc:
                self._heads = None
                raise SealRefused(
                    f"hash chain broken: case {exc.case_id} version {exc.version}: {exc.reason}; "
                    "not sealing (run `caselog verify --seals`)"
                ) from None
            heads.record(position, case_id, version, state["hash"])
        if changed or self._last is None:
            made.append(self._emit(heads, changed))
        return made

    def _emit(self, heads: Heads, changed: set[str]) -> dict[str, Any]:
        """Sign and record the heads as they stand; ``changed``: the cases whose head moved since
        the last seal (every case, for the first)."""
        last = self._last["seal"] if self._last else None
        after = last["position"] if last else 0
        signed = new_seal(
            heads,
            deployment=self.deployment,
            seq=(last["seq"] + 1) if last else 1,
            previous=seal_digest(self._last) if self._last else None,
            sealed_at=_now(),
            key=self.key,
        )
        entry = {**signed, "heads_after": after, "heads": [heads.get(c).entry(c) for c in sorted(changed)]}
        body = signed["seal"]
        with self.db.transaction() as cur:
            if self.db.dialect == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('caselog-seal'))")
            top = cur.execute(f"SELECT MAX(seq) FROM {TABLE}").fetchone()[0]
            if (top or 0) != body["seq"] - 1:
                raise _Raced()
            cur.execute(
                f"INSERT INTO {TABLE} (seq, position, events, sealed_at, signed, heads_after, heads) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    body["seq"],
                    body["position"],
                    body["events"],
                    body["sealed_at"],
                    orjson.dumps(signed).decode(),
                    after,
                    orjson.dumps(entry["heads"]).decode(),
                ),
            )
        self._last = signed
        return entry

    def for_file(self, after: int) -> dict[str, Any]:
        """The last seal as a line of a seals file whose previous line sealed ``after`` (0: none):
        its heads list names every case changed since."""
        assert self._last is not None and self._heads is not None
        return {**self._last, "heads_after": after, "heads": self._heads.changed_after(after)}

    # ---- periodic -------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        *,
        every: int,
        seconds: float,
        publish: Callable[[], int] | None = None,
        report: Callable[[str], None] = print,
    ) -> None:
        """Seal when ``every`` events are unsealed or ``seconds`` passed with any unsealed; publish
        what is not yet on Kafka. Until ``stop`` is set."""
        last_seal, last_problem = time.monotonic(), None
        while not stop.wait(min(1.0, seconds)):
            try:
                unsealed = self.app.max_position() - self.position
                if unsealed >= every or (unsealed > 0 and time.monotonic() - last_seal >= seconds):
                    for entry in self.seal():
                        body = entry["seal"]
                        log.info(
                            "sealed #%d at position %d (%d events)", body["seq"], body["position"], body["events"]
                        )
                    last_seal = time.monotonic()
                if publish is not None:
                    publish()
                last_problem = None
            except SealRefused as exc:
                if str(exc) != last_problem:
                    report(f"sealer: {exc}")
                    last_problem = str(exc)
            except Exception as exc:  # noqa: BLE001 - the store or the broker may be away: next round
                log.warning("sealer: %s: %s", type(exc).__name__, exc)


class _Raced(Exception):
    pass


def _valid(row: dict) -> bool:
    try:
        check_signature(row)
        return True
    except SealInvalid:
        return False


# ---- where seals go -----------------------------------------------------------------------


def last_line(path: Path, chunk: int = 1 << 16) -> bytes | None:
    """The last non-empty line of a file, read from its end."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        while end > 0:
            step = min(chunk, end)
            end -= step
            f.seek(end)
            data = f.read(step) + data
            stripped = data.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        return data.rstrip(b"\n") or None


def append_to_file(path: Path, sealer: Sealer) -> dict[str, Any]:
    """Append the sealer's last seal to a JSON-lines file, with the heads changed since the
    file's previous seal (every head when the file has none of this key's seals)."""
    after = 0
    previous = last_line(path)
    if previous:
        try:
            body = check_signature(orjson.loads(previous))
            if body["fingerprint"] == sealer.fingerprint and body["position"] <= sealer.position:
                after = body["position"]
        except (orjson.JSONDecodeError, SealInvalid):
            after = 0
    entry = sealer.for_file(after)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(orjson.dumps(entry) + b"\n")
    return entry


def read_file(path: Path) -> list[Any]:
    """The seals of a JSON-lines file (a line that is not JSON is kept as a string, and so
    reported as not a seal)."""
    out: list[Any] = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    out.append(line.decode(errors="replace")[:80])
    return out


class Publisher:
    """Publishes the seals not yet on the Kafka topic, in sequence, marking each once acknowledged."""

    def __init__(self, db: Database, settings: Settings):
        from infra.kafka.clients import security

        self.db, self.bootstrap, self.topic = db, settings.kafka_bootstrap, settings.seal_topic
        self.replication = settings.topic_replication
        self.security = security(settings)
        self._producer = None
        self._topic_ready = False

    def publish(self, timeout: float = 15.0) -> int:
        with self.db.transaction() as cur:
            rows = cur.execute(
                f"SELECT seq, signed, heads_after, heads FROM {TABLE} WHERE published = 0 ORDER BY seq"
            ).fetchall()
        if not rows:
            return 0
        if not self._topic_ready:
            from infra.kafka.topic import ensure_topic

            ensure_topic(self.bootstrap, self.topic, 1, self.replication, security=self.security)
            self._topic_ready = True
        if self._producer is None:
            from infra.kafka.clients import producer

            self._producer = producer(
                self.bootstrap,
                self.security,
                acks="all",
                enable_idempotence=True,
                max_request_size=4 << 20,
                client_id="caselog-sealer",
            )
        for seq, signed, heads_after, heads in rows:
            value = orjson.dumps(_row(signed, heads_after, heads))
            self._producer.send(self.topic, key=b"seal", value=value).get(timeout=timeout)
            with self.db.transaction() as cur:
                cur.execute(f"UPDATE {TABLE} SET published = 1 WHERE seq = ?", (seq,))
        return len(rows)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=1)
            self._producer = None


def read_topic(settings: Settings) -> list[Any]:
    """Every seal on the Kafka topic, oldest first."""
    from consumers.topic import partition_stream, partitions_of
    from infra.kafka.clients import security

    sec = security(settings)
    out: list[Any] = []
    for partition in partitions_of(settings.kafka_bootstrap, settings.seal_topic, sec):
        for _, _, _, value in partition_stream(settings.kafka_bootstrap, settings.seal_topic, partition, security=sec):
            try:
                out.append(orjson.loads(value))
            except orjson.JSONDecodeError:
                out.append(value[:80].decode(errors="replace"))
    return out


def make_sealer(system: Any) -> Sealer:
    return Sealer(system.app, system.db, load_key(system.settings), deployment=system.settings.deployment)


def periodic_sealer(system: Any) -> Sealer | None:
    """The sealer a long-running process starts once it holds the scheduler's lock (so one per
    store), checked at start-up (a bad CASELOG_SEAL_KEY is refused then); None without a key."""
    return make_sealer(system) if system.settings.seal_key is not None else None


def start_periodic(
    system: Any, sealer: Sealer, stop: threading.Event, report: Callable[[str], None] = print
) -> threading.Thread:
    """Seal every CASELOG_SEAL_EVERY events or CASELOG_SEAL_SECONDS, and publish, in a thread."""
    publisher = Publisher(system.db, system.settings) if system.settings.kafka_bootstrap else None
    thread = threading.Thread(
        target=sealer.run,
        args=(stop,),
        name="sealer",
        daemon=True,
        kwargs={
            "every": system.settings.seal_every,
            "seconds": system.settings.seal_seconds,
            "publish": publisher.publish if publisher else None,
            "report": report,
        },
    )
    thread.start()
    return thread


def read_source(settings: Settings, source: str) -> list[Any]:
    """The seals of ``source``: a JSON-lines file, or ``kafka`` (the seals topic)."""
    from domain.errors import FieldError, InvalidInput

    if source == "kafka":
        try:
            signed = read_topic(settings)
        except Exception as exc:  # noqa: BLE001 - no topic, or the broker is away: said, not a traceback
            raise InvalidInput(
                FieldError(
                    "--seals", f"cannot read the topic {settings.seal_topic} on {settings.kafka_bootstrap}: {exc}"
                )
            ) from None
    else:
        try:
            signed = read_file(Path(source))
        except OSError as exc:
            raise InvalidInput(FieldError("--seals", f"cannot read {source}: {exc.strerror}")) from None
    if not signed:
        raise InvalidInput(FieldError("--seals", f"no seals in {source}"))
    return signed


def trust(settings: Settings, fingerprints: list[str]) -> set[str] | None:
    """The keys to accept: those given, else the local seal key's, else None (the seals' own)."""
    if fingerprints:
        return set(fingerprints)
    local = trusted_fingerprint(settings)
    return {local} if local else None


def ok_line(check: Any, *, pinned: bool) -> str:
    positions = [s["seal"]["position"] for s in check.seals]
    return (
        f"ok: {check.walker.events} events in {check.walker.cases} cases, every chain intact; {check.checked} seals "
        f"(positions {min(positions)}..{max(positions)}) match, signed by {check.key}"
        + ("" if pinned else " (not pinned: pass --fingerprint to pin it)")
        + (f"; {check.unsealed} later events not sealed yet" if check.unsealed else "")
    )


def check_store(
    system: Any, seals: Iterable[Any], trusted: set[str] | None, progress: Callable[[int], None] | None = None
):
    """Walk the store once against ``seals`` (and its own seals table, to name cases)."""
    from domain.seal import SealCheck

    check = SealCheck(seals, trusted, more=[lambda: table_seals(system.db)])
    n = 0
    for position, case_id, version, type_name, state in system.app.stored_events(batch=5000):
        check.feed(position, case_id, version, type_name, state)
        n += 1
        if progress and n % 5000 == 0:
            progress(n)
    check.finish()
    return check
