import CSQLite

/// A failed SQLite call: the result code, SQLite's message and the statement, when there was one.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The SQLite result code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT`, ...).
    public let code: Int32
    /// SQLite's explanation.
    public let message: String
    /// The SQL being run, if any.
    public let sql: String?

    public var description: String {
        "SQLite error \(code): \(message)" + (sql.map { " (in: \($0))" } ?? "")
    }

    /// The statement was stopped by the progress handler (`Database.withTimeLimit`).
    var interrupted: Bool { code & 0xFF == SQLITE_INTERRUPT }

    init(code: Int32, connection: OpaquePointer?, sql: String? = nil) {
        self.code = code
        if let connection, let text = sqlite3_errmsg(connection) {
            self.message = String(cString: text)
        } else {
            self.message = String(cString: sqlite3_errstr(code))
        }
        self.sql = sql
    }
}
