import ContextModel

extension MemoryStore {
    /// Runs a read on the store's reading connection: SQLite in WAL mode lets it read the last
    /// committed state while the writer writes. Reads that go through SQL (pages of memories,
    /// sessions, metadata conditions) take turns on it; searches never do.
    func withReader<T: Sendable>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try readers.with(path: path) { database in
                try database.withTimeLimit(statementTimeLimit) { try body(database) }
            }
        } catch let error as SQLiteError where error.interrupted {
            throw StoreError.tooCostly(
                "a read of this request ran past \(statementTimeLimit) ms and was stopped; narrow its filter")
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
    }

    /// The vectors of `user`'s memories `ids` (normalized, for cosine), in order, nil where the
    /// user has no such memory: `get` with vectors, without building the memories again.
    /// - Throws: `StoreError.sqlite` when a compact space's vectors cannot be read from the file.
    public func vectors(user: String, ids: [String]) throws -> [[Float]?] {
        try state.read { state in try vectors(state, keys: ids.map { Self.key(user: user, id: $0) }) }
    }

    /// `user`'s memories `ids`, in order, nil where the user has no such memory (or it expired
    /// by `now`).
    /// - Parameter withVector: Include each memory's vector (normalized, for cosine); without
    ///   it the vectors are empty.
    /// - Throws: `StoreError.sqlite` when a compact space's vectors cannot be read from the file.
    public func get(user: String, ids: [String], withVector: Bool, now: Int64? = nil) throws -> [Memory?] {
        let now = now ?? Clock.nowMilliseconds()
        return try state.read { state in
            let keys = ids.map { Self.key(user: user, id: $0) }
            let records = keys.map { key in state.record(key: key).flatMap { $0.expired(at: now) ? nil : $0 } }
            let vectors =
                withVector
                ? try vectors(state, keys: zip(keys, records).map { $1 == nil ? "" : $0 })
                : records.map { _ in nil }
            return zip(records, vectors).map { record, vector in record?.memory(vector: vector ?? []) }
        }
    }

    /// One page of a user's memories in time order (ties in the order they were first stored).
    ///
    /// A listing keeps the order its first page saw: the cursor carries the number of the last
    /// change of any memory's `created_at` then (`memory_time_changes`), and a memory whose time
    /// changed since is placed by the time it had, so pages neither skip nor repeat it. While
    /// no time changed, a page reads the time index directly.
    /// - Throws: `StoreError.invalidValue` for a cursor this store did not make; `.sqlite`.
    public func list(_ request: ListRequest) throws -> ListPage {
        precondition(request.limit > 0)
        var position: ListCursor?
        if let cursor = request.cursor {
            guard let parsed = ListCursor(cursor) else {
                throw StoreError.invalidValue("'\(cursor)' is not a cursor of this server (pass next_cursor as given)")
            }
            position = parsed
        }
        return try withReader { database in
            let latest = try database.scalarInt(SQL.latestTimeChange)
            let since = position?.change ?? latest
            // Times changed since the listing began: each memory placed by the time it had.
            let moved = since < latest
            var arguments: StatementArguments = []
            let now = request.now ?? Clock.nowMilliseconds()
            var filter = request.filter
            filter.rows = filter.rows.seeing(request.validity, at: now, tested: validityTested(at: now))
            let condition = SQL.condition(user: request.user, filter: filter, now: now, arguments: &arguments)
            let columns = "\(SQL.memoryColumns)\(request.withVector ? ", embedding" : "")"
            let at = moved ? "listed_at" : "created_at"
            var sql =
                moved
                ? """
                WITH listed AS (SELECT \(columns), coalesce((SELECT old_created_at FROM memory_time_changes c
                    WHERE c.memory = memories.seq AND c.change > ? ORDER BY c.change LIMIT 1), created_at) AS listed_at
                    FROM memories WHERE \(condition))
                SELECT * FROM listed WHERE 1
                """
                : "SELECT \(columns), created_at FROM memories WHERE \(condition)"
            if moved { arguments.values.insert(since, at: 0) }
            if let position {
                sql += " AND (\(at), seq) \(request.newestFirst ? "<" : ">") (?, ?)"
                arguments.values += [position.createdAt, position.seq]
            }
            let direction = request.newestFirst ? "DESC" : "ASC"
            sql += " ORDER BY \(at) \(direction), seq \(direction) LIMIT ?"
            // One more than asked: whether there is a next page.
            arguments.values.append(Int64(request.limit + 1))
            let rows = try database.prepare(sql)
            try rows.bind(arguments)
            var memories: [Memory] = []
            var last: ListCursor?
            // The position column follows the memory's (and its vector).
            let positionColumn = SQL.embeddingColumn + (request.withVector ? 1 : 0)
            while try rows.step() {
                guard memories.count < request.limit else {
                    return ListPage(memories: withSources(memories), nextCursor: last?.description)
                }
                let memory = SQL.memory(rows, vector: request.withVector ? rows.floats(at: SQL.embeddingColumn) : [])
                last = ListCursor(createdAt: rows.int64(at: positionColumn), seq: rows.int64(at: 7), change: since)
                memories.append(memory)
            }
            return ListPage(memories: withSources(memories), nextCursor: nil)
        }
    }

    /// `user`'s pinned facts (memories whose metadata has `"pinned": true`) that `validity` sees
    /// at `now`, oldest first, at most `limit`, with their vectors; read through their own index,
    /// whatever else the user holds.
    public func pinned(
        user: String, limit: Int, validity: ValidityView = .current, now: Int64? = nil
    ) throws -> [Memory] {
        precondition(limit > 0)
        let now = now ?? Clock.nowMilliseconds()
        let rows = RowFilter().seeing(validity, at: now, tested: validityTested(at: now))
        var test = SQL.validity(rows)
        if let until = rows.until {
            // As of a time: stored by then.
            test.sql += " AND created_at <= ?"
            test.arguments.append(until)
        }
        return try withReader { database in
            let statement = try database.cachedStatement(SQL.pinned(validity: test.sql))
            defer { statement.reset() }
            var arguments: StatementArguments = [user, now]
            arguments.values += test.arguments
            arguments.values.append(Int64(limit))
            try statement.bind(arguments)
            var memories: [Memory] = []
            while try statement.step() {
                memories.append(SQL.memory(statement, vector: statement.floats(at: SQL.embeddingColumn)))
            }
            return withSources(memories)
        }
    }

    /// `memories`, read through SQL, with their sources (which the records hold).
    func withSources(_ memories: [Memory]) -> [Memory] {
        state.read { state in
            memories.map { memory in
                var memory = memory
                memory.sources = state.record(key: Self.key(memory))?.sources ?? []
                return memory
            }
        }
    }

    /// Whether some memory of the space may not hold at `now` (see `RowFilter.seeing`): one has
    /// a bounded validity, or one begins later (it was stored with a later `created_at`).
    func validityTested(at now: Int64) -> Bool {
        state.read { $0.bounded > 0 || ($0.latestBound ?? .min) > now }
    }

    /// The users whose ids begin with `prefix` (bytes), after `after` when given, in the byte
    /// order of their ids, at most `limit` of those `included` takes, with their memories that have
    /// not expired by `now`. Reads the users' rows through the `(user, created_at)` index and stops at the
    /// first user past the prefix, or once `scanLimit` users were read (a key that covers few
    /// users pages through the rest without one request reading them all).
    /// - Returns: The users, and the id to pass as `after` for the next page (nil: none).
    public func users(
        prefix: String, after: String?, limit: Int, scanLimit: Int = 10_000, now: Int64? = nil,
        included: (String) -> Bool
    ) throws -> (users: [UserSummary], next: String?) {
        precondition(limit > 0 && scanLimit > 0)
        let resume = after.map { !$0.utf8.lexicographicallyPrecedes(prefix.utf8) } ?? false
        return try withReader { database in
            let rows = try database.prepare(SQL.users)
            try rows.bind([resume ? (after ?? prefix) : prefix, Int64(resume ? 1 : 0), now ?? Clock.nowMilliseconds()])
            var users: [UserSummary] = []
            var scanned = 0
            var last: String?
            while try rows.step() {
                let user = rows.string(at: 0) ?? ""
                guard user.utf8.starts(with: prefix.utf8) else { return (users, nil) }
                if users.count == limit || scanned == scanLimit { return (users, last) }
                scanned += 1
                last = user
                if included(user) { users.append(UserSummary(user: user, memories: Int(rows.int64(at: 1)))) }
            }
            return (users, nil)
        }
    }

    /// `user`'s sessions, counting the turns not expired by `now`, the most recently active
    /// first, at most `limit` of them; `more` tells whether there are others.
    public func sessions(
        user: String, limit: Int, now: Int64? = nil
    ) throws -> (sessions: [SessionSummary], more: Bool) {
        precondition(limit > 0)
        return try withReader { database in
            let rows = try database.prepare(SQL.sessions)
            try rows.bind([user, Int64(limit + 1), now ?? Clock.nowMilliseconds()])
            var sessions: [SessionSummary] = []
            while try rows.step() {
                guard sessions.count < limit else { return (sessions, true) }
                sessions.append(
                    SessionSummary(
                        session: rows.string(at: 0), turns: Int(rows.int64(at: 1)), firstAt: rows.int64(at: 2),
                        lastAt: rows.int64(at: 3)))
            }
            return (sessions, false)
        }
    }
}

/// A position in a user's memories in time order: the last memory a page returned (by the time
/// it was listed at), and the last change of a memory's time when the listing began. Written as
/// `<created_at>.<seq>.<change>`; clients pass it back as they got it. A cursor of two parts (an
/// older server's) carries no change: its pages place memories by their times now.
struct ListCursor: CustomStringConvertible {
    var createdAt: Int64
    var seq: Int64
    var change: Int64?

    init(createdAt: Int64, seq: Int64, change: Int64?) {
        self.createdAt = createdAt
        self.seq = seq
        self.change = change
    }

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let createdAt = Int64(parts[0]), let seq = Int64(parts[1])
        else { return nil }
        var change: Int64?
        if parts.count == 3 {
            guard let number = Int64(parts[2]), number >= 0 else { return nil }
            change = number
        }
        self.init(createdAt: createdAt, seq: seq, change: change)
    }

    var description: String { "\(createdAt).\(seq)" + (change.map { ".\($0)" } ?? "") }
}

extension MemoryStore {
    /// One page of an export: `user`'s memories (every user's when nil) in the order they were
    /// stored, after the position `after` (a page's `next`), at most `limit`, with their sources,
    /// feedback counts and, `withVector`, their vectors as stored. A memory expired by `now` is
    /// left out (it is gone, though not yet purged).
    public func export(
        user: String?, after: Int64, limit: Int, withVector: Bool, now: Int64? = nil
    ) throws -> ExportPage {
        precondition(limit > 0)
        let now = now ?? Clock.nowMilliseconds()
        return try withReader { database in
            let columns = "\(SQL.memoryColumns), helped, unhelped\(withVector ? ", embedding" : "")"
            var sql = "SELECT \(columns) FROM memories WHERE seq > ?1 AND (expires_at IS NULL OR expires_at > ?2)"
            var arguments: StatementArguments = [after, now, Int64(limit + 1)]
            if let user {
                sql += " AND user = ?4"
                arguments.values.append(user)
            }
            sql += " ORDER BY seq LIMIT ?3"
            let rows = try database.prepare(sql)
            try rows.bind(arguments)
            var memories: [ExportedMemory] = []
            var last: Int64 = after
            var more = false
            while try rows.step() {
                guard memories.count < limit else {
                    more = true
                    break
                }
                let feedback = SQL.embeddingColumn
                memories.append(
                    ExportedMemory(
                        memory: SQL.memory(rows, vector: withVector ? rows.floats(at: feedback + 2) : []),
                        helped: rows.int64(at: feedback), notHelped: rows.int64(at: feedback + 1)))
                last = rows.int64(at: 7)
            }
            let sourced = withSources(memories.map(\.memory))
            for i in memories.indices { memories[i].memory.sources = sourced[i].sources }
            return ExportPage(memories: memories, next: more ? last : nil)
        }
    }
}
