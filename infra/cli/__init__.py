"""The ``caselog`` command line. Exit 0 on success, 2 on bad usage or bad input (the reason on
stderr, nothing recorded), 1 on failure (including a broken hash chain). The commands live in
this package by topic; ``console`` holds what they share."""

from __future__ import annotations

from infra.cli import cases, records, reports, services, subscribers, tools  # noqa: F401 - each registers its commands
from infra.cli.console import cli


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
