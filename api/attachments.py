"""How a download names itself: the `Content-Disposition` of every route that answers an attachment
(a file's bytes, a room's export), so none can put a name in a header that breaks it or that the
server cannot encode (Starlette writes headers as Latin-1)."""

from __future__ import annotations

from urllib.parse import quote


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback (quotes, backslashes and non-ASCII replaced) and the
    exact name percent-encoded (RFC 6266, RFC 8187), so no filename can break out of the header."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


__all__ = ["content_disposition"]
