"""A TCP proxy in front of a real server that can take it down, bring it back, or slow it: storage
faults for tests, without losing what the server holds (stopping moto itself would empty it).

    proxy = FaultProxy(target_port=9000).start()   # clients use proxy.port instead of 9000
    proxy.down()         # new connections refused, open ones cut: "the store is unreachable"
    proxy.up()           # the same port serves again
    proxy.slow(0.2)      # every chunk forwarded 0.2 s late, both ways
    proxy.stop()

It runs an asyncio loop in a daemon thread of the process that starts it.
"""

from __future__ import annotations

import asyncio
import socket
import threading

HOST = "127.0.0.1"


class FaultProxy:
    def __init__(self, target_port: int, port: int = 0, target_host: str = HOST):
        self.target = (target_host, target_port)
        self.port = port or _free_port()
        self.delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        if self._server is None:
            self._server = self._call(asyncio.start_server(self._serve, HOST, self.port))

    def down(self) -> None:
        """Refuse new connections and cut the open ones, as a crashed or unreachable server."""
        self._call(self._down())

    def slow(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def stop(self) -> None:
        self.down()
        self._call(self._cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    @staticmethod
    async def _cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))
        await asyncio.gather(
            self._pipe(client_reader, server_writer),
            self._pipe(server_reader, client_writer),
            return_exceptions=True,
        )
        for writer in (client_writer, server_writer):
            self._open.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader, writer) -> None:
        while data := await reader.read(65536):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
