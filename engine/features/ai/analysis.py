"""The builtin provider's analysis as pure functions: cells -> table -> typed columns -> figures -> text.

No I/O and no event loop, so every figure can be checked by hand in unit tests; `engine.features.ai.builtin`
streams the steps. The choices a reader may want to challenge:

* Only cells whose id is a single A1 address ("B7") are read; other ids have no place in a table.
  Empty cells (None, "" or whitespace) do not count as data.
* The table spans the occupied cells (within `table_range` when given). Its first row is a header
  when every cell in it is text and at least one column below it is wholly numeric.
* A column is numeric, text, empty or mixed. Only numeric columns get statistics: in a mixed column
  the text usually means the numbers are not a series ("n/a", notes), so figures would mislead.
  Numbers are JSON numbers (not booleans) or strings such as "1,234.5" or "$12".
* Trend: the least-squares slope of value on row number (gaps count as rows). The trend is flat when
  the fitted line moves less than `FLAT_TOLERANCE` (5 %) of |mean| over the column's rows.
* Outliers: Tukey's IQR rule (outside Q1 - 1.5 IQR .. Q3 + 1.5 IQR, inclusive quartiles), from 4
  values up. Chosen over "3 standard deviations" because in a small sample one extreme value inflates
  the deviation so much that it can never lie 3 of them away (with n <= 10, never).
* Numbers near the largest float: a fit or quantiles that overflow on the way are computed on the
  values scaled down by a power of two (exact, so the same answer), and a figure that is itself
  beyond the largest float (a sum, a slope) is None, "out of range" in the text.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.protocol.fields import a1_bounds

NUMERIC, TEXT, EMPTY, MIXED = "numeric", "text", "empty", "mixed"
INCREASING, DECREASING, FLAT = "increasing", "decreasing", "flat"
FLAT_TOLERANCE = 0.05
IQR_FACTOR = 1.5
MIN_VALUES_FOR_OUTLIERS = 4
MAX_COLUMNS_IN_TEXT = 20
MAX_OUTLIERS_LISTED = 10
OUT_OF_RANGE = "out of range"  # a figure beyond the largest float (a sum, a slope)

Address = tuple[int, int]  # (column, row), 1-based
Point = tuple[int, float]  # (row, value)


@dataclass(frozen=True, slots=True)
class Table:
    cells: Mapping[Address, Any]  # non-empty cells only
    columns: tuple[int, ...]  # occupied columns, left to right
    first_row: int
    last_row: int
    header: bool  # the first row names the columns


@dataclass(frozen=True, slots=True)
class Column:
    column: int
    name: str | None  # the header cell, when the table has a header
    kind: str  # NUMERIC, TEXT, EMPTY or MIXED
    cells: tuple[tuple[int, Any], ...]  # (row, value) of the non-empty data cells, top to bottom

    @property
    def letter(self) -> str:
        return column_letters(self.column)

    def points(self) -> list[Point]:
        """(row, number) of a numeric column's cells."""
        return [(row, number) for row, value in self.cells if (number := as_number(value)) is not None]


def column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def address_of(cell_id: str) -> Address | None:
    """(column, row) of a single-cell A1 id, None for any other id."""
    if ":" in cell_id:
        return None
    try:
        column, row, _, _ = a1_bounds(cell_id)
    except ValueError:
        return None
    return column, row


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def as_number(value: Any) -> float | None:
    """The number a cell holds, or None: JSON numbers and numeric text, never booleans or NaN."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lstrip("$€£").replace(",", "")
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def read_table(values: Mapping[str, Any], table_range: str | None = None) -> Table | None:
    """The occupied cells of `values` (cell_id -> value) within `table_range`; None when none are."""
    bounds = a1_bounds(table_range) if table_range else None
    cells: dict[Address, Any] = {}
    for cell_id, value in values.items():
        address = address_of(cell_id)
        if address is None or is_empty(value):
            continue
        if bounds is not None:
            c1, r1, c2, r2 = bounds
            if not (c1 <= address[0] <= c2 and r1 <= address[1] <= r2):
                continue
        cells[address] = value
    if not cells:
        return None
    columns = tuple(sorted({column for column, _ in cells}))
    first_row = min(row for _, row in cells)
    last_row = max(row for _, row in cells)
    return Table(cells, columns, first_row, last_row, _has_header(cells, columns, first_row, last_row))


def _has_header(cells: Mapping[Address, Any], columns: Sequence[int], first: int, last: int) -> bool:
    if first == last:
        return False
    top = [cells[(column, first)] for column in columns if (column, first) in cells]
    if any(as_number(value) is not None for value in top):
        return False
    for column in columns:
        below = [value for (c, row), value in cells.items() if c == column and row > first]
        if (column, first) in cells and below and all(as_number(value) is not None for value in below):
            return True
    return False


def type_columns(table: Table) -> list[Column]:
    """Each occupied column with its data cells (header excluded) and its kind."""
    data_from = table.first_row + 1 if table.header else table.first_row
    result = []
    for column in table.columns:
        cells = tuple(
            (row, table.cells[(column, row)])
            for row in sorted(row for c, row in table.cells if c == column and row >= data_from)
        )
        numbers = sum(as_number(value) is not None for _, value in cells)
        kind = EMPTY if not cells else NUMERIC if numbers == len(cells) else TEXT if not numbers else MIXED
        top = table.cells.get((column, table.first_row)) if table.header else None
        result.append(Column(column, None if top is None else str(top).strip(), kind, cells))
    return result


def summarise(points: Sequence[Point]) -> dict[str, float | int | None]:
    """count, sum, mean, min, max and population standard deviation of a non-empty series. Numbers
    near the largest float can add up beyond it: such a sum is None (out of range), and the mean,
    which lies between min and max, is then taken of the values scaled down."""
    values = [value for _, value in points]
    try:
        total: float | None = math.fsum(values)
        mean = statistics.fmean(values)
    except OverflowError:
        scaled, exponent = _scaled_down(points)
        total, mean = None, math.ldexp(statistics.fmean(value for _, value in scaled), exponent)
    return {
        "count": len(values),
        "sum": total,
        "mean": mean,
        "min": min(values),
        "max": max(values),
        "stdev": statistics.pstdev(values),
    }


def _scaled_down(points: Sequence[Point]) -> tuple[list[Point], int]:
    """The points with their values divided by a power of two that brings the largest magnitude
    below 1, and that power: exact, so a fit or quantiles of numbers near the largest float, which
    overflow in between, come out right on them, scaled."""
    exponent = math.frexp(max(abs(value) for _, value in points))[1]
    return [(row, math.ldexp(value, -exponent)) for row, value in points], exponent


def _fit(points: Sequence[Point]) -> tuple[float, str]:
    rows = [float(row) for row, _ in points]
    values = [value for _, value in points]
    slope = statistics.linear_regression(rows, values).slope
    rise = abs(slope) * (rows[-1] - rows[0])
    if rise <= FLAT_TOLERANCE * abs(statistics.fmean(values)):
        return slope, FLAT
    return slope, INCREASING if slope > 0 else DECREASING


def trend_of(points: Sequence[Point]) -> tuple[float | None, str | None]:
    """(least-squares slope per row, direction); (None, None) with fewer than two values. The
    direction does not change with the scale, so numbers whose fit overflows are fitted scaled down;
    a slope beyond the largest float is None."""
    if len(points) < 2:
        return None, None
    try:
        slope, direction = _fit(points)
        if math.isfinite(slope):
            return slope, direction
    except (OverflowError, ValueError):  # ValueError: products overflowed both ways, -inf + inf
        pass
    scaled, exponent = _scaled_down(points)
    slope, direction = _fit(scaled)
    try:
        return math.ldexp(slope, exponent), direction
    except OverflowError:
        return None, direction


def _fences(points: Sequence[Point]) -> tuple[float, float]:
    q1, _, q3 = statistics.quantiles([value for _, value in points], n=4, method="inclusive")
    return q1 - IQR_FACTOR * (q3 - q1), q3 + IQR_FACTOR * (q3 - q1)


def outliers_of(points: Sequence[Point]) -> list[Point]:
    """The points outside Tukey's fences, top to bottom; none below `MIN_VALUES_FOR_OUTLIERS`.
    Fences that overflow are drawn on the values scaled down (the same points fall outside)."""
    if len(points) < MIN_VALUES_FOR_OUTLIERS:
        return []
    low, high = _fences(points)
    if math.isfinite(low) and math.isfinite(high):
        return [(row, value) for row, value in points if value < low or value > high]
    scaled, _ = _scaled_down(points)
    low, high = _fences(scaled)
    return [
        (row, value)
        for (row, value), (_, small) in zip(points, scaled, strict=True)
        if not low <= small <= high
    ]


def figures_of(column: Column) -> dict[str, Any]:
    """The JSON-serialisable figures of one column, as `Complete.details["columns"]` lists them:
    its kind and counts, and for a numeric column `summarise`; `trends_of` adds the rest."""
    figures: dict[str, Any] = {"column": column.letter, "name": column.name, "type": column.kind}
    figures["values"] = len(column.cells)
    if column.kind == TEXT:
        figures["distinct"] = len({str(value) for _, value in column.cells})
    if column.kind == NUMERIC:
        figures.update(summarise(column.points()))
    return figures


def trends_of(column: Column) -> dict[str, Any]:
    """slope, trend and outliers of a numeric column (empty for other kinds)."""
    if column.kind != NUMERIC:
        return {}
    points = column.points()
    slope, direction = trend_of(points)
    outliers = [{"cell": f"{column.letter}{row}", "value": value} for row, value in outliers_of(points)]
    return {"slope": slope, "trend": direction, "outliers": outliers}


def analyse_table(table: Table) -> list[dict[str, Any]]:
    """Every column's full figures in one call (the builtin provider does the same in stages)."""
    return [figures_of(column) | trends_of(column) for column in type_columns(table)]


def fmt(number: float) -> str:
    """A figure for people: thousands separators, at most two decimals (three digits below 1), and
    an exponent from 10^15 up (a figure near the largest float would otherwise be 309 digits)."""
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    if abs(number) >= 1e15:
        return f"{number:.4g}"
    if abs(number) >= 1:
        return f"{number:,.2f}".rstrip("0").rstrip(".")
    return f"{number:.3g}"


def describe(figures: Mapping[str, Any]) -> str:
    """One sentence per column, stating its figures."""
    label = f"Column {figures['column']}" + (f" ({figures['name']})" if figures["name"] else "")
    kind, count = figures["type"], figures["values"]
    if kind == EMPTY:
        return f"{label}: empty."
    if kind == TEXT:
        return f"{label}: text, {count} values ({figures['distinct']} distinct)."
    if kind == MIXED:
        return f"{label}: mixed numbers and text ({count} values); no statistics."
    total = OUT_OF_RANGE if figures["sum"] is None else fmt(figures["sum"])
    text = (
        f"{label}: {count} values, sum {total}, mean {fmt(figures['mean'])}, "
        f"min {fmt(figures['min'])}, max {fmt(figures['max'])}"
    )
    if figures["trend"] is not None:
        slope = figures["slope"]
        if slope is None:
            text += f", {figures['trend']} (slope {OUT_OF_RANGE})"
        else:
            signed = "0" if slope == 0 else f"{'+' if slope > 0 else '-'}{fmt(abs(slope))}"
            text += f", {figures['trend']} (slope {signed} per row)"
    outliers = figures["outliers"]
    if outliers:
        listed = ", ".join(f"{o['cell']} = {fmt(o['value'])}" for o in outliers[:MAX_OUTLIERS_LISTED])
        more = (
            f" and {len(outliers) - MAX_OUTLIERS_LISTED} more" if len(outliers) > MAX_OUTLIERS_LISTED else ""
        )
        text += f"; {len(outliers)} outlier{'s' if len(outliers) > 1 else ''}: {listed}{more}"
    return text + "."


def table_range_of(table: Table) -> str:
    return (
        f"{column_letters(table.columns[0])}{table.first_row}:"
        f"{column_letters(table.columns[-1])}{table.last_row}"
    )


def compose(table: Table, columns: Sequence[Mapping[str, Any]]) -> str:
    """The answer: where the data is, one sentence per column (bounded), and the trends found."""
    rows = table.last_row - table.first_row + 1 - table.header
    header = f", header in row {table.first_row}" if table.header else ""
    lines = [f"Analysis of {table_range_of(table)} ({rows} data rows x {len(columns)} columns{header})."]
    lines += [describe(figures) for figures in columns[:MAX_COLUMNS_IN_TEXT]]
    if len(columns) > MAX_COLUMNS_IN_TEXT:
        lines.append(f"... and {len(columns) - MAX_COLUMNS_IN_TEXT} more columns (see details).")
    trends = [f"{f['column']} {f['trend']}" for f in columns if f["type"] == NUMERIC and f["trend"]]
    numeric = sum(f["type"] == NUMERIC for f in columns)
    lines.append(
        f"{numeric} numeric column{'s' if numeric != 1 else ''}"
        + (f"; trends: {', '.join(trends)}." if trends else ".")
    )
    return "\n".join(lines)


def no_data(table_range: str | None) -> str:
    where = f"range {table_range}" if table_range else "the sheet"
    return f"No data in {where}: there is nothing to analyse."
