import ContextModel
import VectorIndex

extension MemoryStore {
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
                batch = stateLock.withReadLock {
                    batch.filter { $0.id.map { state.records[ExactString($0)] == nil } ?? true }
                }
                guard !batch.isEmpty else { return [] }
            }
            let vectors = try batch.enumerated().map { (i, item) in
                guard let vector = item.vector else {
                    throw StoreError.invalidValue("item \(i) has no vector (text is embedded by the server)")
                }
                return vector
            }
            let knownDimension = dimension
            let spaceDimension = knownDimension ?? vectors[0].count
            guard spaceDimension > 0 else { throw StoreError.invalidValue("vector must not be empty") }
            // One id twice in a batch would store one row and report two.
            var positions: [ExactString: Int] = [:]
            for (i, item) in batch.enumerated() {
                guard let id = item.id else { continue }
                if let first = positions.updateValue(i, forKey: ExactString(id)) {
                    throw StoreError.invalidValue("id '\(id)' appears twice in the batch (items \(first) and \(i))")
                }
            }
            let now = Self.nowMilliseconds()
            var memories: [Memory] = []
            memories.reserveCapacity(batch.count)
            for (item, vector) in zip(batch, vectors) {
                guard vector.count == spaceDimension else {
                    throw StoreError.wrongDimension(expected: spaceDimension, got: vector.count)
                }
                guard !item.user.isEmpty else { throw StoreError.invalidValue("user must not be empty") }
                if let id = item.id, id.isEmpty { throw StoreError.invalidValue("id must not be empty") }
                memories.append(
                    Memory(
                        id: item.id ?? Self.generateID(), user: item.user, session: item.session, role: item.role,
                        text: item.text, createdAt: item.createdAt ?? now, metadata: item.metadata,
                        vector: try Self.storable(vector, metric: metric)))
            }
            var seqs: [ExactString: Int64] = [:]
            var pending: [Int32] = []
            try rebuildingGraphOnFailure(writer) {
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
                        guard try upsert.step() else { throw StoreError.sqlite("the insert returned no row") }
                        seqs[ExactString(memory.id)] = upsert.int64(at: 0)
                        try upsert.run()
                    }
                    if case .hnsw(let parameters) = index {
                        pending = try link(memories, parameters: parameters, dimension: spaceDimension, writer: writer)
                        {
                            seqs[ExactString($0)]
                        }
                    }
                }
            }
            stateLock.withWriteLock {
                if state.index == nil { state.index = FlatIndex(dimension: spaceDimension, metric: metric) }
                for slot in pending { state.graph!.publish(slot) }
                for memory in memories {
                    let record = Record(memory, seq: seqs[ExactString(memory.id)]!)
                    if let old = state.records.updateValue(record, forKey: ExactString(memory.id)) {
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

    /// Links a batch into the graph and writes the changed nodes, inside the batch's
    /// transaction. Replaced memories' nodes are removed first. Each node is allocated and its
    /// links written under the exclusive lock; the search for its neighbours runs under the
    /// shared one, next to searches. Returns the new nodes' slots, to publish after the commit.
    private func link(
        _ memories: [Memory], parameters: HNSWParameters, dimension: Int, writer: Writer, seq: (String) -> Int64?
    ) throws -> [Int32] {
        // Replaced memories' nodes go first; the pass over every link runs under the shared lock.
        let removal = stateLock.withReadLock { state.graph?.planRemoval(ids: memories.map(\.id)) }
        stateLock.withWriteLock {
            if state.graph == nil {
                state.graph = HNSWIndex(dimension: dimension, metric: metric, parameters: parameters)
            }
            if let removal { state.graph!.apply(removal) }
        }
        var pending: [Int32] = []
        for memory in memories {
            let slot = stateLock.withWriteLock {
                state.graph!.allocate(
                    id: memory.id, user: memory.user, vector: memory.vector,
                    attributes: RowAttributes(
                        session: memory.session, role: memory.role, createdAt: memory.createdAt))
            }
            let plan = stateLock.withReadLock { state.graph!.plan(for: slot) }
            stateLock.withWriteLock { state.graph!.apply(plan) }
            pending.append(slot)
        }
        try saveGraphChanges(writer, seq: seq)
        return pending
    }

    /// Writes the graph's changed nodes (and its entry point) in the current transaction.
    private func saveGraphChanges(_ writer: Writer, seq: (String) -> Int64?) throws {
        let (changed, entryPoint) = stateLock.withWriteLock {
            (state.graph!.takeChangedSlots(), state.graph!.entryPoint)
        }
        try stateLock.withReadLock {
            let graph = state.graph!
            for slot in changed.sorted() {
                if graph.holdsNode(slot) {
                    let id = graph.id(at: slot)
                    guard let memory = seq(id) ?? state.records[ExactString(id)]?.seq else {
                        throw StoreError.sqlite("graph node \(slot) has no memory row")
                    }
                    writer.saveNode.reset()
                    try writer.saveNode.bind(Int64(slot), at: 1)
                    try writer.saveNode.bind(memory, at: 2)
                    try writer.saveNode.bind(graph.record(of: slot), at: 3)
                    try writer.saveNode.run()
                } else {
                    writer.deleteNode.reset()
                    try writer.deleteNode.bind(Int64(slot), at: 1)
                    try writer.deleteNode.run()
                }
            }
        }
        try writer.set("hnsw_entry", String(entryPoint))
    }

    /// Runs a write whose graph changes precede its commit. When it fails, the graph in memory
    /// may hold changes the file does not: the state is read back from the file. When that
    /// fails too (or the transaction could not be rolled back), the store refuses every later
    /// write until it is reopened, since a write on top of that state could save links to
    /// nodes the file never held. The original error is the one thrown.
    private func rebuildingGraphOnFailure<T>(_ writer: Writer, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            if let stuck = error as? TransactionStuck {
                writesRefused = "a transaction could not be rolled back (\(stuck.cause))"
                throw StoreError.sqlite(stuck.description)
            }
            if case .hnsw = index {
                do {
                    let settings = try Self.readSettings(writer.database)
                    let reloaded = try Self.load(
                        writer.database, dimension: dimension, metric: metric, index: index,
                        entryPoint: settings["hnsw_entry"].flatMap { Int32($0) } ?? -1)
                    stateLock.withWriteLock { state = reloaded }
                } catch let reloadError {
                    writesRefused = "the index could not be read back after a failed write (\(reloadError))"
                }
            }
            throw error
        }
    }

    /// Deletes one memory. Returns false when there was none with that id.
    public func delete(id: String) throws -> Bool {
        try withWriter { writer in
            guard stateLock.withReadLock({ state.records[ExactString(id)] != nil }) else { return false }
            try rebuildingGraphOnFailure(writer) {
                try writer.database.transaction {
                    writer.delete.reset()
                    try writer.delete.bind(id, at: 1)
                    try writer.delete.run()
                    // The index and the table must agree on what was deleted; if they do not, nothing is.
                    guard writer.database.changes == 1 else {
                        throw StoreError.sqlite("deleting '\(id)' changed \(writer.database.changes) rows, not 1")
                    }
                    try unlink([id], writer: writer)
                }
            }
            stateLock.withWriteLock {
                if let old = state.records.removeValue(forKey: ExactString(id)) {
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
            try rebuildingGraphOnFailure(writer) {
                try writer.database.transaction {
                    writer.deleteUser.reset()
                    try writer.deleteUser.bind(user, at: 1)
                    try writer.deleteUser.run()
                    let ids = stateLock.withReadLock { state.index?.ids(user: user) ?? [] }
                    guard writer.database.changes == ids.count else {
                        throw StoreError.sqlite(
                            "forgetting '\(user)' deleted \(writer.database.changes) rows, not \(ids.count)")
                    }
                    if case .hnsw = index { try unlink(ids, writer: writer) }
                }
            }
            return stateLock.withWriteLock {
                let ids = state.index?.removeAll(user: user) ?? []
                for id in ids {
                    if let old = state.records.removeValue(forKey: ExactString(id)) {
                        state.recordBytes -= old.approximateBytes + id.utf8.count
                    }
                }
                return ids.count
            }
        }
    }

    /// Removes the nodes of `ids` from the graph, if the space has one, and writes the repair
    /// in the current transaction.
    private func unlink(_ ids: [String], writer: Writer) throws {
        guard stateLock.withReadLock({ state.graph != nil }) else { return }
        // The pass over every link runs under the shared lock, next to searches; only writing
        // its result takes the exclusive one.
        let plan = stateLock.withReadLock { state.graph!.planRemoval(ids: ids) }
        stateLock.withWriteLock { _ = state.graph!.apply(plan) }
        try saveGraphChanges(writer) { _ in nil }
    }
}
