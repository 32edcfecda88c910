"""The CLI's writes act as a verified token, decided as HTTP decides: no token, a bad one, a
revoked one, a role or a provider the command is not for, each exits 2 with the reason on
stderr and records nothing; the actor recorded is the token's. Tokens have a bounded lifetime
and a secret of at least 32 bytes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid

import jwt

from infra.bootstrap import bootstrap
from infra.demo.samples import OTHER_PROVIDER_NPI, later, request
from infra.identity import load_secret, mint
from infra.settings import Settings
from tests.e2e.test_cli import TODAY, caselog, store_state, token, write
from tests.support import DME, MEDONC


def test_cli_writes_refuse_a_missing_bad_or_revoked_token_and_a_role_or_provider_they_are_not_for(store, tmp_path):
    body = request(MEDONC, date_of_service=later(TODAY, 10), documents=[])
    submitted = caselog(store, "submit", write(tmp_path, "r.json", body), token=token(store))
    case_id = json.loads(submitted.stdout)["case_id"]
    approval = write(tmp_path, "approve.json", {"outcome": "approved"})
    secret, now = load_secret(store.data_dir), int(time.time())
    expired = jwt.encode({"iss": "caselog", "jti": uuid.uuid4().hex, "role": "reviewer", "sub": "dr", "iat": now - 7200,
                          "exp": now - 3600, "credential": "MD"}, secret, algorithm="HS256")
    revoked = token(store, "reviewer", "dr-gone", credential="MD")
    out = caselog(store, "token", "revoke", revoked, "--reason", "left")
    assert out.returncode == 0 and out.stdout.startswith("revoked "), out.stderr
    refusals = {
        "no token": (None, "CASELOG_TOKEN"),
        "not a token": ("not-a-token", "invalid-token"),
        "expired": (expired, "expired"),
        "another deployment's": (mint("another deployment's secret of 48 bytes length!!", role="reviewer",
                                      sub="dr", credential="MD"), "invalid-token"),
        "revoked": (revoked, "token-revoked"),
        "a provider approving": (token(store), "forbidden"),  # the issue: --role provider --sub anyone approved
        "ops": (token(store, "ops", "ops-1"), "forbidden"),
        "an auditor": (token(store, "auditor", "audit-1"), "forbidden"),
    }
    system = bootstrap(store)
    try:
        upload = system.documents.put("their-notes.pdf", io.BytesIO(b"%PDF-1.4 theirs"),
                                      uploader={"kind": "provider", "id": "dr-roe"}, at=TODAY.isoformat())
    finally:
        system.close()
    before = store_state(store)
    for what, (given, reason) in refusals.items():
        out = caselog(store, "act", case_id, "determination", approval, token=given)
        assert out.returncode == 2 and reason in out.stderr and out.stdout == "", f"{what}: {out.stderr}"
    other = token(store, "provider", "dr-roe", npis=[OTHER_PROVIDER_NPI])
    out = caselog(store, "act", case_id, "withdrawal", "-", stdin='{"reason": "not mine"}', token=other)
    assert out.returncode == 2 and "no case" in out.stderr, out.stderr  # another provider's case is not revealed
    out = caselog(store, "act", case_id, "determination", approval, "--role", "reviewer", "--sub", "anyone")
    assert out.returncode == 2 and "--role" in out.stderr, out.stderr  # the unverified options are gone
    body = write(tmp_path, "theirs.json", request(DME, date_of_service=later(TODAY, 12)))
    reviewer = token(store, "reviewer", "dr")
    for given, reason in ((None, "CASELOG_TOKEN"), (other, "not-your-npi"), (reviewer, "forbidden")):
        out = caselog(store, "submit", body, token=given)
        assert out.returncode == 2 and reason in out.stderr, out.stderr
    for attached in (upload["document_id"], upload):  # by id or as the object: dr-roe's, not dr-doe's to attach
        clinical = write(tmp_path, "clinical.json", {"documents": [attached]})
        out = caselog(store, "act", case_id, "clinical", clinical, token=token(store))
        assert out.returncode == 2 and "document-not-yours" in out.stderr, out.stderr
    assert store_state(store) == before, "a refused command recorded something"

    md = token(store, "reviewer", "dr-okafor", credential="MD")
    out = caselog(store, "act", case_id, "determination", approval, token=md)
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "approved", out.stderr
    system = bootstrap(store)
    try:
        actor = system.app.history(case_id)["events"][-1]["actor"]
    finally:
        system.close()
    assert actor == {"kind": "reviewer", "id": "dr-okafor", "credential": "MD"}  # the token's, into the chain


def test_cli_tokens_live_at_most_the_maximum_and_need_a_long_enough_secret(tmp_path):
    settings = Settings(data_dir=tmp_path)

    def claims(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict | None]:
        full = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path), **env}
        out = subprocess.run([sys.executable, "-m", "infra.cli", "token", "--role", "ops", "--sub", "me", *args],
                             env=full, capture_output=True, text=True, timeout=60)
        decoded = jwt.decode(out.stdout.strip(), options={"verify_signature": False}) if out.returncode == 0 else None
        return out, decoded

    out, made = claims()
    assert made["exp"] - made["iat"] == 12 * 3600 and made["jti"] and made["jti"] in out.stderr
    for hours in ("1000000", "24.5", "0", "-1"):
        out, _ = claims("--ttl-hours", hours)
        assert out.returncode == 2 and "--ttl-hours" in out.stderr and out.stdout == "", (hours, out.stderr)
    out, made = claims("--ttl-hours", "36", CASELOG_TOKEN_MAX_TTL_HOURS="48")
    assert made["exp"] - made["iat"] == 36 * 3600
    out, made = claims(CASELOG_TOKEN_TTL_HOURS="2")
    assert made["exp"] - made["iat"] == 2 * 3600
    out, _ = claims(CASELOG_SECRET="too-short-a-secret")
    assert out.returncode == 2 and "CASELOG_SECRET" in out.stderr and "32 bytes" in out.stderr and out.stdout == ""
    out = caselog(settings, "show", str(uuid.uuid4()), token="x.y.z")
    assert out.returncode == 2 and "invalid-token" in out.stderr
