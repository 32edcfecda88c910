"""``caselog demo``: a realistic mixed workload through all five policies, every lifecycle
path at least once, on the configured store. It runs on its own manual clock that starts a
year ago, so deadlines (hold lapses, appeal windows, expiries) happen within seconds and
nothing it records lies in the future. Deadlines are fired as the scheduler would fire them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from domain.errors import DomainError
from application.caselog import CaseLog
from infra.bootstrap import System
from infra.demo.samples import OTHER_PROVIDER_NPI, PROVIDER_NPI, document, later, request

PROVIDER = {"kind": "provider", "id": PROVIDER_NPI}
MD = {"kind": "reviewer", "id": "dr-okafor", "credential": "MD"}
RN = {"kind": "reviewer", "id": "nurse-lee", "credential": "RN"}
RADONC, AETNA_RAD, AETNA_MSK = "healthspring-ma/radiation-oncology", "aetna-bh-il/radiology", "aetna-bh-il/msk"
MEDONC, WELLSENSE, DME = "cigna-commercial/medical-oncology", "wellsense-ma-nh/msk", "cigna-commercial/dme"


class Demo:
    def __init__(self, system: System):
        self.app: CaseLog = system.app
        self.clock = system.clock
        self.lines: list[str] = []
        self.cases: set[str] = set()
        self.refusals = 0

    def say(self, text: str) -> None:
        self.lines.append(text)

    def tick(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))

    def submit(self, policy: str, label: str, days_ahead: int = 14, **kw) -> str:
        body = request(policy, date_of_service=later(self.clock.now(), days_ahead), member_no=len(self.cases) + 1, **kw)
        view = self.app.submit(body, actor=PROVIDER).view
        self.cases.add(view["case_id"])
        note = f" ({view['urgent_note']})" if view["urgent_note"] else ""
        self.say(f"{label}: case {view['case_number']} {policy} {view['line_of_business']} -> {view['status']}{note}")
        return view["case_id"]

    def refused(self, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except DomainError as exc:
            self.refusals += 1
            self.say(f"  refused as expected: {what}: [{exc.rule}] {exc.detail}")
        else:  # pragma: no cover - the demo's own consistency check
            raise AssertionError(f"demo expected a refusal: {what}")

    def fire(self, kind: str, case_id: str, field: str, p2p: str | None = None) -> None:
        view = self.app.view(case_id)
        instant = datetime.fromisoformat(view[field])
        if self.clock.now() < instant:
            self.clock.set(instant)
        view = self.app.fire_deadline(kind, case_id, instant, p2p).view
        self.say(f"  scheduler: {kind} at {instant.isoformat()} -> {view['status']}")

    def status(self, case_id: str) -> str:
        return self.app.view(case_id)["status"]


def run_demo(system: System) -> list[str]:
    d = Demo(system)
    app = d.app

    # 1. HealthSpring radiation oncology: hold, pre-decision P2P, approval with plan details,
    #    a clinical change (more fractions) opens a successor; its approval withdraws the original.
    c = d.submit(RADONC, "radiation oncology, standard")
    app.place_hold(c, ["treatment plan", "simulation notes"], actor=MD)
    d.say(f"  held until {app.view(c)['hold_due_at']}; P2P eligibility: {app.view(c)['p2p_eligibility']['level']}")
    slot = (d.clock.now() + timedelta(hours=20)).isoformat()
    p2p = app.schedule_p2p(c, level="pre_decision", slot=slot, reviewer="Dr. Okafor", contact={"name": "Office manager", "phone": "555-0100"}, actor=PROVIDER).view["p2ps"][0]["p2p_id"]
    app.reschedule_p2p(c, p2p, (d.clock.now() + timedelta(hours=22)).isoformat(), actor=PROVIDER)
    d.tick(hours=23)
    app.complete_p2p(c, p2p, "treatment plan discussed", actor=MD)
    d.say(f"  P2P completed -> {d.status(c)}")
    d.refused("a nurse cannot deny", lambda: app.determine(c, actor=RN, outcome="denied", rationale="x", guidelines=["g"]))
    view = app.determine(c, actor=MD, outcome="approved", technique="IMRT", fractions=25, igrt=True, valid_to=later(d.clock.now(), 60).isoformat()).view
    d.say(f"  approved: authorization {view['authorization_number']} valid {view['valid_from']} .. {view['valid_to']}")
    succ = app.update_authorization(c, "fractions", {"fractions": 30}, actor=PROVIDER).view
    d.cases.add(succ["case_id"])
    d.say(f"  more fractions -> new linked case {succ['case_number']} ({succ['status']})")
    app.determine(succ["case_id"], actor=MD, outcome="approved", technique="IMRT", fractions=30, igrt=True, valid_to=later(d.clock.now(), 70).isoformat())
    d.say(f"  successor approved -> original {d.status(c)}")

    # 2. HealthSpring: hold lapses, Medicare denial needs a pre-denial notice, no reconsideration, appeal.
    c = d.submit(RADONC, "radiation oncology, hold lapses")
    app.place_hold(c, ["prior imaging"], actor=MD)
    d.fire("hold_due", c, "hold_due_at")
    d.refused("Medicare denial before notice", lambda: app.determine(c, actor=MD, outcome="denied", rationale="not medically necessary", guidelines=["EviCore RO guideline 1.2"]))
    app.give_pre_denial_notice(c, "mail", "notice mailed", actor=MD)
    d.refused("Medicare denial after a mailed notice only (phone and writing needed)", lambda: app.determine(c, actor=MD, outcome="denied", rationale="not medically necessary", guidelines=["EviCore RO guideline 1.2"]))
    app.give_pre_denial_notice(c, "phone", "called the office", actor=MD)
    app.determine(c, actor=MD, outcome="denied", rationale="not medically necessary", guidelines=["EviCore RO guideline 1.2"])
    d.say(f"  denied; options {app.view(c)['post_decision_options']}; P2P {app.view(c)['p2p_eligibility']['level']}")
    d.refused("Medicare reconsideration", lambda: app.request_reconsideration(c, "new information", actor=PROVIDER))
    app.file_appeal(c, "member needs treatment", actor=PROVIDER)
    d.say(f"  appeal upheld -> {app.decide_appeal(c, 1, actor=MD, outcome='upheld', rationale='criteria not met').view['status']}")

    # 3. Aetna radiology (Medicaid): urgent without upload becomes standard; clock extended once; overdue.
    c = d.submit(AETNA_RAD, "radiology, 'urgent' without upload", urgent=True, documents=[])
    d.refused("extension to wait for contracted records", lambda: app.extend_timeframe(c, "contracted_provider_records", 14, actor=MD))
    app.extend_timeframe(c, "enrollee_request", 14, actor=MD)
    d.refused("a second extension", lambda: app.extend_timeframe(c, "enrollee_request", 3, actor=MD))
    d.fire("decision_warning", c, "decision_warning_at")
    d.fire("decision_due", c, "decision_due_at")
    app.determine(c, actor=MD, outcome="approved", valid_to=later(d.clock.now(), 90).isoformat())
    d.say(f"  approved late -> {d.status(c)}")

    # 4. Aetna MSK (Duals): urgent with upload stays urgent; partial approval after pre-denial notice.
    c = d.submit(AETNA_MSK, "MSK spine, urgent with upload", urgent=True)
    d.say(f"  urgent: {app.view(c)['urgent']}, decision due {app.view(c)['decision_due_at']}")
    app.give_pre_denial_notice(c, "phone_and_writing", actor=MD)
    view = app.determine(c, actor=MD, outcome="partially_approved", rationale="one level only", guidelines=["EviCore Spine 2.1"],
                         lines=[{"code": "SPINE", "decision": "approved"}, {"code": "22633", "units_approved": 1, "decision": "partially_approved"}],
                         valid_to=later(d.clock.now(), 60).isoformat()).view
    d.say(f"  partially approved: {[(ln['code'], ln['units_approved'], ln['units_requested']) for ln in view['lines']]}")

    # 5. Cigna medical oncology: auto-approved by rules (preferred NCCN regimen); admin and clinical updates.
    c = d.submit(MEDONC, "medical oncology, NCCN preferred", clinical={"nccn_preferred_regimen": True})
    d.say(f"  valid until {app.view(c)['valid_to']} (8 months)")
    app.update_authorization(c, "site", {"name": "Harbor Infusion Center"}, actor=PROVIDER)
    d.say(f"  site corrected in place -> {app.view(c)['site']['name']}")
    succ = app.update_authorization(c, "regimen", {"regimen": "carboplatin + pemetrexed", "nccn_preferred_regimen": False}, actor=PROVIDER).view
    d.cases.add(succ["case_id"])
    d.say(f"  regimen change -> new linked case {succ['case_number']}")
    d.refused("a second clinical change while one is under review", lambda: app.update_authorization(c, "regimen", {"regimen": "x"}, actor=PROVIDER))
    app.cancel(succ["case_id"], "provider kept the original regimen", actor=PROVIDER)
    d.say(f"  successor cancelled -> original stays {d.status(c)}")

    # 6. Cigna medical oncology: no partial approval; denial; reconsideration overturns it.
    c = d.submit(MEDONC, "medical oncology, reconsidered", days_ahead=20)
    d.refused("a partial approval", lambda: app.determine(c, actor=MD, outcome="partially_approved", rationale="r", guidelines=["g"], lines=[{"code": "J9271", "units_approved": 10, "decision": "partially_approved"}]))
    app.determine(c, actor=MD, outcome="denied", rationale="regimen not supported for stage", guidelines=["NCCN NSCLC v3"])
    d.say(f"  denied; reconsideration open until {app.view(c)['reconsideration_deadline']}")
    app.request_reconsideration(c, "pathology report attached", [document("pathology.pdf", seed=c)], actor=PROVIDER)
    d.say(f"  reconsideration -> {app.decide_reconsideration(c, actor=MD, outcome='approved').view['status']}")

    # 7. Cigna medical oncology: retro windows.
    d.refused("retro request 45 days after the service", lambda: app.submit(request(MEDONC, date_of_service=later(d.clock.now(), -45)), actor=PROVIDER))
    c = d.submit(MEDONC, "medical oncology, retro within 30 days", days_ahead=-10)

    # 8. Cigna medical oncology: reconsideration window closes on the date of service; appeal window closes.
    c = d.submit(MEDONC, "medical oncology, windows close", days_ahead=3)
    app.determine(c, actor=MD, outcome="denied", rationale="not indicated", guidelines=["NCCN"])
    d.fire("reconsideration_window", c, "reconsideration_deadline")
    d.fire("appeal_window", c, "appeal_deadline")
    d.refused("an appeal after 180 days", lambda: app.file_appeal(c, "late", actor=PROVIDER))

    # 9. WellSense MSK: joint surgery and interventional pain valid 180 days; a past injection needs its
    #    own pre-service request; expiry.
    c = d.submit(WELLSENSE, "WellSense joint surgery (commercial)")
    view = app.determine(c, actor=MD, outcome="approved").view
    d.say(f"  valid {view['valid_from'][:10]} .. {view['valid_to'][:10]} (180 days from review)")
    c2 = d.submit(WELLSENSE, "WellSense interventional pain (medicaid)", line_of_business="medicaid",
                  service={"date_of_service": later(d.clock.now(), 5).isoformat(), "procedures": [{"code": "64483", "units": 1}], "diagnoses": ["M54.16"]})
    view = app.determine(c2, actor=MD, outcome="approved").view
    d.say(f"  interventional pain valid {view['valid_from'][:10]} .. {view['valid_to'][:10]} (180 days from review)")
    past_injection = {"date_of_service": later(d.clock.now(), -2).isoformat(), "procedures": [{"code": "64483", "units": 1}],
                      "diagnoses": ["M54.16"]}
    d.refused("an injection already given (one pre-service request per date of service)",
              lambda: app.submit(request(WELLSENSE, date_of_service=later(d.clock.now(), -2), service=past_injection),
                                 actor=PROVIDER))
    d.fire("authorization_expiry", c2, "valid_to")

    # 10. Cigna DME: alternative accepted / lapsed; per-line partial approval; one extension; retro.
    c = d.submit(DME, "DME CPAP, alternative accepted")
    app.determine(c, actor=MD, outcome="alternative_recommended", rationale="APAP recommended instead", guidelines=["DME 12"])
    d.say(f"  alternative may be accepted until {app.view(c)['alternative_deadline']}")
    app.accept_alternative(c, actor=PROVIDER)
    d.say(f"  accepted -> {d.status(c)}")
    app.extend_authorization(c, later(d.clock.now(), 240).isoformat(), actor=PROVIDER)
    d.refused("a second DME extension", lambda: app.extend_authorization(c, later(d.clock.now(), 300).isoformat(), actor=PROVIDER))
    c = d.submit(DME, "DME CPAP, alternative lapses")
    app.determine(c, actor=MD, outcome="alternative_recommended", rationale="APAP recommended", guidelines=["DME 12"])
    d.fire("alternative_lapse", c, "alternative_deadline")
    c = d.submit(DME, "DME, partial per line then appeal")
    d.refused("a partial unit count on a DME line", lambda: app.determine(c, actor=MD, outcome="partially_approved", rationale="r", guidelines=["g"], lines=[{"code": "E0601", "decision": "approved"}, {"code": "A7030", "units_approved": 1, "decision": "partially_approved"}]))
    app.determine(c, actor=MD, outcome="partially_approved", rationale="supplies not needed yet", guidelines=["DME 7"],
                  lines=[{"code": "E0601", "decision": "approved", "rental": "months"}, {"code": "A7030", "decision": "denied"}])
    app.file_appeal(c, "supplies are needed", actor=PROVIDER)
    d.say(f"  appeal overturned -> {app.decide_appeal(c, 1, actor=MD, outcome='overturned').view['status']}")
    c = d.submit(DME, "DME retro within 15 business days", days_ahead=-7)
    view = app.determine(c, actor=MD, outcome="approved").view
    d.say(f"  retro approval starts on the request date: {view['valid_from'][:10]}")
    d.refused("DME in a skilled nursing facility", lambda: app.submit(request(DME, date_of_service=later(d.clock.now(), 3), site={"npi": OTHER_PROVIDER_NPI, "tin": "987654321", "name": "Maple SNF", "place_of_service": "31"}), actor=PROVIDER))
    c = d.submit(DME, "DME reconsideration before appeal")
    app.determine(c, actor=MD, outcome="denied", rationale="not home based", guidelines=["DME 1"])
    app.request_reconsideration(c, "home setting confirmed", actor=PROVIDER)
    app.decide_reconsideration(c, actor=MD, outcome="denied", rationale="still not met", guidelines=["DME 1"])
    d.say(f"  reconsideration upheld the denial; options {app.view(c)['post_decision_options']}")

    # 11. Drafts ("finish later"), cancellations, a P2P covering two cases.
    draft = app.start_draft({"policy": DME, "line_of_business": "commercial"}, actor=PROVIDER).view
    d.cases.add(draft["case_id"])
    d.say(f"draft {draft['case_number']} expires {draft['draft_expires_at']}")
    d.fire("draft_expiry", draft["case_id"], "draft_expires_at")
    draft = app.start_draft({"policy": WELLSENSE, "line_of_business": "medicare"}, actor=PROVIDER).view
    d.cases.add(draft["case_id"])
    body = request(WELLSENSE, date_of_service=later(d.clock.now(), 9), line_of_business="medicare")
    d.say(f"draft {draft['case_number']} submitted -> {app.submit_draft(draft['case_id'], body, actor=PROVIDER).view['status']}")
    c = d.submit(DME, "DME cancelled by provider")
    app.cancel(c, "member moved out of state", actor=PROVIDER)
    a, b = d.submit(DME, "DME pair A"), d.submit(DME, "DME pair B")
    for x in (a, b):
        app.place_hold(x, ["face-to-face notes"], actor=MD)
    view = app.schedule_p2p(a, level="pre_decision", slot=(d.clock.now() + timedelta(hours=3)).isoformat(), reviewer="Dr. Okafor",
                            contact={"name": "Dr. Doe", "phone": "555-0100"}, also_cases=[b], actor=PROVIDER).view
    p2p = view["p2ps"][0]["p2p_id"]
    app.cancel_p2p(a, p2p, "provider unavailable", actor=PROVIDER)
    d.say(f"  one P2P for two cases cancelled on both: {app.view(b)['p2ps'][0]['status']}")
    app.upload_clinical(b, [document("f2f.pdf", seed=b)], "face-to-face attached", actor=PROVIDER)
    d.say(f"  upload ends the hold -> {d.status(b)}")

    walker = app.verify()
    d.say("")
    d.say(f"demo: {len(d.cases)} cases, {d.refusals} refusals shown, clock now {d.clock.now().isoformat()}")
    d.say(f"store: {walker.events} events in {walker.cases} cases, every hash chain intact")
    return d.lines


def demo_clock_start() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=400)
