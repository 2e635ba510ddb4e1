"""The AI provider interface: what the engine hands a provider, and the steps a provider streams back.

The engine (not the provider) owns the request's lifecycle: it records `AiRequestStarted`, iterates
`provider.analyse(job)`, records each `Progress` as `AiProgressed` and the final `Complete` / `Failure`
as `AiCompleted` / `AiFailed`. A provider therefore never writes events, never sees the log, and a
projection rebuild never calls it: the recorded steps are the truth, the provider is only consulted
once, live.

Cancellation contract
---------------------
`ai_cancel` is implemented by cancelling the task that iterates `analyse`: the `CancelledError` is
raised inside the provider at its current `await`. Providers must be cancellation-safe:

* never swallow `CancelledError` (no bare `except:` / `except BaseException:` without re-raising);
* release what they hold in `async with` / `finally` (HTTP connections, files);
* yield nothing after the cancellation: the caller records `AiCancelled` and stops iterating.

A provider reports its own errors as a final `Failure` step rather than raising, so the caller can
tell "the provider said no" (recorded as `AiFailed` with a message for people) from a bug (an
exception, which the caller should also record as `AiFailed`, with a generic message).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from engine.projections.cells import Sheet


@dataclass(frozen=True, slots=True)
class AiJob:
    """One request as a provider sees it.

    `sheet` is the projected sheet as of the request (so the analysis reads what the requester saw,
    not what arrives while it runs), or a plain mapping of cell_id -> value (tests, other callers).
    `table_range` is the client's `context.table_range` (an A1 range) or None for the whole sheet.
    """

    request_id: str
    query: str
    sheet: Sheet | Mapping[str, Any]
    table_range: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the provider has got: `progress` in 0-100 (non-decreasing), `status` for people."""

    progress: float
    status: str


@dataclass(frozen=True, slots=True)
class Complete:
    """The answer. `processing_time` is measured by the provider, in seconds; `details` is
    JSON-serialisable (the builtin provider puts its per-column figures there)."""

    result: str
    processing_time: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failure:
    """The provider could not answer; `error` is a message fit to show the requester."""

    error: str


AiStep: TypeAlias = Progress | Complete | Failure


class AiProvider(Protocol):
    """Streams the steps of one analysis: any number of `Progress`, then exactly one `Complete` or
    `Failure`, after which the iterator ends. An async generator function is the natural shape."""

    def analyse(self, job: AiJob) -> AsyncIterator[AiStep]: ...


def cell_values(sheet: Sheet | Mapping[str, Any]) -> dict[str, Any]:
    """cell_id -> value of a job's sheet, whichever form it came in."""
    if isinstance(sheet, Sheet):
        return {cell_id: cell.value for cell_id, cell in sheet.cells.items()}
    return dict(sheet)


__all__ = ["AiJob", "AiProvider", "AiStep", "Complete", "Failure", "Progress", "cell_values"]
