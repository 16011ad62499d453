import CSQLite

/// A prepared statement. Owns its `sqlite3_stmt` and finalizes it when released.
final class Statement {
    private let handle: OpaquePointer
    private let connection: OpaquePointer
    let sql: String

    // SQLite copies bound text and blobs when given this destructor.
    static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(connection: OpaquePointer, sql: String) throws {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw SQLiteError(code: rc, connection: connection, sql: sql)
        }
        self.handle = statement
        self.connection = connection
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    // MARK: - Binding (indexes start at 1, as in SQLite)

    func bind(_ value: Int64, at index: Int32) throws {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    func bind(_ value: Double, at index: Int32) throws {
        try check(sqlite3_bind_double(handle, index, value))
    }

    func bind(_ value: String?, at index: Int32) throws {
        guard var value else { return try check(sqlite3_bind_null(handle, index)) }
        // With the length given, SQLite keeps every byte, NUL included (a length of -1 would
        // stop at the first NUL).
        let rc = value.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { chars in
                guard let start = chars.baseAddress, !chars.isEmpty else {
                    return sqlite3_bind_text(handle, index, "", 0, Self.transient)
                }
                return sqlite3_bind_text(handle, index, start, Int32(chars.count), Self.transient)
            }
        }
        try check(rc)
    }

    /// Binds float32 or int32 values as a little-endian BLOB.
    func bind<Value: BitwiseCopyable>(_ values: [Value], at index: Int32) throws {
        let rc = values.withUnsafeBytes { raw in
            sqlite3_bind_blob(handle, index, raw.baseAddress, Int32(raw.count), Self.transient)
        }
        try check(rc)
    }

    /// Binds `arguments` to parameters 1, 2, ... after a reset, ready to step.
    func bind(_ arguments: StatementArguments) throws {
        reset()
        for (i, value) in arguments.values.enumerated() { try value.bind(to: self, at: Int32(i + 1)) }
    }

    /// Runs the statement once with `arguments`, ignoring rows.
    func execute(_ arguments: StatementArguments) throws {
        try bind(arguments)
        try run()
    }

    // MARK: - Stepping

    /// Runs one step. Returns true while a row is available.
    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw SQLiteError(code: rc, connection: connection, sql: sql)
        }
    }

    /// Runs the statement to completion, ignoring rows.
    func run() throws {
        while try step() {}
    }

    /// Clears bindings and rewinds, ready for the next execution.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    // MARK: - Columns (indexes start at 0, as in SQLite)

    func int64(at column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func double(at column: Int32) -> Double { sqlite3_column_double(handle, column) }

    func isNull(at column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func string(at column: Int32) -> String? {
        guard let text = sqlite3_column_text(handle, column) else { return nil }
        // Every byte, up to the length SQLite reports: a stored NUL is kept.
        let bytes = UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, column)))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether a text column holds valid UTF-8 (NULL counts as valid).
    func isValidUTF8(at column: Int32) -> Bool {
        guard let text = sqlite3_column_text(handle, column) else { return true }
        let bytes = UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, column)))
        return String(validating: bytes, as: UTF8.self) != nil
    }

    var columnCount: Int32 { sqlite3_column_count(handle) }

    func columnName(at column: Int32) -> String { String(cString: sqlite3_column_name(handle, column)) }

    /// Appends `column`'s value in a form that tells any two values apart: a type byte, then 8
    /// little-endian bytes for a number, or a length and every byte for text and a BLOB.
    func appendValue(at column: Int32, to out: inout [UInt8]) {
        let type = sqlite3_column_type(handle, column)
        out.append(UInt8(type))
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out += $0 } }
        switch type {
        case SQLITE_INTEGER: append(sqlite3_column_int64(handle, column))
        case SQLITE_FLOAT: append(sqlite3_column_double(handle, column).bitPattern)
        case SQLITE_TEXT, SQLITE_BLOB:
            let start =
                type == SQLITE_TEXT
                ? UnsafeRawPointer(sqlite3_column_text(handle, column)) : sqlite3_column_blob(handle, column)
            let count = Int(sqlite3_column_bytes(handle, column))
            append(UInt64(count))
            if let start { out += UnsafeRawBufferPointer(start: start, count: count) }
        default: break  // NULL: the type byte alone
        }
    }

    /// A BLOB's bytes.
    func bytes(at column: Int32) -> [UInt8] { values(at: column) }

    /// Reads a little-endian float32 BLOB.
    func floats(at column: Int32) -> [Float] { values(at: column) }

    /// Reads a little-endian int32 BLOB.
    func int32s(at column: Int32) -> [Int32] { values(at: column) }

    /// Appends the values of a little-endian int32 BLOB to `values`; returns how many.
    func appendInt32s(at column: Int32, to values: inout [Int32]) -> Int {
        let count = Int(sqlite3_column_bytes(handle, column)) / MemoryLayout<Int32>.size
        guard count > 0, let blob = sqlite3_column_blob(handle, column) else { return 0 }
        let bytes = UnsafeRawBufferPointer(start: blob, count: count * MemoryLayout<Int32>.size)
        for i in 0..<count {
            values.append(bytes.loadUnaligned(fromByteOffset: i * MemoryLayout<Int32>.size, as: Int32.self))
        }
        return count
    }

    private func values<Value: BitwiseCopyable>(at column: Int32) -> [Value] {
        let byteCount = Int(sqlite3_column_bytes(handle, column))
        guard byteCount > 0, let blob = sqlite3_column_blob(handle, column) else { return [] }
        let count = byteCount / MemoryLayout<Value>.size
        return [Value](unsafeUninitializedCapacity: count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(
                from: UnsafeRawBufferPointer(start: blob, count: count * MemoryLayout<Value>.size))
            initialized = count
        }
    }

    private func check(_ rc: Int32) throws {
        guard rc == SQLITE_OK else { throw SQLiteError(code: rc, connection: connection, sql: sql) }
    }
}

/// A value a statement parameter takes (after GRDB's `DatabaseValueConvertible`).
protocol StatementBindable {
    func bind(to statement: Statement, at index: Int32) throws
}

extension Int64: StatementBindable {
    func bind(to statement: Statement, at index: Int32) throws { try statement.bind(self, at: index) }
}

extension Double: StatementBindable {
    func bind(to statement: Statement, at index: Int32) throws { try statement.bind(self, at: index) }
}

extension String: StatementBindable {
    func bind(to statement: Statement, at index: Int32) throws { try statement.bind(self, at: index) }
}

/// Nil binds NULL.
extension Optional: StatementBindable where Wrapped: StatementBindable {
    func bind(to statement: Statement, at index: Int32) throws {
        guard let self else { return try statement.bind(String?.none, at: index) }
        try self.bind(to: statement, at: index)
    }
}

/// A value stored in little-endian BLOBs of many (embeddings, graph links).
protocol BlobElement: BitwiseCopyable {}
extension Float: BlobElement {}
extension Int32: BlobElement {}

/// float32 or int32 values, bound as a little-endian BLOB.
extension Array: StatementBindable where Element: BlobElement {
    func bind(to statement: Statement, at index: Int32) throws { try statement.bind(self, at: index) }
}

/// The arguments of one execution, in parameter order (after GRDB's `StatementArguments`):
/// `try statement.execute([id, user, session])`.
struct StatementArguments: ExpressibleByArrayLiteral {
    var values: [any StatementBindable]

    init(arrayLiteral elements: any StatementBindable...) {
        values = elements
    }

    init(values: [any StatementBindable]) {
        self.values = values
    }
}
