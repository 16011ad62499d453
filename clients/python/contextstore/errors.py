"""Exceptions: one class per error code of docs/PROTOCOL.md, and the transport's own."""

from typing import Any, Dict, List, Optional


class ContextStoreError(Exception):
    """Base of every error this client raises."""


class ConnectionLost(ContextStoreError):
    """The connection closed or failed before the answer came; the request may or may not have run."""


class ProtocolMismatch(ContextStoreError):
    """The server answered something this client cannot read (not JSON, or another request's rid)."""


class ServerError(ContextStoreError):
    """The server answered ``{"ok":false,"error":{...}}``.

    ``code`` and ``message`` are the error's; ``details`` holds its further fields
    (``needed`` of ``budget_too_small``, ``retry_after_ms`` of ``rate_limited``).
    """

    code = "error"

    def __init__(self, code: str, message: str, details: Optional[Dict[str, Any]] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class InvalidJSON(ServerError):
    code = "invalid_json"


class NotObject(ServerError):
    code = "not_object"


class UnknownOp(ServerError):
    code = "unknown_op"


class UnknownField(ServerError):
    code = "unknown_field"


class MissingField(ServerError):
    code = "missing_field"


class WrongType(ServerError):
    code = "wrong_type"


class InvalidValue(ServerError):
    code = "invalid_value"


class WrongDimension(ServerError):
    code = "wrong_dimension"


class NonFinite(ServerError):
    code = "non_finite"


class KOutOfRange(ServerError):
    code = "k_out_of_range"


class NotFound(ServerError):
    code = "not_found"


class LineTooLong(ServerError):
    code = "line_too_long"


class Busy(ServerError):
    code = "busy"


class Overloaded(ServerError):
    code = "overloaded"


class ShuttingDown(ServerError):
    code = "shutting_down"


class StorageError(ServerError):
    code = "storage_error"


class NoEmbedder(ServerError):
    code = "no_embedder"


class ModelMismatch(ServerError):
    code = "model_mismatch"


class BudgetTooSmall(ServerError):
    code = "budget_too_small"

    @property
    def needed(self) -> Optional[int]:
        """Tokens the system text and the query alone need."""
        return self.details.get("needed")


class UnknownTemplate(ServerError):
    code = "unknown_template"


class Unauthorized(ServerError):
    code = "unauthorized"


class Forbidden(ServerError):
    code = "forbidden"


class RateLimited(ServerError):
    code = "rate_limited"

    @property
    def retry_after_ms(self) -> Optional[int]:
        """Milliseconds until the server would take the request."""
        return self.details.get("retry_after_ms")


class TooLarge(ServerError):
    """The request passes a limit (items, texts or bytes in one request, or a cost above the
    key's burst); nothing was done. Split it: sending it again cannot succeed."""

    code = "too_large"


class Unavailable(ServerError):
    """A clustered server cannot make a write durable now (a PostgreSQL failover or a
    partition); it was not acknowledged. Retry later (an ``add`` with its ``id``, so that a
    write that was logged after all is not stored twice)."""

    code = "unavailable"


ERRORS_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidJSON, NotObject, UnknownOp, UnknownField, MissingField, WrongType, InvalidValue,
        WrongDimension, NonFinite, KOutOfRange, NotFound, LineTooLong, Busy, Overloaded, ShuttingDown,
        StorageError, NoEmbedder, ModelMismatch, BudgetTooSmall, UnknownTemplate, Unauthorized, Forbidden,
        RateLimited, TooLarge, Unavailable,
    )
}


def server_error(error: Dict[str, Any]) -> ServerError:
    """The exception for an answer's ``error`` object (``ServerError`` itself for a code this client does not know)."""
    code = str(error.get("code", "error"))
    message = str(error.get("message", ""))
    details = {key: value for key, value in error.items() if key not in ("code", "message")}
    return ERRORS_BY_CODE.get(code, ServerError)(code, message, details)


class TurnsExist(ContextStoreError):
    """``add_messages``: ``ids`` already hold other turns of the session, which were kept (pass
    ``replace=True`` to overwrite them); ``added`` is what was stored of the rest."""

    def __init__(self, ids: List[str], added: Any) -> None:
        super().__init__(f"turns {ids} exist with other content and were kept; pass replace=True to overwrite")
        self.ids = ids
        self.added = added
