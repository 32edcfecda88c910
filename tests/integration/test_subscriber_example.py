"""examples/subscriber.py, the example downstream teams start from, against a real broker: it
needs nothing of caselog, and handles every event exactly once although the topic holds each
twice (a relay that republished everything)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from infra.settings import Settings
from tests.conftest import START
from tests.integration.test_kafka import demo_on_topic, drain, store_events

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriber.py"


def test_the_example_imports_only_the_kafka_client_and_the_cloudevents_sdk():
    imported = set()
    for node in ast.walk(ast.parse(EXAMPLE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - sys.stdlib_module_names == {"kafka", "cloudevents"}, imported


def run_example(tmp_path: Path, bootstrap_servers: str, topic: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CASELOG_")}
    out = subprocess.run([sys.executable, str(EXAMPLE), "--bootstrap", bootstrap_servers, "--topic", topic,
                          "--group", "claims-sync", "--state", str(tmp_path / "state.json"), "--idle-exit", "5",
                          "--max-poll-interval", "6"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_example_subscriber_handles_each_event_once_in_case_order(tmp_path, broker):
    from infra.clock import ManualClock

    settings = Settings(data_dir=tmp_path / "store", kafka_bootstrap=broker[0], topic="caselog.case-events",
                        topic_partitions=3)
    with demo_on_topic(settings, ManualClock(START)) as system:
        relay = system.relay()
        with system.db.transaction() as cur:  # republish everything: each event is on the topic twice
            cur.execute("UPDATE caselog_tracking SET position = 0 WHERE projection = ?", (relay.name,))
        drain(relay)
        relay.close()
        stored = store_events(system)
    handled = run_example(tmp_path, broker[0], settings.topic)
    seen = [(line["case_id"], line["caseversion"]) for line in handled]
    assert len(seen) == len(set(seen)) == len(stored) and set(seen) == set(stored)
    last: dict[str, int] = {}
    for case_id, version in seen:
        assert version == last.get(case_id, 0) + 1, "in case order"
        last[case_id] = version
    assert {line["outcome"] for line in handled if line["event"] == "determined"} >= {"approved", "denied"}
    assert run_example(tmp_path, broker[0], settings.topic) == []  # committed: nothing again
