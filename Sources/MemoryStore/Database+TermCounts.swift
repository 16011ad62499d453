import CSQLite

extension Database {
    /// The name of the FTS5 auxiliary function `registerTermCounts` adds.
    static let termCountsFunction = "term_counts"

    /// Registers the FTS5 auxiliary function `term_counts(memory_terms)` on this connection. For
    /// each row a `MATCH` finds, it answers a BLOB of native int32s: the row's tokens in all
    /// columns (what its `docsize` row sums), then, for each phrase of the query, how often the
    /// row holds it. A keyword search asks for each of its words, in the user's scope, as a
    /// phrase, and this counts what BM25 needs.
    func registerTermCounts() throws {
        var api: UnsafeMutablePointer<fts5_api>?
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(connection, "SELECT fts5(?1)", -1, &statement, nil)
        defer { sqlite3_finalize(statement) }
        if rc == SQLITE_OK {
            // The pointer's type names what it is; `fts5()` writes its API through it.
            rc = "fts5_api_ptr".withCString { type in
                withUnsafeMutablePointer(to: &api) { pointer in
                    let bound = sqlite3_bind_pointer(statement, 1, pointer, type, nil)
                    return bound == SQLITE_OK ? sqlite3_step(statement) : bound
                }
            }
        }
        guard rc == SQLITE_ROW, let api, api.pointee.iVersion >= 2, let create = api.pointee.xCreateFunction else {
            throw SQLiteError(
                code: rc == SQLITE_ROW ? SQLITE_ERROR : rc, connection: connection, sql: "SELECT fts5(?1)")
        }
        rc = create(
            api, Self.termCountsFunction, nil,
            { functions, fts, context, _, _ in
                guard let functions, let fts, let phraseCount = functions.pointee.xPhraseCount,
                    let columnSize = functions.pointee.xColumnSize, let instanceCount = functions.pointee.xInstCount,
                    let instance = functions.pointee.xInst
                else { return sqlite3_result_error_code(context, SQLITE_MISUSE) }
                var tokens: Int32 = 0
                var instances: Int32 = 0
                var rc = columnSize(fts, -1, &tokens)
                if rc == SQLITE_OK { rc = instanceCount(fts, &instances) }
                guard rc == SQLITE_OK else { return sqlite3_result_error_code(context, rc) }
                // Called once per matching row: the counts live on the stack (a query has at most
                // `KeywordIndex.maximumTerms` words), and SQLite copies them.
                let phrases = Int(phraseCount(fts))
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: phrases + 1) { counts in
                    counts.initialize(repeating: 0)
                    counts[0] = tokens
                    for index in 0..<instances {
                        var (phrase, column, offset): (Int32, Int32, Int32) = (0, 0, 0)
                        guard instance(fts, index, &phrase, &column, &offset) == SQLITE_OK else { continue }
                        if phrase >= 0, Int(phrase) < phrases { counts[Int(phrase) + 1] += 1 }
                    }
                    let bytes = UnsafeRawBufferPointer(counts)
                    sqlite3_result_blob(context, bytes.baseAddress, Int32(bytes.count), Statement.transient)
                }
            }, nil)
        guard rc == SQLITE_OK else { throw SQLiteError(code: rc, connection: connection, sql: "xCreateFunction") }
    }
}
