"""Cases from the command line: submit a request, run a command on a case, show a case and its history."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from application import bodies, commands
from domain.errors import FieldError, InvalidInput
from infra.bootstrap import System
from infra.cli.console import (
    CredOpt,
    KeyOpt,
    RoleOpt,
    SubOpt,
    actor,
    cli,
    emit,
    handled,
    instant,
    open_system,
    read_json,
)


@cli.command()
@handled
def submit(
    file: str = typer.Argument(..., help="JSON request body (the POST /cases shape); - reads stdin"),
    role: str = typer.Option("provider", "--role"),
    sub: Optional[str] = SubOpt,
    key: Optional[str] = KeyOpt,
) -> None:
    """Submit a prior-authorization request from a JSON file and print the case view."""
    body = bodies.parse(commands.SubmitCase, read_json(file))
    key = bodies.checked("--key", key)
    system = open_system()
    try:
        _documents(system, body)
        answer = system.app.submit(body, actor=actor(role, sub or body["ordering_provider"]["npi"], None), key=key)
    finally:
        system.close()
    emit(answer.view)


def _documents(system: System, body: dict) -> None:
    """Documents named by id alone take the name, media type and size they were uploaded with.
    The CLI acts as the operator who runs it (it holds the store): no uploader is checked."""
    if body.get("documents"):
        body["documents"] = system.documents.references(body["documents"], objects_uploaded=False)


@cli.command()
@handled
def act(
    case: str = typer.Argument(..., help="case id"),
    action: str = typer.Argument(..., help=f"one of: {', '.join(commands.BY_ACTION)}"),
    file: str = typer.Argument("-", help="JSON body (the shape of the matching HTTP write); - reads stdin"),
    role: str = RoleOpt,
    sub: Optional[str] = SubOpt,
    credential: Optional[str] = CredOpt,
    key: Optional[str] = KeyOpt,
    if_match: Optional[int] = typer.Option(None, "--if-match", help="refuse unless the case is at this version"),
    p2p: Optional[str] = typer.Option(None, "--p2p", help="the P2P id, for p2p-reschedule/cancel/complete"),
    level: Optional[int] = typer.Option(None, "--level", help="the appeal level, for appeal-decision"),
) -> None:
    """Run one command on a case (hold, clinical, p2p, determination, appeal...) and print the case view.
    The commands and their bodies are those of the HTTP writes under /cases/{id} (application.commands)."""
    command = commands.BY_ACTION.get(action)
    if command is None:
        raise InvalidInput(FieldError("action", f"unknown action {action!r}; one of {', '.join(commands.BY_ACTION)}"))
    raw = {} if command.body is None and file == "-" and sys.stdin.isatty() else read_json(file)
    body = bodies.parse(command.body or commands.Empty, raw)
    given = {"p2p_id": bodies.checked("--p2p", p2p), "level": level}
    params = {}
    for name in command.params:
        if given[name] is None:
            option = "--p2p" if name == "p2p_id" else "--level"
            raise InvalidInput(FieldError(option, f"{action} needs {option} {'ID' if name == 'p2p_id' else 'N'}"))
        params[name] = given[name]
    kw = {"actor": actor(role, sub, credential), "key": bodies.checked("--key", key), "expected_version": if_match}
    system = open_system()
    try:
        _documents(system, body)
        answer = command.run(system.app, case, body, params, **kw)
    finally:
        system.close()
    emit(answer.view)


@cli.command()
@handled
def show(case: str = typer.Argument(..., help="case id")) -> None:
    """Print a case view as it stands now."""
    system = open_system()
    try:
        emit(system.app.view(case))
    finally:
        system.close()


@cli.command()
@handled
def history(
    case: str = typer.Argument(..., help="case id"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="ISO 8601 instant: the history and case as they stood then"),
) -> None:
    """Print a case's events in order and the case view (as of an instant when given)."""
    then = instant("--as-of", as_of)
    system = open_system()
    try:
        emit(system.app.history(case, then))
    finally:
        system.close()
