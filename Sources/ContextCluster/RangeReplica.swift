import MemoryStore

/// One range's copy on one node: a `MemoryStore` (its own SQLite file) that applies the range's
/// log in order. The store records each entry's sequence as its applied index in the entry's
/// own transaction, so after a restart the replica resumes at the next entry and never
/// applies one twice.
public struct RangeReplica: Sendable {
    public let range: Int
    public let store: MemoryStore

    public init(range: Int, store: MemoryStore) {
        self.range = range
        self.store = store
    }

    /// The last sequence this replica holds.
    public var appliedSequence: Int64 { store.appliedIndex }

    /// Applies every entry of the log after `appliedSequence`, page by page, and returns the
    /// outcomes by sequence (a refusal that follows from the command is an outcome too).
    /// - Throws: `ClusterError.corruptLog` when the log skips a sequence; what the store throws
    ///   for a failure of its own (then the entry is applied again next time).
    @discardableResult
    public func catchUp(from log: CommandLog) async throws -> [(seq: Int64, outcome: Result<WriteOutcome, StoreError>)]
    {
        var outcomes: [(seq: Int64, outcome: Result<WriteOutcome, StoreError>)] = []
        while true {
            let applied = appliedSequence
            let page = try await log.entries(range: range, after: applied)
            guard !page.isEmpty else { return outcomes }
            for (offset, entry) in page.enumerated() where entry.seq != applied + 1 + Int64(offset) {
                throw ClusterError.corruptLog(
                    "range \(range) goes from \(applied + Int64(offset)) to \(entry.seq)")
            }
            for entry in page {
                outcomes.append((entry.seq, try store.applyLogged(entry.command, index: entry.seq)))
            }
        }
    }
}
