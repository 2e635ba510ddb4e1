"""`EngineConfig`: everything an engine needs to know at start, in one frozen value.

The api builds it from its settings (environment variables, api/settings.py), tests build it by hand;
the engine reads no environment itself. Defaults are the documented ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.features.limits import RateLimits


@dataclass(frozen=True, slots=True)
class EngineConfig:
    database_url: str = ""  # empty when the engine runs on a memory log
    node_id: str | None = None  # None: host, pid and a random suffix (engine/node.py)

    # Group commit (engine/log/appender.py): events per transaction, how long to linger for more (0:
    # none), and how long a caller waits for its commit before it is told the store is unavailable.
    max_batch: int = 1000
    max_wait: float = 0.0
    append_timeout: float = 5.0
    pool_size: int = 10
    health_timeout: float = 2.0  # seconds GET /ws/health waits for `SELECT 1`

    # Delivery: messages queued per connection before a durable one closes it as a slow consumer.
    max_queue: int = 1024

    # Connections: the greeting's heartbeat (the api's keepalive sends the pings) and the frame limit.
    heartbeat_interval: float = 25.0
    heartbeat_timeout: float = 60.0
    max_message_bytes: int = 64 * 1024
    # Caps on this node (engine/features/connections.py): open connections in all, per user, and
    # rooms per connection; and the bad-frame budget, frames refused before reaching a handler
    # (invalid JSON, unknown type, schema violation) per connection within a sliding window.
    max_connections: int = 10_000
    max_connections_per_user: int = 20
    max_rooms_per_connection: int = 100
    bad_frames_per_window: int = 20
    bad_frame_window: float = 10.0

    # Rooms and presence.
    room_auto_create: bool = True  # a join_room of a room with no events creates it
    typing_timeout: float = 5.0  # a typing_start with no stop ends after this many seconds
    # Uploads (engine/features/files.py, upload_sweeper.py): a body with no byte, or an upload with no
    # event, for this many seconds fails with reason `idle_timeout`.
    upload_idle_timeout: float = 30.0
    # The largest file a PUT stores (MAX_UPLOAD_BYTES); a `file_upload_start` announcing more is refused.
    max_upload_bytes: int = 50 * 1024 * 1024
    max_cells_per_update: int = 1000  # cells in one `cells_update` (at most the schema's 10,000)
    rate_limits: RateLimits = field(default_factory=RateLimits)

    # The projection tables (engine/readmodels/runner.py) follow the log in steps at least this many
    # seconds apart: under load one step folds many commits.
    projection_interval: float = 0.1

    # Several nodes on one database (engine/cluster/): heartbeat period, the silence after which a node
    # is dead and a survivor records its connections' departures, and the rate-limit exchange period.
    node_heartbeat: float = 5.0
    node_dead_after: float = 15.0
    rate_limit_sync: float = 1.0
    # Events committed here travel to the other nodes on this NATS (engine/cluster/bus.py); empty:
    # they learn of them by NOTIFY and read them from the log.
    nats_url: str = ""
    # With a bus and a log of several partitions, each partition is written by the node holding it
    # and the others hand it their batches (engine/cluster/routed_appends.py).
    route_appends: bool = False


__all__ = ["EngineConfig"]
