"""The deadline kinds the scheduler fires, each with the Case command that turns its due instant
into an event: one table, so adding a kind is adding a row here and arming it in the deadline
projection (scheduler/deadlines.py), which reads ``KINDS`` from here."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from domain.case import Case
from domain.context import Context

# kind -> (case, context, due instant, P2P id or None) -> the command
Fire = Callable[[Case, Context, datetime, "str | None"], None]
DEADLINES: dict[str, Fire] = {
    "hold_due": lambda case, ctx, at, _: case.lapse_hold(ctx, at),
    "decision_warning": lambda case, ctx, at, _: case.warn_decision_due(ctx, at),
    "decision_due": lambda case, ctx, at, _: case.mark_decision_overdue(ctx, at),
    "appeal_window": lambda case, ctx, at, _: case.close_appeal_window(ctx, at),
    "reconsideration_window": lambda case, ctx, at, _: case.close_reconsideration_window(ctx, at),
    "authorization_expiry": lambda case, ctx, at, _: case.expire_authorization(ctx, at),
    "alternative_lapse": lambda case, ctx, at, _: case.lapse_alternative(ctx, at),
    "draft_expiry": lambda case, ctx, at, _: case.expire_draft(ctx, at),
    "p2p_slot": lambda case, ctx, at, p2p_id: case.miss_p2p(ctx, p2p_id, at),
}
KINDS = tuple(DEADLINES)
