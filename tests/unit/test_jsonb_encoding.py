"""The encoder for jsonb (engine/log/jsonb.py): floats that jsonb would turn into integers are spelled
out with a `.0`, and nothing else changes. What PostgreSQL then keeps is checked against the real
database in tests/api/test_cell_numbers.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.log import jsonb


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        (1e16, "10000000000000000.0"),
        (-1e16, "-10000000000000000.0"),
        (1.2345678901234567e19, "12345678901234567000.0"),
        (1e300, "1" + "0" * 300 + ".0"),
        # As orjson writes them: jsonb keeps each of these as a float already.
        (5e15, "5000000000000000.0"),
        (9999999999999998.0, "9999999999999998.0"),
        (1e-7, "1e-7"),
        (2.5, "2.5"),
        (9007199254740991, "9007199254740991"),
    ],
)
def test_a_number_is_spelled_so_jsonb_keeps_its_type(value: float, spelled: str) -> None:
    assert jsonb.dumps(value) == spelled
    back = orjson.loads(spelled)
    assert (type(back), back) == (type(value), value)


def test_text_that_looks_like_a_number_is_left_alone() -> None:
    document: dict[str, Any] = {
        "1e+16": ["1e+16", 'say "2e+20" \\ 3e+30', 1e20, "\u00e9 4e+40"],
        "cells": [{"cell_id": "A1", "value": -5.5e17}, {"value": 'x"1e+16'}],
    }
    encoded = jsonb.dumps(document)
    assert encoded == orjson.dumps(document).decode().replace("1e+20", "100000000000000000000.0").replace(
        "-5.5e+17", "-550000000000000000.0"
    )
    assert orjson.loads(encoded) == document


def test_a_document_without_a_large_float_is_orjsons_own() -> None:
    document = {"type": "CellUpdated", "value": "one+two", "version": 3, "x": 1.5}
    assert jsonb.encode(document) == orjson.dumps(document)
