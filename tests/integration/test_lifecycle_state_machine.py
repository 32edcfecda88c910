"""Random command sequences on random policies (hypothesis state machine), on the real store.

Every command either records events or raises a named domain error (and then records
nothing); a case rebuilt from its stored events equals the one the command left in memory;
the hash chains verify; and the recorded history never breaks a rule of POLICIES.md.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from domain.vocabulary import ADVERSE, MEDICARE_LINES
from domain.errors import DomainError
from domain.policy import policy_version
from application.caselog import CaseLog
from infra.bootstrap import bootstrap
from infra.clock import ManualClock
from infra.demo.samples import document, later, request
from infra.settings import Settings
from tests.conftest import START
from tests.support import ALL_POLICIES, MD, PROVIDER, RN

LINES = {"healthspring-ma/radiation-oncology": ["medicare"], "aetna-bh-il/radiology": ["medicaid", "duals"],
         "aetna-bh-il/msk": ["medicaid", "duals"], "cigna-commercial/medical-oncology": ["commercial"],
         "wellsense-ma-nh/msk": ["medicare", "medicaid", "commercial"], "cigna-commercial/dme": ["commercial"]}
DEADLINE_FIELDS = {"hold_due": "hold_due_at", "decision_warning": "decision_warning_at", "decision_due": "decision_due_at",
                   "appeal_window": "appeal_deadline", "reconsideration_window": "reconsideration_deadline",
                   "authorization_expiry": "valid_to", "alternative_lapse": "alternative_deadline", "draft_expiry": "draft_expires_at"}
reviewers = st.sampled_from([MD, RN, {"kind": "reviewer", "id": "dr-b", "credential": "DO"}])


class SpyCaseLog(CaseLog):
    """The real application, remembering the aggregates each save left in memory."""

    def save(self, *objs, **kwargs):
        self.saved = list(objs)
        return super().save(*objs, **kwargs)


def history_violations(app: CaseLog, case_id: str) -> list[str]:
    events = app.history(case_id)["events"]
    found: list[str] = []
    first = next((e for e in events if e["type"] == "CaseSubmitted"), None)
    if first is None:
        return found
    sub = first["data"]
    row = policy_version(sub["policy"], sub["policy_version"])
    line = sub["line_of_business"]
    received, due = datetime.fromisoformat(sub["received_at"]), datetime.fromisoformat(sub["decision_due_at"])
    expected = timedelta(hours=row.urgent_decision_hours) if sub["urgent"] else timedelta(days=row.standard_limit_days[line])
    if due - received != expected:
        found.append("decision clock")
    if sub["urgent"] and row.urgent_requires_upload and not sub["documents"]:
        found.append("urgent without upload")
    notice = False
    extensions = [e for e in events if e["type"] == "DecisionTimeframeExtended"]
    if len(extensions) > 1 or any(e["data"]["reason"] not in row.timeframe_extensions[line].reasons for e in extensions):
        found.append("timeframe extension")
    hold_due = None
    for e in events:
        t, d = e["type"], e["data"]
        if t == "PreDenialNoticeGiven":
            notice = True
        if t == "CaseHeld":
            hold_due = datetime.fromisoformat(d["due_at"])
        if t == "P2PScheduled" and d["level"] == "pre_decision" and (hold_due is None or datetime.fromisoformat(d["slot"]) >= hold_due):
            found.append("pre-decision P2P after hold due")
        if t == "CaseDetermined":
            if d["outcome"] in ADVERSE and e["actor"].get("credential") not in ("MD", "DO"):
                found.append("denial by a non-physician")
            if d["outcome"] in ADVERSE and line in MEDICARE_LINES and not notice:
                found.append("Medicare denial without notice")
            if d["outcome"] == "partially_approved" and row.partial_approval == "none":
                found.append("partial approval where none allowed")
            if d["outcome"] in ADVERSE and not (d["rationale"] and d["guidelines"]):
                found.append("denial without rationale and guideline")
        if t == "ReconsiderationRequested" and (line in MEDICARE_LINES or row.reconsideration is None):
            found.append("reconsideration not allowed")
        if t == "AppealFiled":
            prior = [x for x in events if x["version"] < e["version"]]
            deadlines = [x["data"].get("appeal_deadline") or x["data"].get("next_appeal_deadline") for x in prior if x["type"] in ("CaseDetermined", "AppealDecided")]
            last = [x for x in deadlines if x]
            if not last or datetime.fromisoformat(d["filed_at"]) > datetime.fromisoformat(last[-1]):
                found.append("appeal filed outside its window")
    if sum(e["type"] == "AuthorizationExtended" for e in events) > row.authorization_extensions:
        found.append("authorization extended too often")
    if any(e["type"] == "CaseAutoApproved" for e in events) and not row.auto_approve_when:
        found.append("auto approval without a rule")
    return found


class CaseLifecycle(RuleBasedStateMachine):
    cases = Bundle("cases")

    @initialize()
    def start(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="caselog-sm-"))
        self.clock = ManualClock(START)
        self.system = bootstrap(Settings(data_dir=self.tmp), clock=self.clock)
        self.system.app.__class__ = SpyCaseLog
        self.app: SpyCaseLog = self.system.app
        self.known: list[str] = []

    def teardown(self):
        if hasattr(self, "system"):
            self.system.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def attempt(self, call) -> bool:
        before = self.app.max_position()
        self.app.saved = []
        try:
            call()
        except DomainError:
            assert self.app.max_position() == before, "a refused command recorded events"
            return False
        assert self.app.max_position() > before, "an accepted command recorded nothing"
        for case in self.app.saved:
            assert self.app.load(case.id) == case, "rebuilt case differs from the one in memory"
        return True

    @rule(target=cases, policy=st.sampled_from(ALL_POLICIES), data=st.data(), urgent=st.booleans(), with_docs=st.booleans(),
          days=st.integers(-3, 40), auto=st.booleans())
    def submit(self, policy, data, urgent, with_docs, days, auto):
        body = request(policy, date_of_service=later(self.clock.now(), days), urgent=urgent,
                       documents=[document(seed=str(days))] if with_docs else [],
                       line_of_business=data.draw(st.sampled_from(LINES[policy])),
                       clinical={"nccn_preferred_regimen": auto})
        out = {}
        if self.attempt(lambda: out.setdefault("v", self.app.submit(body, actor=PROVIDER).view)):
            self.known.append(out["v"]["case_id"])
            return out["v"]["case_id"]
        return multiple()

    @rule(hours=st.integers(1, 24 * 60))
    def time_passes(self, hours):
        self.clock.advance(timedelta(hours=hours))

    @rule(case=cases, items=st.lists(st.sampled_from(["notes", "imaging", "plan"]), min_size=0, max_size=2))
    def hold(self, case, items):
        self.attempt(lambda: self.app.place_hold(case, items, actor=MD))

    @rule(case=cases)
    def upload(self, case):
        self.attempt(lambda: self.app.upload_clinical(case, [document("more.pdf", seed=str(self.clock.now()))], "more", actor=PROVIDER))

    @rule(case=cases, level=st.sampled_from(["pre_decision", "reconsideration", "consultative_only"]), hours=st.integers(1, 72))
    def schedule_p2p(self, case, level, hours):
        slot = (self.clock.now() + timedelta(hours=hours)).isoformat()
        self.attempt(lambda: self.app.schedule_p2p(case, level=level, slot=slot, reviewer="Dr R", contact={"name": "O", "phone": "1"}, actor=PROVIDER))

    @rule(case=cases, action=st.sampled_from(["complete", "cancel", "reschedule"]))
    def p2p_follow_up(self, case, action):
        p2ps = self.app.view(case)["p2ps"]
        if not p2ps:
            return
        p2p = p2ps[-1]["p2p_id"]
        calls = {
            "complete": lambda: self.app.complete_p2p(case, p2p, "discussed", actor=MD),
            "cancel": lambda: self.app.cancel_p2p(case, p2p, "conflict", actor=PROVIDER),
            "reschedule": lambda: self.app.reschedule_p2p(case, p2p, (self.clock.now() + timedelta(hours=2)).isoformat(), actor=PROVIDER),
        }
        self.attempt(calls[action])

    @rule(case=cases)
    def pre_denial_notice(self, case):
        self.attempt(lambda: self.app.give_pre_denial_notice(case, "phone_and_writing", actor=MD))

    @rule(case=cases, reason=st.sampled_from(["enrollee_request", "non_contract_provider_information", "contracted_provider_records",
                                              "matters_beyond_reviewer_control", "additional_information_in_enrollee_interest"]),
          days=st.integers(0, 16))
    def extend_timeframe(self, case, reason, days):
        self.attempt(lambda: self.app.extend_timeframe(case, reason, days, actor=MD))

    @rule(case=cases, outcome=st.sampled_from(["approved", "partially_approved", "denied", "alternative_recommended"]),
          reviewer=reviewers, rationale=st.booleans(), valid_days=st.integers(1, 400))
    def determine(self, case, outcome, reviewer, rationale, valid_days):
        view = self.app.view(case)
        procedures = view["service"].get("procedures", [])
        lines = None
        if outcome == "partially_approved" and procedures:
            lines = [{"code": p["code"], "decision": "approved" if i == 0 else "denied"} for i, p in enumerate(procedures)]
        self.attempt(lambda: self.app.determine(
            case, actor=reviewer, outcome=outcome, lines=lines, rationale="criteria" if rationale else None,
            guidelines=["g1"] if rationale else [], technique="IMRT", fractions=10, igrt=True,
            valid_to=later(self.clock.now(), valid_days).isoformat() if valid_days % 3 else None,
        ))

    @rule(case=cases)
    def accept_alternative(self, case):
        self.attempt(lambda: self.app.accept_alternative(case, actor=PROVIDER))

    @rule(case=cases)
    def reconsideration(self, case):
        self.attempt(lambda: self.app.request_reconsideration(case, "new information", actor=PROVIDER))

    @rule(case=cases, outcome=st.sampled_from(["approved", "denied"]), reviewer=reviewers)
    def reconsideration_decision(self, case, outcome, reviewer):
        self.attempt(lambda: self.app.decide_reconsideration(case, actor=reviewer, outcome=outcome, rationale="r", guidelines=["g"]))

    @rule(case=cases)
    def appeal(self, case):
        self.attempt(lambda: self.app.file_appeal(case, "disagree", actor=PROVIDER))

    @rule(case=cases, outcome=st.sampled_from(["upheld", "overturned"]), reviewer=reviewers)
    def appeal_decision(self, case, outcome, reviewer):
        level = len(self.app.view(case)["appeals"])
        self.attempt(lambda: self.app.decide_appeal(case, level, actor=reviewer, outcome=outcome, rationale="r"))

    @rule(case=cases, kind=st.sampled_from(["site", "contact", "timespan", "regimen", "fractions", "igrt"]))
    def update(self, case, kind):
        changes = {"site": {"name": "New Site"}, "contact": {"phone": "555-0000"}}.get(kind, {kind: "changed"})
        self.attempt(lambda: self.app.update_authorization(case, kind, changes, actor=PROVIDER))

    @rule(case=cases, days=st.integers(1, 400))
    def extend_authorization(self, case, days):
        self.attempt(lambda: self.app.extend_authorization(case, later(self.clock.now(), days).isoformat(), actor=PROVIDER))

    @rule(case=cases, how=st.sampled_from(["cancel", "withdraw"]))
    def end(self, case, how):
        call = self.app.cancel if how == "cancel" else self.app.withdraw
        self.attempt(lambda: call(case, "no longer needed", actor=PROVIDER))

    @rule(case=cases, kind=st.sampled_from(sorted(DEADLINE_FIELDS)), early=st.booleans())
    def deadline(self, case, kind, early):
        field = self.app.view(case)[DEADLINE_FIELDS[kind]]
        if not field:
            return
        instant = datetime.fromisoformat(field)
        if not early and self.clock.now() < instant:
            self.clock.set(instant)
        self.attempt(lambda: self.app.fire_deadline(kind, case, instant))

    @precondition(lambda self: hasattr(self, "app"))
    @invariant()
    def chains_verify_and_no_rule_is_broken(self):
        self.app.verify()
        for case_id in self.known[-3:]:
            assert history_violations(self.app, case_id) == []


CaseLifecycle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_random_command_sequences_keep_every_rule = CaseLifecycle.TestCase
