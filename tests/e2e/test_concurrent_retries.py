"""Retries that should be invisible are (issue 10): requests racing on one case through HTTP, on
SQLite and PostgreSQL. The same Idempotency-Key and body sent at once get the first answer and one
set of events; commands sent without If-Match never see a version conflict; a client that sent
If-Match and lost the race does."""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from application.caselog import RACE_ATTEMPTS
from infra.demo.samples import later, request
from tests.e2e.http_support import make_api
from tests.support import DME, event_types

# Each racer loses at most once to each of the others, so this many never run out of attempts.
RACERS = RACE_ATTEMPTS


@pytest.fixture
def api(system):
    return make_api(system)


def together(call: Callable[[int], object], n: int = RACERS) -> list:
    """``call(i)`` from n threads released at once; the answers (or exceptions) in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - checked by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def new_case(api) -> dict:
    body = request(DME, date_of_service=later(api.system.clock.now(), 10), documents=[])
    r = api.post("/cases", body)
    assert r.status_code == 201, r.text
    return r.json()


def statuses(answers: list) -> list:
    return [getattr(a, "status_code", a) for a in answers]


def test_the_same_keyed_submission_sent_at_once_gets_one_answer_and_one_case(api):
    body = request(DME, date_of_service=later(api.system.clock.now(), 10), documents=[])
    before = api.system.app.max_position()
    answers = together(lambda i: api.post("/cases", body, **{"Idempotency-Key": "submit-once"}))
    assert statuses(answers) == [201] * RACERS, [a.text for a in answers if getattr(a, "status_code", 0) != 201]
    views = [a.json() for a in answers]
    assert all(v == views[0] for v in views)
    cid = views[0]["case_id"]
    assert api.system.app.max_position() - before == len(event_types(api.system.app, cid))
    assert event_types(api.system.app, cid).count("CaseSubmitted") == 1


@pytest.mark.parametrize("path, who, body, event", [
    ("clinical", "provider", {"notes": "the sleep study"}, "ClinicalUploaded"),
    ("holds", "md", {"requested_items": ["sleep study"]}, "CaseHeld"),
])
def test_the_same_keyed_command_sent_at_once_gets_one_answer_and_one_set_of_events(api, path, who, body, event):
    cid = new_case(api)["case_id"]
    answers = together(lambda i: api.post(f"/cases/{cid}/{path}", body, who=who, **{"Idempotency-Key": f"{path}-once"}))
    assert statuses(answers) == [200] * RACERS, [a.text for a in answers if getattr(a, "status_code", 0) != 200]
    assert all(a.json() == answers[0].json() for a in answers)
    assert event_types(api.system.app, cid).count(event) == 1


def test_commands_without_if_match_racing_on_one_case_never_see_a_version_conflict(api):
    cid = new_case(api)["case_id"]
    answers = together(lambda i: api.post(f"/cases/{cid}/clinical", {"notes": f"note {i}"}))
    assert statuses(answers) == [200] * RACERS, [a.text for a in answers if getattr(a, "status_code", 0) != 200]
    assert event_types(api.system.app, cid).count("ClinicalUploaded") == RACERS

    other = new_case(api)["case_id"]

    def hold_or_upload(i: int):
        if i == 0:
            return api.post(f"/cases/{other}/holds", {"requested_items": ["sleep study"]}, who="md")
        return api.post(f"/cases/{other}/clinical", {"notes": f"note {i}"})

    answers = together(hold_or_upload)
    assert statuses(answers) == [200] * RACERS, [a.text for a in answers if getattr(a, "status_code", 0) != 200]
    types = event_types(api.system.app, other)
    assert types.count("CaseHeld") == 1 and types.count("ClinicalUploaded") == RACERS - 1
    api.system.app.verify()  # every chain intact (PostgreSQL positions may skip those a lost race took)


def test_with_if_match_the_losers_of_a_race_see_the_version_conflict(api):
    view = new_case(api)
    cid, version = view["case_id"], str(view["version"])
    answers = together(lambda i: api.post(f"/cases/{cid}/clinical", {"notes": f"note {i}"}, **{"If-Match": version}))
    assert sorted(statuses(answers)) == [200] + [409] * (RACERS - 1)
    assert all(a.json()["type"].endswith("/version-conflict") for a in answers if a.status_code == 409)
    assert event_types(api.system.app, cid).count("ClinicalUploaded") == 1


def test_one_key_sent_at_once_with_commands_on_different_cases_is_recorded_once_and_refused_for_the_rest(api):
    """A key names one request: the same key on commands to several cases at once is kept for the
    first recorded; the others are refused as a reused key and record nothing (they used to be
    recorded, their key rows silently dropped, so a retry of one was refused after the fact)."""
    cases = [new_case(api)["case_id"] for _ in range(RACERS)]
    before = api.system.app.max_position()
    answers = together(lambda i: api.post(f"/cases/{cases[i]}/clinical", {"notes": "the sleep study"},
                                          **{"Idempotency-Key": "one-request"}))
    assert sorted(statuses(answers)) == [200] + [409] * (RACERS - 1), [a.text for a in answers]
    assert all(a.json()["type"].endswith("/idempotency-key-reused") for a in answers if a.status_code == 409), [a.json() for a in answers]
    uploaded = [cid for cid in cases if "ClinicalUploaded" in event_types(api.system.app, cid)]
    winner = cases[statuses(answers).index(200)]
    assert uploaded == [winner]
    assert api.system.app.max_position() - before == 1
    again = api.post(f"/cases/{winner}/clinical", {"notes": "the sleep study"}, **{"Idempotency-Key": "one-request"})
    assert again.status_code == 200 and again.json() == answers[cases.index(winner)].json()
