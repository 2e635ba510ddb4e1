"""A `rooms` claim's glob patterns as the history reads use them (engine/model/actors.py,
engine/readmodels/history.py): the regular expression admits exactly what `fnmatchcase` does, and
every id a pattern admits starts with its literal prefix, so the prefix test never drops one."""

from __future__ import annotations

import itertools
import re
from fnmatch import fnmatchcase

import pytest

from engine.model.actors import glob_prefix, glob_regex
from engine.model.streams import room_stream, user_stream, volatile_stream
from engine.readmodels.history import EventFilter

PATTERNS = ["team-a-*", "quiet", "team-?-1", "*", "r[0-9]x*", "r[!a]*", "a.b*", "x[", "plus+(1)", "[*]star"]
# Sets whose body a regular expression reads differently unless escaped: a leading `^` (negation),
# `[:` (a class in PostgreSQL), `]` first, `-` first or last, backslashes, ranges run backwards
# (nothing, or with `!` anything).
SETS = ["[^a]x", "[[:]x", "[]]x", "[!]]x", "[-a]x", "[a-]x", "[\\]x"]
SETS += ["[z-a]x", "[!z-a]x", "[az-ab]x", "[c-a-e]x", "[z-a!]x", "[z-a!b-c]x", "[a-!!-a]x"]
PATTERNS += SETS
IDS = ["team-a-1", "team-b-1", "team-a-", "quiet", "quiet2", "r5x", "rax", "rbx9", "a.b.c", "axb", "x["]
IDS += ["plus+(1)", "*star", "star", "", "team-?-1"]
IDS += ["^x", "ax", "bx", "zx", "ex", "[x", ":x", "]x", "-x", "\\x", "cx", "!x"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_claim_pattern_regex_and_prefix_admit_what_the_glob_admits(pattern: str) -> None:
    for room_id in IDS:
        admitted = fnmatchcase(room_id, pattern)
        assert bool(re.search(glob_regex(pattern), room_id)) == admitted, (pattern, room_id)
        if admitted:
            assert room_id.startswith(glob_prefix(pattern)), (pattern, room_id)


def test_claim_stream_patterns_and_prefixes_admit_a_rooms_streams_and_no_users() -> None:
    where = EventFilter(rooms=tuple(PATTERNS))
    patterns, prefixes = where.stream_patterns() or [], where.stream_prefixes() or []
    for room_id in IDS:
        admitted = any(fnmatchcase(room_id, pattern) for pattern in PATTERNS)
        for stream in (room_stream(room_id), volatile_stream(room_stream(room_id))):
            assert any(re.search(p, stream) for p in patterns) == admitted, stream
            if admitted:
                assert any(stream.startswith(p) for p in prefixes), stream
        assert not any(re.search(p, user_stream(room_id or "u")) for p in patterns)
    assert EventFilter().stream_patterns() is None and EventFilter().stream_prefixes() is None
    assert [glob_prefix(p) for p in ("team-a-*", "quiet", "?x")] == ["team-a-", "quiet", ""]


def test_claim_set_of_every_short_body_admits_what_the_glob_admits() -> None:
    """Every set body of up to four characters from those a set reads specially (six of the five that
    make ranges and negations), against ids of one character: ranges forwards and backwards,
    negation, and a `!` a dropped range leaves first."""
    bodies = [
        "".join(chars)
        for alphabet, longest in (("ab!-]z^[", 4), ("a!-]z", 6))
        for size in range(longest + 1)
        for chars in itertools.product(alphabet, repeat=size)
    ]
    for body in bodies:
        pattern = f"[{body}]"
        regex = re.compile(glob_regex(pattern))
        for room_id in [*"ab!-]z^[", "x", "é", ""]:
            assert bool(regex.search(room_id)) == fnmatchcase(room_id, pattern), (pattern, room_id)
