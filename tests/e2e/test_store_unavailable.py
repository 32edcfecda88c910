"""A store caselog cannot open, as users meet it: every command that opens the store exits 1
quickly with one line on stderr naming the setting and the reason, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from infra.demo.samples import later, request
from tests.support import WELLSENSE, free_port


def _commands(tmp_path: Path) -> list[tuple[str, ...]]:
    body = tmp_path / "request.json"
    body.write_text(json.dumps(request(WELLSENSE, date_of_service=later(datetime.now(timezone.utc), 10))))
    reason = tmp_path / "reason.json"
    reason.write_text('{"reason": "duplicate"}')
    case = "0b3c2a6e-52a4-4b7e-9c55-0c1d2e3f4a5b"
    return [("show", case), ("history", case), ("submit", str(body)), ("act", case, "withdrawal", str(reason)),
            ("verify",), ("replay",), ("demo", "--quiet"), ("audit-report", "--case", case), ("scheduler", "--once"),
            ("scheduler",), ("relay",), ("worker",), ("serve", "--port", str(free_port()))]


def _run(args: tuple[str, ...], **env: str) -> tuple[subprocess.CompletedProcess, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CASELOG_")}
    full.update(CASELOG_KAFKA_BOOTSTRAP="127.0.0.1:1", **env)  # relay and worker need one to get as far as the store
    full.setdefault("CASELOG_TOKEN", "a.token.checked-once-the-store-is-open")  # show, history, submit, act: a user's
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "infra.cli", *args], env=full, capture_output=True, text=True,
                         timeout=60)
    return out, time.monotonic() - started


def _one_line_naming(out: subprocess.CompletedProcess, variable: str, *words: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"failed: {variable}: "), out.stderr
    assert all(w in lines[0] for w in words), out.stderr


def test_an_unreachable_database_fails_every_store_command_at_once_in_one_line(tmp_path):
    url = f"postgresql://caselog:s3cret-pw@127.0.0.1:{free_port()}/caselog"  # nothing listens there
    for args in _commands(tmp_path):
        out, took = _run(args, CASELOG_DATABASE_URL=url, CASELOG_DATA_DIR=str(tmp_path / "data"))
        _one_line_naming(out, "CASELOG_DATABASE_URL", "refused")
        assert "s3cret-pw" not in out.stderr and "Traceback" not in out.stderr
        assert took < 6, f"{args[0]} took {took:.1f}s"


def test_a_server_that_never_answers_fails_within_the_connect_timeout(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (backlog) and says nothing
        url = f"postgresql://caselog@127.0.0.1:{silent.getsockname()[1]}/caselog"
        out, took = _run(("show", "x"), CASELOG_DATABASE_URL=url, CASELOG_DATA_DIR=str(tmp_path),
                         CASELOG_CONNECT_TIMEOUT="2")
    _one_line_naming(out, "CASELOG_DATABASE_URL", "timeout")
    assert 1.5 < took < 5, took  # RELIABILITY.md: one line within 5 s (process start included)


def test_a_data_dir_that_cannot_be_created_fails_every_store_command_in_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"
    for args in [*_commands(tmp_path), ("token", "--role", "ops", "--sub", "me")]:
        out, _ = _run(args, CASELOG_DATA_DIR=str(data_dir))
        _one_line_naming(out, "CASELOG_DATA_DIR", str(data_dir), "Not a directory")
    out, _ = _run(("show", "x"), CASELOG_DATA_DIR=str(tmp_path / "a-file"))
    _one_line_naming(out, "CASELOG_DATA_DIR", "not a directory")
    out, _ = _run(("alive", "relay"), CASELOG_DATA_DIR=str(data_dir))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_connect_timeout_that_is_not_a_whole_number_of_seconds_is_refused(tmp_path):
    for value in ("soon", "0"):
        out, _ = _run(("show", "x"), CASELOG_DATA_DIR=str(tmp_path), CASELOG_CONNECT_TIMEOUT=value,
                      CASELOG_DATABASE_URL="postgresql://caselog@127.0.0.1:1/caselog")
        assert out.returncode == 2 and "CASELOG_CONNECT_TIMEOUT" in out.stderr, out.stderr
