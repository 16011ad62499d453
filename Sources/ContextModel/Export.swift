/// A memory as `export` gives it: every field a restore needs, the counts of what users said of
/// it (`feedback`), and its vector when asked.
public struct ExportedMemory: Sendable, Equatable {
    /// Its fields; `vector` is empty unless the export asked for vectors.
    public var memory: Memory
    public var helped: Int64
    public var notHelped: Int64

    public init(memory: Memory, helped: Int64 = 0, notHelped: Int64 = 0) {
        self.memory = memory
        self.helped = helped
        self.notHelped = notHelped
    }
}

/// One page of an export: memories in the order they were stored, and where the next page
/// begins (nil on the last).
public struct ExportPage: Sendable, Equatable {
    /// The most memories one page may hold.
    public static let maximumLimit = 1000
    /// The page size of a request that names none.
    public static let defaultLimit = 100

    public var memories: [ExportedMemory]
    /// The position to pass as the next request's `after`.
    public var next: Int64?

    public init(memories: [ExportedMemory], next: Int64?) {
        self.memories = memories
        self.next = next
    }
}
