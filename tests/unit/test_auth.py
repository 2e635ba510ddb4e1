"""Token verification: pinned algorithms, required claims, roles and room patterns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from api.auth import AuthenticationFailed, TokenVerifier
from api.settings import Settings
from engine.model.actors import Actor

SECRET = "unit-test-secret-" + "x" * 64


def token(claims: dict[str, Any] | None = None, *, algorithm: str = "HS256", secret: str = SECRET) -> str:
    base: dict[str, Any] = {"sub": "u1", "exp": datetime.now(UTC) + timedelta(minutes=5)}
    return jwt.encode({**base, **(claims or {})}, secret, algorithm=algorithm)


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(SECRET, Settings(jwt_secret_key=SECRET, **settings))


def test_auth_valid_token_gives_actor_with_default_editor_role() -> None:
    actor = verifier().verify(token({"username": "alice", "email": "a@example.com"}))
    assert actor == Actor(
        user_id="u1", username="alice", email="a@example.com", roles=("editor",), rooms=None
    )


def test_auth_username_defaults_to_sub_and_rooms_are_kept() -> None:
    actor = verifier().verify(token({"roles": ["viewer", "viewer"], "rooms": ["team-*"]}))
    assert (actor.username, actor.roles, actor.rooms) == ("u1", ("viewer",), ("team-*",))
    assert actor.may_join("team-1") and not actor.may_join("other")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "missing token"),
        (lambda: "not-a-jwt", "invalid token"),
        (lambda: token({"exp": datetime.now(UTC) - timedelta(seconds=5)}), "expired"),
        (lambda: token(secret="another-secret-" + "y" * 64), "signature"),
        (lambda: token(algorithm="HS512"), "algorithm not allowed"),
        (lambda: jwt.encode({"sub": "u1", "exp": 9_999_999_999}, None, algorithm="none"), "algorithm"),
        (lambda: jwt.encode({"sub": "u1"}, SECRET, algorithm="HS256"), "exp"),
        (lambda: jwt.encode({"exp": 9_999_999_999}, SECRET, algorithm="HS256"), "sub"),
        (lambda: token({"roles": ["superuser"]}), "roles"),
        (lambda: token({"roles": "admin"}), "roles"),
        (lambda: token({"rooms": "team-*"}), "rooms"),
    ],
    ids=[
        "missing",
        "garbage",
        "expired",
        "bad-signature",
        "wrong-alg",
        "alg-none",
        "no-exp",
        "no-sub",
        "unknown-role",
        "roles-not-list",
        "rooms-not-list",
    ],
)
def test_auth_refuses_bad_tokens(make: Any, reason: str) -> None:
    with pytest.raises(AuthenticationFailed, match=reason):
        verifier().verify(make())


def test_auth_checks_issuer_and_audience_when_configured() -> None:
    strict = verifier(jwt_issuer="https://idp.example", jwt_audience="collab")
    good = token({"iss": "https://idp.example", "aud": "collab"})
    assert strict.verify(good).user_id == "u1"
    for claims in ({"iss": "https://evil.example", "aud": "collab"}, {"iss": "https://idp.example"}):
        with pytest.raises(AuthenticationFailed):
            strict.verify(token(claims))


def test_auth_refuses_to_verify_asymmetric_algorithms_with_the_shared_secret() -> None:
    with pytest.raises(ValueError, match="RS256"):
        verifier(jwt_algorithms=["HS256", "RS256"])


def test_auth_auditor_may_not_join_rooms() -> None:
    assert not Actor("u", "u", roles=("auditor",)).may_join("r")
    assert Actor("u", "u", roles=("viewer",)).may_join("r")
