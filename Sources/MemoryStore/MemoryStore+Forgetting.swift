import ContextModel

/// What a look after a `forget` found of what it removed, place by place: rows of the file
/// (memories, keyword rows, window rows, source rows), rows of the in-memory indexes (vectors,
/// windows' vectors, graph nodes), records, and the keyword statistics kept for the user.
public struct Leftovers: Sendable, Equatable {
    public var memories = 0
    public var keywordRows = 0
    public var windowRows = 0
    public var sourceRows = 0
    public var vectors = 0
    public var graphNodes = 0
    public var records = 0
    public var keywordStatistics = 0

    public init() {}

    /// Everything found: 0 when the forget left nothing behind.
    public var total: Int {
        memories + keywordRows + windowRows + sourceRows + vectors + graphNodes + records + keywordStatistics
    }
}

extension MemoryStore {
    /// Lets the keyword statistics kept for `user` go (a forget's words must not stay behind in
    /// them); returns how many entries went (0 or 1).
    public func dropKeywordStatistics(user: String) -> Int { keywordStatistics.drop(user: user) ? 1 : 0 }

    /// What is left, after a forget that removed `removal`, of those memories; with `whole`, of
    /// any memory of `user`: the file read through SQL (by row, and for the whole user by the
    /// keyword index's scope of the user), the in-memory indexes and records by key, and the
    /// keyword statistics.
    public func leftovers(of removal: Removal, user: String, whole: Bool) throws -> Leftovers {
        var left = Leftovers()
        try withReader { database in
            func count(_ sql: String, _ arguments: StatementArguments) throws -> Int {
                let statement = try database.prepare(sql)
                try statement.bind(arguments)
                return try statement.step() ? Int(statement.int64(at: 0)) : 0
            }
            // In parts, within SQLite's bound on a statement's parameters.
            var start = removal.seqs.startIndex
            while start < removal.seqs.endIndex {
                let part = removal.seqs[start..<min(start + 500, removal.seqs.endIndex)]
                let list = Array(repeating: "?", count: part.count).joined(separator: ", ")
                let values = StatementArguments(values: part.map { $0 as any StatementBindable })
                left.memories += try count("SELECT count(*) FROM memories WHERE seq IN (\(list))", values)
                left.keywordRows += try count("SELECT count(*) FROM memory_terms WHERE rowid IN (\(list))", values)
                left.windowRows += try count("SELECT count(*) FROM memory_windows WHERE memory IN (\(list))", values)
                left.sourceRows += try count("SELECT count(*) FROM memory_sources WHERE memory IN (\(list))", values)
                start = part.endIndex
            }
            guard whole else { return }
            left.memories = try count("SELECT count(*) FROM memories WHERE user = ?1", [user])
            left.keywordRows = try count(
                "SELECT count(*) FROM memory_terms WHERE memory_terms MATCH ?1",
                ["scope : \"\(KeywordIndex.scope(user: user))\""])
        }
        state.read { state in
            for key in removal.keys {
                if state.flat?.vector(id: key) != nil { left.vectors += 1 }
                if state.graph?.contains(id: key) == true { left.graphNodes += 1 }
            }
            for seq in removal.seqs where state.handleOfSeq[seq] != nil { left.records += 1 }
            if whole {
                left.vectors = (state.flat?.count(user: user) ?? 0) + (state.windows?.count(user: user) ?? 0)
                left.graphNodes = state.graph?.count(user: user) ?? 0
            }
        }
        left.keywordStatistics = keywordStatistics.holds(user: user) ? 1 : 0
        return left
    }
}
