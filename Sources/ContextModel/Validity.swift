/// When a memory holds, apart from when it was stored, and the memories it replaced and was
/// replaced by (`add` with `supersedes`). A memory holds from `from` (its `createdAt` when nil)
/// until `to` (open when nil), which a successor sets to its own `from`.
public struct Validity: Sendable, Equatable {
    /// Unix milliseconds; nil: from the memory's `createdAt`.
    public var from: Int64?
    /// Unix milliseconds, the first moment it no longer holds; nil: it still does.
    public var to: Int64?
    /// The id (of the same user) of the memory this one replaced.
    public var supersedes: String?
    /// The id of the memory that replaced this one.
    public var supersededBy: String?

    public init(from: Int64? = nil, to: Int64? = nil, supersedes: String? = nil, supersededBy: String? = nil) {
        self.from = from
        self.to = to
        self.supersedes = supersedes
        self.supersededBy = supersededBy
    }

    /// True when nothing is set: the memory holds from when it was stored, for good.
    public var isOpen: Bool { from == nil && to == nil && supersedes == nil && supersededBy == nil }

    /// Whether it bounds when its memory holds (so a read at some time may leave it out).
    public var isBounded: Bool { from != nil || to != nil }
}

/// Which memories a read sees by their validity (`Validity`).
public enum ValidityView: Sendable, Equatable {
    /// Those that hold at the read's time: a superseded memory is left out.
    case current
    /// Those that held at this time (unix milliseconds) and had been stored by then
    /// (`createdAt` at or before it): what the memory said then.
    case asOf(Int64)
    /// All of them, superseded or not: the history.
    case all
}

extension RowFilter {
    /// This filter narrowed to the rows `view` sees at `now`.
    /// - Parameter tested: Whether some row may not hold at `now` (it has a bounded validity, or
    ///   begins later): while none may, the current view needs no test (and the filter stays
    ///   empty, for the indexes' fast path).
    public func seeing(_ view: ValidityView, at now: Int64, tested: Bool) -> RowFilter {
        var filter = self
        switch view {
        case .current:
            if tested { filter.validAt = now }
        case .asOf(let time):
            filter.validAt = time
            filter.until = min(until ?? time, time)
        case .all:
            break
        }
        return filter
    }
}
