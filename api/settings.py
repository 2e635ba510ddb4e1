"""Configuration from the environment (the seed's variable names) and an optional `.env` file.

Settings are built by `get_settings()` when the app or CLI starts, never at import time, so tests and
the CLI can set the environment first.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# What DATABASE_URL may start with; api/database_url.py reads the first two as asyncpg.
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # The seed's variables.
    redis_host: str | None = None
    redis_port: int = 6379
    jwt_secret_key: str | None = Field(default=None, repr=False)
    websocket_requests_per_minute: int = Field(default=60, ge=1)
    websocket_requests_per_hour: int = Field(default=1000, ge=1)
    websocket_block_duration_minutes: float = Field(default=15, ge=0)
    websocket_ping_interval: float = Field(default=25, gt=0)
    websocket_ping_timeout: float = Field(default=60, gt=0)

    # Ours.
    database_url: str | None = None
    data_dir: Path = Path(".data")
    # NoDecode: read "HS256,HS384" as text and split it below, instead of requiring JSON.
    jwt_algorithms: Annotated[list[str], NoDecode] = ["HS256"]
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    allowed_origins: Annotated[list[str], NoDecode] = []
    max_message_bytes: int = Field(default=64 * 1024, ge=256)
    # Caps on each node (engine/features/connections.py): connections in all (one more: close 1013),
    # per user (one more: TOO_MANY_CONNECTIONS and close 4429), and rooms per connection.
    max_connections: int = Field(default=10_000, ge=1)
    max_connections_per_user: int = Field(default=20, ge=1)
    max_rooms_per_connection: int = Field(default=100, ge=1)
    # Frames refused before reaching a handler (invalid JSON, unknown type, schema violation) that one
    # connection may send within the window; one more closes it with 1008.
    bad_frames_per_window: int = Field(default=20, ge=1)
    bad_frame_window_seconds: float = Field(default=10.0, gt=0)
    room_auto_create: bool = True
    # Per connection: messages queued for a socket before a durable one closes it as a slow consumer
    # (4008, resumable); above three quarters of it volatile messages are dropped (engine/fanout/hub.py).
    fanout_max_queue: int = Field(default=1024, ge=2)
    # Group commit: the most events one transaction carries, and how long the appender lingers for more
    # (0: none; under load batches fill while the previous commit is in flight, see bench/append.py).
    append_max_batch: int = Field(default=1000, ge=1)
    append_max_wait_ms: float = Field(default=0.0, ge=0)
    # How long an awaited append may take before the caller is told the store is unavailable.
    append_timeout_seconds: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    # AI: an OpenAI-compatible chat completions endpoint when all three are set, else the builtin analysis.
    ai_base_url: str | None = None
    ai_api_key: str | None = Field(default=None, repr=False)
    ai_model: str | None = None
    # Per user: the budget of volatile messages (cursor_move, typing_*, file_upload_progress), which
    # count against it instead of the seed's limits.
    volatile_messages_per_second: int = Field(default=30, ge=1)
    # The most cells one `cells_update` (a paste, a fill) may carry; the schema allows at most 10,000.
    max_cells_per_update: int = Field(default=1000, ge=1, le=10_000)
    # Typing without a stop ends (user_typing_stop, reason expired) after this many seconds.
    typing_timeout_seconds: float = Field(default=5.0, gt=0)
    # Logs: text at a terminal and JSON lines otherwise ("auto"), or forced, at LOG_LEVEL
    # (api/logging_setup.py).
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = Field(default="INFO", pattern=r"(?i)^(debug|info|warning|error|critical)$")
    # The largest file body `PUT /api/v1/files/{file_id}` stores; larger ones get 413 (default 50 MiB).
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=0)
    # An upload with nothing happening for this many seconds fails (file_upload_failed, idle_timeout):
    # a PUT body with no byte (answered 408), or a file_upload_start whose PUT never comes.
    upload_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    # "As of" reads of a room store a snapshot of its view every this many room events
    # (engine/readmodels/history.py).
    history_snapshot_interval: int = Field(default=100, ge=1)
    # Nodes on one database (engine/cluster/registry.py): heartbeat period, and the silence after which a
    # node counts as dead and a survivor records its connections' departures.
    node_heartbeat_seconds: float = Field(default=5.0, gt=0)
    node_dead_after_seconds: float = Field(default=15.0, gt=0)
    # The projection tables (rooms, members, notifications...) are updated in steps at least this far
    # apart, each folding every commit since the last (engine/readmodels/runner.py).
    projection_interval_ms: float = Field(default=100, ge=0)
    # How often nodes exchange their rate-limit counts (engine/cluster/rate_sync.py).
    rate_limit_sync_seconds: float = Field(default=1.0, gt=0)
    # Committed events travel to the other nodes on this NATS (engine/cluster/bus.py); unset, nodes
    # wake each other with NOTIFY and read the events from the log.
    nats_url: str | None = None
    # With NATS_URL and a log of several partitions: each partition is written by the one node holding
    # it, the others hand it their appends on NATS (engine/cluster/routed_appends.py).
    route_appends: bool = False
    # The partitions a new log is created with (engine/log/partitions.py): each has its own head and
    # writer. A log keeps the count it was created with; moving to another count is a new log.
    log_partitions: int = Field(default=1, ge=1, le=1024)
    # Request heads, of plain requests and WebSocket handshakes alike (api/http_protocol.py): the
    # request line and headers over this many bytes are answered 431, and a head not complete this
    # many seconds after its first byte (or the connection's opening) 408; the connection then closes.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("jwt_algorithms", "allowed_origins", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Accept "HS256,HS384" as well as a JSON list: people type both in a .env file.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    return json.loads(value)
                except json.JSONDecodeError:
                    raise ValueError(
                        'expected names separated by commas (HS256,HS512) or a JSON list (["HS256"])'
                    ) from None
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        scheme = value.strip().partition("://")[0]
        if scheme not in ("nats", "tls"):
            raise ValueError(f"expected nats://HOST:PORT (or tls://), got scheme {scheme[:20]!r}")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        # Refused here, with the expected form, rather than as a driver error at the first connect. The
        # message never quotes the URL: it may hold a password.
        if not value or not value.strip():
            return None
        scheme = value.strip().partition("://")[0]
        if scheme not in _POSTGRES_SCHEMES:
            raise ValueError(
                f"expected a PostgreSQL URL, postgresql://USER:PASSWORD@HOST:PORT/DATABASE (scheme "
                f"{' or '.join(_POSTGRES_SCHEMES)}), got scheme {scheme[:20]!r}"
            )
        from sqlalchemy.engine import make_url  # here: `collab token` need not import SQLAlchemy
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value.strip())
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a valid URL: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE, with special "
                "characters in the password percent-encoded (@ as %40)"
            ) from None
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_none_algorithm(cls, value: list[str]) -> list[str]:
        if not value or any(alg.lower() == "none" for alg in value):
            raise ValueError("JWT_ALGORITHMS must list real signing algorithms; 'none' is never accepted")
        return value

    @model_validator(mode="after")
    def _dead_after_outlasts_heartbeats(self) -> Settings:
        # A node must be allowed to miss a beat; otherwise live nodes would reap each other.
        if self.node_dead_after_seconds < 2 * self.node_heartbeat_seconds:
            raise ValueError("NODE_DEAD_AFTER_SECONDS must be at least twice NODE_HEARTBEAT_SECONDS")
        return self

    @model_validator(mode="after")
    def _routing_has_a_bus(self) -> Settings:
        # Silently writing every partition from every node would hide the misconfiguration.
        if self.route_appends and not self.nats_url:
            raise ValueError("ROUTE_APPENDS needs NATS_URL: appends travel to a partition's writer on NATS")
        return self

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "jwt_secret"


@lru_cache
def get_settings() -> Settings:
    return Settings()
