import ContextModel
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

/// What `MemoryStore.check` found.
public struct CheckReport: Sendable, Equatable {
    /// `flat` or `hnsw`.
    public var index: String
    public var memories: Int
    /// Graph nodes (0 for a flat space).
    public var nodes: Int
    /// Each problem found, in words; empty when the file is sound.
    public var problems: [String]
    /// The index of the last write applied (see `MemoryStore.apply`).
    public var appliedIndex: Int64 = 0
    /// The space's digest (see `MemoryStore.digest`); empty when the file could not be read.
    public var digest = ""
    /// How many segments each level of the keyword index holds, the lowest level first
    /// (`KeywordIndex.merge`); empty when FTS5's structure record could not be read.
    public var keywordSegments: [Int] = []

    public var isSound: Bool { problems.isEmpty }
}

extension MemoryStore {
    /// Checks the space stored at `path` without opening it for writing, so it can run next to a
    /// server (it reads the last committed state): SQLite's own `quick_check`, every embedding's
    /// length, and for an `hnsw` space the graph: one node per memory and no node without one,
    /// well-formed link records, links that point at nodes of their layer, an entry point on the
    /// top level, and every node reachable from it (`HNSWGraphCheck`).
    /// Also: every row's columns have their types, valid UTF-8, a known role, metadata that is
    /// a JSON object, and a finite embedding; every window of a long text belongs to a memory,
    /// in positions 1, 2, ..., with a finite embedding of the space's dimension; every memory has
    /// its keyword row, as the store writes it, and no keyword row is left over; the index of the
    /// last write applied is a count (0 for a file written before writes were numbered), and the
    /// report carries it with the space's digest, for comparing replicas. A file SQLite finds damaged is a problem found,
    /// not a failure to check. On a read-only folder the file is read as immutable.
    /// - Throws: `StoreError.sqlite` when the file cannot be opened at all.
    public static func check(path: String) throws -> CheckReport {
        let database: Database
        do {
            database = try Database(path: path, readOnly: true, immutable: !folderIsWritable(path))
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
        defer { database.close() }
        do {
            return try check(database)
        } catch let error as SQLiteError {
            return CheckReport(index: "?", memories: 0, nodes: 0, problems: ["sqlite: \(error.description)"])
        }
    }

    /// Every memory has its keyword row, holding what the store writes for it, and no keyword
    /// row is without a memory.
    private static func checkKeywords(_ database: Database, memories: Int, report: (String) -> Void) {
        do {
            let rows = try database.prepare(SQL.Check.keywordRows)
            var matched = 0
            while try rows.step() {
                let seq = rows.int64(at: 0)
                guard !rows.isNull(at: 5) else {
                    report("memory row \(seq) has no keyword row")
                    continue
                }
                matched += 1
                let expected = KeywordIndex.columns(
                    user: rows.string(at: 1) ?? "", speaker: rows.string(at: 2), text: rows.string(at: 3) ?? "",
                    createdAt: rows.int64(at: 4))
                let stored = (6...9).map { rows.string(at: Int32($0)) ?? "" }
                if stored != expected { report("the keyword row of memory row \(seq) does not hold what it indexes") }
            }
            let orphans = Int(try database.scalarInt("SELECT count(*) FROM memory_terms")) - matched
            if orphans > 0 { report("\(orphans) keyword rows index no memory") }
        } catch {
            report("the keyword index cannot be read: \(error)")
        }
    }

    private static func folderIsWritable(_ path: String) -> Bool {
        let folder = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        return access(folder.isEmpty ? "/" : folder, W_OK) == 0
    }

    private static func check(_ database: Database) throws -> CheckReport {
        var problems: [String] = []
        func report(_ problem: String) { if problems.count < 100 { problems.append(problem) } }
        let integrity = try database.prepare(SQL.Check.integrity)
        while try integrity.step() {
            if let line = integrity.string(at: 0), line != "ok" { report("sqlite: \(line)") }
        }
        let malformed = try database.prepare(SQL.Check.malformedRows)
        while try malformed.step() {
            report("memory row \(malformed.int64(at: 0)) has \(malformed.string(at: 1) ?? "?")")
        }
        let settings = try readSettings(database)
        let index: SpaceIndex
        do {
            index = try SpaceIndex(settings: settings)
        } catch {
            return CheckReport(index: settings["index"] ?? "?", memories: 0, nodes: 0, problems: ["\(error)"])
        }
        let dimension = settings["dimension"].flatMap { Int($0) }
        var memories: Set<Int64> = []
        let rows = try database.prepare(SQL.Check.memories)
        while try rows.step() {
            let seq = rows.int64(at: 0)
            memories.insert(seq)
            for (column, name) in [(1, "id"), (2, "user"), (3, "session"), (4, "text"), (6, "speaker")]
            where !rows.isValidUTF8(at: Int32(column)) {
                report("memory row \(seq) has a \(name) that is not valid UTF-8")
            }
            let embedding = rows.floats(at: 5)
            if let dimension, embedding.count != dimension {
                report("memory row \(seq) has \(embedding.count) components, not \(dimension)")
            }
            if !embedding.allSatisfy(\.isFinite) {
                report("memory row \(seq) has an embedding with NaN or infinity")
            }
        }
        if try database.scalarInt(SQL.Check.hasWindows) > 0 {
            let windows = try database.prepare(SQL.windows)
            var previous: (memory: Int64, position: Int64) = (-1, 0)
            while try windows.step() {
                let memory = windows.int64(at: 0)
                let position = windows.int64(at: 1)
                if !memories.contains(memory) { report("window \(position) of memory row \(memory) has no memory") }
                let expected = memory == previous.memory ? previous.position + 1 : 1
                if position != expected {
                    report("memory row \(memory) has window \(position) where window \(expected) belongs")
                }
                previous = (memory, position)
                let embedding = windows.floats(at: 2)
                if let dimension, embedding.count != dimension {
                    report(
                        "window \(position) of memory row \(memory) has \(embedding.count) components, not \(dimension)"
                    )
                }
                if !embedding.allSatisfy(\.isFinite) {
                    report("window \(position) of memory row \(memory) has NaN or infinity")
                }
            }
        }
        var segments: [Int] = []
        if try database.scalarInt(SQL.Check.hasKeywordIndex) > 0 {
            checkKeywords(database, memories: memories.count, report: report)
            // A diagnostic, not a check: FTS5's own format may change, its data is SQLite's.
            segments = (try? KeywordIndex.segmentsPerLevel(database)) ?? []
        }
        var nodes: [Int32: [[Int32]]] = [:]
        var indexed: Set<Int64> = []
        let nodeRows = try database.prepare(SQL.Check.nodes)
        while try nodeRows.step() {
            let slot = Int32(truncatingIfNeeded: nodeRows.int64(at: 0))
            let memory = nodeRows.int64(at: 1)
            if !memories.contains(memory) {
                report("graph node \(slot) indexes no memory (row \(memory))")
            }
            indexed.insert(memory)
            guard let layers = HNSWNodeRecord.decode(nodeRows.int32s(at: 2)) else {
                report("graph node \(slot) has a malformed link record")
                continue
            }
            nodes[slot] = layers
        }
        switch index {
        case .flat:
            if !nodes.isEmpty { problems.append("a flat space holds \(nodes.count) graph nodes") }
        case .hnsw(let parameters):
            let unindexed = memories.subtracting(indexed)
            if !unindexed.isEmpty {
                problems.append("\(unindexed.count) memories have no graph node (e.g. row \(unindexed.min()!))")
            }
            let entryPoint = settings["hnsw_entry"].flatMap { Int32($0) } ?? -1
            problems += HNSWGraphCheck.problems(nodes: nodes, entryPoint: entryPoint, M: parameters.M)
        }
        if let applied = settings[appliedIndexSetting], (Int64(applied) ?? -1) < 0 {
            report("the index of the last write applied is '\(applied)', not a count")
        }
        let (digest, appliedIndex) = try Self.digest(of: database, user: nil)
        return CheckReport(
            index: index.name, memories: memories.count, nodes: nodes.count, problems: problems,
            appliedIndex: appliedIndex, digest: digest, keywordSegments: segments)
    }
}
