"""Fuzzing every write route with what an attacker or a careless client sends, on SQLite and on
PostgreSQL, with the relay publishing to a real broker: malformed JSON, wrong types, huge and deep
values, unicode and control characters, out-of-range instants, replayed keys with other bodies and
commands in impossible states. Never a 5xx; a refused request records nothing; afterwards a valid
write is accepted and reaches the topic, so nothing a client sent stopped the system or its feed.

Hypothesis runs derandomized (a fixed seed per test) so CI sees the same examples every run."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.bootstrap import bootstrap
from infra.demo.samples import later, request
from tests.e2e.http_support import make_api
from tests.integration.test_kafka import check_topic_equals_store, drain

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# ---- hostile values -------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from([
    "", " ", "Ada\u0000x", "\u0000", "\x07bell", "tab\there", "line\r\nbreak", "\u202eevil\u202c", "\u2066iso\u2069",
    "\ud800", "\uffff", "😀" * 50, "x" * 5_000, "y" * 300_000, "'; DROP TABLE events; --", "<script>alert(1)</script>",
    "%00", "\\u0000", "1234567893", "2026-02-30", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "P3000000D",
])
INSTANTS = st.sampled_from([
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-03-10T14:00:00", "2026-13-01T00:00:00Z", "yesterday",
    "2026-03-11T14:00:00+14:00", "2026-03-11T14:00:00-12:00", "1969-12-31T23:59:59Z", "2099-12-31T00:00:00Z",
])
DATES = st.sampled_from(["0001-01-01", "9999-12-31", "1800-01-01", "2026-02-29", "2026-02-28", "20260310", "-1"])
NUMBERS = st.one_of(st.integers(), st.sampled_from([2**63, -(2**63) - 1, 10**40, 0, -1]),
                    st.floats(allow_nan=False, allow_infinity=False))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40), HOSTILE_TEXT, INSTANTS, DATES)


def nested(depth: int, leaf: object = "deep") -> object:
    value: object = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8) | HOSTILE_TEXT,
                                                                               children, max_size=4)),
    max_leaves=12,
)
HOSTILE = st.one_of(JSON, st.integers(1, 400).map(nested), st.just(["x" * 1000] * 1200))


# ---- the routes and a plausible body for each -----------------------------------------------

def routes(cases: dict) -> list[tuple[str, str, dict]]:
    """(path, role, body): every write route, aimed at cases in every state."""
    any_case = cases["pending"]
    return [
        ("/cases", "provider", cases["submit_body"]),
        ("/drafts", "provider", {"policy": "cigna-commercial/dme", "line_of_business": "commercial", "notes": "later"}),
        (f"/cases/{cases['draft']}/submit", "provider", cases["submit_body"]),
        (f"/cases/{any_case}/holds", "md", {"requested_items": ["notes"], "due_at": None}),
        (f"/cases/{cases['held']}/clinical", "provider", {"documents": [], "notes": "attached"}),
        (f"/cases/{cases['held']}/p2p", "md", {"level": "pre_decision", "slot": "2026-03-11T15:00:00Z",
                                              "reviewer": "dr-okafor", "contact": {"name": "Dr. Doe", "phone": "555"}}),
        (f"/cases/{any_case}/p2p/nope/reschedule", "md", {"slot": "2026-03-11T16:00:00Z"}),
        (f"/cases/{any_case}/p2p/nope/cancel", "md", {"reason": "conflict"}),
        (f"/cases/{any_case}/p2p/nope/complete", "md", {"outcome": "discussed"}),
        (f"/cases/{cases['medicare']}/pre-denial-notice", "md", {"channel": "phone_and_writing", "notes": "called"}),
        (f"/cases/{any_case}/extension-of-timeframe", "md", {"reason": "matters_beyond_reviewer_control", "days": 5}),
        (f"/cases/{any_case}/determination", "md", {"outcome": "approved", "valid_to": "2026-06-01"}),
        (f"/cases/{cases['denied']}/alternative/accept", "provider", {}),
        (f"/cases/{cases['denied']}/reconsideration", "provider", {"reason": "new information", "documents": []}),
        (f"/cases/{cases['denied']}/reconsideration/decision", "md", {"outcome": "approved", "lines": []}),
        (f"/cases/{cases['denied']}/appeals", "provider", {"reason": "disagree", "filed_at": None}),
        (f"/cases/{cases['denied']}/appeals/1/decision", "md", {"outcome": "upheld", "rationale": "still not met"}),
        (f"/cases/{cases['approved']}/authorization/updates", "provider",
         {"kind": "contact", "changes": {"phone": "555-0100"}}),
        (f"/cases/{cases['approved']}/authorization/extension", "provider", {"valid_to": "2026-12-31"}),
        (f"/cases/{cases['approved']}/withdrawal", "provider", {"reason": "no longer needed"}),
        (f"/cases/{any_case}/cancel", "provider", {"reason": "duplicate"}),
        ("/worklist/access", "provider", {"user_id": "assistant-1", "email": "a@example.org"}),
        ("/admin/clock", "admin", {"advance": "PT1H"}),
    ]


def paths_of(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every place in a body a value can be put: each key and list item, nested."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, prefix + (i,))
    return out


def put(body: dict, path: tuple, value: object) -> dict:
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@st.composite
def mutated(draw, base: dict) -> dict:
    """The body with one place replaced, removed or added, or the whole body replaced."""
    how = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add", "whole"]))
    places = paths_of(base)
    if how == "whole" or not places:
        return draw(HOSTILE)
    path = draw(st.sampled_from(places))
    if how == "remove":
        body = copy.deepcopy(base)
        target = body
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
        return body
    if how == "add":
        parent = path[:-1]
        return put(base, parent + (draw(HOSTILE_TEXT),), draw(HOSTILE)) if not parent or isinstance(
            _at(base, parent), dict) else put(base, path, draw(HOSTILE))
    return put(base, path, draw(HOSTILE))


def _at(body, path):
    for step in path:
        body = body[step]
    return body


# ---- the system under fuzz ------------------------------------------------------------------


@pytest.fixture
def fuzzed(kafka_store, clock):
    system = bootstrap(kafka_store, clock=clock)
    api = make_api(system)
    now = clock.now()
    doc = api.upload(content=b"%PDF-1.4 fuzz notes")
    submit_body = request("cigna-commercial/dme", date_of_service=later(now, 10), documents=[doc])

    def case(policy: str = "cigna-commercial/dme", line: str | None = None, **kw) -> str:
        body = request(policy, date_of_service=later(now, 10), documents=[doc], line_of_business=line, **kw)
        r = api.post("/cases", body)
        assert r.status_code == 201, r.text
        return r.json()["case_id"]

    held = case()
    assert api.post(f"/cases/{held}/holds", {"requested_items": ["notes"]}, who="md").status_code == 200
    denied = case()
    assert api.post(f"/cases/{denied}/determination", {"outcome": "denied", "rationale": "criteria not met",
                                                        "guidelines": ["DME 1"]}, who="md").status_code == 200
    approved = case()
    assert api.post(f"/cases/{approved}/determination", {"outcome": "approved"}, who="md").status_code == 200
    draft = api.post("/drafts", {"policy": "cigna-commercial/dme", "line_of_business": "commercial"}).json()["case_id"]
    cases = {"pending": case(), "held": held, "denied": denied, "approved": approved, "draft": draft,
             "medicare": case("wellsense-ma-nh/msk", "medicare"), "submit_body": submit_body}
    relay = system.relay()
    drain(relay)
    running, stop = system.relay(), threading.Event()  # the relay publishes while the fuzz writes
    publisher = threading.Thread(target=running.run, args=(stop,), name="relay-under-fuzz", daemon=True)
    publisher.start()
    try:
        yield system, api, cases, relay
    finally:
        stop.set()
        publisher.join(timeout=60)
        running.close()
        relay.close()
        system.close()


def position(system) -> int:
    return system.app.max_position()


def send(api, path: str, who: str, body: object, **headers):
    """POST ``body`` as JSON text; escaped, so even a lone surrogate travels as a client would send it."""
    content = json.dumps(body, ensure_ascii=True).encode()
    return api.client.post(path, content=content, headers={**api.as_(who), "Content-Type": "application/json", **headers})


def assert_refusal_recorded_nothing(system, before: int, response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text[:300]
        assert position(system) == before, f"a refused request ({response.status_code}) recorded events"


def test_no_write_route_answers_5xx_or_records_a_refusal(fuzzed):
    system, api, cases, relay = fuzzed
    table = routes(cases)

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        path, who, base = data.draw(st.sampled_from(table))
        body = data.draw(mutated(base))
        key = data.draw(st.one_of(st.none(), st.sampled_from(["replayed-key", "k2"]), HOSTILE_TEXT))
        headers = {}
        if key is not None and all(32 <= ord(c) < 127 for c in key) and len(key) < 300:
            headers["Idempotency-Key"] = key
        before = position(system)
        assert_refusal_recorded_nothing(system, before, send(api, path, who, body, **headers))

    fuzz()
    after_the_fuzz_a_valid_write_reaches_the_topic(system, api, cases, relay)


def test_malformed_and_mistyped_bodies_are_refused_without_a_trace(fuzzed):
    system, api, cases, relay = fuzzed
    table = routes(cases)

    @FUZZ
    @given(route=st.sampled_from(table), raw=st.one_of(
        st.binary(max_size=200), st.sampled_from([b"{", b"[]", b"null", b'{"a":', b"\xff\xfe", b'{"x": NaN}',
                                                 b'{"x": 1e999}', b'"\\ud800"', b"[" * 5000 + b"]" * 5000])))
    def fuzz(route, raw):
        path, who, _ = route
        before = position(system)
        r = api.client.post(path, content=raw, headers={**api.as_(who), "Content-Type": "application/json"})
        assert_refusal_recorded_nothing(system, before, r)
        assert r.status_code >= 400

    fuzz()
    after_the_fuzz_a_valid_write_reaches_the_topic(system, api, cases, relay)


def test_a_replayed_key_with_another_body_is_refused_and_the_first_answer_stands(fuzzed):
    system, api, cases, relay = fuzzed
    table = [r for r in routes(cases) if r[0] != "/admin/clock"]

    @FUZZ
    @given(route=st.sampled_from(table), data=st.data())
    def fuzz(route, data):
        path, who, base = route
        key = f"replay-{path}"
        first = send(api, path, who, base, **{"Idempotency-Key": key})
        assert first.status_code < 500, first.text
        before = position(system)
        again = send(api, path, who, base, **{"Idempotency-Key": key})
        assert again.status_code < 500, again.text
        if first.status_code < 300:
            assert again.json() == first.json() and position(system) == before
        other = data.draw(mutated(base))
        if other != base:
            before = position(system)
            r = send(api, path, who, other, **{"Idempotency-Key": key})
            assert_refusal_recorded_nothing(system, before, r)
            if first.status_code < 300 and r.status_code < 300:
                # a body that reads as the same command (a default left out) is the same request: the first answer
                assert r.json() == first.json() and position(system) == before, r.text[:300]
            elif first.status_code < 300:
                assert r.status_code in (400, 403, 404, 409, 413, 422), r.text[:300]

    fuzz()
    after_the_fuzz_a_valid_write_reaches_the_topic(system, api, cases, relay)


def test_chunked_oversize_bodies_are_refused_before_they_are_buffered(fuzzed):
    system, api, cases, relay = fuzzed
    for path, who, base in routes(cases):
        if not base:
            continue  # a route that takes no body never reads one: nothing to buffer
        def chunks():
            yield b'{"notes": "'
            for _ in range(40):
                yield b"x" * 65_536
            yield b'"}'

        before = position(system)
        r = api.client.post(path, content=chunks(), headers={**api.as_(who), "Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert position(system) == before
    after_the_fuzz_a_valid_write_reaches_the_topic(system, api, cases, relay)


def after_the_fuzz_a_valid_write_reaches_the_topic(system, api, cases, relay) -> None:
    """The relay kept publishing through the fuzz (no input stopped it): a valid write now reaches
    the topic and every stored event is there once after dedupe."""
    clock_now = system.clock.now()
    body = request("cigna-commercial/dme", date_of_service=later(clock_now + timedelta(days=1), 10), documents=[],
                   member_no=999)
    r = api.post("/cases", body)
    assert r.status_code == 201, r.text
    limit = time.monotonic() + 120
    while relay.lag() > 0:  # the running relay catches up on its own
        assert time.monotonic() < limit, f"the relay is still {relay.lag()} events behind"
        time.sleep(0.2)
    check_topic_equals_store(system, system.settings)
