"""The operations dashboard (HTML), for a browser: review queue and decision figures."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from infra.http.guard import Guard
from infra.identity import Principal
from projections.metrics import prior_authorization_figures
from projections.review_queue import review_queue_page


def router(guard: Guard) -> APIRouter:
    routes = APIRouter(tags=["dashboard"])
    app, system = guard.app, guard.system

    @routes.get("/dashboard", response_class=HTMLResponse)
    def dashboard(who: Principal = Depends(guard.browser)) -> HTMLResponse:
        queue = review_queue_page(system.db, app.clock.now(), page_size=50)
        figures = prior_authorization_figures(system.db)
        rows = "".join(
            f"<tr><td>{html.escape(i['case_number'])}</td><td>{html.escape(i['status'])}</td><td>{'urgent' if i['urgent'] else ''}</td>"
            f"<td>{html.escape(i['decision_due_at'])}</td><td>{'AT RISK' if i['at_risk'] else ''}{'OVERDUE' if i['overdue'] else ''}</td></tr>"
            for i in queue["items"])
        s, e = figures["standard"], figures["expedited"]
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>caselog operations</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>caselog operations</h1><p>Open cases: <b>{queue['total']}</b> &middot; events: {app.max_position()}</p>"
            f"<h2>Decisions</h2><p>standard: {s['decided']} decided, {s['approved']['percent']}% approved, median {s['median_hours_to_decision']} h"
            f" &middot; expedited: {e['decided']} decided, {e['approved']['percent']}% approved, median {e['median_hours_to_decision']} h</p>"
            f"<h2>Review queue</h2><table><tr><th>case</th><th>status</th><th></th><th>decision due</th><th></th></tr>{rows}</table>"
            "</body></html>")
        return HTMLResponse(page)

    return routes
