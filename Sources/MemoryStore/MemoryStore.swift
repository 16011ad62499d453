import ContextModel
import Dispatch
import Synchronization
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

/// The storage engine: one SQLite file holds one memory space; in-memory indexes mirror it for
/// search: always the exact flat index, and for a space created with `SpaceIndex.hnsw` an HNSW
/// graph, itself stored in the file (`hnsw_nodes`).
///
/// Writes are serialized (`writeSide`). Each write is one SQLite transaction, committed (WAL,
/// `synchronous = FULL`) before the caller is answered, so an acknowledged write survives a
/// crash. The graph's changes are written in the same transaction as the memories they index;
/// new nodes are linked before the commit but returned by searches only after it. Searches read
/// the indexes (`state`) under a shared lock and run in parallel with each other and with the
/// graph work of a write, which holds the lock exclusively only to allocate a node and to write
/// its links (`GraphWriter`).
///
/// The code is split by job: opening and loading (`MemoryStore+Open.swift`), writes
/// (`MemoryStore+Writes.swift`), the graph's part of a write (`GraphWriter.swift`), the choice of
/// index (`SearchPlanner.swift`), reads through SQL (`MemoryStore+Listing.swift`), every SQL
/// statement (`SQL.swift`), the offline check (`MemoryStore+Check.swift`), backups
/// (`MemoryStore+Backup.swift`).
public final class MemoryStore: Sendable {
    /// The file this store was opened from.
    public let path: String
    /// How vectors are compared; fixed when the space was created.
    public let metric: Metric
    /// The embedding model whose vectors fill the space, once one has been recorded.
    public let model: String?
    /// The index serving searches; fixed when the space was created.
    public let index: SpaceIndex
    /// How the flat index keeps rows in memory (float32, or compact: float16 or int8 codes whose
    /// candidates are rescored from the vectors in the file); a setting of the space.
    public let flatStorage: VectorStorage
    /// What the server's model embeds for a memory (see `EmbedTemplate`); fixed when the space
    /// was created.
    public let embedTemplate: EmbedTemplate

    let fileLock: FileLock
    /// The connection that writes, one writer at a time.
    let writeSide: Mutex<WriteSide>
    /// Everything searches read: shared by readers, held alone by a write's short steps.
    let state: ReadWriteBox<State>
    /// The connections that read through SQL (see `withReader`).
    let readers: ReaderPool
    /// The connections a compact flat index's searches read stored vectors on (see
    /// `storedVectors`). Apart from `readers`, and never held while waiting for anything else:
    /// a search takes one while it holds `state` shared, and a reader of `readers` may wait for
    /// `state` (behind a waiting write), so sharing one pool could deadlock.
    let vectorReaders: ReaderPool
    /// The longest one SQL statement of a request may run, in milliseconds, before it is
    /// stopped (`StoreError.tooCostly`): a heavy filter of one tenant then holds a reading
    /// connection (or the writer) that long at most.
    public let statementTimeLimit: Int
    /// Which users' memories changed (see `Generation`).
    let changes = ChangeLog()
    /// Each searched user's keyword row count and tokens, for BM25, until the user's memories
    /// change.
    let keywordStatistics = KeywordStatistics()

    /// `KeywordTotals` by user, each with the generation it was read at; at most
    /// `maximumUsers` kept (past it, all are let go and read again as needed).
    final class KeywordStatistics: Sendable {
        static let maximumUsers = 100_000
        private let kept = Mutex<[ExactString: (Generation, KeywordTotals)]>([:])

        func totals(user: String, generation: Generation) -> KeywordTotals? {
            kept.withLock { kept in
                guard let (at, totals) = kept[ExactString(user)], at == generation else { return nil }
                return totals
            }
        }

        /// Lets `user`'s totals go; returns whether there were any.
        @discardableResult
        func drop(user: String) -> Bool {
            kept.withLock { $0.removeValue(forKey: ExactString(user)) != nil }
        }

        func holds(user: String) -> Bool { kept.withLock { $0[ExactString(user)] != nil } }

        func keep(_ totals: KeywordTotals, user: String, generation: Generation) {
            kept.withLock { kept in
                if kept.count >= Self.maximumUsers { kept.removeAll() }
                kept[ExactString(user)] = (generation, totals)
            }
        }
    }

    /// Read-only connections, opened as reads need them, at most `size` at once: one slow read
    /// (a heavy filter) holds one of them, not every tenant's reads.
    final class ReaderPool: Sendable {
        let size: Int
        private let state = Mutex<(idle: [UnsafeDatabase], open: Int, closed: Bool)>(([], 0, false))
        private let free: DispatchSemaphore

        /// A connection moved between threads, used by one at a time.
        struct UnsafeDatabase: @unchecked Sendable {
            let database: Database
        }

        init(size: Int) {
            self.size = size
            free = DispatchSemaphore(value: size)
        }

        func with<T>(path: String, _ body: (Database) throws -> T) throws -> T {
            free.wait()
            defer { free.signal() }
            let taken = try state.withLock { state throws -> Database? in
                guard !state.closed else { throw StoreError.closed }
                return state.idle.popLast()?.database
            }
            let database = try taken ?? Self.open(path)
            defer {
                state.withLock { state in
                    if state.closed { database.close() } else { state.idle.append(UnsafeDatabase(database: database)) }
                }
            }
            return try body(database)
        }

        private static func open(_ path: String) throws -> Database {
            let database = try Database(path: path, readOnly: true)
            try database.execute("PRAGMA busy_timeout = 5000")
            try database.registerTermCounts()
            return database
        }

        func close() {
            state.withLock { state in
                for idle in state.idle { idle.database.close() }
                state.idle = []
                state.closed = true
            }
        }
    }

    struct WriteSide {
        /// Nil once the store is closed.
        var statements: WriteStatements?
        /// Why writes are refused until the store is reopened, if they are.
        var refusal: String?
        /// The index of the last command applied (the setting `applied_index`).
        var appliedIndex: Int64
    }

    /// The setting that holds the index of the last command applied.
    static let appliedIndexSetting = "applied_index"

    /// Everything searches read. The indexes are nil until the space knows its dimension.
    struct State {
        var flat: FlatIndex?
        /// The graph of an `hnsw` space, made together with `flat`.
        var graph: HNSWIndex?
        /// The windows of long texts after their first (see `NewMemory.windows`), scanned
        /// exactly next to whichever index answers; rows are `windowID(key, position)`.
        var windows: FlatIndex?
        /// Each memory's fields at its handle, the number its rows in the indexes carry, so a
        /// hit leads to its record by index; nil at a free handle (or one whose memory is not
        /// yet committed).
        var records: [Record?] = []
        /// Keyed by bytes, as SQLite compares text (see ExactString).
        var handles: [ExactString: Int32] = [:]
        var freeHandles: [Int32] = []
        /// The most windows any memory stored since the space was opened has (a bound, never
        /// lowered): a search needs the first `k` memories of its windows, which lie within its
        /// first `k * mostWindows` window rows.
        var mostWindows = 0
        var memoryCount = 0
        var recordBytes = 0
        /// The handle of each memory row (`seq`): how a keyword hit, which names a row, finds
        /// its record.
        var handleOfSeq: [Int64: Int32] = [:]
        /// Each session's memories in time order (ties by `seq`), by user and session: the
        /// neighbouring turns of a hit. Memories without a session have no neighbours.
        var sessionTurns: [SessionKey: [Int32]] = [:]
        /// How many records expire (have an `expiresAt`): while there are any, searches skip
        /// the expired.
        var expiring = 0
        /// No record expires before this (unix ms; nil: none expires). Lowered as records come,
        /// set exactly by the purge, and left as it is when a record goes: never later than the
        /// earliest expiry.
        var nextExpiry: Int64?
        /// Expired memories purged over the space's life (the setting `purged`).
        var purged: Int64 = 0
        /// Adds that stored nothing for a duplicate over the space's life (the setting `duplicates`).
        var duplicates: Int64 = 0
        /// How many records have a bounded validity (`Validity.isBounded`): while none has, a
        /// read of what holds now needs no test of it.
        var bounded = 0
        /// How many records have any validity field set (`!Validity.isOpen`): while none has, an
        /// add has no link or end to carry over.
        var linked = 0
        /// The latest validity bound of any record stored since the space was opened, a memory's
        /// start (`created_at` when it names none) included (never lowered): while it lies ahead,
        /// what holds now may change by the clock alone.
        var latestBound: Int64?

        /// The record stored under `key` (see `MemoryStore.key`), if there is one.
        func record(key: String) -> Record? {
            handles[ExactString(key)].flatMap { records[Int($0)] }
        }

        /// The record a hit leads to.
        func record(_ hit: SearchHit) -> Record? {
            // A hit's handle is one this state gave (or -1 for an index that keeps none).
            assert(hit.handle < Int32(records.count), "a hit's handle \(hit.handle) past the records")
            return hit.handle >= 0 && Int(hit.handle) < records.count ? records[Int(hit.handle)] : nil
        }

        /// The handle of `key`: its own, or a free one it keeps until it is dropped.
        mutating func handle(for key: String) -> Int32 {
            let key = ExactString(key)
            if let handle = handles[key] { return handle }
            let handle: Int32
            if let free = freeHandles.popLast() {
                handle = free
            } else {
                // A handle is an index of `records` that fits the indexes' Int32 slots.
                precondition(records.count < Int(Int32.max), "more records than Int32 handles")
                handle = Int32(records.count)
                records.append(nil)
            }
            handles[key] = handle
            return handle
        }

        /// Makes the empty indexes of a space of `dimension`.
        mutating func makeIndexes(dimension: Int, metric: Metric, index: SpaceIndex, flatStorage: VectorStorage) {
            flat = FlatIndex(dimension: dimension, metric: metric, storage: flatStorage)
            windows = FlatIndex(dimension: dimension, metric: metric)
            if case .hnsw(let parameters) = index {
                graph = HNSWIndex(dimension: dimension, metric: metric, parameters: parameters)
            }
        }

        /// Changes the fields of `key`'s record and its rows' filter attributes in the indexes.
        mutating func update(key: String, _ changes: MemoryChanges) -> Memory? {
            guard let handle = handles[ExactString(key)], var record = records[Int(handle)] else { return nil }
            recordBytes -= record.approximateBytes
            removeTurn(handle, record)
            if let session = changes.session { record.session = session }
            if let role = changes.role { record.role = role }
            if let speaker = changes.speaker { record.speaker = speaker }
            if let metadata = changes.metadata { record.metadata = metadata }
            if let createdAt = changes.createdAt {
                record.createdAt = createdAt
                noteBound(record)
            }
            records[Int(handle)] = record
            recordBytes += record.approximateBytes
            insertTurn(handle, record)
            setAttributes(key: key, record)
            return record.memory(vector: [])
        }

        /// Ends `key`'s validity at `end`, replaced by `successor`, in its record and its rows'
        /// filter attributes.
        mutating func close(key: String, at end: Int64, successor: String) {
            guard let handle = handles[ExactString(key)], var record = records[Int(handle)] else { return }
            recordBytes -= record.approximateBytes
            if !record.validity.isBounded { bounded += 1 }
            if record.validity.isOpen { linked += 1 }
            record.validity.to = end
            record.validity.supersededBy = successor
            noteBound(record)
            records[Int(handle)] = record
            recordBytes += record.approximateBytes
            setAttributes(key: key, record)
        }

        private mutating func noteBound(_ record: Record) {
            for bound in [record.validity.from ?? record.createdAt, record.validity.to].compactMap({ $0 }) {
                latestBound = max(latestBound ?? bound, bound)
            }
        }

        /// Gives the index rows of `key` (its vector, its windows) `record`'s filter attributes.
        private mutating func setAttributes(key: String, _ record: Record) {
            flat?.setAttributes(id: key, record.attributes)
            graph?.setAttributes(id: key, record.attributes)
            for position in 0..<record.windowCount {
                windows?.setAttributes(id: MemoryStore.windowID(key, position + 1), record.attributes)
            }
        }

        /// Records `memory`'s fields (replacing what its id had) and counts, its vector in the flat
        /// index and its `windows` in theirs.
        mutating func store(
            _ memory: Memory, seq: Int64, windows memoryWindows: [[Float]] = [], feedback: FeedbackCounts = .zero
        ) {
            let key = MemoryStore.key(memory)
            let handle = handle(for: key)
            var record = Record(memory, seq: seq)
            record.helped = feedback.helped
            record.unhelped = feedback.unhelped
            record.windowCount = memoryWindows.count
            mostWindows = max(mostWindows, memoryWindows.count)
            if let old = records[Int(handle)] {
                forgetRow(handle, old)
            } else {
                memoryCount += 1
            }
            for (i, window) in memoryWindows.enumerated() {
                windows?.upsert(
                    id: MemoryStore.windowID(key, i + 1), user: memory.user, vector: window,
                    attributes: record.attributes)
            }
            records[Int(handle)] = record
            recordBytes += record.approximateBytes
            handleOfSeq[seq] = handle
            insertTurn(handle, record)
            if let expiresAt = record.expiresAt {
                expiring += 1
                nextExpiry = min(nextExpiry ?? expiresAt, expiresAt)
            }
            if record.validity.isBounded { bounded += 1 }
            noteBound(record)
            if !record.validity.isOpen { linked += 1 }
            flat?.upsert(
                id: key, user: memory.user, vector: memory.vector, attributes: record.attributes, handle: handle)
        }

        /// Forgets `key`'s record and frees its handle (the flat index is the caller's).
        mutating func dropRecord(_ key: String) {
            guard let handle = handles.removeValue(forKey: ExactString(key)) else { return }
            if let old = records[Int(handle)] {
                forgetRow(handle, old)
                memoryCount -= 1
            }
            records[Int(handle)] = nil
            freeHandles.append(handle)
        }

        /// Takes out what `record`, at `handle`, adds to the state besides itself.
        private mutating func forgetRow(_ handle: Int32, _ record: Record) {
            recordBytes -= record.approximateBytes
            handleOfSeq[record.seq] = nil
            removeTurn(handle, record)
            if record.expiresAt != nil {
                expiring -= 1
                if expiring == 0 { nextExpiry = nil }
            }
            if record.validity.isBounded { bounded -= 1 }
            if !record.validity.isOpen { linked -= 1 }
            let key = MemoryStore.key(user: record.user, id: record.id)
            for position in 0..<record.windowCount { windows?.remove(id: MemoryStore.windowID(key, position + 1)) }
        }

        /// Where `record` is, or belongs, in its session's turns.
        private func turnPosition(_ record: Record, in turns: [Int32]) -> Int {
            turnPosition(createdAt: record.createdAt, seq: record.seq, in: turns)
        }

        /// Reads only the two fields of each record it passes (binding a whole `Record` would
        /// retain its strings, and a search asks this thousands of times).
        private func turnPosition(createdAt: Int64, seq: Int64, in turns: [Int32]) -> Int {
            var low = 0
            var high = turns.count
            while low < high {
                let middle = (low + high) / 2
                guard let otherTime = records[Int(turns[middle])]?.createdAt,
                    let otherSeq = records[Int(turns[middle])]?.seq
                else { preconditionFailure("a turn without a record") }
                if (otherTime, otherSeq) < (createdAt, seq) {
                    low = middle + 1
                } else {
                    high = middle
                }
            }
            return low
        }

        private mutating func insertTurn(_ handle: Int32, _ record: Record) {
            guard let session = record.session else { return }
            let key = SessionKey(user: record.user, session: session)
            // Turns mostly arrive in time order: an append, in place. The newest turn's two
            // fields are read alone (binding its record would retain its strings).
            if let last = sessionTurns[key]?.last, let newestTime = records[Int(last)]?.createdAt,
                let newestSeq = records[Int(last)]?.seq, (newestTime, newestSeq) > (record.createdAt, record.seq)
            {
                let position = turnPosition(record, in: sessionTurns[key]!)
                sessionTurns[key]!.insert(handle, at: position)
            } else {
                sessionTurns[key, default: []].append(handle)
            }
        }

        private mutating func removeTurn(_ handle: Int32, _ record: Record) {
            guard let session = record.session else { return }
            let key = SessionKey(user: record.user, session: session)
            guard var turns = sessionTurns.removeValue(forKey: key) else { return }
            let position = turnPosition(record, in: turns)
            if position < turns.count, turns[position] == handle { turns.remove(at: position) }
            if !turns.isEmpty { sessionTurns[key] = turns }
        }

        /// The turns of `handle`'s session before and after it, at most `count` on each side,
        /// in time order, and where `handle` is among them.
        func neighbours(of handle: Int32, count: Int) -> (turns: ArraySlice<Int32>, position: Int)? {
            guard let session = records[Int(handle)]?.session, let user = records[Int(handle)]?.user,
                let createdAt = records[Int(handle)]?.createdAt, let seq = records[Int(handle)]?.seq,
                let turns = sessionTurns[SessionKey(user: user, session: session)]
            else { return nil }
            let position = turnPosition(createdAt: createdAt, seq: seq, in: turns)
            guard position < turns.count, turns[position] == handle else { return nil }
            let start = max(0, position - count)
            return (turns[start..<min(turns.count, position + count + 1)], position - start)
        }
    }

    /// A user's session, as `State.sessionTurns` finds it: both strings compared byte for byte,
    /// and hashed without joining them into a new string.
    struct SessionKey: Hashable {
        var user: ExactString
        var session: ExactString

        init(user: String, session: String) {
            self.user = ExactString(user)
            self.session = ExactString(session)
        }
    }

    /// A memory's fields other than its id and vector, kept in memory to answer searches.
    struct Record {
        var id: String
        /// The memory's row in `memories`, which its graph node refers to.
        var seq: Int64
        var user: String
        var session: String?
        var role: Role?
        var speaker: String?
        var text: String
        var createdAt: Int64
        var metadata: String
        var expiresAt: Int64?
        var validity: Validity
        var sources: [String]
        /// How many windows after the first its text has (see `NewMemory.windows`).
        var windowCount = 0
        /// How often users said it helped, and did not (`feedback`).
        var helped: Int64 = 0
        var unhelped: Int64 = 0

        var approximateBytes: Int {
            id.utf8.count + user.utf8.count + (session?.utf8.count ?? 0) + (speaker?.utf8.count ?? 0) + text.utf8.count
                + metadata.utf8.count + (validity.supersedes?.utf8.count ?? 0)
                + (validity.supersededBy?.utf8.count ?? 0) + sources.reduce(0) { $0 + $1.utf8.count }
                + MemoryLayout<Record>.stride
        }

        init(_ memory: Memory, seq: Int64) {
            id = memory.id
            self.seq = seq
            user = memory.user
            session = memory.session
            role = memory.role
            speaker = memory.speaker
            text = memory.text
            createdAt = memory.createdAt
            metadata = memory.metadata
            expiresAt = memory.expiresAt
            validity = memory.validity
            sources = memory.sources
        }

        var attributes: RowAttributes {
            RowAttributes(
                session: session, role: role, createdAt: createdAt, speaker: speaker, expiresAt: expiresAt,
                validFrom: validity.from, validTo: validity.to)
        }

        /// Whether it has expired at `now` (unix milliseconds).
        func expired(at now: Int64) -> Bool { expiresAt.map { $0 <= now } ?? false }

        func memory(vector: [Float]) -> Memory {
            Memory(
                id: id, user: user, session: session, role: role, speaker: speaker, text: text, createdAt: createdAt,
                metadata: metadata, vector: vector, expiresAt: expiresAt, validity: validity, sources: sources)
        }
    }

    /// The store over an opened file (see `MemoryStore+Open.swift`).
    init(
        path: String, space: Space, fileLock: FileLock, statements: sending WriteStatements, state: sending State,
        statementTimeLimit: Int
    ) {
        self.path = path
        self.metric = space.metric
        self.model = space.model
        self.index = space.index
        self.flatStorage = space.flatStorage
        self.embedTemplate = space.embedTemplate
        self.fileLock = fileLock
        self.writeSide = Mutex(WriteSide(statements: statements, refusal: nil, appliedIndex: space.appliedIndex))
        self.state = ReadWriteBox(state)
        self.readers = ReaderPool(size: Self.readerCount)
        self.vectorReaders = ReaderPool(size: Self.readerCount)
        self.statementTimeLimit = statementTimeLimit
    }

    /// Reading connections: two per core, at least four.
    static let readerCount = max(4, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Checkpoints the write-ahead log into the database file and closes it. Later calls throw
    /// `StoreError.closed`.
    public func close() {
        readers.close()
        vectorReaders.close()
        writeSide.withLock { side in
            guard let database = side.statements?.database else { return }
            try? database.execute(SQL.checkpoint)
            side.statements = nil
            database.close()
            fileLock.release()
        }
    }

    // MARK: - Reading

    /// The vector length, or nil while the space is empty and was created without one.
    public var dimension: Int? { state.read { $0.flat?.dimension } }

    /// Number of memories.
    public var count: Int { state.read { $0.memoryCount } }

    /// `user`'s memory `id`, with its vector, or nil.
    /// - Throws: `StoreError.sqlite` when a compact space's vector cannot be read from the file.
    public func get(user: String, id: String) throws -> Memory? {
        try get(user: user, ids: [id], withVector: true)[0]
    }

    /// The key a memory has in the indexes: its user and its id, for an id is unique only within
    /// its user. The user's byte length comes first, so no two (user, id) pairs share a key.
    static func key(user: String, id: String) -> String {
        "\(user.utf8.count):\(user)\(id)"
    }

    static func key(_ memory: Memory) -> String { key(user: memory.user, id: memory.id) }

    static func key(_ memory: MemoryRef) -> String { key(user: memory.user, id: memory.id) }

    /// The id of a memory's window in the windows index: its key, U+0001, its position (1 for
    /// the window after the first). The key is everything before the last U+0001.
    static func windowID(_ key: String, _ position: Int) -> String { key + "\u{1}" + String(position) }

    static func key(ofWindow id: String) -> String {
        String(id[..<(id.lastIndex(of: "\u{1}") ?? id.endIndex)])
    }

    /// The `k` memories of `user` closest to `vector` that pass `filter`, best first: from the
    /// flat index or the graph, as `SearchPlanner` chooses. (`search(_:)` takes every option.)
    /// - Parameters:
    ///   - ef: The graph search's candidate list (default: the space's `efSearch`).
    ///   - exact: Always scan exactly (the flat index): the ground truth.
    /// - Throws: `StoreError.wrongDimension`, `StoreError.nonFiniteVector`.
    public func search(
        user: String, vector: [Float], k: Int, filter: RowFilter = RowFilter(), ef: Int? = nil, exact: Bool = false
    ) throws -> [ScoredMemory] {
        try search(
            SearchRequest(
                user: user, vector: vector, mode: .vector, k: k, filter: MemoryFilter(rows: filter), ef: ef,
                exact: exact))
    }

    /// The vector side of a search: `user`'s `k` best rows for `query` (prepared by `storable`)
    /// that pass `filter` and, when it is given, are among `allowed` (handles), best first.
    /// `exactTop`: a compact flat index scores only the best `exactTop` exactly, the rest of the
    /// `k` by their codes (`FlatIndex.search`); nil: all.
    func vectorHits(
        _ state: borrowing State, user: String, query: [Float], k: Int, filter: RowFilter, allowed: Set<Int32>?,
        ef: Int?, exact: Bool, exactTop: Int? = nil
    ) throws -> [SearchHit] {
        guard let flat = state.flat else { return [] }
        guard query.count == flat.dimension else {
            throw StoreError.wrongDimension(expected: flat.dimension, got: query.count)
        }
        var hits: [SearchHit]
        if let allowed {
            // Metadata conditions, read through SQL, chose the rows: score exactly those. A
            // compact index reads each from the file, so only the best by its codes are read.
            var handles = Array(allowed)
            if !flat.keepsVectors, handles.count > flat.rescoredCandidates(k: k) {
                let estimates = flat.estimatedScores(handles: handles, query: query)
                handles = handles.indices.sorted { estimates[$0] > estimates[$1] }
                    .prefix(flat.rescoredCandidates(k: k)).map { handles[$0] }
            }
            let raw = try exactScores(state, handles: handles, query: query)
            hits = zip(handles, raw).filter { $0.1 > -Float.infinity }.map { handle, raw in
                SearchHit(id: "", score: metric == .l2 ? max(0, -raw).squareRoot() : raw, handle: handle)
            }
            hits = Array(hits.sorted { better($0, $1) }.prefix(k))
            for i in hits.indices {
                if let record = state.record(hits[i]) { hits[i].id = Self.key(user: record.user, id: record.id) }
            }
        } else if case .hnsw(let width) = route(state, user: user, filter: filter, ef: ef, exact: exact),
            let graph = state.graph
        {
            hits = try graph.search(user: user, query: query, k: k, ef: max(width, k), filter: filter) {
                [records = state.records] in
                try self.exactScores(flat, records, handles: $0.map(\.handle), query: query)
            }
        } else {
            // Float32 rows score exactly themselves: only a compact index needs the file.
            let rescore: FlatIndex.Rescore? =
                flat.keepsVectors
                ? nil
                : { [records = state.records] in try self.exactScores(flat, records, handles: $0, query: query) }
            hits = try flat.search(
                user: user, query: query, k: k, filter: filter, exact: exact, exactTop: exactTop, rescore: rescore)
        }
        if let windows = state.windows, windows.count(user: user) > 0 {
            let rows =
                allowed == nil
                ? min(windows.count(user: user), k * max(1, state.mostWindows)) : windows.count(user: user)
            var windowHits = windows.search(user: user, query: query, k: rows, filter: filter, exact: exact)
            if let allowed {
                windowHits.removeAll { window in
                    state.handles[ExactString(Self.key(ofWindow: window.id))].map { !allowed.contains($0) } ?? true
                }
            }
            hits = try merging(hits, windowHits, k: k, state: state, query: query)
        }
        return hits
    }

    /// Whether hit `a` ranks before hit `b` (ties by key, so the order is the same every time).
    func better(_ a: SearchHit, _ b: SearchHit) -> Bool {
        guard a.score != b.score else { return a.id < b.id }
        return metric == .l2 ? a.score < b.score : a.score > b.score
    }

    /// The best `k` of `hits` and of the memories of `windowHits`, each memory scored by the
    /// best of its vector and its windows. Exact for the flat index: a memory among the best `k`
    /// by that score is among the best `k` by its vector or among the first `k` memories of
    /// `windowHits` (the user's best window rows, enough of them to hold `k` memories).
    private func merging(
        _ hits: [SearchHit], _ windowHits: [SearchHit], k: Int, state: borrowing State, query: [Float]
    ) throws -> [SearchHit] {
        let lowerIsBetter = metric == .l2
        func better(_ a: Float, _ b: Float) -> Bool { lowerIsBetter ? a < b : a > b }
        var merged: [ExactString: SearchHit] = [:]
        for hit in hits { merged[ExactString(hit.id)] = hit }
        var windowMemories = 0
        for window in windowHits where windowMemories < k {
            let key = ExactString(Self.key(ofWindow: window.id))
            if var hit = merged[key] {
                if better(window.score, hit.score) {
                    hit.score = window.score
                    merged[key] = hit
                }
                continue
            }
            guard let handle = state.handles[key] else { continue }
            windowMemories += 1
            // Its own vector may beat this window, though not by enough to be among `hits`.
            let raw = try exactScores(state, handles: [handle], query: query)[0]
            let own = lowerIsBetter ? max(0, -raw).squareRoot() : raw
            merged[key] = SearchHit(
                id: key.string, score: better(own, window.score) ? own : window.score, handle: handle)
        }
        return Array(merged.values.sorted { self.better($0, $1) }.prefix(k))
    }

    /// Which index a search would use (see `SearchPlanner`).
    public func plan(user: String, filter: RowFilter = RowFilter(), ef: Int? = nil, exact: Bool = false) -> SearchPlan {
        state.read { state in
            switch route(state, user: user, filter: filter, ef: ef, exact: exact) {
            case .flat: .flat
            case .hnsw: .hnsw
            }
        }
    }

    /// The planner's choice for a search, from the counts it reads under the caller's lock.
    private func route(
        _ state: borrowing State, user: String, filter: RowFilter, ef: Int?, exact: Bool
    ) -> SearchPlanner.Route {
        guard let flat = state.flat, let graph = state.graph else { return .flat }
        let counts = SearchPlanner.Counts(
            graphNodes: graph.count, userRows: flat.count(user: user),
            matches: flat.estimatedMatches(user: user, filter: filter))
        return SearchPlanner.route(counts, ef: ef, defaultEf: graph.parameters.efSearch, exact: exact)
    }

    /// Counts and sizes.
    public func stats() -> StoreStats {
        let now = Clock.nowMilliseconds()
        let (memories, users, dimension, inMemory, expired, purged, duplicates) = state.read { state in
            (
                state.memoryCount, state.flat?.userCount ?? 0, state.flat?.dimension,
                (state.flat?.bytes ?? 0) + (state.graph?.bytes ?? 0) + (state.windows?.bytes ?? 0)
                    + state.recordBytes,
                state.expiring == 0 ? 0 : state.records.count { $0?.expired(at: now) ?? false }, state.purged,
                state.duplicates
            )
        }
        return StoreStats(
            memories: memories, users: users, dimension: dimension, metric: metric, index: index.name,
            flatStorage: flatStorage.rawValue, bytesOnDisk: Self.fileSize(path) + Self.fileSize(path + "-wal"),
            bytesInMemory: inMemory,
            expired: expired, purged: purged, duplicates: duplicates)
    }

    /// The figures of `stats` for the users `included` takes alone (a key that is not an
    /// admin's sees its users, not the space): their memories and their number; figures of the
    /// whole space (bytes, expiry counts) are 0.
    public func stats(ofUsers included: (String) -> Bool) -> StoreStats {
        let (memories, users, dimension) = state.read { state in
            let counts = state.flat?.counts(ofUsers: included) ?? (vectors: 0, users: 0)
            return (counts.vectors, counts.users, state.flat?.dimension)
        }
        return StoreStats(
            memories: memories, users: users, dimension: dimension, metric: metric, index: index.name,
            flatStorage: flatStorage.rawValue, bytesOnDisk: 0, bytesInMemory: 0, expired: 0, purged: 0)
    }

    // MARK: - Helpers

    /// Why a write failed and left the store unable to take more: thrown by a write's body,
    /// recorded by `withWriter`, which throws `cause` instead.
    struct WritesRefused: Error {
        var reason: String
        var cause: any Error
    }

    /// Runs a write with the write statements, one writer at a time.
    func withWriter<T: Sendable>(_ body: (WriteStatements, inout Int64) throws -> T) throws -> T {
        try writeSide.withLock { side throws -> T in
            guard let statements = side.statements else { throw StoreError.closed }
            if let refusal = side.refusal {
                throw StoreError.sqlite("writes are refused until the server restarts: \(refusal)")
            }
            do {
                return try body(statements, &side.appliedIndex)
            } catch let refused as WritesRefused {
                side.refusal = refused.reason
                throw Self.storeError(refused.cause)
            } catch {
                throw Self.storeError(error)
            }
        }
    }

    private static func storeError(_ error: any Error) -> any Error {
        if let error = error as? SQLiteError { return StoreError.sqlite(error.description) }
        if let stuck = error as? TransactionStuck { return StoreError.sqlite(stuck.description) }
        return error
    }

    /// The largest Euclidean norm a vector may have. Inner products and squared distances of
    /// two such vectors stay below 4e36, inside float32's range (3.4e38), so no score overflows.
    public static let maximumNorm = 1e18

    /// How far from 1 the norm of a vector may be for cosine to keep it as given: above the
    /// error of normalizing in float32 (a few 1e-8 for any dimension this store holds), far
    /// below what moves a score.
    public static let unitTolerance = 1e-6

    /// Checks a vector and returns it as the indexes take it: normalized for cosine
    /// (`Metric.prepared`). The norm is computed once, in double precision, so vectors of huge or
    /// subnormal components are neither overflowed to infinity nor left unnormalized. A vector
    /// of unit length already (within `unitTolerance`: float32 rounding) is kept as given, so a
    /// vector stored again (an export imported) keeps its bits.
    /// - Throws: `StoreError.nonFiniteVector` for NaN or an infinity; `.invalidValue` for a
    ///   norm above `maximumNorm`, or a zero vector under cosine (it has no direction).
    public static func storable(_ vector: [Float], metric: Metric) throws -> [Float] {
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
        guard metric == .cosine else { return vector }
        guard norm > 0 else { throw StoreError.invalidValue("a zero vector has no direction under cosine") }
        if abs(norm - 1) <= unitTolerance { return vector }
        return vector.map { Float(Double($0) / norm) }
    }

    static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }
}
