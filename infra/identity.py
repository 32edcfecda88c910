"""Who is asking: bearer tokens (HS256 JWT, PyJWT) signed with the deployment's secret, and the
principal a verified token names.

The secret lives in ``CASELOG_DATA_DIR/secret.key`` (created on first use by ``caselog serve``
or ``caselog token``) unless ``CASELOG_SECRET`` is set, so both point at the same one. Either
way it holds at least 32 bytes (HS256's key is a SHA-256 block's worth of guessing away).

Every token carries a ``jti`` (its id, for revocation: ``caselog token revoke``), ``iat`` and
``exp``; its lifetime is positive and at most ``CASELOG_TOKEN_MAX_TTL_HOURS``, checked when it
is minted and again when it is presented (a lowered maximum retires longer-lived tokens)."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from infra.settings import Settings, SettingError, usable_dir

ROLES = ("provider", "reviewer", "auditor", "ops", "admin")
ISSUER = "caselog"
MIN_SECRET_BYTES = 32
DEFAULT_TTL_SECONDS = int(Settings.token_ttl_hours * 3600)
MAX_TTL_SECONDS = int(Settings.token_max_ttl_hours * 3600)


def load_secret(data_dir: Path) -> str:
    """The signing secret: ``CASELOG_SECRET``, else ``secret.key`` in the data dir (made on first
    use, 64 characters). One shorter than 32 bytes is refused (SettingError naming the variable)."""
    env = os.environ.get("CASELOG_SECRET")
    if env:
        if len(env.encode()) < MIN_SECRET_BYTES:
            raise SettingError("CASELOG_SECRET", f"at least {MIN_SECRET_BYTES} bytes, this one has"
                               f" {len(env.encode())} (e.g. openssl rand -base64 48)")
        return env
    path = usable_dir(data_dir) / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SettingError("CASELOG_SECRET", f"unset, and {path} holds {len(secret.encode())} bytes, fewer than"
                           f" {MIN_SECRET_BYTES}: set CASELOG_SECRET, or remove the file to have a new one made")
    return secret


@dataclass(frozen=True)
class Principal:
    role: str
    sub: str
    npis: frozenset[str] = field(default_factory=frozenset)
    credential: str | None = None
    email: str | None = None
    token_id: str | None = None  # the token's jti (None for a principal made in process)
    expires_at: int | None = None  # the token's exp (seconds since the epoch)

    @property
    def actor(self) -> dict:
        actor = {"kind": self.role, "id": self.sub}
        if self.credential:
            actor["credential"] = self.credential
        return actor


def check_lifetime(ttl_seconds: float, max_ttl_seconds: float = MAX_TTL_SECONDS) -> int:
    """A token lifetime in whole seconds, or ValueError saying why not (not positive, over the maximum)."""
    if not ttl_seconds > 0:
        raise ValueError("a token's lifetime must be positive")
    if ttl_seconds > max_ttl_seconds:
        raise ValueError(f"a token lives at most {max_ttl_seconds / 3600:g} hours (CASELOG_TOKEN_MAX_TTL_HOURS)")
    return max(1, int(ttl_seconds))


def mint(secret: str, *, role: str, sub: str, npis: list[str] = (), credential: str | None = None, email: str | None = None,
         ttl_seconds: float = DEFAULT_TTL_SECONDS, max_ttl_seconds: float = MAX_TTL_SECONDS) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    ttl = check_lifetime(ttl_seconds, max_ttl_seconds)
    now = int(time.time())
    claims = {"iss": ISSUER, "jti": uuid.uuid4().hex, "role": role, "sub": sub, "npis": list(npis), "iat": now,
              "exp": now + ttl}
    if credential:
        claims["credential"] = credential.upper()
    if email:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: str, token: str, *, max_ttl_seconds: float = MAX_TTL_SECONDS) -> Principal:
    """Raises jwt.InvalidTokenError on a bad, expired, foreign or too long-lived token. Whether
    it was revoked is the store's to say (infra.store.access)."""
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER,
                        options={"require": ["exp", "iat", "jti", "sub", "iss"]})
    if claims.get("role") not in ROLES:
        raise jwt.InvalidTokenError("unknown role")
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise jwt.InvalidTokenError("no token id (jti)")
    if not isinstance(claims["iat"], int) or not isinstance(claims["exp"], int) or claims["exp"] <= claims["iat"]:
        raise jwt.InvalidTokenError("iat and exp must be whole seconds, exp after iat")
    if claims["exp"] - claims["iat"] > max_ttl_seconds:
        raise jwt.InvalidTokenError(f"lives longer than the maximum ({max_ttl_seconds / 3600:g} hours)")
    return Principal(role=claims["role"], sub=str(claims["sub"]), npis=frozenset(map(str, claims.get("npis") or [])),
                     credential=claims.get("credential"), email=claims.get("email"), token_id=claims["jti"],
                     expires_at=claims["exp"])


def token_id(secret: str, token: str) -> tuple[str, int]:
    """The (jti, exp) of a token signed with ``secret``, expired or not: what revoking it needs."""
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER,
                        options={"verify_exp": False, "require": ["exp", "jti"]})
    return str(claims["jti"]), int(claims["exp"])
