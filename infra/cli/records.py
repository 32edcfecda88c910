"""The record and its audit: verify the hash chains, seal, rebuild the read models, report the reads of member data."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Optional

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.chain import ChainBreak
from domain.errors import FieldError, InvalidInput
from infra.bootstrap import System, kafka_security
from infra.settings import Settings
from infra.cli.console import Failure, cli, emit, err, handled, instant, kafka_settings, open_system


@cli.command()
@handled
def verify(
    seals: Optional[str] = typer.Option(
        None, "--seals", help="also check the store against signed seals: a JSON-lines file (caselog seal --out FILE) "
        "or kafka (the seals topic, CASELOG_SEAL_TOPIC)"),
    fingerprint: list[str] = typer.Option(
        [], "--fingerprint", help="trust only seals signed by this key (SHA256:..., repeatable; default: the key of "
        "CASELOG_SEAL_KEY, else the seals' own)"),
) -> None:
    """Walk every case's SHA-256 hash chain. Exit 1 naming the first broken case and version.
    With --seals, exit 1 naming every case whose events at or below a sealed position are missing,
    altered, reordered or added."""
    if seals is not None:
        return _verify_seals(seals, fingerprint)
    system = open_system()
    try:
        total = system.app.max_position()
        with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("verify", total=total)
            try:
                walker = system.app.verify(progress=lambda n: bar.update(task, completed=n))
            except ChainBreak as exc:
                raise Failure(f"hash chain broken: case {exc.case_id} version {exc.version}: {exc.reason}") from None
    finally:
        system.close()
    print(f"ok: {walker.events} events in {walker.cases} cases, every chain intact")


def _verify_seals(source: str, fingerprints: list[str]) -> None:
    from infra import seals as sl

    settings = kafka_settings() if source == "kafka" else Settings.from_env()
    signed, trusted = sl.read_source(settings, source), sl.trust(settings, fingerprints)
    system = open_system()
    try:
        columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("verify", total=system.app.max_position())
            check = sl.check_store(system, signed, trusted, progress=lambda n: bar.update(task, completed=n))
    finally:
        system.close()
    if check.findings:
        for finding in check.findings[:100]:
            err.print(f"  {finding}", markup=False, highlight=False, soft_wrap=True)
        more = f"; {len(check.findings) - 100} more not shown" if len(check.findings) > 100 else ""
        raise Failure(f"the store does not match its seals: {len(check.findings)} finding(s) above, "
                      f"{len(check.failed_seals)} of {check.checked} seals differ{more}")
    print(sl.ok_line(check, pinned=bool(fingerprints or sl.trusted_fingerprint(settings))))


@cli.command()
@handled
def seal(
    out: Optional[Path] = typer.Option(
        None, "--out", help="append the seal as a JSON line to this file (with the heads changed since the file's "
        "previous seal, to name cases when verifying)"),
) -> None:
    """Seal the store now: sign (with the key in CASELOG_SEAL_KEY) its position, event count and
    a digest over every case's head; keep it in the seals table and publish it (Kafka when
    CASELOG_KAFKA_BOOTSTRAP is set)."""
    from infra import seals as sl

    system = open_system()
    try:
        sealer = sl.make_sealer(system)
        try:
            made = sealer.seal()
        except sl.SealRefused as exc:
            raise Failure(str(exc)) from None
        if out is not None:
            sl.append_to_file(out, sealer)
        if system.settings.kafka_bootstrap:
            publisher = sl.Publisher(system.db, system.settings)
            try:
                publisher.publish()
            except Exception as exc:  # noqa: BLE001 - kept in the table; the periodic sealer publishes it later
                err.print(f"not published to Kafka yet ({type(exc).__name__}: {exc}); it stays in the seals table",
                          markup=False)
            finally:
                publisher.close()
        last = sealer.last
    finally:
        system.close()
    fresh = f"sealed #{last['seq']}" if made else f"nothing new since seal #{last['seq']}"
    appended = f"; appended to {out}" if out else ""
    print(f"{fresh}: position {last['position']}, {last['events']} events, {last['cases']} cases, "
          f"heads digest {last['heads_digest'][:16]}..., key {last['fingerprint']}{appended}")


@cli.command()
@handled
def replay(
    projection: list[str] = typer.Option([], "--projection", help="rebuild only this projection (repeatable)"),
    source: str = typer.Option("store", "--source", help="store, or kafka (the case-events topic, deduplicated by caseversion)"),
) -> None:
    """Drop and rebuild projections from the event store or the Kafka topic, in batches, with a progress bar."""
    from infra.kafka.message import WithheldRecord

    if source not in ("store", "kafka"):
        raise InvalidInput(FieldError("--source", "store or kafka"))
    system = open_system()
    if source == "kafka" and not system.settings.kafka_bootstrap:
        system.close()
        raise InvalidInput(FieldError("--source", "kafka needs CASELOG_KAFKA_BOOTSTRAP"))
    try:
        try:
            names = [p.name for p in system.runner.by_name(projection)]
        except KeyError as exc:
            raise InvalidInput(FieldError("--projection", str(exc.args[0]))) from None
        total = system.app.max_position()
        stored = _check_topic_holds_the_store(system) if source == "kafka" else 0
        if source == "kafka":
            _check_the_topic_is_full(system)
        read = 0
        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("replay", total=total)
            records = None
            if source == "kafka":
                from consumers.topic import read_topic

                def counted(events):
                    nonlocal read
                    for event in events:
                        read += 1
                        yield event

                records = counted(read_topic(system.settings.kafka_bootstrap, system.settings.topic,
                                             kafka_security(system.settings), require_full=True))
            try:
                done = system.runner.rebuild(names, progress=lambda n: bar.update(task, completed=n), source=records)
            except WithheldRecord as exc:
                why = f"{exc}; the read models are incomplete now: run caselog replay (from the store)"
                raise Failure(why) from None
    finally:
        system.close()
    if read < stored:  # re-deliveries hid missing events from the check above
        raise Failure(f"the topic held {read} distinct events of the {stored} in the store; the read models are"
                      " incomplete: run caselog replay (from the store)")
    events = read if source == "kafka" else done  # from Kafka, rebuild counts (event, projection) pairs
    print(f"rebuilt {', '.join(names)} from {events} events ({source})")


def _check_topic_holds_the_store(system: System) -> int:
    """Before ``replay --source kafka`` drops anything: refuse (exit 1) when the topic holds fewer
    messages than the store holds events (recreated empty, lost data, events still parked).
    Returns how many events the store holds."""
    from infra.kafka.relay import parked_count, stored_event_count
    from infra.kafka.topic import high_water_marks

    settings = system.settings
    try:
        marks = high_water_marks(settings.kafka_bootstrap, settings.topic, security=kafka_security(settings))
    except Exception as exc:  # noqa: BLE001 - an unreachable broker is a failure, not a traceback
        raise Failure(f"cannot read topic {settings.topic} on {settings.kafka_bootstrap}"
                      f" ({type(exc).__name__}: {exc})") from None
    held = sum(end - begin for begin, end in (marks or {}).values())
    stored = stored_event_count(system.db, system.app.recorder)
    if held < stored:
        parked = parked_count(system.db, settings.topic)
        parked_note = f" ({parked} parked by the relay)" if parked else ""
        raise Failure(f"topic {settings.topic} holds {held} messages, fewer than the {stored} events in the store"
                      f"{parked_note}; nothing was replaced: replay from the store, or let the relay republish first")
    return stored


def _check_the_topic_is_full(system: System) -> None:
    """Before ``replay --source kafka`` drops anything: refuse (exit 1) a topic published in minimum mode,
    which lacks the member names, dates of birth and ids the read models show."""
    from consumers.topic import disclosures

    settings = system.settings
    found = disclosures(settings.kafka_bootstrap, settings.topic, kafka_security(settings))
    if found - {"full"}:
        raise Failure(f"topic {settings.topic} carries the minimum necessary (phi=minimum): the read models need the"
                      " full record (a topic published with CASELOG_KAFKA_PHI=full); nothing was replaced:"
                      " replay from the store")


@cli.command()
@handled
def rekey(
    documents: bool = typer.Option(True, "--documents/--no-documents", help="also re-encrypt the uploaded documents"),
) -> None:
    """Re-encrypt every stored event (and uploaded document) under CASELOG_CIPHER_KEY: those under
    CASELOG_CIPHER_OLD_KEY, or stored before encryption was turned on, are rewritten in place (positions,
    hashes and seals unchanged). Exit 1 naming what neither key decrypts. Then CASELOG_CIPHER_OLD_KEY can go."""
    from infra.store.cipher import Keyring, rekey_documents, rekey_events

    settings = Settings.from_env()
    keyring = Keyring.of(settings)
    if keyring is None:
        raise InvalidInput(FieldError("CASELOG_CIPHER_KEY", "set it to the key to encrypt the store under"
                                      " (and CASELOG_CIPHER_OLD_KEY to the one it is under now, if any)"))
    system = open_system()
    try:
        with Progress(TextColumn("re-encrypting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("rekey", total=system.app.max_position())
            events = rekey_events(system.app, system.db, progress=lambda n: bar.update(task, completed=n))
        files = rekey_documents(system.documents.root, keyring) if documents else None
    finally:
        system.close()
    failed = events.failed + (files.failed if files else [])
    for line in failed[:100]:
        err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    summary = f"events: {events.rewritten} re-encrypted, {events.current} already under the current key"
    if files is not None:
        summary += f"; documents: {files.rewritten} re-encrypted, {files.current} already under the current key"
    if failed:
        raise Failure(f"{summary}; {len(failed)} that no key decrypts (above)")
    print(f"ok: {summary}")


@cli.command("audit-report")
@handled
def audit_report(
    case: Optional[str] = typer.Option(None, "--case", help="only the reads that showed this case"),
    user: Optional[str] = typer.Option(None, "--user", help="only the reads by this user (a token's sub)"),
    since: Optional[str] = typer.Option(None, "--since", help="ISO 8601 instant: reads at or after it"),
    until: Optional[str] = typer.Option(None, "--until", help="ISO 8601 instant: reads before it"),
    format_: str = typer.Option("json", "--format", help="json (one document) or csv (a row per read)"),
) -> None:
    """List every read of member data, oldest first: who, when, what (the read and what was asked)
    and which cases it showed; one record per request. Filters combine."""
    if format_ not in ("json", "csv"):
        raise InvalidInput(FieldError("--format", "json or csv"))
    start, end = instant("--since", since), instant("--until", until)
    system = open_system()
    try:
        if case is not None:
            case = str(system.app.load(case).id)  # an unknown case is refused (exit 2), not an empty report
        reads = system.access.reads(case, user=user, since=start, until=end)
    finally:
        system.close()
    if format_ == "json":
        emit({"case": case, "user": user, "since": since, "until": until, "reads": reads, "total": len(reads)})
        return
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["at", "who_kind", "who_id", "who_credential", "what", "query", "case_ids"])
    for read in reads:
        who = read["who"]
        out.writerow([read["at"], who["kind"], who["id"], who.get("credential", ""), read["what"],
                      orjson.dumps(read["query"]).decode(), " ".join(read["case_ids"])])
