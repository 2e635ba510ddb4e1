"""Content-type policy for uploads: what the first bytes are, and whether the declared type may stand.

Pure functions, no I/O. The policy, in order:

1. Sniff the first `SNIFF_BYTES` by magic numbers: PNG, JPEG, GIF, PDF, ZIP (which also covers
   XLSX/DOCX/PPTX, ODF, JAR, EPUB), gzip. Bytes with a NUL, unless they begin with a UTF-16 byte
   order mark, are `application/octet-stream`: no text encoding but UTF-16 (and UTF-32) has them.
   Bytes that decode as UTF-8 (a multi-byte character cut at the end of the window is fine) are
   `text/plain`; the empty file is text too. Anything else sniffs as None: unknown, binary or text
   in another encoding (a CSV saved by Excel as Windows-1252, or as UTF-16 "Unicode Text").
2. A declared type is refused (`declared_type_matches` is False) when it contradicts the bytes: it
   names a different recognised format (declared image/png, bytes of a PDF), claims a format we can
   recognise and the bytes are not it (declared image/png, bytes unknown or text), or claims text of
   bytes that cannot be text. A `text/*` type is contradicted only by a recognised format or by
   `application/octet-stream` bytes, since text in any encoding may be unknown to the sniff; the
   text types outside `text/*` (JSON, XML, JavaScript, YAML) still need UTF-8. An empty or generic
   declared type (`application/octet-stream`, what browsers send for types they do not know) never
   contradicts anything.
3. The type a file is served with (`resolve_content_type`) is the declared type when it agrees and is
   more specific (text/csv over text/plain, the OOXML type over application/zip), else the sniffed
   type, else `application/octet-stream`. Types a browser would execute (HTML, SVG, XML, JavaScript)
   are served as `text/plain`: uploads are served from our origin, and serving them as declared
   would be stored cross-site scripting.
4. A text type is served with the charset its first bytes tell (`served_content_type`, given the first
   chunk read, 64 KiB): `utf-8` when they decode as UTF-8, `utf-16` after a UTF-16 byte order mark,
   and none otherwise (Windows-1252 and its kin cannot be told apart, and browsers decode no UTF-32:
   a reader guessing does better than a wrong label).
"""

from __future__ import annotations

import codecs
import re
from typing import Final

SNIFF_BYTES: Final = 512
# RFC 6838: type "/" subtype of restricted characters, each at most 127. Anything else is treated as
# no declared type at all, so what we store and serve is always a well-formed, bounded media type.
_TYPE_ESSENCE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
OCTET_STREAM: Final = "application/octet-stream"

# (magic prefix, type). Longest and most specific first.
_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
    (b"PK\x07\x08", "application/zip"),  # a spanned archive
    (b"\x1f\x8b", "application/gzip"),
)

# Declared types accepted for each sniffed type, beyond the sniffed type itself.
_ALIASES: Final[dict[str, frozenset[str]]] = {
    "image/jpeg": frozenset({"image/jpg", "image/pjpeg"}),
    "application/pdf": frozenset({"application/x-pdf"}),
    "application/gzip": frozenset(
        {"application/x-gzip", "application/x-compressed-tar", "application/x-tgz"},
    ),
    "application/zip": frozenset(
        {
            "application/x-zip-compressed",
            "application/x-zip",
            "application/java-archive",
            "application/epub+zip",
        },
    ),
}
# Families of zip-based formats, by prefix: XLSX, DOCX, PPTX and OpenDocument files are zip archives.
_ZIP_FAMILY_PREFIXES: Final = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/vnd.ms-excel.sheet.macroenabled",
)
_GENERIC: Final = frozenset({"", OCTET_STREAM, "binary/octet-stream", "application/unknown"})
# Non-text/* types whose content is text.
_TEXT_APPLICATION: Final = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xhtml+xml",
        "application/sql",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "image/svg+xml",
    }
)
# Types a browser renders or runs as active content: served as text/plain (see the module docstring).
_ACTIVE: Final = frozenset(
    {
        "text/html",
        "text/xml",
        "text/javascript",
        "text/ecmascript",
        "text/xsl",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xhtml+xml",
        "image/svg+xml",
    }
)
_MAGIC_TYPES: Final = frozenset(kind for _, kind in _MAGIC)
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")  # little- and big-endian (UTF-32 LE's begins so too)
_UTF32_BOMS: Final = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")  # browsers decode no UTF-32


def _essence(declared: str | None) -> str:
    """`Text/CSV; charset=utf-8` -> `text/csv`: parameters do not change what the content is."""
    essence = (declared or "").split(";", 1)[0].strip().lower()
    return essence if _TYPE_ESSENCE.fullmatch(essence) else ""


def _is_utf8(data: bytes) -> bool:
    try:
        # final=False: a multi-byte character cut by the end of the sniff window is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def sniff_mime(first_bytes: bytes) -> str | None:
    """The type of a file judged by its first bytes (pass at least `SNIFF_BYTES`, or the whole file
    when it is shorter): a recognised format, `text/plain` (UTF-8), `application/octet-stream` (bytes
    no text has), or None for bytes that may be binary or text in another encoding."""
    head = first_bytes[:SNIFF_BYTES]
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if b"\x00" in head and not head.startswith(_UTF16_BOMS):
        return OCTET_STREAM
    return "text/plain" if _is_utf8(head) else None


def _is_text_type(essence: str) -> bool:
    return essence.startswith("text/") or essence in _TEXT_APPLICATION


def _in_family(essence: str, sniffed: str) -> bool:
    if essence == sniffed or essence in _ALIASES.get(sniffed, ()):
        return True
    return sniffed == "application/zip" and essence.startswith(_ZIP_FAMILY_PREFIXES)


def _claims_magic_format(essence: str) -> bool:
    return any(_in_family(essence, kind) for kind in _MAGIC_TYPES)


def declared_type_matches(declared: str | None, sniffed: str | None) -> bool:
    """False when the declared type contradicts what the bytes were sniffed as (module docstring, 2)."""
    essence = _essence(declared)
    if essence in _GENERIC:
        return True
    if sniffed == "text/plain":
        return _is_text_type(essence)
    if sniffed is None and essence.startswith("text/"):
        return True  # text in an encoding the sniff does not know (Windows-1252, UTF-16)
    if sniffed is None or sniffed == OCTET_STREAM:
        # Unknown: a format we could have recognised, or UTF-8 text, is a false claim; anything
        # else (video/mp4, application/x-parquet) we cannot check and let stand.
        return not _claims_magic_format(essence) and not _is_text_type(essence)
    return _in_family(essence, sniffed)


def served_content_type(content_type: str, first_bytes: bytes) -> str:
    """The Content-Type header of a file stored as `content_type` whose bytes begin with
    `first_bytes` (module docstring, 4)."""
    if not content_type.startswith("text/") or first_bytes.startswith(_UTF32_BOMS):
        return content_type
    if first_bytes.startswith(_UTF16_BOMS):
        return f"{content_type}; charset=utf-16"
    # All of what was read, not only the sniff window: a CSV's first rows are often plain ASCII, and
    # its first accented letter in Windows-1252 comes later.
    utf8 = b"\x00" not in first_bytes and _is_utf8(first_bytes)
    return f"{content_type}; charset=utf-8" if utf8 else content_type


def resolve_content_type(declared: str | None, sniffed: str | None) -> str:
    """The type to store and serve a file with (module docstring, 3). Call after
    `declared_type_matches`; a contradicting declared type is ignored here, never trusted."""
    essence = _essence(declared)
    if essence in _GENERIC or not declared_type_matches(essence, sniffed):
        chosen = sniffed or OCTET_STREAM
    else:
        chosen = essence
    return "text/plain" if chosen in _ACTIVE else chosen
