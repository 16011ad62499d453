/// Who produced a conversation turn.
public enum Role: String, Sendable, CaseIterable {
    case user, assistant, system, tool
}

/// One stored conversation turn.
public struct Memory: Sendable, Equatable {
    /// Unique in the space.
    public var id: String
    /// The tenant; searches are scoped to one user.
    public var user: String
    public var session: String?
    public var role: Role?
    /// Who said it (a person's name), apart from the chat role.
    public var speaker: String?
    public var text: String
    /// Unix milliseconds.
    public var createdAt: Int64
    /// A JSON object, as compact JSON text. The engine stores it as given and never parses it.
    public var metadata: String
    /// The embedding (normalized when the space's metric is cosine). Empty when not loaded.
    public var vector: [Float]
    /// When it expires (unix milliseconds): from then on no read returns it, and it is purged.
    /// Nil: never.
    public var expiresAt: Int64?
    /// When it holds, and what it replaced or was replaced by.
    public var validity: Validity
    /// Where it came from (`NewMemory.sources`), in the order given.
    public var sources: [String]

    public init(
        id: String, user: String, session: String? = nil, role: Role? = nil, speaker: String? = nil, text: String,
        createdAt: Int64, metadata: String = "{}", vector: [Float], expiresAt: Int64? = nil,
        validity: Validity = Validity(), sources: [String] = []
    ) {
        self.expiresAt = expiresAt
        self.validity = validity
        self.sources = sources
        self.id = id
        self.user = user
        self.session = session
        self.role = role
        self.speaker = speaker
        self.text = text
        self.createdAt = createdAt
        self.metadata = metadata
        self.vector = vector
    }
}

/// A memory to be added: `id` and `createdAt` are filled in by the store when nil, and `vector`
/// by the server's embedding model (from `text`) when nil.
public struct NewMemory: Sendable, Equatable {
    /// The longest `ttl`: 100 years, in seconds.
    public static let maximumTTL: Int64 = 3_155_760_000
    /// The most `sources` a memory may name.
    public static let maximumSources = 64

    public var id: String?
    public var user: String
    public var session: String?
    public var role: Role?
    /// Who said it (a person's name), apart from the chat role.
    public var speaker: String?
    public var text: String
    public var createdAt: Int64?
    public var metadata: String
    public var vector: [Float]?
    /// For a text longer than the model reads: the embeddings of overlapping windows after the
    /// first (which is `vector`), filled in by the server's model. A search scores the memory
    /// by the best of `vector` and these.
    public var windows: [[Float]]
    /// Seconds from when it is stored until it expires (see `Memory.expiresAt`); nil: never.
    public var ttl: Int64?
    /// When it expires (unix milliseconds), given outright (a restore of an export) instead of
    /// `ttl`; nil: as `ttl` says.
    public var expiresAt: Int64?
    /// From when it holds (see `Validity.from`); nil: from its `createdAt`.
    public var validFrom: Int64?
    /// The id of a memory of the same user that this one replaces: stored in the same
    /// transaction, which closes the old one's validity at this one's start.
    public var supersedes: String?
    /// Where it came from: ids of the user's turns it was derived from, or any other references
    /// (a document and an offset). `forget` and `delete` with `withDerived` take it with them.
    public var sources: [String]
    /// Store nothing when the user has this memory already (see `Dedupe`); nil: always store.
    public var dedupe: Dedupe?
    /// How often users said it helped, and did not (`feedback`): 0 for a new memory, the
    /// exported counts for a restore. A memory it replaces loses its own.
    public var helped: Int64
    public var notHelped: Int64
    /// The most a feedback count may be given as: the largest integer a JSON number holds exactly.
    public static let maximumFeedbackCount: Int64 = (1 << 53) - 1

    public init(
        id: String? = nil, user: String, session: String? = nil, role: Role? = nil, speaker: String? = nil,
        text: String, createdAt: Int64? = nil, metadata: String = "{}", vector: [Float]?, windows: [[Float]] = [],
        ttl: Int64? = nil, expiresAt: Int64? = nil, validFrom: Int64? = nil, supersedes: String? = nil,
        sources: [String] = [], dedupe: Dedupe? = nil, helped: Int64 = 0, notHelped: Int64 = 0
    ) {
        self.helped = helped
        self.notHelped = notHelped
        self.ttl = ttl
        self.expiresAt = expiresAt
        self.dedupe = dedupe
        self.sources = sources
        self.validFrom = validFrom
        self.supersedes = supersedes
        self.id = id
        self.user = user
        self.session = session
        self.role = role
        self.speaker = speaker
        self.text = text
        self.createdAt = createdAt
        self.metadata = metadata
        self.vector = vector
        self.windows = windows
    }
}

/// A search result: the memory (without its vector), its score, and what the search asked for
/// besides.
public struct ScoredMemory: Sendable, Equatable {
    public var memory: Memory
    /// By mode: cosine similarity or inner product (higher is better), or Euclidean distance for
    /// `l2` (vector); BM25 relevance (keyword); the fused reciprocal-rank score (hybrid, and any
    /// mode with `half_life`). Hits are ordered by it.
    public var score: Float
    /// The parts of the score, when the search asked (`explain`).
    public var explanation: Explanation?
    /// The turns around it in its session, in time order (`context`), none returned before.
    public var context: [Memory]

    public init(memory: Memory, score: Float, explanation: Explanation? = nil, context: [Memory] = []) {
        self.memory = memory
        self.score = score
        self.explanation = explanation
        self.context = context
    }
}

/// Counts and sizes of a memory space.
public struct StoreStats: Sendable, Equatable {
    public var memories: Int
    public var users: Int
    public var dimension: Int?
    public var metric: Metric
    /// `flat` or `hnsw`.
    public var index: String
    /// How the flat index keeps rows in memory: `float32`, `float16` or `int8`.
    public var flatStorage: String
    /// The database file plus its write-ahead log.
    public var bytesOnDisk: Int64
    /// Vectors, row bookkeeping and cached memory fields held in memory (an estimate).
    public var bytesInMemory: Int
    /// Memories past their expiry that the background purge has not deleted yet (no read
    /// returns them; `memories` counts them).
    public var expired: Int
    /// Expired memories deleted by the purge, over the space's life.
    public var purged: Int64
    /// Adds that stored nothing because the user had the memory (`dedupe`), over the space's life.
    public var duplicates: Int64

    public init(
        memories: Int, users: Int, dimension: Int?, metric: Metric, index: String, flatStorage: String = "float32",
        bytesOnDisk: Int64, bytesInMemory: Int, expired: Int = 0, purged: Int64 = 0, duplicates: Int64 = 0
    ) {
        self.flatStorage = flatStorage
        self.duplicates = duplicates
        self.expired = expired
        self.purged = purged
        self.memories = memories
        self.users = users
        self.dimension = dimension
        self.metric = metric
        self.index = index
        self.bytesOnDisk = bytesOnDisk
        self.bytesInMemory = bytesInMemory
    }
}

/// Names one memory: an id is unique within its user, so a memory is named by both.
public struct MemoryRef: Sendable, Equatable, Hashable {
    public var user: String
    public var id: String

    public init(user: String, id: String) {
        self.user = user
        self.id = id
    }
}
