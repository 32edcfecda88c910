"""Helpers that make tests read like the rules."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from typing import Callable

import pytest

from domain.errors import DomainError
from infra.demo.samples import PROVIDER_NPI, document, later, request

PROVIDER = {"kind": "provider", "id": PROVIDER_NPI}
MD = {"kind": "reviewer", "id": "dr-okafor", "credential": "MD"}
DO = {"kind": "reviewer", "id": "dr-ames", "credential": "DO"}
RN = {"kind": "reviewer", "id": "nurse-lee", "credential": "RN"}
RADONC = "healthspring-ma/radiation-oncology"
AETNA_RAD = "aetna-bh-il/radiology"
AETNA_MSK = "aetna-bh-il/msk"
MEDONC = "cigna-commercial/medical-oncology"
WELLSENSE = "wellsense-ma-nh/msk"
DME = "cigna-commercial/dme"
ALL_POLICIES = (RADONC, AETNA_RAD, AETNA_MSK, MEDONC, WELLSENSE, DME)


def free_port() -> int:
    """A free TCP port on loopback, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recorded(system) -> tuple[int, int]:
    """What the store holds: (events, registry rows). A refusal changes neither."""
    with system.db.transaction() as cur:
        numbers = cur.execute("SELECT COUNT(*) FROM caselog_case_numbers").fetchone()[0]
        keys = cur.execute("SELECT COUNT(*) FROM caselog_idempotency").fetchone()[0]
    return system.app.max_position(), numbers + keys


def refused(system, call: Callable[[], object], rule: str | None = None, kind: type[DomainError] = DomainError) -> DomainError:
    before = recorded(system)
    with pytest.raises(kind) as info:
        call()
    if rule is not None:
        assert info.value.rule == rule, f"refused by {info.value.rule!r} ({info.value.detail}), expected {rule!r}"
    assert recorded(system) == before, "a refused command recorded something"
    return info.value


def submit(app, policy: str, *, days_ahead: int = 14, **kw) -> dict:
    return app.submit(request(policy, date_of_service=later(app.clock.now(), days_ahead), **kw), actor=PROVIDER).view


def at(view: dict, field: str) -> datetime:
    return datetime.fromisoformat(view[field])


def pre_denial(app, case_id: str) -> None:
    app.give_pre_denial_notice(case_id, "phone_and_writing", actor=MD)


def deny(app, case_id: str, actor=MD) -> dict:
    return app.determine(case_id, actor=actor, outcome="denied", rationale="criteria not met", guidelines=["guideline 1.2"]).view


def event_types(app, case_id: str) -> list[str]:
    return [e["type"] for e in app.history(case_id)["events"]]


__all__ = ["timedelta", "document", "later", "request"]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text (``metric(text, "caselog_relay_parked")``), or None."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def start_serve(env: dict, port: int, log_path, timeout: float = 60):
    """`caselog serve` in its own process on ``port`` with ``env``, once it answers /healthz; its
    output goes to ``log_path`` (shown when it does not start)."""
    import subprocess
    import sys
    import time

    import httpx

    log = open(log_path, "a")
    proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, open(log_path).read()
        time.sleep(0.2)
