import CSQLite
import ContextModel
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

/// The storage engine: one SQLite file holds one memory space; in-memory indexes mirror it for
/// search: always the exact flat index, and for a space created with `SpaceIndex.hnsw` an HNSW
/// graph, itself stored in the file (`hnsw_nodes`).
///
/// Writes are serialized. Each write is one SQLite transaction, committed (WAL, `synchronous =
/// FULL`) before the caller is answered, so an acknowledged write survives a crash. The graph's
/// changes are written in the same transaction as the memories they index; new nodes are linked
/// before the commit but returned by searches only after it. Searches read the indexes under a
/// shared lock and run in parallel with each other and with the graph work of a write, which
/// holds the lock exclusively only to allocate a node and to write its links.
public final class MemoryStore: Sendable {
    /// The file this store was opened from.
    public let path: String
    /// How vectors are compared; fixed when the space was created.
    public let metric: Metric
    /// The embedding model whose vectors fill the space, once one has been recorded.
    public let model: String?
    /// The index serving searches; fixed when the space was created.
    public let index: SpaceIndex

    let fileLock: FileLock
    let writerLock = Lock()
    // Guarded by writerLock; nil once closed.
    nonisolated(unsafe) var writer: Writer?
    // Guarded by writerLock: why writes are refused until the store is reopened, if they are.
    nonisolated(unsafe) var writesRefused: String?
    let stateLock = ReadWriteLock()
    // Guarded by stateLock: readers share it, writers hold it exclusively.
    nonisolated(unsafe) var state: State

    /// Everything searches read. The indexes are nil until the space knows its dimension.
    struct State {
        var index: FlatIndex?
        /// The HNSW graph of an `hnsw` space.
        var graph: HNSWIndex?
        /// Keyed by bytes, as SQLite compares text (see ExactString).
        var records: [ExactString: Record] = [:]
        var recordBytes = 0
    }

    /// A memory's fields other than its id and vector, kept in memory to answer searches.
    struct Record {
        /// The memory's row in `memories`, which its graph node refers to.
        var seq: Int64
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

        init(
            seq: Int64, user: String, session: String?, role: Role?, text: String, createdAt: Int64, metadata: String
        ) {
            self.seq = seq
            self.user = user
            self.session = session
            self.role = role
            self.text = text
            self.createdAt = createdAt
            self.metadata = metadata
        }

        init(_ memory: Memory, seq: Int64) {
            self.init(
                seq: seq, user: memory.user, session: memory.session, role: memory.role, text: memory.text,
                createdAt: memory.createdAt, metadata: memory.metadata)
        }

        var attributes: RowAttributes {
            RowAttributes(session: session, role: role, createdAt: createdAt)
        }

        func memory(id: String, vector: [Float]) -> Memory {
            Memory(
                id: id, user: user, session: session, role: role, text: text, createdAt: createdAt,
                metadata: metadata, vector: vector)
        }
    }

    /// The write side: the connection and its prepared statements.
    struct Writer {
        let database: Database
        let upsert: Statement
        let delete: Statement
        let deleteUser: Statement
        let setSetting: Statement
        let saveNode: Statement
        let deleteNode: Statement

        init(database: Database) throws {
            self.database = database
            upsert = try database.prepare(
                """
                INSERT INTO memories (id, user, session, role, text, created_at, metadata, embedding)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                ON CONFLICT(id) DO UPDATE SET user = excluded.user, session = excluded.session,
                    role = excluded.role, text = excluded.text, created_at = excluded.created_at,
                    metadata = excluded.metadata, embedding = excluded.embedding
                RETURNING seq
                """)
            delete = try database.prepare("DELETE FROM memories WHERE id = ?1")
            deleteUser = try database.prepare("DELETE FROM memories WHERE user = ?1")
            setSetting = try database.prepare("INSERT OR REPLACE INTO space (key, value) VALUES (?1, ?2)")
            saveNode = try database.prepare(
                "INSERT OR REPLACE INTO hnsw_nodes (slot, memory, links) VALUES (?1, ?2, ?3)")
            deleteNode = try database.prepare("DELETE FROM hnsw_nodes WHERE slot = ?1")
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
    ///   - index: For a new space, nil means flat. An existing space keeps the index it was
    ///     created with; asking for another is refused.
    ///   - busyTimeoutMilliseconds: How long a write waits for another process's lock on the file
    ///     before failing with `StoreError.sqlite`.
    /// - Throws: `StoreError.incompatibleDatabase` when the file's space has another dimension,
    ///   metric or index than the one asked for, a schema newer than this code, or a stored graph
    ///   that does not match its memories (`check` tells more); `StoreError.sqlite`.
    public init(
        path: String, dimension: Int? = nil, metric: Metric? = nil, model: String? = nil, index: SpaceIndex? = nil,
        busyTimeoutMilliseconds: Int = 5000
    ) throws {
        self.path = path
        var info = stat()
        if stat(path, &info) == 0, info.st_size == 0 {
            // SQLite would quietly make a new space of it, even where a space's file was lost.
            throw StoreError.incompatibleDatabase(
                "\(path) is an empty file, not a database; remove it to create a new space there")
        }
        let fileLock: FileLock
        do {
            fileLock = try FileLock(path: path)
        } catch .held {
            throw StoreError.incompatibleDatabase("\(path) is in use by another process (a running server?)")
        } catch .cannotOpen(let reason) {
            throw StoreError.incompatibleDatabase("cannot open \(path): \(reason)")
        }
        self.fileLock = fileLock
        do {
            let database = try Database(path: path)
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
                    for (key, value) in (index ?? .flat).settings { try writer.set(key, value) }
                }
            }
            self.metric = spaceMetric
            // A new space takes the index asked for (written above); an existing one keeps its own.
            let spaceIndex = settings["metric"] == nil ? index ?? .flat : try SpaceIndex(settings: settings)
            if let index, index.name != spaceIndex.name {
                throw StoreError.incompatibleDatabase(
                    "\(path) holds a space indexed by \(spaceIndex), not \(index.name)")
            }
            self.index = spaceIndex
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
            self.state = try Self.load(
                database, dimension: spaceDimension, metric: spaceMetric, index: spaceIndex,
                entryPoint: settings["hnsw_entry"].flatMap { Int32($0) } ?? -1)
            self.writer = writer
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
    }

    static func readSettings(_ database: Database) throws -> [String: String] {
        let statement = try database.prepare("SELECT key, value FROM space")
        var settings: [String: String] = [:]
        while try statement.step() {
            if let key = statement.string(at: 0), let value = statement.string(at: 1) { settings[key] = value }
        }
        return settings
    }

    static func load(
        _ database: Database, dimension: Int?, metric: Metric, index spaceIndex: SpaceIndex, entryPoint: Int32
    ) throws -> State {
        var state = State()
        guard let dimension else { return state }
        var index = FlatIndex(dimension: dimension, metric: metric)
        // Room for every row up front: growing 150 MB of arrays by doubling cost a third of the
        // start-up time in page faults.
        var total = 0
        let users = try database.prepare("SELECT user, count(*) FROM memories GROUP BY user")
        while try users.step() {
            let rows = Int(users.int64(at: 1))
            index.reserveCapacity(rows, forUser: users.string(at: 0) ?? "")
            total += rows
        }
        index.reserveCapacity(total)
        state.records.reserveCapacity(total)
        var graph: HNSWIndex?
        var nodeCount = 0
        if case .hnsw(let parameters) = spaceIndex {
            graph = HNSWIndex(dimension: dimension, metric: metric, parameters: parameters)
            nodeCount = Int(try database.scalarInt("SELECT count(*) FROM hnsw_nodes"))
            graph!.reserveCapacity(Int(try database.scalarInt("SELECT coalesce(max(slot) + 1, 0) FROM hnsw_nodes")))
        }
        // Each memory with its node (found through the unique index on hnsw_nodes.memory).
        let rows = try database.prepare(
            """
            SELECT m.id, m.user, m.session, m.role, m.text, m.created_at, m.metadata, m.embedding, m.seq,
                n.slot, n.links
            FROM memories m LEFT JOIN hnsw_nodes n ON n.memory = m.seq ORDER BY m.seq
            """)
        while try rows.step() {
            let id = rows.string(at: 0) ?? ""
            let record = Record(
                seq: rows.int64(at: 8), user: rows.string(at: 1) ?? "", session: rows.string(at: 2),
                role: rows.string(at: 3).flatMap(Role.init(rawValue:)), text: rows.string(at: 4) ?? "",
                createdAt: rows.int64(at: 5), metadata: rows.string(at: 6) ?? "{}")
            let vector = rows.floats(at: 7)
            guard vector.count == dimension else {
                throw StoreError.incompatibleDatabase(
                    "memory \(id) has \(vector.count) components, space has \(dimension)")
            }
            index.upsert(id: id, user: record.user, vector: vector, attributes: record.attributes)
            if graph != nil {
                guard !rows.isNull(at: 9) else {
                    throw StoreError.incompatibleDatabase("memory \(id) has no graph node (run contextstore check)")
                }
                do {
                    try graph!.restore(
                        slot: Int32(truncatingIfNeeded: rows.int64(at: 9)), id: id, user: record.user, vector: vector,
                        attributes: record.attributes, record: rows.int32s(at: 10))
                } catch {
                    throw StoreError.incompatibleDatabase("\(error) (run contextstore check)")
                }
            }
            state.records[ExactString(id)] = record
            state.recordBytes += record.approximateBytes + id.utf8.count
        }
        if let restored = graph?.count, restored != nodeCount {
            throw StoreError.incompatibleDatabase(
                "\(nodeCount - restored) graph nodes index no memory (run contextstore check)")
        }
        if graph != nil {
            do {
                try graph!.finishRestoring(entryPoint: entryPoint)
            } catch {
                throw StoreError.incompatibleDatabase("\(error) (run contextstore check)")
            }
        }
        state.index = index
        state.graph = graph
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
            guard let record = state.records[ExactString(id)], let vector = state.index?.vector(id: id) else {
                return nil
            }
            return record.memory(id: id, vector: vector)
        }
    }

    /// The search's hits, best first.
    /// - Throws: as `search(user:vector:k:filter:ef:exact:)`; `StoreError.invalidValue` for a
    ///   query that is still text (the server embeds it first).
    public func search(_ request: SearchRequest) throws -> [ScoredMemory] {
        guard case .vector(let vector) = request.query else {
            throw StoreError.invalidValue("a text query must be embedded before it is searched")
        }
        return try search(
            user: request.user, vector: vector, k: request.k, filter: request.filter, ef: request.ef,
            exact: request.exact)
    }

    /// The `k` memories of `user` closest to `vector` that pass `filter`, best first: from the
    /// flat index or the graph, as `plan` chooses.
    /// - Parameters:
    ///   - ef: The graph search's candidate list (default: the space's `efSearch`).
    ///   - exact: Always scan exactly (the flat index): the ground truth.
    /// - Throws: `StoreError.wrongDimension`, `StoreError.nonFiniteVector`.
    public func search(
        user: String, vector: [Float], k: Int, filter: RowFilter = RowFilter(), ef: Int? = nil, exact: Bool = false
    ) throws -> [ScoredMemory] {
        precondition(k > 0)
        // Checked and prepared once, here, for whichever index answers.
        let query = try Self.storable(vector, metric: metric)
        return try stateLock.withReadLock {
            guard let index = state.index else { return [] }
            guard query.count == index.dimension else {
                throw StoreError.wrongDimension(expected: index.dimension, got: query.count)
            }
            let hits: [SearchHit]
            switch route(user: user, filter: filter, ef: ef, exact: exact) {
            case .flat: hits = index.search(user: user, query: query, k: k, filter: filter)
            case .hnsw(let width):
                hits = state.graph!.search(user: user, query: query, k: k, ef: width, filter: filter) {
                    index.exactScores(ids: $0, query: query)
                }
            }
            return hits.compactMap { hit in
                state.records[ExactString(hit.id)].map {
                    ScoredMemory(memory: $0.memory(id: hit.id, vector: []), score: hit.score)
                }
            }
        }
    }

    /// Which index a search would use. The flat scan reads every row of the user's partition; a
    /// graph walk scores about `24 ef` nodes, divided by the fraction of the space the search's
    /// scope holds (the walk passes through nodes outside it). The cheaper one wins, with a
    /// graph node counted as two rows (a pair kernel on scattered memory against a streaming
    /// BLAS scan). So small scopes are scanned exactly and large ones walked.
    public func plan(user: String, filter: RowFilter = RowFilter(), ef: Int? = nil, exact: Bool = false) -> SearchPlan {
        stateLock.withReadLock {
            switch route(user: user, filter: filter, ef: ef, exact: exact) {
            case .flat: .flat
            case .hnsw: .hnsw
            }
        }
    }

    private enum Route {
        case flat
        /// Walk the graph with this `ef`.
        case hnsw(ef: Int)
    }

    /// `plan`'s choice, under the caller's read lock. A walk whose scope holds a fraction `s` of
    /// the graph keeps `ef / s` candidates (at most `4 ef`): on a 10,000-node test graph
    /// (HNSWIndexTests), a scope of half the nodes had recall@10 0.94 at ef 64 and 0.99 at ef 128.
    private func route(user: String, filter: RowFilter, ef: Int?, exact: Bool) -> Route {
        guard !exact, let graph = state.graph, let index = state.index, graph.count > 0 else { return .flat }
        let rows = index.count(user: user)
        let matches = index.estimatedMatches(user: user, filter: filter)
        guard matches > 0 else { return .flat }
        let selectivity = min(1, Double(matches) / Double(graph.count))
        let width = Double(ef ?? graph.parameters.efSearch)
        guard 2 * 24 * width / selectivity < Double(rows) else { return .flat }
        return .hnsw(ef: Int((width * min(4, 1 / selectivity)).rounded(.up)))
    }

    /// Counts and sizes.
    public func stats() -> StoreStats {
        let (memories, users, dimension, inMemory) = stateLock.withReadLock {
            (
                state.records.count, state.index?.userCount ?? 0, state.index?.dimension,
                (state.index?.bytes ?? 0) + (state.graph?.bytes ?? 0) + state.recordBytes
            )
        }
        return StoreStats(
            memories: memories, users: users, dimension: dimension, metric: metric, index: index.name,
            bytesOnDisk: Self.fileSize(path) + Self.fileSize(path + "-wal"), bytesInMemory: inMemory)
    }

    // MARK: - Helpers

    func withWriter<T>(_ body: (Writer) throws -> T) throws -> T {
        try writerLock.withLock {
            guard let writer else { throw StoreError.closed }
            if let writesRefused {
                throw StoreError.sqlite("writes are refused until the server restarts: \(writesRefused)")
            }
            do {
                return try body(writer)
            } catch let error as SQLiteError {
                throw StoreError.sqlite(error.description)
            }
        }
    }

    /// The largest Euclidean norm a vector may have. Inner products and squared distances of
    /// two such vectors stay below 4e36, inside float32's range (3.4e38), so no score overflows.
    public static let maximumNorm = 1e18

    /// Checks a vector and returns it as stored: normalized for cosine. The norm is computed in
    /// double precision, so vectors of huge or subnormal components are neither overflowed to
    /// infinity nor left unnormalized.
    /// - Throws: `StoreError.nonFiniteVector` for NaN or an infinity; `.invalidValue` for a
    ///   norm above `maximumNorm`, or a zero vector under cosine (it has no direction).
    public static func storable(_ vector: [Float], metric: Metric) throws -> [Float] {
        let norm = try checkedNorm(vector)
        guard metric == .cosine else { return vector }
        guard norm > 0 else { throw StoreError.invalidValue("a zero vector has no direction under cosine") }
        return vector.map { Float(Double($0) / norm) }
    }

    /// The vector's Euclidean norm, in double precision.
    /// - Throws: as `storable`, but accepts a zero vector.
    private static func checkedNorm(_ vector: [Float]) throws -> Double {
        let squared = vector.withUnsafeBufferPointer { values in
            var sum = 0.0
            for value in values {
                guard value.isFinite else { return Double.nan }
                sum += Double(value) * Double(value)
            }
            return sum
        }
        guard !squared.isNaN else { throw StoreError.nonFiniteVector }
        let norm = squared.squareRoot()
        guard norm <= maximumNorm else {
            throw StoreError.invalidValue("the vector's norm (\(norm)) is above \(maximumNorm)")
        }
        return norm
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
