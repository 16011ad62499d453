import CSQLite
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

/// The storage engine: one SQLite file holds one memory space; an in-memory flat index mirrors it
/// for search.
///
/// Writes are serialized. Each write is one SQLite transaction, committed (WAL, `synchronous =
/// FULL`) before the in-memory index changes and before the caller is answered, so an
/// acknowledged write survives a crash. Searches read the index under a shared lock and run in
/// parallel with each other.
public final class MemoryStore: Sendable {
    /// The file this store was opened from.
    public let path: String
    /// How vectors are compared; fixed when the space was created.
    public let metric: Metric
    /// The embedding model whose vectors fill the space, once one has been recorded.
    public let model: String?

    private let fileLock: FileLock
    private let writerLock = Lock()
    // Guarded by writerLock; nil once closed.
    nonisolated(unsafe) private var writer: Writer?
    private let stateLock = ReadWriteLock()
    // Guarded by stateLock: readers share it, writers hold it exclusively.
    nonisolated(unsafe) private var state: State

    /// Everything searches read. The index is nil until the space knows its dimension.
    private struct State {
        var index: FlatIndex?
        var records: [String: Record] = [:]
        var recordBytes = 0
    }

    /// A memory's fields other than its id and vector, kept in memory to answer searches.
    private struct Record {
        var user: String
        var session: String?
        var role: Role?
        var text: String
        var createdAt: Int64
        var metadata: String

        var approximateBytes: Int {
            user.utf8.count + (session?.utf8.count ?? 0) + text.utf8.count + metadata.utf8.count
                + MemoryLayout<Record>.stride
        }

        init(user: String, session: String?, role: Role?, text: String, createdAt: Int64, metadata: String) {
            self.user = user
            self.session = session
            self.role = role
            self.text = text
            self.createdAt = createdAt
            self.metadata = metadata
        }

        init(_ memory: Memory) {
            self.init(
                user: memory.user, session: memory.session, role: memory.role, text: memory.text,
                createdAt: memory.createdAt, metadata: memory.metadata)
        }

        var attributes: RowAttributes {
            RowAttributes(session: session, role: role?.rawValue, createdAt: createdAt)
        }

        func memory(id: String, vector: [Float]) -> Memory {
            Memory(
                id: id, user: user, session: session, role: role, text: text, createdAt: createdAt,
                metadata: metadata, vector: vector)
        }
    }

    /// The write side: the connection and its prepared statements.
    private struct Writer {
        let database: Database
        let upsert: Statement
        let delete: Statement
        let deleteUser: Statement
        let setSetting: Statement

        init(database: Database) throws {
            self.database = database
            upsert = try database.prepare(
                """
                INSERT INTO memories (id, user, session, role, text, created_at, metadata, embedding)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                ON CONFLICT(id) DO UPDATE SET user = excluded.user, session = excluded.session,
                    role = excluded.role, text = excluded.text, created_at = excluded.created_at,
                    metadata = excluded.metadata, embedding = excluded.embedding
                """)
            delete = try database.prepare("DELETE FROM memories WHERE id = ?1")
            deleteUser = try database.prepare("DELETE FROM memories WHERE user = ?1")
            setSetting = try database.prepare("INSERT OR REPLACE INTO space (key, value) VALUES (?1, ?2)")
        }

        func set(_ key: String, _ value: String) throws {
            setSetting.reset()
            try setSetting.bind(key, at: 1)
            try setSetting.bind(value, at: 2)
            try setSetting.run()
        }
    }

    // MARK: - Opening and closing

    /// Opens the space stored at `path`, creating the file when it does not exist.
    ///
    /// - Parameters:
    ///   - path: The SQLite database file.
    ///   - dimension: The vector length; for a new space, nil leaves it to the first vector.
    ///   - metric: For a new space, nil means cosine.
    ///   - model: The embedding model the server runs, if any. A space records the first model
    ///     it is opened with and refuses any other afterwards.
    ///   - busyTimeoutMilliseconds: How long a write waits for another process's lock on the file
    ///     before failing with `StoreError.sqlite`.
    /// - Throws: `StoreError.incompatibleDatabase` when the file's space has another dimension or
    ///   metric than the one asked for, or a schema newer than this code; `StoreError.sqlite`.
    public init(
        path: String, dimension: Int? = nil, metric: Metric? = nil, model: String? = nil,
        busyTimeoutMilliseconds: Int = 5000
    ) throws {
        self.path = path
        do {
            let database = try Database(path: path)
            guard let fileLock = FileLock(path: path) else {
                throw StoreError.incompatibleDatabase("\(path) is in use by another process (a running server?)")
            }
            self.fileLock = fileLock
            try database.execute("PRAGMA journal_mode = WAL")
            try database.execute("PRAGMA synchronous = FULL")
            // Checkpoint the log every 64 MB rather than 4 MB: bulk loads ran 25% faster.
            try database.execute("PRAGMA wal_autocheckpoint = 16384")
            try database.execute("PRAGMA busy_timeout = \(busyTimeoutMilliseconds)")
            try database.migrate()
            let writer = try Writer(database: database)

            let settings = try Self.readSettings(database)
            let spaceMetric: Metric
            if let stored = settings["metric"] {
                guard let storedMetric = Metric(rawValue: stored) else {
                    throw StoreError.incompatibleDatabase("unknown metric '\(stored)' in \(path)")
                }
                if let metric, metric != storedMetric {
                    throw StoreError.incompatibleDatabase(
                        "\(path) holds a \(storedMetric.rawValue) space, not \(metric.rawValue)")
                }
                spaceMetric = storedMetric
            } else {
                spaceMetric = metric ?? .cosine
                try database.transaction {
                    try writer.set("metric", spaceMetric.rawValue)
                    try writer.set("index", "flat")
                }
            }
            self.metric = spaceMetric
            if let stored = settings["model"], let model, stored != model {
                throw StoreError.incompatibleDatabase("\(path) was filled by the model \(stored), not \(model)")
            }
            if settings["model"] == nil, let model {
                try database.transaction { try writer.set("model", model) }
            }
            self.model = settings["model"] ?? model
            var spaceDimension = settings["dimension"].flatMap { Int($0) }
            if let dimension {
                guard dimension > 0 else { throw StoreError.invalidValue("dimension must be positive") }
                if let spaceDimension, spaceDimension != dimension {
                    throw StoreError.incompatibleDatabase(
                        "\(path) holds vectors of dimension \(spaceDimension), not \(dimension)")
                }
                if spaceDimension == nil {
                    try database.transaction { try writer.set("dimension", String(dimension)) }
                    spaceDimension = dimension
                }
            }
            self.state = try Self.load(database, dimension: spaceDimension, metric: spaceMetric)
            self.writer = writer
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
    }

    private static func readSettings(_ database: Database) throws -> [String: String] {
        let statement = try database.prepare("SELECT key, value FROM space")
        var settings: [String: String] = [:]
        while try statement.step() {
            if let key = statement.string(at: 0), let value = statement.string(at: 1) { settings[key] = value }
        }
        return settings
    }

    private static func load(_ database: Database, dimension: Int?, metric: Metric) throws -> State {
        var state = State()
        guard let dimension else { return state }
        var index = FlatIndex(dimension: dimension, metric: metric)
        let rows = try database.prepare(
            "SELECT id, user, session, role, text, created_at, metadata, embedding FROM memories ORDER BY seq")
        while try rows.step() {
            let id = rows.string(at: 0) ?? ""
            let record = Record(
                user: rows.string(at: 1) ?? "", session: rows.string(at: 2),
                role: rows.string(at: 3).flatMap(Role.init(rawValue:)), text: rows.string(at: 4) ?? "",
                createdAt: rows.int64(at: 5), metadata: rows.string(at: 6) ?? "{}")
            let vector = rows.floats(at: 7)
            guard vector.count == dimension else {
                throw StoreError.incompatibleDatabase(
                    "memory \(id) has \(vector.count) components, space has \(dimension)")
            }
            index.upsert(id: id, user: record.user, vector: vector, attributes: record.attributes)
            state.records[id] = record
            state.recordBytes += record.approximateBytes + id.utf8.count
        }
        state.index = index
        return state
    }

    /// Checkpoints the write-ahead log into the database file and closes it. Later calls throw
    /// `StoreError.closed`.
    public func close() {
        writerLock.withLock {
            guard let database = writer?.database else { return }
            try? database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            writer = nil
            database.close()
            fileLock.release()
        }
    }

    // MARK: - Reading

    /// The vector length, or nil while the space is empty and was created without one.
    public var dimension: Int? { stateLock.withReadLock { state.index?.dimension } }

    /// Number of memories.
    public var count: Int { stateLock.withReadLock { state.records.count } }

    /// The memory stored under `id`, with its vector, or nil.
    public func get(id: String) -> Memory? {
        stateLock.withReadLock {
            guard let record = state.records[id], let vector = state.index?.vector(id: id) else { return nil }
            return record.memory(id: id, vector: vector)
        }
    }

    /// The `k` memories of `user` closest to `vector` that pass `filter`, best first.
    /// - Throws: `StoreError.wrongDimension`, `StoreError.nonFiniteVector`.
    public func search(user: String, vector: [Float], k: Int, filter: RowFilter = RowFilter()) throws -> [ScoredMemory]
    {
        precondition(k > 0)
        try Self.checkFinite(vector)
        return try stateLock.withReadLock {
            guard let index = state.index else { return [] }
            guard vector.count == index.dimension else {
                throw StoreError.wrongDimension(expected: index.dimension, got: vector.count)
            }
            return index.search(user: user, query: vector, k: k, filter: filter).compactMap { hit in
                state.records[hit.id].map { ScoredMemory(memory: $0.memory(id: hit.id, vector: []), score: hit.score) }
            }
        }
    }

    /// Counts and sizes.
    public func stats() -> StoreStats {
        let (memories, users, dimension, inMemory) = stateLock.withReadLock {
            (
                state.records.count, state.index?.userCount ?? 0, state.index?.dimension,
                (state.index?.bytes ?? 0) + state.recordBytes
            )
        }
        return StoreStats(
            memories: memories, users: users, dimension: dimension, metric: metric,
            bytesOnDisk: Self.fileSize(path) + Self.fileSize(path + "-wal"), bytesInMemory: inMemory)
    }

    // MARK: - Writing

    /// Stores a batch in one transaction: all of it or none. A memory whose id exists replaces it,
    /// or, with `skippingExisting`, is left out (so an interrupted import can be run again).
    /// - Returns: The ids stored, in order (generated where the memory had none).
    /// - Throws: `StoreError.wrongDimension`, `.nonFiniteVector`, `.invalidValue` before anything
    ///   is written; `.sqlite` when the transaction fails (then nothing was stored); `.closed`.
    @discardableResult
    public func add(_ batch: [NewMemory], skippingExisting: Bool = false) throws -> [String] {
        guard !batch.isEmpty else { return [] }
        return try withWriter { writer in
            var batch = batch
            if skippingExisting {
                batch = stateLock.withReadLock { batch.filter { $0.id.map { state.records[$0] == nil } ?? true } }
                guard !batch.isEmpty else { return [] }
            }
            let knownDimension = dimension
            let spaceDimension = knownDimension ?? batch[0].vector.count
            guard spaceDimension > 0 else { throw StoreError.invalidValue("vector must not be empty") }
            let now = Self.nowMilliseconds()
            var memories: [Memory] = []
            memories.reserveCapacity(batch.count)
            for item in batch {
                guard item.vector.count == spaceDimension else {
                    throw StoreError.wrongDimension(expected: spaceDimension, got: item.vector.count)
                }
                try Self.checkFinite(item.vector)
                guard !item.user.isEmpty else { throw StoreError.invalidValue("user must not be empty") }
                if let id = item.id, id.isEmpty { throw StoreError.invalidValue("id must not be empty") }
                memories.append(
                    Memory(
                        id: item.id ?? Self.generateID(), user: item.user, session: item.session, role: item.role,
                        text: item.text, createdAt: item.createdAt ?? now, metadata: item.metadata,
                        vector: metric == .cosine ? FlatIndex.normalized(item.vector) : item.vector))
            }
            try writer.database.transaction {
                if knownDimension == nil { try writer.set("dimension", String(spaceDimension)) }
                for memory in memories {
                    let upsert = writer.upsert
                    upsert.reset()
                    try upsert.bind(memory.id, at: 1)
                    try upsert.bind(memory.user, at: 2)
                    try upsert.bind(memory.session, at: 3)
                    try upsert.bind(memory.role?.rawValue, at: 4)
                    try upsert.bind(memory.text, at: 5)
                    try upsert.bind(memory.createdAt, at: 6)
                    try upsert.bind(memory.metadata, at: 7)
                    try upsert.bind(memory.vector, at: 8)
                    try upsert.run()
                }
            }
            stateLock.withWriteLock {
                if state.index == nil { state.index = FlatIndex(dimension: spaceDimension, metric: metric) }
                for memory in memories {
                    let record = Record(memory)
                    if let old = state.records.updateValue(record, forKey: memory.id) {
                        state.recordBytes -= old.approximateBytes + memory.id.utf8.count
                    }
                    state.recordBytes += record.approximateBytes + memory.id.utf8.count
                    state.index!.upsert(
                        id: memory.id, user: memory.user, vector: memory.vector, attributes: record.attributes)
                }
            }
            return memories.map(\.id)
        }
    }

    /// Deletes one memory. Returns false when there was none with that id.
    public func delete(id: String) throws -> Bool {
        try withWriter { writer in
            guard stateLock.withReadLock({ state.records[id] != nil }) else { return false }
            try writer.database.transaction {
                writer.delete.reset()
                try writer.delete.bind(id, at: 1)
                try writer.delete.run()
            }
            stateLock.withWriteLock {
                if let old = state.records.removeValue(forKey: id) {
                    state.recordBytes -= old.approximateBytes + id.utf8.count
                }
                state.index?.remove(id: id)
            }
            return true
        }
    }

    /// Deletes every memory of `user`. Returns how many there were.
    public func forget(user: String) throws -> Int {
        try withWriter { writer in
            guard stateLock.withReadLock({ (state.index?.count(user: user) ?? 0) > 0 }) else { return 0 }
            try writer.database.transaction {
                writer.deleteUser.reset()
                try writer.deleteUser.bind(user, at: 1)
                try writer.deleteUser.run()
            }
            return stateLock.withWriteLock {
                let ids = state.index?.removeAll(user: user) ?? []
                for id in ids {
                    if let old = state.records.removeValue(forKey: id) {
                        state.recordBytes -= old.approximateBytes + id.utf8.count
                    }
                }
                return ids.count
            }
        }
    }

    // MARK: - Helpers

    private func withWriter<T>(_ body: (Writer) throws -> T) throws -> T {
        try writerLock.withLock {
            guard let writer else { throw StoreError.closed }
            do {
                return try body(writer)
            } catch let error as SQLiteError {
                throw StoreError.sqlite(error.description)
            }
        }
    }

    private static func checkFinite(_ vector: [Float]) throws {
        let finite = vector.withUnsafeBufferPointer { $0.allSatisfy(\.isFinite) }
        guard finite else { throw StoreError.nonFiniteVector }
    }

    static func nowMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// A random version-4 UUID in lower-case text.
    static func generateID() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
        }
        return [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }.joined(separator: "-")
    }

    private static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }
}
