"""A provider that streams its answer from any OpenAI-compatible chat completions endpoint.

`POST {base_url}/chat/completions` with `stream: true`; the answer arrives as server-sent events,
`data: {json}` lines whose `choices[0].delta.content` carry the text, ending with `data: [DONE]`.
The prompt is the query plus a bounded rendering of the range (a tab-separated grid with A1 column
letters and row numbers) and the builtin analysis' figures, so the model reasons over real numbers
even when the grid had to be cut.

Every way the endpoint can let us down (status >= 400, a timeout, a refused connection, a malformed
or error event) becomes a final `Failure` with a message for people; only `CancelledError` (the
requester's `ai_cancel`) passes through, and `async with` closes the connection on the way out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator

import httpx

from engine.features.ai import analysis
from engine.features.ai.provider import AiJob, AiStep, Complete, Failure, Progress, cell_values

MAX_DATA_CHARS = 8_000  # the grid's share of the prompt
MAX_ERROR_CHARS = 300  # of an error body quoted back to the requester
PROGRESS_STEP = 5  # report again when progress grew by this many points
SYSTEM_PROMPT = (
    "You are a data analyst working inside a collaborative spreadsheet. Answer the user's question "
    "about the data given, citing cells by their A1 address and stating figures."
)


def render_grid(table: analysis.Table | None, limit: int = MAX_DATA_CHARS) -> str:
    """The table as tab-separated lines under a line of column letters, cut at `limit` characters."""
    if table is None:
        return "(no data)"
    lines = ["\t".join(["row", *(analysis.column_letters(c) for c in table.columns)])]
    size = len(lines[0])
    for row in range(table.first_row, table.last_row + 1):
        cells = [table.cells.get((column, row)) for column in table.columns]
        if all(value is None for value in cells):
            continue
        line = "\t".join([str(row), *("" if v is None else str(v).replace("\t", " ") for v in cells)])
        if size + len(line) + 1 > limit:
            lines.append(f"... (cut: rows {row}-{table.last_row} not shown)")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def build_prompt(job: AiJob) -> list[dict[str, str]]:
    """The chat messages for `job`: the query, where the data is, its figures and its grid."""
    table = analysis.read_table(cell_values(job.sheet), job.table_range)
    where = job.table_range or "the whole sheet"
    if table is None:
        facts = analysis.no_data(job.table_range)
    else:
        facts = analysis.compose(table, analysis.analyse_table(table))
    user = f"{job.query}\n\nData ({where}):\n{render_grid(table)}\n\nComputed figures:\n{facts}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def progress_for(chars: int) -> float:
    """Grows with the text received, from 10 towards (never reaching) 95: the length is unknown."""
    return round(10 + 85 * (1 - math.exp(-chars / 1_500)), 1)


def content_of(payload: str) -> str:
    """The text of one `data:` event; raises ValueError for an error event or an unreadable one."""
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError("an event that is not a JSON object")
    if "error" in event:
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ValueError(f"the endpoint reported an error: {str(message)[:MAX_ERROR_CHARS]}")
    choices = event.get("choices") or []
    if not choices:
        return ""  # e.g. a final usage-only event
    return (choices[0].get("delta") or {}).get("content") or ""


class OpenAiCompatibleProvider:
    """Streams from `{base_url}/chat/completions`. `timeout` (seconds) bounds connecting and each
    wait for the next bytes, not the whole answer: a model that keeps talking is not stuck."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout

    async def analyse(self, job: AiJob) -> AsyncIterator[AiStep]:
        started = time.perf_counter()
        yield Progress(5, f"Sending the question to {self.model}")
        try:
            body = {"model": self.model, "stream": True, "messages": build_prompt(job)}
        except ValueError as exc:
            yield Failure(f"Cannot read range {job.table_range!r}: {exc}")
            return
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "text/event-stream"}
        text: list[str] = []
        outcome: AiStep | None = None
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout) as client,
                client.stream("POST", self.url, json=body, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    detail = (await response.aread()).decode("utf-8", "replace")[:MAX_ERROR_CHARS]
                    yield Failure(f"The AI endpoint answered HTTP {response.status_code}: {detail}")
                    return
                yield Progress(10, f"{self.model} is answering")
                async for step in self._read(response, text):
                    yield step
        except httpx.TimeoutException:
            outcome = Failure(f"The AI endpoint did not answer within {self.timeout:g} seconds")
        except httpx.HTTPError as exc:
            outcome = Failure(f"The AI endpoint could not be reached: {exc or type(exc).__name__}")
        except ValueError as exc:  # from content_of, json.JSONDecodeError included
            outcome = Failure(f"The AI endpoint sent an unreadable stream: {exc}")
        if outcome is None:
            result = "".join(text)
            elapsed = time.perf_counter() - started
            details = {"provider": "openai_compatible", "model": self.model, "chars": len(result)}
            outcome = (
                Complete(result, elapsed, details) if result else Failure("The AI endpoint sent no answer")
            )
        yield outcome

    async def _read(self, response: httpx.Response, text: list[str]) -> AsyncIterator[Progress]:
        """Appends the streamed text to `text`, yielding progress every `PROGRESS_STEP` points."""
        reported, chars = 10.0, 0
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, ": keep-alive" comments, "event:" / "id:" fields
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                return
            chunk = content_of(payload)
            text.append(chunk)
            chars += len(chunk)
            progress = progress_for(chars)
            if progress - reported >= PROGRESS_STEP:
                reported = progress
                yield Progress(progress, f"Received {chars} characters from {self.model}")


__all__ = ["OpenAiCompatibleProvider", "build_prompt", "content_of", "progress_for", "render_grid"]
