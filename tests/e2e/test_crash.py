"""Crash safety as users meet it: `caselog serve` killed with SIGKILL while clients write to it
concurrently, on SQLite and on PostgreSQL. After a restart every acknowledged write is there,
a retry of any request (acknowledged or cut off) gives one answer and one case, the hash chains
verify, and the read models equal a fresh replay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date

import httpx
import pytest

from infra.bootstrap import bootstrap
from infra.demo.samples import request
from infra.settings import Settings
from tests.integration.test_projections import snapshot
from tests.support import free_port, start_serve

CLIENTS = 6


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_serve_killed_under_concurrent_writes_loses_nothing_acknowledged_and_duplicates_nothing(
        kind, tmp_path, request_fixture_store):
    settings = request_fixture_store(kind, tmp_path)
    env = {**os.environ, "CASELOG_DATA_DIR": str(settings.data_dir), "CASELOG_CLOCK": "manual",
           "CASELOG_CLOCK_START": "2026-03-10T14:00:00Z"}
    env.pop("CASELOG_DATABASE_URL", None)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_serve(env, port, tmp_path / "serve.log")
    token = subprocess.run([sys.executable, "-m", "infra.cli", "token", "--role", "provider", "--sub", "dr-doe",
                            "--npi", "1234567893"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    attempted: dict[str, dict] = {}  # key -> body
    acknowledged: dict[str, str] = {}  # key -> case id
    lock, stop = threading.Lock(), threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            i = 0
            while not stop.is_set():
                key = f"crash-{n}-{i}"
                body = request("cigna-commercial/dme", date_of_service=date(2026, 3, 20), member_no=n * 10_000 + i,
                               documents=[])
                with lock:
                    attempted[key] = body
                try:
                    r = http.post("/cases", json=body, headers={**headers, "Idempotency-Key": key})
                except httpx.HTTPError:
                    return  # the server died under this request: the answer never came
                assert r.status_code == 201, r.text
                with lock:
                    acknowledged[key] = r.json()["case_id"]
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    while len(acknowledged) < 60:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=30)

    proc = start_serve(env, port, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            for key, case_id in acknowledged.items():
                assert http.get(f"/cases/{case_id}", headers=headers).status_code == 200, "an acknowledged write was lost"
            answers = {}
            for key, body in attempted.items():  # every request retried, acknowledged or cut off
                r = http.post("/cases", json=body, headers={**headers, "Idempotency-Key": key})
                assert r.status_code == 201, r.text
                answers[key] = r.json()["case_id"]
            assert all(answers[k] == v for k, v in acknowledged.items()), "a retry got another case"
            assert len(set(answers.values())) == len(attempted)
            total = http.get("/worklist", headers=headers, params={"page_size": 1}).json()["total"]
            assert total == len(attempted), "a case was duplicated or lost"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    verify = subprocess.run([sys.executable, "-m", "infra.cli", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    system = bootstrap(settings)
    try:
        system.catch_up()
        live = snapshot(system)
        system.runner.rebuild()
        assert snapshot(system) == live, "the read models differ from a fresh replay"
    finally:
        system.close()


@pytest.fixture
def request_fixture_store(request):
    def make(kind: str, tmp_path) -> Settings:
        if kind == "postgres":
            return Settings(data_dir=tmp_path / "data", database_url=request.getfixturevalue("postgres_url"))
        return Settings(data_dir=tmp_path / "data")
    return make
