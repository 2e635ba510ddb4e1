"""The per-user rate limiter as a pure object: a fake clock (a function returning the time we set)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.cluster.rate_sync import Remote, estimate, window_start
from engine.features.limits import RateLimiter, RateLimitExceeded, RateLimits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, **limits: float) -> RateLimiter:
    return RateLimiter(RateLimits(**limits), clock=clock)  # type: ignore[arg-type]


def refused(rl: RateLimiter, user: str, message_type: str = "cell_update") -> RateLimitExceeded:
    with pytest.raises(RateLimitExceeded) as info:
        rl.check(user, message_type)
    return info.value


def test_over_the_minute_limit_is_refused_with_the_seed_text_and_a_block() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=3, per_hour=100, block_seconds=120)
    for _ in range(3):
        rl.check("u", "cell_update")
    error = refused(rl, "u")
    assert error.code == "RATE_LIMIT_EXCEEDED"
    assert error.message == "Rate limit exceeded: too many requests per minute"
    assert error.details == {"retry_after": 120}
    clock.now += 60  # the minute has passed, but the block has not
    blocked = refused(rl, "u")
    assert blocked.details == {"retry_after": 60}
    rl.check("u", "cursor_move")  # a block refuses durable messages only
    rl.check("u", "load_sheet")  # reads are not counted at all
    clock.now += 60
    rl.check("u", "cell_update")


def test_over_the_hour_limit_says_per_hour() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=100, per_hour=4, block_seconds=0)
    for _ in range(4):
        rl.check("u", "join_room")
        clock.now += 1
    error = refused(rl, "u")
    assert error.message == "Rate limit exceeded: too many requests per hour"
    assert error.details["retry_after"] >= 1


def test_without_a_block_retry_after_is_when_a_message_fits_again() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=2, per_hour=100, block_seconds=0)
    rl.check("u", "cell_update")
    rl.check("u", "cell_update")
    retry_after = refused(rl, "u").details["retry_after"]
    assert 1 <= retry_after <= 120
    clock.now += retry_after
    rl.check("u", "cell_update")


def test_ping_is_never_counted() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=1, per_hour=1, block_seconds=60)
    for _ in range(50):
        rl.check("u", "ping")
    rl.check("u", "cell_update")
    refused(rl, "u")
    rl.check("u", "ping")  # even while blocked


def test_volatile_messages_use_their_own_budget_without_a_block() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=2, per_hour=2, block_seconds=600, volatile_per_second=5)
    for kind in ("cursor_move", "typing_start", "typing_stop", "file_upload_progress", "cursor_move"):
        rl.check("u", kind)
    error = refused(rl, "u", "cursor_move")
    assert error.message == "Rate limit exceeded: too many requests per second"
    assert error.details["retry_after"] in (1, 2)  # seconds, rounded up: 1.2 here
    # The seed's budget is untouched, and nobody is blocked.
    rl.check("u", "cell_update")
    rl.check("u", "cell_update")
    clock.now += 2
    rl.check("u", "cursor_move")


def test_refused_messages_are_not_counted() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=1, per_hour=100, block_seconds=0)
    rl.check("u", "cell_update")
    for _ in range(10):
        refused(rl, "u")
    clock.now += 120  # two windows later the estimate is zero
    rl.check("u", "cell_update")


def test_users_have_separate_budgets() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=1, per_hour=100, block_seconds=60)
    rl.check("a", "cell_update")
    refused(rl, "a")
    rl.check("b", "cell_update")


def test_sliding_window_weights_the_previous_minute() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=4, per_hour=100, block_seconds=0)
    for _ in range(4):
        rl.check("u", "cell_update")
    clock.now += 75  # 15 s into the next window: 4 * 0.75 = 3 still count
    rl.check("u", "cell_update")
    refused(rl, "u")


def test_idle_users_are_forgotten() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=10, per_hour=100, block_seconds=60)
    for user in ("a", "b", "c"):
        rl.check(user, "cell_update")
    assert rl.tracked_users == 3
    clock.now += 2 * 3600
    rl.check("d", "cell_update")
    assert rl.tracked_users == 1


def test_a_blocked_user_is_kept_until_the_block_ends() -> None:
    clock = FakeClock()
    rl = limiter(clock, per_minute=1, per_hour=100, block_seconds=3 * 3600)
    rl.check("a", "cell_update")
    refused(rl, "a")
    clock.now += 2 * 3600
    rl.check("d", "cell_update")
    assert rl.tracked_users == 2
    refused(rl, "a")


def test_other_nodes_counts_take_their_share_of_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=5, per_hour=100, block_seconds=0), clock=clock)
    limiter.set_remote({"u": Remote(minute=3.0, hour=3.0)})
    limiter.check("u", "cell_update")
    limiter.check("u", "cell_update")
    with pytest.raises(RateLimitExceeded):
        limiter.check("u", "cell_update")  # 3 elsewhere + 2 here = 5
    limiter.check("v", "cell_update")  # someone else's budget is untouched


def test_counts_and_blocks_are_handed_out_once_for_sharing_and_given_back_on_failure() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=2, per_hour=100, block_seconds=60), clock=clock)
    limiter.check("u", "cell_update")
    limiter.check("u", "cursor_move")  # the volatile budget is not shared
    assert limiter.take_unshared() == {"u": 1}
    assert limiter.take_unshared() == {}
    limiter.give_back({"u": 1})
    limiter.check("u", "cell_update")
    assert limiter.take_unshared() == {"u": 2}
    with pytest.raises(RateLimitExceeded):
        limiter.check("u", "cell_update")
    ((user, (seconds, reason)),) = limiter.take_new_blocks().items()
    assert (user, seconds, reason) == ("u", 60, "too many requests per minute")
    assert limiter.take_new_blocks() == {}


def test_a_block_from_another_node_refuses_here_until_it_ends() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=60, per_hour=1000), clock=clock)
    limiter.touch("u")
    assert "u" in limiter.known_users()
    limiter.block("u", 30, "too many requests per minute")
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.check("u", "cell_update")
    assert refused.value.details["retry_after"] == 30
    clock.now += 31
    limiter.check("u", "cell_update")


def test_aligned_windows_and_the_sliding_estimate_of_other_nodes() -> None:
    now = datetime(2026, 11, 26, 10, 0, 45, tzinfo=UTC)
    assert window_start(now, 60) == datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert window_start(now, 3600) == datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    counts = {datetime(2026, 11, 26, 9, 59, tzinfo=UTC): 8, datetime(2026, 11, 26, 10, 0, tzinfo=UTC): 2}
    assert estimate(counts, now, 60) == 2 + 8 * 0.25  # a quarter of the previous minute still overlaps
    assert estimate({}, now, 60) == 0
