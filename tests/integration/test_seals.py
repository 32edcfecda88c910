"""The sealer on real stores: its key file, periodic and capped sealing, the seals table as a
second source of heads lists, refusing to sign a broken chain, GET /seals/latest and Kafka."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace

import orjson
import pytest

from domain.seal import check_signature
from infra import seals as sl
from infra.bootstrap import bootstrap
from infra.settings import SettingError, Settings
from tests.support import DME, MD, MEDONC, RADONC, WELLSENSE, submit
from tests.integration.test_seal_tampering import Store, caselog


@pytest.fixture
def keyed(store, tmp_path_factory):
    return replace(store, seal_key=str(tmp_path_factory.mktemp("keys") / "seal.key"))


@pytest.fixture
def system(keyed, clock):
    s = bootstrap(keyed, clock=clock)
    yield s
    s.close()


def some_cases(app, n: int = 5) -> list[str]:
    policies = (DME, WELLSENSE, MEDONC, RADONC)
    ids = [submit(app, policies[i % len(policies)], days_ahead=10 + i)["case_id"] for i in range(n)]
    app.determine(ids[0], actor=MD, outcome="approved")
    return ids


def test_the_key_is_created_0600_outside_the_data_dir_and_refused_elsewhere(tmp_path):
    data = tmp_path / "data"
    key_path = tmp_path / "keys" / "seal.key"
    settings = Settings(data_dir=data, seal_key=str(key_path))
    key = sl.load_key(settings)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sl.load_key(settings).public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    with pytest.raises(SettingError, match="inside the data dir"):
        sl.load_key(replace(settings, seal_key=str(data / "seal.key")))
    os.chmod(key_path, 0o644)
    with pytest.raises(SettingError, match="chmod 600"):
        sl.load_key(settings)
    with pytest.raises(SettingError, match="CASELOG_SEAL_KEY"):
        sl.load_key(replace(settings, seal_key=None))


def test_seal_without_a_key_or_with_one_in_the_data_dir_exits_2_naming_the_variable(tmp_path):
    env = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path)}
    env.pop("CASELOG_DATABASE_URL", None)
    env.pop("CASELOG_SEAL_KEY", None)
    for extra in ({}, {"CASELOG_SEAL_KEY": str(tmp_path / "seal.key")}):
        out = subprocess.run(
            [sys.executable, "-m", "infra.cli", "seal"], env={**env, **extra}, capture_output=True, text=True
        )
        assert out.returncode == 2 and "CASELOG_SEAL_KEY" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "seal.key").exists()


def test_the_periodic_sealer_seals_new_events_and_the_store_matches(system):
    sealer = sl.periodic_sealer(system)
    stop = threading.Event()
    thread = sl.start_periodic(replace_settings(system, seal_every=3, seal_seconds=0.2), sealer, stop)
    try:
        some_cases(system.app, 3)
        deadline = time.monotonic() + 20
        while sl.sealed_position(system.db) < system.app.max_position():
            assert time.monotonic() < deadline, "no seal came"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
    seals = sl.table_seals(system.db)
    assert seals and all(check_signature(s)["fingerprint"] == sealer.fingerprint for s in seals)
    check = sl.check_store(system, seals, {sealer.fingerprint})
    assert check.findings == [] and check.checked == len(seals)


def replace_settings(system, **changes):
    """The same system with other settings (the periodic sealer reads its cadence there)."""
    clone = replace(system)
    clone.settings = replace(system.settings, **changes)
    return clone


def test_capped_seals_chain_and_the_seals_table_names_the_case_when_the_file_cannot(system, tmp_path):
    ids = some_cases(system.app, 5)
    sealer = sl.Sealer(system.app, system.db, sl.load_key(system.settings), deployment="test", max_heads=2)
    made = sealer.seal()
    assert len(made) == 3 and [len(m["heads"]) for m in made] == [2, 2, 2]  # the last: case 5, then case 1 determined
    assert [m["seal"]["previous"] for m in made[1:]] == [sl.seal_digest(m) for m in made[:-1]]
    bare = [
        {k: v for k, v in m.items() if k not in ("heads", "heads_after")} for m in made
    ]  # a source without heads lists
    Store(system).execute("DELETE FROM {table} WHERE originator_id = ?", (Store(system)._id(ids[3]),))
    check = sl.check_store(system, bare, {sealer.fingerprint})
    assert [f.case_id for f in check.findings] == [ids[3]] and "deleted" in str(check.findings[0])


def test_a_second_seal_with_nothing_new_appends_the_last_seal_with_no_heads(keyed, tmp_path, system):
    some_cases(system.app, 2)
    seals = tmp_path / "seals.jsonl"
    first = caselog(keyed, "seal", "--out", str(seals))
    second = caselog(keyed, "seal", "--out", str(seals))
    assert first.returncode == 0 and second.returncode == 0 and "nothing new since seal #1" in second.stdout, (
        second.stderr
    )
    a, b = (orjson.loads(line) for line in seals.read_text().splitlines())
    assert a["seal"] == b["seal"] and a["heads_after"] == 0 and len(a["heads"]) == 2
    assert b["heads_after"] == a["seal"]["position"] and b["heads"] == []
    system.app.place_hold(submit(system.app, WELLSENSE)["case_id"], ["notes"], actor=MD)
    assert caselog(keyed, "seal", "--out", str(seals)).returncode == 0
    c = orjson.loads(seals.read_text().splitlines()[-1])
    assert c["seal"]["seq"] == 2 and c["heads_after"] == a["seal"]["position"] and len(c["heads"]) == 1
    assert caselog(keyed, "verify", "--seals", str(seals)).returncode == 0


def test_the_sealer_will_not_sign_a_chain_broken_after_its_last_seal(keyed, system):
    ids = some_cases(system.app, 2)
    assert caselog(keyed, "seal").returncode == 0
    store = Store(system)
    _, _, _, _, state = store.rows(ids[1])[0]
    state["member"]["last_name"] = "Changed"
    store.write_state(ids[1], 1, state)
    store.rechain(ids[1], 1)
    system.app.place_hold(ids[1], ["notes"], actor=MD)  # the application builds on the recomputed chain
    out = caselog(keyed, "seal")
    assert out.returncode == 1 and f"case {ids[1]} version 2" in out.stderr and "prev_hash" in out.stderr, out.stderr


def test_latest_seal_is_served_to_auditors_only(system):
    from tests.e2e.http_support import make_api

    api = make_api(system)
    r = api.get("/seals/latest", who="auditor")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    some_cases(system.app, 2)
    sl.make_sealer(system).seal()
    for who in ("auditor", "admin"):
        r = api.get("/seals/latest", who=who)
        assert r.status_code == 200 and check_signature(r.json())["position"] == system.app.max_position()
    assert api.get("/seals/latest", who="provider").status_code == 403
    assert api.get("/seals/latest", who="ops").status_code == 403


def test_seals_published_to_kafka_check_the_store(kafka_store, tmp_path_factory):
    settings = replace(
        kafka_store, seal_key=str(tmp_path_factory.mktemp("keys") / "seal.key"), seal_topic="caselog.seals"
    )
    s = bootstrap(settings)
    try:
        ids = some_cases(s.app, 3)
    finally:
        s.close()
    env = {"CASELOG_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    out = caselog_env(settings, env, "seal")
    assert out.returncode == 0, out.stderr
    ok = caselog_env(settings, env, "verify", "--seals", "kafka")
    assert ok.returncode == 0 and "1 seals" in ok.stdout, ok.stderr
    s = bootstrap(settings)
    try:
        Store(s).execute("DELETE FROM {table} WHERE originator_id = ?", (Store(s)._id(ids[1]),))
        with s.db.transaction() as cur:
            cur.execute(
                "DELETE FROM caselog_seals"
            )  # the attacker also empties the seals table: the topic has the heads
    finally:
        s.close()
    bad = caselog_env(settings, env, "verify", "--seals", "kafka")
    assert bad.returncode == 1 and f"case {ids[1]} version 1: deleted" in bad.stderr, bad.stderr


def caselog_env(settings, extra: dict, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CASELOG_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
        "CASELOG_SEAL_KEY": settings.seal_key,
        **extra,
    }
    env.pop("CASELOG_DATABASE_URL", None)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_caselog_scheduler_seals_periodically(tmp_path, tmp_path_factory):
    key = tmp_path_factory.mktemp("keys") / "seal.key"
    settings = Settings(data_dir=tmp_path, seal_key=str(key))
    s = bootstrap(settings)
    try:
        some_cases(s.app, 2)
    finally:
        s.close()
    env = {
        **os.environ,
        "CASELOG_DATA_DIR": str(tmp_path),
        "CASELOG_SEAL_KEY": str(key),
        "CASELOG_SEAL_EVERY": "1",
        "CASELOG_SEAL_SECONDS": "0.5",
    }
    env.pop("CASELOG_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "scheduler"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        s = bootstrap(settings)
        sl.ensure_table(s.db)
        try:
            deadline = time.monotonic() + 30
            while sl.sealed_position(s.db) < s.app.max_position():
                assert time.monotonic() < deadline and proc.poll() is None, "the scheduler sealed nothing"
                time.sleep(0.2)
        finally:
            s.close()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "Traceback" not in stderr, stderr
