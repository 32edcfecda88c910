"""Every deadline kind becomes its event exactly once, on the manual clock; crashes and
racing schedulers neither lose nor double one."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import VersionConflict
from infra.bootstrap import bootstrap
from infra.clock import ManualClock
from scheduler.deadlines import due
from scheduler.service import runs
from tests.conftest import START
from tests.support import DME, MD, MEDONC, PROVIDER, RADONC, WELLSENSE, at, deny, document, event_types, later, refused, request, submit

UTC = timezone.utc


def armed(system, case_id: str) -> dict[str, str]:
    system.runner.catch_up(["deadlines"])
    with system.db.transaction() as cur:
        return {k: v for k, v in cur.execute("SELECT kind, instant FROM deadlines WHERE case_id = ?", (case_id,)).fetchall()}


def test_healthspring_hold_lapses_after_its_due_instant_and_goes_on_to_determination(system, app):
    cid = submit(app, RADONC)["case_id"]
    due = at(app.place_hold(cid, ["treatment plan"], actor=MD).view, "hold_due_at")
    assert "hold_due" in armed(system, cid)
    system.advance_clock(to=due - timedelta(seconds=1))
    assert app.view(cid)["status"] == "held"
    assert system.advance_clock(timedelta(seconds=1)) == 1
    assert app.view(cid)["status"] == "pending" and "hold_due" not in armed(system, cid)
    assert app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=5, igrt=True, valid_to="2026-05-01").view["status"] == "approved"


def test_an_upload_before_the_due_instant_disarms_the_lapse(system, app):
    cid = submit(app, RADONC)["case_id"]
    due = at(app.place_hold(cid, ["plan"], actor=MD).view, "hold_due_at")
    app.upload_clinical(cid, [document("plan.pdf", seed=cid)], actor=PROVIDER)
    assert "hold_due" not in armed(system, cid)
    system.advance_clock(to=due + timedelta(hours=1))
    assert "HoldLapsed" not in event_types(app, cid)


def test_decision_clock_warns_at_75_percent_and_breaches_at_the_due_instant_unless_determined(system, app):
    open_case = submit(app, WELLSENSE)
    decided = submit(app, WELLSENSE)["case_id"]
    app.determine(decided, actor=MD, outcome="approved")
    warning, due = at(open_case, "decision_warning_at"), at(open_case, "decision_due_at")
    assert warning == at(open_case, "received_at") + (due - at(open_case, "received_at")) * 3 / 4
    system.advance_clock(to=warning)
    assert event_types(app, open_case["case_id"])[-1] == "DecisionDueSoon"
    system.advance_clock(to=due)
    assert event_types(app, open_case["case_id"])[-1] == "DecisionOverdue"
    assert not {"DecisionDueSoon", "DecisionOverdue"} & set(event_types(app, decided))


def test_an_extended_decision_clock_is_re_armed(system, app):
    view = submit(app, MEDONC)
    cid = view["case_id"]
    app.extend_timeframe(cid, "matters_beyond_reviewer_control", 15, actor=MD)
    system.advance_clock(to=at(view, "decision_due_at") + timedelta(hours=1))
    assert "DecisionOverdue" not in event_types(app, cid)
    system.advance_clock(to=at(view, "decision_due_at") + timedelta(days=15))
    assert event_types(app, cid).count("DecisionOverdue") == 1


def test_cigna_commercial_appeal_window_closes_after_180_days_and_a_later_appeal_is_refused(system, app, clock):
    cid = submit(app, MEDONC, days_ahead=1)["case_id"]
    view = deny(app, cid)
    system.advance_clock(to=clock.now() + timedelta(days=179))
    assert "AppealWindowClosed" not in event_types(app, cid)
    system.advance_clock(to=at(view, "appeal_deadline"))
    assert "AppealWindowClosed" in event_types(app, cid)
    refused(system, lambda: app.file_appeal(cid, "late", actor=PROVIDER), "appeal-window-closed")


def test_medical_oncology_reconsideration_window_closes_at_the_end_of_the_date_of_service(system, app, clock):
    cid = submit(app, MEDONC, days_ahead=2)["case_id"]
    view = deny(app, cid)
    system.advance_clock(to=at(view, "reconsideration_deadline"))
    assert "ReconsiderationWindowClosed" in event_types(app, cid)
    refused(system, lambda: app.request_reconsideration(cid, "late", actor=PROVIDER), "reconsideration-window-closed")


def test_an_msk_approval_expires_180_days_after_review(system, app, clock):
    cid = submit(app, WELLSENSE)["case_id"]
    view = app.determine(cid, actor=MD, outcome="approved").view
    system.advance_clock(to=clock.now() + timedelta(days=180))
    assert app.view(cid)["status"] == "approved"
    system.advance_clock(to=at(view, "valid_to"))
    assert app.view(cid)["status"] == "expired"


def test_dme_alternative_recommendation_lapses_after_60_business_days(system, app):
    cid = submit(app, DME)["case_id"]
    view = app.determine(cid, actor=MD, outcome="alternative_recommended", rationale="APAP", guidelines=["DME 12"]).view
    system.advance_clock(to=at(view, "alternative_deadline"))
    assert "AlternativeRecommendationLapsed" in event_types(app, cid)


def test_a_draft_expires_at_the_end_of_the_day(system, app, clock):
    draft = app.start_draft({"policy": DME, "line_of_business": "commercial"}, actor=PROVIDER).view
    system.advance_clock(to=at(draft, "draft_expires_at"))
    assert app.view(draft["case_id"])["status"] == "cancelled"


def test_a_p2p_slot_that_passed_without_completion_is_recorded_missed(system, app, clock):
    cid = submit(app, DME)["case_id"]
    app.place_hold(cid, ["notes"], actor=MD)
    slot = clock.now() + timedelta(hours=3)
    app.schedule_p2p(cid, level="pre_decision", slot=slot.isoformat(), reviewer="Dr R", contact={"name": "O", "phone": "1"}, actor=PROVIDER)
    system.advance_clock(to=slot + timedelta(minutes=59))
    assert "P2PSlotMissed" not in event_types(app, cid)
    system.advance_clock(timedelta(minutes=1))
    assert app.view(cid)["p2ps"][0]["status"] == "missed"


def test_everything_due_fires_in_due_order_and_a_second_pass_records_nothing(system, app, clock):
    a = submit(app, RADONC)["case_id"]
    b = submit(app, RADONC, urgent=True)["case_id"]
    app.place_hold(a, ["plan"], actor=MD)
    system.advance_clock(timedelta(days=30))
    fired = [(e["occurred_at"], e["type"], e["case_id"]) for c in (a, b) for e in app.history(c)["events"] if e["actor"]["kind"] == "scheduler"]
    assert len(fired) == 5  # a: hold lapse, warning, breach; b: warning, breach
    before = app.max_position()
    assert system.scheduler.fire_due() == 0 and app.max_position() == before


def test_the_scheduler_fires_on_the_real_clock_within_a_second(tmp_path):
    from infra.settings import Settings

    system = bootstrap(Settings(data_dir=tmp_path))
    try:
        body = request(DME, date_of_service=later(datetime.now(UTC), 5))
        cid = system.app.submit(body, actor=PROVIDER).view["case_id"]
        due = datetime.now(UTC) + timedelta(seconds=2)
        system.app.place_hold(cid, ["notes"], due.isoformat(), actor=MD)
        system.scheduler.start()
        deadline = time.monotonic() + 10
        while "HoldLapsed" not in event_types(system.app, cid) and time.monotonic() < deadline:
            time.sleep(0.05)
        lapsed = [e for e in system.app.history(cid)["events"] if e["type"] == "HoldLapsed"]
        assert lapsed, "the hold never lapsed"
        assert datetime.fromisoformat(lapsed[0]["occurred_at"]) - due < timedelta(seconds=1)
    finally:
        system.close()


# ---- crashes and races, with real processes --------------------------------------------------


def arm_many(system, cases: int) -> set[str]:
    """Each held case arms three deadlines: hold due, decision warning, decision due. Sixteen callers
    at once, as a served system's clients would be, so that the writer commits them together."""

    def arm(i: int) -> str:
        body = request(DME, date_of_service=later(START, 5), member_no=i, documents=[])
        cid = system.app.submit(body, actor=PROVIDER).view["case_id"]
        system.app.place_hold(cid, ["notes"], actor=MD)
        return cid

    with concurrent.futures.ThreadPoolExecutor(16) as callers:
        ids = set(callers.map(arm, range(cases)))
    system.runner.catch_up(["deadlines"])
    return ids


def scheduler_process(settings, clock_start: datetime, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CASELOG_DATA_DIR": str(settings.data_dir), "CASELOG_CLOCK": "manual",
           "CASELOG_CLOCK_START": clock_start.isoformat()}
    env.pop("CASELOG_DATABASE_URL", None)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    return subprocess.Popen([sys.executable, "-m", "infra.cli", "scheduler", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def deadline_events(system) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for _, case_id, _, type_name, state in system.app.stored_events():
        if state["actor"]["kind"] == "scheduler":
            counts[(case_id, type_name)] += 1
    return counts


def wait_for_progress(system, start: int, grow: int, timeout: float = 60) -> None:
    limit = time.monotonic() + timeout
    while system.app.max_position() < start + grow:
        assert time.monotonic() < limit, "the scheduler made no progress"
        time.sleep(0.05)


def test_10000_deadlines_survive_a_sigkill_each_recorded_exactly_once(store, clock):
    system = bootstrap(store, clock=clock)
    try:
        ids = arm_many(system, 3334)
        with system.db.transaction() as cur:
            assert cur.execute("SELECT COUNT(*) FROM deadlines").fetchone()[0] >= 10_000
        start = system.app.max_position()
        past_all = START + timedelta(days=30)
        proc = scheduler_process(store, past_all)
        wait_for_progress(system, start, 500)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert system.app.max_position() < start + 10_002, "killed too late to test anything"
        again = scheduler_process(store, past_all, "--once")
        out, err = again.communicate(timeout=600)
        assert again.returncode == 0, err
        counts = deadline_events(system)
        kinds = collections.Counter(t for (_, t) in counts)
        assert kinds == {"HoldLapsed": len(ids), "DecisionDueSoon": len(ids), "DecisionOverdue": len(ids)}
        assert set(counts.values()) == {1}
        system.app.verify()
    finally:
        system.close()


def test_two_schedulers_racing_fire_each_deadline_once(store, clock):
    system = bootstrap(store, clock=clock)
    try:
        ids = arm_many(system, 300)
        later_clock = ManualClock(START + timedelta(days=30))
        peers = [bootstrap(store, clock=later_clock) for _ in range(2)]
        threads = [threading.Thread(target=p.scheduler.fire_due) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in peers:
            p.close()
        counts = deadline_events(system)
        assert len(counts) == 3 * len(ids) and set(counts.values()) == {1}
    finally:
        system.close()


def test_a_backlog_fires_in_due_order_many_cases_to_a_transaction(system, app):
    ids = arm_many(system, 120)  # 360 deadlines, three per case
    with system.db.transaction() as cur:
        in_due_order = [(c, k) for _, c, k, _, _ in due(cur, (START + timedelta(days=30)).isoformat(), limit=10_000)]
    batches = system.runner.writer.batches
    system.advance_clock(to=START + timedelta(days=30))
    fired = [(c, kind_of[t]) for _, c, _, t, state in app.stored_events() if state["actor"]["kind"] == "scheduler"]
    assert fired == in_due_order and len(fired) == 3 * len(ids)
    assert system.runner.writer.batches - batches < len(fired) / 10  # not a commit per deadline
    app.verify()


kind_of = {"HoldLapsed": "hold_due", "DecisionDueSoon": "decision_warning", "DecisionOverdue": "decision_due"}


def test_deadlines_fired_together_leave_out_those_their_case_refuses_and_record_nothing_when_all_are(system, app, clock):
    fired_before, held = submit(app, DME)["case_id"], submit(app, DME)["case_id"]
    due_at = {c: at(app.place_hold(c, ["notes"], actor=MD).view, "hold_due_at") for c in (fired_before, held)}
    clock.set(max(due_at.values()))
    app.fire_deadline("hold_due", fired_before, due_at[fired_before])
    head = app.max_position()
    assert app.fire_deadlines([("hold_due", c, due_at[c], None) for c in (fired_before, held)]) == 1
    assert app.max_position() == head + 1 and event_types(app, held)[-1] == "HoldLapsed"
    head = app.max_position()
    assert app.fire_deadlines([("hold_due", c, due_at[c], None) for c in (fired_before, held)]) == 0
    assert app.max_position() == head


def test_deadlines_fired_together_are_of_distinct_cases(system, app, clock):
    cid = submit(app, DME)["case_id"]
    view = app.place_hold(cid, ["notes"], actor=MD).view
    clock.set(at(view, "decision_due_at"))
    head = app.max_position()
    with pytest.raises(ValueError):
        app.fire_deadlines([("hold_due", cid, at(view, "hold_due_at"), None),
                            ("decision_due", cid, at(view, "decision_due_at"), None)])
    assert app.max_position() == head


def failing_hold(monkeypatch, *case_ids: str) -> list:
    """Makes the hold deadline of ``case_ids`` fail (its event refused) at every try; returns the instants
    it was tried at (once each: a failing run is tried again at once, deadline by deadline)."""
    from application import deadlines
    from domain.errors import EventTooLarge, FieldError

    tries, real = [], deadlines.DEADLINES["hold_due"]

    def lapse(case, ctx, instant, p2p_id):
        if str(case.id) in case_ids:
            if not tries or ctx.now - tries[-1] > timedelta(milliseconds=100):
                tries.append(ctx.now)
            raise EventTooLarge(FieldError("body", "too large to publish"))
        return real(case, ctx, instant, p2p_id)

    monkeypatch.setitem(deadlines.DEADLINES, "hold_due", lapse)
    return tries


def test_a_run_that_fails_is_fired_deadline_by_deadline_and_one_case_stops_no_other(system, app, clock, monkeypatch):
    """A run is one save: when it fails (a case changed meanwhile: VersionConflict; or one case's event
    cannot be recorded), the scheduler fires the run's deadlines one by one, so every other case's
    deadline is recorded and the one case's error is raised after them, that deadline tried again at
    the first firing after its retry wait (found by a second reader: nothing checked this fallback)."""
    from domain.errors import EventTooLarge

    ids = [submit(app, DME)["case_id"] for _ in range(4)]
    hold_due = max(at(app.place_hold(c, ["notes"], actor=MD).view, "hold_due_at") for c in ids)
    clock.set(hold_due)
    monkeypatch.setattr(app, "fire_deadlines", lambda run: (_ for _ in ()).throw(VersionConflict("a case changed")))
    bad = ids[1]
    failing_hold(monkeypatch, bad)
    head = app.max_position()
    with pytest.raises(EventTooLarge):
        system.scheduler.fire_due()
    lapsed = [c for c in ids if "HoldLapsed" in event_types(app, c)]
    assert lapsed == [c for c in ids if c != bad] and app.max_position() == head + 3
    assert "hold_due" in armed(system, bad)
    monkeypatch.undo()
    assert system.scheduler.fire_due() == 0, "tried again only after its retry wait"
    clock.advance(timedelta(seconds=1))
    assert system.scheduler.fire_due() == 1 and event_types(app, bad)[-1] == "HoldLapsed"
    assert all(event_types(app, c).count("HoldLapsed") == 1 for c in ids) and system.scheduler.failing == 0


def test_a_deadline_that_keeps_failing_waits_twice_as_long_after_each_failure_while_the_others_fire(
        system, app, clock, monkeypatch):
    """Not tried at every wake-up (twice a second, for every failing deadline, on the real clock): 1 s
    after its first failure, then 2, 4, 8 ... at most 5 minutes; a later deadline of another case fires
    on time all along, and once the cause is gone the deadline fires at its next try."""
    from scheduler.service import RETRY_MOST

    bad, good = (submit(app, DME)["case_id"] for _ in range(2))
    due = at(app.place_hold(bad, ["notes"], actor=MD).view, "hold_due_at")
    tries = failing_hold(monkeypatch, bad)
    clock.set(due)
    with pytest.raises(Exception, match="too large"):
        system.scheduler.fire_due()
    assert len(tries) == 1 and system.scheduler.failing == 1
    for wait in (1, 2, 4, 8):
        clock.advance(timedelta(seconds=wait) - timedelta(milliseconds=1))
        assert system.scheduler.fire_due() == 0 and len(tries) == 1 + (1, 2, 4, 8).index(wait), "tried too soon"
        clock.advance(timedelta(milliseconds=1))
        with pytest.raises(Exception, match="too large"):
            system.scheduler.fire_due()
    assert [b - a for a, b in zip(tries, tries[1:])] == [timedelta(seconds=w) for w in (1, 2, 4, 8)]
    later_due = at(app.place_hold(good, ["notes"], actor=MD).view, "hold_due_at")
    clock.set(later_due)  # the bad one is tried again meanwhile, or not: either way the good one fires
    try:
        system.scheduler.fire_due()
    except Exception:  # noqa: BLE001 - the bad one's failure, raised after the good one fired
        pass
    assert event_types(app, good)[-1] == "HoldLapsed" and "HoldLapsed" not in event_types(app, bad)
    for _ in range(12):  # the waits stop growing at RETRY_MOST
        clock.advance(RETRY_MOST)
        with pytest.raises(Exception, match="too large"):
            system.scheduler.fire_due()
    assert tries[-1] - tries[-2] == RETRY_MOST
    monkeypatch.undo()
    assert system.scheduler.fire_due() == 0
    clock.advance(RETRY_MOST)
    assert system.scheduler.fire_due() == 1 and event_types(app, bad)[-1] == "HoldLapsed"
    assert system.scheduler.failing == 0


def test_a_failing_deadline_made_moot_is_no_longer_counted_as_failing(system, app, clock, monkeypatch):
    from scheduler.service import Retry, RETRY_MOST

    cid = submit(app, DME)["case_id"]
    due = at(app.place_hold(cid, ["notes"], actor=MD).view, "hold_due_at")
    failing_hold(monkeypatch, cid)
    clock.set(due)
    with pytest.raises(Exception, match="too large"):
        system.scheduler.fire_due()
    assert system.scheduler.failing == 1
    app.upload_clinical(cid, [], "Polysomnography attached", actor=PROVIDER)  # ends the hold: no hold deadline
    assert system.scheduler.fire_due() == 0 and system.scheduler.failing == 0
    assert Retry(10**6, due).after(due).at == due + RETRY_MOST, "however many failures, the wait stays bounded"


def test_failing_deadlines_filling_a_page_of_due_ones_keep_no_later_deadline_from_firing(system, app, clock, monkeypatch):
    from scheduler import service

    monkeypatch.setattr(service, "DUE_PAGE", 2)  # as 1,000 failing deadlines would, due before the rest
    *bad, good = (submit(app, DME)["case_id"] for _ in range(4))
    for cid in bad:
        app.place_hold(cid, ["notes"], actor=MD)
    failing_hold(monkeypatch, *bad)
    clock.advance(timedelta(minutes=1))
    due = at(app.place_hold(good, ["notes"], actor=MD).view, "hold_due_at")
    clock.set(due)
    with pytest.raises(Exception, match="too large"):
        system.scheduler.fire_due()
    assert event_types(app, good)[-1] == "HoldLapsed" and system.scheduler.failing == 3


def test_failing_deadlines_first_in_the_timer_window_keep_no_later_deadline_from_its_timer(system, app, clock, monkeypatch):
    """The sync gives the next SYNC_WINDOW deadlines a timer job; those waiting for a retry, however many
    come first, do not take the place of a later one (which would then fire only at some retry)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from scheduler import service

    monkeypatch.setattr(service, "SYNC_WINDOW", 1)
    monkeypatch.setattr(service, "DUE_PAGE", 1)
    *bad, good = (submit(app, DME)["case_id"] for _ in range(3))
    for cid in bad:
        app.place_hold(cid, ["notes"], actor=MD)
    failing_hold(monkeypatch, *bad)
    clock.advance(timedelta(minutes=1))
    good_due = armed(system, app.place_hold(good, ["notes"], actor=MD).view["case_id"])["hold_due"]
    clock.set(datetime.fromisoformat(good_due) - timedelta(seconds=1))
    with pytest.raises(Exception, match="too large"):
        system.scheduler.fire_due()
    assert system.scheduler.failing == 2
    system.scheduler._timer = BackgroundScheduler(timezone=UTC)  # not started: the jobs it is given are kept
    try:
        system.scheduler.sync()
        assert system.scheduler._timer.get_job(f"case:{good}:hold_due:{good_due}") is not None
    finally:
        system.scheduler._timer = None


def test_on_the_real_clock_a_failing_deadline_is_woken_for_its_retries_only(tmp_path, monkeypatch):
    """The timer job of a failing deadline is set for its retry: without that, the sync every half second
    sets one for now, and every failing deadline wakes the scheduler twice a second."""
    from infra.settings import Settings

    system = bootstrap(Settings(data_dir=tmp_path))
    try:
        body = request(DME, date_of_service=later(datetime.now(UTC), 5))
        cid = system.app.submit(body, actor=PROVIDER).view["case_id"]
        system.app.place_hold(cid, ["notes"], (datetime.now(UTC) + timedelta(seconds=1)).isoformat(), actor=MD)
        tries = failing_hold(monkeypatch, cid)
        wakes = []
        wake = system.scheduler._wake
        monkeypatch.setattr(system.scheduler, "_wake", lambda: (wakes.append(time.monotonic()), wake()))
        system.scheduler.start()
        deadline = time.monotonic() + 10
        while not tries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tries, "the hold deadline was never tried"
        first, woken = time.monotonic(), len(wakes)
        time.sleep(3.5)  # tries at +1 s and +3 s; without the retry wait ~7 wake-ups, each a try
        assert len(tries) == 3, [t.isoformat() for t in tries]
        assert len(wakes) - woken <= 3, [round(w - first, 2) for w in wakes]
    finally:
        system.close()


def test_a_stop_while_the_sync_runs_waits_for_it_and_returns(tmp_path, monkeypatch):
    """APScheduler 3's shutdown holds its job stores' lock while it waits for the running jobs; the sync
    job takes that lock to look up a deadline's job. A stop that came while a sync was reading the
    deadlines waited for that sync, and the sync for the stop: ``caselog serve`` hung at its exit."""
    from infra.settings import Settings

    system = bootstrap(Settings(data_dir=tmp_path))
    try:
        body = request(DME, date_of_service=later(datetime.now(UTC), 5))
        cid = system.app.submit(body, actor=PROVIDER).view["case_id"]
        system.app.place_hold(cid, ["notes"], (datetime.now(UTC) + timedelta(minutes=5)).isoformat(), actor=MD)
        reading, release = threading.Event(), threading.Event()
        catch_up = system.runner.catch_up

        def slow_catch_up(*args, **kwargs):  # the sync, once started, is held here until the stop has begun
            if threading.current_thread().name.startswith("ThreadPoolExecutor") and not release.is_set():
                reading.set()
                release.wait(5)
            return catch_up(*args, **kwargs)

        monkeypatch.setattr(system.runner, "catch_up", slow_catch_up)
        system.scheduler.start()
        assert reading.wait(5), "the sync job never ran"
        stopper = threading.Thread(target=system.scheduler.stop, daemon=True)
        stopper.start()
        time.sleep(0.2)  # the stop is waiting now; then the sync goes on to look up the hold's job
        release.set()
        stopper.join(10)
        assert not stopper.is_alive(), "the stop and the running sync waited for each other"
        assert system.scheduler._timer is None
    finally:
        release.set()
        system.close()


def test_runs_keep_due_order_and_start_anew_at_a_case_already_in_the_run():
    rows = [("t1", "a"), ("t1", "b"), ("t2", "a"), ("t3", "c"), ("t4", "d"), ("t5", "e")]
    assert list(runs(rows, 3)) == [[("t1", "a"), ("t1", "b")], [("t2", "a"), ("t3", "c"), ("t4", "d")], [("t5", "e")]]
    assert list(runs([], 3)) == []


def test_a_standby_scheduler_takes_over_when_the_active_one_is_killed(store, clock):
    system = bootstrap(store, clock=clock)
    try:
        ids = arm_many(system, 600)
        start = system.app.max_position()
        past_all = START + timedelta(days=30)
        active = scheduler_process(store, past_all)
        wait_for_progress(system, start, 50)
        standby = scheduler_process(store, past_all)
        time.sleep(0.5)
        active.send_signal(signal.SIGKILL)
        active.wait()
        limit = time.monotonic() + 120
        while sum(deadline_events(system).values()) < 3 * len(ids) and time.monotonic() < limit:
            time.sleep(0.2)
        health = subprocess.run([sys.executable, "-m", "infra.cli", "alive", "scheduler"], capture_output=True, text=True,
                                env={**os.environ, "CASELOG_DATA_DIR": str(store.data_dir)})
        assert health.returncode == 0, health.stderr  # what docker compose's health check runs
        standby.send_signal(signal.SIGTERM)
        standby.wait(timeout=30)
        counts = deadline_events(system)
        assert len(counts) == 3 * len(ids) and set(counts.values()) == {1}
    finally:
        system.close()
