"""The token-expiry heap's memory, driven by hand (the warnings and closes themselves are tested through
real connections in tests/api/test_tokens.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.features.tokens import COMPACT_FROM, TokenExpiry

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(hours=8)  # long-lived tokens: nothing comes due while the test runs


async def _ignore(*args: object) -> None:
    return None


def expiry() -> TokenExpiry:
    return TokenExpiry(reply=_ignore, flush=_ignore, close=lambda connection_id, code: None, now=lambda: T0)


def test_closed_connections_do_not_leave_their_deadlines_behind() -> None:
    tokens = expiry()
    tokens.track("kept", LATER)
    for n in range(10_000):
        tokens.track(f"c{n}", LATER)
        tokens.forget(f"c{n}")
    assert tokens.pending <= COMPACT_FROM
    assert not tokens.expired("kept") and tokens.pending >= 2  # the open connection's two remain


def test_refreshing_one_token_over_and_over_keeps_the_heap_small() -> None:
    tokens = expiry()
    for n in range(10_000):
        tokens.track("c", LATER + timedelta(seconds=n))
    assert tokens.pending <= COMPACT_FROM


def test_many_open_connections_keep_every_deadline() -> None:
    tokens = expiry()
    for n in range(1_000):
        tokens.track(f"c{n}", LATER)
    assert tokens.pending == 2_000
