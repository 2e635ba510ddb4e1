"""The constrained field types of inbound messages, with the bounds they enforce and why.

Errors are raised as `PydanticCustomError` with short fixed texts: a schema error's details go back to
the client, and they never quote what it sent.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints
from pydantic_core import PydanticCustomError

from engine.model.identifiers import MAX_ID_LENGTH, has_control_characters, identifier_problem
from engine.model.numbers import MAX_SAFE_INTEGER

MAX_ROOM_ID_LENGTH: Final = MAX_ID_LENGTH
MAX_CLIENT_MSG_ID_LENGTH: Final = 64
# Excel's own limits: 32,767 characters in a cell, 8,192 in a formula.
MAX_CELL_TEXT_LENGTH: Final = 32_767
MAX_FORMULA_LENGTH: Final = 8_192
MAX_QUERY_LENGTH: Final = 10_000
MAX_FILENAME_LENGTH: Final = 255
MAX_FILTER_LENGTH: Final = 64
MAX_FILTERS: Final = 32
# A range update's cells: the schema's bound; MAX_CELLS_PER_UPDATE (default 1000) may only lower it.
MAX_CELLS_IN_SCHEMA: Final = 10_000
# A JWT is a few hundred bytes; this bounds what `refresh_token` makes the server parse.
MAX_TOKEN_LENGTH: Final = 8_192
MAX_COORDINATE: Final = 10_000_000
# Excel's grid: columns A..XFD, rows 1..1048576.
MAX_COLUMN: Final = 16_384
MAX_ROW: Final = 1_048_576

# RFC 3986 "unreserved": a file id is a URL path segment and a storage key, and must need no escaping.
_FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")
_MIME = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+(\s*;.*)?", re.ASCII)
_A1_CELL = r"\$?([A-Za-z]{1,3})\$?([0-9]{1,7})"
_A1_RANGE = re.compile(rf"{_A1_CELL}(?::{_A1_CELL})?")


def custom_error(kind: str, text: str) -> PydanticCustomError:
    return PydanticCustomError(kind, text)


def _no_control(value: str) -> str:
    if has_control_characters(value):
        raise custom_error("control_characters", "must not contain control characters")
    return value


def _identifier(value: str) -> str:
    problem = identifier_problem(value)
    if problem is not None:
        raise custom_error("identifier", problem)
    return value


def _file_id(value: str) -> str:
    if not _FILE_ID.fullmatch(value) or ".." in value:
        raise custom_error(
            "file_id", "must be letters, digits, '.', '_', '~' or '-', start alphanumeric, no '..'"
        )
    return value


def _filename(value: str) -> str:
    # Storage uses the file id, but a filename still travels into Content-Disposition headers and
    # download dialogs; a name that is a path there is an attack, never a legitimate upload.
    if "/" in value or "\\" in value or ".." in value or value == ".":
        raise custom_error("filename", "must not contain '/', '\\' or '..'")
    return _no_control(value)


def _mime_type(value: str) -> str:
    # Browsers report "" for a type they do not know (File.type); old clients forward it as is.
    if value and not _MIME.fullmatch(value):
        raise custom_error("mime_type", "must be a media type like 'text/csv', or empty")
    return _no_control(value)


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def a1_bounds(text: str) -> tuple[int, int, int, int]:
    """`(first_column, first_row, last_column, last_row)`, 1-based, of an A1 reference or range
    ("B2", "A1:Z100", "$a$1:c3", "Z100:A1"); raises ValueError outside Excel's grid or for bad syntax."""
    match = _A1_RANGE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an A1 range: {text[:32]!r}")
    col1, row1, col2, row2 = match.groups()
    corners = [(_column_number(col1), int(row1))]
    if col2 is not None:
        corners.append((_column_number(col2), int(row2)))
    for column, row in corners:
        if not (1 <= column <= MAX_COLUMN and 1 <= row <= MAX_ROW):
            raise ValueError(f"outside the grid (A1:XFD1048576): {text[:32]!r}")
    (c1, r1), (c2, r2) = corners[0], corners[-1]
    return min(c1, c2), min(r1, r2), max(c1, c2), max(r1, r2)


def _a1_range(value: str) -> str:
    """Normalised to upper case, no `$`, top-left first; a single cell stays a single cell."""
    try:
        c1, r1, c2, r2 = a1_bounds(value)
    except ValueError:
        raise custom_error("a1_range", "must be an A1 range like 'A1:Z100' within A1:XFD1048576") from None
    first = f"{_column_letters(c1)}{r1}"
    return first if ":" not in value else f"{first}:{_column_letters(c2)}{r2}"


def _number(low: int, high: int) -> Any:
    """An int (kept an int, so a cursor is echoed as sent) or a finite float, within [low, high]."""

    def check(value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise custom_error("number_type", "must be a number")
        # An int is compared as an int: math.isfinite would overflow on one beyond a float's range.
        if not ((isinstance(value, int) or math.isfinite(value)) and low <= value <= high):
            raise custom_error("number_range", f"must be a finite number from {low:,} to {high:,}")
        return value

    return PlainValidator(check)


def _cell_value(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_CELL_TEXT_LENGTH:
            raise custom_error("cell_value", f"text must be at most {MAX_CELL_TEXT_LENGTH} characters")
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise custom_error("cell_value", "integers must be within +-(2**53 - 1)")
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise custom_error("cell_value", "must be a string, a finite number, a boolean or null")


# Every id (room, sheet, cell, user, request, notification, connection), in messages, REST paths and
# queries, and token claims: engine/model/identifiers.py. The length bounds are repeated here for the
# JSON schema that documents it; the rule itself is `identifier_problem`.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_identifier)
]
Id = Identifier
RoomId = Identifier
ClientMsgId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CLIENT_MSG_ID_LENGTH), AfterValidator(_no_control)
]
FileId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_file_id)]
FileName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_FILENAME_LENGTH), AfterValidator(_filename)
]
MimeType = Annotated[str, StringConstraints(max_length=255), AfterValidator(_mime_type)]
A1Range = Annotated[str, StringConstraints(min_length=2, max_length=32), AfterValidator(_a1_range)]
FilterTag = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_FILTER_LENGTH), AfterValidator(_no_control)
]
Filters = Annotated[list[FilterTag], Field(max_length=MAX_FILTERS)]
Coordinate = Annotated[float, _number(-MAX_COORDINATE, MAX_COORDINATE)]
Percentage = Annotated[float, _number(0, 100)]
CellValue = Annotated[str | int | float | bool | None, PlainValidator(_cell_value)]
Version = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
ByteCount = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
Status = Literal["online", "away", "busy"]
