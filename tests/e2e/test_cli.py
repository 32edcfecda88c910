"""The CLI as users run it: real processes, real stores, exit statuses and messages."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


from infra.bootstrap import bootstrap
from infra.demo.samples import PROVIDER_NPI, later, request, document
from infra.identity import load_secret, mint
from datetime import datetime, timezone

TODAY = datetime.now(timezone.utc)  # the CLI runs on the system clock
from tests.support import MEDONC, WELLSENSE, recorded


def caselog(settings, *args: str, stdin: str | None = None, token: str | None = None) -> subprocess.CompletedProcess:
    """``caselog ARGS`` on the store of ``settings``, as the user ``token`` names (CASELOG_TOKEN) when given."""
    env = {**os.environ, "CASELOG_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    for variable in ("CASELOG_DATABASE_URL", "CASELOG_TOKEN", "CASELOG_SECRET"):
        env.pop(variable, None)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    if token:
        env["CASELOG_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)


def token(settings, role: str = "provider", sub: str = "dr-doe", **claims) -> str:
    """A token signed with the deployment's secret (a provider with the sample NPI unless told)."""
    if role == "provider":
        claims.setdefault("npis", [PROVIDER_NPI])
    return mint(load_secret(settings.data_dir), role=role, sub=sub, **claims)


def store_state(settings):
    s = bootstrap(settings)
    try:
        return recorded(s)
    finally:
        s.close()


def write(tmp_path: Path, name: str, body) -> str:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


def test_demo_drives_every_policy_and_verify_passes(store):
    out = caselog(store, "demo")
    assert out.returncode == 0, out.stderr
    for policy in ("healthspring-ma/radiation-oncology", "aetna-bh-il/radiology", "aetna-bh-il/msk",
                   "cigna-commercial/medical-oncology", "wellsense-ma-nh/msk", "cigna-commercial/dme"):
        assert policy in out.stdout
    assert "every hash chain intact" in out.stdout
    verify = caselog(store, "verify")
    assert verify.returncode == 0 and verify.stdout.startswith("ok:")


def test_submit_then_history_as_of(store, tmp_path):
    body = request(WELLSENSE, date_of_service=later(TODAY, 10), documents=[])
    out = caselog(store, "submit", write(tmp_path, "req.json", body), token=token(store))
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["status"] == "pending" and len(view["case_number"]) == 10
    reviewer = token(store, "reviewer", "dr-okafor", credential="MD")
    hist = caselog(store, "history", view["case_id"], "--as-of", "2000-01-01T00:00:00Z", token=reviewer)
    assert hist.returncode == 2 and "no events" in hist.stderr
    hist = caselog(store, "history", view["case_id"], token=reviewer)
    assert [e["type"] for e in json.loads(hist.stdout)["events"]] == ["CaseSubmitted"]
    assert json.loads(hist.stdout)["events"][0]["actor"] == {"kind": "provider", "id": "dr-doe"}  # the token's


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    good = request(WELLSENSE, date_of_service=later(TODAY, 400))
    bad_npi = json.loads(json.dumps(good)); bad_npi["ordering_provider"]["npi"] = "1234567890"
    bad_icd = json.loads(json.dumps(good)); bad_icd["service"]["diagnoses"] = ["M5.451"]
    big = json.loads(json.dumps(good)); big["documents"] = [document("mri.pdf", size=30 * 1024 * 1024)]
    return {
        "malformed JSON": (write(tmp_path, "broken.json", '{"policy": "wellsense-ma-nh/msk",'), "not valid JSON"),
        "unknown policy": (write(tmp_path, "policy.json", {**good, "policy": "acme/dental"}), "unknown policy"),
        "bad NPI": (write(tmp_path, "npi.json", bad_npi), "not a valid NPI"),
        "ICD-10 typo": (write(tmp_path, "icd.json", bad_icd), "not an ICD-10-CM code"),
        "30 MB document": (write(tmp_path, "big.json", big), "at most 25 MB"),
    }


def test_bad_input_exits_2_with_the_reason_and_records_nothing(store, tmp_path):
    before = store_state(store)
    admin = token(store, "admin", "root")  # any NPI: what refuses is the input
    for what, (path, reason) in _bad_inputs(tmp_path).items():
        out = caselog(store, "submit", path, token=admin)
        assert out.returncode == 2, f"{what}: {out.returncode} {out.stderr}"
        assert reason in out.stderr, f"{what}: {out.stderr}"
    assert store_state(store) == before


def test_denial_by_a_non_physician_exits_2_and_records_nothing(store, tmp_path):
    body = request(MEDONC, date_of_service=later(TODAY, 10), documents=[])
    submitted = caselog(store, "submit", write(tmp_path, "r.json", body), token=token(store))
    case_id = json.loads(submitted.stdout)["case_id"]
    denial = write(tmp_path, "deny.json", {"outcome": "denied", "rationale": "not indicated", "guidelines": ["NCCN"]})
    before = store_state(store)
    nurse = token(store, "reviewer", "nurse", credential="RN")
    out = caselog(store, "act", case_id, "determination", denial, token=nurse)
    assert out.returncode == 2 and "physician" in out.stderr
    assert store_state(store) == before
    out = caselog(store, "act", case_id, "determination", denial, token=token(store, "reviewer", "dr", credential="MD"))
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "denied"


def test_unknown_action_and_bad_usage_exit_2(store):
    assert caselog(store, "act", "x", "dance", "-", stdin="{}").returncode == 2
    assert caselog(store, "history").returncode == 2
    assert caselog(store, "no-such-command").returncode == 2


def test_every_command_explains_itself():
    commands = ("submit", "act", "show", "history", "verify", "demo", "serve", "token", "replay", "scheduler", "relay",
                "worker", "alive", "bench", "tail", "schema", "audit-report")
    asked = {cmd: subprocess.Popen([sys.executable, "-m", "infra.cli", cmd, "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for cmd in commands}  # all at once: each is a process start
    for cmd, proc in asked.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Usage" in out, (cmd, err)


def test_a_health_check_fails_without_a_heartbeat_and_refuses_an_unknown_component(store):
    dead = caselog(store, "alive", "worker")
    assert dead.returncode == 1 and "no heartbeat yet" in dead.stderr
    assert caselog(store, "alive", "dancer").returncode == 2
    assert caselog(store, "bench", "dancer").returncode == 2


def test_a_setting_caselog_cannot_use_exits_2_naming_the_variable(tmp_path):
    for variable, value in (("CASELOG_PROJECTIONS", "sometimes"), ("CASELOG_CLOCK", "sundial"), ("CASELOG_TOPIC_PARTITIONS", "six"),
                            ("CASELOG_CLOCK_START", "tuesday")):
        env = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path), "CASELOG_CLOCK": "manual", variable: value}
        env.pop("CASELOG_DATABASE_URL", None)
        out = subprocess.run([sys.executable, "-m", "infra.cli", "verify"], env=env, capture_output=True, text=True)
        assert out.returncode == 2 and variable in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_worker_refuses_to_start_without_kafka(store):
    out = caselog(store, "worker")
    assert out.returncode == 2 and "CASELOG_KAFKA_BOOTSTRAP" in out.stderr


def test_tampering_with_a_stored_event_makes_verify_exit_1_naming_the_case(tmp_path):
    from infra.settings import Settings

    settings = Settings(data_dir=tmp_path)
    ids = []
    for days in (10, 11):
        body = request(WELLSENSE, date_of_service=later(TODAY, days), documents=[])
        out = caselog(settings, "submit", write(tmp_path, f"r{days}.json", body), token=token(settings))
        ids.append(json.loads(out.stdout)["case_id"])
    assert caselog(settings, "verify").returncode == 0
    victim = ids[1].replace("-", "")
    with sqlite3.connect(tmp_path / "caselog.db") as conn:
        state = conn.execute("SELECT state FROM stored_events WHERE originator_id = ?", (victim,)).fetchone()[0]
        altered = bytes(state).replace(b"Rivera", b"Rivers")
        assert altered != bytes(state)
        conn.execute("UPDATE stored_events SET state = ? WHERE originator_id = ?", (altered, victim))
    out = caselog(settings, "verify")
    assert out.returncode == 1
    assert victim in out.stderr.replace("-", "") and "version 1" in out.stderr


def test_replay_rebuilds_projections_and_audit_report_lists_reads(store, tmp_path):
    from infra.identity import Principal

    body = request(WELLSENSE, date_of_service=later(TODAY, 10), documents=[])
    submitted = caselog(store, "submit", write(tmp_path, "r.json", body), token=token(store))
    case_id = json.loads(submitted.stdout)["case_id"]
    out = caselog(store, "replay")
    assert out.returncode == 0 and "rebuilt worklist" in out.stdout, out.stderr
    assert caselog(store, "replay", "--projection", "nope").returncode == 2
    s = bootstrap(store)
    try:
        s.access.record_read(Principal(role="auditor", sub="a-1"), "case", [case_id], TODAY)
        with s.db.transaction() as cur:
            assert cur.execute("SELECT COUNT(*) FROM worklist").fetchone()[0] == 1
    finally:
        s.close()
    report = caselog(store, "audit-report", "--case", case_id)
    assert report.returncode == 0
    assert json.loads(report.stdout)["reads"][0]["who"] == {"kind": "auditor", "id": "a-1"}
    assert caselog(store, "audit-report", "--case", "no-such-case").returncode == 2


def test_token_is_printed_alone_and_bad_roles_exit_2(tmp_path):
    from infra.settings import Settings

    settings = Settings(data_dir=tmp_path)
    out = caselog(settings, "token", "--role", "reviewer", "--sub", "dr", "--credential", "MD")
    assert out.returncode == 0 and out.stdout.count(".") == 2 and len(out.stdout.strip().split()) == 1
    assert caselog(settings, "token", "--role", "king", "--sub", "x").returncode == 2
    assert caselog(settings, "token", "--role", "provider", "--sub", "x", "--npi", "1234567890").returncode == 2


def test_a_document_named_by_its_id_takes_its_uploaded_name_and_an_unknown_id_exits_2(store, tmp_path):
    import io

    s = bootstrap(store)
    try:
        doc = s.documents.put("sleep-study.pdf", io.BytesIO(b"%PDF-1.4 study"),
                              uploader={"kind": "provider", "id": "dr-doe"}, at=TODAY.isoformat())
    finally:
        s.close()
    body = request(WELLSENSE, date_of_service=later(TODAY, 10), documents=[doc["document_id"]])
    out = caselog(store, "submit", write(tmp_path, "by-id.json", body), token=token(store))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["documents"][0] == {**doc, "media_type": "application/pdf"}
    before = store_state(store)
    unknown = request(WELLSENSE, date_of_service=later(TODAY, 10), documents=["0" * 64])
    out = caselog(store, "submit", write(tmp_path, "unknown.json", unknown), token=token(store))
    assert out.returncode == 2 and "documents[0]" in out.stderr and "POST /documents" in out.stderr, out.stderr
    assert store_state(store) == before
