"""The OpenAI-compatible provider against a real HTTP endpoint: a small asyncio server on 127.0.0.1
that speaks just enough HTTP/1.1 to stream chat completion chunks as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.features.ai import AiJob, Complete, Failure, OpenAiCompatibleProvider, Progress
from engine.features.ai.provider import AiStep
from tests.unit.test_ai_analysis import revenue_sheet

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeEndpoint:
    """Records each request (line, headers, JSON body) and answers it with `reply`."""

    reply: Reply | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            line, *header_lines = head.strip().split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
            body = json.loads(await reader.readexactly(int(headers["content-length"])))
            self.requests.append({"line": line, "headers": headers, "body": body})
            assert self.reply is not None
            await self.reply(reader, writer)
        finally:
            writer.close()


def sse(*chunks: str, done: bool = True) -> bytes:
    events = [
        "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": chunk}}]}) for chunk in chunks
    ]
    return ("\n\n".join([": keep-alive", *events, *(["data: [DONE]"] if done else [])]) + "\n\n").encode()


def respond(status: str, body: bytes, content_type: str = "text/event-stream") -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n".encode()
        )
        writer.write(body)
        await writer.drain()

    return reply


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeEndpoint]:
    fake = FakeEndpoint()
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Tracked so teardown can cancel a handler that is still waiting (the timeout tests).
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        await fake.handle(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    fake.base_url = f"http://{host}:{port}/v1"
    yield fake
    server.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await server.wait_closed()


def provider(fake: FakeEndpoint, timeout: float = 5.0) -> OpenAiCompatibleProvider:
    return OpenAiCompatibleProvider(fake.base_url, "sk-test", "test-model", timeout=timeout)


async def run(fake: FakeEndpoint, seconds: float = 5.0) -> list[AiStep]:
    """Every step of one request; `seconds` is the provider's timeout."""
    job = AiJob("req_123", "Which month stands out?", revenue_sheet(), "A1:C13")
    return [step async for step in provider(fake, seconds).analyse(job)]


async def test_openai_streams_chunks_into_progress_then_the_full_text(endpoint: FakeEndpoint) -> None:
    words = ["Month ", "M6 ", "(B7 = 310) ", "stands out; ", "revenue otherwise grows. " * 40]
    endpoint.reply = respond("200 OK", sse(*words))
    steps = await run(endpoint)
    *progress, last = steps
    assert len(progress) >= 3 and all(isinstance(step, Progress) for step in progress)
    values = [step.progress for step in progress]
    assert values == sorted(values) and values[-1] < 100
    assert isinstance(last, Complete)
    assert last.result == "".join(words)
    assert last.details["model"] == "test-model"

    (request,) = endpoint.requests
    assert request["line"] == "POST /v1/chat/completions HTTP/1.1"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "test-model" and body["stream"] is True
    prompt = body["messages"][-1]["content"]
    assert prompt.startswith("Which month stands out?")
    assert "7\tM6\t310\t50" in prompt  # the grid row of B7
    assert "sum 1,582" in prompt  # and the computed figures


async def test_openai_error_status_is_a_failure(endpoint: FakeEndpoint) -> None:
    endpoint.reply = respond("401 Unauthorized", b'{"error": "bad key"}', "application/json")
    last = (await run(endpoint))[-1]
    assert isinstance(last, Failure)
    assert last.error.startswith("The AI endpoint answered HTTP 401") and "bad key" in last.error


async def test_openai_error_event_is_a_failure(endpoint: FakeEndpoint) -> None:
    endpoint.reply = respond("200 OK", b'data: {"error": {"message": "model overloaded"}}\n\n')
    last = (await run(endpoint))[-1]
    assert isinstance(last, Failure) and "model overloaded" in last.error


async def test_openai_timeout_is_a_failure(endpoint: FakeEndpoint) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    endpoint.reply = never
    last = (await run(endpoint, seconds=0.2))[-1]
    assert isinstance(last, Failure) and "did not answer within 0.2 seconds" in last.error


async def test_openai_unreachable_endpoint_is_a_failure() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    fake = FakeEndpoint(base_url=f"http://127.0.0.1:{port}/v1")
    last = (await run(fake))[-1]
    assert isinstance(last, Failure) and "could not be reached" in last.error


async def test_openai_cancel_closes_the_connection(endpoint: FakeEndpoint) -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        writer.write(sse("x" * 500, done=False))
        await writer.drain()
        await reader.read()  # returns when the client hangs up
        endpoint.closed.set()

    endpoint.reply = dribble
    steps: list[AiStep] = []
    receiving = asyncio.Event()
    job = AiJob("req_1", "q", revenue_sheet())

    async def consume() -> None:
        async for step in provider(endpoint).analyse(job):
            steps.append(step)
            if isinstance(step, Progress) and step.status.startswith("Received"):
                receiving.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(receiving.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(endpoint.closed.wait(), 10)
    assert all(isinstance(step, Progress) for step in steps)
