"""The asyncio client: every op a coroutine; many may be in flight on one connection."""

import asyncio
from typing import Any, Callable, Dict, Optional

from . import _wire
from ._ops import Operations, Request
from .errors import ConnectionLost, ContextStoreError, ProtocolMismatch, ServerError


class _Connection:
    """One connection: a task reads answers and hands each to the request waiting on its rid."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.waiting: Dict[int, "asyncio.Future[Dict[str, Any]]"] = {}
        self.write_lock = asyncio.Lock()
        self.closed: Optional[BaseException] = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        buffer = bytearray()
        scanned = 0
        try:
            while True:
                # Lines of any length: read in chunks rather than with readline(), whose buffer
                # stops at the stream's limit (64 KiB by default).
                chunk = await self.reader.read(1 << 18)
                if not chunk:
                    raise ConnectionLost("the server closed the connection")
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n", scanned)
                    if newline < 0:
                        scanned = len(buffer)
                        break
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    scanned = 0
                    self._deliver(_wire.decode(line))
        except (OSError, ContextStoreError, asyncio.CancelledError) as error:
            self._fail(error if not isinstance(error, asyncio.CancelledError) else ConnectionLost("closed"))

    def _deliver(self, answer: Dict[str, Any]) -> None:
        rid = answer.get("rid")
        future = self.waiting.pop(rid, None) if isinstance(rid, int) else None
        if future is not None:
            if not future.done():
                future.set_result(answer)
        elif answer.get("ok") is False and "rid" not in answer:
            # An error for the connection itself (overloaded, line_too_long): the server closes it.
            self._fail(_wire.outcome(answer)[1])

    def _fail(self, error: BaseException) -> None:
        if self.closed is None:
            self.closed = error if isinstance(error, ContextStoreError) else ConnectionLost(str(error))
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(self.closed)
        self.writer.close()

    async def send(self, line: bytes, rid: int, timeout: Optional[float]) -> Dict[str, Any]:
        if self.closed is not None:
            raise self.closed
        future: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        try:
            async with self.write_lock:
                if self.closed is not None:
                    raise self.closed
                self.writer.write(line)
                await self.writer.drain()
        except BaseException as error:
            # Not sent (or not all of it): nobody waits on the answer.
            self.waiting.pop(rid, None)
            if future.done() and not future.cancelled():
                future.exception()  # failed by `_fail` meanwhile: seen here
            future.cancel()
            if isinstance(error, OSError):
                self._fail(error)
                raise ConnectionLost(str(error)) from error
            raise
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(rid, None)

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, ContextStoreError):
            pass


class AsyncClient(_wire.Settings, Operations):
    """The asyncio twin of ``Client``: the same methods and retries, each a coroutine. Requests
    from many tasks share one connection, pipelined, and are matched to their answers by rid::

        async with AsyncClient(port=7420) as client:
            results = await asyncio.gather(*(client.search("alice", q) for q in questions))
    """

    def __init__(self, *args: Any, **settings: Any):
        super().__init__(*args, **settings)
        self._connection: Optional[_Connection] = None
        self._connecting: Optional[asyncio.Lock] = None

    async def __aenter__(self) -> "AsyncClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def connect(self) -> None:
        """Opens the connection now (it is otherwise opened by the first request) and authenticates."""
        await self._connect()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and self._connection.closed is None:
                return self._connection
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port, ssl=self.ssl), self.timeout)
            connection = _Connection(reader, writer)
            if self.secret is not None:
                rid = self._next_rid()
                try:
                    answer = await connection.send(
                        _wire.encode({"op": "auth", "secret": self.secret}, rid), rid, self.timeout
                    )
                except BaseException:
                    await connection.close()
                    raise
                ok, result = _wire.outcome(answer)
                if not ok:
                    await connection.close()
                    raise result
                self.key = result["key"]
            self._connection = connection
            return connection

    def _then(self, first: Any, then: Callable[[Any], Any]) -> Any:
        async def chained() -> Any:
            return await then(await first)

        return chained()

    async def _call(self, request: Request) -> Any:
        backoff = self._backoff()
        while True:
            sent = False
            connection = None
            try:
                connection = await self._connect()
                rid = self._next_rid()
                sent = True
                answer = await connection.send(self._line(request.fields, rid), rid, self.timeout)
                ok, result = _wire.outcome(self._noted(answer))
                if ok:
                    return request.parse(result)
                raise result
            except (ServerError, OSError, ConnectionLost, asyncio.TimeoutError) as error:
                wait = backoff.next(error) if _wire.may_retry(error, request.safe, sent) else None
                # A late answer to a request that timed out is dropped by its rid: the others
                # on the connection go on.
                timed_out = isinstance(error, asyncio.TimeoutError)
                if connection is not None and not (_wire.keeps_connection(error) or timed_out):
                    connection._fail(error)
                if wait is None:
                    raise _wire.raised(error)
                await asyncio.sleep(wait)


__all__ = ["AsyncClient", "ProtocolMismatch"]
