"""The pure parts of file storage: id validation and the content-type policy
(engine.features.storage.mime)."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from engine.features.storage import (
    SNIFF_BYTES,
    InvalidFileId,
    declared_type_matches,
    resolve_content_type,
    served_content_type,
    sniff_mime,
    validate_file_id,
)


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
    return buffer.getvalue()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
BINARY = bytes(range(256))
CP1252_CSV = "Name;Price\nCafé;3 €\n".encode("cp1252")  # as Excel on Windows saves a CSV
UTF16_CSV = "Name\tPrice\nCafé\t3 €\n".encode("utf-16")  # Excel's "Unicode Text", with its BOM


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"GIF89a\x01\x00", "image/gif"),
        (PDF, "application/pdf"),
        (_zip_bytes(), "application/zip"),
        (b"PK\x05\x06" + b"\x00" * 18, "application/zip"),
        (gzip.compress(b"hello"), "application/gzip"),
        (b"a,b,c\n1,2,3\n", "text/plain"),
        ("Grüße, 日本語\n".encode(), "text/plain"),
        (b"", "text/plain"),
        (b"text with a NUL\x00 inside", "application/octet-stream"),
        (BINARY, "application/octet-stream"),
        (CP1252_CSV, None),  # text in an encoding the sniff cannot tell from binary
        (UTF16_CSV, None),  # its NULs follow a byte order mark
        ("Name\tPrice\n".encode("utf-16-be"), "application/octet-stream"),  # NULs with no mark
    ],
)
def test_sniff_mime_recognises_magic_bytes_and_text(data: bytes, expected: str | None) -> None:
    assert sniff_mime(data) == expected


def test_sniff_mime_accepts_a_multibyte_character_cut_by_the_window() -> None:
    text = ("é" * SNIFF_BYTES).encode()  # 2 bytes each: the window ends inside one at some point
    assert sniff_mime(text[: SNIFF_BYTES - 1]) == "text/plain"
    assert sniff_mime(text) == "text/plain"


def test_sniff_mime_looks_only_at_the_window() -> None:
    assert sniff_mime(b"a" * SNIFF_BYTES + b"\x00") == "text/plain"


@pytest.mark.parametrize(
    ("declared", "sniffed"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("image/jpg", "image/jpeg"),
        ("application/pdf", "application/pdf"),
        ("application/zip", "application/zip"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/zip"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "application/zip"),
        ("application/vnd.oasis.opendocument.spreadsheet", "application/zip"),
        ("application/x-gzip", "application/gzip"),
        ("text/csv", "text/plain"),
        ("text/csv; charset=utf-8", "text/plain"),
        ("text/plain", "text/plain"),
        ("application/json", "text/plain"),
        ("text/html", "text/plain"),
        ("", "image/png"),
        (None, None),
        ("application/octet-stream", "application/pdf"),
        ("application/octet-stream", "text/plain"),
        ("video/mp4", None),
        ("application/x-parquet", None),
        ("video/mp4", "application/octet-stream"),
        ("text/csv", None),
        ("text/plain; charset=windows-1252", None),
    ],
)
def test_declared_type_matches_agreeing_or_unverifiable_types(
    declared: str | None, sniffed: str | None
) -> None:
    assert declared_type_matches(declared, sniffed)


@pytest.mark.parametrize(
    ("declared", "sniffed"),
    [
        ("image/png", "application/pdf"),
        ("image/png", "image/jpeg"),
        ("image/png", "text/plain"),
        ("image/png", None),
        ("application/pdf", "application/zip"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/pdf"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/plain"),
        ("application/zip", None),
        ("image/png", "application/octet-stream"),
        ("text/csv", "application/octet-stream"),
        ("application/json", None),  # text outside text/* must be UTF-8
        ("application/json", "application/octet-stream"),
        ("text/csv", "application/zip"),
        ("text/plain", "image/png"),
        ("application/json", "application/gzip"),
        ("video/mp4", "text/plain"),
        ("video/mp4", "image/png"),
    ],
)
def test_declared_type_matches_refuses_contradicting_types(declared: str, sniffed: str | None) -> None:
    assert not declared_type_matches(declared, sniffed)


@pytest.mark.parametrize(
    ("declared", "data", "matches"),
    [
        ("text/csv", CP1252_CSV, True),
        ("text/plain", UTF16_CSV, True),
        ("text/csv; charset=utf-16", UTF16_CSV, True),
        ("text/csv", "Name,Price\n".encode("utf-16-be"), False),
        ("text/csv", b"a,b\x00c", False),
        ("text/csv", PDF, False),
        ("text/csv", _zip_bytes(), False),
        ("application/json", CP1252_CSV, False),
    ],
)
def test_a_text_type_is_refused_only_for_a_known_format_or_bytes_no_text_has(
    declared: str, data: bytes, matches: bool
) -> None:
    """A CSV declared as text stands in whatever encoding it was saved (the same bytes declare
    nothing are taken too); bytes of a known binary format, or NULs no text encoding has, do not."""
    assert declared_type_matches(declared, sniff_mime(data)) is matches
    assert declared_type_matches(None, sniff_mime(data))


@pytest.mark.parametrize(
    ("declared", "sniffed", "served"),
    [
        ("text/csv; charset=utf-8", "text/plain", "text/csv"),
        (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/zip",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (None, "application/zip", "application/zip"),
        ("", None, "application/octet-stream"),
        ("application/octet-stream", "image/png", "image/png"),
        ("image/png", "application/pdf", "application/pdf"),  # a contradiction is never trusted
        ("video/mp4", None, "video/mp4"),
        ("text/csv; charset=windows-1252", None, "text/csv"),
        (None, None, "application/octet-stream"),
        (None, "application/octet-stream", "application/octet-stream"),
        ("text/html", "text/plain", "text/plain"),  # active content is not served as such
        ("image/svg+xml", "text/plain", "text/plain"),
        ("application/" + "x" * 300, None, "application/octet-stream"),
        ('text/ht"ml', "text/plain", "text/plain"),
    ],
)
def test_resolve_content_type_serves_the_most_specific_safe_type(
    declared: str | None, sniffed: str | None, served: str
) -> None:
    assert resolve_content_type(declared, sniffed) == served


@pytest.mark.parametrize(
    ("stored", "data", "served"),
    [
        ("text/csv", b"a,b\n", "text/csv; charset=utf-8"),
        ("text/plain", b"", "text/plain; charset=utf-8"),
        ("text/plain", UTF16_CSV, "text/plain; charset=utf-16"),
        ("text/csv", "a;b\n".encode("utf-16-be"), "text/csv"),  # no mark: the encoding is not told
        ("text/csv", CP1252_CSV, "text/csv"),
        # plain ASCII rows past the sniff window, then the first accented letter
        ("text/csv", ("id;name\n" + "1;x\n" * 200 + "2;Café 3 €\n").encode("cp1252"), "text/csv"),
        ("text/plain", "hi".encode("utf-32"), "text/plain"),  # a UTF-32 mark begins like UTF-16's
        ("image/png", PNG, "image/png"),
        ("application/json", b"{}", "application/json"),
    ],
)
def test_served_content_type_names_the_charset_the_bytes_tell(stored: str, data: bytes, served: str) -> None:
    assert served_content_type(stored, data) == served


@pytest.mark.parametrize("file_id", ["a", "report.xlsx", "A-b_c~d.1", "f" * 128, "0"])
def test_validate_file_id_accepts_safe_keys(file_id: str) -> None:
    assert validate_file_id(file_id) == file_id


@pytest.mark.parametrize(
    "file_id",
    ["", "..", ".", "../x", "a/../b", "a/b", "a\\b", "/etc/passwd", ".hidden", "a..b", "x" * 129,
     "a\x00b", "a b", "-x", "~x", "é", "a%2fb"],
)  # fmt: skip
def test_validate_file_id_refuses_unsafe_keys_without_quoting_them(file_id: str) -> None:
    with pytest.raises(InvalidFileId) as caught:
        validate_file_id(file_id)
    assert caught.value.code == "VALIDATION_ERROR"
    if len(file_id) > 2:  # "." and ".." appear in any explanation of the rule
        assert file_id not in str(caught.value)
