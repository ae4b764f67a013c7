"""Authenticator: HS256 secrets, RS256/ES256 public keys, expiry, anonymous access."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pgsift.middleware.errors import AuthError, ConfigError
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.settings import Settings

S3 = "a-test-secret-of-at-least-32-bytes"


def bearer(claims: dict[str, Any], key: Any, algorithm: str) -> str:
    return "Bearer " + jwt.encode(claims, key, algorithm=algorithm)


def public_pem(private: Any) -> str:
    pem: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def test_hs256_secret() -> None:
    auth = Authenticator.from_settings(Settings(auth={"jwt_secret": S3}))
    assert auth.claims_from_authorization(bearer({"team_ids": [1]}, S3, "HS256")) == {
        "team_ids": [1]
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
    assert auth.claims_from_authorization(bearer({"sub": "a"}, private, algorithm)) == {"sub": "a"}


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
