"""Tampering that the hash chain alone cannot see, caught by a signed seal taken first.

Each attack runs on its own fresh store (SQLite and a real PostgreSQL), with a handful of
cases, sealed with `caselog seal --out FILE` before it; the attacker writes the database
directly (the event table's rows and, where the chain would give it away, recomputed hashes).
`caselog verify --seals FILE` must exit 1 naming the case; on the untouched store, exit 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from uuid import UUID

import orjson
import pytest

from domain.chain import event_hash, stored_data
from infra.bootstrap import bootstrap
from tests.support import AETNA_RAD, DME, MD, MEDONC, RADONC, WELLSENSE, deny, later, submit


def caselog(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CASELOG_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
        "CASELOG_SEAL_KEY": settings.seal_key,
    }
    env.pop("CASELOG_DATABASE_URL", None)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


class Store:
    """The event table as an attacker with database access sees it: rows by position."""

    def __init__(self, system):
        self.system, self.db = system, system.db
        self.sqlite = system.db.dialect == "sqlite"
        self.table = "stored_events" if self.sqlite else "caselog_events"
        self.pos = "rowid" if self.sqlite else "notification_id"

    def _id(self, case_id: str):
        return case_id.replace("-", "") if self.sqlite else case_id

    def rows(self, case_id: str | None = None) -> list[tuple[int, str, int, str, dict]]:
        """(position, case id, version, topic, state) in store order."""
        where, params = ("WHERE originator_id = ?", (self._id(case_id),)) if case_id else ("", ())
        with self.db.transaction() as cur:
            got = cur.execute(
                f"SELECT {self.pos}, originator_id, originator_version, topic, state FROM {self.table} {where} "
                f"ORDER BY {self.pos}",
                params,
            ).fetchall()
        return [(p, str(UUID(str(c))), v, t, orjson.loads(bytes(s))) for p, c, v, t, s in got]

    def execute(self, sql: str, params=()) -> None:
        with self.db.transaction() as cur:
            cur.execute(sql.format(table=self.table, pos=self.pos), params)

    def write_state(self, case_id: str, version: int, state: dict) -> None:
        self.execute(
            "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (orjson.dumps(state), self._id(case_id), version),
        )

    def move(self, old: int, new: int) -> None:
        self.execute("UPDATE {table} SET {pos} = ? WHERE {pos} = ?", (new, old))

    def insert(self, position: int, case_id: str, version: int, topic: str, state: dict) -> None:
        self.execute(
            "INSERT INTO {table} ({pos}, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
            (position, self._id(case_id), version, topic, orjson.dumps(state)),
        )

    def rechain(self, case_id: str, from_version: int) -> None:
        """Recompute the hash chain of a case from a version on, as an attacker would after an edit."""
        events = self.rows(case_id)
        prev = events[from_version - 2][4]["hash"] if from_version > 1 else "0" * 64
        for _, _, version, topic, state in events[from_version - 1 :]:
            state["prev_hash"] = prev
            state["hash"] = prev = event_hash(
                case_id=case_id,
                version=version,
                type_name=topic.rsplit(":", 1)[-1],
                occurred_at=state["timestamp"],
                actor=state["actor"],
                command=state.get("command"),
                prev_hash=prev,
                data=stored_data(state),
            )
            self.write_state(case_id, version, state)


@pytest.fixture
def sealed(store, clock, tmp_path, tmp_path_factory):
    """A handful of cases through several policies, sealed into a seals file: (settings, store, cases, file)."""
    settings = replace(store, seal_key=str(tmp_path_factory.mktemp("keys") / "seal.key"))
    system = bootstrap(settings, clock=clock)
    app = system.app
    cases = {}
    cases["approved"] = submit(app, DME)["case_id"]
    app.determine(cases["approved"], actor=MD, outcome="approved")
    cases["held"] = submit(app, WELLSENSE)["case_id"]
    app.place_hold(cases["held"], ["imaging report"], actor=MD)
    cases["denied"] = submit(app, MEDONC)["case_id"]
    deny(app, cases["denied"])
    cases["pending"] = submit(app, RADONC)["case_id"]
    cases["other"] = submit(app, AETNA_RAD)["case_id"]
    app.determine(cases["other"], actor=MD, outcome="approved", valid_to=later(clock.now(), 60).isoformat())
    seals = tmp_path / "auditor" / "seals.jsonl"
    out = caselog(settings, "seal", "--out", str(seals))
    assert out.returncode == 0 and "sealed #1" in out.stdout, out.stderr
    try:
        yield settings, Store(system), cases, seals
    finally:
        system.close()


def check(settings, seals: Path) -> subprocess.CompletedProcess:
    return caselog(settings, "verify", "--seals", str(seals))


def chain_alone_passes(store: Store) -> None:
    store.system.app.verify()  # raises ChainBreak if the chain alone could tell


def test_untouched_store_matches_its_seal(sealed):
    settings, store, cases, seals = sealed
    out = check(settings, seals)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok:") and "1 seals" in out.stdout and "SHA256:" in out.stdout


def test_flipped_byte(sealed):
    settings, store, cases, seals = sealed
    victim = cases["held"]
    _, _, _, _, state = store.rows(victim)[0]
    state["actor"]["kind"] = "provideR"
    store.write_state(victim, 1, state)
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim} version 1" in out.stderr, out.stderr


def test_deleted_middle_event(sealed):
    settings, store, cases, seals = sealed
    victim = cases["approved"]
    assert len(store.rows(victim)) >= 3
    store.execute("DELETE FROM {table} WHERE originator_id = ? AND originator_version = 2", (store._id(victim),))
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim} version 3" in out.stderr and "an event is missing" in out.stderr, out.stderr


def test_deleted_last_events_of_a_case(sealed):
    settings, store, cases, seals = sealed
    victim = cases["approved"]
    last = len(store.rows(victim))
    store.execute(
        "DELETE FROM {table} WHERE originator_id = ? AND originator_version >= ?", (store._id(victim), last - 1)
    )
    chain_alone_passes(store)
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim} version {last - 1}: missing" in out.stderr, out.stderr


def test_deleted_whole_case(sealed):
    settings, store, cases, seals = sealed
    victim = cases["denied"]
    store.execute("DELETE FROM {table} WHERE originator_id = ?", (store._id(victim),))
    chain_alone_passes(store)
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim} version 1: deleted" in out.stderr, out.stderr


def test_changed_outcome_with_the_chain_recomputed(sealed):
    settings, store, cases, seals = sealed
    victim = cases["approved"]
    position, _, version, topic, state = next(r for r in store.rows(victim) if r[3].endswith(":CaseDetermined"))
    state["outcome"] = "denied"
    store.write_state(victim, version, state)
    store.rechain(victim, version)
    chain_alone_passes(store)
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim}: altered" in out.stderr, out.stderr


def test_changed_member_name_with_the_chain_recomputed(sealed):
    settings, store, cases, seals = sealed
    victim = cases["other"]
    _, _, _, _, state = store.rows(victim)[0]
    state["member"]["last_name"] = "Someone-Else"
    store.write_state(victim, 1, state)
    store.rechain(victim, 1)
    chain_alone_passes(store)
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim}: altered" in out.stderr, out.stderr


def test_forged_denial_appended_with_a_recomputed_hash(sealed):
    """The forger slots a physician's denial in right after the case's last event (moving the
    later rows up one position), so it reads as written then; the chain alone accepts it."""
    settings, store, cases, seals = sealed
    victim = cases["pending"]
    *_, (last_position, _, last_version, _, last_state) = store.rows(victim)
    _, _, _, topic, denial = next(r for r in store.rows(cases["denied"]) if r[3].endswith(":CaseDetermined"))
    for position, *_ in reversed([r for r in store.rows() if r[0] > last_position]):
        store.move(position, position + 1)
    denial["prev_hash"] = last_state["hash"]
    denial["hash"] = event_hash(
        case_id=victim,
        version=last_version + 1,
        type_name="CaseDetermined",
        occurred_at=denial["timestamp"],
        actor=denial["actor"],
        command=denial.get("command"),
        prev_hash=last_state["hash"],
        data=stored_data(denial),
    )
    store.insert(last_position + 1, victim, last_version + 1, topic, denial)
    chain_alone_passes(store)
    assert store.system.app.view(victim)["status"] == "denied"
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {victim} version {last_version + 1}: added" in out.stderr, out.stderr


def test_reordered_rows_of_two_cases(sealed):
    """Two neighbouring events of different cases trade positions: each chain is still in order."""
    settings, store, cases, seals = sealed
    rows = store.rows()
    (a, case_a, *_), (b, case_b, *_) = next((x, y) for x, y in zip(rows, rows[1:]) if x[1] != y[1])
    store.move(a, -1)
    store.move(b, a)
    store.move(-1, b)
    chain_alone_passes(store)
    out = check(settings, seals)
    assert out.returncode == 1
    assert f"case {case_a}: reordered" in out.stderr and f"case {case_b}: reordered" in out.stderr, out.stderr


def test_deleted_rows_across_cases(sealed):
    settings, store, cases, seals = sealed
    store.execute("DELETE FROM {table} WHERE originator_version > 3")
    chain_alone_passes(store)
    out = check(settings, seals)
    assert out.returncode == 1
    for case_id in (cases["approved"], cases["denied"]):
        assert f"case {case_id} version 4: missing" in out.stderr, out.stderr
