"""A TCP relay on loopback that adds delay: per direction (half the added
round trip each way, every chunk held back and delivered in order), and/or
before it connects upstream (a host slow to accept). Used where the kernel has
no netem, and for B3's straggler.

It runs an asyncio loop in a thread of the bench process; stop() ends it.
Many relays can share one loop instead (relays.py runs them in a process of
their own, so that they do not compete with the bench for its GIL).

It also counts, per connection, the client's turns: bursts of client data that
follow data from the server after the client was silent for at least 0.8 of
the added round trip (the first burst counts too). A request that had to wait
for an answer is one turn, so the turns are the round trips a tool waits for,
the SSH handshake included; pipelined data (several requests sent before any
answer, or an upload the server acknowledges with window adjusts as it goes)
is one turn, as it costs one.
"""

from __future__ import annotations

import asyncio
import threading
import time


class DelayProxy:
    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], rtt_ms: float = 0.0,
                 accept_delay: float = 0.0, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.listen, self.upstream = listen, upstream
        self.one_way = rtt_ms / 2000.0
        self.accept_delay = accept_delay
        self.port = 0
        # With a loop given, the caller runs it (and awaits serve()); start() and stop() are not used.
        self._loop = loop or asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delayproxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.turns = 0  # client turns over all connections (see the module's docstring)

    def start(self) -> DelayProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    async def serve(self) -> None:
        await self._start()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.accept_delay:
            await asyncio.sleep(self.accept_delay)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        self.connections += 1
        last = ["server", 0.0]  # who sent last, when the client last sent; the first burst is a turn
        for w in (writer, up_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(self._pump(reader, up_writer, last, "client"),
                                 self._pump(up_reader, writer, last, "server"), return_exceptions=True)
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, last: list,
                    side: str) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError):
                    break
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                now = time.monotonic()
                if data and side == "client":
                    if last[0] == "server" and now - last[1] >= 1.6 * self.one_way:
                        self.turns += 1
                    last[1] = now
                if data:
                    last[0] = side
                await queue.put((now + self.one_way, data or None))
                if not data:
                    break
        except (ConnectionError, OSError):
            await queue.put((0, None))
        await task

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()  # the pumps see the connection end and finish on their own
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(tasks, timeout=5) if tasks else None

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
