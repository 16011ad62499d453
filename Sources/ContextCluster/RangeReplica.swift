import MemoryStore

/// One range's copy on one node: a `MemoryStore` (its own SQLite file) that applies the range's
/// log in order. The store records each entry's sequence as its applied index in the entry's
/// own transaction, so after a restart the replica resumes at the next entry and never
/// applies one twice.
public struct RangeReplica: Sendable {
    public typealias Outcome = (seq: Int64, outcome: Result<WriteOutcome, StoreError>)

    public let range: Int
    public let store: MemoryStore

    public init(range: Int, store: MemoryStore) {
        self.range = range
        self.store = store
    }

    /// The last sequence this replica holds.
    public var appliedSequence: Int64 { store.appliedIndex }

    /// Applies the entries of `page` (consecutive, in order) that follow `appliedSequence`;
    /// those it holds already are passed over, so two readers of the log may hand it the same
    /// page. Synchronous: SQLite's work, for a thread that may block.
    /// - Returns: The outcomes of the entries it applied, by sequence (a refusal that follows
    ///   from the command is an outcome too).
    /// - Throws: `ClusterError.corruptLog` when the page skips a sequence; what the store throws
    ///   for a failure of its own (then the entry is applied again next time).
    /// - Parameter applied: Told each entry and its outcome as soon as it is applied.
    @discardableResult
    public func apply(
        _ page: [CommandLog.Entry], applied: (CommandLog.Entry, Result<WriteOutcome, StoreError>) -> Void = { _, _ in }
    ) throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for entry in page {
            let last = appliedSequence
            if entry.seq <= last { continue }
            guard entry.seq == last + 1 else {
                throw ClusterError.corruptLog("range \(range) goes from \(last) to \(entry.seq)")
            }
            let outcome = try store.applyLogged(entry.command, index: entry.seq)
            applied(entry, outcome)
            outcomes.append((entry.seq, outcome))
        }
        return outcomes
    }

    /// Applies every entry of the log after `appliedSequence`, page by page, on the calling
    /// task (tools and tests; a server applies on its own thread, see `ClusterNode`).
    /// - Returns: How many entries it applied.
    @discardableResult
    public func catchUp(from log: CommandLog, pageSize: Int = CommandLog.maximumPage) async throws -> Int {
        var count = 0
        while true {
            let page = try await log.entries(range: range, after: appliedSequence, limit: pageSize)
            guard !page.isEmpty else { return count }
            count += try apply(page).count
        }
    }
}
