"""The dashboard without a browser: signing in (POST /session: cookie flags, expiry, sign-out, no
token in a URL), what each role sees (ops: no member data), the review queue's clocks and rules,
the figures against the metrics API, and the event stream. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import jwt
import pytest

from infra.demo.samples import later, request
from infra.http.sessions import COOKIE
from infra.identity import load_secret, mint
from tests.e2e.http_support import make_api


@pytest.fixture
def api(system):
    return make_api(system)


def submit(api, policy: str, member_no: int, *, urgent: bool = False, days: int = 14) -> dict:
    doc = api.upload(content=f"%PDF-1.4 notes {policy} {member_no}".encode())
    body = request(
        policy,
        date_of_service=later(api.system.clock.now(), days),
        documents=[doc],
        urgent=urgent,
        member_no=member_no,
    )
    r = api.post("/cases", body)
    assert r.status_code == 201, r.text
    return r.json()


def sign_in(api, who: str = "ops") -> str:
    r = api.client.post("/session", json={"token": api.tokens[who]})
    assert r.status_code == 201, r.text
    return r.cookies[COOKIE]


def as_browser(api, cookie: str | None):
    """A client that carries only the session cookie (no Authorization header)."""
    api.client.cookies.clear()
    if cookie:
        api.client.cookies.set(COOKIE, cookie)
    return api.client


def test_post_session_sets_a_short_lived_httponly_strict_cookie_and_delete_ends_it(api):
    r = api.client.post("/session", json={"token": api.tokens["ops"]})
    assert r.status_code == 201 and r.json()["role"] == "ops" and r.json()["sub"] == "ops-1"
    header = r.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    flags = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP here; over HTTPS the cookie is Secure
    max_age = int(next(f for f in flags if f.startswith("max-age=")).split("=")[1])
    assert 0 < max_age <= 3600
    cookie = r.cookies[COOKIE]
    assert api.tokens["ops"] not in cookie  # a session id, not the token

    client = as_browser(api, cookie)
    page = client.get("/dashboard")
    assert page.status_code == 200 and "Review queue" in page.text
    assert (
        page.headers["cache-control"] == "no-store"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert client.get("/dashboard/fragments/queue").status_code == 200

    out = client.delete("/session")
    assert out.status_code == 204
    assert f"{COOKIE}=" in out.headers["set-cookie"] and "max-age=0" in out.headers["set-cookie"].lower()
    client = as_browser(api, cookie)  # the old cookie, replayed after sign-out: ended server-side
    assert client.get("/dashboard/fragments/queue").status_code == 401
    assert client.get("/dashboard", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 303
    forged = cookie[:-3] + ("abc" if not cookie.endswith("abc") else "xyz")
    assert as_browser(api, forged).get("/dashboard/fragments/queue").status_code == 401


def test_no_token_in_the_url_and_a_browser_is_sent_to_the_sign_in_form(api):
    client = as_browser(api, None)
    assert client.get("/dashboard", params={"token": api.tokens["ops"]}).status_code == 401
    r = client.get("/dashboard/worklist", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/sign-in?next=%2Fdashboard%2Fworklist"
    form = client.get("/dashboard/sign-in")
    assert form.status_code == 200 and 'action="/session"' in form.text and 'type="password"' in form.text
    signed = client.post(
        "/session", data={"token": api.tokens["auditor"], "next": "/dashboard/worklist"}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/worklist"
    assert COOKIE in signed.cookies
    elsewhere = client.post(
        "/session", data={"token": api.tokens["auditor"], "next": "https://evil.example/x"}, follow_redirects=False
    )
    assert elsewhere.headers["location"] == "/dashboard"  # no open redirect


def test_expired_foreign_and_wrong_role_tokens_are_refused(api):
    secret = load_secret(api.system.settings.data_dir)
    now = int(time.time())  # a token that expired a minute ago (mint refuses a lifetime that is not positive)
    expired = jwt.encode({"iss": "caselog", "jti": "expired-1", "role": "ops", "sub": "late", "npis": [],
                          "iat": now - 120, "exp": now - 60}, secret, algorithm="HS256")
    client = as_browser(api, None)
    r = client.post("/session", json={"token": expired})
    assert r.status_code == 401 and "expired" in r.json()["detail"] and COOKIE not in r.cookies
    assert (
        client.post(
            "/session", json={"token": mint("another deployment's secret, long enough", role="ops", sub="x")}
        ).status_code
        == 401
    )
    assert client.post("/session", json={"token": api.tokens["provider"]}).status_code == 403
    assert client.post("/session", json={}).status_code == 422
    assert (
        client.post("/session", content=b"not json", headers={"Content-Type": "application/json"}).status_code == 422
    )
    page = client.post("/session", data={"token": expired})
    assert page.status_code == 401 and "not accepted" in page.text  # the form says why, as HTML
    cross = client.post("/session", json={"token": api.tokens["ops"]}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and COOKIE not in cross.cookies
    short = mint(secret, role="ops", sub="brief", ttl_seconds=90)
    r = client.post("/session", json={"token": short})
    max_age = int(re.search(r"max-age=(\d+)", r.headers["set-cookie"].lower()).group(1))
    assert max_age <= 90  # never past the token's own expiry


def test_ops_sees_case_numbers_status_clocks_and_policy_but_no_member_data(api):
    case = submit(api, "cigna-commercial/medical-oncology", 7)
    member = case["member"]
    number = case["case_number"]
    ops = as_browser(api, sign_in(api, "ops"))
    pages = [
        ops.get(p).text
        for p in (
            "/dashboard",
            "/dashboard/worklist?status=All",
            f"/dashboard/cases/{case['case_id']}",
            f"/dashboard/worklist?status=All&q={number}",
        )
    ]
    assert number in pages[0] and number in pages[1] and number in pages[3]
    for text in pages:
        assert member["last_name"] not in text and member["dob"] not in text and member["id"] not in text
        for diagnosis in case["service"]["diagnoses"]:
            assert diagnosis not in text
    assert "CaseSubmitted" in pages[2] and "standard 15 days (commercial)" in pages[2]
    by_name = ops.get(f"/dashboard/worklist?status=All&q={member['last_name']}").text
    assert number not in by_name  # ops searches by case or authorization number only

    reviewer = as_browser(api, sign_in(api, "md"))
    assert member["last_name"] in reviewer.get(f"/dashboard/worklist?status=All&q={member['last_name']}").text
    auditor = as_browser(api, sign_in(api, "auditor"))
    page = auditor.get(f"/dashboard/cases/{case['case_id']}").text
    assert member["last_name"] in page and member["dob"] in page
    reads = api.system.access.reads(case["case_id"])
    assert {r["who"]["kind"] for r in reads if r["what"] == "dashboard-case"} == {"ops", "auditor"}


def test_queue_shows_urgency_risk_and_overdue_with_time_left_and_the_rule_that_set_each_deadline(api):
    urgent = submit(api, "cigna-commercial/medical-oncology", 1, urgent=True)
    standard = submit(api, "healthspring-ma/radiation-oncology", 2)
    held = submit(api, "cigna-commercial/dme", 3)
    assert (
        api.post(
            f"/cases/{held['case_id']}/holds", {"requested_items": ["face-to-face notes", "sleep study"]}, who="md"
        ).status_code
        == 200
    )
    ops = as_browser(api, sign_in(api, "ops"))
    page = ops.get("/dashboard").text
    assert "urgent 72 h (medical oncology)" in page
    assert "standard 7 days (Medicare Advantage)" in page  # HealthSpring's 2026 row
    assert "URGENT" in page and "3 d 0 h left" in page
    held_section = ops.get("/dashboard/fragments/held").text
    assert (
        "face-to-face notes" in held_section and "sleep study" in held_section and held["case_number"] in held_section
    )
    assert re.search(r'data-count="held">1<', ops.get("/dashboard/fragments/counts").text)
    api.system.advance_clock(timedelta(hours=60))  # 75% of the urgent 72 h: at risk
    api.system.catch_up()
    queue = ops.get("/dashboard/fragments/queue").text
    row = re.search(rf'<tr class="[^"]*" data-case="{urgent["case_number"]}">.*?</tr>', queue, re.S).group(0)
    assert "at-risk" in row and "AT RISK" in row and "12 h 0 min left" in row
    api.system.advance_clock(timedelta(hours=13))
    api.system.catch_up()
    queue = ops.get("/dashboard/fragments/queue?flag=overdue").text
    assert urgent["case_number"] in queue and "OVERDUE" in queue and "overdue by 1 h 0 min" in queue
    assert standard["case_number"] not in queue
    counts = ops.get("/dashboard/fragments/counts").text
    assert re.search(r'data-count="overdue">1<', counts) and re.search(
        r'data-count="held">0<', counts
    )  # the hold lapsed
    by_due = ops.get("/dashboard/fragments/queue?sort=-due").text
    assert by_due.index(held["case_number"]) < by_due.index(urgent["case_number"])


def test_figures_by_week_agree_with_the_metrics_api(api):
    from projections import board

    for n, outcome in enumerate(["approved", "approved", "denied"]):
        case = submit(api, "cigna-commercial/medical-oncology", 10 + n)
        api.system.advance_clock(timedelta(hours=5))
        body = (
            {"outcome": outcome}
            if outcome == "approved"
            else {"outcome": "denied", "rationale": "criteria not met", "guidelines": ["g 1"]}
        )
        assert api.post(f"/cases/{case['case_id']}/determination", body, who="md").status_code == 200
    api.system.catch_up()
    figures = api.get("/metrics/prior-authorization", who="ops").json()
    now = api.system.clock.now()
    weekly = board.weekly_figures(api.system.db, start=now.date() - timedelta(days=14), end=now.date())
    standard = [w for w in weekly if not w["urgent"]]
    assert sum(w["decided"] for w in standard) == figures["standard"]["decided"] == 3
    assert sum(w["approved"] for w in standard) == figures["standard"]["approved"]["numerator"] == 2
    assert abs(standard[0]["median_hours"] - figures["standard"]["median_hours_to_decision"]) <= 0.05
    ops = as_browser(api, sign_in(api, "ops"))
    page = ops.get("/dashboard/figures").text
    assert page.count("<svg") >= 6 and 'data-value="66.7"' in page and "66.7% approved" in page


def test_the_event_stream_says_changed_when_the_store_moves(api, monkeypatch):
    from infra.http.dashboard import pages

    monkeypatch.setattr(pages, "STREAM_SECONDS", 3.0)
    monkeypatch.setattr(pages, "POLL_SECONDS", 0.2)
    client = as_browser(api, sign_in(api, "ops"))

    def write():
        time.sleep(1.0)
        submit(api, "cigna-commercial/dme", 20)

    writer = threading.Thread(target=write)
    writer.start()
    body = client.get("/dashboard/events").text
    writer.join()
    assert body.startswith("retry: ") and "event: ready" in body and "event: changed" in body
    ids = re.findall(r"^id: (\S+)$", body, re.M)
    assert len(set(ids)) >= 2
    again = client.get("/dashboard/events", headers={"Last-Event-ID": ids[0]}).text  # a reconnect after a change
    assert "event: changed" in again.split("\n\n", 2)[1]
    assert as_browser(api, None).get("/dashboard/events").status_code == 401


def test_odd_parameters_answer_pages_not_errors(api):
    case = submit(api, "cigna-commercial/dme", 30)
    client = as_browser(api, sign_in(api, "auditor"))
    for path in ("/dashboard?page=abc&sort=zzz&flag=%00&policy=x", "/dashboard/figures?from=0001-01-01&to=9999-12-31",
                 "/dashboard/fragments/p2p?day=0001-01-01", "/dashboard/worklist?status=bogus&q=%00%01",
                 f"/dashboard/cases/{case['case_id']}?as_of=0001-01-01T00:00",
                 f"/dashboard/cases/{case['case_id']}?as_of=garbage"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
    assert client.get("/dashboard/cases/not-a-case").status_code == 404
    assert client.get("/dashboard/static/../secret.key").status_code == 404
    assert client.get("/dashboard/fragments/nothing").status_code == 404
