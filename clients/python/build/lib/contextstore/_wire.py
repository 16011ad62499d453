"""The line codec and the retry policy, shared by the sync and the async client."""

import json
from typing import Any, Dict, Optional, Tuple

from .errors import Busy, ContextStoreError, ProtocolMismatch, RateLimited, ServerError, ShuttingDown, server_error


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


def refused_for_now(error: ContextStoreError) -> bool:
    """Errors after which the server did nothing and will take the request later."""
    return isinstance(error, (Busy, RateLimited))


def server_going_away(error: ContextStoreError) -> bool:
    """The server is stopping: a new connection (to it restarted, or another) may take the request."""
    return isinstance(error, ShuttingDown)


__all__ = ["encode", "decode", "outcome", "Backoff", "refused_for_now", "server_going_away", "ServerError"]
