import ContextModel
import VectorIndex

extension MemoryStore {
    /// What `addIfAbsent` did with each item of a batch.
    public struct AddOutcome: Sendable, Equatable {
        /// The ids stored, in order.
        public var ids: [String] = []
        /// Items whose memory was already there, the same: left as they are.
        public var skipped: [Int] = []
        /// Items whose id the user has with other content: left out, not stored.
        public var conflicts: [Int] = []
    }

    /// Stores the items whose id the user does not have yet (all of them or none, in one
    /// transaction), so an interrupted import can be run again: an item equal to the stored
    /// memory is skipped; one whose id is taken by other content (text, session, role,
    /// metadata, vector, or a given `created_at`) is a conflict and not stored.
    /// - Throws: as `add`.
    public func addIfAbsent(_ batch: [NewMemory]) throws -> AddOutcome {
        guard !batch.isEmpty else { return AddOutcome() }
        defer { changes.changed(batch.lazy.map(\.user)) }
        return try withWriter { statements in
            let knownDimension = dimension
            let (memories, windows) = try prepare(batch, dimension: knownDimension)
            var outcome = AddOutcome()
            var fresh: [Memory] = []
            var freshWindows: [[[Float]]] = []
            state.read { state in
                for (i, (item, memory)) in zip(batch, memories).enumerated() {
                    let key = Self.key(memory)
                    guard item.id != nil, let stored = state.record(key: key) else {
                        fresh.append(memory)
                        freshWindows.append(windows[i])
                        continue
                    }
                    // Byte for byte, as the file compares: two spellings of a text are two texts.
                    func same(_ a: String?, _ b: String?) -> Bool {
                        switch (a, b) {
                        case (nil, nil): true
                        case (let a?, let b?): a.bytewiseEquals(b)
                        default: false
                        }
                    }
                    let same =
                        same(stored.text, memory.text) && same(stored.session, memory.session)
                        && stored.role == memory.role && same(stored.speaker, memory.speaker)
                        && same(stored.metadata, memory.metadata)
                        && (item.createdAt == nil || stored.createdAt == memory.createdAt)
                        && state.flat?.vector(id: key) == memory.vector
                    if same { outcome.skipped.append(i) } else { outcome.conflicts.append(i) }
                }
            }
            guard !fresh.isEmpty else { return outcome }
            outcome.ids = try write(
                fresh, windows: freshWindows, statements: statements, knownDimension: knownDimension)
            return outcome
        }
    }

    /// Stores a batch in one transaction: all of it or none. A memory whose id its user has
    /// replaces it.
    /// - Returns: The ids stored, in order (generated where the memory had none).
    /// - Throws: `StoreError.wrongDimension`, `.nonFiniteVector`, `.invalidValue` before anything
    ///   is written; `.sqlite` when the transaction fails (then nothing was stored); `.closed`.
    @discardableResult
    public func add(_ batch: [NewMemory]) throws -> [String] {
        guard !batch.isEmpty else { return [] }
        defer { changes.changed(batch.lazy.map(\.user)) }
        return try withWriter { statements in
            let knownDimension = dimension
            let (memories, windows) = try prepare(batch, dimension: knownDimension)
            return try write(memories, windows: windows, statements: statements, knownDimension: knownDimension)
        }
    }

    /// Writes prepared memories (and each one's windows) in one transaction and publishes them
    /// (see `add`).
    private func write(
        _ memories: [Memory], windows: [[[Float]]], statements: WriteStatements, knownDimension: Int?
    ) throws -> [String] {
        let spaceDimension = memories[0].vector.count
        if knownDimension == nil {
            state.write { $0.makeIndexes(dimension: spaceDimension, metric: metric, index: index) }
        }
        var seqs: [Int64] = []
        var pending: [Int32] = []
        do {
            try rebuildingGraphOnFailure(statements) {
                try statements.database.transaction {
                    if knownDimension == nil { try statements.set("dimension", String(spaceDimension)) }
                    seqs = try memories.map { try statements.upsert($0) }
                    for (memory, seq) in zip(memories, seqs) { try statements.index(memory, seq: seq) }
                    // A replaced memory's old windows go, whether or not it has new ones.
                    let replaced = state.read { state in memories.map { state.record(key: Self.key($0)) != nil } }
                    for i in memories.indices where replaced[i] || !windows[i].isEmpty {
                        try statements.setWindows(memory: seqs[i], windows[i])
                    }
                    guard case .hnsw = index else { return }
                    let seqOfKey = Dictionary(
                        zip(memories.map { ExactString(Self.key($0)) }, seqs), uniquingKeysWith: { $1 })
                    pending = GraphWriter(state: state).link(memories)
                    try saveGraphChanges(statements) { seqOfKey[ExactString($0)] }
                }
            }
        } catch {
            // The space had no dimension before this write: it has none after it.
            if knownDimension == nil { state.write { $0 = State() } }
            throw error
        }
        // Committed: searches may now see the memories.
        state.write { state in
            for slot in pending { state.graph?.publish(slot) }
            for i in memories.indices { state.store(memories[i], seq: seqs[i], windows: windows[i]) }
        }
        return memories.map(\.id)
    }

    /// Checks a batch and gives each memory what the store fills in: an id, a time, the vector
    /// (and windows) as the indexes take them.
    private func prepare(
        _ batch: [NewMemory], dimension knownDimension: Int?
    ) throws -> (memories: [Memory], windows: [[[Float]]]) {
        // One id twice for one user in a batch would store one row and report two.
        var positions: [ExactString: Int] = [:]
        for (i, item) in batch.enumerated() {
            guard let id = item.id else { continue }
            if let first = positions.updateValue(i, forKey: ExactString(Self.key(user: item.user, id: id))) {
                throw StoreError.invalidValue(
                    "id '\(id)' of user '\(item.user)' appears twice in the batch (items \(first) and \(i))")
            }
        }
        let now = Clock.nowMilliseconds()
        var spaceDimension = knownDimension
        var windows: [[[Float]]] = []
        windows.reserveCapacity(batch.count)
        let memories = try batch.enumerated().map { (i, item) in
            guard let vector = item.vector else {
                throw StoreError.invalidValue("item \(i) has no vector (text is embedded by the server)")
            }
            guard !vector.isEmpty else { throw StoreError.invalidValue("vector must not be empty") }
            let expected = spaceDimension ?? vector.count
            guard vector.count == expected else {
                throw StoreError.wrongDimension(expected: expected, got: vector.count)
            }
            spaceDimension = expected
            guard !item.user.isEmpty else { throw StoreError.invalidValue("user must not be empty") }
            if let id = item.id, id.isEmpty { throw StoreError.invalidValue("id must not be empty") }
            windows.append(
                try item.windows.map { window in
                    guard window.count == expected else {
                        throw StoreError.wrongDimension(expected: expected, got: window.count)
                    }
                    return try Self.storable(window, metric: metric)
                })
            try Self.checkTime(item.createdAt)
            var expiresAt: Int64?
            if let ttl = item.ttl {
                guard ttl > 0, ttl <= NewMemory.maximumTTL else {
                    throw StoreError.invalidValue(
                        "ttl must be between 1 and \(NewMemory.maximumTTL) seconds, not \(ttl)")
                }
                expiresAt = now + ttl * 1000
            }
            return Memory(
                id: item.id ?? MemoryID.generate(), user: item.user, session: item.session, role: item.role,
                speaker: item.speaker, text: item.text, createdAt: item.createdAt ?? now, metadata: item.metadata,
                vector: try Self.storable(vector, metric: metric), expiresAt: expiresAt)
        }
        return (memories, windows)
    }

    /// Refuses a `created_at` outside `TimeRange` (the wire refuses it first; this guards every
    /// other caller: import, the CLI, the library).
    private static func checkTime(_ createdAt: Int64?) throws {
        guard let createdAt, !TimeRange.contains(createdAt) else { return }
        throw StoreError.invalidValue(
            "created_at must be in the years 0001 to 9999 (\(TimeRange.milliseconds) ms), not \(createdAt)")
    }

    /// Writes the graph's changed nodes (and its entry point) in the current transaction. `seq`
    /// gives the row of a memory written in this transaction, by key; the others' are in the
    /// records.
    private func saveGraphChanges(_ statements: WriteStatements, seq: (String) -> Int64?) throws {
        let (nodes, entryPoint) = GraphWriter(state: state).takeChanges()
        for node in nodes {
            switch node {
            case .saved(let slot, let key, let links):
                guard let memory = seq(key) ?? state.read({ $0.record(key: key)?.seq }) else {
                    throw StoreError.sqlite("graph node \(slot) has no memory row")
                }
                try statements.saveNode(slot: slot, memory: memory, links: links)
            case .removed(let slot):
                try statements.deleteNode(slot: slot)
            }
        }
        try statements.set("hnsw_entry", String(entryPoint))
    }

    /// Runs a write whose graph changes precede its commit. When it fails, the graph in memory
    /// may hold changes the file does not: the state is read back from the file. When that
    /// fails too (or the transaction could not be rolled back), the store refuses every later
    /// write until it is reopened, since a write on top of that state could save links to
    /// nodes the file never held. The original error is the one thrown.
    private func rebuildingGraphOnFailure<T>(_ statements: WriteStatements, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            if let stuck = error as? TransactionStuck {
                throw WritesRefused(reason: "a transaction could not be rolled back (\(stuck.cause))", cause: stuck)
            }
            guard case .hnsw = index else { throw error }
            do {
                let settings = try Self.readSettings(statements.database)
                let space = Space(
                    metric: metric, model: model, index: index, dimension: settings["dimension"].flatMap { Int($0) },
                    entryPoint: settings["hnsw_entry"].flatMap { Int32($0) } ?? -1, embedTemplate: embedTemplate,
                    purged: Self.purged(settings))
                let reloaded = try Self.load(statements.database, space: space)
                state.write { $0 = reloaded }
                changes.changedAll()
            } catch let reloadError {
                throw WritesRefused(
                    reason: "the index could not be read back after a failed write (\(reloadError))", cause: error)
            }
            throw error
        }
    }

    /// Deletes `user`'s memory `id`. Returns false when there was none.
    public func delete(user: String, id: String) throws -> Bool {
        defer { changes.changed([user]) }
        let key = Self.key(user: user, id: id)
        return try withWriter { statements in
            guard let seq = state.read({ $0.record(key: key)?.seq }) else { return false }
            try rebuildingGraphOnFailure(statements) {
                try statements.database.transaction {
                    try statements.setWindows(memory: seq, [])
                    let deleted = try statements.delete(user: user, id: id, seq: seq)
                    // The index and the table must agree on what was deleted; if they do not, nothing is.
                    guard deleted == 1 else {
                        throw StoreError.sqlite("deleting '\(id)' changed \(deleted) rows, not 1")
                    }
                    try unlink([key], statements)
                }
            }
            state.write { state in
                state.dropRecord(key)
                state.flat?.remove(id: key)
            }
            return true
        }
    }

    /// Changes the session, role, metadata or time of `user`'s memory `id`, leaving its text and
    /// vector as they are: one transaction, then the filter attributes in the indexes.
    /// - Returns: The memory as it now is (without its vector); nil when the user has no such
    ///   memory.
    public func update(user: String, id: String, _ changes: MemoryChanges) throws -> Memory? {
        defer { self.changes.changed([user]) }
        let key = Self.key(user: user, id: id)
        try Self.checkTime(changes.createdAt)
        return try withWriter { statements in
            // An expired memory is gone for every read, so for update too (the purge may not
            // have deleted it yet).
            guard let current = state.read({ $0.record(key: key) }), !current.expired(at: Clock.nowMilliseconds())
            else { return nil }
            guard !changes.isEmpty else { return current.memory(vector: []) }
            try statements.database.transaction {
                let changed = try statements.update(
                    user: user, id: id, session: changes.session ?? current.session,
                    role: changes.role ?? current.role, speaker: changes.speaker ?? current.speaker,
                    metadata: changes.metadata ?? current.metadata,
                    createdAt: changes.createdAt ?? current.createdAt)
                guard changed == 1 else { throw StoreError.sqlite("updating '\(id)' changed \(changed) rows, not 1") }
                // The keyword row holds the speaker and the day.
                if changes.speaker != nil || changes.createdAt != nil {
                    var memory = current.memory(vector: [])
                    if let speaker = changes.speaker { memory.speaker = speaker }
                    if let createdAt = changes.createdAt { memory.createdAt = createdAt }
                    try statements.index(memory, seq: current.seq)
                }
            }
            return state.write { $0.update(key: key, changes) }
        }
    }

    /// Deletes the memories of `user` that pass `filter` (every one of them when it is empty),
    /// in one transaction. Returns how many there were.
    public func forget(user: String, filter: MemoryFilter = MemoryFilter()) throws -> Int {
        defer { changes.changed([user]) }
        guard filter.isEmpty else { return try forget(user: user, matching: filter) }
        return try withWriter { statements in
            // The flat index's ids are the memories' keys.
            let keys = state.read { $0.flat?.ids(user: user) ?? [] }
            guard !keys.isEmpty else { return 0 }
            try rebuildingGraphOnFailure(statements) {
                try statements.database.transaction {
                    let deleted = try statements.delete(user: user)
                    guard deleted == keys.count else {
                        throw StoreError.sqlite("forgetting '\(user)' deleted \(deleted) rows, not \(keys.count)")
                    }
                    try unlink(keys, statements)
                }
            }
            return state.write { state in
                let keys = state.flat?.removeAll(user: user) ?? []
                for key in keys { state.dropRecord(key) }
                return keys.count
            }
        }
    }

    private func forget(user: String, matching filter: MemoryFilter) throws -> Int {
        var arguments: StatementArguments = []
        let condition = SQL.condition(user: user, filter: filter, now: Clock.nowMilliseconds(), arguments: &arguments)
        return try withWriter { statements in
            var keys: [String] = []
            do {
                try rebuildingGraphOnFailure(statements) {
                    // Bounded: a heavy filter would hold the writer, every tenant's writes.
                    try statements.database.withTimeLimit(statementTimeLimit) {
                        try statements.database.transaction {
                            keys = try deleteRows(
                                "DELETE FROM memories WHERE \(condition) RETURNING user, id, seq", arguments,
                                statements)
                        }
                    }
                }
            } catch let error as SQLiteError where error.interrupted {
                throw StoreError.tooCostly(
                    "this forget's filter ran past \(statementTimeLimit) ms and was stopped, nothing deleted; narrow it"
                )
            }
            state.write { state in
                for key in keys {
                    state.dropRecord(key)
                    state.flat?.remove(id: key)
                }
            }
            return keys.count
        }
    }

    /// Deletes memories that have expired by `now`, the longest expired first, at most `limit`
    /// of them, in one transaction with their windows, keyword rows and graph nodes; adds them
    /// to the `purged` count. Returns how many went.
    @discardableResult
    public func purgeExpired(now: Int64 = Clock.nowMilliseconds(), limit: Int = 10_000) throws -> Int {
        guard state.read({ $0.expiring > 0 }) else { return 0 }
        // Most calls find nothing due: an index probe on the reading connection, no write.
        let due = try withReader { database in
            let probe = try database.cachedStatement(SQL.anyExpired)
            try probe.bind([now])
            defer { probe.reset() }
            return try probe.step()
        }
        guard due else { return 0 }
        return try withWriter { statements in
            var keys: [String] = []
            var purged: Int64 = 0
            var nextExpiry: Int64?
            try rebuildingGraphOnFailure(statements) {
                try statements.database.transaction {
                    keys = try deleteRows(SQL.purgeExpired, [now, Int64(limit)], statements)
                    guard !keys.isEmpty else { return }
                    purged = state.read { $0.purged } + Int64(keys.count)
                    try statements.set("purged", String(purged))
                    let next = try statements.database.prepare(SQL.nextExpiry)
                    if try next.step(), !next.isNull(at: 0) { nextExpiry = next.int64(at: 0) }
                    while try next.step() {}  // finished before the commit
                }
            }
            guard !keys.isEmpty else { return 0 }
            state.write { state in
                for key in keys {
                    state.dropRecord(key)
                    state.flat?.remove(id: key)
                }
                state.purged = purged
                if state.expiring > 0 { state.nextExpiry = nextExpiry }
            }
            changes.changedAll()
            return keys.count
        }
    }

    /// Runs `sql`, a `DELETE FROM memories ... RETURNING user, id, seq`, in the current
    /// transaction, and deletes what belonged to those rows: windows, keyword rows, graph nodes.
    /// Returns the deleted memories' keys.
    /// - Throws: `StoreError.sqlite` when a deleted row is not in the index (then nothing is deleted).
    private func deleteRows(
        _ sql: String, _ arguments: StatementArguments, _ statements: WriteStatements
    ) throws -> [String] {
        let deleted = try statements.database.prepare(sql)
        try deleted.bind(arguments)
        var keys: [String] = []
        var seqs: [Int64] = []
        while try deleted.step() {
            keys.append(Self.key(user: deleted.string(at: 0) ?? "", id: deleted.string(at: 1) ?? ""))
            seqs.append(deleted.int64(at: 2))
        }
        for seq in seqs {
            try statements.setWindows(memory: seq, [])
            try statements.unindex(seq: seq)
        }
        // The index and the table must agree on what was deleted; if they do not, nothing is.
        if let missing = state.read({ state in keys.first { state.record(key: $0) == nil } }) {
            throw StoreError.sqlite("a deleted row (\(missing)) is not in the index")
        }
        try unlink(keys, statements)
        return keys
    }

    /// Removes the nodes of `keys` from the graph, if the space has one, and writes the repair
    /// in the current transaction.
    private func unlink(_ keys: [String], _ statements: WriteStatements) throws {
        guard case .hnsw = index else { return }
        GraphWriter(state: state).remove(keys)
        try saveGraphChanges(statements) { _ in nil }
    }
}

extension MemoryStore {
    /// Counts that a user said `user`'s memory `id` helped (or did not).
    /// - Returns: The memory's counts now; nil when the user has no such live memory.
    /// - Throws: `StoreError.sqlite`, `.closed`.
    public func feedback(user: String, id: String, helped: Bool) throws -> (helped: Int64, unhelped: Int64)? {
        defer { changes.changed([user]) }
        return try withWriter { statements in
            var counts: (helped: Int64, unhelped: Int64)?
            try statements.database.transaction {
                let update = try statements.database.prepare(SQL.feedback)
                try update.bind([Int64(helped ? 1 : 0), Int64(helped ? 0 : 1), user, id, Clock.nowMilliseconds()])
                guard try update.step() else { return }
                counts = (update.int64(at: 0), update.int64(at: 1))
                while try update.step() {}  // done: the statement is finished before the commit
            }
            guard let counts else { return nil }
            state.write { state in
                state.setFeedback(key: Self.key(user: user, id: id), helped: counts.helped, unhelped: counts.unhelped)
            }
            return counts
        }
    }
}

extension MemoryStore.State {
    mutating func setFeedback(key: String, helped: Int64, unhelped: Int64) {
        guard let handle = handles[ExactString(key)] else { return }
        records[Int(handle)]?.helped = helped
        records[Int(handle)]?.unhelped = unhelped
    }
}
