/// The stable error codes of protocol v1. Clients branch on these; the message is for people.
public enum ErrorCode: String, Sendable, CaseIterable {
    /// The line is not valid JSON (or not valid UTF-8).
    case invalidJSON = "invalid_json"
    /// The line is valid JSON but not an object.
    case notObject = "not_object"
    /// `op` names no operation.
    case unknownOp = "unknown_op"
    /// A field the op does not know (a misspelt filter would otherwise be ignored); the
    /// message names it.
    case unknownField = "unknown_field"
    /// A required field is absent.
    case missingField = "missing_field"
    /// A field has the wrong JSON type.
    case wrongType = "wrong_type"
    /// A field has the right type but a value that is not allowed (empty user, unknown role...).
    case invalidValue = "invalid_value"
    /// A vector's length differs from the space's dimension.
    case wrongDimension = "wrong_dimension"
    /// A vector holds NaN or an infinity, or a number too large for float32.
    case nonFinite = "non_finite"
    /// `k` is not in 1...1000.
    case kOutOfRange = "k_out_of_range"
    /// No memory has that id.
    case notFound = "not_found"
    /// The request line exceeded the server's limit; the server closes the connection after this.
    case lineTooLong = "line_too_long"
    /// Too many requests are queued; retry later.
    case busy = "busy"
    /// The server is at a global limit (connections, or bytes of buffered request input); the
    /// connection is closed after this answer.
    case overloaded = "overloaded"
    /// The server is stopping and takes no new requests.
    case shuttingDown = "shutting_down"
    /// The database failed; nothing of the request was stored.
    case storageError = "storage_error"
    /// The request needs text embedded and the server runs without a model.
    case noEmbedder = "no_embedder"
    /// The request's vectors come from another model than the one that filled the space.
    case modelMismatch = "model_mismatch"
    /// A prompt's system text and query alone need more tokens than its budget; the error's
    /// `needed` says how many.
    case budgetTooSmall = "budget_too_small"
    /// A prompt names a template the server has not loaded.
    case unknownTemplate = "unknown_template"
    /// The server has keys and the connection has not authenticated (or its key was removed):
    /// send `auth` first. The connection stays open.
    case unauthorized = "unauthorized"
    /// The connection's key may not do this: its role does not allow the op, or a user the
    /// request names is outside its users.
    case forbidden = "forbidden"
    /// The key, or a user it names, is over its rate; nothing was done. The error's
    /// `retry_after_ms` says when it may be tried again.
    case rateLimited = "rate_limited"
    /// The request is larger than a limit allows (items, texts or bytes in one request, or a
    /// cost above its key's burst); nothing was done. Split it.
    case tooLarge = "too_large"
    /// A clustered server cannot make the write durable now (PostgreSQL has no writable
    /// primary with a synchronous standby, during a failover or a partition). The write was not
    /// acknowledged; it may have been logged, and the same request sent again is safe for
    /// `add` with an `id` and for `update`, `delete`, `forget`; retry later.
    case unavailable = "unavailable"
}
