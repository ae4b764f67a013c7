"""Authenticator: HS256 secrets, RS256/ES256 public keys, expiry, anonymous access."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pgsift.middleware.errors import AuthError, ConfigError
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.settings import Settings, load_settings

S3 = "a-test-secret-of-at-least-32-bytes"


def bearer(claims: dict[str, Any], key: Any, algorithm: str) -> str:
    """A token for `claims`, expiring in an hour unless `claims` say otherwise."""
    return "Bearer " + jwt.encode({"exp": EXP, **claims}, key, algorithm=algorithm)


EXP = int(time.time()) + 3600


def unsigned(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token put together by hand (as an attacker would): `sign(data) -> bytes`."""

    def part(value: Any) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    data = part(header) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(sign(data)).rstrip(b"=") if sign else b""
    return "Bearer " + (data + b"." + signature).decode()


def public_pem(private: Any) -> str:
    pem: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def test_hs256_secret() -> None:
    auth = Authenticator.from_settings(Settings(auth={"jwt_secret": S3}))
    assert auth.claims_from_authorization(bearer({"team_ids": [1]}, S3, "HS256")) == {
        "team_ids": [1], "exp": EXP
    }
    with pytest.raises(AuthError, match="invalid token"):
        auth.claims_from_authorization(bearer({"team_ids": [1]}, S3 + "-other", "HS256"))


@pytest.mark.parametrize(
    ("private", "algorithm"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
    ],
    ids=["RS256", "ES256"],
)
def test_public_keys(private: Any, algorithm: str) -> None:
    auth = Authenticator(public_key=public_pem(private))
    claims = auth.claims_from_authorization(bearer({"sub": "a"}, private, algorithm))
    assert claims == {"sub": "a", "exp": EXP}


def test_an_hs256_token_is_refused_by_a_public_key_gateway() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    auth = Authenticator(public_key=public_pem(private))
    with pytest.raises(AuthError):
        auth.claims_from_authorization(bearer({"sub": "a"}, S3, "HS256"))


def test_expired_and_malformed() -> None:
    auth = Authenticator(secret=S3)
    with pytest.raises(AuthError, match="expired"):
        auth.claims_from_authorization(bearer({"exp": int(time.time()) - 60}, S3, "HS256"))
    with pytest.raises(AuthError, match="Bearer"):
        auth.claims_from_authorization("Token abc")
    with pytest.raises(AuthError, match="missing"):
        auth.claims_from_authorization(None)


def test_anonymous_only_when_configured() -> None:
    auth = Authenticator(secret=S3, anonymous=True, anonymous_claims={"team_ids": []})
    assert auth.claims_from_authorization(None) == {"team_ids": []}
    flat = Authenticator.from_settings(Settings(auth_anonymous=True))
    assert flat.claims_from_authorization("") == {}
    with pytest.raises(AuthError, match="accepts no tokens"):
        flat.claims_from_authorization("Bearer x")


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Authenticator(secret=S3, public_key="k")
    with pytest.raises(ConfigError, match="RS256"):
        Authenticator(public_key="k", algorithms=("HS256",))
    with pytest.raises(ConfigError, match="unknown"):
        Authenticator.from_settings(Settings(auth={"jwt_secrett": S3}))


def test_a_token_without_exp_is_refused_unless_configured() -> None:
    no_exp = "Bearer " + jwt.encode({"team_ids": [1]}, S3, algorithm="HS256")
    auth = Authenticator.from_settings(Settings(auth={"jwt_secret": S3}))
    with pytest.raises(AuthError, match="exp"):
        auth.claims_from_authorization(no_exp)
    relaxed = Authenticator.from_settings(Settings(auth={"jwt_secret": S3, "require_exp": False}))
    assert relaxed.claims_from_authorization(no_exp) == {"team_ids": [1]}
    assert relaxed.expires_at({"team_ids": [1]}) is None
    assert auth.expires_at({"exp": 100}) == 100.0


def test_alg_none_is_refused() -> None:
    auth = Authenticator(secret=S3)
    forged = unsigned({"alg": "none", "typ": "JWT"}, {"team_ids": [1, 2, 3], "exp": EXP})
    with pytest.raises(AuthError, match="invalid token"):
        auth.claims_from_authorization(forged)


def test_key_confusion_is_refused() -> None:
    """RS256 configured; the attacker signs HS256 with the (public) PEM as the secret."""
    pem = public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    auth = Authenticator.from_settings(Settings(auth={"jwt_public_key": pem}))

    def sign(data: bytes) -> bytes:
        return hmac.new(pem.encode(), data, hashlib.sha256).digest()

    forged = unsigned({"alg": "HS256", "typ": "JWT"}, {"team_ids": [1], "exp": EXP}, sign)
    with pytest.raises(AuthError, match="invalid token"):
        auth.claims_from_authorization(forged)


@pytest.mark.parametrize(
    ("value", "anonymous"), [(False, False), ("false", False), ("no", False), (True, True)]
)
def test_auth_anonymous_is_a_real_boolean(value: Any, anonymous: bool) -> None:
    settings = Settings().replace(auth={"jwt_secret": S3, "anonymous": value})
    assert settings.auth["anonymous"] is anonymous
    assert Authenticator.from_settings(settings).anonymous is anonymous
    # Settings built directly (not loaded) are checked by the Authenticator.
    assert Authenticator.from_settings(Settings(auth={"anonymous": value})).anonymous is anonymous


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("anonymous", "maybe"),
        ("anonymous", 1),
        ("require_exp", "off-ish"),
        ("algorithms", "HS256"),
        ("algorithms", ["HS256", "none"]),
        ("algorithms", []),
        ("leeway_s", "5"),
        ("leeway_s", True),
        ("audience", 5),
        ("issuer", ["a"]),
        ("jwt_secret", 12345),
        ("anonymous_claims", "team_ids=1"),
    ],
)
def test_auth_values_are_type_checked(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"auth.{key}"):
        Settings().replace(auth={key: value})
    with pytest.raises(ConfigError, match=f"auth.{key}"):
        Authenticator.from_settings(Settings(auth={key: value}))


def test_auth_table_from_a_file(tmp_path: Path) -> None:
    config = tmp_path / "pgsift.toml"
    config.write_text(
        '[auth]\njwt_secret = "s"\nanonymous = "false"\nleeway_s = 2\nalgorithms = ["HS256"]\n'
    )
    settings = load_settings(config, environ={})
    assert dict(settings.auth) == {
        "jwt_secret": "s", "anonymous": False, "leeway_s": 2.0, "algorithms": ("HS256",)
    }
    config.write_text('[auth]\njwt_secret = "s"\nanonymus = true\nsecret = "x"\n')
    with pytest.raises(ConfigError, match="anonymus, secret"):
        load_settings(config, environ={})
