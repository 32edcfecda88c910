"""The served system as users run it: `caselog serve` in its own process, tokens from
`caselog token`, and schemathesis fuzzing every operation of the served /openapi.json."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, start_serve

BIN = Path(sys.executable).parent


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path), "CASELOG_CLOCK": "manual", "CASELOG_CLOCK_START": "2026-11-22T14:00:00Z"}
    env.pop("CASELOG_DATABASE_URL", None)
    proc = start_serve(env, port, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"

    def token(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "infra.cli", "token", *args], env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    yield base, token, env, tmp_path
    proc.terminate()
    proc.wait(timeout=20)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_serve_answers_with_tokens_minted_by_the_cli(served):
    base, token, _, _ = served
    ops = token("--role", "ops", "--sub", "ops-1")
    assert httpx.get(f"{base}/queues/review", headers={"Authorization": f"Bearer {ops}"}).json() == {"items": [], "total": 0}
    r = httpx.get(f"{base}/queues/review")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert "caselog_events_total" in httpx.get(f"{base}/metrics").text


def test_schemathesis_finds_no_server_error_and_no_response_off_schema(served):
    base, token, env, tmp_path = served
    admin = token("--role", "admin", "--sub", "fuzz", "--credential", "MD", "--npi", "1234567893")
    out = subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{base}/openapi.json", "-H", f"Authorization: Bearer {admin}",
         "--seed", "20261122", "--max-examples", "30", "--checks", "not_a_server_error,response_schema_conformance"],
        capture_output=True, text=True, timeout=900, env={**env, "NO_COLOR": "1"},
    )
    assert out.returncode == 0, out.stdout[-4000:]
    generated = int(re.search(r"(\d+) generated", out.stdout).group(1))
    assert generated >= 1000, out.stdout[-2000:]
