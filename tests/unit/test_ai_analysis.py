"""The builtin analysis' maths on data whose figures were worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from engine.features.ai import analysis
from engine.features.ai.analysis import (
    DECREASING,
    EMPTY,
    FLAT,
    INCREASING,
    MIXED,
    NUMERIC,
    TEXT,
    as_number,
    outliers_of,
    read_table,
    summarise,
    trend_of,
    type_columns,
)


def revenue_sheet() -> dict[str, object]:
    """Month / Revenue / Cost with a header, 12 months, one wild month (B7 = 310)."""
    cells: dict[str, object] = {"A1": "Month", "B1": "Revenue", "C1": "Cost"}
    revenue = [100, 104, 108, 110, 112, 310, 116, 120, 122, 124, 126, 130]
    for row, value in enumerate(revenue, start=2):
        cells[f"A{row}"] = f"M{row - 1}"
        cells[f"B{row}"] = value
        cells[f"C{row}"] = 50
    return cells


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), ("1,234.5", 1234.5), (" $12 ", 12.0), ("-4", -4.0), (True, None),
     ("n/a", None), (None, None), ("nan", None), ("inf", None), ([1], None)],
)  # fmt: skip
def test_as_number_reads_numbers_and_numeric_text_only(value: object, expected: float | None) -> None:
    assert as_number(value) == expected


def test_read_table_respects_the_range_bounds_and_skips_non_cells() -> None:
    cells = {"A1": 1, "B2": 2, "C3": 3, "D4": 4, "B3": "", "C2": None, "notes": 9, "A1:B2": 5}
    table = read_table(cells, "B2:C3")
    assert table is not None
    assert dict(table.cells) == {(2, 2): 2, (3, 3): 3}
    assert (table.columns, table.first_row, table.last_row) == ((2, 3), 2, 3)
    assert read_table(cells, "E5:F6") is None
    assert read_table({}, None) is None


def test_read_table_whole_sheet_spans_the_occupied_cells() -> None:
    table = read_table({"B3": 1, "D9": 2, "x": 3}, None)
    assert table is not None
    assert (table.columns, table.first_row, table.last_row) == ((2, 4), 3, 9)
    assert analysis.table_range_of(table) == "B3:D9"


def test_header_detected_when_text_tops_a_numeric_column() -> None:
    table = read_table(revenue_sheet())
    assert table is not None and table.header
    columns = type_columns(table)
    assert [(c.letter, c.name, c.kind, len(c.cells)) for c in columns] == [
        ("A", "Month", TEXT, 12),
        ("B", "Revenue", NUMERIC, 12),
        ("C", "Cost", NUMERIC, 12),
    ]


@pytest.mark.parametrize(
    "cells",
    [
        {"A1": 1, "A2": 2, "A3": 3},  # numeric first row
        {"A1": "x", "A2": "y", "B1": "z", "B2": "w"},  # all text: nothing says row 1 is special
        {"A1": "Name", "B1": "Score"},  # a single row
        {"A1": "Name", "A2": 1, "A3": "two"},  # the column below is not wholly numeric
    ],
)
def test_no_header_otherwise(cells: dict[str, object]) -> None:
    table = read_table(cells)
    assert table is not None and not table.header


def test_columns_are_typed_numeric_text_mixed_and_empty() -> None:
    cells = {"A1": "N", "B1": "Label", "C1": "Mixed", "D1": "Notes", "A2": 1, "A3": 2}
    cells |= {"B2": "a", "B3": "b", "C2": 5, "C3": "n/a"}
    table = read_table(cells)
    assert table is not None and table.header
    assert [c.kind for c in type_columns(table)] == [NUMERIC, TEXT, MIXED, EMPTY]
    figures = analysis.analyse_table(table)
    assert "sum" not in figures[2] and "sum" not in figures[3]
    assert (
        analysis.describe(figures[2]) == "Column C (Mixed): mixed numbers and text (2 values); no statistics."
    )
    assert analysis.describe(figures[3]) == "Column D (Notes): empty."


def test_summarise_counts_sums_and_spreads() -> None:
    figures = summarise([(2, 10.0), (3, 20.0), (4, 30.0), (5, 40.0)])
    assert figures["count"] == 4
    assert figures["sum"] == 100
    assert figures["mean"] == 25
    assert (figures["min"], figures["max"]) == (10, 40)
    assert figures["stdev"] == pytest.approx(math.sqrt(125))  # deviations 15, 5, 5, 15


def test_trend_slope_is_least_squares_over_row_numbers() -> None:
    assert trend_of([(r, 2.0 * r + 1) for r in range(1, 6)]) == (pytest.approx(2.0), INCREASING)
    assert trend_of([(r, 10.0 - 3 * r) for r in range(1, 6)]) == (pytest.approx(-3.0), DECREASING)
    # Rows 2, 3, 5: deviations of rows and values are both (-4/3, -1/3, 5/3), so the slope is 1.
    assert trend_of([(2, 1.0), (3, 2.0), (5, 4.0)]) == (pytest.approx(1.0), INCREASING)


def test_trend_is_flat_within_five_percent_of_the_mean() -> None:
    # slope 0.2 per row; over rows 1..4 the line rises 0.6, under 5 % of the mean 100.5.
    assert trend_of([(1, 100.0), (2, 101.0), (3, 100.0), (4, 101.0)]) == (pytest.approx(0.2), FLAT)
    # the same shape around a mean of 1.5 rises 0.6: 40 % of it, a trend.
    assert trend_of([(1, 1.0), (2, 2.0), (3, 1.0), (4, 2.0)])[1] == INCREASING
    assert trend_of([(1, 5.0)]) == (None, None)


def test_outliers_by_tukey_fences() -> None:
    # sorted 10, 11, 12, 12, 13, 50: Q1 = 11.25, Q3 = 12.75, IQR 1.5, fences 9 and 15.
    points = [(1, 10.0), (2, 12.0), (3, 11.0), (4, 13.0), (5, 12.0), (6, 50.0)]
    assert outliers_of(points) == [(6, 50.0)]
    assert outliers_of([(1, 1.0), (2, 2.0), (3, 1000.0)]) == []  # too few values to judge


def test_result_states_the_real_figures() -> None:
    table = read_table(revenue_sheet(), "A1:Z100")
    assert table is not None
    figures = analysis.analyse_table(table)
    text = analysis.compose(table, figures)
    # Revenue: sum 1,582, mean 131.83. Rows 2..13: dx = -5.5..5.5, sum(dx^2) = 143,
    # sum(dx*y) = 2259 - 1994 = 265, so the slope is 265/143 = 1.853.
    assert "Analysis of A1:C13 (12 data rows x 3 columns, header in row 1)." in text
    assert (
        "Column B (Revenue): 12 values, sum 1,582, mean 131.83, min 100, max 310, "
        "increasing (slope +1.85 per row); 1 outlier: B7 = 310." in text
    )
    assert "Column C (Cost): 12 values, sum 600, mean 50, min 50, max 50, flat (slope 0 per row)." in text
    assert figures[1]["slope"] == pytest.approx(265 / 143)
    assert figures[1]["outliers"] == [{"cell": "B7", "value": 310.0}]
    json.dumps(figures)  # the details must survive the event log


def test_fmt_for_people() -> None:
    assert [analysis.fmt(x) for x in (1582.0, 1234.5, 131.8333, 0.01234, -2.0)] == [
        "1,582",
        "1,234.5",
        "131.83",
        "0.0123",
        "-2",
    ]
    # From 10^15 up an exponent: the largest float written out would be 309 digits.
    assert [analysis.fmt(x) for x in (1.7976931348623157e308, -3.2e15, 999_999_999_999_999.0)] == [
        "1.798e+308",
        "-3.2e+15",
        "999,999,999,999,999",
    ]


def test_figures_of_numbers_near_the_largest_float() -> None:
    """Their sum exceeds the largest float and the arithmetic of a fit or of quantiles overflows on
    the way: each figure that is a number is still stated, the sum as out of range."""
    big = [(1, 1e308), (2, 1e308), (3, 1.5e308)]
    figures = summarise(big)
    assert (figures["count"], figures["sum"], figures["min"], figures["max"]) == (3, None, 1e308, 1.5e308)
    assert figures["mean"] == pytest.approx(3.5 / 3 * 1e308)
    assert trend_of(big) == (pytest.approx(0.25e308), INCREASING)
    assert trend_of([(1, 1e308), (2, 1e308)]) == (0.0, FLAT)
    assert trend_of([(1, -1.7e308), (3, 1.7e308)]) == (1.7e308, INCREASING)  # 1.7e308 a row: in range
    assert trend_of([(1, -1.7e308), (2, 1.7e308)]) == (None, INCREASING)  # 3.4e308 a row: beyond it
    # Five equal values and one far above them: the quantiles' interpolation overflows unscaled.
    points = [(row, 1e308) for row in range(1, 6)] + [(6, 1.7e308)]
    assert outliers_of(points) == [(6, 1.7e308)]
    column = {"column": "A", "name": None, "type": NUMERIC, "values": 3}
    text = analysis.describe(column | summarise(big) | {"slope": None, "trend": INCREASING, "outliers": []})
    assert text.startswith("Column A: 3 values, sum out of range, mean ")
    assert text.endswith(", increasing (slope out of range).")


def test_figures_of_the_largest_floats_either_side_of_zero_or_all_alike() -> None:
    """Products of a fit that overflow both ways (-inf + inf), and a mean whose shares add up just
    past the largest float, are figures still: never an exception that fails the analysis."""
    top = 1.7976931348623157e308
    points = [(1, -top), (2, 1e15), (3, top), (4, -top)]
    assert trend_of(points) == (pytest.approx(0.1 * top), INCREASING)  # 0.5 / 5 of it a row
    figures = summarise([(1, top), (2, top), (3, top)])
    assert (figures["sum"], figures["mean"], figures["stdev"]) == (None, top, 0.0)
    columns = analysis.analyse_table(read_table({"A1": top, "A2": top, "A3": top, "B1": -top, "B2": top}))
    assert [c["mean"] for c in columns] == [top, 0.0]
