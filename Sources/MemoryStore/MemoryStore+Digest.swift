import Crypto

extension MemoryStore {
    /// A SHA-256 of a space's rows in order (hex), and the index of the last command applied
    /// when they were read: what two spaces that applied the same commands agree on (see
    /// `apply(_:index:)`).
    ///
    /// For one `user`: their memories (every column but `seq`, which other users' writes move)
    /// in the order they were stored, and their windows. For the whole space: every row of the
    /// settings, memories, windows, graph nodes and time changes, `seq` included. Read in one
    /// read transaction, so it is the digest of one committed state.
    public func digest(user: String? = nil) throws -> (digest: String, appliedIndex: Int64) {
        try withReader { try Self.digest(of: $0, user: user) }
    }

    static func digest(of database: Database, user: String?) throws -> (digest: String, appliedIndex: Int64) {
        /// What is read: the rows of `table`, by `sql`, each without the column `skipping`.
        struct Part {
            var table: String
            var sql: String
            var skipping: String? = nil
        }
        let parts =
            user == nil
            ? [
                Part(table: "space", sql: "SELECT * FROM space ORDER BY key"),
                Part(table: "memories", sql: "SELECT * FROM memories ORDER BY seq"),
                Part(table: "memory_windows", sql: "SELECT * FROM memory_windows ORDER BY memory, position"),
                Part(table: "hnsw_nodes", sql: "SELECT * FROM hnsw_nodes ORDER BY slot"),
                Part(table: "memory_time_changes", sql: "SELECT * FROM memory_time_changes ORDER BY change"),
                Part(table: "memory_sources", sql: "SELECT * FROM memory_sources ORDER BY memory, position"),
            ]
            : [
                Part(table: "memories", sql: "SELECT * FROM memories WHERE user = ?1 ORDER BY seq", skipping: "seq"),
                Part(
                    table: "memory_windows",
                    sql: """
                        SELECT m.id, w.position, w.embedding FROM memory_windows w JOIN memories m ON m.seq = w.memory
                        WHERE m.user = ?1 ORDER BY m.seq, w.position
                        """),
                Part(
                    table: "memory_sources",
                    sql: """
                        SELECT m.id, s.position, s.source FROM memory_sources s JOIN memories m ON m.seq = s.memory
                        WHERE m.user = ?1 ORDER BY m.seq, s.position
                        """),
            ]
        var hash = SHA256()
        let applied = try database.readTransaction {
            // A file not yet migrated (read by `check`) may lack the later tables.
            var tables: Set<String> = []
            let names = try database.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            while try names.step() { tables.insert(names.string(at: 0) ?? "") }
            var row: [UInt8] = []
            for (number, part) in parts.enumerated() where tables.contains(part.table) {
                let statement = try database.prepare(part.sql)
                if let user { try statement.bind([user]) }
                let columns = (0..<statement.columnCount).filter { statement.columnName(at: $0) != part.skipping }
                hash.update(data: [UInt8(number)])
                while try statement.step() {
                    row.removeAll(keepingCapacity: true)
                    row.append(1)  // a row follows
                    for column in columns { statement.appendValue(at: column, to: &row) }
                    hash.update(data: row)
                }
            }
            let index = try database.prepare("SELECT value FROM space WHERE key = ?1")
            try index.bind([Self.appliedIndexSetting])
            return try index.step() ? index.string(at: 0).flatMap { Int64($0) } ?? 0 : 0
        }
        let hex = Array("0123456789abcdef".utf8)
        let digest = String(
            decoding: hash.finalize().flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
        return (digest, applied)
    }
}
