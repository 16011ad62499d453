/// A scalar a metadata filter compares a top-level metadata value with.
public enum MetadataValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case double(Double)
    case bool(Bool)
    case null

    /// Whether it is a number (`integer` or `double`): what a range bound must be.
    public var isNumber: Bool {
        switch self {
        case .integer, .double: true
        default: false
        }
    }
}

/// A test on one top-level key of a memory's metadata. A memory without the key fails it.
public struct MetadataCondition: Sendable, Equatable {
    public enum Test: Sendable, Equatable {
        /// Equal to the value. Numbers compare by value (3 equals 3.0); a string equals only a
        /// string with the same bytes.
        case equals(MetadataValue)
        /// Equal to one of the values.
        case oneOf([MetadataValue])
        /// A number inside every bound that is set (each bound is a number).
        case range(
            greaterThan: MetadataValue?, atLeast: MetadataValue?, lessThan: MetadataValue?, atMost: MetadataValue?)
    }

    public var key: String
    public var test: Test

    public init(key: String, test: Test) {
        self.key = key
        self.test = test
    }
}

/// Which of a user's memories an operation reads or removes: the row conditions the indexes
/// know (`RowFilter`) and conditions on metadata. Every condition that is set must hold.
public struct MemoryFilter: Sendable, Equatable {
    public var rows: RowFilter
    public var metadata: [MetadataCondition]

    public init(rows: RowFilter = RowFilter(), metadata: [MetadataCondition] = []) {
        self.rows = rows
        self.metadata = metadata
    }

    /// True when no condition is set, so every memory of the user matches.
    public var isEmpty: Bool { rows.isEmpty && metadata.isEmpty }
}

/// One page of a user's memories in time order (see `ListRequest`).
public struct ListRequest: Sendable, Equatable {
    /// The most memories one page may hold.
    public static let maximumLimit = 1000
    /// The page size of a request that names none.
    public static let defaultLimit = 100

    public var user: String
    public var filter: MemoryFilter
    /// Oldest first (the default) or newest first.
    public var newestFirst: Bool
    public var limit: Int
    /// Where the previous page ended (its `nextCursor`); nil for the first page.
    public var cursor: String?
    /// Return each memory's vector too.
    public var withVector: Bool
    /// Which memories it sees by validity: those that hold now (the default), at a time, or all.
    public var validity: ValidityView
    /// The time (unix milliseconds) the listing takes as now (expiry, which facts hold); nil:
    /// the server's clock.
    public var now: Int64?

    public init(
        user: String, filter: MemoryFilter = MemoryFilter(), newestFirst: Bool = false,
        limit: Int = ListRequest.defaultLimit, cursor: String? = nil, withVector: Bool = false,
        validity: ValidityView = .current, now: Int64? = nil
    ) {
        self.validity = validity
        self.now = now
        self.user = user
        self.filter = filter
        self.newestFirst = newestFirst
        self.limit = limit
        self.cursor = cursor
        self.withVector = withVector
    }
}

/// A page of `list`.
public struct ListPage: Sendable, Equatable {
    public var memories: [Memory]
    /// Pass it as the next request's cursor for the page after this one; nil on the last page.
    /// A cursor names a position in time order, so it stays valid while memories are added or
    /// removed: the next page starts after the last memory this one returned.
    public var nextCursor: String?

    public init(memories: [Memory], nextCursor: String?) {
        self.memories = memories
        self.nextCursor = nextCursor
    }
}

/// A user and how many memories it has (`users`).
public struct UserSummary: Sendable, Equatable {
    public var user: String
    public var memories: Int

    public init(user: String, memories: Int) {
        self.user = user
        self.memories = memories
    }
}

/// One session of a user, as `sessions` lists it.
public struct SessionSummary: Sendable, Equatable {
    /// Nil for the memories stored without a session.
    public var session: String?
    public var turns: Int
    /// The earliest and latest `createdAt` of its memories (unix milliseconds).
    public var firstAt: Int64
    public var lastAt: Int64

    public init(session: String?, turns: Int, firstAt: Int64, lastAt: Int64) {
        self.session = session
        self.turns = turns
        self.firstAt = firstAt
        self.lastAt = lastAt
    }
}

/// What `update` changes in a stored memory; a field left nil keeps its value. The text (and so
/// the vector) is not among them: a new text is a new `add` with the same id.
public struct MemoryChanges: Sendable, Equatable {
    /// `.some(nil)` removes the session.
    public var session: String??
    /// `.some(nil)` removes the role.
    public var role: Role??
    /// `.some(nil)` removes the speaker.
    public var speaker: String??
    /// A JSON object, as compact JSON text: replaces the metadata whole.
    public var metadata: String?
    public var createdAt: Int64?

    public init(
        session: String?? = nil, role: Role?? = nil, speaker: String?? = nil, metadata: String? = nil,
        createdAt: Int64? = nil
    ) {
        self.session = session
        self.role = role
        self.speaker = speaker
        self.metadata = metadata
        self.createdAt = createdAt
    }

    /// True when it changes nothing.
    public var isEmpty: Bool {
        session == nil && role == nil && speaker == nil && metadata == nil && createdAt == nil
    }
}
