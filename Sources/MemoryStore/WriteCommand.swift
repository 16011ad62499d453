import ContextModel

/// A change to a memory space with every choice already made: ids, times, expiry, vectors (in
/// the form the space stores them) and the clock that every test of time reads (`asOf`).
/// Applying the same commands in the same order to two empty spaces gives the same rows
/// (`MemoryStore.apply(_:index:)`, `MemoryStore.digest`), so commands can be logged, shipped
/// and replayed. `MemoryStore.resolve` turns a request into one; nothing after it reads a clock
/// or draws an id.
public enum WriteCommand: Sendable, Equatable {
    /// Stores memories (see `AddCommand`).
    case add(AddCommand)
    /// Changes a memory's session, role, speaker, metadata or time; a memory expired by `asOf`
    /// is not found.
    case update(MemoryRef, MemoryChanges, asOf: Int64)
    /// Counts one user's word on a memory; a memory expired by `asOf` is not found.
    case feedback(MemoryRef, helped: Bool, asOf: Int64)
    /// Deletes a memory and, `withDerived`, the user's memories whose sources name it.
    case delete(MemoryRef, withDerived: Bool = false)
    /// Deletes the user's memories that pass the filter (all of them when it is empty), its
    /// times read at `asOf`, and, `withDerived`, the user's memories whose sources name one of
    /// them.
    case forget(user: String, MemoryFilter, asOf: Int64, withDerived: Bool = false)
    /// Deletes at most `limit` memories expired by `asOf`, the longest expired first.
    case purge(asOf: Int64, limit: Int)

    /// The name of its kind, for logs and errors.
    public var kind: String {
        switch self {
        case .add(let add): add.ifAbsent ? "add_if_absent" : "add"
        case .update: "update"
        case .feedback: "feedback"
        case .delete: "delete"
        case .forget: "forget"
        case .purge: "purge"
        }
    }
}

/// Memories to store, in one transaction: all or none.
public struct AddCommand: Sendable, Equatable {
    public var memories: [ResolvedMemory]
    /// False: a memory whose id its user has replaces it. True (an import that may run again):
    /// such a memory is left out, as `skipped` when it equals the stored one and as a conflict
    /// otherwise (see `MemoryStore.AddOutcome`).
    public var ifAbsent: Bool

    public init(_ memories: [ResolvedMemory], ifAbsent: Bool = false) {
        self.memories = memories
        self.ifAbsent = ifAbsent
    }
}

/// A memory as it will be stored: its id, time, expiry and vector decided.
public struct ResolvedMemory: Sendable, Equatable {
    public var memory: Memory
    /// The embeddings of the text's windows after the first (see `NewMemory.windows`).
    public var windows: [[Float]]
    /// Whether the request gave `created_at` (an `ifAbsent` add compares the time only then).
    public var timeGiven: Bool
    /// Store nothing when the user has this memory (see `Dedupe`).
    public var dedupe: Dedupe?
    /// The counts it is stored with (a restore's; none for a new memory).
    public var feedback: FeedbackCounts

    public init(
        _ memory: Memory, windows: [[Float]] = [], timeGiven: Bool = true, dedupe: Dedupe? = nil,
        feedback: FeedbackCounts = .zero
    ) {
        self.memory = memory
        self.windows = windows
        self.timeGiven = timeGiven
        self.dedupe = dedupe
        self.feedback = feedback
    }
}

/// What applying a command did.
public enum WriteOutcome: Sendable, Equatable {
    case added(MemoryStore.AddOutcome)
    /// The memory as it now is (without its vector); nil when there was none.
    case updated(Memory?)
    /// The memory's counts; nil when there was none.
    case counted(FeedbackCounts?)
    /// Whether the memory was there, and how many memories derived from it went with it.
    case deleted(Bool, derived: Int = 0)
    /// Memories a `purge` deleted.
    case removed(Int)
    /// What a `forget` deleted.
    case forgotten(Removal)
}

/// Counts of the places a memory's data lives: memory rows, their keyword rows, window rows and
/// source rows in the file; rows of the in-memory indexes (vectors and windows'); graph nodes.
public struct MemoryPlaces: Sendable, Equatable {
    public var memories = 0
    public var keywordRows = 0
    public var windowRows = 0
    public var sourceRows = 0
    public var vectors = 0
    public var graphNodes = 0

    public init() {}

    /// By the names the wire gives the places.
    public var byName: [String: Int] {
        [
            "memories": memories, "keyword_rows": keywordRows, "window_rows": windowRows, "source_rows": sourceRows,
            "vectors": vectors, "graph_nodes": graphNodes,
        ]
    }
}

/// What a `forget` removed, counted where it removed it.
public struct Removal: Sendable, Equatable {
    public var counts = MemoryPlaces()
    /// The rows removed (`seq`) and their memories' keys, for a check of what is left of them;
    /// not part of equality.
    public var seqs: [Int64] = []
    var keys: [String] = []

    public init() {}

    public static func == (a: Removal, b: Removal) -> Bool { a.counts == b.counts }
}

/// How often a memory helped and did not, as its user said (`feedback`).
public struct FeedbackCounts: Sendable, Equatable {
    public var helped: Int64
    public var unhelped: Int64

    public init(helped: Int64, unhelped: Int64) {
        self.helped = helped
        self.unhelped = unhelped
    }

    /// No word yet (named so, not `none`, which an optional's context would read as nil).
    public static let zero = FeedbackCounts(helped: 0, unhelped: 0)
}
