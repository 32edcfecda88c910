"""What a case looks like to its readers: the case view of DESIGN.md, computed at ``now``."""

from __future__ import annotations

from datetime import datetime

from domain.context import iso
from domain.state import CaseState as Case
from domain.vocabulary import ADVERSE, AUTHORIZED_STATUSES


def post_decision_options(case: Case, now: datetime) -> list[str]:
    options: list[str] = []
    if case.status in ADVERSE:
        if case.reconsideration_allowed(now):
            options += ["reconsideration", "reconsideration_p2p"]
        if (
            case.appeal_deadline is not None
            and now <= case.appeal_deadline
            and case.open_appeal is None
            and len(case.appeals) < case.row.appeal_levels
        ):
            options.append("appeal")
        if case.status == "alternative_recommended" and case.alternative_deadline and now <= case.alternative_deadline:
            options.append("accept_alternative")
        if not options:
            options.append("consultative_p2p")
    elif case.status in AUTHORIZED_STATUSES and case.authorization_active(now):
        options.append("authorization_update")
        if case.authorization_extensions < case.row.authorization_extensions:
            options.append("authorization_extension")
    return options


def case_view(case: Case, now: datetime) -> dict:
    return {
        "case_id": str(case.id),
        "case_number": case.case_number,
        "authorization_number": case.authorization_number,
        "status": case.status,
        "urgent": case.urgent,
        "urgent_requested": case.urgent_requested,
        "urgent_note": case.urgent_note,
        "retro": case.retro,
        "policy": case.policy,
        "policy_version": case.policy_version,
        "line_of_business": case.line_of_business,
        "member": case.member,
        "ordering_provider": case.ordering_provider,
        "site": case.site,
        "service": case.service,
        "received_at": iso(case.received_at),
        "decision_due_at": iso(case.decision_due_at),
        "decision_warning_at": iso(case.decision_warning_at),
        "decision_target_at": iso(case.decision_target_at),
        "timeframe_extended": case.timeframe_extended,
        "hold_due_at": iso(case.hold_due_at),
        "hold": case.hold,
        "appeal_deadline": iso(case.appeal_deadline),
        "reconsideration_deadline": iso(case.reconsideration_deadline),
        "alternative_deadline": iso(case.alternative_deadline),
        "draft_expires_at": iso(case.draft_expires_at),
        "valid_from": iso(case.valid_from),
        "valid_to": iso(case.valid_to),
        "valid_from_date": case.calendar.local_date(case.valid_from).isoformat() if case.valid_from and case.policy else None,
        "valid_to_date": case.calendar.local_date(case.valid_to).isoformat() if case.valid_to and case.policy else None,
        "outcome": case.outcome,
        "lines": case.lines,
        "determined_at": iso(case.determined_at),
        "approval": case.approval_details or None,
        "documents": case.documents,
        "p2ps": sorted(case.p2ps.values(), key=lambda p: p["slot"]),
        "appeals": case.appeals,
        "reconsideration": case.reconsideration,
        "post_decision_options": post_decision_options(case, now),
        "p2p_eligibility": case.p2p_eligibility(now),
        "letters": case.letters,
        "version": case.version,
        "successor_case_id": case.successor_case_id,
        "predecessor_case_id": case.predecessor_case_id,
    }
