"""An HTTP client on the real ASGI app, with tokens minted from the deployment's secret; every
answer it gets is checked against the operation's documented answer in /openapi.json (status,
media type, and the body against its schema, formats included)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import httpx
import jsonschema
from fastapi.testclient import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from infra.identity import load_secret, mint
from infra.demo.samples import OTHER_PROVIDER_NPI, PROVIDER_NPI


@dataclass
class Api:
    client: TestClient
    system: object
    tokens: dict

    def as_(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, path: str, body: dict | None = None, who: str = "provider", **headers) -> object:
        return self.client.post(path, json=body if body is not None else {}, headers={**self.as_(who), **headers})

    def get(self, path: str, who: str = "provider", **params) -> object:
        return self.client.get(path, params=params, headers=self.as_(who))

    def upload(self, name: str = "notes.pdf", content: bytes = b"%PDF-1.4 clinical notes", who: str = "provider") -> dict:
        r = self.client.post("/documents", files={"file": (name, io.BytesIO(content), "application/pdf")}, headers=self.as_(who))
        assert r.status_code == 201, r.text
        return r.json()


class DocumentedAnswers:
    """Checks each answer against the OpenAPI document of the app that gave it."""

    ROOT = "urn:caselog:openapi"

    def __init__(self, doc: dict):
        self.doc = doc
        self.registry = Registry().with_resource(self.ROOT, Resource(contents=doc, specification=DRAFT202012))
        self.operations = [(re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$"), path, ops)
                           for path, ops in doc["paths"].items()]

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        method, path = request.method.lower(), request.url.path
        found = [(template, ops[method]) for pattern, template, ops in self.operations
                 if method in ops and pattern.match(path)]
        if not found:
            return  # not an operation of the document: the docs pages and their assets, an unknown path
        template, operation = min(found, key=lambda f: f[0].count("{"))  # /worklist/access before /{...}
        response.read()
        where = f"{request.method} {path} -> {response.status_code}"
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{where}: status not documented ({sorted(operation['responses'])})"
        media = response.headers.get("content-type", "").split(";")[0].strip()
        content = documented.get("content")
        if not content:
            assert not response.content, f"{where}: a body where none is documented"
            return
        assert media in content, f"{where}: {media} not documented ({sorted(content)})"
        if media.endswith("json"):
            pointer = "/".join(p.replace("~", "~0").replace("/", "~1") for p in
                               ("paths", template, method, "responses", str(response.status_code), "content", media,
                                "schema"))
            validator = jsonschema.Draft202012Validator({"$ref": f"{self.ROOT}#/{pointer}"}, registry=self.registry,
                                                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                      for e in validator.iter_errors(response.json())]
            assert not errors, f"{where}: the answer is not as documented: {errors[:5]}"


def make_api(system) -> Api:
    from infra.http.app import create_app

    secret = load_secret(system.settings.data_dir)
    tokens = {
        "provider": mint(secret, role="provider", sub="dr-doe", npis=[PROVIDER_NPI]),
        "other_provider": mint(secret, role="provider", sub="dr-roe", npis=[OTHER_PROVIDER_NPI]),
        "md": mint(secret, role="reviewer", sub="dr-okafor", credential="MD"),
        "rn": mint(secret, role="reviewer", sub="nurse-lee", credential="RN"),
        "auditor": mint(secret, role="auditor", sub="audit-1"),
        "ops": mint(secret, role="ops", sub="ops-1"),
        "admin": mint(secret, role="admin", sub="root"),
    }
    app = create_app(system)
    client = TestClient(app)
    client.event_hooks = {"request": [], "response": [documented_answers(app)]}
    return Api(client, system, tokens)


_documents: dict[tuple, DocumentedAnswers] = {}


def _operations(routes, prefix: str = ""):
    for r in routes:
        included = getattr(r, "original_router", None)  # FastAPI's record of an include_router
        if included is not None:
            yield from _operations(included.routes, prefix + (getattr(r.include_context, "prefix", "") or ""))
        else:
            yield type(r).__name__, prefix + (getattr(r, "path", "") or ""), tuple(sorted(getattr(r, "methods", None) or ()))


def documented_answers(app) -> DocumentedAnswers:
    """The checker for this app's document, built once per set of operations: the document is a
    function of the routes and their models (code, not data), and generating it costs ~0.3 s, more
    than most tests that use it (tests/e2e/test_http_contracts.py checks the served document itself)."""
    operations = tuple(_operations(app.routes))
    if operations not in _documents:
        _documents[operations] = DocumentedAnswers(app.openapi())
    return _documents[operations]
