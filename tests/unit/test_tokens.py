"""Tokens: a jti in each, a positive lifetime no longer than the maximum (when minted and when
presented), and a signing secret of at least 32 bytes."""

from __future__ import annotations

import time

import jwt
import pytest

from infra.identity import MIN_SECRET_BYTES, load_secret, mint, token_id, verify
from infra.settings import SettingError, Settings

SECRET = "s" * 64  # long enough for HS512 too, which is refused


def test_every_token_has_its_own_id_and_the_default_lifetime():
    first, second = (mint(SECRET, role="ops", sub="me") for _ in range(2))
    claims = jwt.decode(first, SECRET, algorithms=["HS256"], issuer="caselog")
    assert claims["exp"] - claims["iat"] == 12 * 3600
    assert verify(SECRET, first).token_id == claims["jti"] != verify(SECRET, second).token_id
    assert token_id(SECRET, first) == (claims["jti"], claims["exp"])


@pytest.mark.parametrize("hours", [0, -1, 24.01, 1_000_000])
def test_a_lifetime_not_positive_or_over_the_maximum_is_refused(hours):
    with pytest.raises(ValueError):
        mint(SECRET, role="ops", sub="me", ttl_seconds=hours * 3600)


def test_a_token_is_refused_when_it_lives_longer_than_the_maximum_or_lacks_an_id():
    now = int(time.time())
    base = {"iss": "caselog", "role": "admin", "sub": "root", "iat": now, "jti": "j-1"}
    overlong = jwt.encode({**base, "exp": now + 48 * 3600}, SECRET, algorithm="HS256")
    with pytest.raises(jwt.InvalidTokenError, match="maximum"):
        verify(SECRET, overlong)
    assert verify(SECRET, overlong, max_ttl_seconds=48 * 3600).sub == "root"  # CASELOG_TOKEN_MAX_TTL_HOURS=48
    without_jti = {k: v for k, v in base.items() if k != "jti"}
    with pytest.raises(jwt.InvalidTokenError, match="jti"):
        verify(SECRET, jwt.encode({**without_jti, "exp": now + 60}, SECRET, algorithm="HS256"))
    with pytest.raises(jwt.InvalidTokenError):
        verify(SECRET, jwt.encode({**base, "exp": now + 60}, SECRET, algorithm="HS512"))


def test_the_secret_must_hold_32_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("CASELOG_SECRET", "x" * (MIN_SECRET_BYTES - 1))
    with pytest.raises(SettingError, match="CASELOG_SECRET") as info:
        load_secret(tmp_path)
    assert info.value.variable == "CASELOG_SECRET" and "31" in info.value.message
    monkeypatch.setenv("CASELOG_SECRET", "x" * MIN_SECRET_BYTES)
    assert load_secret(tmp_path) == "x" * MIN_SECRET_BYTES
    monkeypatch.delenv("CASELOG_SECRET")
    made = load_secret(tmp_path)  # made on first use: long enough, readable by its owner only
    assert len(made.encode()) >= MIN_SECRET_BYTES and (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
    (tmp_path / "secret.key").write_text("short")
    with pytest.raises(SettingError, match="secret.key"):
        load_secret(tmp_path)


def test_the_lifetimes_are_settings_and_the_default_is_within_the_maximum():
    assert (Settings.from_env({}).token_ttl_hours, Settings.from_env({}).token_max_ttl_hours) == (12, 24)
    settings = Settings.from_env({"CASELOG_TOKEN_TTL_HOURS": "1", "CASELOG_TOKEN_MAX_TTL_HOURS": "2"})
    assert (settings.token_ttl_hours, settings.token_max_ttl_hours) == (1, 2)
    assert Settings.from_env({"CASELOG_TOKEN_MAX_TTL_HOURS": "8"}).token_ttl_hours == 8  # the default, capped
    for env, variable in (({"CASELOG_TOKEN_TTL_HOURS": "30"}, "CASELOG_TOKEN_TTL_HOURS"),
                          ({"CASELOG_TOKEN_MAX_TTL_HOURS": "0"}, "CASELOG_TOKEN_MAX_TTL_HOURS"),
                          ({"CASELOG_TOKEN_TTL_HOURS": "-1"}, "CASELOG_TOKEN_TTL_HOURS"),
                          ({"CASELOG_TOKEN_TTL_HOURS": "soon"}, "CASELOG_TOKEN_TTL_HOURS")):
        with pytest.raises(SettingError) as info:
            Settings.from_env(env)
        assert info.value.variable == variable
