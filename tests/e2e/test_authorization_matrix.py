"""Every route of the HTTP API against every identity, allowed or denied as the table below (the
README's "Who may do what") says: an unexpected allow fails, and so does an unexpected deny.

Allowed: any answer but a denial (2xx, or a 4xx of the business: 409, 422, a 404 that is not the
case's). Denied: 401, 403, or 404 `case-not-found` (another provider's case is not revealed). A
denial records nothing: no event, no registry row, no read in the audit. One system per store."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

import jwt

from infra.demo.samples import OTHER_PROVIDER_NPI, PROVIDER_NPI, later, request
from infra.identity import load_secret, mint
from tests.e2e.http_support import make_api
from tests.support import DME, recorded

# ---- who asks ----------------------------------------------------------------------------------

PEOPLE = ("own", "other", "shared", "md", "rn", "auditor", "ops", "admin")
BAD_TOKENS = ("none", "expired", "wrong-secret", "tampered", "alg-none", "revoked", "overlong")
EVERYONE = BAD_TOKENS + PEOPLE  # the bad ones first: they change nothing


def identities(api) -> dict[str, str | None]:
    """Each identity's bearer token (None: no Authorization header)."""
    secret = load_secret(api.system.settings.data_dir)
    now = int(time.time())

    def claims(**kw) -> dict:
        return {"iss": "caselog", "jti": uuid.uuid4().hex, "role": "admin", "sub": "root", "npis": [],
                "iat": now, "exp": now + 3600, **kw}

    def unsigned(payload: dict) -> str:
        part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."

    own = mint(secret, role="provider", sub="dr-doe", npis=[PROVIDER_NPI])
    header, _, signature = own.split(".")
    tampered_claims = {**jwt.decode(own, options={"verify_signature": False}), "role": "admin"}
    tampered = f"{header}.{unsigned(tampered_claims).split('.')[1]}.{signature}"  # claims changed, signature kept
    revoked = mint(secret, role="admin", sub="root")
    revoked_claims = jwt.decode(revoked, secret, algorithms=["HS256"], issuer="caselog")
    api.system.access.revoke_token(revoked_claims["jti"], revoked_claims["exp"], api.system.clock.now(), "left")
    return {
        "none": None,
        "expired": jwt.encode(claims(iat=now - 7200, exp=now - 3600), secret, algorithm="HS256"),
        "wrong-secret": mint("another deployment's secret, 48 bytes long....", role="admin", sub="root"),
        "tampered": tampered,
        "alg-none": unsigned(claims()),
        "revoked": revoked,
        "overlong": jwt.encode(claims(exp=now + 30 * 24 * 3600), secret, algorithm="HS256"),  # over the 24 h maximum
        "own": own,
        "other": mint(secret, role="provider", sub="dr-roe", npis=[OTHER_PROVIDER_NPI]),
        "shared": mint(secret, role="provider", sub="office-kim"),  # no NPI: dr-doe shares its worklist with it
        "md": mint(secret, role="reviewer", sub="dr-okafor", credential="MD"),
        "rn": mint(secret, role="reviewer", sub="nurse-lee", credential="RN"),
        "auditor": mint(secret, role="auditor", sub="audit-1"),
        "ops": mint(secret, role="ops", sub="ops-1"),
        "admin": mint(secret, role="admin", sub="root"),
    }


# ---- the table ---------------------------------------------------------------------------------
# (method, path as the app declares it, body, who is allowed). "public": everyone, even without a
# token. A provider's writes on a case need it to be theirs (own NPI, or shared with them).

PROVIDERS = "own shared admin"  # on dr-doe's case: dr-doe and the user it shares its worklist with
REVIEWERS = "md rn admin"
EITHER = "own shared md rn admin"
READERS = "own shared md rn auditor admin"  # member data of dr-doe's case
SEARCHERS = "own other shared md rn auditor admin"  # member data, each provider its own rows
SLOT = "2026-03-20T15:00:00Z"
CONTACT = {"name": "Dr. Jane Doe", "phone": "555-555-0100"}

TABLE: list[tuple[str, str, object, str]] = [
    ("GET", "/healthz", None, "public"),
    ("GET", "/readyz", None, "public"),
    ("POST", "/session", "session", "md rn ops auditor admin"),  # the token travels in the body
    ("DELETE", "/session", None, "public"),  # signing out needs no credential
    ("GET", "/metrics", None, "public"),
    ("POST", "/documents", "upload", "own other shared md rn admin"),
    ("POST", "/cases", "request", "own admin"),  # for dr-doe's NPI: a provider submits for its own NPIs
    ("POST", "/drafts", {"policy": DME, "line_of_business": "commercial"}, "own other shared admin"),
    ("POST", "/cases/{case_id}/submit", "request", "own shared admin"),  # dr-doe's draft
    ("POST", "/cases/{case_id}/holds", {"requested_items": ["sleep study"]}, REVIEWERS),
    ("POST", "/cases/{case_id}/clinical", {"notes": "attached"}, EITHER),
    ("POST", "/cases/{case_id}/p2p", {"level": "pre_decision", "slot": SLOT, "reviewer": "Dr. Okafor",
                                      "contact": CONTACT}, EITHER),
    ("POST", "/cases/{case_id}/p2p/{p2p_id}/reschedule", {"slot": SLOT}, EITHER),
    ("POST", "/cases/{case_id}/p2p/{p2p_id}/cancel", {"reason": "conflict"}, EITHER),
    ("POST", "/cases/{case_id}/p2p/{p2p_id}/complete", {"outcome": "discussed"}, REVIEWERS),
    ("POST", "/cases/{case_id}/pre-denial-notice", {"channel": "phone"}, REVIEWERS),
    ("POST", "/cases/{case_id}/extension-of-timeframe", {"reason": "missing-information", "days": 14}, REVIEWERS),
    ("POST", "/cases/{case_id}/determination", {"outcome": "approved"}, REVIEWERS),
    ("POST", "/cases/{case_id}/alternative/accept", None, PROVIDERS),
    ("POST", "/cases/{case_id}/reconsideration", {"reason": "new study"}, PROVIDERS),
    ("POST", "/cases/{case_id}/reconsideration/decision", {"outcome": "approved"}, REVIEWERS),
    ("POST", "/cases/{case_id}/appeals", {"reason": "disagree"}, PROVIDERS),
    ("POST", "/cases/{case_id}/appeals/{level}/decision", {"outcome": "overturned"}, REVIEWERS),
    ("POST", "/cases/{case_id}/authorization/updates", {"kind": "contact", "changes": {"phone": "555-555-0199"}},
     PROVIDERS),
    ("POST", "/cases/{case_id}/authorization/extension", {"valid_to": "2027-03-01"}, PROVIDERS),
    ("POST", "/cases/{case_id}/withdrawal", {"reason": "no longer needed"}, EITHER),
    ("POST", "/cases/{case_id}/cancel", {"reason": "duplicate"}, EITHER),
    ("GET", "/cases/{case_id}", None, READERS),
    ("GET", "/cases/{case_id}/history", None, READERS),
    ("GET", "/worklist", None, SEARCHERS),
    ("POST", "/worklist/access", {"user_id": "office-lee", "email": "lee@example.org"}, "own other shared admin"),
    ("DELETE", "/worklist/access/{user_id}", None, "own other shared admin"),
    ("GET", "/worklist/access", None, "own other shared admin"),
    ("GET", "/certification-summary", None, SEARCHERS),
    ("GET", "/authorizations/lookup", None, SEARCHERS),
    ("GET", "/requirements", None, " ".join(PEOPLE)),
    ("GET", "/queues/review", None, "md rn ops auditor admin"),
    ("GET", "/metrics/prior-authorization", None, "md rn ops auditor admin"),
    ("POST", "/admin/clock", {"advance": "PT1M"}, "admin"),
    ("GET", "/seals/latest", None, "auditor admin"),
    ("GET", "/dashboard", None, "md rn ops auditor admin"),
]


def allowed_set(who: str) -> set[str]:
    return set(EVERYONE) if who == "public" else set(who.split())


# ---- the test ----------------------------------------------------------------------------------


def audited(system) -> int:
    return len(system.access.reads())


def test_every_route_allows_exactly_the_identities_of_the_table(system):
    api = make_api(system)
    tokens = identities(api)
    api.client.post("/worklist/access", json={"user_id": "office-kim", "email": "kim@example.org"},
                    headers={"Authorization": f"Bearer {tokens['own']}"}).raise_for_status()
    as_own = {"Authorization": f"Bearer {tokens['own']}"}
    body = request(DME, date_of_service=later(system.clock.now(), 10), documents=[])
    case_id = api.client.post("/cases", json=body, headers=as_own).json()["case_id"]
    draft = {"policy": DME, "line_of_business": "commercial"}
    draft_id = api.client.post("/drafts", json=draft, headers=as_own).json()["case_id"]
    number = system.app.view(case_id)["case_number"]
    queries = {"/requirements": {"policy": DME, "place_of_service": "12", "date_of_service": "2026-04-01"},
               "/authorizations/lookup": {"authorization_number": f"A{number}", "npi": PROVIDER_NPI},
               "/worklist": {"q": "Rivera"}}

    declared = {(method.upper(), path) for path, operations in api.client.app.openapi()["paths"].items()
                for method in operations}
    tabled = {(method, path) for method, path, _, _ in TABLE}
    assert declared == tabled, f"routes not in the table: {declared - tabled}; in the table only: {tabled - declared}"

    def call(method: str, template: str, payload: object, token: str | None):
        path = template.format(case_id=draft_id if template.endswith("/submit") else case_id,
                               p2p_id="p2p-unknown", level=1, user_id="nobody")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if payload == "upload":
            files = {"file": ("notes.pdf", io.BytesIO(b"%PDF-1.4 notes"), "application/pdf")}
            return api.client.post(path, files=files, headers=headers)
        if payload == "session":
            return api.client.post(path, json={"token": token or "no-token"})
        if payload == "request":
            payload = request(DME, date_of_service=later(system.clock.now(), 12), documents=[])
        return api.client.request(method, path, params=queries.get(path), headers=headers,
                                  json=payload if method == "POST" else None)

    unexpected = []
    for method, template, payload, who in TABLE:
        allowed = allowed_set(who)
        for identity in EVERYONE:
            before = (recorded(system), audited(system))
            r = call(method, template, payload, tokens[identity])
            kind = r.json().get("type", "") if r.headers.get("content-type", "").endswith("json") else ""
            denied = r.status_code in (401, 403) or (r.status_code == 404 and kind.endswith("/case-not-found"))
            assert r.status_code < 500, f"{method} {template} as {identity}: {r.status_code} {r.text}"
            if denied == (identity in allowed):
                said = f"{method} {template} as {identity}: {r.status_code} {r.text[:150]}"
                unexpected.append(f"unexpected {'deny' if denied else 'allow'}: {said}")
            if denied:
                assert (recorded(system), audited(system)) == before, f"{method} {template} as {identity} recorded"
                if identity in BAD_TOKENS:
                    assert r.status_code == 401, f"{method} {template} as {identity}: {r.status_code}"
    assert not unexpected, "\n".join(unexpected)


def test_a_token_revoked_is_refused_from_then_on_and_an_overlong_one_always(system):
    api = make_api(system)
    assert api.client.get("/queues/review", headers=api.as_("admin")).status_code == 200
    claims = jwt.decode(api.tokens["admin"], options={"verify_signature": False})
    assert system.access.revoke_token(claims["jti"], claims["exp"], system.clock.now(), "laptop lost")
    assert not system.access.revoke_token(claims["jti"], claims["exp"], system.clock.now())  # already
    r = api.client.get("/queues/review", headers=api.as_("admin"))
    assert r.status_code == 401 and r.json()["type"].endswith("/token-revoked") and r.headers["WWW-Authenticate"]
    assert api.client.get("/queues/review", headers=api.as_("md")).status_code == 200  # only that token
    r = api.client.get("/queues/review", headers={"Authorization": f"Bearer {identities(api)['overlong']}"})
    assert r.status_code == 401 and "maximum" in r.json()["detail"], r.text
