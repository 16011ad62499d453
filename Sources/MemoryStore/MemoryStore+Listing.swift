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
    public func vectors(user: String, ids: [String]) -> [[Float]?] {
        state.read { state in ids.map { state.flat?.vector(id: Self.key(user: user, id: $0)) } }
    }

    /// `user`'s memories `ids`, in order, nil where the user has no such memory.
    /// - Parameter withVector: Include each memory's vector (normalized, for cosine); without
    ///   it the vectors are empty.
    public func get(user: String, ids: [String], withVector: Bool) -> [Memory?] {
        let now = Clock.nowMilliseconds()
        return state.read { state in
            ids.map { id in
                let key = Self.key(user: user, id: id)
                guard let record = state.record(key: key), !record.expired(at: now) else { return nil }
                return record.memory(vector: withVector ? state.flat?.vector(id: key) ?? [] : [])
            }
        }
    }

    /// One page of a user's memories in time order (ties in the order they were first stored).
    /// - Throws: `StoreError.invalidValue` for a cursor this store did not make; `.sqlite`.
    public func list(_ request: ListRequest) throws -> ListPage {
        precondition(request.limit > 0)
        var arguments: StatementArguments = []
        var sql = "SELECT \(SQL.memoryColumns)\(request.withVector ? ", embedding" : "") FROM memories WHERE "
        sql += SQL.condition(
            user: request.user, filter: request.filter, now: Clock.nowMilliseconds(), arguments: &arguments)
        if let cursor = request.cursor {
            guard let position = ListCursor(cursor) else {
                throw StoreError.invalidValue("'\(cursor)' is not a cursor of this server (pass next_cursor as given)")
            }
            sql += " AND (created_at, seq) \(request.newestFirst ? "<" : ">") (?, ?)"
            arguments.values += [position.createdAt, position.seq]
        }
        let direction = request.newestFirst ? "DESC" : "ASC"
        sql += " ORDER BY created_at \(direction), seq \(direction) LIMIT ?"
        // One more than asked: whether there is a next page.
        arguments.values.append(Int64(request.limit + 1))
        return try withReader { database in
            let rows = try database.prepare(sql)
            try rows.bind(arguments)
            var memories: [Memory] = []
            var last: ListCursor?
            while try rows.step() {
                guard memories.count < request.limit else {
                    return ListPage(memories: memories, nextCursor: last?.description)
                }
                let memory = SQL.memory(rows, vector: request.withVector ? rows.floats(at: 10) : [])
                last = ListCursor(createdAt: memory.createdAt, seq: rows.int64(at: 7))
                memories.append(memory)
            }
            return ListPage(memories: memories, nextCursor: nil)
        }
    }

    /// `user`'s pinned facts (memories whose metadata has `"pinned": true`), oldest first, at most
    /// `limit`, with their vectors; read through their own index, whatever else the user holds.
    public func pinned(user: String, limit: Int) throws -> [Memory] {
        precondition(limit > 0)
        return try withReader { database in
            let rows = try database.prepare(SQL.pinned)
            try rows.bind([user, Clock.nowMilliseconds(), Int64(limit)])
            var memories: [Memory] = []
            while try rows.step() { memories.append(SQL.memory(rows, vector: rows.floats(at: 10))) }
            return memories
        }
    }

    /// `user`'s sessions, the most recently active first, at most `limit` of them; `more` tells
    /// whether there are others.
    public func sessions(user: String, limit: Int) throws -> (sessions: [SessionSummary], more: Bool) {
        precondition(limit > 0)
        return try withReader { database in
            let rows = try database.prepare(SQL.sessions)
            try rows.bind([user, Int64(limit + 1), Clock.nowMilliseconds()])
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

/// A position in a user's memories in time order: the last memory a page returned. Written as
/// `<created_at>.<seq>`; clients pass it back as they got it.
struct ListCursor: CustomStringConvertible {
    var createdAt: Int64
    var seq: Int64

    init(createdAt: Int64, seq: Int64) {
        self.createdAt = createdAt
        self.seq = seq
    }

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let createdAt = Int64(parts[0]), let seq = Int64(parts[1]) else { return nil }
        self.init(createdAt: createdAt, seq: seq)
    }

    var description: String { "\(createdAt).\(seq)" }
}
