"""Member data at rest (issue 12), on SQLite and a real PostgreSQL: an encrypted store is unreadable
without its key and verifiable with it, rekey turns encryption on and rotates the key, and the data dir
is closed to everyone else whatever the umask."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sqlite3
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import psycopg
import pytest

from infra.bootstrap import bootstrap
from infra.demo.samples import document, later, request
from infra.settings import Settings
from tests.support import DME, MD, PROVIDER

NAMES = (b"Hopperfield", b"Gracelyn", b"1961-07-19", b"hopperfield-sleep-study", b"snoring since the accident",
         b"called the member at home")
PDF = b"%PDF-1.4\n% Hopperfield, Gracelyn: polysomnography 1961-07-19\n%%EOF\n"


def is_json(state: bytes) -> bool:
    """Whether a stored state reads as JSON (ciphertext begins with a random nonce, whose first byte
    is "{" once in 256: that alone says nothing)."""
    try:
        orjson.loads(state)
    except orjson.JSONDecodeError:
        return False
    return True

def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def submit_member(system, member_no: int, first: str = "Gracelyn", last: str = "Hopperfield") -> str:
    """A case for a member with a name no sample uses, a clinical answer in free text, a named document,
    then a hold and a clinical upload with notes: every kind of member data an event carries."""
    body = request(DME, date_of_service=later(system.clock.now(), 10), member_no=member_no,
                   documents=[document("hopperfield-sleep-study.pdf", seed=str(member_no))],
                   clinical={"history": "snoring since the accident"})
    body["member"].update(first_name=first, last_name=last, dob="1961-07-19")
    case_id = system.app.submit(body, actor=PROVIDER).view["case_id"]
    system.app.place_hold(case_id, ["sleep study"], actor=MD)
    system.app.upload_clinical(case_id, [document("hopperfield-follow-up.pdf", seed=str(member_no))],
                               "called the member at home", actor=PROVIDER)
    return case_id


def caselog(settings, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASELOG_")}
    env.update(CASELOG_DATA_DIR=str(settings.data_dir), **extra)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    if settings.kafka_bootstrap:
        env.update(CASELOG_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, CASELOG_TOPIC=settings.topic)
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def raw_states(settings) -> list[bytes]:
    """Every stored event's state as the database holds it, read with the database's own client."""
    if settings.database_url:
        with psycopg.connect(settings.database_url) as conn:
            return [bytes(r[0]) for r in conn.execute("SELECT state FROM caselog_events").fetchall()]
    with sqlite3.connect(settings.sqlite_path) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT state FROM stored_events").fetchall()]


def test_an_encrypted_store_is_unreadable_without_its_key_and_verifies_with_it(store, clock, tmp_path_factory):
    key = new_key()
    settings = replace(store, cipher_key=key)
    system = bootstrap(settings, clock=clock)
    try:
        case_id = submit_member(system, 7)
        system.app.determine(case_id, outcome="approved", actor=MD)
        upload = system.documents.put("hopperfield.pdf", io.BytesIO(PDF), uploader=PROVIDER, at="2026-03-10T14:00:00Z")
        system.catch_up()
        with system.db.transaction() as cur:  # the read models are built as ever
            assert cur.execute("SELECT member_name FROM worklist").fetchone()[0] == "Hopperfield, Gracelyn"
        events = system.app.max_position()
        on_disk = system.documents.path(upload["sha256"]).read_bytes()
        assert system.documents.read(upload["sha256"]) == PDF
        assert system.documents.misnamed(upload["sha256"], "hopperfield.png") is not None
    finally:
        system.close()

    states = raw_states(settings)
    assert len(states) == events
    for state in states:
        assert not is_json(state) and not any(name in state for name in NAMES)
    assert b"Hopperfield" not in on_disk and b"%PDF" not in on_disk
    assert hashlib.sha256(PDF).hexdigest() == upload["sha256"]  # still named by its plaintext

    seal_key = tmp_path_factory.mktemp("keys") / "seal.key"
    seals = seal_key.parent / "seals.jsonl"
    sealed = caselog(settings, "seal", "--out", str(seals), CASELOG_SEAL_KEY=str(seal_key), CASELOG_CIPHER_KEY=key)
    assert sealed.returncode == 0, sealed.stderr
    ok = caselog(settings, "verify", CASELOG_CIPHER_KEY=key)
    assert ok.returncode == 0 and f"ok: {events} events" in ok.stdout, ok.stderr
    ok = caselog(settings, "verify", "--seals", str(seals), CASELOG_SEAL_KEY=str(seal_key), CASELOG_CIPHER_KEY=key)
    assert ok.returncode == 0 and "1 seals" in ok.stdout, ok.stderr

    for wrong in ({}, {"CASELOG_CIPHER_KEY": new_key()}):
        refused = caselog(settings, "verify", **wrong)
        assert refused.returncode == 1, refused.stderr
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot be read" in lines[0] and "CASELOG_CIPHER_KEY" in lines[0], refused.stderr
        assert "Traceback" not in refused.stderr
    blind = bootstrap(store, clock=clock)
    try:
        with pytest.raises(Exception):
            blind.app.view(case_id)
        with pytest.raises(ValueError):
            blind.documents.read(upload["sha256"])
    finally:
        blind.close()


def test_rekey_encrypts_a_plaintext_store_and_rotates_it_to_a_new_key(store, clock, tmp_path_factory):
    first = bootstrap(store, clock=clock)  # before encryption
    try:
        submit_member(first, 1)
        plain_doc = first.documents.put("hopperfield.pdf", io.BytesIO(PDF), uploader=PROVIDER,
                                        at="2026-03-10T14:00:00Z")
    finally:
        first.close()
    assert any(b"Hopperfield" in s for s in raw_states(store))
    old, new = new_key(), new_key()

    turned_on = caselog(store, "rekey", CASELOG_CIPHER_KEY=old)
    assert turned_on.returncode == 0, turned_on.stderr
    count = len(raw_states(store))
    assert f"events: {count} re-encrypted, 0 already" in turned_on.stdout
    assert "documents: 1 re-encrypted" in turned_on.stdout
    assert not any(name in s for s in raw_states(store) for name in NAMES)

    under_old = bootstrap(replace(store, cipher_key=old), clock=clock)
    try:
        submit_member(under_old, 2)
        before = under_old.app.max_position()
    finally:
        under_old.close()
    seal_key = tmp_path_factory.mktemp("keys") / "seal.key"
    seals = seal_key.parent / "seals.jsonl"
    assert caselog(store, "seal", "--out", str(seals), CASELOG_SEAL_KEY=str(seal_key),
                   CASELOG_CIPHER_KEY=old).returncode == 0

    # The rotation: the new key encrypts, both read; then rekey moves everything under the new one.
    rotating = replace(store, cipher_key=new, cipher_old_key=old)
    during = bootstrap(rotating, clock=clock)
    try:
        submit_member(during, 3)
        assert during.app.verify().events == during.app.max_position()
        total = during.app.max_position()
    finally:
        during.close()
    rekeyed = caselog(store, "rekey", CASELOG_CIPHER_KEY=new, CASELOG_CIPHER_OLD_KEY=old)
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert f"events: {before} re-encrypted, {total - before} already under the current key" in rekeyed.stdout
    again = caselog(store, "rekey", CASELOG_CIPHER_KEY=new)
    assert f"events: 0 re-encrypted, {total} already" in again.stdout and "documents: 0 re-encrypted" in again.stdout

    ok = caselog(store, "verify", "--seals", str(seals), CASELOG_SEAL_KEY=str(seal_key), CASELOG_CIPHER_KEY=new)
    assert ok.returncode == 0, ok.stderr  # positions and hashes unchanged: the old seal still holds
    assert caselog(store, "verify", CASELOG_CIPHER_KEY=old).returncode == 1, "the old key reads nothing now"
    after = bootstrap(replace(store, cipher_key=new), clock=clock)
    try:
        assert after.documents.read(plain_doc["sha256"]) == PDF
        assert after.app.verify().events == total
    finally:
        after.close()
    wrong = caselog(store, "rekey", CASELOG_CIPHER_KEY=new_key())
    assert wrong.returncode == 1 and f"{total + 1} that no key decrypts" in wrong.stderr, wrong.stderr


# ---- the data dir ----------------------------------------------------------------------------------


def modes(root: Path) -> dict[str, str]:
    found = {str(root): oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.stat().st_mode))
    return found


def test_the_data_dir_is_0700_and_every_file_in_it_0600_under_umask_022(tmp_path, clock):
    from infra.heartbeat import Heartbeat, heartbeat_path
    from infra.identity import load_secret
    from scheduler.service import Leadership

    previous = os.umask(0o022)
    try:
        data = tmp_path / "data"
        system = bootstrap(Settings(data_dir=data, cipher_key=new_key()), clock=clock)
        leader = Leadership(system.db)
        try:
            submit_member(system, 5)
            system.catch_up()
            system.documents.put("hopperfield.pdf", io.BytesIO(PDF), uploader=PROVIDER, at="2026-03-10T14:00:00Z")
            secret_env = os.environ.pop("CASELOG_SECRET", None)
            try:
                load_secret(data)
            finally:
                if secret_env is not None:
                    os.environ["CASELOG_SECRET"] = secret_env
            Heartbeat(heartbeat_path(data, "relay"), every=0).beat()
            assert leader.try_acquire()
            found = modes(data)
        finally:
            leader.release()
            system.close()
        for name in ("caselog.db", "caselog.db-wal", "caselog.db-shm", "secret.key", "relay.heartbeat",
                     "scheduler.lock"):
            assert found.get(name) == "0o600", (name, found)
        assert sum(1 for n in found if n.startswith("documents/") and len(n) > 20) == 1
        wrong = {name: mode for name, mode in found.items()
                 if mode != ("0o700" if (data / name).is_dir() or name == str(data) else "0o600")}
        assert wrong == {}, wrong

        # A data dir left open by an earlier version is closed when caselog opens it.
        older = tmp_path / "older"
        older.mkdir(mode=0o755)
        sqlite3.connect(older / "caselog.db").close()  # 0644 under umask 022
        (older / "caselog.db-shm").touch(mode=0o644)
        assert modes(older)["caselog.db"] == "0o644"
        bootstrap(Settings(data_dir=older), clock=clock).close()
        left = modes(older)
        assert left.pop(str(older)) == "0o700" and left.pop("caselog.db") == "0o600"
        assert {mode for name, mode in left.items() if not (older / name).is_dir()} <= {"0o600"}, left
    finally:
        os.umask(previous)
