"""What operators watch: the JSON access log (context, never PHI or tokens), Prometheus metrics
through prometheus_client, and the readiness probe."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from infra.bootstrap import bootstrap
from infra.clock import ManualClock
from infra.demo.samples import later, request
from infra.logs import JsonFormatter
from infra.settings import Settings
from tests.conftest import START
from tests.e2e.http_support import make_api
from tests.support import free_port, metric


@pytest.fixture
def api(tmp_path):
    system = bootstrap(Settings(data_dir=tmp_path, clock="manual"), clock=ManualClock(START))
    yield make_api(system)
    system.close()


def submit(api) -> str:
    body = request("cigna-commercial/dme", date_of_service=later(START, 14), documents=[api.upload()])
    r = api.post("/cases", body)
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def test_each_request_is_logged_with_its_context_and_nothing_else(api, caplog):
    case_id = submit(api)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="caselog.access"):
        r = api.client.get(f"/cases/{case_id}", headers={**api.as_("md"), "X-Request-ID": "trace-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
        denied = api.get("/worklist", who="md", q="Rivera, Alex")
        assert denied.status_code == 200 and len(denied.headers["x-request-id"]) == 32
    lines = [JsonFormatter().format(rec) for rec in caplog.records if rec.name == "caselog.access"]
    first, second = (json.loads(line) for line in lines)
    assert first["request_id"] == "trace-42" and first["route"] == "/cases/{case_id}" and first["status"] == 200
    assert first["case_id"] == case_id and first["actor_id"] == "dr-okafor" and first["actor_kind"] == "reviewer"
    assert first["method"] == "GET" and first["latency_ms"] >= 0 and first["level"] == "info"
    assert second["route"] == "/worklist" and "case_id" not in second
    text = "\n".join(lines)
    for secret in ("Rivera", "Alex", "1958", "Bearer", api.tokens["md"][:20], "q="):
        assert secret not in text, secret


def test_the_json_formatter_keeps_only_the_named_context():
    record = logging.LogRecord("caselog.relay", logging.WARNING, __file__, 1, "relay: lag %d", (7,), None)
    record.lag, record.member_name, record.body = 7, "Rivera, Alex", {"dob": "1958-04-02"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "relay: lag 7" and line["lag"] == 7 and line["level"] == "warning"
    assert "member_name" not in line and "body" not in line


def test_a_log_line_is_written_whatever_text_or_number_it_carries():
    """orjson writes the lines; what it refuses (a lone surrogate, an integer past 64 bits) is still one JSON line."""
    for args, position in ((("\udc80",), 1), (("plain",), 2**70), (("Zoë",), 3)):
        record = logging.LogRecord("caselog.relay", logging.INFO, __file__, 1, "caught up %s", args, None)
        record.position = position
        text = JsonFormatter().format(record)
        line = json.loads(text)
        assert "\n" not in text and line["position"] == position and line["msg"] == f"caught up {args[0]}"


def test_metrics_come_from_prometheus_client_with_latency_per_route_and_the_systems_figures(api):
    case_id = submit(api)
    assert api.get(f"/cases/{case_id}").status_code == 200
    text = api.client.get("/metrics").text
    assert case_id not in text  # per route template, not per path
    latency = "caselog_http_request_duration_seconds_count"
    assert metric(text, latency, method="GET", route="/cases/{case_id}", status="200") == 1
    assert metric(text, latency, method="POST", route="/cases", status="201") == 1
    assert metric(text, "caselog_open_cases", status="pending") == 1
    assert metric(text, "caselog_open_cases", status="held") == 0
    assert metric(text, "caselog_cases_at_risk") == 0 and metric(text, "caselog_cases_overdue") == 0
    assert metric(text, "caselog_events_total") >= 1 and metric(text, "caselog_store_up") == 1
    assert metric(text, "caselog_projection_lag", projection="worklist") == 0
    assert metric(text, "caselog_deadlines_due") == 0 and metric(text, "caselog_deadlines_fired_total") == 0
    assert metric(text, "caselog_deadlines_failing") == 0
    assert api.post("/admin/clock", {"advance": "P30D"}, who="admin").status_code == 200  # past the decision due
    text = api.client.get("/metrics").text
    assert metric(text, "caselog_cases_overdue") == 1 and metric(text, "caselog_deadlines_fired_total") >= 1


def test_readiness_checks_the_store_and_the_broker_when_one_is_configured(api, tmp_path):
    r = api.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"store": "ok", "kafka": "not configured"}}
    system = api.system
    dead = replace(system.settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    other = bootstrap(dead, clock=ManualClock(START))
    try:
        r = make_api(other).client.get("/readyz")
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/not-ready") and "kafka" in r.json()["detail"]
    finally:
        other.close()
