"""A session's handling of frames, without HTTP: bad frames are answered and change nothing, an
oversized one closes with 1009, limits refuse before any handler, the ids of a message are echoed."""

from __future__ import annotations

from engine.features.limits import RateLimits
from engine.log.memory import MemoryEventStore
from engine.model.events import RecordedEvent
from engine.protocol.close_codes import CloseCode
from tests.engine.memory_engine import connect, memory_engine


async def test_session_bad_frames_are_answered_and_append_nothing() -> None:
    async with memory_engine() as engine:
        client = await connect(engine, "ann")
        before = await engine.store.head()
        await client.send(b"{bad")
        await client.send({"type": "teleport", "client_msg_id": "t1"})
        await client.send({"type": "join_room", "room_id": 5, "request_id": "q1"})
        answers = client.take()
        assert [m["code"] for m in answers] == ["INVALID_JSON", "UNKNOWN_MESSAGE_TYPE", "VALIDATION_ERROR"]
        assert answers[1]["client_msg_id"] == "t1" and answers[2]["request_id"] == "q1"
        assert await engine.store.head() == before
        assert engine.stats.errors_by_code == {
            "INVALID_JSON": 1,
            "UNKNOWN_MESSAGE_TYPE": 1,
            "VALIDATION_ERROR": 1,
        }


async def test_session_a_frame_over_the_limit_is_refused_then_closed_with_1009() -> None:
    async with memory_engine(max_message_bytes=1024) as engine:
        client = await connect(engine, "ann")
        verdict = await client.send(b'{"type":"ping","pad":"' + b"x" * 2000 + b'"}')
        assert verdict is not None and verdict.code == CloseCode.MESSAGE_TOO_BIG
        [refusal] = client.take()
        assert (refusal["code"], refusal["limit"]) == ("MESSAGE_TOO_LARGE", 1024)


async def test_session_ping_is_free_and_a_limited_user_is_refused_before_any_handler() -> None:
    async with memory_engine(rate_limits=RateLimits(per_minute=2, per_hour=100, block_seconds=60)) as engine:
        client = await connect(engine, "ann")
        for n in range(3):
            await client.send({"type": "status_update", "status": "away", "client_msg_id": f"s{n}"})
        await client.send({"type": "ping"})
        answers = client.take()
        assert [m["type"] for m in answers] == ["ack", "ack", "error", "pong"]
        assert answers[2]["code"] == "RATE_LIMIT_EXCEEDED" and answers[2]["retry_after"] == 60
        assert engine.stats.messages_by_type == {"ping": 1, "status_update": 3}


class KeysUnreadable(MemoryEventStore):
    """Reads by idempotency key fail while `down`, as against a database that went away."""

    down = False

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None:
        if self.down:
            raise ConnectionResetError("the connection broke")
        return await super().event_by_key(user_id, key, stream_id)


async def test_session_a_refused_message_whose_retry_cannot_be_told_is_answered_retryable() -> None:
    """A refused message with an id is looked up as a possible retry ("Idempotency first"); when the
    log cannot be read for it, the client hears "try again" and the session goes on."""
    log = KeysUnreadable()
    async with memory_engine(log) as engine:
        client = await connect(engine, "ann")
        log.down = True
        await client.send({"type": "leave_room", "room_id": "nowhere", "client_msg_id": "l1"})
        await client.send({"type": "ping"})
        refusal, pong = client.take()
        assert (refusal["code"], refusal["retryable"], refusal["client_msg_id"]) == (
            "INTERNAL_ERROR",
            True,
            "l1",
        )
        assert pong["type"] == "pong"
