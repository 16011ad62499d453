import ContextModel
import Synchronization
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

extension MemoryStore {
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
    ///   - flatStorage: How the flat index keeps rows in memory (`FlatIndex`): for a new space,
    ///     nil means float32; for an existing one, nil keeps its setting and another value
    ///     replaces it (the file holds float32 vectors whatever the setting).
    ///   - embedTemplate: What the server's model embeds for a memory (`EmbedTemplate`); for a new
    ///     space, nil means `EmbedTemplate.plain`. A space keeps its own; another is refused.
    ///   - busyTimeoutMilliseconds: How long a write waits for another process's lock on the file
    ///     before failing with `StoreError.sqlite`.
    ///   - statementTimeLimit: The longest one SQL statement of a request may run, in
    ///     milliseconds (`StoreError.tooCostly` past it).
    ///   - log: Where a long migration of an older file reports its progress.
    /// - Throws: `StoreError.incompatibleDatabase` when the file's space has another dimension,
    ///   metric or index than the one asked for, a schema newer than this code, or a stored graph
    ///   that does not match its memories (`check` tells more); `StoreError.sqlite`.
    public convenience init(
        path: String, dimension: Int? = nil, metric: Metric? = nil, model: String? = nil, index: SpaceIndex? = nil,
        flatStorage: VectorStorage? = nil, embedTemplate: String? = nil, busyTimeoutMilliseconds: Int = 5000,
        statementTimeLimit: Int = 5000,
        log: @Sendable (String) -> Void = { _ in }
    ) throws {
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
        do {
            let database = try Database(path: path)
            for setting in SQL.connectionSettings(busyTimeoutMilliseconds: busyTimeoutMilliseconds) {
                try database.execute(setting)
            }
            try database.migrate(log: log)
            let statements = try WriteStatements(database: database)
            let space = try Self.openSpace(
                database, statements, path: path, dimension: dimension, metric: metric, model: model, index: index,
                flatStorage: flatStorage, embedTemplate: embedTemplate)
            let state = try Self.load(database, space: space)
            self.init(
                path: path, space: space, fileLock: fileLock, statements: statements, state: state,
                statementTimeLimit: statementTimeLimit)
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
    }

    /// A space's settings, as opened.
    struct Space {
        var metric: Metric
        var model: String?
        var index: SpaceIndex
        var flatStorage: VectorStorage = .float32
        var dimension: Int?
        var entryPoint: Int32
        var embedTemplate: EmbedTemplate
        /// Expired memories purged over the space's life (the setting `purged`).
        var purged: Int64
        /// Duplicates found at adds over the space's life (the setting `duplicates`).
        var duplicates: Int64 = 0
        /// The index of the last command applied (see `MemoryStore.apply`).
        var appliedIndex: Int64 = 0
    }

    /// Reads the space's settings, records those a new space takes from the caller, and
    /// refuses what contradicts the file.
    private static func openSpace(
        _ database: Database, _ statements: WriteStatements, path: String, dimension: Int?, metric: Metric?,
        model: String?, index: SpaceIndex?, flatStorage: VectorStorage?, embedTemplate: String?
    ) throws -> Space {
        let settings = try readSettings(database)
        let spaceMetric: Metric
        if let stored = settings["metric"] {
            guard let storedMetric = Metric(rawValue: stored) else {
                throw StoreError.incompatibleDatabase("unknown metric '\(stored)' in \(path)")
            }
            if let metric, metric != storedMetric {
                throw StoreError.spaceMismatch(
                    .metric, "\(path) holds a \(storedMetric.rawValue) space, not \(metric.rawValue)")
            }
            spaceMetric = storedMetric
        } else {
            spaceMetric = metric ?? .cosine
            if let embedTemplate {
                do {
                    _ = try EmbedTemplate(embedTemplate)
                } catch {
                    throw StoreError.invalidValue("\(error)")
                }
            }
            try database.transaction {
                try statements.set("metric", spaceMetric.rawValue)
                for (key, value) in (index ?? .flat).settings { try statements.set(key, value) }
                try statements.set("embed_template", embedTemplate ?? EmbedTemplate.plain)
            }
        }
        // A new space takes the index asked for (written above); an existing one keeps its own.
        let spaceIndex = settings["metric"] == nil ? index ?? .flat : try SpaceIndex(settings: settings)
        if let index, index.name != spaceIndex.name {
            throw StoreError.spaceMismatch(.index, "\(path) holds a space indexed by \(spaceIndex), not \(index.name)")
        }
        // A space made before templates embedded its bare text.
        let spaceTemplate =
            settings["metric"] == nil
            ? embedTemplate ?? EmbedTemplate.plain : settings["embed_template"] ?? EmbedTemplate.plain
        if let embedTemplate, embedTemplate != spaceTemplate {
            throw StoreError.spaceMismatch(
                .embedTemplate, "\(path) embeds memories as '\(spaceTemplate)', not '\(embedTemplate)'")
        }
        // Read once, here, for every write that embeds.
        let template: EmbedTemplate
        do {
            template = try EmbedTemplate(spaceTemplate)
        } catch {
            throw StoreError.incompatibleDatabase("\(path) holds an embedding template that cannot be read: \(error)")
        }
        if let stored = settings["model"], let model, stored != model {
            throw StoreError.spaceMismatch(.model, "\(path) was filled by the model \(stored), not \(model)")
        }
        if settings["model"] == nil, let model {
            try database.transaction { try statements.set("model", model) }
        }
        var spaceDimension = settings["dimension"].flatMap { Int($0) }
        if let dimension {
            guard (1...Metric.maximumDimension).contains(dimension) else {
                throw StoreError.invalidValue("dimension must be 1...\(Metric.maximumDimension), not \(dimension)")
            }
            if let spaceDimension, spaceDimension != dimension {
                throw StoreError.spaceMismatch(
                    .dimension, "\(path) holds vectors of dimension \(spaceDimension), not \(dimension)")
            }
            if spaceDimension == nil {
                try database.transaction { try statements.set("dimension", String(dimension)) }
                spaceDimension = dimension
            }
        }
        guard let storedStorage = VectorStorage(rawValue: settings["flat_storage"] ?? "float32") else {
            throw StoreError.incompatibleDatabase("unknown flat storage '\(settings["flat_storage"] ?? "")' in \(path)")
        }
        if let flatStorage, flatStorage.rawValue != settings["flat_storage"] {
            try database.transaction { try statements.set("flat_storage", flatStorage.rawValue) }
        }
        return Space(
            metric: spaceMetric, model: settings["model"] ?? model, index: spaceIndex,
            flatStorage: flatStorage ?? storedStorage, dimension: spaceDimension,
            entryPoint: settings["hnsw_entry"].flatMap { Int32($0) } ?? -1, embedTemplate: template,
            purged: Self.purged(settings), duplicates: Self.duplicates(settings),
            appliedIndex: settings[Self.appliedIndexSetting].flatMap { Int64($0) } ?? 0)
    }

    static func purged(_ settings: [String: String]) -> Int64 { settings["purged"].flatMap { Int64($0) } ?? 0 }
    static func duplicates(_ settings: [String: String]) -> Int64 {
        settings["duplicates"].flatMap { Int64($0) } ?? 0
    }

    /// Reads the windows of long texts into the windows index, each with its memory's user and
    /// filter attributes.
    private static func loadWindows(_ database: Database, into state: inout State, dimension: Int) throws {
        let rows = try database.prepare(SQL.windows)
        while try rows.step() {
            let seq = rows.int64(at: 0)
            let position = Int(rows.int64(at: 1))
            let vector = rows.floats(at: 2)
            guard let handle = state.handleOfSeq[seq], var record = state.records[Int(handle)] else {
                throw StoreError.incompatibleDatabase(
                    "a window of memory row \(seq) has no memory (run contextstore check)")
            }
            guard vector.count == dimension, position == record.windowCount + 1 else {
                throw StoreError.incompatibleDatabase(
                    "window \(position) of memory \(record.id) is malformed (run contextstore check)")
            }
            let key = Self.key(user: record.user, id: record.id)
            state.windows?.upsert(
                id: Self.windowID(key, position), user: record.user, vector: vector, attributes: record.attributes)
            record.windowCount = position
            state.mostWindows = max(state.mostWindows, position)
            state.records[Int(handle)] = record
        }
    }

    static func readSettings(_ database: Database) throws -> [String: String] {
        let statement = try database.prepare(SQL.settings)
        var settings: [String: String] = [:]
        while try statement.step() {
            if let key = statement.string(at: 0), let value = statement.string(at: 1) { settings[key] = value }
        }
        return settings
    }

    /// Reads every memory (and graph node) of the file into the in-memory indexes.
    static func load(_ database: Database, space: Space) throws -> State {
        var state = State()
        state.purged = space.purged
        state.duplicates = space.duplicates
        guard let dimension = space.dimension else { return state }
        state.makeIndexes(
            dimension: dimension, metric: space.metric, index: space.index, flatStorage: space.flatStorage)
        // Room for every row up front: growing 150 MB of arrays by doubling cost a third of the
        // start-up time in page faults.
        var total = 0
        let users = try database.prepare(SQL.rowsPerUser)
        while try users.step() {
            let rows = Int(users.int64(at: 1))
            state.flat?.reserveCapacity(rows, forUser: users.string(at: 0) ?? "")
            total += rows
        }
        state.flat?.reserveCapacity(total)
        state.records.reserveCapacity(total)
        state.handles.reserveCapacity(total)
        var nodeCount = 0
        if state.graph != nil {
            nodeCount = Int(try database.scalarInt(SQL.nodeCount))
            state.graph?.reserveCapacity(Int(try database.scalarInt(SQL.slotBound)))
        }
        var sources: [Int64: [String]] = [:]
        let sourceRows = try database.prepare(SQL.sources)
        while try sourceRows.step() {
            sources[sourceRows.int64(at: 0), default: []].append(sourceRows.string(at: 1) ?? "")
        }
        let rows = try database.prepare(SQL.memoriesWithNodes)
        while try rows.step() {
            let id = rows.string(at: 0) ?? ""
            let memory = Memory(
                id: id, user: rows.string(at: 1) ?? "", session: rows.string(at: 2),
                role: rows.string(at: 3).flatMap(Role.init(rawValue:)), speaker: rows.string(at: 11),
                text: rows.string(at: 4) ?? "",
                createdAt: rows.int64(at: 5), metadata: rows.string(at: 6) ?? "{}", vector: rows.floats(at: 7),
                expiresAt: rows.isNull(at: 12) ? nil : rows.int64(at: 12),
                validity: Validity(
                    from: rows.isNull(at: 15) ? nil : rows.int64(at: 15),
                    to: rows.isNull(at: 16) ? nil : rows.int64(at: 16), supersedes: rows.string(at: 17),
                    supersededBy: rows.string(at: 18)), sources: sources.removeValue(forKey: rows.int64(at: 8)) ?? [])
            guard memory.vector.count == dimension else {
                throw StoreError.incompatibleDatabase(
                    "memory \(id) has \(memory.vector.count) components, space has \(dimension)")
            }
            // Stored as the indexes take them (prepared at insert), so taken as they are.
            state.store(
                memory, seq: rows.int64(at: 8),
                feedback: FeedbackCounts(helped: rows.int64(at: 13), unhelped: rows.int64(at: 14)))
            if state.graph != nil {
                let key = Self.key(memory)
                let handle = state.handle(for: key)
                guard !rows.isNull(at: 9) else {
                    throw StoreError.incompatibleDatabase("memory \(id) has no graph node (run contextstore check)")
                }
                do {
                    try state.graph?.restore(
                        slot: Int32(truncatingIfNeeded: rows.int64(at: 9)), id: key, user: memory.user,
                        vector: memory.vector,
                        attributes: state.records[Int(handle)]?.attributes
                            ?? RowAttributes(session: nil, role: nil, createdAt: 0),
                        record: rows.int32s(at: 10), handle: handle)
                } catch {
                    throw StoreError.incompatibleDatabase("\(error) (run contextstore check)")
                }
            }
        }
        try loadWindows(database, into: &state, dimension: dimension)
        if let restored = state.graph?.count, restored != nodeCount {
            throw StoreError.incompatibleDatabase(
                "\(nodeCount - restored) graph nodes index no memory (run contextstore check)")
        }
        do {
            try state.graph?.finishRestoring(entryPoint: space.entryPoint)
        } catch {
            throw StoreError.incompatibleDatabase("\(error) (run contextstore check)")
        }
        return state
    }
}
