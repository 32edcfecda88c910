"""The CMS-0057-F public report: item 1 beside the figures over HTTP, and `caselog report cms-0057`
writing the annual posting, the same bytes from the same events."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from infra.bootstrap import bootstrap
from infra.clock import ManualClock
from infra.demo.workload import demo_clock_start
from infra.settings import Settings
from tests.conftest import START
from tests.e2e.http_support import make_api


def caselog(data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CASELOG_DATA_DIR": str(data_dir)}
    env.pop("CASELOG_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


YEAR = str(demo_clock_start().year)  # the demo decides most of its cases in its first weeks


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("cms")
    out = caselog(store, "demo", "--quiet")
    assert out.returncode == 0, out.stderr
    return store


def test_the_figures_over_http_carry_item_1_by_policy(tmp_path):
    system = bootstrap(Settings(data_dir=tmp_path, clock="manual"), clock=ManualClock(START))
    try:
        api = make_api(system)
        r = api.get("/metrics/prior-authorization", who="ops", to="2026-12-31T00:00:00Z")
        assert r.status_code == 200, r.text
        listed = {s["policy"]: s for s in r.json()["items_requiring_prior_authorization"]}
        assert set(listed) >= {"cigna-commercial/dme", "healthspring-ma/radiation-oncology"}
        assert listed["cigna-commercial/dme"]["only_places_of_service"] == ["12"]
        one = api.get("/metrics/prior-authorization", who="ops", policy="aetna-bh-il/msk").json()
        assert [s["policy"] for s in one["items_requiring_prior_authorization"]] == ["aetna-bh-il/msk"]
        early = api.get("/metrics/prior-authorization", who="ops", to="2026-01-01T00:00:00Z").json()
        assert "cigna-commercial/dme" not in {s["policy"] for s in early["items_requiring_prior_authorization"]}
    finally:
        system.close()


def test_the_annual_posting_has_nine_items_each_figure_with_numerator_and_denominator(demo_store, tmp_path):
    out = caselog(demo_store, "report", "cms-0057", "--year", YEAR, "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    posting = json.loads((tmp_path / f"cms-0057-{YEAR}.json").read_text())
    assert [item["item"] for item in posting["items"]] == list(range(1, 10))
    assert posting["items"][0]["services"] and posting["period"]["from"] == f"{YEAR}-01-01T00:00:00+00:00"
    for item in posting["items"][1:]:
        for figure in item["figures"]:
            assert {"numerator", "denominator", "value", "unit"} <= set(figure), item
            assert isinstance(figure["denominator"], int)
    approved, denied = posting["items"][1]["figures"][0], posting["items"][2]["figures"][0]
    assert approved["denominator"] == denied["denominator"] > 0
    assert approved["numerator"] + denied["numerator"] == approved["denominator"]
    rows = list(csv.DictReader((tmp_path / f"cms-0057-{YEAR}.csv").open()))
    assert {row["item"] for row in rows} == {str(n) for n in range(1, 10)}
    assert any(row["item"] == "8" and row["figure"] == "average" and row["numerator"] for row in rows)


def test_the_posting_is_regenerated_byte_for_byte_from_the_events(demo_store, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert caselog(demo_store, "report", "cms-0057", "--year", YEAR, "--out", str(first)).returncode == 0
    replayed = caselog(demo_store, "replay", "--projection", "pa_metrics")  # the read model dropped and rebuilt
    assert replayed.returncode == 0, replayed.stderr
    assert caselog(demo_store, "report", "cms-0057", "--year", YEAR, "--out", str(second)).returncode == 0
    for name in (f"cms-0057-{YEAR}.json", f"cms-0057-{YEAR}.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_policy_the_table_does_not_know_is_refused(demo_store, tmp_path):
    out = caselog(demo_store, "report", "cms-0057", "--year", YEAR, "--policy", "acme/everything",
                  "--out", str(tmp_path))
    assert out.returncode == 2 and "--policy" in out.stderr
    one = caselog(demo_store, "report", "cms-0057", "--year", YEAR, "--policy", "cigna-commercial/dme",
                  "--out", str(tmp_path))
    assert one.returncode == 0 and (tmp_path / f"cms-0057-{YEAR}-cigna-commercial_dme.csv").exists()
