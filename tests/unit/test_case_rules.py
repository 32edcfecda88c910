"""The Case aggregate alone, one test per rule family of POLICIES.md, with no store and no clock:
given the events of earlier commands, when a command with ``now``, then the new events or the
named refusal (and a refusal leaves no pending event behind)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from domain.case import Case
from domain.context import Context
from domain.errors import DomainError, InvalidInput, NotApplicable, NotPermitted
from domain.views import case_view
from infra.demo.samples import document, request

UTC = timezone.utc
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # a Tuesday
PROVIDER = {"kind": "provider", "id": "1234567893"}
MD = {"kind": "reviewer", "id": "dr-okafor", "credential": "MD"}
RN = {"kind": "reviewer", "id": "nurse-lee", "credential": "RN"}
SCHEDULER = {"kind": "scheduler", "id": "scheduler"}
RADONC = "healthspring-ma/radiation-oncology"
AETNA_MSK = "aetna-bh-il/msk"
MEDONC = "cigna-commercial/medical-oncology"
WELLSENSE = "wellsense-ma-nh/msk"
DME = "cigna-commercial/dme"


def at(hours: float = 0, days: float = 0) -> Context:
    return Context(NOW + timedelta(hours=hours, days=days), MD)


def by(actor: dict, hours: float = 0, days: float = 0) -> Context:
    return Context(NOW + timedelta(hours=hours, days=days), actor)


def given(policy: str, *, dos_days: int = 14, **kw) -> Case:
    """A case submitted at NOW, its submission events already saved."""
    body = request(policy, date_of_service=(NOW + timedelta(days=dos_days)).date(), **kw)
    case = Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1000000001", request=body)
    case.collect_events()
    return case


def then(case: Case) -> list[str]:
    return [type(e).__name__ for e in case.collect_events()]


def refused(call, rule: str | None = None, kind: type[DomainError] = DomainError, case: Case | None = None):
    with pytest.raises(kind) as info:
        call()
    if rule is not None:
        assert info.value.rule == rule, (info.value.rule, info.value.detail)
    if case is not None:
        assert case.collect_events() == [], "a refused command left events to save"
    return info.value


def deny(case: Case, ctx: Context | None = None) -> None:
    case.determine(ctx or at(1), outcome="denied", rationale="criteria not met", guidelines=["guideline 1.2"])


# ---- when prior authorization applies ------------------------------------------------------


def test_applicability_refuses_hospital_settings_and_services_before_the_program():
    body = request(RADONC, date_of_service=date(2026, 3, 20))
    body["site"]["place_of_service"] = "23"
    refused(lambda: Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1", request=body),
            "place-of-service-excluded", NotApplicable)
    early = request(WELLSENSE, date_of_service=date(2023, 2, 28))
    refused(lambda: Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1", request=early),
            "date-of-service-before-program")


# ---- clocks --------------------------------------------------------------------------------


def test_urgent_and_standard_decision_clocks():
    assert given(RADONC, urgent=True).decision_due_at == NOW + timedelta(hours=24)
    assert given(MEDONC, urgent=True).decision_due_at == NOW + timedelta(hours=72)
    assert given(RADONC).decision_due_at == NOW + timedelta(days=7)
    assert given(MEDONC).decision_due_at == NOW + timedelta(days=15)


def test_urgent_requires_an_upload_unless_taken_by_phone():
    assert given(DME, urgent=True, documents=[]).urgent is False
    assert given(DME, urgent=True, documents=[], channel="phone").urgent is True
    assert given(MEDONC, urgent=True, documents=[]).urgent is True


def test_decision_clock_extends_once_for_a_reason_the_line_allows():
    case = given(RADONC)
    refused(lambda: case.extend_timeframe(at(1), "contracted_provider_records", 14), "extension-reason-not-allowed",
            case=case)
    case.extend_timeframe(at(1), "enrollee_request", 14)
    assert then(case) == ["DecisionTimeframeExtended", "LetterIssued", "LetterIssued"]
    refused(lambda: case.extend_timeframe(at(2), "enrollee_request", 1), "extension-once", case=case)


def test_hold_defaults_lapses_and_ends_on_upload():
    case = given(WELLSENSE)
    case.place_hold(at(1), ["office notes"])
    assert then(case) == ["CaseHeld", "LetterIssued"]
    assert case.hold_due_at == NOW + timedelta(hours=1, days=2)  # 2 business days: Tue -> Thu
    refused(lambda: case.lapse_hold(Context(NOW + timedelta(days=1), SCHEDULER), case.hold_due_at),
            "deadline-not-due", case=case)
    case.upload_clinical(by(PROVIDER, hours=3), [document("notes.pdf")])
    assert then(case) == ["ClinicalUploaded", "HoldReleased"]
    lapsing = given(WELLSENSE)
    lapsing.place_hold(at(1), ["office notes"])
    lapsing.collect_events()
    lapsing.lapse_hold(Context(lapsing.hold_due_at, SCHEDULER), lapsing.hold_due_at)
    assert then(lapsing) == ["HoldLapsed"] and lapsing.status == "pending"


def test_pre_decision_p2p_before_the_hold_due_date_only():
    case = given(RADONC)
    case.place_hold(at(1), ["plan"])
    case.collect_events()
    contact = {"name": "Dr. Doe", "phone": "555-0100"}
    late = (case.hold_due_at + timedelta(hours=1)).isoformat()
    refused(lambda: case.schedule_p2p(at(2), p2p_id="p", level="pre_decision", slot=late, reviewer="dr",
                                      contact=contact), "p2p-after-hold-due", case=case)
    case.schedule_p2p(at(2), p2p_id="p", level="pre_decision", slot=(NOW + timedelta(hours=5)).isoformat(),
                      reviewer="dr", contact=contact)
    assert then(case) == ["P2PScheduled"]


def test_retrospective_windows():
    late = request(MEDONC, date_of_service=(NOW - timedelta(days=31)).date())
    err = refused(lambda: Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1", request=late),
                  "retro-window-passed")
    assert "appeal" in err.detail
    assert given(MEDONC, dos_days=-30).retro is True


def test_approval_validity_per_program():
    msk = given(WELLSENSE)
    msk.determine(at(1), outcome="approved")
    assert msk.valid_to.date() - timedelta(days=1) <= (NOW + timedelta(days=180)).date() <= msk.valid_to.date()
    onc = given(MEDONC)
    onc.determine(at(1), outcome="approved")
    assert case_view(onc, NOW)["valid_to_date"] == "2026-11-10"  # 8 months by default
    stated = given(RADONC)
    refused(lambda: stated.determine(at(1), outcome="approved", technique="IMRT", fractions=20, igrt=True),
            kind=InvalidInput, case=stated)


def test_alternative_recommendation_lapses_after_60_business_days():
    case = given(DME)
    case.determine(at(1), outcome="alternative_recommended", rationale="APAP instead", guidelines=["DME 12"])
    case.collect_events()
    deadline = case.alternative_deadline
    refused(lambda: case.accept_alternative(by(PROVIDER, days=200)), "alternative-lapsed", case=case)
    case.lapse_alternative(Context(deadline, SCHEDULER), deadline)
    assert then(case) == ["AlternativeRecommendationLapsed"]


def test_appeal_and_reconsideration_windows():
    medicare = given(RADONC)
    medicare.give_pre_denial_notice(at(1), "phone_and_writing")
    deny(medicare, at(2))
    medicare.collect_events()
    assert case_view(medicare, NOW)["appeal_deadline"].startswith("2026-05-10")  # end of 2026-05-09, New York
    refused(lambda: medicare.request_reconsideration(by(PROVIDER, hours=3), "new info"),
            "medicare-no-reconsideration", case=medicare)
    dme = given(DME)
    deny(dme)
    dme.file_appeal(by(PROVIDER, hours=2), "disagree")
    dme.collect_events()
    refused(lambda: dme.request_reconsideration(by(PROVIDER, hours=3), "new info"), "reconsideration-after-appeal",
            case=dme)


def test_a_draft_expires_at_the_end_of_the_day_it_was_started():
    case = Case.start_draft(by(PROVIDER), case_id=uuid4(), case_number="1", policy=DME, line_of_business="commercial",
                            draft={"notes": "later"})
    case.collect_events()
    refused(lambda: case.expire_draft(Context(NOW, SCHEDULER), case.draft_expires_at), "deadline-not-due", case=case)
    case.expire_draft(Context(case.draft_expires_at, SCHEDULER), case.draft_expires_at)
    assert then(case) == ["DraftExpired"]


# ---- determinations ------------------------------------------------------------------------


def test_no_partial_approvals_in_medical_oncology_and_per_line_in_dme():
    onc = given(MEDONC)
    refused(lambda: onc.determine(at(1), outcome="partially_approved", rationale="r", guidelines=["g"]),
            "no-partial-approval", case=onc)
    dme = given(DME)
    refused(lambda: dme.determine(at(1), outcome="partially_approved", rationale="r", guidelines=["g"],
                                  lines=[{"code": "E0601", "decision": "approved"},
                                         {"code": "A7030", "units_approved": 1, "decision": "partially_approved"}]),
            "partial-approval-per-line", case=dme)


def test_radiation_oncology_approval_states_technique_fractions_and_igrt():
    case = given(RADONC)
    err = refused(lambda: case.determine(at(1), outcome="approved", valid_to="2026-06-01"), kind=InvalidInput,
                  case=case)
    assert {e.field for e in err.errors} == {"technique", "fractions", "igrt"}


def test_a_denial_carries_rationale_and_guideline_and_only_a_physician_denies():
    case = given(DME)
    refused(lambda: case.determine(at(1), outcome="denied"), kind=InvalidInput, case=case)
    refused(lambda: case.determine(by(RN, 1), outcome="denied", rationale="r", guidelines=["g"]),
            "physician-required", NotPermitted, case=case)


def test_medicare_denial_needs_notice_telephonically_and_in_writing():
    case = given(WELLSENSE, line_of_business="medicare")
    case.give_pre_denial_notice(at(1), "mail")
    case.collect_events()
    refused(lambda: deny(case, at(2)), "pre-denial-notice-required", case=case)
    case.give_pre_denial_notice(at(2), "phone")
    case.collect_events()
    deny(case, at(3))
    assert then(case)[0] == "CaseDetermined"


def test_approval_by_rules_has_the_rules_as_actor():
    case = Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1",
                       request=request(MEDONC, date_of_service=date(2026, 3, 20),
                                       clinical={"nccn_preferred_regimen": True}))
    events = case.collect_events()
    assert [type(e).__name__ for e in events][:2] == ["CaseSubmitted", "CaseAutoApproved"]
    assert events[1].actor["kind"] == "system" and events[1].actor["policy"] == MEDONC


def test_interventional_pain_is_pre_service_and_valid_180_days():
    service = {"date_of_service": "2026-03-09", "procedures": [{"code": "62323", "units": 1}], "diagnoses": ["M54.16"]}
    past = request(WELLSENSE, date_of_service=date(2026, 3, 9), service=service)
    refused(lambda: Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1", request=past),
            "interventional-pain-pre-service")
    case = given(WELLSENSE, service={**service, "date_of_service": "2026-03-20"})
    case.determine(at(1), outcome="approved")
    assert case_view(case, NOW)["valid_to_date"] == "2026-09-06"


# ---- after the decision --------------------------------------------------------------------


def test_p2p_eligibility_follows_the_case():
    case = given(DME)
    assert case.p2p_eligibility(NOW)["eligible"] is False
    deny(case)
    assert case.p2p_eligibility(NOW + timedelta(hours=2))["level"] == "reconsideration"
    medicare = given(RADONC)
    medicare.give_pre_denial_notice(at(1), "phone_and_writing")
    deny(medicare, at(2))
    assert medicare.p2p_eligibility(NOW + timedelta(hours=3))["consultative_only"] is True


def test_updates_in_place_or_a_new_review_and_one_dme_extension():
    case = given(DME)
    case.determine(at(1), outcome="approved")
    case.collect_events()
    case.update_authorization_in_place(by(PROVIDER, 2), "contact", {"phone": "555-0199"})
    assert then(case) == ["AuthorizationUpdated", "LetterIssued"]
    successor = case.supersede(by(PROVIDER, 3), kind="timespan", changes={"months": 12}, successor_case_id="s-1")
    assert successor["policy"] == DME and then(case) == ["AuthorizationSuperseded"]
    case.extend_authorization(by(PROVIDER, 4), "2026-12-31")
    case.collect_events()
    refused(lambda: case.extend_authorization(by(PROVIDER, 5), "2027-01-31"), "authorization-extended-once",
            case=case)


def test_letters_are_routed_by_the_policy_row():
    onc = given(MEDONC)
    onc.determine(at(1), outcome="approved")
    letters = {(e.recipient, e.channel) for e in onc.collect_events() if type(e).__name__ == "LetterIssued"}
    assert letters == {("provider", "fax"), ("facility", "fax"), ("member", "mail")}
    held = given(WELLSENSE)
    held.place_hold(at(1), ["notes"])
    letters = {(e.recipient, e.channel) for e in held.collect_events() if type(e).__name__ == "LetterIssued"}
    assert letters == {("provider", "fax")}


# ---- input rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("path, value", [
    (("ordering_provider", "npi"), "1234567890"), (("ordering_provider", "tin"), "12345"),
    (("service", "diagnoses"), ["50.912"]), (("member", "dob"), "1800-01-01"),
    (("service", "date_of_service"), "9999-12-31"),
])
def test_input_rules_name_the_field(path, value):
    body = request(DME, date_of_service=date(2026, 3, 20))
    body[path[0]][path[1]] = value
    err = refused(lambda: Case.submit(by(PROVIDER), case_id=uuid4(), case_number="1", request=body), kind=InvalidInput)
    assert err.errors[0].field.startswith(".".join(path))
