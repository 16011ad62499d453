import VectorIndex

/// What `MemoryStore.check` found.
public struct CheckReport: Sendable, Equatable {
    /// `flat` or `hnsw`.
    public var index: String
    public var memories: Int
    /// Graph nodes (0 for a flat space).
    public var nodes: Int
    /// Each problem found, in words; empty when the file is sound.
    public var problems: [String]

    public var isSound: Bool { problems.isEmpty }
}

extension MemoryStore {
    /// Checks the space stored at `path` without opening it for writing, so it can run next to a
    /// server (it reads the last committed state): SQLite's own `quick_check`, every embedding's
    /// length, and for an `hnsw` space the graph: one node per memory and no node without one,
    /// well-formed link records, links that point at nodes of their layer, an entry point on the
    /// top level, and every node reachable from it (`HNSWGraphCheck`).
    /// - Throws: `StoreError.sqlite` when the file cannot be read at all.
    public static func check(path: String) throws -> CheckReport {
        do {
            let database = try Database(path: path, readOnly: true)
            defer { database.close() }
            var problems: [String] = []
            let quick = try database.prepare("PRAGMA quick_check")
            while try quick.step() {
                if let line = quick.string(at: 0), line != "ok" { problems.append("sqlite: \(line)") }
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
            let rows = try database.prepare("SELECT seq, id, length(embedding) FROM memories")
            while try rows.step() {
                memories.insert(rows.int64(at: 0))
                if let dimension, rows.int64(at: 2) != Int64(dimension * 4) {
                    problems.append(
                        "memory \(rows.string(at: 1) ?? "?") has \(rows.int64(at: 2) / 4) components, not \(dimension)")
                }
            }
            var nodes: [Int32: [[Int32]]] = [:]
            var indexed: Set<Int64> = []
            let nodeRows = try database.prepare("SELECT slot, memory, links FROM hnsw_nodes")
            while try nodeRows.step() {
                let slot = Int32(truncatingIfNeeded: nodeRows.int64(at: 0))
                let memory = nodeRows.int64(at: 1)
                if !memories.contains(memory) {
                    problems.append("graph node \(slot) indexes no memory (row \(memory))")
                }
                indexed.insert(memory)
                guard let layers = HNSWNodeRecord.decode(nodeRows.int32s(at: 2)) else {
                    problems.append("graph node \(slot) has a malformed link record")
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
            return CheckReport(index: index.name, memories: memories.count, nodes: nodes.count, problems: problems)
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
    }
}
