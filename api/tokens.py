"""Minting JWTs the server accepts, for `collab token`, the token `collab serve` prints, and tests.

Minting lives here rather than in the CLI so tests sign tokens with exactly the claims, algorithm,
issuer and audience the server checks (docs/protocol.md, "Connecting").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from api.jwt_secret import resolve_jwt_secret
from api.settings import Settings

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
DEFAULT_ROLES: tuple[str, ...] = ("editor",)

_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TTL_PATTERN = re.compile(r"\s*(\d+)\s*([smhd]?)\s*", re.IGNORECASE)


class TokenConfigError(ValueError):
    """The settings do not allow minting a token here (e.g. an asymmetric algorithm, no private key)."""


def parse_ttl(text: str) -> timedelta:
    """`30s`, `15m`, `1h`, `7d` or a bare number of seconds; must be positive."""
    match = _TTL_PATTERN.fullmatch(text)
    if not match:
        raise ValueError(f"invalid TTL {text!r}: use e.g. 30s, 15m, 1h, 7d or a number of seconds")
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"invalid TTL {text!r}: must be positive")
    return timedelta(seconds=seconds)


def signing_algorithm(settings: Settings) -> str:
    """The algorithm tokens are signed with: the first accepted one, which must be HMAC.

    The server only holds a shared secret, so it can mint tokens for HS* only; with RS*/ES* the
    tokens come from the identity provider that holds the private key.
    """
    algorithm = settings.jwt_algorithms[0]
    if algorithm not in HMAC_ALGORITHMS:
        raise TokenConfigError(
            f"cannot mint tokens with {algorithm!r}: the first of JWT_ALGORITHMS must be one of "
            f"{', '.join(sorted(HMAC_ALGORITHMS))}; tokens for other algorithms come from the identity "
            "provider that holds the private key"
        )
    return algorithm


def mint_token(
    settings: Settings,
    *,
    sub: str,
    username: str | None = None,
    email: str | None = None,
    roles: Sequence[str] | None = None,
    rooms: Sequence[str] | None = None,
    ttl: timedelta = timedelta(hours=1),
    secret: str | None = None,
    now: datetime | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT for `sub` that this server's settings accept.

    `secret` defaults to the resolved JWT secret (see `api.jwt_secret`). `rooms` is omitted from the
    claims when None, which means "any room". `now` and a negative `ttl` let tests mint expired
    tokens; `extra_claims` override or add claims last.
    """
    if not sub:
        raise ValueError("sub must be a non-empty user id")
    algorithm = signing_algorithm(settings)
    key = secret if secret is not None else resolve_jwt_secret(settings)
    issued_at = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": list(roles) if roles is not None else list(DEFAULT_ROLES),
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + ttl).timestamp()),
    }
    if username is not None:
        claims["username"] = username
    if email is not None:
        claims["email"] = email
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if extra_claims:
        claims.update(extra_claims)
    return jwt.encode(claims, key, algorithm=algorithm)


__all__ = [
    "DEFAULT_ROLES",
    "HMAC_ALGORITHMS",
    "TokenConfigError",
    "mint_token",
    "parse_ttl",
    "signing_algorithm",
]
