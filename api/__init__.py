"""Thin FastAPI adapter over the engine: settings, auth, WebSocket framing, REST routes and the CLI."""
