"""Who is asking: bearer tokens (HS256 JWT, PyJWT) signed with the deployment's secret, and the
principal a verified token names.

The secret lives in ``CASELOG_DATA_DIR/secret.key`` (created on first use by ``caselog serve``
or ``caselog token``) unless ``CASELOG_SECRET`` is set, so both point at the same one."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from infra.settings import usable_dir

ROLES = ("provider", "reviewer", "auditor", "ops", "admin")
ISSUER = "caselog"


def load_secret(data_dir: Path) -> str:
    env = os.environ.get("CASELOG_SECRET")
    if env:
        return env
    path = usable_dir(data_dir) / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True)
class Principal:
    role: str
    sub: str
    npis: frozenset[str] = field(default_factory=frozenset)
    credential: str | None = None
    email: str | None = None

    @property
    def actor(self) -> dict:
        actor = {"kind": self.role, "id": self.sub}
        if self.credential:
            actor["credential"] = self.credential
        return actor


def mint(secret: str, *, role: str, sub: str, npis: list[str] = (), credential: str | None = None, email: str | None = None,
         ttl_seconds: int = 12 * 3600) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims = {"iss": ISSUER, "role": role, "sub": sub, "npis": list(npis), "iat": now, "exp": now + ttl_seconds}
    if credential:
        claims["credential"] = credential.upper()
    if email:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: str, token: str) -> Principal:
    """Raises jwt.InvalidTokenError on a bad, expired or foreign token."""
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER, options={"require": ["exp", "sub", "iss"]})
    if claims.get("role") not in ROLES:
        raise jwt.InvalidTokenError("unknown role")
    return Principal(role=claims["role"], sub=str(claims["sub"]), npis=frozenset(map(str, claims.get("npis") or [])),
                     credential=claims.get("credential"), email=claims.get("email"))
