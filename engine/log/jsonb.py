"""JSON bound for PostgreSQL's jsonb, written so that every number comes back as the type it went in.

jsonb holds a number as a `numeric`: it keeps the digits after the point (`1.0` stays `1.0`, a float)
but spells an exponent out. orjson writes a float of magnitude 1e16 or more in exponent form
(`1e+16`, `1.2345678901234567e+19`), which jsonb would store, and give back, as the integer
`10000000000000000`: a client that reads it and sends it back is refused, since no integer beyond
+-(2^53 - 1) is accepted (docs/protocol.md, numbers). So such a float is written out in full with a
`.0` (`10000000000000000.0`), which jsonb keeps and which decodes to the very same float. Every other
number is left as orjson writes it: a smaller float always has a point (`5e15` is written
`5000000000000000.0`), and a negative exponent (`1e-7`) comes back as `0.0000001`, still a fraction.

Every document the engine stores in a jsonb column or casts to jsonb is encoded by `dumps`: the
SQLAlchemy serializer (engine/log/store.py), the writer's batch (engine/log/batch_plan.py), the read
models' rows (engine/readmodels/) and a node's stats (engine/cluster/registry.py).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

# A JSON string (skipped whole, so text that looks like a number is never touched), or a number with a
# positive exponent, as orjson spells one.
_STRING_OR_BIG_FLOAT = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|(-?[0-9]+(?:\.[0-9]+)?e\+[0-9]+)', re.DOTALL)


def _spelled_out(match: re.Match[bytes]) -> bytes:
    number = match.group(1)
    if number is None:
        return match.group(0)
    digits = format(Decimal(number.decode()), "f")  # exact: the float's shortest form, exponent applied
    return (digits if "." in digits else f"{digits}.0").encode()


def encode(value: Any) -> bytes:
    """`value` as JSON that jsonb stores without turning a float into an integer; TypeError (orjson's
    JSONEncodeError) for data JSON cannot hold."""
    encoded = orjson.dumps(value)
    if b"e+" in encoded:  # rare: most documents have no such float and skip the scan
        encoded = _STRING_OR_BIG_FLOAT.sub(_spelled_out, encoded)
    return encoded


def dumps(value: Any) -> str:
    """`encode` as text, for a bound parameter."""
    return encode(value).decode()


__all__ = ["dumps", "encode"]
