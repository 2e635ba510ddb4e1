"""Dependencies routes declare with `Annotated` aliases, so a route's signature says what it uses.

Everything comes from `app.state`, filled by the lifespan (api/app.py); nothing is built at import
time, so each app made by `create_app` (one per test, one per worker) has its own engine.

Dependencies are `async def` even when they never await: FastAPI runs a plain `def` dependency in its
thread pool, a hand-off to a worker thread and back for each one, on every request and handshake.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from api.auth import TokenVerifier
from api.settings import Settings
from engine.service import Engine


async def get_settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


async def get_engine(conn: HTTPConnection) -> Engine:
    engine: Engine = conn.app.state.engine
    return engine


async def get_verifier(conn: HTTPConnection) -> TokenVerifier:
    verifier: TokenVerifier = conn.app.state.verifier
    return verifier


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
VerifierDep = Annotated[TokenVerifier, Depends(get_verifier)]
