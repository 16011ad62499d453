import ContextModel

/// What a look after a `forget` found of what it removed, place by place (`MemoryPlaces`), and
/// in the records and the keyword statistics kept for the user.
public struct Leftovers: Sendable, Equatable {
    public var counts = MemoryPlaces()
    public var records = 0
    public var keywordStatistics = 0

    public init() {}
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
                left.counts.memories += try count("SELECT count(*) FROM memories WHERE seq IN (\(list))", values)
                left.counts.keywordRows += try count(
                    "SELECT count(*) FROM memory_terms WHERE rowid IN (\(list))", values)
                left.counts.windowRows += try count(
                    "SELECT count(*) FROM memory_windows WHERE memory IN (\(list))", values)
                left.counts.sourceRows += try count(
                    "SELECT count(*) FROM memory_sources WHERE memory IN (\(list))", values)
                start = part.endIndex
            }
            guard whole else { return }
            left.counts.memories = try count("SELECT count(*) FROM memories WHERE user = ?1", [user])
            left.counts.keywordRows = try count(
                "SELECT count(*) FROM memory_terms WHERE memory_terms MATCH ?1",
                ["scope : \"\(KeywordIndex.scope(user: user))\""])
        }
        state.read { state in
            for key in removal.keys {
                if state.flat?.contains(id: key) == true { left.counts.vectors += 1 }
                if state.graph?.contains(id: key) == true { left.counts.graphNodes += 1 }
            }
            for seq in removal.seqs where state.handleOfSeq[seq] != nil { left.records += 1 }
            if whole {
                left.counts.vectors = (state.flat?.count(user: user) ?? 0) + (state.windows?.count(user: user) ?? 0)
                left.counts.graphNodes = state.graph?.count(user: user) ?? 0
            }
        }
        left.keywordStatistics = keywordStatistics.holds(user: user) ? 1 : 0
        return left
    }
}

/// What `MemoryStore.verify` found.
public struct Verification: Sendable, Equatable {
    public var users = 0
    public var memories = 0
    /// Each disagreement found, in words; empty when every place agrees.
    public var problems: [String] = []

    public init(users: Int = 0, memories: Int = 0, problems: [String] = []) {
        self.users = users
        self.memories = memories
        self.problems = problems
    }
}

extension MemoryStore {
    /// Checks, for every user, that every place a memory lives holds the same memories as the
    /// file's rows: the keyword index (by the user's scope), the flat index, the graph and the
    /// records; and that no keyword, window or source row is left without its memory. Runs while
    /// it holds the writer (one consistent state; writes wait), reading the file on the
    /// writer's connection: a scan of every row, for an operator.
    public func verify() throws -> Verification {
        try withWriter { statements, _ in
            let database = statements.database
            var found = Verification()
            func count(_ sql: String, _ arguments: StatementArguments = []) throws -> Int {
                let statement = try database.prepare(sql)
                try statement.bind(arguments)
                return try statement.step() ? Int(statement.int64(at: 0)) : 0
            }
            var rows: [(String, Int)] = []
            let users = try database.prepare(SQL.rowsPerUser)
            while try users.step() { rows.append((users.string(at: 0) ?? "", Int(users.int64(at: 1)))) }
            found.users = rows.count
            found.memories = rows.reduce(0) { $0 + $1.1 }
            for (user, memories) in rows {
                let keywordRows = try count(
                    "SELECT count(*) FROM memory_terms WHERE memory_terms MATCH ?1",
                    ["scope : \"\(KeywordIndex.scope(user: user))\""])
                let (vectors, nodes) = state.read { ($0.flat?.count(user: user) ?? 0, $0.graph?.count(user: user)) }
                var places = [("keyword rows", keywordRows), ("vectors", vectors)]
                if let nodes { places.append(("graph nodes", nodes)) }
                for (place, held) in places where held != memories {
                    found.problems.append("user '\(user)' has \(memories) memories and \(held) \(place)")
                }
            }
            let (records, flatUsers) = state.read { ($0.memoryCount, $0.flat?.userCount ?? 0) }
            if records != found.memories {
                found.problems.append("\(found.memories) memory rows and \(records) records")
            }
            if flatUsers != found.users {
                found.problems.append("\(found.users) users with rows and \(flatUsers) in the flat index")
            }
            for (table, column) in [
                ("memory_terms", "rowid"), ("memory_windows", "memory"), ("memory_sources", "memory"),
            ] {
                let orphans = try count(
                    "SELECT count(*) FROM \(table) WHERE \(column) NOT IN (SELECT seq FROM memories)")
                if orphans > 0 { found.problems.append("\(orphans) rows of \(table) without their memory") }
            }
            return found
        }
    }
}
