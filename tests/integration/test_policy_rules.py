"""Every rule row of POLICIES.md, exercised through the application service on SQLite and
on PostgreSQL. Each refusal also checks that nothing was recorded."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from domain.errors import InvalidInput, NotApplicable, NotPermitted, UnknownPolicy, DocumentTooLarge
from domain.policy import policy_in_force
from tests.support import (
    AETNA_MSK, AETNA_RAD, DME, DO, MD, MEDONC, PROVIDER, RADONC, RN, WELLSENSE,
    at, deny, document, event_types, later, pre_denial, refused, request, submit,
)

UTC = timezone.utc


# ---- when prior authorization applies ------------------------------------------------------


@pytest.mark.parametrize("pos, observation", [("23", False), ("21", False), ("22", True)])
def test_radiation_oncology_does_not_apply_in_emergency_room_observation_or_inpatient(system, app, pos, observation):
    body = request(RADONC, date_of_service=later(app.clock.now(), 5))
    body["site"]["place_of_service"] = pos
    body["service"]["observation"] = observation
    err = refused(system, lambda: app.submit(body, actor=PROVIDER), kind=NotApplicable)
    assert "do not require prior authorization" in err.detail


def test_medical_oncology_does_not_apply_inpatient_or_to_patients_active_in_transplant(system, app):
    inpatient = request(MEDONC, date_of_service=later(app.clock.now(), 5))
    inpatient["site"]["place_of_service"] = "21"
    refused(system, lambda: app.submit(inpatient, actor=PROVIDER), "place-of-service-excluded")
    transplant = request(MEDONC, date_of_service=later(app.clock.now(), 5), clinical={"active_transplant": True})
    err = refused(system, lambda: app.submit(transplant, actor=PROVIDER), kind=NotApplicable)
    assert "transplant" in err.detail
    assert submit(app, MEDONC)["status"] == "pending"


@pytest.mark.parametrize("pos", ["21", "31", "24"])
def test_dme_applies_only_home_based(system, app, pos):
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    body["site"]["place_of_service"] = pos
    refused(system, lambda: app.submit(body, actor=PROVIDER), "place-of-service-excluded")


def test_dme_does_not_apply_to_dates_of_service_before_2026_03_07(system, app):
    body = request(DME, date_of_service=date(2026, 3, 6))
    refused(system, lambda: app.submit(body, actor=PROVIDER), "date-of-service-before-program")


def test_msk_does_not_apply_to_dates_of_service_before_2023_03_01(system, app):
    body = request(WELLSENSE, date_of_service=date(2023, 2, 28))
    refused(system, lambda: app.submit(body, actor=PROVIDER), "date-of-service-before-program")


def test_unknown_policy_and_unserved_line_are_refused(system, app):
    body = request(MEDONC, date_of_service=later(app.clock.now(), 5))
    refused(system, lambda: app.submit({**body, "policy": "acme/dental"}, actor=PROVIDER), kind=UnknownPolicy)
    refused(system, lambda: app.submit({**body, "line_of_business": "medicare"}, actor=PROVIDER), "line-not-served")


# ---- clocks --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, hours", [(RADONC, 24), (MEDONC, 72), (DME, 72), (WELLSENSE, 72), (AETNA_RAD, 72)])
def test_urgent_decision_due(app, policy, hours):
    view = submit(app, policy, urgent=True)
    assert view["urgent"] is True
    assert at(view, "decision_due_at") - at(view, "received_at") == timedelta(hours=hours)


@pytest.mark.parametrize("policy, line, days", [(RADONC, "medicare", 7), (AETNA_RAD, "medicaid", 7), (MEDONC, "commercial", 15), (WELLSENSE, "commercial", 15)])
def test_standard_decision_due_is_7_days_for_medicare_and_medicaid_and_15_for_commercial(app, policy, line, days):
    view = submit(app, policy, line_of_business=line)
    assert at(view, "decision_due_at") - at(view, "received_at") == timedelta(days=days)
    # target: 2 business days after complete clinical (Tue 10:00 -> Thu 10:00)
    assert at(view, "decision_target_at") == at(view, "received_at") + timedelta(days=2)


def test_standard_decision_limit_was_14_days_before_2026(system, app, clock):
    body = request(RADONC, date_of_service=later(clock.now(), 5), submitted_at="2025-12-30T15:00:00+00:00")
    view = app.submit(body, actor=PROVIDER).view
    assert view["policy_version"] == 1
    assert at(view, "decision_due_at") == datetime(2026, 1, 13, 15, tzinfo=UTC)


def test_decision_target_skips_weekends_and_federal_holidays(app, clock):
    clock.set(datetime(2026, 5, 22, 15, tzinfo=UTC))  # Friday before Memorial Day
    view = submit(app, WELLSENSE)
    assert at(view, "decision_target_at") == datetime(2026, 5, 27, 15, tzinfo=UTC)


def test_decision_timeframe_extends_once_on_medicare_for_enrollee_request_or_non_contract_information(system, app):
    case = submit(app, RADONC)
    cid = case["case_id"]
    refused(system, lambda: app.extend_timeframe(cid, "contracted_provider_records", 14, actor=MD), "extension-reason-not-allowed")
    refused(system, lambda: app.extend_timeframe(cid, "enrollee_request", 15, actor=MD), kind=InvalidInput)
    view = app.extend_timeframe(cid, "non_contract_provider_information", 14, actor=MD).view
    assert at(view, "decision_due_at") == at(case, "decision_due_at") + timedelta(days=14)
    assert view["timeframe_extended"] is True
    refused(system, lambda: app.extend_timeframe(cid, "enrollee_request", 1, actor=MD), "extension-once")
    letters = [e["data"] for e in app.history(cid)["events"] if e["type"] == "LetterIssued"]
    assert {(x["recipient"], x["letter_kind"]) for x in letters} == {("provider", "timeframe_extension"), ("member", "timeframe_extension")}


def test_commercial_decision_timeframe_extends_once_by_15_days_for_matters_beyond_control(system, app):
    cid = submit(app, MEDONC)["case_id"]
    refused(system, lambda: app.extend_timeframe(cid, "enrollee_request", 15, actor=MD), "extension-reason-not-allowed")
    view = app.extend_timeframe(cid, "matters_beyond_reviewer_control", 15, actor=MD).view
    assert at(view, "decision_due_at") - at(view, "received_at") == timedelta(days=30)


def test_medicaid_urgent_request_is_never_extended_beyond_72_hours(system, app):
    cid = submit(app, AETNA_RAD, urgent=True)["case_id"]
    refused(system, lambda: app.extend_timeframe(cid, "enrollee_request", 5, actor=MD), "extension-not-for-urgent")


@pytest.mark.parametrize("policy", [RADONC, AETNA_RAD, AETNA_MSK, WELLSENSE, DME])
def test_urgent_requires_upload_otherwise_processed_as_standard(app, policy):
    view = submit(app, policy, urgent=True, documents=[])
    assert view["urgent"] is False and view["urgent_requested"] is True
    assert "processed as standard" in view["urgent_note"]
    row_limit = policy_in_force(policy, app.clock.now().date()).standard_limit_days[view["line_of_business"]]
    assert at(view, "decision_due_at") - at(view, "received_at") == timedelta(days=row_limit)
    assert submit(app, policy, urgent=True)["urgent"] is True


def test_medical_oncology_states_no_upload_condition_for_urgent_requests(app):
    view = submit(app, MEDONC, urgent=True, documents=[])
    assert view["urgent"] is True and view["urgent_note"] is None
    assert at(view, "decision_due_at") - at(view, "received_at") == timedelta(hours=72)


@pytest.mark.parametrize("policy, hours", [(RADONC, 24), (DME, 72), (AETNA_MSK, 72)])
def test_urgent_request_taken_by_phone_needs_no_upload(app, policy, hours):
    view = submit(app, policy, urgent=True, documents=[], channel="phone")
    assert view["urgent"] is True and view["urgent_note"] is None
    assert at(view, "decision_due_at") - at(view, "received_at") == timedelta(hours=hours)


def test_urgent_uploads_take_at_most_five_documents(system, app):
    docs = [document(f"d{i}.pdf", seed=str(i)) for i in range(6)]
    body = request(AETNA_MSK, date_of_service=later(app.clock.now(), 5), urgent=True, documents=docs)
    refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)


def test_hold_due_date_defaults_to_two_business_days_standard_and_24_hours_urgent(system, app, clock):
    clock.set(datetime(2026, 3, 13, 15, tzinfo=UTC))  # Friday
    standard = submit(app, RADONC)["case_id"]
    view = app.place_hold(standard, ["treatment plan"], actor=MD).view
    assert at(view, "hold_due_at") == datetime(2026, 3, 17, 15, tzinfo=UTC)  # Tuesday
    urgent = submit(app, MEDONC, urgent=True)["case_id"]
    assert at(app.place_hold(urgent, ["labs"], actor=MD).view, "hold_due_at") == clock.now() + timedelta(hours=24)
    stated = submit(app, DME)["case_id"]
    due = (clock.now() + timedelta(days=3)).isoformat()
    assert app.place_hold(stated, ["face-to-face notes"], due, actor=MD).view["hold_due_at"] == due
    letter = [e["data"] for e in app.history(stated)["events"] if e["type"] == "LetterIssued"][0]
    assert letter["letter_kind"] == "request_for_information"


def test_hold_cannot_outlast_the_decision_clock_or_be_placed_twice(system, app, clock):
    cid = submit(app, RADONC, urgent=True)["case_id"]
    late = (clock.now() + timedelta(days=3)).isoformat()
    refused(system, lambda: app.place_hold(cid, ["plan"], late, actor=MD), "hold-beyond-decision-due")
    due = at(app.place_hold(cid, ["plan"], actor=MD).view, "hold_due_at")
    clock.set(due)
    app.fire_deadline("hold_due", cid, due)
    refused(system, lambda: app.place_hold(cid, ["plan"], actor=MD), "hold-once")


def test_hold_lapses_and_review_continues_on_the_original_submission(system, app, clock):
    cid = submit(app, RADONC)["case_id"]
    view = app.place_hold(cid, ["treatment plan"], actor=MD).view
    refused(system, lambda: app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=5, igrt=False, valid_to=later(clock.now(), 30).isoformat()), "case-held")
    due = at(view, "hold_due_at")
    refused(system, lambda: app.fire_deadline("hold_due", cid, due), "deadline-not-due")
    clock.set(due)
    assert app.fire_deadline("hold_due", cid, due).view["status"] == "pending"
    refused(system, lambda: app.fire_deadline("hold_due", cid, due), "deadline-disarmed")
    approved = app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=5, igrt=False, valid_to=later(clock.now(), 30).isoformat()).view
    assert approved["status"] == "approved"
    assert event_types(app, cid).count("ClinicalUploaded") == 0


def test_pre_decision_p2p_must_take_place_before_the_hold_due_date(system, app, clock):
    cid = submit(app, DME)["case_id"]
    contact = {"name": "Office", "phone": "555-0100"}
    refused(system, lambda: app.schedule_p2p(cid, level="pre_decision", slot=(clock.now() + timedelta(hours=2)).isoformat(), reviewer="Dr R", contact=contact, actor=PROVIDER), "p2p-not-eligible")
    view = app.place_hold(cid, ["notes"], actor=MD).view
    after_due = (at(view, "hold_due_at") + timedelta(minutes=1)).isoformat()
    refused(system, lambda: app.schedule_p2p(cid, level="pre_decision", slot=after_due, reviewer="Dr R", contact=contact, actor=PROVIDER), "p2p-after-hold-due")
    refused(system, lambda: app.schedule_p2p(cid, level="reconsideration", slot=(clock.now() + timedelta(hours=2)).isoformat(), reviewer="Dr R", contact=contact, actor=PROVIDER), "p2p-not-eligible")
    view = app.schedule_p2p(cid, level="pre_decision", slot=(clock.now() + timedelta(hours=2)).isoformat(), reviewer="Dr R", contact=contact, actor=PROVIDER).view
    p2p = view["p2ps"][0]["p2p_id"]
    refused(system, lambda: app.complete_p2p(cid, p2p, "done", actor=MD), "p2p-not-started")
    clock.advance(timedelta(hours=2))
    assert app.complete_p2p(cid, p2p, "information provided", actor=MD).view["status"] == "pending"


def test_pre_decision_p2p_is_not_offered_where_the_program_has_none(system, app, clock):
    cid = submit(app, MEDONC)["case_id"]
    view = app.place_hold(cid, ["labs"], actor=MD).view
    assert view["p2p_eligibility"]["eligible"] is False
    refused(system, lambda: app.schedule_p2p(cid, level="pre_decision", slot=(clock.now() + timedelta(hours=2)).isoformat(), reviewer="Dr R", contact={"name": "O", "phone": "1"}, actor=PROVIDER), "p2p-not-eligible")


def test_upload_ends_the_hold_even_before_the_due_date_and_cancels_the_pre_decision_p2p(system, app, clock):
    cid = submit(app, RADONC)["case_id"]
    app.place_hold(cid, ["treatment plan"], actor=MD)
    app.schedule_p2p(cid, level="pre_decision", slot=(clock.now() + timedelta(hours=5)).isoformat(), reviewer="Dr R", contact={"name": "O", "phone": "1"}, actor=PROVIDER)
    clock.advance(timedelta(hours=1))
    view = app.upload_clinical(cid, [document("plan.pdf", seed=cid)], "plan attached", actor=PROVIDER).view
    assert view["status"] == "pending" and view["hold_due_at"] is None
    assert view["p2ps"][0]["status"] == "cancelled"
    assert at(view, "decision_target_at") == clock.now() + timedelta(days=2)
    types = event_types(app, cid)
    assert types[-3:] == ["ClinicalUploaded", "HoldReleased", "P2PCancelled"]
    refused(system, lambda: app.place_hold(cid, ["more"], actor=MD), "hold-once")


def test_radiation_oncology_retro_request_within_1_business_day_of_the_date_of_service(system, app, clock):
    clock.set(datetime(2026, 3, 16, 15, tzinfo=UTC))  # Monday: Friday's service is 1 business day back
    assert submit(app, RADONC, days_ahead=-3)["retro"] is True
    clock.set(datetime(2026, 3, 18, 15, tzinfo=UTC))  # Wednesday: Friday is 3 business days back
    body = request(RADONC, date_of_service=date(2026, 3, 13))
    refused(system, lambda: app.submit(body, actor=PROVIDER), "retro-window-passed")


def test_medical_oncology_retro_request_within_30_calendar_days_later_refused_pointing_to_appeal(system, app, clock):
    assert submit(app, MEDONC, days_ahead=-30)["retro"] is True
    body = request(MEDONC, date_of_service=later(clock.now(), -31))
    err = refused(system, lambda: app.submit(body, actor=PROVIDER), "retro-window-passed")
    assert "appeal" in err.detail


def test_dme_retro_request_within_15_business_days_and_approval_starts_on_the_request_date(system, app, clock):
    view = submit(app, DME, days_ahead=-1)
    assert view["retro"] is True
    clock.advance(timedelta(days=2))
    approved = app.determine(view["case_id"], actor=MD, outcome="approved").view
    assert approved["valid_from_date"] == "2026-03-10"
    clock.set(datetime(2026, 4, 20, 15, tzinfo=UTC))
    body = request(DME, date_of_service=date(2026, 3, 20))  # 20 business days back
    refused(system, lambda: app.submit(body, actor=PROVIDER), "retro-window-passed")


def test_programs_without_a_retro_window_refuse_retro_requests(system, app, clock):
    body = request(WELLSENSE, date_of_service=later(clock.now(), -1))
    refused(system, lambda: app.submit(body, actor=PROVIDER), "retro-not-accepted")


def test_msk_approval_is_valid_180_days_from_the_review_date(app, clock):
    clock.set(datetime(2026, 6, 13, 15, tzinfo=UTC))
    view = app.determine(submit(app, WELLSENSE)["case_id"], actor=MD, outcome="approved").view
    assert (view["valid_from_date"], view["valid_to_date"]) == ("2026-06-13", "2026-12-10")


def test_medical_oncology_approval_is_valid_8_months_by_default_up_to_12_and_30_days_for_a_site_of_care_redirect(system, app, clock):
    view = app.determine(submit(app, MEDONC)["case_id"], actor=MD, outcome="approved").view
    assert view["valid_to_date"] == "2026-11-10"
    twelve = app.determine(submit(app, MEDONC)["case_id"], actor=MD, outcome="approved", valid_to="2027-03-10").view
    assert twelve["valid_to_date"] == "2027-03-10"
    cid = submit(app, MEDONC)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="approved", valid_to="2027-03-11"), "validity-too-long")
    redirect = app.determine(cid, actor=MD, outcome="approved", site_of_care_redirect=True).view
    assert redirect["valid_to_date"] == "2026-04-09"


def test_dme_purchase_is_valid_180_days_and_a_rental_the_approved_months(app):
    purchase = app.determine(submit(app, DME)["case_id"], actor=MD, outcome="approved").view
    assert purchase["valid_to_date"] == "2026-09-06"
    rental = app.determine(
        submit(app, DME)["case_id"], actor=MD, outcome="approved",
        lines=[{"code": "E0601", "decision": "approved", "rental": "months"}, {"code": "A7030", "decision": "approved", "rental": "days"}],
    ).view
    assert rental["valid_to_date"] == "2026-04-10"  # one month of CPAP rental; 3 days of supplies


def test_radiation_oncology_approval_states_the_treatment_span(system, app, clock):
    cid = submit(app, RADONC)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=25, igrt=True), kind=InvalidInput)
    view = app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=25, igrt=True, valid_to="2026-05-01").view
    assert view["valid_to_date"] == "2026-05-01"


def test_dme_alternative_recommendation_may_be_accepted_within_60_business_days_then_lapses(system, app, clock):
    a = submit(app, DME)["case_id"]
    view = app.determine(a, actor=MD, outcome="alternative_recommended", rationale="APAP instead", guidelines=["DME 12"]).view
    deadline = at(view, "alternative_deadline")
    assert view["alternative_deadline"] == "2026-06-04T03:59:59+00:00"  # end of 2026-06-03 New York: 60 business days on
    clock.set(deadline - timedelta(hours=1))
    assert app.accept_alternative(a, actor=PROVIDER).view["status"] == "approved"
    b = submit(app, DME)["case_id"]
    view = app.determine(b, actor=MD, outcome="alternative_recommended", rationale="APAP instead", guidelines=["DME 12"]).view
    clock.set(at(view, "alternative_deadline") + timedelta(seconds=1))
    refused(system, lambda: app.accept_alternative(b, actor=PROVIDER), "alternative-lapsed")
    app.fire_deadline("alternative_lapse", b, at(view, "alternative_deadline"))
    refused(system, lambda: app.accept_alternative(b, actor=PROVIDER), "no-alternative-open")


def test_alternative_recommendation_only_where_the_program_offers_it(system, app):
    cid = submit(app, MEDONC)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="alternative_recommended", rationale="r", guidelines=["g"]), "alternative-not-offered")


def test_healthspring_appeal_window_is_60_days_from_the_initial_determination(system, app, clock):
    cid = submit(app, RADONC)["case_id"]
    pre_denial(app, cid)
    view = deny(app, cid)
    assert view["appeal_deadline"].startswith("2026-05-10")  # end of day 2026-05-09 New York time
    clock.set(at(view, "appeal_deadline") + timedelta(seconds=1))
    refused(system, lambda: app.file_appeal(cid, "late", actor=PROVIDER), "appeal-window-closed")


def test_cigna_commercial_appeal_window_closes_after_180_days_and_a_later_appeal_is_refused(system, app, clock):
    cid = submit(app, MEDONC, days_ahead=1)["case_id"]
    view = deny(app, cid)
    deadline = at(view, "appeal_deadline")
    assert view["appeal_deadline"].startswith("2026-09-07")
    clock.set(deadline)
    filed_in_time = app.file_appeal(cid, "in time", filed_at=(deadline - timedelta(days=1)).isoformat(), actor=PROVIDER).view
    assert filed_in_time["appeals"][0]["level"] == 1
    other = submit(app, MEDONC, days_ahead=1)["case_id"]
    v2 = deny(app, other)
    clock.set(at(v2, "appeal_deadline"))
    app.fire_deadline("appeal_window", other, at(v2, "appeal_deadline"))
    refused(system, lambda: app.file_appeal(other, "late", actor=PROVIDER), "appeal-window-closed")


def test_medicare_case_cannot_be_reconsidered(system, app):
    for policy, line in ((RADONC, "medicare"), (AETNA_MSK, "duals"), (WELLSENSE, "medicare")):
        cid = submit(app, policy, line_of_business=line)["case_id"]
        pre_denial(app, cid)
        view = deny(app, cid)
        assert "reconsideration" not in view["post_decision_options"]
        refused(system, lambda: app.request_reconsideration(cid, "new info", actor=PROVIDER), "medicare-no-reconsideration")


def test_medical_oncology_reconsideration_on_or_before_the_date_of_service_and_before_any_appeal(system, app, clock):
    cid = submit(app, MEDONC, days_ahead=3)["case_id"]
    view = deny(app, cid)
    assert view["reconsideration_deadline"].startswith("2026-03-14")  # end of 2026-03-13 New York
    assert view["p2p_eligibility"]["level"] == "reconsideration"
    assert view["p2p_eligibility"]["valid_until"] == view["reconsideration_deadline"]
    clock.set(at(view, "reconsideration_deadline") + timedelta(seconds=1))
    refused(system, lambda: app.request_reconsideration(cid, "late", actor=PROVIDER), "reconsideration-window-closed")
    other = submit(app, MEDONC, days_ahead=30)["case_id"]
    deny(app, other)
    app.file_appeal(other, "appeal first", actor=PROVIDER)
    refused(system, lambda: app.request_reconsideration(other, "after appeal", actor=PROVIDER), "reconsideration-after-appeal")


def test_dme_reconsideration_any_time_after_the_determination_unless_an_appeal_was_filed(system, app, clock):
    cid = submit(app, DME, days_ahead=2)["case_id"]
    view = deny(app, cid)
    assert view["reconsideration_deadline"] is None
    clock.advance(timedelta(days=100))
    view = app.request_reconsideration(cid, "new sleep study", [document("study.pdf", seed=cid)], actor=PROVIDER).view
    assert view["reconsideration"]["outcome"] is None
    assert app.decide_reconsideration(cid, actor=MD, outcome="approved").view["status"] == "approved"


def test_programs_without_reconsideration_refuse_it(system, app):
    cid = submit(app, WELLSENSE)["case_id"]
    deny(app, cid)
    refused(system, lambda: app.request_reconsideration(cid, "x", actor=PROVIDER), "reconsideration-not-offered")


def test_in_progress_request_expires_at_the_end_of_the_day_it_was_started(system, app, clock):
    draft = app.start_draft({"policy": DME, "line_of_business": "commercial"}, actor=PROVIDER).view
    assert draft["status"] == "draft" and draft["draft_expires_at"] == "2026-03-11T03:59:59+00:00"
    clock.set(at(draft, "draft_expires_at") + timedelta(seconds=1))
    body = request(DME, date_of_service=later(clock.now(), 5))
    refused(system, lambda: app.submit_draft(draft["case_id"], body, actor=PROVIDER), "draft-expired")
    assert app.fire_deadline("draft_expiry", draft["case_id"], at(draft, "draft_expires_at")).view["status"] == "cancelled"
    fresh = app.start_draft({"policy": DME, "line_of_business": "commercial"}, actor=PROVIDER).view
    assert app.submit_draft(fresh["case_id"], body, actor=PROVIDER).view["status"] == "pending"


# ---- determinations ------------------------------------------------------------------------


def test_outcomes_are_approved_partially_approved_denied_alternative(system, app):
    cid = submit(app, WELLSENSE)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="maybe"), kind=InvalidInput)
    assert app.determine(cid, actor=MD, outcome="approved").view["status"] == "approved"
    refused(system, lambda: app.determine(cid, actor=MD, outcome="denied", rationale="r", guidelines=["g"]), "already-determined")


def test_medical_oncology_makes_no_partial_approvals(system, app):
    cid = submit(app, MEDONC)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="partially_approved", rationale="r", guidelines=["g"],
                                          lines=[{"code": "J9271", "units_approved": 10, "decision": "partially_approved"}]), "no-partial-approval")


def test_dme_partial_approval_is_per_code_line_and_the_letter_lists_both(system, app):
    cid = submit(app, DME)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="partially_approved", rationale="r", guidelines=["g"],
                                          lines=[{"code": "E0601", "decision": "approved"}, {"code": "A7030", "units_approved": 1, "decision": "partially_approved"}]), "partial-approval-per-line")
    view = app.determine(cid, actor=MD, outcome="partially_approved", rationale="supplies not needed", guidelines=["DME 7"],
                         lines=[{"code": "E0601", "decision": "approved"}, {"code": "A7030", "decision": "denied"}]).view
    assert [(ln["code"], ln["decision"]) for ln in view["lines"]] == [("E0601", "approved"), ("A7030", "denied")]
    assert view["authorization_number"] == f"A{view['case_number']}"
    determined = [e for e in app.history(cid)["events"] if e["type"] == "CaseDetermined"][0]
    assert {ln["decision"] for ln in determined["data"]["lines"]} == {"approved", "denied"}


def test_radiation_oncology_approval_states_technique_fractions_and_igrt(system, app, clock):
    cid = submit(app, RADONC)["case_id"]
    err = refused(system, lambda: app.determine(cid, actor=MD, outcome="approved", technique="IMRT", valid_to="2026-05-01"), kind=InvalidInput)
    assert {e.field for e in err.errors} == {"fractions", "igrt"}
    view = app.determine(cid, actor=MD, outcome="approved", technique="3D-CRT", fractions=15, igrt=False, valid_to="2026-05-01").view
    assert view["approval"] == {"technique": "3D-CRT", "fractions": 15, "igrt": False}


def test_denial_carries_rationale_guideline_and_post_decision_options(system, app):
    cid = submit(app, MEDONC, days_ahead=10)["case_id"]
    refused(system, lambda: app.determine(cid, actor=MD, outcome="denied"), kind=InvalidInput)
    refused(system, lambda: app.determine(cid, actor=MD, outcome="denied", rationale="not indicated"), kind=InvalidInput)
    view = deny(app, cid)
    assert view["post_decision_options"] == ["reconsideration", "reconsideration_p2p", "appeal"]
    data = [e for e in app.history(cid)["events"] if e["type"] == "CaseDetermined"][0]["data"]
    assert data["rationale"] and data["guidelines"] == ["guideline 1.2"]


def test_medicare_provider_is_notified_before_a_denial(system, app):
    cid = submit(app, WELLSENSE, line_of_business="medicare")["case_id"]
    refused(system, lambda: deny(app, cid), "pre-denial-notice-required")
    pre_denial(app, cid)
    assert deny(app, cid)["status"] == "denied"
    commercial = submit(app, WELLSENSE)["case_id"]
    assert deny(app, commercial)["status"] == "denied"


@pytest.mark.parametrize("line", ["medicare", "duals"])
def test_medicare_denial_needs_notice_telephonically_and_in_writing(system, app, line):
    policy = WELLSENSE if line == "medicare" else AETNA_MSK
    by_mail = submit(app, policy, line_of_business=line)["case_id"]
    app.give_pre_denial_notice(by_mail, "mail", "letter sent", actor=MD)
    err = refused(system, lambda: deny(app, by_mail), "pre-denial-notice-required")
    assert "telephonically" in err.detail
    app.give_pre_denial_notice(by_mail, "phone", "called the office", actor=MD)
    assert deny(app, by_mail)["status"] == "denied"
    by_phone = submit(app, policy, line_of_business=line)["case_id"]
    app.give_pre_denial_notice(by_phone, "phone", actor=MD)
    err = refused(system, lambda: deny(app, by_phone), "pre-denial-notice-required")
    assert "in writing" in err.detail
    both = submit(app, policy, line_of_business=line)["case_id"]
    app.give_pre_denial_notice(both, "phone_and_writing", actor=MD)
    assert deny(app, both)["status"] == "denied"


def test_only_a_physician_reviewer_may_deny(system, app):
    cid = submit(app, DME)["case_id"]
    refused(system, lambda: deny(app, cid, actor=RN), "physician-required", kind=NotPermitted)
    assert app.determine(cid, actor=RN, outcome="approved").view["status"] == "approved"
    other = submit(app, DME)["case_id"]
    assert deny(app, other, actor=DO)["status"] == "denied"


def test_immediate_approval_by_rules_is_allowed_and_rules_never_deny(app):
    auto = submit(app, MEDONC, clinical={"nccn_preferred_regimen": True})
    assert auto["status"] == "approved" and auto["authorization_number"]
    assert event_types(app, auto["case_id"])[:2] == ["CaseSubmitted", "CaseAutoApproved"]
    other = submit(app, MEDONC, clinical={"nccn_preferred_regimen": False})
    assert other["status"] == "pending"


def test_approval_by_rules_records_the_rules_as_actor_not_the_provider(app):
    auto = submit(app, MEDONC, clinical={"nccn_preferred_regimen": True})
    events = app.history(auto["case_id"])["events"]
    approved = next(e for e in events if e["type"] == "CaseAutoApproved")
    row = policy_in_force(MEDONC, app.clock.now().date())
    assert approved["actor"]["kind"] == "system"
    assert (approved["actor"]["policy"], approved["actor"]["policy_version"]) == (row.id, row.version)
    assert "nccn_preferred_regimen" in approved["actor"]["rule"]
    assert events[0]["actor"] == PROVIDER  # the provider submitted; the rules approved
    assert all(e["actor"]["kind"] == "system" for e in events[1:])


def test_interventional_pain_approval_is_valid_180_days_from_the_review_date(app, clock):
    # the deck's 62323 example: reviewed 6/13/2022, expires 12/10/2022 (180 days), like the rest of MSK
    dos = later(clock.now(), 5)
    service = {"date_of_service": dos.isoformat(), "procedures": [{"code": "62323", "units": 1}], "diagnoses": ["M54.16"]}
    cid = app.submit(request(WELLSENSE, date_of_service=dos, service=service), actor=PROVIDER).view["case_id"]
    view = app.determine(cid, actor=MD, outcome="approved").view
    review_day = clock.now().date()
    assert view["valid_from_date"] == review_day.isoformat()
    assert view["valid_to_date"] == (review_day + timedelta(days=180)).isoformat()
    assert date(2022, 6, 13) + timedelta(days=180) == date(2022, 12, 10)


def test_interventional_pain_needs_a_separate_pre_service_request_for_each_date_of_service(system, app, clock):
    past = later(clock.now(), -1)
    service = {"date_of_service": past.isoformat(), "procedures": [{"code": "64483", "units": 1}], "diagnoses": ["M54.16"]}
    body = request(WELLSENSE, date_of_service=past, service=service)
    err = refused(system, lambda: app.submit(body, actor=PROVIDER), "interventional-pain-pre-service")
    assert "each date of service" in err.detail


def test_approvals_target_2_business_days_after_complete_clinical(app, clock):
    cid = submit(app, RADONC, documents=[])["case_id"]
    app.place_hold(cid, ["plan"], actor=MD)
    clock.advance(timedelta(hours=3))
    view = app.upload_clinical(cid, [document("plan.pdf", seed="x")], actor=PROVIDER).view
    assert at(view, "decision_target_at") == clock.now() + timedelta(days=2)


# ---- after the decision --------------------------------------------------------------------


def test_p2p_eligibility_is_pre_decision_reconsideration_or_consultative_only(app, clock):
    cid = submit(app, DME)["case_id"]
    assert app.view(cid)["p2p_eligibility"]["eligible"] is False
    view = app.place_hold(cid, ["notes"], actor=MD).view
    assert view["p2p_eligibility"]["level"] == "pre_decision"
    assert view["p2p_eligibility"]["valid_until"] == view["hold_due_at"]
    radonc = submit(app, RADONC)["case_id"]
    pre_denial(app, radonc)
    view = deny(app, radonc)
    assert view["p2p_eligibility"] == {**view["p2p_eligibility"], "eligible": True, "level": "consultative_only", "consultative_only": True}


def test_p2p_can_be_rescheduled_or_cancelled_with_a_reason_and_cover_several_cases(system, app, clock):
    a, b = submit(app, DME)["case_id"], submit(app, DME)["case_id"]
    for c in (a, b):
        app.place_hold(c, ["notes"], actor=MD)
    view = app.schedule_p2p(a, level="pre_decision", slot=(clock.now() + timedelta(hours=3)).isoformat(), reviewer="Dr R",
                            contact={"name": "Dr Doe", "phone": "555"}, also_cases=[b], actor=PROVIDER).view
    p2p = view["p2ps"][0]["p2p_id"]
    assert app.view(b)["p2ps"][0]["p2p_id"] == p2p
    new_slot = (clock.now() + timedelta(hours=5)).isoformat()
    app.reschedule_p2p(a, p2p, new_slot, actor=PROVIDER)
    assert app.view(b)["p2ps"][0]["slot"] == new_slot
    refused(system, lambda: app.cancel_p2p(a, p2p, "", actor=PROVIDER), kind=InvalidInput)
    app.cancel_p2p(b, p2p, "provider unavailable", actor=PROVIDER)
    assert app.view(a)["p2ps"][0]["status"] == app.view(b)["p2ps"][0]["status"] == "cancelled"


def test_clinical_update_opens_a_new_authorization_and_the_original_is_withdrawn_when_it_is_approved(system, app, clock):
    cid = submit(app, RADONC)["case_id"]
    app.determine(cid, actor=MD, outcome="approved", technique="IMRT", fractions=25, igrt=False, valid_to="2026-05-01")
    successor = app.update_authorization(cid, "igrt", {"igrt": True}, actor=PROVIDER)
    assert successor.created and successor.view["predecessor_case_id"] == cid
    sid = successor.view["case_id"]
    assert app.view(cid)["successor_case_id"] == sid and app.view(cid)["status"] == "approved"
    refused(system, lambda: app.update_authorization(cid, "technique", {"technique": "SBRT"}, actor=PROVIDER), "successor-pending")
    app.determine(sid, actor=MD, outcome="approved", technique="IMRT", fractions=25, igrt=True, valid_to="2026-05-01")
    assert app.view(cid)["status"] == "withdrawn"
    assert event_types(app, cid)[-3] == "AuthorizationWithdrawn"


def test_medical_oncology_any_regimen_change_needs_a_new_review(system, app):
    cid = submit(app, MEDONC)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    view = app.update_authorization(cid, "regimen", {"regimen": "pembrolizumab"}, actor=PROVIDER).view
    assert view["status"] == "pending" and view["predecessor_case_id"] == cid


def test_administrative_updates_change_the_authorization_in_place(system, app):
    cid = submit(app, MEDONC)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    view = app.update_authorization(cid, "code_correction", {"from_code": "J9271", "to_code": "J9299"}, actor=PROVIDER).view
    assert view["service"]["procedures"][0]["code"] == "J9299" and view["successor_case_id"] is None
    assert app.update_authorization(cid, "contact", {"phone": "555-0199"}, actor=PROVIDER).view["ordering_provider"]["phone"] == "555-0199"
    refused(system, lambda: app.update_authorization(cid, "site", {"npi": "1234567890"}, actor=PROVIDER), kind=InvalidInput)
    refused(system, lambda: app.update_authorization(cid, "igrt", {"igrt": True}, actor=PROVIDER), "update-not-offered")


def test_dme_authorization_may_be_extended_once(system, app):
    cid = submit(app, DME)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    assert app.extend_authorization(cid, "2026-12-31", actor=PROVIDER).view["valid_to_date"] == "2026-12-31"
    refused(system, lambda: app.extend_authorization(cid, "2027-01-31", actor=PROVIDER), "authorization-extended-once")
    other = submit(app, WELLSENSE)["case_id"]
    app.determine(other, actor=MD, outcome="approved")
    refused(system, lambda: app.extend_authorization(other, "2027-12-31", actor=PROVIDER), "extension-not-offered")


def test_notifications_go_to_provider_by_e_notification_or_fax_facility_by_fax_member_by_mail(app):
    cid = submit(app, WELLSENSE)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    letters = [e["data"] for e in app.history(cid)["events"] if e["type"] == "LetterIssued"]
    assert {(x["recipient"], x["channel"]) for x in letters} == {("provider", "e-notification"), ("facility", "fax"), ("member", "mail")}
    body = request(WELLSENSE, date_of_service=later(app.clock.now(), 9))
    body["ordering_provider"]["notify_by_email"] = False
    opted_out = app.submit(body, actor=PROVIDER).view["case_id"]
    app.determine(opted_out, actor=MD, outcome="approved")
    letters = [e["data"] for e in app.history(opted_out)["events"] if e["type"] == "LetterIssued"]
    assert ("provider", "fax") in {(x["recipient"], x["channel"]) for x in letters}


def test_hold_letter_is_faxed_to_the_requesting_provider(app):
    cid = submit(app, WELLSENSE)["case_id"]
    app.place_hold(cid, ["office notes"], actor=MD)
    assert letters(app, cid, "request_for_information") == {("provider", "fax")}


def test_medical_oncology_decision_letters_are_faxed_to_the_ordering_provider_and_the_facility(app):
    cid = submit(app, MEDONC)["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    assert letters(app, cid, "determination_approved") == {("provider", "fax"), ("facility", "fax"), ("member", "mail")}


def test_dme_appeal_decision_is_mailed_to_the_member_and_faxed_to_the_provider(app):
    cid = submit(app, DME)["case_id"]
    deny(app, cid)
    app.file_appeal(cid, "disagree", actor=PROVIDER)
    app.decide_appeal(cid, 1, actor=MD, outcome="upheld", rationale="criteria still not met")
    assert letters(app, cid, "appeal_upheld") == {("member", "mail"), ("provider", "fax")}


def test_decision_letter_to_the_provider_is_faxed_for_a_case_not_initiated_on_the_web(app):
    cid = submit(app, WELLSENSE, channel="fax")["case_id"]
    app.determine(cid, actor=MD, outcome="approved")
    assert letters(app, cid, "determination_approved") == {("provider", "fax"), ("facility", "fax"), ("member", "mail")}


def test_letter_routes_are_data_in_every_policy_row():
    from domain.policy import LETTER_FAMILIES, POLICY_TABLE

    for row in POLICY_TABLE:
        assert set(row.letters) == set(LETTER_FAMILIES), row.key
        assert all(route.recipient in ("provider", "facility", "member") for r in row.letters.values() for route in r)


def letters(app, case_id: str, kind: str) -> set[tuple[str, str]]:
    return {(e["data"]["recipient"], e["data"]["channel"]) for e in app.history(case_id)["events"]
            if e["type"] == "LetterIssued" and e["data"]["letter_kind"] == kind}


def test_valid_to_takes_a_date_or_an_instant_as_its_plan_local_date(app, clock):
    cid = submit(app, DME)["case_id"]
    # 02:00 UTC on June 1st is still May 31st in New York, the plan's time zone
    view = app.determine(cid, actor=MD, outcome="approved", valid_to="2026-06-01T02:00:00Z").view
    assert view["valid_to_date"] == "2026-05-31"
    view = app.extend_authorization(cid, "2026-08-01T03:30:00+00:00", actor=PROVIDER).view
    assert view["valid_to_date"] == "2026-07-31"
    other = submit(app, DME)["case_id"]
    assert app.determine(other, actor=MD, outcome="approved", valid_to="2026-05-31").view["valid_to_date"] == "2026-05-31"


@pytest.mark.parametrize("field, change", [
    ("service.date_of_service", lambda b: b["service"].update(date_of_service="9999-12-31")),
    ("service.date_of_service", lambda b: b["service"].update(date_of_service="0001-01-01")),
    ("submitted_at", lambda b: b.update(submitted_at="0001-01-01T00:00:00Z")),
    ("member.dob", lambda b: b["member"].update(dob="1800-01-01")),
    ("member.dob", lambda b: b["member"].update(dob="2099-01-01")),
])
def test_dates_out_of_range_are_refused_at_submission_naming_the_field(system, app, field, change):
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    change(body)
    err = refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)
    assert [e.field for e in err.errors] == [field]


def test_dates_out_of_range_are_refused_on_decisions_and_appeals(system, app):
    cid = submit(app, DME)["case_id"]
    err = refused(system, lambda: app.determine(cid, actor=MD, outcome="approved", valid_from="0001-01-01"),
                  kind=InvalidInput)
    assert [e.field for e in err.errors] == ["valid_from"]
    err = refused(system, lambda: app.determine(cid, actor=MD, outcome="approved", valid_to="9999-12-31"),
                  kind=InvalidInput)
    assert [e.field for e in err.errors] == ["valid_to"]
    deny(app, cid)
    err = refused(system, lambda: app.file_appeal(cid, "late entry", filed_at="0001-01-01T00:00:00Z", actor=PROVIDER),
                  kind=InvalidInput)
    assert [e.field for e in err.errors] == ["filed_at"]


def test_a_far_date_of_service_cannot_leave_a_case_stuck(system, app, clock):
    body = request(WELLSENSE, date_of_service=later(clock.now(), 700))
    cid = app.submit(body, actor=PROVIDER).view["case_id"]
    assert app.determine(cid, actor=MD, outcome="approved").view["status"] == "approved"


def test_authorization_expires_when_valid_to_passes(system, app, clock):
    cid = submit(app, WELLSENSE)["case_id"]
    view = app.determine(cid, actor=MD, outcome="approved").view
    end = at(view, "valid_to")
    refused(system, lambda: app.fire_deadline("authorization_expiry", cid, end), "deadline-not-due")
    clock.set(end)
    assert app.fire_deadline("authorization_expiry", cid, end).view["status"] == "expired"


def test_cancel_before_determination_and_withdraw_after(system, app):
    cid = submit(app, DME)["case_id"]
    assert app.cancel(cid, "duplicate request", actor=PROVIDER).view["status"] == "cancelled"
    refused(system, lambda: app.upload_clinical(cid, [document()], actor=PROVIDER), "case-closed")
    other = submit(app, DME)["case_id"]
    app.determine(other, actor=MD, outcome="approved")
    refused(system, lambda: app.cancel(other, "x", actor=PROVIDER), "cancel-after-determination")
    assert app.withdraw(other, "member deceased", actor=PROVIDER).view["status"] == "withdrawn"


# ---- input rules --------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("npi", "1234567890"), ("npi", "123456789"), ("npi", "12345678ab"), ("tin", "12345678"), ("tin", "12-3456789"),
])
def test_npi_is_10_digits_with_a_luhn_check_and_tin_is_9_digits(system, app, field, value):
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    body["ordering_provider"][field] = value
    err = refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)
    assert err.errors[0].field == f"ordering_provider.{field}"


@pytest.mark.parametrize("code, ok", [("C50.912", True), ("M54.51", True), ("S83.512A", True), ("Z89.512", True),
                                      ("C5.912", False), ("50.912", False), ("C50.91234", False), ("C50..9", False)])
def test_icd10_cm_diagnosis_format(system, app, code, ok):
    body = request(MEDONC, date_of_service=later(app.clock.now(), 5))
    body["service"]["diagnoses"] = [code]
    if ok:
        assert app.submit(body, actor=PROVIDER).view["service"]["diagnoses"] == [code]
    else:
        refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)


@pytest.mark.parametrize("policy, code, ok", [
    (RADONC, "RCBREA", True), (RADONC, "77412", True), (RADONC, "SPINE", False), (WELLSENSE, "SPINE", True),
    (WELLSENSE, "0275T", True), (DME, "E0601", True), (DME, "DME", True), (DME, "E06O1", False), (MEDONC, "J9271", True),
    (MEDONC, "RCBREA", False),
])
def test_procedure_is_cpt_hcpcs_or_a_code_of_the_program(system, app, policy, code, ok):
    body = request(policy, date_of_service=later(app.clock.now(), 5))
    body["service"]["procedures"] = [{"code": code, "units": 1}]
    if ok:
        assert app.submit(body, actor=PROVIDER).view["service"]["procedures"][0]["code"] == code
    else:
        refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)


def test_documents_are_doc_docx_pdf_or_png_at_most_25_mb(system, app):
    for doc in (document("scan.jpg"), document("notes.txt")):
        body = request(DME, date_of_service=later(app.clock.now(), 5), documents=[doc])
        refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)
    big = request(DME, date_of_service=later(app.clock.now(), 5), documents=[document("big.pdf", size=30 * 1024 * 1024)])
    refused(system, lambda: app.submit(big, actor=PROVIDER), kind=DocumentTooLarge)
    ok = [document(n, seed=n) for n in ("a.doc", "b.docx", "c.pdf", "d.png")]
    assert len(app.submit(request(DME, date_of_service=later(app.clock.now(), 5), documents=ok), actor=PROVIDER).view["documents"]) == 4


def test_instants_carry_a_time_zone_and_dates_are_iso(system, app):
    body = request(DME, date_of_service=later(app.clock.now(), 5), submitted_at="2026-03-10T09:00:00")
    refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)
    body = request(DME, date_of_service=later(app.clock.now(), 5))
    body["service"]["date_of_service"] = "03/20/2026"
    refused(system, lambda: app.submit(body, actor=PROVIDER), kind=InvalidInput)
    cid = submit(app, DME)["case_id"]
    refused(system, lambda: app.place_hold(cid, ["x"], "2026-03-11 10:00", actor=MD), kind=InvalidInput)
