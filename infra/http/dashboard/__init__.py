"""The operations dashboard (HTML, server-rendered, htmx and server-sent events vendored under
``static/``): ``router(guard)`` mounts its pages, fragments, event stream, assets and the
``/session`` sign-in. See ``pages`` for the routes, ``views`` for what a case says, ``charts`` for
the SVG figures."""

from __future__ import annotations

from infra.http.dashboard.pages import router

__all__ = ["router"]
