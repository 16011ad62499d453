import ContextModel

/// Every SQL statement the store runs, in one place. The schema itself is in
/// `Database+Schema.swift`.
enum SQL {
    /// Connection settings of a store that writes: write-ahead log, a full sync at every
    /// commit (an acknowledged write survives power loss), and the log checkpointed every 64 MB
    /// rather than 4 MB (bulk loads ran 25% faster).
    static func connectionSettings(busyTimeoutMilliseconds: Int) -> [String] {
        [
            "PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA wal_autocheckpoint = 16384",
            "PRAGMA busy_timeout = \(busyTimeoutMilliseconds)",
        ]
    }

    static let checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)"

    // MARK: - Loading

    static let settings = "SELECT key, value FROM space"
    static let rowsPerUser = "SELECT user, count(*) FROM memories GROUP BY user"
    static let windows = "SELECT memory, position, embedding FROM memory_windows ORDER BY memory, position"
    static let sources = "SELECT memory, source FROM memory_sources ORDER BY memory, position"
    static let nodeCount = "SELECT count(*) FROM hnsw_nodes"
    static let slotBound = "SELECT coalesce(max(slot) + 1, 0) FROM hnsw_nodes"
    /// Each memory with its node (found through the unique index on hnsw_nodes.memory). The
    /// columns are `LoadedRow`'s.
    static let memoriesWithNodes = """
        SELECT m.id, m.user, m.session, m.role, m.text, m.created_at, m.metadata, m.embedding, m.seq,
            n.slot, n.links, m.speaker, m.expires_at, m.helped, m.unhelped, m.valid_from, m.valid_to,
            m.supersedes, m.superseded_by
        FROM memories m LEFT JOIN hnsw_nodes n ON n.memory = m.seq ORDER BY m.seq
        """

    /// A memory row's embedding, by `seq`: what a compact flat index rescores its candidates by.
    static let embeddingOfRow = "SELECT embedding FROM memories WHERE seq = ?1"

    // MARK: - Reading pages

    /// The columns `memory(_:vector:)` reads (the row's `seq` is column 7); a query that wants
    /// the embedding selects it after them, as column `embeddingColumn`.
    static let memoryColumns = """
        id, user, session, role, text, created_at, metadata, seq, speaker, expires_at, \
        valid_from, valid_to, supersedes, superseded_by
        """
    /// The column after `memoryColumns`.
    static let embeddingColumn: Int32 = 14

    /// Counts one more `feedback` for a live memory: helped, unhelped (1 and 0, or 0 and 1),
    /// user, id, now; returns the counts.
    static let feedback = """
        UPDATE memories SET helped = helped + ?, unhelped = unhelped + ?
        WHERE user = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)
        RETURNING helped, unhelped
        """

    /// What makes a memory a pinned fact; the partial index `memories_pinned` (migration 9) holds
    /// the rows where it is true, and a query must use the same text to be answered from it.
    static let isPinned = "json_type(metadata, '$.pinned') = 'true'"

    /// A user's live pinned facts, oldest first: user, now, limit, then the validity test's
    /// arguments (`validity(at:)`).
    static func pinned(validity: String) -> String {
        """
        SELECT \(memoryColumns), embedding FROM memories INDEXED BY memories_pinned
        WHERE user = ? AND \(isPinned) AND (expires_at IS NULL OR expires_at > ?) AND \(validity)
        ORDER BY created_at, seq LIMIT ?
        """
    }

    /// The test of a row against what a `RowFilter`'s `validAt` and `until` keep, with its
    /// arguments: the memory holds at `validAt` (and, with `until`, was stored by then).
    static func validity(_ rows: RowFilter) -> (sql: String, arguments: [any StatementBindable]) {
        guard let at = rows.validAt else { return ("1", []) }
        return ("coalesce(valid_from, created_at) <= ? AND (valid_to IS NULL OR valid_to > ?)", [at, at])
    }

    /// A memory from a row whose first columns are `memoryColumns`.
    static func memory(_ row: Statement, vector: [Float]) -> Memory {
        Memory(
            id: row.string(at: 0) ?? "", user: row.string(at: 1) ?? "", session: row.string(at: 2),
            role: row.string(at: 3).flatMap(Role.init(rawValue:)), speaker: row.string(at: 8),
            text: row.string(at: 4) ?? "", createdAt: row.int64(at: 5), metadata: row.string(at: 6) ?? "{}",
            vector: vector, expiresAt: row.isNull(at: 9) ? nil : row.int64(at: 9),
            validity: Validity(
                from: row.isNull(at: 10) ? nil : row.int64(at: 10), to: row.isNull(at: 11) ? nil : row.int64(at: 11),
                supersedes: row.string(at: 12), supersededBy: row.string(at: 13)))
    }

    /// A user's sessions with their turn counts and times, the latest active first.
    /// Users from `?1` on (`>` when `?2` is 1, else `>=`), in byte order, with their memories
    /// that have not expired at `?3`; the caller stops at the first user past its prefix.
    static let users = """
        SELECT user, count(*) FROM memories
        WHERE (user > ?1 OR (?2 = 0 AND user = ?1)) AND (expires_at IS NULL OR expires_at > ?3)
        GROUP BY user ORDER BY user
        """

    static let sessions = """
        SELECT session, count(*), min(created_at), max(created_at) FROM memories
        WHERE user = ?1 AND (expires_at IS NULL OR expires_at > ?3)
        GROUP BY session ORDER BY max(created_at) DESC, session LIMIT ?2
        """

    /// The condition (what follows `WHERE`) selecting `user`'s memories that pass `filter`; its
    /// values are appended to `arguments`, in the order of its `?` parameters.
    /// An expired memory (`expires_at` at or before `now`, unix milliseconds) never matches.
    static func condition(
        user: String, filter: MemoryFilter, now: Int64, arguments: inout StatementArguments
    ) -> String {
        var parts = ["user = ?", "(expires_at IS NULL OR expires_at > ?)"]
        arguments.values += [user, now]
        let rows = filter.rows
        if let session = rows.session {
            parts.append("session = ?")
            arguments.values.append(session)
        }
        if let role = rows.role {
            parts.append("role = ?")
            arguments.values.append(role.rawValue)
        }
        if let speaker = rows.speaker {
            parts.append("speaker = ?")
            arguments.values.append(speaker)
        }
        if let since = rows.since {
            parts.append("created_at >= ?")
            arguments.values.append(since)
        }
        if let until = rows.until {
            parts.append("created_at <= ?")
            arguments.values.append(until)
        }
        if rows.validAt != nil {
            let validity = validity(rows)
            parts.append(validity.sql)
            arguments.values += validity.arguments
        }
        // json_each walks the top-level keys, so any key (dots, quotes) is compared as it is.
        for condition in filter.metadata {
            arguments.values.append(condition.key)
            let test: String
            switch condition.test {
            case .equals(let value):
                test = valueTest(value, &arguments)
            case .oneOf(let values):
                test = oneOfTest(values, &arguments)
            case .range(let greaterThan, let atLeast, let lessThan, let atMost):
                var bounds = ["type IN ('integer', 'real')"]
                for (bound, comparison) in [(greaterThan, ">"), (atLeast, ">="), (lessThan, "<"), (atMost, "<=")] {
                    guard let bound else { continue }
                    bounds.append("atom \(comparison) ?")
                    arguments.values.append(bindable(bound))
                }
                test = bounds.joined(separator: " AND ")
            }
            parts.append("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ? AND (\(test)))")
        }
        return parts.joined(separator: " AND ")
    }

    /// The test of a json_each row against several values: one `IN` list per kind, so the
    /// expression stays shallow however many values there are (SQLite refuses trees deeper
    /// than 1,000).
    private static func oneOfTest(_ values: [MetadataValue], _ arguments: inout StatementArguments) -> String {
        var tests: [String] = []
        let strings = values.filter { if case .string = $0 { true } else { false } }
        let numbers = values.filter(\.isNumber)
        for (list, typeTest) in [(strings, "type = 'text'"), (numbers, "type IN ('integer', 'real')")]
        where !list.isEmpty {
            arguments.values += list.map(bindable)
            tests.append(
                "(\(typeTest) AND atom IN (\(Array(repeating: "?", count: list.count).joined(separator: ", "))))")
        }
        if values.contains(.bool(true)) { tests.append("type = 'true'") }
        if values.contains(.bool(false)) { tests.append("type = 'false'") }
        if values.contains(.null) { tests.append("type = 'null'") }
        return tests.isEmpty ? "0" : tests.joined(separator: " OR ")
    }

    /// The test of a json_each row against one value: numbers by value, the rest by type and value.
    private static func valueTest(_ value: MetadataValue, _ arguments: inout StatementArguments) -> String {
        switch value {
        case .string, .integer, .double:
            arguments.values.append(bindable(value))
            return value.isNumber ? "type IN ('integer', 'real') AND atom = ?" : "type = 'text' AND atom = ?"
        case .bool(let flag): return flag ? "type = 'true'" : "type = 'false'"
        case .null: return "type = 'null'"
        }
    }

    private static func bindable(_ value: MetadataValue) -> any StatementBindable {
        switch value {
        case .string(let text): text
        case .integer(let integer): integer
        case .double(let double): double
        case .bool(let flag): Int64(flag ? 1 : 0)
        case .null: String?.none
        }
    }

    // MARK: - Writing

    static let upsertMemory = """
        INSERT INTO memories (id, user, session, role, text, created_at, metadata, embedding, speaker, expires_at,
            valid_from, valid_to, supersedes, superseded_by, helped, unhelped)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
        ON CONFLICT(user, id) DO UPDATE SET session = excluded.session,
            role = excluded.role, text = excluded.text, created_at = excluded.created_at,
            metadata = excluded.metadata, embedding = excluded.embedding, speaker = excluded.speaker,
            expires_at = excluded.expires_at, helped = excluded.helped, unhelped = excluded.unhelped,
            valid_from = excluded.valid_from,
            valid_to = excluded.valid_to, supersedes = excluded.supersedes, superseded_by = excluded.superseded_by
        RETURNING seq
        """
    /// Ends the validity of `user`'s memory `id` at a successor's start: user, id, valid_to,
    /// superseded_by.
    static let closeValidity = "UPDATE memories SET valid_to = ?3, superseded_by = ?4 WHERE user = ?1 AND id = ?2"
    static let deleteMemory = "DELETE FROM memories WHERE user = ?1 AND id = ?2"
    /// The number of the last change of a memory's `created_at` (0: none yet).
    static let latestTimeChange =
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'memory_time_changes'), 0)"
    static let deleteUser = "DELETE FROM memories WHERE user = ?1"
    static let insertWindow = "INSERT INTO memory_windows (memory, position, embedding) VALUES (?1, ?2, ?3)"
    static let deleteWindows = "DELETE FROM memory_windows WHERE memory = ?1"
    static let deleteUserWindows = """
        DELETE FROM memory_windows WHERE memory IN (SELECT seq FROM memories WHERE user = ?1)
        """
    static let updateMemory = """
        UPDATE memories SET session = ?3, role = ?4, metadata = ?5, created_at = ?6, speaker = ?7
        WHERE user = ?1 AND id = ?2
        """
    /// A memory's row in the keyword index (see KeywordIndex), replacing the one it had.
    static let indexTerms = """
        INSERT OR REPLACE INTO memory_terms (rowid, scope, speaker, text, day) VALUES (?1, ?2, ?3, ?4, ?5)
        """
    static let unindexTerms = "DELETE FROM memory_terms WHERE rowid = ?1"
    static let unindexUserTerms = "DELETE FROM memory_terms WHERE rowid IN (SELECT seq FROM memories WHERE user = ?1)"
    /// The longest expired memories, up to a limit, deleted (their windows and keyword rows are
    /// the caller's).
    static let purgeExpired = """
        DELETE FROM memories WHERE seq IN (
            SELECT seq FROM memories WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)
        RETURNING user, id, seq
        """
    static let anyExpired = "SELECT 1 FROM memories WHERE expires_at <= ?1 LIMIT 1"
    /// The earliest expiry left (`memories_expiring` holds them in order).
    static let nextExpiry = "SELECT min(expires_at) FROM memories WHERE expires_at IS NOT NULL"
    static let setSetting = "INSERT OR REPLACE INTO space (key, value) VALUES (?1, ?2)"
    static let saveNode = "INSERT OR REPLACE INTO hnsw_nodes (slot, memory, links) VALUES (?1, ?2, ?3)"
    static let deleteNode = "DELETE FROM hnsw_nodes WHERE slot = ?1"
    static let insertSource = "INSERT INTO memory_sources (memory, position, source) VALUES (?1, ?2, ?3)"
    static let deleteSources = "DELETE FROM memory_sources WHERE memory = ?1"
    /// `user`'s memories (other than those being deleted) derived from the memories `ids` names
    /// (a JSON array): what a forget `withDerived` takes with them; user, ids.
    static func deleteDerived(count: Int) -> String {
        """
        DELETE FROM memories WHERE seq IN (
            SELECT s.memory FROM memory_sources s JOIN memories m ON m.seq = s.memory
            WHERE m.user = ?1 AND s.source IN (\(Array(repeating: "?", count: count).joined(separator: ", "))))
        RETURNING user, id, seq
        """
    }

    /// What `contextstore check` reads.
    enum Check {
        /// integrity_check, not quick_check: it also compares every index with its table.
        static let integrity = "PRAGMA integrity_check"
        /// Each memory row whose columns do not hold what the store writes, and why.
        static let malformedRows = """
            SELECT seq, CASE
                WHEN typeof(id) != 'text' OR id = '' THEN 'an id that is not a non-empty text'
                WHEN typeof(user) != 'text' OR user = '' THEN 'a user that is not a non-empty text'
                WHEN session IS NOT NULL AND typeof(session) != 'text' THEN 'a session that is not text'
                WHEN speaker IS NOT NULL AND typeof(speaker) != 'text' THEN 'a speaker that is not text'
                WHEN typeof(text) != 'text' THEN 'a text that is not text'
                WHEN typeof(created_at) != 'integer' THEN 'a created_at that is not an integer'
                WHEN role IS NOT NULL AND role NOT IN ('user', 'assistant', 'system', 'tool')
                    THEN 'an unknown role'
                WHEN typeof(metadata) != 'text' OR NOT json_valid(metadata) OR json_type(metadata) != 'object'
                    THEN 'metadata that is not a JSON object'
                WHEN typeof(embedding) != 'blob' THEN 'an embedding that is not a blob'
            END AS problem FROM memories WHERE problem IS NOT NULL
            """
        static let memories = "SELECT seq, id, user, session, text, embedding, speaker FROM memories"
        static let nodes = "SELECT slot, memory, links FROM hnsw_nodes"
        static let hasKeywordIndex = "SELECT count(*) FROM sqlite_master WHERE name = 'memory_terms'"
        /// Each memory with its keyword row's columns (null when it has none) from column 5.
        static let keywordRows = """
            SELECT m.seq, m.user, m.speaker, m.text, m.created_at, t.rowid, t.scope, t.speaker, t.text, t.day
            FROM memories m LEFT JOIN memory_terms t ON t.rowid = m.seq
            """
        /// Whether the file has the windows table (a file of before migration 5 has none).
        static let hasWindows = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'memory_windows'"
    }
}

/// The write side of a store: its connection and prepared statements, one typed method each.
/// Used by one writer at a time (the store's write lock).
struct WriteStatements {
    let database: Database
    private let upsert: Statement
    private let delete: Statement
    private let deleteUser: Statement
    private let update: Statement
    private let insertWindow: Statement
    private let deleteWindows: Statement
    private let deleteUserWindows: Statement
    private let indexTerms: Statement
    private let unindexTerms: Statement
    private let unindexUserTerms: Statement
    private let setSetting: Statement
    private let saveNode: Statement
    private let deleteNode: Statement
    private let closeValidity: Statement
    private let insertSource: Statement
    private let deleteSources: Statement

    init(database: Database) throws {
        self.database = database
        upsert = try database.prepare(SQL.upsertMemory)
        delete = try database.prepare(SQL.deleteMemory)
        deleteUser = try database.prepare(SQL.deleteUser)
        update = try database.prepare(SQL.updateMemory)
        insertWindow = try database.prepare(SQL.insertWindow)
        deleteWindows = try database.prepare(SQL.deleteWindows)
        deleteUserWindows = try database.prepare(SQL.deleteUserWindows)
        indexTerms = try database.prepare(SQL.indexTerms)
        unindexTerms = try database.prepare(SQL.unindexTerms)
        unindexUserTerms = try database.prepare(SQL.unindexUserTerms)
        setSetting = try database.prepare(SQL.setSetting)
        saveNode = try database.prepare(SQL.saveNode)
        deleteNode = try database.prepare(SQL.deleteNode)
        closeValidity = try database.prepare(SQL.closeValidity)
        insertSource = try database.prepare(SQL.insertSource)
        deleteSources = try database.prepare(SQL.deleteSources)
    }

    /// Replaces the sources of memory row `memory` with `sources` (positions 0, 1, ...).
    func setSources(memory: Int64, _ sources: [String]) throws {
        try deleteSources.execute([memory])
        for (i, source) in sources.enumerated() { try insertSource.execute([memory, Int64(i), source]) }
    }

    /// Ends `user`'s memory `id` at `end`, replaced by `successor`; returns how many rows changed.
    func close(user: String, id: String, at end: Int64, successor: String) throws -> Int {
        try closeValidity.execute([user, id, end, successor])
        return database.changes
    }

    /// Inserts or replaces a memory; returns its row number (`seq`). Its keyword row is the
    /// caller's (`index`): written after the batch's memory rows, not between them (FTS5 inserts
    /// interleaved with other tables' cost twice as much: 50,000 rows took 4.2 s, against 2.3 s
    /// one table after the other).
    func upsert(_ memory: Memory, feedback: FeedbackCounts) throws -> Int64 {
        try upsert.bind([
            memory.id, memory.user, memory.session, memory.role?.rawValue, memory.text, memory.createdAt,
            memory.metadata, memory.vector, memory.speaker, memory.expiresAt, memory.validity.from,
            memory.validity.to, memory.validity.supersedes, memory.validity.supersededBy, feedback.helped,
            feedback.unhelped,
        ])
        guard try upsert.step() else { throw StoreError.sqlite("the insert returned no row") }
        let seq = upsert.int64(at: 0)
        try upsert.run()
        return seq
    }

    /// Writes memory row `seq`'s keyword row (replacing the one it had).
    func index(_ memory: Memory, seq: Int64) throws {
        let row = KeywordIndex.columns(
            user: memory.user, speaker: memory.speaker, text: memory.text, createdAt: memory.createdAt)
        try indexTerms.execute(StatementArguments(values: [seq] + row.map { $0 as any StatementBindable }))
    }

    /// Deletes `user`'s memory `id`, row `seq`, and its keyword row; returns how many memories went.
    func delete(user: String, id: String, seq: Int64) throws -> Int {
        try unindexTerms.execute([seq])
        try delete.execute([user, id])
        return database.changes
    }

    /// Deletes the keyword row of memory row `seq` (whose memory row the caller deletes);
    /// returns how many rows went (1, or 0 for a row that had none).
    @discardableResult
    func unindex(seq: Int64) throws -> Int {
        try unindexTerms.execute([seq])
        return database.changes
    }

    /// Sets the fields `update` may change of `user`'s memory `id`; returns how many rows changed.
    func update(
        user: String, id: String, session: String?, role: Role?, speaker: String?, metadata: String, createdAt: Int64
    ) throws -> Int {
        try update.execute([user, id, session, role?.rawValue, metadata, createdAt, speaker])
        return database.changes
    }

    /// Deletes every memory of `user` (and their windows and keyword rows); returns how many of
    /// each went.
    func delete(user: String) throws -> (memories: Int, windows: Int, keywordRows: Int) {
        try deleteUserWindows.execute([user])
        let windows = database.changes
        try unindexUserTerms.execute([user])
        let keywordRows = database.changes
        try deleteUser.execute([user])
        return (database.changes, windows, keywordRows)
    }

    /// Replaces the windows of memory row `memory` with `windows` (positions 1, 2, ...); returns
    /// how many it had.
    @discardableResult
    func setWindows(memory: Int64, _ windows: [[Float]]) throws -> Int {
        try deleteWindows.execute([memory])
        let had = database.changes
        for (i, window) in windows.enumerated() { try insertWindow.execute([memory, Int64(i + 1), window]) }
        return had
    }

    func set(_ key: String, _ value: String) throws {
        try setSetting.execute([key, value])
    }

    /// Writes the graph node in `slot`, indexing memory row `memory`.
    func saveNode(slot: Int32, memory: Int64, links: [Int32]) throws {
        try saveNode.execute([Int64(slot), memory, links])
    }

    func deleteNode(slot: Int32) throws {
        try deleteNode.execute([Int64(slot)])
    }
}
