import CSQLite
import CScopedTokenizer

#if canImport(Glibc)
    import Glibc
#endif

/// One SQLite connection. Not thread-safe: the owner serializes every call.
final class Database {
    private var handle: OpaquePointer?
    let path: String
    /// When the statements running now must stop (`withTimeLimit`), read by SQLite's progress
    /// handler every `progressSteps` virtual-machine steps.
    private let deadline = Deadline()
    static let progressSteps: Int32 = 10_000

    /// The monotonic time (nanoseconds) past which a statement is interrupted.
    final class Deadline {
        var nanoseconds: UInt64 = .max
    }
    /// Statements kept prepared for reuse, by SQL text (see `cachedStatement`).
    private var statements: [String: Statement] = [:]

    /// Opens (creating if needed) the database file at `path`, or opens an existing one for
    /// reading only.
    /// - Parameter immutable: open read-only as a file nothing changes (no locks, no `-shm`), for
    ///   a file on a read-only mount.
    init(path: String, readOnly: Bool = false, immutable: Bool = false) throws {
        self.path = path
        var connection: OpaquePointer?
        var flags =
            (readOnly || immutable ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
            | SQLITE_OPEN_NOMUTEX
        var name = path
        if immutable {
            flags |= SQLITE_OPEN_URI
            let escaped = path.utf8.map { byte in
                byte >= 0x80 || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#")
                    ? "%" + String(byte, radix: 16) : String(UnicodeScalar(byte))
            }
            name = "file:" + (path.hasPrefix("/") ? "" : "./") + escaped.joined() + "?immutable=1"
        }
        let rc = sqlite3_open_v2(name, &connection, flags, nil)
        guard rc == SQLITE_OK, let connection else {
            let error = SQLiteError(code: rc, connection: connection)
            sqlite3_close_v2(connection)
            throw error
        }
        handle = connection
        sqlite3_extended_result_codes(connection, 1)
        // The keyword index's tokenizer (see KeywordIndex), before anything reads the table.
        let registered = scoped_tokenizer_register(connection)
        guard registered == SQLITE_OK else {
            let error = SQLiteError(code: registered, connection: connection, sql: "scoped_tokenizer_register")
            close()
            throw error
        }
        // Non-zero interrupts the statement (SQLITE_INTERRUPT): how `withTimeLimit` bounds it.
        sqlite3_progress_handler(
            connection, Self.progressSteps,
            { context in
                let deadline = Unmanaged<Deadline>.fromOpaque(context!).takeUnretainedValue()
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) > deadline.nanoseconds ? 1 : 0
            }, Unmanaged.passUnretained(deadline).toOpaque())
    }

    /// Runs `body` with every statement of this connection stopped once `milliseconds` have
    /// passed (it fails with `SQLITE_INTERRUPT`, and its transaction rolls back); nil: no limit.
    func withTimeLimit<T>(_ milliseconds: Int?, _ body: () throws -> T) rethrows -> T {
        guard let milliseconds else { return try body() }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let previous = deadline.nanoseconds
        deadline.nanoseconds =
            UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) + UInt64(milliseconds) * 1_000_000
        defer { deadline.nanoseconds = previous }
        return try body()
    }

    deinit { close() }

    var connection: OpaquePointer {
        guard let handle else { preconditionFailure("database \(path) is closed") }
        return handle
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(connection, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard rc == SQLITE_OK else { throw SQLiteError(code: rc, connection: connection, sql: sql) }
    }

    /// Compiles a statement for repeated use.
    func prepare(_ sql: String) throws -> Statement {
        try Statement(connection: connection, sql: sql)
    }

    /// A prepared statement for `sql`, kept for the next call with the same text (at most 64
    /// are kept). The caller resets it when done, so it holds no read transaction open.
    func cachedStatement(_ sql: String) throws -> Statement {
        if let statement = statements[sql] { return statement }
        if statements.count >= 64 { statements.removeAll() }
        let statement = try prepare(sql)
        statements[sql] = statement
        return statement
    }

    /// Reads a single integer, e.g. from a PRAGMA.
    func scalarInt(_ sql: String) throws -> Int64 {
        let statement = try prepare(sql)
        guard try statement.step() else { return 0 }
        return statement.int64(at: 0)
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE.
    var changes: Int { Int(sqlite3_changes64(connection)) }

    /// Rows changed since the connection opened, by every statement (FTS5's own writes of its
    /// index included).
    var totalChanges: Int { Int(sqlite3_total_changes64(connection)) }

    /// Whether a transaction is open (SQLite is not in autocommit mode).
    var inTransaction: Bool { sqlite3_get_autocommit(connection) == 0 }

    /// Runs `body` in one read transaction: every statement in it reads the same committed
    /// state.
    func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN DEFERRED")
        defer { if (try? execute("COMMIT")) == nil { try? execute("ROLLBACK") } }
        return try body()
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// - Throws: what `body` threw, or `TransactionStuck` when the rollback did not end the
    ///   transaction (the connection is then unusable until reopened).
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            if inTransaction { throw TransactionStuck(cause: error) }
            throw error
        }
    }

    /// Copies this whole database into `destination` with SQLite's online backup API, in one
    /// step: one read transaction, so the copy is the last committed state as of its start, and
    /// (in WAL mode) writers in other connections carry on meanwhile.
    func backup(into destination: Database) throws {
        guard let backup = sqlite3_backup_init(destination.connection, "main", connection, "main") else {
            throw SQLiteError(code: sqlite3_errcode(destination.connection), connection: destination.connection)
        }
        var rc = sqlite3_backup_step(backup, -1)
        // Another connection's lock: wait and go on, as SQLite's own shell does.
        while rc == SQLITE_BUSY || rc == SQLITE_LOCKED {
            sqlite3_sleep(50)
            rc = sqlite3_backup_step(backup, -1)
        }
        let finished = sqlite3_backup_finish(backup)
        guard rc == SQLITE_DONE else { throw SQLiteError(code: rc, connection: destination.connection) }
        guard finished == SQLITE_OK else { throw SQLiteError(code: finished, connection: destination.connection) }
    }

    /// Closes the connection. Safe to call twice.
    func close() {
        guard let handle else { return }
        statements.removeAll()
        sqlite3_close_v2(handle)
        self.handle = nil
    }
}

/// A failed transaction whose ROLLBACK did not end it.
struct TransactionStuck: Error, CustomStringConvertible {
    var cause: any Error
    var description: String { "the transaction could not be rolled back after: \(cause)" }
}
