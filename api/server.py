"""How uvicorn runs the app: protocol implementations and the WebSocket limits from the settings.

Shared by `collab serve` and the tests' in-process server, so both run the same configuration.
"""

from __future__ import annotations

import gc
import importlib.util
from typing import Any

from api.http_protocol import bounded_http_protocol
from api.settings import Settings

# Frames up to this many times MAX_MESSAGE_BYTES reach the app, which answers MESSAGE_TOO_LARGE before
# closing with 1009; larger ones are cut by the protocol layer (also 1009) before using memory.
OVERSIZE_HEADROOM = 4


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The fastest event loop installed; uvicorn's httptools protocol with request heads bounded by
    MAX_HEADER_BYTES and HEADER_TIMEOUT_SECONDS (api/http_protocol.py; every WebSocket handshake is
    read by it first); the sans-I/O websockets implementation, no per-message compression, and the
    seed's keepalive: a ping every WEBSOCKET_PING_INTERVAL seconds, and a connection whose pong does
    not come within WEBSOCKET_PING_TIMEOUT is closed (its rooms are then left, so no ghosts).

    uvicorn's plain "websockets" implementation runs on the library's legacy API, deprecated since
    websockets 14; "websockets-sansio" runs on the maintained core, which api/ws_protocol.py extends
    with a write that does not wait, for fanout.
    """
    from api.ws_protocol import DirectWriteProtocol

    return {
        "loop": "uvloop" if _installed("uvloop") else "auto",
        "http": bounded_http_protocol(settings),
        "ws": DirectWriteProtocol,
        "ws_max_size": settings.max_message_bytes * OVERSIZE_HEADROOM,
        # Compression is negotiated per connection, so a room's every delivery would be compressed
        # again for each member: profiled at about a fifth of the server's CPU under fanout, for
        # frames of a few hundred bytes that gain little from it.
        "ws_per_message_deflate": False,
        "ws_ping_interval": settings.websocket_ping_interval,
        "ws_ping_timeout": settings.websocket_ping_timeout,
    }


YOUNG_COLLECTION_THRESHOLD = 5_000


def settle_heap() -> None:
    """Leave what startup built out of every later garbage collection.

    The modules, routes, schemas and engine objects a started server holds live as long as the
    process, yet each full collection walks all of them: measured under fanout at up to 68 ms with
    the loop stopped, the largest single stall. Collected once and then frozen (`gc.freeze`), they
    are never walked again, and collections only see what the server allocated since.

    The youngest generation is then collected after YOUNG_COLLECTION_THRESHOLD net allocations
    instead of 700: at 700, enough objects outlived two young collections to start a full collection
    every 6 s under fanout at 2,000 msgs/s, 8 ms with the loop stopped and nothing found to free,
    each one a step in the p99. At 5,000 a 40 s run made 11 young collections instead of 883, and no
    full one.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
