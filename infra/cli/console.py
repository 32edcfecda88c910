"""The console every ``caselog`` command shares: the Typer app, the error console, how refusals
and failures become exit statuses (2 refused, 1 failed, the reason on stderr in one line), and
reading and printing JSON."""

from __future__ import annotations

import functools
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import orjson
import typer
from rich.console import Console

from application.caselog import UnreadableState
from domain.errors import DomainError, FieldError, InvalidInput
from domain.validation import check_instant
from infra.authorization import Authorization, Unauthenticated
from infra.bootstrap import System, bootstrap
from infra.identity import Principal
from infra.settings import SettingError, Settings, StoreUnavailable

cli = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="caselog: event-sourced lifecycle of prior-authorization cases. Settings come from CASELOG_* variables "
    "(CASELOG_DATA_DIR, default ./caselog-data; CASELOG_DATABASE_URL for PostgreSQL).",
)
# soft_wrap: a reason is one line whatever the terminal's width (80 columns when stderr is not a
# terminal), for logs, scripts and grep; every print to stderr goes through this console
err = Console(stderr=True, soft_wrap=True)


def version() -> str:
    """The installed caselog's version (package metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("caselog")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def _print_version(asked: bool) -> None:
    if asked:
        print(f"caselog {version()}")
        raise typer.Exit(0)


@cli.callback()
def main_options(
    show_version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True,
                                      callback=_print_version),
) -> None:
    pass  # the options every command shares; the help is the app's


class Failure(Exception):
    """Exit 1 with this reason."""


def emit(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def handled(fn: Callable) -> Callable:
    """Map refusals to exit 2 and failures to exit 1, always with the reason on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidInput as exc:
            err.print(f"[bold red]refused[/] ({exc.rule}): {exc.title}", highlight=False)
            for e in exc.errors:
                err.print(f"  {e.field}: {e.message}", highlight=False, markup=False)
            raise typer.Exit(2) from None
        except DomainError as exc:
            err.print(f"[bold red]refused[/] ({exc.rule}): ", end="", highlight=False)
            err.print(exc.detail, highlight=False, markup=False)
            raise typer.Exit(2) from None
        except SettingError as exc:
            err.print("[bold red]refused[/] (setting): ", end="", highlight=False)
            err.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(2) from None
        except (StoreUnavailable, UnreadableState) as exc:  # one line naming the setting, for logs and scripts
            err.print(f"failed: {exc}", highlight=False, markup=False)
            raise typer.Exit(1) from None
        except Failure as exc:
            err.print("[bold red]failed[/]: ", end="")
            err.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(1) from None

    return wrapper


def open_system() -> System:
    return bootstrap()


def kafka_settings() -> Settings:
    """The settings of a command that needs Kafka, refused (exit 2) when no broker is set."""
    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        raise InvalidInput(FieldError("CASELOG_KAFKA_BOOTSTRAP", "set it to the Kafka bootstrap servers (host:port)"))
    return settings


def read_json(path: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(FieldError("file", f"cannot read {path}: {exc.strerror}")) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(FieldError("file", f"{path} is not valid JSON: {exc}")) from None


def instant(field: str, value: str | None) -> datetime | None:
    """An ISO 8601 instant with a time zone from an option, or None."""
    return None if value is None else check_instant(field, value)


HOW_TO_SIGN_IN = "--token TOKEN or CASELOG_TOKEN (a token from `caselog token`)"


def token_given(token: str | None) -> str:
    """Refuse at once (exit 2, before the store is opened) a command given no token."""
    if not token:
        raise Unauthenticated(f"this command acts as a user: give {HOW_TO_SIGN_IN}")
    return token


def signed_in(system: System, token: str | None) -> tuple[Authorization, Principal]:
    """Who the token names, checked exactly as HTTP checks a bearer token (signature, lifetime,
    revocation), and the decisions HTTP makes for it (whose a case is: the read model, caught up
    when it does not know the case or refuses, as for HTTP)."""
    authz = Authorization(system)
    return authz, authz.principal(token_given(token), how=HOW_TO_SIGN_IN)


TokenOpt = typer.Option(None, "--token", envvar="CASELOG_TOKEN", show_envvar=True, show_default=False,
                        help="who is acting: a token from `caselog token`, checked as HTTP checks it")
KeyOpt = typer.Option(None, "--key", help="idempotency key: a retry with the same key and body records nothing")


