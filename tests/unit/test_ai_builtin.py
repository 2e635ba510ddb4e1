"""The builtin provider's stream: progress in order, then a result stating the sheet's real figures;
and a cancel stops it where it stands."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from engine.features.ai import (
    AiJob,
    BuiltinProvider,
    Complete,
    Failure,
    OpenAiCompatibleProvider,
    Progress,
    provider_from,
)
from engine.features.ai.provider import AiStep
from engine.projections.cells import Cell, Sheet
from tests.unit.test_ai_analysis import revenue_sheet


async def collect(job: AiJob) -> list[AiStep]:
    return [step async for step in BuiltinProvider().analyse(job)]


def as_sheet(values: dict[str, object]) -> Sheet:
    at = datetime(2024, 1, 14, tzinfo=UTC)
    cells = {cid: Cell(cid, value, None, 1, "user_1", at, n) for n, (cid, value) in enumerate(values.items())}
    return Sheet("sheet_123", "room_1", cells, len(cells), at)


async def test_builtin_streams_progress_then_the_real_figures() -> None:
    steps = await collect(AiJob("req_123", "Analyze this data", as_sheet(revenue_sheet()), "A1:Z100"))
    *progress, last = steps
    assert len(progress) >= 2 and all(isinstance(step, Progress) for step in progress)
    values = [step.progress for step in progress]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert all(0 <= value < 100 for value in values)
    assert isinstance(last, Complete)
    assert "Column B (Revenue): 12 values, sum 1,582, mean 131.83, min 100, max 310" in last.result
    assert "1 outlier: B7 = 310" in last.result
    assert last.processing_time >= 0
    details = json.loads(json.dumps(last.details))
    assert details["data_range"] == "A1:C13" and details["header"] is True
    assert [column["type"] for column in details["columns"]] == ["text", "numeric", "numeric"]
    assert details["columns"][1]["sum"] == 1582


async def test_builtin_reads_only_the_table_range() -> None:
    values = revenue_sheet() | {"E1": 1000, "E2": 2000}
    steps = await collect(AiJob("req_1", "q", values, "B2:B4"))
    last = steps[-1]
    assert isinstance(last, Complete)
    assert "Column B: 3 values, sum 312, mean 104, min 100, max 108" in last.result
    assert "Column E" not in last.result and "Column A" not in last.result


async def test_builtin_empty_range_completes_saying_there_is_no_data() -> None:
    steps = await collect(AiJob("req_1", "q", revenue_sheet(), "X1:Z9"))
    assert sum(isinstance(step, Progress) for step in steps) >= 2
    last = steps[-1]
    assert isinstance(last, Complete)
    assert last.result == "No data in range X1:Z9: there is nothing to analyse."
    whole = (await collect(AiJob("req_2", "q", Sheet("empty"))))[-1]
    assert isinstance(whole, Complete)
    assert whole.result == "No data in the sheet: there is nothing to analyse."
    assert whole.details == {"query": "q", "range": None, "rows": 0, "columns": []}


async def test_builtin_bad_range_fails() -> None:
    last = (await collect(AiJob("req_1", "q", {}, "not a range")))[-1]
    assert isinstance(last, Failure) and "not a range" in last.error


async def test_builtin_cancel_stops_the_stream_where_it_stands() -> None:
    steps: list[AiStep] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for step in BuiltinProvider().analyse(AiJob("req_1", "q", revenue_sheet())):
            steps.append(step)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps and all(isinstance(step, Progress) for step in steps)
    seen = len(steps)
    await asyncio.sleep(0)
    assert len(steps) == seen  # nothing arrives after the cancel


def test_provider_from_needs_all_three_settings() -> None:
    assert isinstance(provider_from(None, None, None), BuiltinProvider)
    assert isinstance(provider_from("http://ai.local/v1", "", "m"), BuiltinProvider)
    chosen = provider_from("http://ai.local/v1/", "key", "m")
    assert isinstance(chosen, OpenAiCompatibleProvider)
    assert chosen.url == "http://ai.local/v1/chat/completions"
