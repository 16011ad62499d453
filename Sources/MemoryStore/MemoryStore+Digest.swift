import Crypto

extension MemoryStore {
    /// A SHA-256 of a space's rows in order (hex): what two spaces that applied the same
    /// commands must agree on (see `apply(_:index:)`).
    ///
    /// For one `user`: their memories (every column but `seq`, which other users' writes move)
    /// in the order they were stored, and their windows. For the whole space: every row of the
    /// settings, memories, windows, graph nodes and time changes, `seq` included. Read in one
    /// read transaction, so it is the digest of one committed state.
    public func digest(user: String? = nil) throws -> String {
        try withReader { database in
            var hash = SHA256()
            let queries: [(sql: String, skipping: String?)] =
                user == nil
                ? [
                    ("SELECT * FROM space ORDER BY key", nil), ("SELECT * FROM memories ORDER BY seq", nil),
                    ("SELECT * FROM memory_windows ORDER BY memory, position", nil),
                    ("SELECT * FROM hnsw_nodes ORDER BY slot", nil),
                    ("SELECT * FROM memory_time_changes ORDER BY change", nil),
                ]
                : [
                    ("SELECT * FROM memories WHERE user = ?1 ORDER BY seq", "seq"),
                    (
                        """
                        SELECT m.id, w.position, w.embedding FROM memory_windows w JOIN memories m ON m.seq = w.memory
                        WHERE m.user = ?1 ORDER BY m.seq, w.position
                        """, nil
                    ),
                ]
            try database.readTransaction {
                var row: [UInt8] = []
                for (table, query) in queries.enumerated() {
                    let statement = try database.prepare(query.sql)
                    if let user { try statement.bind([user]) }
                    let skipped = (0..<statement.columnCount).filter { statement.columnName(at: $0) == query.skipping }
                    hash.update(data: [UInt8(table)])
                    while try statement.step() {
                        row.removeAll(keepingCapacity: true)
                        row.append(1)  // a row follows
                        for column in 0..<statement.columnCount where !skipped.contains(column) {
                            statement.appendValue(at: column, to: &row)
                        }
                        hash.update(data: row)
                    }
                }
            }
            let hex = Array("0123456789abcdef".utf8)
            return String(decoding: hash.finalize().flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
        }
    }
}
