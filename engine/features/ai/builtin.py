"""The builtin provider: really analyses the sheet's cells, streaming a step per stage of the work.

The maths lives in `engine.features.ai.analysis` (pure); this module only orders the stages, reports progress
and yields to the event loop between them. Why yield: the analysis runs on the engine's loop, next to
every connection's fanout, so one large range must not hold the loop for its whole duration; between
stages (and every `CHUNK` columns inside the heavy ones) other tasks get their turn. It is also where
a cancel lands: `await asyncio.sleep(0)` is a point at which `CancelledError` is raised, and nothing
here catches it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from engine.features.ai import analysis
from engine.features.ai.provider import AiJob, AiStep, Complete, Failure, Progress, cell_values

CHUNK = 50  # columns analysed between two yields to the loop


class BuiltinProvider:
    """The default `AiProvider`: statistics, trends and outliers of the range's numeric columns.

    It answers the same analysis whatever the query says: it does not understand language, it states
    figures. The query is kept in the details so a reader of the result knows what was asked.
    """

    async def analyse(self, job: AiJob) -> AsyncIterator[AiStep]:
        started = time.perf_counter()
        where = job.table_range or "the whole sheet"
        yield Progress(10, f"Reading the cells of {where}")
        try:
            table = analysis.read_table(cell_values(job.sheet), job.table_range)
        except ValueError as exc:  # a range that is not A1; the inbound schema normally stops it
            yield Failure(f"Cannot read range {job.table_range!r}: {exc}")
            return
        await asyncio.sleep(0)
        if table is None:
            yield Progress(90, "Composing the answer")
            details: dict[str, object] = {
                "query": job.query,
                "range": job.table_range,
                "rows": 0,
                "columns": [],
            }
            yield Complete(analysis.no_data(job.table_range), time.perf_counter() - started, details)
            return

        yield Progress(30, f"Typing the columns of {analysis.table_range_of(table)}")
        columns = analysis.type_columns(table)
        await asyncio.sleep(0)

        numeric = sum(column.kind == analysis.NUMERIC for column in columns)
        yield Progress(50, f"Computing statistics of {numeric} numeric column{'s' if numeric != 1 else ''}")
        figures: list[dict[str, Any]] = []
        for start in range(0, len(columns), CHUNK):
            figures += [analysis.figures_of(column) for column in columns[start : start + CHUNK]]
            await asyncio.sleep(0)

        yield Progress(75, "Finding trends and outliers")
        for start in range(0, len(columns), CHUNK):
            for column, column_figures in zip(
                columns[start : start + CHUNK], figures[start : start + CHUNK], strict=True
            ):
                column_figures.update(analysis.trends_of(column))
            await asyncio.sleep(0)

        yield Progress(90, "Composing the answer")
        result = analysis.compose(table, figures)
        details = {
            "query": job.query,
            "range": job.table_range,
            "data_range": analysis.table_range_of(table),
            "header": table.header,
            "rows": table.last_row - table.first_row + 1 - table.header,
            "columns": figures,
        }
        yield Complete(result, time.perf_counter() - started, details)


__all__ = ["BuiltinProvider"]
