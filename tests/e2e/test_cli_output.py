"""What the CLI prints about itself: its version, and reasons on one line whatever their length."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "CASELOG_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env={**environ, **env}, capture_output=True,
                          text=True, timeout=120)


def test_version_comes_from_the_package_metadata():
    out = run("--version")
    assert out.returncode == 0 and out.stdout == f"caselog {version('caselog')}\n", out


def test_a_long_reason_is_one_line_on_a_narrow_stderr(tmp_path):
    missing = tmp_path / ("x" * 90) / "request.json"
    out = run("submit", str(missing), CASELOG_DATA_DIR=str(tmp_path), COLUMNS="80")
    assert out.returncode == 2
    line = next(line for line in out.stderr.splitlines() if "cannot read" in line)
    assert str(missing) in line and line.endswith("No such file or directory") and len(line) > 120, out.stderr
