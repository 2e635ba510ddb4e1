"""Who is connecting: the token's place in the request, its verification, and the Origin check.

Verification pins everything the token could otherwise choose for itself: the algorithms come from
JWT_ALGORITHMS (never from the token header, and never `none`), `exp` and `sub` are required, and
`iss`/`aud` are checked when configured. Only HMAC algorithms are accepted, because the only key the
server holds is the shared secret; accepting RS*/ES* with that secret is how algorithm-confusion
attacks start, so such a configuration refuses to start instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import jwt
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import HTTPConnection

from api.settings import Settings
from engine.features.tokens import Credentials
from engine.model.actors import DEFAULT_ROLES, Actor, Role
from engine.model.errors import AuthenticationFailed
from engine.protocol.fields import Identifier

log = logging.getLogger(__name__)

BEARER_SUBPROTOCOL: Final = "bearer"
HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
# RFC 7518 3.2: an HMAC key must be at least as long as the hash output.
_MIN_SECRET_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}


class Claims(BaseModel):
    """The claims we read (docs/protocol.md, "Connecting"); other claims are allowed and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    # The same identifier rule as every id in a message or a REST path: a `sub` with a NUL would
    # otherwise reach the log as a user id PostgreSQL cannot store.
    sub: Identifier
    username: Identifier | None = None
    email: Identifier | None = None
    roles: list[Role] = Field(default_factory=lambda: list(DEFAULT_ROLES))
    rooms: list[Identifier] | None = None

    def actor(self) -> Actor:
        return Actor(
            user_id=self.sub,
            username=self.username or self.sub,
            email=self.email,
            roles=tuple(dict.fromkeys(self.roles)),
            rooms=tuple(self.rooms) if self.rooms is not None else None,
        )


class TokenVerifier:
    """Verifies tokens with one secret and the settings' pinned algorithms, issuer and audience."""

    def __init__(self, secret: str, settings: Settings) -> None:
        algorithms = list(settings.jwt_algorithms)
        unsupported = [alg for alg in algorithms if alg not in HMAC_ALGORITHMS]
        if unsupported:
            raise ValueError(
                f"JWT_ALGORITHMS lists {', '.join(unsupported)}; only {', '.join(sorted(HMAC_ALGORITHMS))} "
                "can be verified with JWT_SECRET_KEY"
            )
        short = [alg for alg in algorithms if len(secret.encode()) < _MIN_SECRET_BYTES[alg]]
        if short:
            log.warning("JWT_SECRET_KEY is shorter than %s requires; use a longer random secret", short)
        self._secret = secret
        self._algorithms = algorithms
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    def verify(self, token: str | None) -> Actor:
        """The actor a valid token names; raises AuthenticationFailed."""
        return self.credentials(token).actor

    def credentials(self, token: str | None) -> Credentials:
        """The actor a valid token names and when the token expires; raises AuthenticationFailed."""
        if not token:
            raise AuthenticationFailed(
                "missing token: send ?token=, Authorization: Bearer, or subprotocol bearer"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("invalid token signature") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationFailed(
                f"token algorithm not allowed (accepted: {', '.join(self._algorithms)})"
            ) from None
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from None
        try:
            actor = Claims.model_validate(claims).actor()
        except PydanticValidationError as exc:
            fields = sorted({".".join(str(part) for part in err["loc"]) for err in exc.errors()})
            raise AuthenticationFailed(f"invalid token claims: {', '.join(fields)}") from None
        return Credentials(actor, _expiry(claims["exp"]))


def _expiry(exp: object) -> datetime:
    """When the token expires. PyJWT has checked that `exp` reads as an integer and lies ahead, but it
    also reads a string of digits and any number however large; a NumericDate is a JSON number (RFC
    7519), and one past the year 9999 is no time at all: either is a bad token, not a server fault."""
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthenticationFailed("invalid token claims: exp must be a number")
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        raise AuthenticationFailed("invalid token claims: exp is beyond the year 9999") from None


def extract_token(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """The token and the subprotocol to answer with, looking in the documented order (docs/protocol.md):
    `?token=`, `Authorization: Bearer`, then the subprotocol pair `bearer, JWT`.

    Whenever the client offered `bearer` the server must answer it, token found there or not:
    a browser fails a handshake whose answer does not pick one of the offered subprotocols.
    """
    offered: Sequence[str] = conn.scope.get("subprotocols") or []
    subprotocol = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None
    token = conn.query_params.get("token")
    if token:
        return token, subprotocol
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), subprotocol
    if subprotocol is not None:
        index = list(offered).index(BEARER_SUBPROTOCOL)
        if index + 1 < len(offered):
            return offered[index + 1], subprotocol
    return None, subprotocol


def origin_allowed(conn: HTTPConnection, allowed_origins: Sequence[str]) -> bool:
    """Whether the handshake's Origin may open a socket.

    Browsers always send Origin, so checking it stops other sites from opening sockets with a
    visitor's cookies or stored token (cross-site WebSocket hijacking). Non-browser clients send no
    Origin and are not refused for it: they cannot be tricked into connecting on someone's behalf.
    An empty list (the default) or `*` allows every origin.
    """
    if not allowed_origins or "*" in allowed_origins:
        return True
    origin = conn.headers.get("origin")
    return origin is None or origin.rstrip("/") in {o.rstrip("/") for o in allowed_origins}
