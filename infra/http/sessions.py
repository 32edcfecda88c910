"""Browser sessions for the dashboard, so no token travels in a URL.

``POST /session`` exchanges a bearer token for a server-side session: a random id, kept in the
store only as its SHA-256 with the token's principal and an expiry, and handed to the browser as a
cookie (``caselog_session``) signed with the deployment's secret, ``HttpOnly``, ``SameSite=Strict``,
``Path=/``, ``Secure`` over HTTPS. The session lives ``CASELOG_SESSION_SECONDS`` (default one hour)
and never past the token's own expiry. ``DELETE /session`` deletes it server-side, so a copied
cookie is worthless after sign-out. The cookie is a credential for the dashboard's pages only;
the JSON API takes bearer tokens alone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import jwt
import orjson

from infra.identity import Principal, verify

COOKIE = "caselog_session"
DEFAULT_SECONDS = 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SessionStore:
    def __init__(self, db, secret: str, seconds: int = DEFAULT_SECONDS, accept=None):
        self.db = db
        self.secret = secret
        # how a token is accepted (signature, lifetime, revocation); by default its signature and expiry
        self.accept = accept or (lambda token: verify(self.secret, token))
        self.key = hashlib.sha256(b"caselog-session-cookie:" + secret.encode()).digest()
        self.seconds = seconds
        with db.schema() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS caselog_sessions (id TEXT PRIMARY KEY, role TEXT NOT NULL,"
                " sub TEXT NOT NULL,"
                " npis TEXT NOT NULL, credential TEXT, email TEXT, created_at BIGINT NOT NULL,"
                " expires_at BIGINT NOT NULL)"
            )

    def _sign(self, sid: str) -> str:
        return _b64(hmac.new(self.key, sid.encode(), hashlib.sha256).digest()[:18])

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def open(self, token: str) -> tuple[str, Principal, int]:
        """(cookie value, principal, expiry as epoch seconds) for a valid token; raises
        jwt.InvalidTokenError for a bad, foreign or expired one."""
        who = self.accept(token)
        exp = int(jwt.decode(token, options={"verify_signature": False})["exp"])
        now = int(time.time())
        expires = min(exp, now + self.seconds)
        if expires <= now:
            raise jwt.ExpiredSignatureError("the token has expired")
        sid = _b64(secrets.token_bytes(32))
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM caselog_sessions WHERE expires_at <= ?", (now,))
            cur.execute(
                "INSERT INTO caselog_sessions (id, role, sub, npis, credential, email, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._key(sid),
                    who.role,
                    who.sub,
                    orjson.dumps(sorted(who.npis)).decode(),
                    who.credential,
                    who.email,
                    now,
                    expires,
                ),
            )
        return f"{sid}.{self._sign(sid)}", who, expires

    def _sid(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 200 or "." not in cookie:
            return None
        sid, _, sig = cookie.partition(".")
        return sid if hmac.compare_digest(sig, self._sign(sid)) else None

    def principal(self, cookie: str | None) -> tuple[Principal, int] | None:
        """The principal of a live session and its expiry, or None (no cookie, forged, ended, expired)."""
        sid = self._sid(cookie)
        if sid is None:
            return None
        with self.db.transaction() as cur:
            row = cur.execute(
                "SELECT role, sub, npis, credential, email, expires_at FROM caselog_sessions WHERE id = ?",
                (self._key(sid),),
            ).fetchone()
        if row is None or int(row[5]) <= time.time():
            return None
        who = Principal(role=row[0], sub=row[1], npis=frozenset(orjson.loads(row[2])), credential=row[3], email=row[4])
        return who, int(row[5])

    def close(self, cookie: str | None) -> bool:
        sid = self._sid(cookie)
        if sid is None:
            return False
        with self.db.transaction() as cur:
            return cur.execute("DELETE FROM caselog_sessions WHERE id = ?", (self._key(sid),)).rowcount > 0
