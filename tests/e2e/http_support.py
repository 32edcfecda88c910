"""An HTTP client on the real ASGI app, with tokens minted from the deployment's secret."""

from __future__ import annotations

import io
from dataclasses import dataclass

from fastapi.testclient import TestClient

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
    return Api(TestClient(create_app(system)), system, tokens)
