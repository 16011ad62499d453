"""The blocking client: ``Client`` and its ``Pipeline``."""

import select
import selectors
import socket
import ssl
import time
from typing import Any, Callable, Dict, List, Optional

from . import _wire
from ._ops import Operations, Request
from .errors import ConnectionLost, ContextStoreError, ProtocolMismatch, ServerError


class _Connection:
    """A socket and the bytes read from it that do not yet make a whole line."""

    def __init__(self, host: str, port: int, timeout: Optional[float], tls: Optional[ssl.SSLContext] = None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        self.buffer = bytearray()
        self.scanned = 0  # bytes of ``buffer`` known to hold no newline

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def closed_by_peer(self) -> bool:
        """Whether the server has closed its end (nothing read is waiting): a request sent now
        would be lost, so a new connection is made before sending rather than after."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable or self.buffer:
            return False
        if isinstance(self.sock, ssl.SSLSocket):
            # TLS cannot peek. A record that is not data (a session ticket) reads as nothing; a
            # server sends data unasked only as its last words before closing.
            self.sock.setblocking(False)
            try:
                self.sock.recv(1 << 16)  # the end of the stream, or the server's last words
                return True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return False
            except OSError:
                return True
            finally:
                self.sock.settimeout(self.timeout)
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _take_line(self) -> Optional[bytes]:
        newline = self.buffer.find(b"\n", self.scanned)
        if newline < 0:
            self.scanned = len(self.buffer)
            return None
        line = bytes(self.buffer[:newline])
        del self.buffer[: newline + 1]
        self.scanned = 0
        return line

    def _receive(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionLost("the server closed the connection")
        self.buffer += chunk
        # TLS may hold decrypted bytes a select on the socket does not see.
        while isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            self.buffer += self.sock.recv(self.sock.pending())

    def roundtrip(self, line: bytes) -> bytes:
        """Sends one request line and reads one answer line (any length)."""
        self.sock.sendall(line)
        while True:
            answer = self._take_line()
            if answer is not None:
                return answer
            self._receive()

    def exchange(self, lines: List[bytes], answers: List[bytes]) -> None:
        """Sends ``lines`` while reading their answers into ``answers`` as they come, so neither
        side waits on a full socket buffer; returns once every answer is in. On a failure,
        ``answers`` holds those that came."""
        data = memoryview(b"".join(lines))
        sent = 0
        selector = selectors.DefaultSelector()
        self.sock.setblocking(False)
        try:
            selector.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            writing = True
            while len(answers) < len(lines):
                if writing and sent == len(data):
                    selector.modify(self.sock, selectors.EVENT_READ)
                    writing = False
                ready = selector.select(self.timeout)
                if not ready:
                    raise socket.timeout("no answer within the timeout")
                events = ready[0][1]
                if events & selectors.EVENT_WRITE:
                    try:
                        sent += self.sock.send(data[sent : sent + (1 << 20)])
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass
                if events & selectors.EVENT_READ:
                    try:
                        self._receive()
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue
                    while True:
                        answer = self._take_line()
                        if answer is None:
                            break
                        answers.append(answer)
        finally:
            selector.close()
            self.sock.settimeout(self.timeout)


class Client(_wire.Settings, Operations):
    """A connection to a ContextStore server, one method per op (see ``Operations``):
    ``Client(host="127.0.0.1", port=7420, secret=None, timeout=30.0, retries=8, backoff=0.05,
    max_backoff=2.0)``.

    ``secret``: the key to authenticate with (on every new connection). ``timeout``: seconds to
    wait for a connection or an answer. A request that is safe to repeat (reads, and writes that
    carry their ids) is sent again after a lost connection (reconnecting and authenticating
    again), ``busy`` or ``rate_limited`` (waiting at least its ``retry_after_ms``), up to
    ``retries`` times with a backoff doubling from ``backoff`` to ``max_backoff`` seconds; any
    other request raises.

    One connection, one request at a time: a ``Client`` is not for several threads at once
    (give each thread its own, or share one ``AsyncClient`` among tasks).
    """

    def __init__(self, *args: Any, **settings: Any):
        super().__init__(*args, **settings)
        self._connection: Optional[_Connection] = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def connect(self) -> None:
        """Opens the connection now (it is otherwise opened by the first request) and authenticates."""
        self._connect()

    def pipeline(self) -> "Pipeline":
        """Requests sent together on this connection and answered in one go::

            with client.pipeline() as batch:
                pending = [batch.search("alice", "tea?", k=5) for _ in range(100)]
            hits = [p.result() for p in pending]
        """
        return Pipeline(self)

    # Transport

    def _connect(self) -> _Connection:
        if self._connection is not None and self._connection.closed_by_peer():
            self._drop()
        if self._connection is None:
            connection = _Connection(self.host, self.port, self.timeout, self.ssl)
            try:
                if self.secret is not None:
                    ok, answer = _wire.outcome(
                        _wire.decode(connection.roundtrip(_wire.encode({"op": "auth", "secret": self.secret}, 0)))
                    )
                    if not ok:
                        raise answer
                    self.key = answer["key"]
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        self.close()

    def _then(self, first: Any, then: Callable[[Any], Any]) -> Any:
        return then(first)

    def _call(self, request: Request) -> Any:
        backoff = self._backoff()
        while True:
            sent = False
            try:
                connection = self._connect()
                rid = self._next_rid()
                sent = True
                answer = self._noted(_wire.decode(connection.roundtrip(self._line(request.fields, rid))))
                if answer.get("rid") != rid:
                    self._drop()
                    if "rid" not in answer and answer.get("ok") is False:
                        raise _wire.outcome(answer)[1]  # an error for the connection (overloaded, ...)
                    raise ProtocolMismatch(f"answer for rid {answer.get('rid')!r}, expected {rid}")
                ok, result = _wire.outcome(answer)
                if ok:
                    return request.parse(result)
                raise result
            except (ServerError, OSError, ConnectionLost) as error:
                wait = backoff.next(error) if _wire.may_retry(error, request.safe, sent) else None
                if not _wire.keeps_connection(error):
                    self._drop()
                if wait is None:
                    raise _wire.raised(error)
                time.sleep(wait)


class Pending:
    """A pipelined request's result, once the pipeline has run."""

    def __init__(self, request: Request):
        self.request = request
        self._done = False
        self._value: Any = None
        self._error: Optional[BaseException] = None

    def _set(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        self._done, self._value, self._error = True, value, error

    def result(self) -> Any:
        """The request's result, or its exception raised."""
        if not self._done:
            raise RuntimeError("the pipeline has not run yet")
        if self._error is not None:
            raise self._error
        return self._value


class Pipeline(Operations):
    """Queues requests (the same methods as ``Client``, each returning a ``Pending``) and sends
    them in one go when the ``with`` block ends (or on ``execute()``), reading the answers while
    it writes. Answers are matched by ``rid``. What the connection could not finish is sent
    again one by one when it is safe to repeat; otherwise its ``Pending`` raises."""

    def __init__(self, client: Client):
        self.client = client
        self.pending: List[Pending] = []

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if kind is None:
            self.execute()

    def _then(self, first: Any, then: Callable[[Any], Any]) -> Any:
        raise ValueError("a pipeline cannot wait for one answer to send the next; pass first_index")

    def _call(self, request: Request) -> Pending:
        pending = Pending(request)
        self.pending.append(pending)
        return pending

    def execute(self) -> List[Pending]:
        queued, self.pending = self.pending, []
        if not queued:
            return queued
        client = self.client
        rids = [client._next_rid() for _ in queued]
        lines = [client._line(p.request.fields, rid) for p, rid in zip(queued, rids)]
        answers: List[bytes] = []
        lost: Optional[BaseException] = None
        try:
            client._connect().exchange(lines, answers)
        except (OSError, ContextStoreError) as error:
            client._drop()
            lost = error
        by_rid: Dict[Any, Dict[str, Any]] = {}
        for line in answers:
            answer = client._noted(_wire.decode(line))
            by_rid[answer.get("rid")] = answer
        for pending, rid in zip(queued, rids):
            answer = by_rid.get(rid)
            error: BaseException
            if answer is None:
                error = ConnectionLost(f"the connection was lost before the answer: {lost}")
            else:
                ok, result = _wire.outcome(answer)
                if ok:
                    pending._set(pending.request.parse(result))
                    continue
                error = result
            if _wire.may_retry(error, pending.request.safe, sent=True):
                self._again(pending)  # one by one, with the client's backoff
            else:
                pending._set(error=error)
        return queued

    def _again(self, pending: Pending) -> None:
        try:
            pending._set(self.client._call(pending.request))
        except ContextStoreError as error:
            pending._set(error=error)
        except OSError as error:
            pending._set(error=ConnectionLost(str(error)))
