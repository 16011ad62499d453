"""The line codec and the retry policy, shared by the sync and the async client."""

import asyncio
import json
import socket
import ssl
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

from .errors import Busy, ConnectionLost, ProtocolMismatch, RateLimited, ShuttingDown, server_error


def encode(fields: Dict[str, Any], rid: int) -> bytes:
    """One request line. Strings go as UTF-8 (NUL and all), integers exactly."""
    line = dict(fields)
    line["rid"] = rid
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> Dict[str, Any]:
    try:
        answer = json.loads(line)
    except ValueError as error:
        raise ProtocolMismatch(f"the server's answer is not JSON: {line[:200]!r}") from error
    if not isinstance(answer, dict) or "ok" not in answer:
        raise ProtocolMismatch(f"the server's answer is not a response object: {line[:200]!r}")
    return answer


def outcome(answer: Dict[str, Any]) -> Tuple[bool, Any]:
    """``(True, answer)`` for success, ``(False, exception)`` for an error answer."""
    if answer.get("ok") is True:
        return True, answer
    return False, server_error(answer.get("error") or {})


class Backoff:
    """How long to wait before sending a request again: doubling from ``first`` up to ``most``
    seconds, and never less than a ``rate_limited`` answer's ``retry_after_ms``."""

    def __init__(self, retries: int, first: float, most: float):
        self.left = retries
        self.delay = first
        self.most = most

    def next(self, error: Optional[BaseException] = None) -> Optional[float]:
        """Seconds to wait before the next try, or None when no try is left."""
        if self.left <= 0:
            return None
        self.left -= 1
        wait = self.delay
        self.delay = min(self.delay * 2, self.most)
        if isinstance(error, RateLimited) and error.retry_after_ms is not None:
            wait = max(wait, error.retry_after_ms / 1000)
        return wait


def may_retry(error: BaseException, safe: bool, sent: bool) -> bool:
    """Whether a request may be sent again after ``error``: when it never left, or when it is
    safe to repeat and the error is one after which the server did nothing (``busy``,
    ``rate_limited``, ``shutting_down``) or the answer was lost with the connection."""
    if not isinstance(error, (Busy, RateLimited, ShuttingDown, OSError, ConnectionLost, asyncio.TimeoutError)):
        return False
    if isinstance(error, ssl.SSLCertVerificationError):
        return False  # trying again will not make the certificate trusted
    return safe or not sent


def keeps_connection(error: BaseException) -> bool:
    """Whether the connection is still good after ``error`` (else a new one is made)."""
    return isinstance(error, (Busy, RateLimited))


def raised(error: BaseException) -> BaseException:
    """What the caller gets for ``error``: a socket's failure as ``ConnectionLost``."""
    if isinstance(error, OSError) and not isinstance(
        error, (socket.timeout, asyncio.TimeoutError, ssl.SSLCertVerificationError)
    ):
        lost = ConnectionLost(str(error))
        lost.__cause__ = error
        return lost
    return error


class Settings:
    """What both clients are made with, and their rids and backoff."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 7420, secret: Optional[str] = None,
        timeout: Optional[float] = 30.0, retries: int = 8, backoff: float = 0.05, max_backoff: float = 2.0,
        ssl: Optional[Any] = None,
    ):
        self.ssl = ssl
        """An ``ssl.SSLContext`` for a server started with ``--tls-cert``; ``None``: plain TCP."""
        self.host = host
        self.port = port
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.key: Optional[str] = None
        """The key the connection authenticated as (``None`` without a secret)."""
        self._rid = 0
        self.sequences: "OrderedDict[str, int]" = OrderedDict()
        """From a cluster: the last sequence a write of each user was answered with (the most
        recent ``MAX_SEQUENCES`` users). A later request about that user carries it as
        ``min_seq``, so it sees the write whichever node answers it."""

    MAX_SEQUENCES = 65536

    def _line(self, fields: Dict[str, Any], rid: int) -> bytes:
        """The request line, with ``min_seq`` when a write of its user was answered with one."""
        user = fields.get("user")
        if isinstance(user, str) and user in self.sequences and "min_seq" not in fields:
            fields = dict(fields, min_seq=self.sequences[user])
        return encode(fields, rid)

    def _noted(self, answer: Dict[str, Any]) -> Dict[str, Any]:
        """Keeps the sequences a write's answer carries (``seqs``, from a cluster)."""
        seqs = answer.get("seqs")
        if isinstance(seqs, dict):
            for user, seq in seqs.items():
                if isinstance(seq, int) and seq > self.sequences.get(user, -1):
                    self.sequences[user] = seq
                    self.sequences.move_to_end(user)
            while len(self.sequences) > self.MAX_SEQUENCES:
                self.sequences.popitem(last=False)
        return answer

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def _backoff(self) -> Backoff:
        return Backoff(self.retries, self.backoff, self.max_backoff)
