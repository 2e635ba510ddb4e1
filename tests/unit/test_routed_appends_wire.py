"""What travels between a node and a partition's writer: a batch of events, and each one's outcome,
the same on both sides."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.cluster.routed_appends import decode_batch, decode_outcomes, encode_batch, encode_outcomes
from engine.model.errors import EngineError, Rejected, StoreUnavailable, VersionConflict
from engine.model.events import CellWrite, Committed, Conflict, Duplicate, NewEvent, Refused

AT = datetime(2026, 12, 5, 22, 30, 1, 123456, tzinfo=UTC)


def test_a_batch_arrives_as_it_was_sent() -> None:
    cells = (CellWrite("s1", "A1", "r1", 3, 1.5, None), CellWrite("s1", "B2", "r1", None, None, "=A1*2"))
    data = {"cells": [{"cell_id": "A1", "value": 1.5}]}
    events = [
        NewEvent("room:r1", "CellsUpdated", data, {"user_id": "u1"}, None, "m-1", "u1", cells),
        NewEvent("file:f1", "FileClaimed", {"file_id": "f1", "x": [1, None, "é"]}, expected_version=0),
    ]
    assert decode_batch(encode_batch(events)) == events


def test_every_outcome_arrives_as_it_was_sent() -> None:
    outcomes = [
        Committed(12, 4, AT, {"cells": [{"cell_id": "A1", "version": 4}]}, 3),
        Committed(13, 1, AT, None, 3),
        Duplicate(9, 2, AT, 3),
        Conflict(0, 7),
        Refused(VersionConflict("1 cell(s) changed", conflicts=[{"cell_id": "A1", "current": 5}])),
    ]
    back = decode_outcomes(encode_outcomes(outcomes))
    assert back is not None
    assert back[:4] == outcomes[:4]
    refused = back[4]
    assert isinstance(refused, Refused) and isinstance(refused.error, VersionConflict)
    assert refused.error.message == "1 cell(s) changed"
    assert refused.error.details == {"conflicts": [{"cell_id": "A1", "current": 5}]}
    assert refused.error.code == "VERSION_CONFLICT"


def test_an_error_of_another_release_is_still_a_refusal() -> None:
    payload = orjson.dumps({"taken": True, "outcomes": [["r", "SomeNewRefusal", "no", {}]]})
    (refused,) = decode_outcomes(payload) or []
    assert isinstance(refused, Refused) and type(refused.error) is Rejected
    assert refused.error.message == "no"


def test_an_item_that_failed_at_the_writer_fails_alone() -> None:
    outcomes = [Conflict(0, 1), StoreUnavailable("away"), ValueError("NUL in jsonb"), Conflict(2, 3)]
    back = decode_outcomes(encode_outcomes(outcomes))
    assert back is not None and back[0] == outcomes[0] and back[3] == outcomes[3]
    unavailable, failed = back[1], back[2]
    assert isinstance(unavailable, StoreUnavailable) and "away" in unavailable.message
    assert type(failed) is EngineError and "ValueError: NUL in jsonb" in failed.message


def test_a_batch_not_taken_is_told_apart() -> None:
    assert decode_outcomes(b'{"taken":false}') is None


@pytest.mark.parametrize("payload", [b"", b"[1,2]", b'{"taken":true}', b'{"taken":true,"outcomes":[["?"]]}'])
def test_a_malformed_answer_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_outcomes(payload)


@pytest.mark.parametrize("payload", [b"", b"{}", b'[["room:r", "T"]]', b"[[1,2,3,4,5,6,7,[[1]]]]"])
def test_a_malformed_batch_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_batch(payload)
