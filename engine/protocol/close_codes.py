"""The WebSocket close codes the server sends, and what each tells a client to do.

    code  meaning                                                client should
    1000  normal                                                 -
    1008  bad-frame budget exceeded                              fix the client; reconnect
    1009  frame over MAX_MESSAGE_BYTES                           not resend it
    1011  internal error                                         reconnect with backoff, resume with `since`
    1012  node shutting down (rolling restart)                   reconnect at once (another node), resume
    1013  node full                                              reconnect with backoff (another node)
    4008  slow consumer (reason: `last_seq` per room)            reconnect, resume with `since`
    4401  authentication failed or token expired                 get a new token, then reconnect
    4410  removed by an admin                                    not reconnect automatically
    4429  too many connections for this user                     close another tab first

1xxx are RFC 6455's; 4xxx mirror an HTTP status, so a client can tell "fix your token" (4401) from
transient closes (1011, 1012, 1013, 4008), after which it resumes every room with `join_room since`.
docs/protocol.md shows the same table; a test keeps the two equal.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    BAD_FRAMES = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    NODE_FULL = 1013
    SLOW_CONSUMER = 4008
    AUTHENTICATION_FAILED = 4401
    REMOVED = 4410
    TOO_MANY_CONNECTIONS = 4429


RECONNECT: frozenset[CloseCode] = frozenset(
    {
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.NODE_FULL,
        CloseCode.SLOW_CONSUMER,
    }
)
"""Closes after which a client reconnects by itself and resumes each room with `join_room since`."""

__all__ = ["RECONNECT", "CloseCode"]
