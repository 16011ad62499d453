/// What the flat index keeps about each row beyond its vector, so a scoped search can filter
/// without leaving the index.
public struct RowAttributes: Sendable, Equatable {
    public var session: String?
    public var role: Role?
    /// Unix milliseconds.
    public var createdAt: Int64
    public var speaker: String?
    /// Unix milliseconds; nil: never expires.
    public var expiresAt: Int64?
    /// When the row's memory holds (`Validity.from`, `.to`); nil: unbounded on that side.
    public var validFrom: Int64?
    public var validTo: Int64?

    public init(
        session: String?, role: Role?, createdAt: Int64, speaker: String? = nil, expiresAt: Int64? = nil,
        validFrom: Int64? = nil, validTo: Int64? = nil
    ) {
        self.expiresAt = expiresAt
        self.validFrom = validFrom
        self.validTo = validTo
        self.session = session
        self.role = role
        self.createdAt = createdAt
        self.speaker = speaker
    }
}

extension Memory {
    /// The fields an index filters a memory's rows by (its expiry included: a row without it
    /// would be returned after it expired).
    public var attributes: RowAttributes {
        RowAttributes(
            session: session, role: role, createdAt: createdAt, speaker: speaker, expiresAt: expiresAt,
            validFrom: validity.from, validTo: validity.to)
    }
}

/// Narrows a search within one user's rows. Every condition that is set must hold.
public struct RowFilter: Sendable, Equatable {
    public var session: String?
    public var role: Role?
    public var speaker: String?
    /// Inclusive lower bound on `createdAt` (unix milliseconds).
    public var since: Int64?
    /// Inclusive upper bound on `createdAt` (unix milliseconds).
    public var until: Int64?
    /// Rows that expire at or before this time (unix milliseconds) fail: set by the store, at
    /// the moment of the search, while the space holds expiring memories.
    public var liveAt: Int64?
    /// Rows whose memory does not hold at this time (unix milliseconds: `validFrom` after it, or
    /// `validTo` at or before it) fail: set by the store for a read's `ValidityView`.
    public var validAt: Int64?

    public init(
        session: String? = nil, role: Role? = nil, since: Int64? = nil, until: Int64? = nil, speaker: String? = nil
    ) {
        self.speaker = speaker
        self.session = session
        self.role = role
        self.since = since
        self.until = until
    }

    /// True when no condition is set, so every row matches.
    public var isEmpty: Bool {
        session == nil && role == nil && since == nil && until == nil && speaker == nil && liveAt == nil
            && validAt == nil
    }

    /// Whether a row with these attributes passes every condition.
    @inlinable
    public func matches(_ row: RowAttributes) -> Bool {
        // Bytes, as SQLite compares text (see ExactString).
        if let session, !row.session.bytewiseEquals(session) { return false }
        if let speaker, !row.speaker.bytewiseEquals(speaker) { return false }
        if let role, row.role != role { return false }
        if let since, row.createdAt < since { return false }
        if let until, row.createdAt > until { return false }
        if let liveAt, let expiresAt = row.expiresAt, expiresAt <= liveAt { return false }
        if let validAt {
            if row.validFrom ?? row.createdAt > validAt { return false }
            if let validTo = row.validTo, validTo <= validAt { return false }
        }
        return true
    }
}
