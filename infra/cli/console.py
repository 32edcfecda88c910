"""The console every ``caselog`` command shares: the Typer app, the error console, how refusals
and failures become exit statuses (2 refused, 1 failed, the reason on stderr in one line), and
reading and printing JSON."""

from __future__ import annotations

import functools
import getpass
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
from infra.bootstrap import System, bootstrap
from infra.settings import SettingError, Settings, StoreUnavailable

cli = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="caselog: event-sourced lifecycle of prior-authorization cases. Settings come from CASELOG_* variables "
    "(CASELOG_DATA_DIR, default ./caselog-data; CASELOG_DATABASE_URL for PostgreSQL).",
)
err = Console(stderr=True)


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
        except (StoreUnavailable, UnreadableState) as exc:  # one line (soft wrap) naming the setting
            err.print(f"failed: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Failure as exc:
            err.print("[bold red]failed[/]: ", end="")
            err.print(str(exc), highlight=False, markup=False, soft_wrap=True)  # one line, whatever the width
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


def actor(role: str, sub: str | None, credential: str | None) -> dict:
    actor = {"kind": role, "id": sub or getpass.getuser()}
    if credential:
        actor["credential"] = credential.upper()
    return actor


RoleOpt = typer.Option("admin", "--role", help="actor kind recorded on the events (provider, reviewer, admin...)")
SubOpt = typer.Option(None, "--sub", help="actor id (default: your login name)")
CredOpt = typer.Option(None, "--credential", help="reviewer credential: MD or DO may deny, RN may not")
KeyOpt = typer.Option(None, "--key", help="idempotency key: a retry with the same key and body records nothing")


