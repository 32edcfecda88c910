"""Cases from the command line, as a user: submit a request, run a command on a case, show a case
and its history. Each takes a token (--token or CASELOG_TOKEN) and is decided as HTTP decides it
(infra.authorization): the token's role, a provider's cases, NPIs and documents; the actor
recorded is the token's, and every read of a case is recorded in the read audit."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from application import bodies, commands
from domain.errors import FieldError, InvalidInput
from infra.cli.console import (
    KeyOpt,
    TokenOpt,
    cli,
    emit,
    handled,
    instant,
    open_system,
    read_json,
    signed_in,
    token_given,
)


@cli.command()
@handled
def submit(
    file: str = typer.Argument(..., help="JSON request body (the POST /cases shape); - reads stdin"),
    token: Optional[str] = TokenOpt,
    key: Optional[str] = KeyOpt,
) -> None:
    """Submit a prior-authorization request from a JSON file and print the case view (a provider's
    token, for its own NPIs, as POST /cases)."""
    body = bodies.parse(commands.SubmitCase, read_json(file))
    key = bodies.checked("--key", key)
    token_given(token)
    system = open_system()
    try:
        authz, who = signed_in(system, token)
        body = authz.submission(who, body, objects_uploaded=False)  # a fax's document object; not a provider's
        answer = system.app.submit(body, actor=who.actor, key=key)
    finally:
        system.close()
    emit(answer.view)


@cli.command()
@handled
def act(
    case: str = typer.Argument(..., help="case id"),
    action: str = typer.Argument(..., help=f"one of: {', '.join(commands.BY_ACTION)}"),
    file: str = typer.Argument("-", help="JSON body (the shape of the matching HTTP write); - reads stdin"),
    token: Optional[str] = TokenOpt,
    key: Optional[str] = KeyOpt,
    if_match: Optional[int] = typer.Option(None, "--if-match", help="refuse unless the case is at this version"),
    p2p: Optional[str] = typer.Option(None, "--p2p", help="the P2P id, for p2p-reschedule/cancel/complete"),
    level: Optional[int] = typer.Option(None, "--level", help="the appeal level, for appeal-decision"),
) -> None:
    """Run one command on a case (hold, clinical, p2p, determination, appeal...) and print the case view.
    The commands, their bodies and who may send them are those of the HTTP writes under /cases/{id}
    (application.commands); the actor recorded is the token's."""
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
    key = bodies.checked("--key", key)
    token_given(token)
    system = open_system()
    try:
        authz, who = signed_in(system, token)
        body = authz.command(who, command, case, body, objects_uploaded=False)
        answer = command.run(system.app, case, body, params, actor=who.actor, key=key, expected_version=if_match)
    finally:
        system.close()
    emit(answer.view)


@cli.command()
@handled
def show(case: str = typer.Argument(..., help="case id"), token: Optional[str] = TokenOpt) -> None:
    """Print a case view as it stands now (as GET /cases/{id}: not for ops; recorded in the read audit)."""
    token_given(token)
    system = open_system()
    try:
        authz, who = signed_in(system, token)
        authz.reading(who, case)
        view = system.app.view(case)
        system.access.record_read(who, "case", [view["case_id"]], system.clock.now(), {"via": "cli"})
    finally:
        system.close()
    emit(view)


@cli.command()
@handled
def history(
    case: str = typer.Argument(..., help="case id"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="ISO 8601 instant: the history and case as they stood then"),
    token: Optional[str] = TokenOpt,
) -> None:
    """Print a case's events in order and the case view (as of an instant when given), as
    GET /cases/{id}/history: not for ops; recorded in the read audit."""
    then = instant("--as-of", as_of)
    token_given(token)
    system = open_system()
    try:
        authz, who = signed_in(system, token)
        authz.reading(who, case)
        result = system.app.history(case, then)
        system.access.record_read(who, "history", [result["case"]["case_id"]], system.clock.now(),
                                  {"as_of": then.isoformat() if then else None, "via": "cli"})
    finally:
        system.close()
    emit(result)
