"""A TCP proxy in front of the test PostgreSQL that a test can cut and restore.

It injects a real network fault (connections reset, new ones refused) without mocking the database:
the engine talks to the real server through it.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.engine import make_url


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        url = make_url(upstream_url)
        socket_dir = url.query.get("host")
        self._unix = f"{socket_dir}/.s.PGSQL.{url.port or 5432}" if isinstance(socket_dir, str) else None
        self._tcp = (url.host or "127.0.0.1", url.port or 5432)
        self._url = url
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return self._url.set(host="127.0.0.1", port=self.port, query={}).render_as_string(hide_password=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones, as a crashed database would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            if self._unix:
                up_r, up_w = await asyncio.open_unix_connection(self._unix)
            else:
                up_r, up_w = await asyncio.open_connection(*self._tcp)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, up_w))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        self._writers.discard(client_w)
        self._writers.discard(up_w)
