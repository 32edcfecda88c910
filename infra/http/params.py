"""Query parameters an operation does not take are refused (422 naming each), not silently
ignored: a misspelt filter (``?stauts=approved``) would otherwise answer the whole list."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant

from domain.errors import FieldError, InvalidInput


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query_only(request: Request) -> None:
    """An app-wide dependency: refuse the query parameters the matched operation does not declare. On the
    event loop (no I/O): a plain ``def`` dependency is handed to the thread pool, on every request of every route."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params or "dashboard" in (getattr(route, "tags", None) or ()):
        return  # the dashboard's HTML pages read their own filters and tolerate what they do not know
    known = getattr(route, "caselog_query_names", None)  # the parameters its handler and dependencies take
    if known is None:
        known = route.caselog_query_names = frozenset(_query_names(dependant))
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        takes = f"this operation takes {', '.join(sorted(known))}" if known else "this operation takes none"
        raise InvalidInput([FieldError(name, f"unknown query parameter; {takes}") for name in unknown])
