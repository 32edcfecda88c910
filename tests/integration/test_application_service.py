"""Idempotency, optimistic concurrency, history and the hash chain, against the real stores."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from domain.chain import ChainBreak
from domain.errors import CaseNotFound, IdempotencyConflict, VersionConflict
from tests.support import DME, MD, MEDONC, PROVIDER, RADONC, event_types, later, recorded, refused, request, submit


def test_same_idempotency_key_and_body_gives_the_same_answer_and_one_set_of_events(system, app):
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    first = app.submit(body, actor=PROVIDER, key="req-1")
    before = recorded(system)
    again = app.submit(body, actor=PROVIDER, key="req-1")
    assert again.view == first.view and again.created
    assert recorded(system) == before
    cid = first.view["case_id"]
    held = app.place_hold(cid, ["notes"], actor=MD, key="hold-1")
    app.clock.advance(timedelta(minutes=5))
    before = recorded(system)
    assert app.place_hold(cid, ["notes"], actor=MD, key="hold-1").view == held.view
    assert recorded(system) == before


def test_same_idempotency_key_with_another_body_is_a_conflict(system, app):
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    cid = app.submit(body, actor=PROVIDER, key="req-2").view["case_id"]
    other = request(DME, date_of_service=later(app.clock.now(), 6))
    refused(system, lambda: app.submit(other, actor=PROVIDER, key="req-2"), kind=IdempotencyConflict)
    app.place_hold(cid, ["notes"], actor=MD, key="k")
    refused(system, lambda: app.place_hold(cid, ["other"], actor=MD, key="k"), kind=IdempotencyConflict)
    second = submit(app, DME)["case_id"]
    refused(system, lambda: app.place_hold(second, ["notes"], actor=MD, key="k"), kind=IdempotencyConflict)


def test_idempotency_keys_are_scoped_to_the_actor(app):
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    a = app.submit(body, actor=PROVIDER, key="same").view["case_id"]
    b = app.submit(body, actor={"kind": "provider", "id": "someone-else"}, key="same").view["case_id"]
    assert a != b


def test_a_retried_clinical_update_answers_with_the_same_successor(app):
    cid = submit(app, MEDONC)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    first = app.update_authorization(cid, "regimen", {"regimen": "x"}, actor=PROVIDER, key="u")
    again = app.update_authorization(cid, "regimen", {"regimen": "x"}, actor=PROVIDER, key="u")
    assert again.created and again.view["case_id"] == first.view["case_id"]


def test_if_match_version_conflict_records_nothing(system, app):
    view = submit(app, DME)
    refused(system, lambda: app.place_hold(view["case_id"], ["notes"], actor=MD, expected_version=view["version"] + 1), kind=VersionConflict)
    assert app.place_hold(view["case_id"], ["notes"], actor=MD, expected_version=view["version"]).view["status"] == "held"


def test_concurrent_commands_on_one_case_record_one_and_refuse_the_other(system, app):
    cid = submit(app, DME)["case_id"]
    results: list[object] = []
    barrier = threading.Barrier(2)

    def decide(outcome: str) -> None:
        barrier.wait()
        try:
            if outcome == "approved":
                app.determine(cid, actor=MD, outcome="approved")
            else:
                app.cancel(cid, "provider cancelled", actor=PROVIDER)
            results.append("ok")
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=decide, args=(o,)) for o in ("approved", "cancelled")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1
    errors = [r for r in results if r != "ok"]
    assert len(errors) == 1 and getattr(errors[0], "rule", None) in ("version-conflict", "cancel-after-determination", "already-determined")
    assert app.view(cid)["status"] in ("approved", "cancelled")
    app.verify()


def test_unknown_case_is_not_found(system, app):
    refused(system, lambda: app.view("not-a-uuid"), kind=CaseNotFound)
    refused(system, lambda: app.place_hold("7d1c1b0e-0000-4000-8000-000000000000", ["x"], actor=MD), kind=CaseNotFound)


def test_history_as_of_shows_the_events_and_the_case_as_they_stood(app, clock):
    cid = submit(app, RADONC)["case_id"]
    submitted_at = clock.now()
    clock.advance(timedelta(hours=2))
    app.place_hold(cid, ["plan"], actor=MD)
    then = app.history(cid, as_of=submitted_at + timedelta(minutes=1))
    assert [e["type"] for e in then["events"]] == ["CaseSubmitted"]
    assert then["case"]["status"] == "pending" and then["case"]["version"] == 1
    now = app.history(cid)
    assert now["case"]["status"] == "held"
    first = now["events"][0]
    assert set(first) >= {"version", "type", "occurred_at", "actor", "data", "hash"}
    assert first["data"]["policy"] == RADONC
    assert [e["prev_hash"] for e in now["events"][1:]] == [e["hash"] for e in now["events"][:-1]]


def test_every_event_is_chained_and_verify_names_a_tampered_case(system, app):
    cid = submit(app, DME)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    walker = app.verify()
    assert walker.cases == 1 and walker.events == len(event_types(app, cid))
    if system.db.dialect == "sqlite":
        with system.db.transaction() as cur:
            cur.execute("UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), 'E0601', 'E0602') AS BLOB) WHERE originator_version = 1")
    else:
        with system.db.transaction() as cur:
            cur.execute("UPDATE caselog_events SET state = convert_to(replace(convert_from(state, 'UTF8'), 'E0601', 'E0602'), 'UTF8') WHERE originator_version = 1")
    with pytest.raises(ChainBreak) as info:
        app.verify()
    assert info.value.case_id == cid.replace("-", "") or info.value.case_id == cid
    assert info.value.version == 1


def test_successor_and_withdrawal_are_saved_atomically_with_the_approval(app):
    cid = submit(app, RADONC)["case_id"]
    app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=20, igrt=False, valid_to="2026-05-01")
    sid = app.update_authorization(cid, "technique", {"technique": "SBRT"}, actor=PROVIDER).view["case_id"]
    before = app.max_position()
    app.determine(sid, actor=MD, outcome="approved", technique="SBRT", fractions=5, igrt=True, valid_to="2026-05-01")
    types = [t for _, _, _, t, _ in app.stored_events(start=before + 1)]
    assert "CaseDetermined" in types and "AuthorizationWithdrawn" in types
