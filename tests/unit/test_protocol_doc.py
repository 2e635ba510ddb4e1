"""docs/protocol.md shows what the code does: each JSON example is the parser's or a builder's own.

Its tables of message types, error codes and close codes are checked against the code by
tests/unit/test_docs_match_code.py."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from engine import protocol as messages
from tests.unit.protocol_examples import INBOUND, as_json, outbound

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def doc_examples() -> list[str]:
    return re.findall(r"```json\n(.*?)\n```", DOC.read_text(), re.S)


def test_protocol_doc_shows_every_example_exactly_once_as_built() -> None:
    shown = doc_examples()
    built = [as_json(example) for example in [*INBOUND.values(), *outbound().values()]]
    assert sorted(shown) == sorted(built), "regenerate with: python -m tests.unit.protocol_examples"


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_protocol_doc_inbound_examples_parse(name: str) -> None:
    assert messages.parse(orjson.loads(as_json(INBOUND[name]))).type == name


def test_protocol_doc_covers_every_message_type() -> None:
    shown_types = {orjson.loads(block)["type"] for block in doc_examples()}
    assert shown_types >= messages.INBOUND_TYPES
    assert shown_types >= messages.RESERVED_TYPES
    shown_ai = {orjson.loads(block).get("event_type") for block in doc_examples()}
    assert shown_ai >= messages.AI_EVENT_TYPES
