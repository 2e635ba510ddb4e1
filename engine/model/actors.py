"""Who is acting: the authenticated user behind a connection, and what their roles let them do.

The api builds an `Actor` from a verified token; the engine decides with it and never sees the token.
Permission rules live here, next to the roles, so every entry point (WebSocket, REST, tests) applies
the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final, Literal

Role = Literal["admin", "editor", "viewer", "auditor"]
ROLES: Final = frozenset({"admin", "editor", "viewer", "auditor"})
DEFAULT_ROLES: Final[tuple[Role, ...]] = ("editor",)

# Joining persists a room event, so it is a write: auditors read history over REST instead.
_MAY_JOIN: Final = frozenset({"admin", "editor", "viewer"})
# What each role may send over the WebSocket (docs/protocol.md, `PERMISSION_DENIED`). A viewer watches
# and is seen (joins, cursor, status, typing, notifications) but changes no sheet, spends no AI and
# writes no file (an upload claims a file id for good); an auditor reads history over REST and sends
# nothing that is recorded. `ping` and `refresh_token` are never recorded: anyone.
_UPLOAD_MESSAGES: Final = frozenset({"file_upload_start", "file_upload_progress"})
_VIEWER_MAY_NOT: Final = (
    frozenset({"cell_update", "cells_update", "ai_request", "ai_cancel"}) | _UPLOAD_MESSAGES
)
_ANYONE_MAY: Final = frozenset({"ping", "refresh_token"})


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    username: str
    email: str | None = None
    roles: tuple[Role, ...] = DEFAULT_ROLES
    # Glob patterns of room ids this actor may join; None means any room.
    rooms: tuple[str, ...] | None = None

    def has_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    def may_enter(self, room_id: str) -> bool:
        """Whether the token's `rooms` patterns admit `room_id`.

        `fnmatchcase`, not `fnmatch`: the latter folds case on some platforms, which would let
        `Team-*` admit `team-1` on one OS and not on another.
        """
        if self.rooms is None:
            return True
        return any(fnmatchcase(room_id, pattern) for pattern in self.rooms)

    def rooms_regex(self) -> list[str] | None:
        """The token's `rooms` patterns as anchored POSIX regular expressions (for PostgreSQL's `~`),
        matching exactly what `may_enter` admits; None when any room is allowed."""
        return None if self.rooms is None else [glob_regex(pattern) for pattern in self.rooms]

    def may_join(self, room_id: str) -> bool:
        return bool(_MAY_JOIN.intersection(self.roles)) and self.may_enter(room_id)

    def may_send(self, message_type: str) -> bool:
        """Whether any of the actor's roles allows sending a message of `message_type`."""
        if message_type in _ANYONE_MAY or self.has_role("admin", "editor"):
            return True
        return self.has_role("viewer") and message_type not in _VIEWER_MAY_NOT

    def may_upload(self) -> bool:
        """Whether the actor may write files: `file_upload_start` and `file_upload_progress` over the
        WebSocket, and the body over REST (`PUT /api/v1/files/{file_id}`) follow this one rule."""
        return all(self.may_send(message_type) for message_type in _UPLOAD_MESSAGES)

    def public(self) -> dict[str, object]:
        """The user as other clients see it (the `user` of `connected`)."""
        return {
            "user_id": self.user_id,
            "username": self.username,
            "email": self.email,
            "roles": list(self.roles),
        }


_REGEX_SPECIAL: Final = frozenset(".^$*+?()[]{}|\\")


def glob_prefix(pattern: str) -> str:
    """The literal start every id `pattern` matches shares: what comes before its first `*`, `?` or
    `[` (a cheap test before the regular expression's)."""
    for index, char in enumerate(pattern):
        if char in "*?[":
            return pattern[:index]
    return pattern


def glob_regex(pattern: str) -> str:
    """`fnmatchcase`'s glob as an anchored regular expression that PostgreSQL and Python read alike:
    `*` any run, `?` one character, `[seq]` and `[!seq]` a set (a `[` without its `]` is itself),
    anything else literal."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
                continue
            out.append(_glob_set(pattern[i:j]))
            i = j + 1
        elif char in _REGEX_SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
    out.append("$")
    return "".join(out)


def _glob_set(body: str) -> str:
    """A glob set's body (between its brackets) as a regular expression, read as `fnmatch` reads it:
    split into chunks at the hyphens that make ranges, ranges that run backwards dropped (the chunks
    either side merged), then a leading `!` negating what is left (so `[z-a!]` admits any one
    character, as `fnmatch` has it; a hyphen right after that `!` is itself). Every ASCII character
    not a letter or digit is escaped: unescaped, a leading `^` would negate the set, and `[:`, `[.`
    or `[=` open a class in PostgreSQL's syntax. (No other character is special inside a set.)"""
    chunks = _set_chunks(body)
    negate = chunks[0].startswith("!")
    if negate:
        chunks[0] = chunks[0][1:]
        if not chunks[0] and len(chunks) > 1:  # "[^-...": the hyphen after the negation is itself
            chunks[0:2] = ["-" + chunks[1]]
    if chunks == [""]:
        return "." if negate else "(?!x)x"  # no character excluded; no character admitted
    items: list[str] = []
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        # A chunk's first character ends the range before it, its last starts the range after it.
        items += [_set_char(char) for char in chunk[1 if index else 0 : len(chunk) if last else -1]]
        if not last:
            items.append(f"{_set_char(chunk[-1])}-{_set_char(chunks[index + 1][0])}")
    return ("[^" if negate else "[") + "".join(items) + "]"


def _set_chunks(body: str) -> list[str]:
    """`fnmatch.translate`'s chunks of a set: the text between range hyphens (a hyphen first, after a
    leading `!`, right after a range, or last is a character), with each backwards range removed."""
    if "-" not in body:
        return [body]
    chunks: list[str] = []
    start, k = 0, (2 if body.startswith("!") else 1)
    while (k := body.find("-", k)) >= 0:
        chunks.append(body[start:k])
        start, k = k + 1, k + 3
    if body[start:]:
        chunks.append(body[start:])
    else:
        chunks[-1] += "-"
    for k in range(len(chunks) - 1, 0, -1):
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    return chunks


def _set_char(char: str) -> str:
    return char if not char.isascii() or char.isalnum() else "\\" + char
