"""Reports made from the record: the CMS-0057-F annual public posting."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

import orjson
import typer

from domain.errors import FieldError, InvalidInput
from domain.policy import POLICY_IDS
from infra.cli.console import cli, handled, open_system
from projections.metrics import annual_posting

report = typer.Typer(no_args_is_help=True, help="Reports made from the record.")
cli.add_typer(report, name="report")

CSV_COLUMNS = ("item", "title", "policy", "figure", "numerator", "denominator", "value", "unit", "detail")


@report.command("cms-0057")
@handled
def cms_0057(
    year: int = typer.Option(..., "--year", help="the calendar year of the decisions reported (UTC)"),
    policy: Optional[str] = typer.Option(None, "--policy", help="only this policy (default: all)"),
    partial_counts_as: str = typer.Option("denied", "--partial-counts-as",
                                          help="count partial approvals as approved or denied"),
    out: Path = typer.Option(Path("."), "--out", help="the directory to write the CSV and JSON files to"),
) -> None:
    """Write the CMS-0057-F annual public posting of prior-authorization metrics for YEAR: all nine
    items (the items and services that require prior authorization; approvals, denials, approvals
    after appeal, extended then approved, for standard and expedited requests; average and median
    time to a determination), every figure with its numerator and denominator, as
    cms-0057-YEAR[-POLICY].csv and .json. Made from the events' read model: the same events give
    the same files, byte for byte."""
    if policy is not None and policy not in POLICY_IDS:
        raise InvalidInput(FieldError("--policy", f"one of {', '.join(POLICY_IDS)}"))
    if partial_counts_as not in ("approved", "denied"):
        raise InvalidInput(FieldError("--partial-counts-as", "approved or denied"))
    system = open_system()
    try:
        system.catch_up()
        posting = annual_posting(system.db, year, policy=policy, partial_counts_as=partial_counts_as)
    finally:
        system.close()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cms-0057-{year}" + (f"-{policy.replace('/', '_')}" if policy else "")
    (out / f"{stem}.json").write_bytes(orjson.dumps(posting, option=orjson.OPT_INDENT_2) + b"\n")
    (out / f"{stem}.csv").write_text(posting_csv(posting), encoding="utf-8", newline="")
    print(f"wrote {out / stem}.csv and {out / stem}.json")


def posting_csv(posting: dict) -> str:
    """One row per figure (items 2 to 9) and per policy's services (item 1)."""
    buffer = io.StringIO()
    rows = csv.writer(buffer, lineterminator="\n")
    rows.writerow(CSV_COLUMNS)
    for item in posting["items"]:
        for service in item.get("services", []):
            not_required = "; ".join(f"{n['place_of_service'] or '-'}: {n['reason']}" for n in service["not_required"])
            detail = (f"plan {service['plan']}; lines {', '.join(service['lines_of_business'])}; codes "
                      f"{', '.join(service['program_codes']) or '-'}; not required: {not_required or '-'}")
            rows.writerow((item["item"], item["title"], service["policy"], "service", "", "", service["program"], "",
                           detail))
        for figure in item.get("figures", []):
            rows.writerow((item["item"], item["title"], posting["policy"] or "all", figure["figure"],
                           _cell(figure["numerator"]), _cell(figure["denominator"]), _cell(figure["value"]),
                           figure["unit"], ""))
    return buffer.getvalue()


def _cell(value: object) -> str:
    return "" if value is None else str(value)
