"""Verifying the caller's JWT and turning it into the claims that policies read.

Configured in `[auth]` of pgsift.toml (or the flat `auth_*` settings, which win):
`jwt_secret` for HS256, or `jwt_public_key` (PEM text) / `jwt_public_key_file` for
RS256/ES256; optional `audience`, `issuer`, `leeway_s`; `anonymous = true` lets
callers without a token in, with `anonymous_claims` (default `{}`) as their claims.
Tokens must carry `exp` unless `require_exp = false`; a websocket connection is
closed (4403) when its token expires. `pgsift.middleware.settings.check_auth_table`
checks the table's value types.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from pgsift.middleware.errors import AuthError, ConfigError
from pgsift.middleware.settings import Settings, check_auth_table

SYMMETRIC_ALGORITHMS = ("HS256",)
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
BEARER = "bearer "


class Authenticator:
    """Checks `Authorization: Bearer <jwt>` values; one per gateway process."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        algorithms: tuple[str, ...] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 0.0,
        anonymous: bool = False,
        anonymous_claims: Mapping[str, Any] | None = None,
        require_exp: bool = True,
    ) -> None:
        if secret and public_key:
            raise ConfigError("auth: set either jwt_secret or jwt_public_key, not both")
        self._key: str | None = secret or public_key
        allowed = SYMMETRIC_ALGORITHMS if secret else ASYMMETRIC_ALGORITHMS
        chosen = algorithms or allowed
        wrong = sorted(set(chosen) - set(allowed))
        if wrong:
            raise ConfigError(
                f"auth: algorithm(s) {', '.join(wrong)} do not fit a "
                f"{'secret' if secret else 'public key'}; use {', '.join(allowed)}"
            )
        self._algorithms = list(chosen)
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_s
        self.anonymous = anonymous
        self._anonymous_claims = dict(anonymous_claims or {})
        self._require_exp = require_exp

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        config: dict[str, Any] = check_auth_table(settings.auth)
        flat = {
            "jwt_secret": settings.auth_jwt_secret,
            "jwt_public_key": settings.auth_jwt_public_key,
            "anonymous": settings.auth_anonymous,
        }
        config.update({k: v for k, v in flat.items() if v not in (None, False)})
        public_key = config.get("jwt_public_key")
        if config.get("jwt_public_key_file"):
            path = Path(str(config["jwt_public_key_file"]))
            try:
                public_key = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"auth: cannot read jwt_public_key_file {path}: {exc}") from exc
        algorithms = config.get("algorithms")
        claims = config.get("anonymous_claims")
        return cls(
            secret=config.get("jwt_secret"),
            public_key=public_key,
            algorithms=tuple(algorithms) if algorithms else None,
            audience=config.get("audience"),
            issuer=config.get("issuer"),
            leeway_s=float(config.get("leeway_s", 0.0)),
            anonymous=bool(config.get("anonymous", False)),
            anonymous_claims=claims,
            require_exp=bool(config.get("require_exp", True)),
        )

    def expires_at(self, claims: Mapping[str, Any]) -> float | None:
        """Unix time after which `claims` (verified) are no longer valid; None: never."""
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            return None
        return float(exp) + self._leeway

    def claims_from_authorization(self, header: str | None) -> dict[str, Any]:
        """The verified claims of `Bearer <jwt>`, or the anonymous claims; else AuthError."""
        if header is None or not header.strip():
            if self.anonymous:
                return dict(self._anonymous_claims)
            raise AuthError("missing token: send Authorization: Bearer <jwt>")
        if not header.lower().startswith(BEARER):
            raise AuthError("malformed Authorization: expected 'Bearer <jwt>'")
        token = header[len(BEARER):].strip()
        if self._key is None:
            raise AuthError("this gateway accepts no tokens (no jwt_secret or jwt_public_key)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp"]} if self._require_exp else None,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return claims
