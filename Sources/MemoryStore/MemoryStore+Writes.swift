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
        /// Items with `dedupe` whose memory the user had: not stored; the id of the one they had.
        public var duplicates: [Duplicate] = []

        public init(ids: [String] = [], skipped: [Int] = [], conflicts: [Int] = [], duplicates: [Duplicate] = []) {
            self.ids = ids
            self.skipped = skipped
            self.conflicts = conflicts
            self.duplicates = duplicates
        }
    }

    /// An item of an add that the user had (`dedupe`), and the id of the memory it had.
    public struct Duplicate: Sendable, Equatable {
        public var item: Int
        public var id: String

        public init(item: Int, id: String) {
            self.item = item
            self.id = id
        }
    }

    // MARK: - Writes of the library: resolved now, applied next

    /// Stores the items whose id the user does not have yet (all of them or none, in one
    /// transaction), so an interrupted import can be run again: an item equal to the stored
    /// memory is skipped; one whose id is taken by other content (text, session, role,
    /// metadata, vector, or a given `created_at`) is a conflict and not stored.
    /// - Throws: as `add`.
    public func addIfAbsent(_ batch: [NewMemory]) throws -> AddOutcome {
        guard !batch.isEmpty else { return AddOutcome() }
        guard case .added(let outcome) = try apply(resolve(batch, ifAbsent: true)) else { preconditionFailure() }
        return outcome
    }

    /// Stores a batch in one transaction: all of it or none. A memory whose id its user has
    /// replaces it.
    /// - Returns: The ids stored, in order (generated where the memory had none).
    /// - Throws: `StoreError.wrongDimension`, `.nonFiniteVector`, `.invalidValue` before anything
    ///   is written; `.sqlite` when the transaction fails (then nothing was stored); `.closed`.
    @discardableResult
    public func add(_ batch: [NewMemory]) throws -> [String] {
        guard !batch.isEmpty else { return [] }
        guard case .added(let outcome) = try apply(resolve(batch)) else { preconditionFailure() }
        return outcome.ids
    }

    /// Deletes `user`'s memory `id`. Returns false when there was none.
    public func delete(user: String, id: String) throws -> Bool {
        guard case .deleted(let deleted, _) = try apply(.delete(MemoryRef(user: user, id: id))) else {
            preconditionFailure()
        }
        return deleted
    }

    /// Changes the session, role, metadata or time of `user`'s memory `id`, leaving its text and
    /// vector as they are: one transaction, then the filter attributes in the indexes.
    /// - Returns: The memory as it now is (without its vector); nil when the user has no such
    ///   memory (or it has expired).
    public func update(user: String, id: String, _ changes: MemoryChanges) throws -> Memory? {
        let command = WriteCommand.update(MemoryRef(user: user, id: id), changes, asOf: Clock.nowMilliseconds())
        guard case .updated(let memory) = try apply(command) else { preconditionFailure() }
        return memory
    }

    /// Deletes the memories of `user` that pass `filter` (every one of them when it is empty),
    /// in one transaction. Returns how many there were.
    /// With `withDerived`, also the user's memories whose sources name one of them.
    public func forget(user: String, filter: MemoryFilter = MemoryFilter(), withDerived: Bool = false) throws -> Int {
        let command = WriteCommand.forget(user: user, filter, asOf: Clock.nowMilliseconds(), withDerived: withDerived)
        guard case .forgotten(let removal) = try apply(command) else { preconditionFailure() }
        return removal.counts.memories
    }

    /// Deletes memories that have expired by `now`, the longest expired first, at most `limit`
    /// of them, in one transaction with their windows, keyword rows and graph nodes; adds them
    /// to the `purged` count. Returns how many went.
    @discardableResult
    public func purgeExpired(now: Int64 = Clock.nowMilliseconds(), limit: Int = 10_000) throws -> Int {
        guard let command = try purgeCommand(now: now, limit: limit), case .removed(let count) = try apply(command)
        else { return 0 }
        return count
    }

    /// The purge of what has expired by `now`, when something has: most calls find nothing due,
    /// by probing an index on a reading connection, and give no command to apply.
    public func purgeCommand(now: Int64 = Clock.nowMilliseconds(), limit: Int = 10_000) throws -> WriteCommand? {
        guard state.read({ $0.expiring > 0 }) else { return nil }
        let due = try withReader { database in
            let probe = try database.cachedStatement(SQL.anyExpired)
            try probe.bind([now])
            defer { probe.reset() }
            return try probe.step()
        }
        return due ? .purge(asOf: now, limit: limit) : nil
    }

    /// Counts that a user said `user`'s memory `id` helped (or did not).
    /// - Returns: The memory's counts now; nil when the user has no such live memory.
    /// - Throws: `StoreError.sqlite`, `.closed`.
    public func feedback(user: String, id: String, helped: Bool) throws -> FeedbackCounts? {
        let command = WriteCommand.feedback(
            MemoryRef(user: user, id: id), helped: helped, asOf: Clock.nowMilliseconds())
        guard case .counted(let counts) = try apply(command) else { preconditionFailure() }
        return counts
    }

    // MARK: - Resolving

    /// The command that stores `batch`: each memory given what the store decides, an id where
    /// it has none, `now` as its time where it gives none and as the start of its `ttl`, and
    /// its vectors in the form the space keeps (unit length under cosine). The one place a
    /// write reads a clock or draws an id.
    /// - Throws: `StoreError.nonFiniteVector`, `.invalidValue` (no vector, a `ttl` out of range,
    ///   a vector no space can hold). What depends on the space (its dimension) is checked when
    ///   the command is applied.
    public func resolve(
        _ batch: [NewMemory], ifAbsent: Bool = false, now: Int64 = Clock.nowMilliseconds()
    ) throws -> WriteCommand {
        let memories = try batch.enumerated().map { (i, item) in
            guard let vector = item.vector else {
                throw StoreError.invalidValue("item \(i) has no vector (text is embedded by the server)")
            }
            var expiresAt = item.expiresAt
            if let time = expiresAt, !TimeRange.contains(time) {
                throw StoreError.invalidValue(
                    "expires_at must be in the years 0001 to 9999 (\(TimeRange.milliseconds) ms), not \(time)")
            }
            if let validFrom = item.validFrom, !TimeRange.contains(validFrom) {
                throw StoreError.invalidValue(
                    "valid_from must be in the years 0001 to 9999 (\(TimeRange.milliseconds) ms), not \(validFrom)")
            }
            if let ttl = item.ttl {
                guard expiresAt == nil else { throw StoreError.invalidValue("give ttl or expires_at, not both") }
                guard ttl > 0, ttl <= NewMemory.maximumTTL else {
                    throw StoreError.invalidValue(
                        "ttl must be between 1 and \(NewMemory.maximumTTL) seconds, not \(ttl)")
                }
                expiresAt = now + ttl * 1000
            }
            guard item.sources.count <= NewMemory.maximumSources else {
                throw StoreError.invalidValue(
                    "a memory names at most \(NewMemory.maximumSources) sources, not \(item.sources.count)")
            }
            let memory = Memory(
                id: item.id ?? MemoryID.generate(), user: item.user, session: item.session, role: item.role,
                speaker: item.speaker, text: item.text, createdAt: item.createdAt ?? now, metadata: item.metadata,
                vector: vector.isEmpty ? [] : try Self.storable(vector, metric: metric), expiresAt: expiresAt,
                validity: Validity(from: item.validFrom, supersedes: item.supersedes), sources: item.sources)
            return ResolvedMemory(
                memory, windows: try item.windows.map { try Self.storable($0, metric: metric) },
                timeGiven: item.createdAt != nil, dedupe: item.dedupe,
                feedback: FeedbackCounts(helped: item.helped, unhelped: item.notHelped))
        }
        return .add(AddCommand(memories, ifAbsent: ifAbsent))
    }

    // MARK: - Applying

    /// The index of the last command applied to this space (0 for none).
    public var appliedIndex: Int64 { writeSide.withLock { $0.appliedIndex } }

    /// Applies `command` as the write numbered `index` (nil: the one after `appliedIndex`): one
    /// transaction that also records the index, so a space always knows which commands it
    /// holds. The only way a space changes. Everything it decides follows from the command and
    /// the rows: the same commands applied in order to two empty spaces give the same rows.
    /// - Throws: `StoreError.invalidValue` when `index` does not follow `appliedIndex`, and as
    ///   the command's write (then nothing changed, the index included).
    @discardableResult
    public func apply(_ command: WriteCommand, index: Int64? = nil) throws -> WriteOutcome {
        defer {
            switch command {
            case .add(let add): changes.changed(add.memories.lazy.map(\.memory.user))
            case .update(let memory, _, _), .feedback(let memory, _, _), .delete(let memory, _):
                changes.changed([memory.user])
            case .forget(let user, _, _, _): changes.changed([user])
            case .purge: break  // announced when it deleted something
            }
        }
        return try withWriter { statements, applied in
            let next = index ?? applied + 1
            guard next == applied + 1 else {
                throw StoreError.invalidValue("command \(next) does not follow the last one applied, \(applied)")
            }
            let outcome: WriteOutcome
            switch command {
            case .add(let add): outcome = .added(try apply(add, statements, index: next))
            case .update(let memory, let changes, let asOf):
                outcome = .updated(try update(memory, changes, asOf: asOf, statements, index: next))
            case .feedback(let memory, let helped, let asOf):
                outcome = .counted(try feedback(memory, helped: helped, asOf: asOf, statements, index: next))
            case .delete(let memory, let withDerived):
                let (deleted, derived) = try delete(memory, withDerived: withDerived, statements, index: next)
                outcome = .deleted(deleted, derived: derived)
            case .forget(let user, let filter, let asOf, let withDerived):
                // Forgetting all of a user leaves nothing derived from it.
                outcome = .forgotten(
                    filter.isEmpty
                        ? try forget(user: user, statements, index: next)
                        : try forget(
                            user: user, matching: filter, asOf: asOf, withDerived: withDerived, statements, index: next)
                )
            case .purge(let asOf, let limit):
                outcome = .removed(try purge(asOf: asOf, limit: limit, statements, index: next))
            }
            applied = next
            return outcome
        }
    }

    /// Applies a command taken from a replicated log as the write numbered `index`. As
    /// `apply(_:index:)`, except that a refusal that follows from the command and the rows alone
    /// (a wrong dimension, a non-finite vector, an invalid value) still takes the index and is
    /// returned as the outcome: every replica refuses it the same way and moves past it, where
    /// a thrown error would leave the log stuck at that entry.
    /// - Throws: what is not the command's fault (SQLite, a closed store, a statement stopped by
    ///   the time limit): nothing changed, and the same entry is to be applied again.
    public func applyLogged(_ command: WriteCommand, index: Int64) throws -> Result<WriteOutcome, StoreError> {
        do {
            return .success(try apply(command, index: index))
        } catch let refusal as StoreError where refusal.followsFromTheCommand {
            try withWriter { statements, applied in
                guard index == applied + 1 else {
                    throw StoreError.invalidValue("command \(index) does not follow the last one applied, \(applied)")
                }
                try recordAlone(index, statements)
                applied = index
            }
            return .failure(refusal)
        }
    }

    /// Records the index of the command being applied, in its transaction.
    private func record(_ index: Int64, _ statements: WriteStatements) throws {
        try statements.set(Self.appliedIndexSetting, String(index))
    }

    /// A command that changes no row still takes its index (and counts the duplicates it found).
    private func recordAlone(_ index: Int64, _ statements: WriteStatements, duplicates: Int = 0) throws {
        var total: Int64 = 0
        try statements.database.transaction {
            try record(index, statements)
            if duplicates > 0 { total = try count(duplicates: duplicates, statements) }
        }
        if duplicates > 0 { state.write { $0.duplicates = total } }
    }

    /// Adds `duplicates` to the space's count, in the current transaction; returns the total.
    private func count(duplicates: Int, _ statements: WriteStatements) throws -> Int64 {
        let total = state.read { $0.duplicates } + Int64(duplicates)
        try statements.set("duplicates", String(total))
        return total
    }

    private func apply(_ add: AddCommand, _ statements: WriteStatements, index: Int64) throws -> AddOutcome {
        let knownDimension = dimension
        let dimension = try Self.check(add.memories, dimension: knownDimension, metric: metric)
        var outcome = AddOutcome()
        // The items to store, by their place in the command.
        var fresh: [(Int, ResolvedMemory)] = []
        try state.read { state in
            for (i, item) in add.memories.enumerated() {
                let memory = item.memory
                guard add.ifAbsent, let stored = state.record(key: Self.key(memory)) else {
                    fresh.append((i, item))
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
                    try same(stored.text, memory.text) && same(stored.session, memory.session)
                    && stored.role == memory.role && same(stored.speaker, memory.speaker)
                    && same(stored.metadata, memory.metadata)
                    && (!item.timeGiven || stored.createdAt == memory.createdAt)
                    && stored.validity.from == memory.validity.from
                    && same(stored.validity.supersedes, memory.validity.supersedes)
                    && stored.sources.count == memory.sources.count
                    && zip(stored.sources, memory.sources).allSatisfy { $0.bytewiseEquals($1) }
                    && (vectors(state, keys: [Self.key(memory)], on: statements.database)[0] == memory.vector)
                if same { outcome.skipped.append(i) } else { outcome.conflicts.append(i) }
            }
        }
        outcome.duplicates = try duplicates(among: fresh, statements)
        let duplicated = Set(outcome.duplicates.map(\.item))
        let kept = fresh.filter { !duplicated.contains($0.0) }.map(\.1)
        guard !kept.isEmpty else {
            try recordAlone(index, statements, duplicates: outcome.duplicates.count)
            return outcome
        }
        let (batch, successions) = try successions(kept)
        outcome.ids = try write(
            batch, closing: successions, duplicates: outcome.duplicates.count, statements: statements,
            dimension: dimension, knownDimension: knownDimension, index: index)
        return outcome
    }

    /// The items with `dedupe` whose memory their user has, stored or earlier among `items`
    /// (those kept), and the id of that memory: for `exact`, the oldest stored memory with the
    /// same normalized text (`Dedupe.sameText`); for `near`, the most similar of the user's 16
    /// closest memories at or above the similarity. A memory that no longer holds (superseded,
    /// or ending) is not one the user has, nor one that expires before the item would (an item
    /// folded into it would go with it). Texts are found by fingerprint: a user's memories are
    /// read once a command, however many of its items ask.
    private func duplicates(among items: [(Int, ResolvedMemory)], _ statements: WriteStatements) throws -> [Duplicate] {
        guard items.contains(where: { $0.1.dedupe != nil }) else { return [] }
        struct TextKey: Hashable {
            var user: ExactString
            var fingerprint: UInt64
        }
        var duplicates: [Duplicate] = []
        var kept: [ResolvedMemory] = []
        var keptByText: [TextKey: [Int]] = [:]
        // Each user's stored memories by text, read the first time an item of theirs asks.
        var storedByText: [ExactString: [UInt64: [Int32]]] = [:]
        try state.read { state in
            func storedTexts(of user: String) -> [UInt64: [Int32]] {
                if let known = storedByText[ExactString(user)] { return known }
                var texts: [UInt64: [Int32]] = [:]
                for key in state.flat?.ids(user: user) ?? [] {
                    guard let handle = state.handles[ExactString(key)], let record = state.records[Int(handle)] else {
                        continue
                    }
                    texts[Dedupe.fingerprint(record.text), default: []].append(handle)
                }
                storedByText[ExactString(user)] = texts
                return texts
            }
            for (i, item) in items {
                let memory = item.memory
                func lasts(_ expiresAt: Int64?, _ validTo: Int64?) -> Bool {
                    guard validTo == nil else { return false }
                    guard let expiresAt else { return true }
                    return memory.expiresAt.map { expiresAt >= $0 } ?? false
                }
                var found: String?
                switch item.dedupe {
                case nil: break
                case .exact:
                    let fingerprint = Dedupe.fingerprint(memory.text)
                    found =
                        keptByText[TextKey(user: ExactString(memory.user), fingerprint: fingerprint)]?.lazy
                        .map { kept[$0].memory }
                        .first { lasts($0.expiresAt, nil) && Dedupe.sameText($0.text, memory.text) }?.id
                    if found == nil {
                        var oldest: Record?
                        for handle in storedTexts(of: memory.user)[fingerprint] ?? [] {
                            guard let record = state.records[Int(handle)], lasts(record.expiresAt, record.validity.to),
                                Dedupe.sameText(record.text, memory.text)
                            else { continue }
                            if record.seq < oldest?.seq ?? .max { oldest = record }
                        }
                        found = oldest?.id
                    }
                case .near(let similarity):
                    let earlier = kept.filter {
                        $0.memory.user.bytewiseEquals(memory.user) && lasts($0.memory.expiresAt, nil)
                    }
                    // Under cosine both are unit vectors: their product is the similarity.
                    let scores = earlier.map { zip($0.memory.vector, memory.vector).reduce(0) { $0 + $1.0 * $1.1 } }
                    if let best = scores.indices.max(by: { scores[$0] < scores[$1] }), scores[best] >= similarity {
                        found = earlier[best].memory.id
                    } else if let flat = state.flat {
                        // Exact for float32 rows; a compact index's candidates are rescored exactly.
                        found = try flat.search(
                            user: memory.user, query: memory.vector, k: 16, exact: flat.keepsVectors
                        ) { [records = state.records] in
                            try self.exactScores(
                                flat, records, handles: $0, query: memory.vector, on: statements.database)
                        }
                        .lazy.filter { $0.score >= similarity }
                        .compactMap { state.record($0) }
                        .first { lasts($0.expiresAt, $0.validity.to) }?.id
                    }
                }
                if let found {
                    duplicates.append(Duplicate(item: i, id: found))
                } else {
                    keptByText[
                        TextKey(user: ExactString(memory.user), fingerprint: Dedupe.fingerprint(memory.text)),
                        default: []
                    ].append(kept.count)
                    kept.append(item)
                }
            }
        }
        return duplicates
    }

    /// A memory a write closes: its key, user and id, when it stops holding, and its successor.
    struct Succession {
        var user: String
        var id: String
        var end: Int64
        var successor: String

        var key: String { MemoryStore.key(user: user, id: id) }
    }

    /// The memories `batch` supersedes, checked against the rows, and the batch as it is
    /// stored: a memory that replaces a stored one (same id) keeps its links and its end, so
    /// adding it again neither reopens it nor forgets its predecessor.
    /// - Throws: `StoreError.notFound` for a predecessor the user does not have (stored, or
    ///   earlier in the batch);
    ///   `.invalidValue` for a memory superseding itself, one already superseded by another that
    ///   is still there (a deleted successor frees it), two
    ///   items superseding one memory, a successor that begins before its predecessor, or a
    ///   stored memory named with another predecessor than it has.
    private func successions(_ batch: [ResolvedMemory]) throws -> ([ResolvedMemory], [Succession]) {
        // Nothing to close nor to carry over: no item names a predecessor and no stored memory
        // has a link or an end (the usual import).
        guard batch.contains(where: { $0.memory.validity.supersedes != nil }) || state.read({ $0.linked > 0 }) else {
            return (batch, [])
        }
        var batch = batch
        var successions: [Succession] = []
        var closed: [ExactString: Int] = [:]
        // Where each memory of the batch is: a predecessor may come earlier in it (an import
        // of a history), and is then stored before it is closed.
        var positions: [ExactString: Int] = [:]
        try state.read { state in
            for i in batch.indices {
                var memory = batch[i].memory
                if let stored = state.record(key: Self.key(memory)) {
                    if let named = memory.validity.supersedes, let had = stored.validity.supersedes,
                        !named.bytewiseEquals(had)
                    {
                        throw StoreError.invalidValue(
                            "item \(i): '\(memory.id)' supersedes '\(had)'; it cannot supersede '\(named)' instead")
                    }
                    memory.validity.supersedes = memory.validity.supersedes ?? stored.validity.supersedes
                    memory.validity.to = stored.validity.to
                    memory.validity.supersededBy = stored.validity.supersededBy
                }
                batch[i].memory = memory
                positions[ExactString(Self.key(memory))] = i
                guard let old = memory.validity.supersedes else { continue }
                guard !old.bytewiseEquals(memory.id) else {
                    throw StoreError.invalidValue("item \(i): '\(memory.id)' cannot supersede itself")
                }
                let key = Self.key(user: memory.user, id: old)
                guard
                    let predecessor = positions[ExactString(key)].map({ batch[$0].memory })
                        ?? state.record(key: key)?.memory(vector: [])
                else {
                    throw StoreError.notFound(
                        "item \(i) supersedes '\(old)', which user '\(memory.user)' does not have")
                }
                if let first = closed.updateValue(i, forKey: ExactString(key)) {
                    throw StoreError.invalidValue("items \(first) and \(i) both supersede '\(old)'")
                }
                if let successor = predecessor.validity.supersededBy, !successor.bytewiseEquals(memory.id),
                    state.record(key: Self.key(user: memory.user, id: successor)) != nil
                        || positions[ExactString(Self.key(user: memory.user, id: successor))] != nil
                {
                    throw StoreError.invalidValue(
                        "item \(i): '\(old)' was already superseded by '\(successor)'; supersede that one")
                }
                let start = memory.validity.from ?? memory.createdAt
                let predecessorStart = predecessor.validity.from ?? predecessor.createdAt
                guard start >= predecessorStart else {
                    throw StoreError.invalidValue(
                        "item \(i) begins at \(start), before '\(old)' does (\(predecessorStart)); it cannot supersede it"
                    )
                }
                successions.append(Succession(user: memory.user, id: old, end: start, successor: memory.id))
            }
        }
        return (batch, successions)
    }

    /// Checks what a space refuses in an add, whoever resolved it: every memory has a user, an
    /// id (once in the batch), a time in `TimeRange`, and vectors of one dimension (the space's,
    /// once it has one) that it can store. Returns the dimension.
    private static func check(_ memories: [ResolvedMemory], dimension known: Int?, metric: Metric) throws -> Int? {
        let near = memories.count { if case .near = $0.dedupe { true } else { false } }
        guard near <= Dedupe.maximumNearPerBatch else {
            throw StoreError.tooCostly(
                "at most \(Dedupe.maximumNearPerBatch) items of a batch may ask for a near dedupe, not \(near); split it"
            )
        }
        // One id twice for one user in a batch would store one row and report two.
        var positions: [ExactString: Int] = [:]
        var dimension = known
        for (i, item) in memories.enumerated() {
            let memory = item.memory
            guard !memory.user.isEmpty else { throw StoreError.invalidValue("user must not be empty") }
            guard !memory.id.isEmpty else { throw StoreError.invalidValue("id must not be empty") }
            if let first = positions.updateValue(i, forKey: ExactString(key(memory))) {
                throw StoreError.invalidValue(
                    "id '\(memory.id)' of user '\(memory.user)' appears twice in the batch (items \(first) and \(i))")
            }
            guard !memory.vector.isEmpty else { throw StoreError.invalidValue("vector must not be empty") }
            let expected = dimension ?? memory.vector.count
            guard expected <= Metric.maximumDimension else {
                throw StoreError.invalidValue(
                    "a vector may have at most \(Metric.maximumDimension) components, not \(expected)")
            }
            for vector in [memory.vector] + item.windows {
                guard vector.count == expected else {
                    throw StoreError.wrongDimension(expected: expected, got: vector.count)
                }
            }
            dimension = expected
            try checkTime(memory.createdAt)
            switch item.dedupe {
            case .near(let similarity):
                guard metric == .cosine else {
                    throw StoreError.invalidValue(
                        "item \(i): a near dedupe compares cosine similarity; this space is \(metric.rawValue)")
                }
                guard similarity > 0, similarity <= 1 else {
                    throw StoreError.invalidValue(
                        "item \(i): a near dedupe's similarity must be above 0 and at most 1, not \(similarity)")
                }
                fallthrough
            case .exact:
                guard memory.validity.supersedes == nil else {
                    throw StoreError.invalidValue("item \(i): a memory that supersedes another is not deduplicated")
                }
            case nil: break
            }
            guard memory.sources.count <= NewMemory.maximumSources else {
                throw StoreError.invalidValue(
                    "a memory names at most \(NewMemory.maximumSources) sources, not \(memory.sources.count)")
            }
            if let expiresAt = memory.expiresAt, !TimeRange.contains(expiresAt) {
                throw StoreError.invalidValue("expires_at must be in the years 0001 to 9999, not \(expiresAt)")
            }
            let counts = 0...NewMemory.maximumFeedbackCount
            guard counts.contains(item.feedback.helped), counts.contains(item.feedback.unhelped) else {
                throw StoreError.invalidValue(
                    "feedback counts must be between 0 and \(NewMemory.maximumFeedbackCount), not "
                        + "\(item.feedback.helped) and \(item.feedback.unhelped)")
            }
        }
        return dimension
    }

    /// Writes memories (and each one's windows) in one transaction and publishes them (see
    /// `add`).
    private func write(
        _ batch: [ResolvedMemory], closing successions: [Succession] = [], duplicates: Int = 0,
        statements: WriteStatements, dimension spaceDimension: Int?, knownDimension: Int?, index: Int64
    ) throws -> [String] {
        guard let spaceDimension else {
            try recordAlone(index, statements, duplicates: duplicates)
            return []
        }
        var duplicatesTotal: Int64?
        let memories = batch.map(\.memory)
        if knownDimension == nil {
            state.write {
                $0.makeIndexes(
                    dimension: spaceDimension, metric: metric, index: self.index, flatStorage: self.flatStorage)
            }
        }
        var seqs: [Int64] = []
        var pending: [Int32] = []
        do {
            try rebuildingGraphOnFailure(statements) {
                try statements.database.transaction {
                    if knownDimension == nil { try statements.set("dimension", String(spaceDimension)) }
                    seqs = try batch.map { try statements.upsert($0.memory, feedback: $0.feedback) }
                    for (memory, seq) in zip(memories, seqs) { try statements.index(memory, seq: seq) }
                    // A replaced memory's old windows go, whether or not it has new ones.
                    let replaced = state.read { state in memories.map { state.record(key: Self.key($0)) != nil } }
                    for i in batch.indices where replaced[i] || !batch[i].windows.isEmpty {
                        try statements.setWindows(memory: seqs[i], batch[i].windows)
                    }
                    for i in batch.indices where replaced[i] || !memories[i].sources.isEmpty {
                        try statements.setSources(memory: seqs[i], memories[i].sources)
                    }
                    for succession in successions {
                        let closed = try statements.close(
                            user: succession.user, id: succession.id, at: succession.end,
                            successor: succession.successor)
                        guard closed == 1 else {
                            throw StoreError.sqlite("closing '\(succession.id)' changed \(closed) rows, not 1")
                        }
                    }
                    try record(index, statements)
                    if duplicates > 0 { duplicatesTotal = try count(duplicates: duplicates, statements) }
                    guard case .hnsw = self.index else { return }
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
            for i in batch.indices {
                state.store(memories[i], seq: seqs[i], windows: batch[i].windows, feedback: batch[i].feedback)
            }
            for succession in successions {
                state.close(key: succession.key, at: succession.end, successor: succession.successor)
            }
            if let duplicatesTotal { state.duplicates = duplicatesTotal }
        }
        return memories.map(\.id)
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
    /// Returns how many nodes went.
    @discardableResult
    private func saveGraphChanges(_ statements: WriteStatements, seq: (String) -> Int64?) throws -> Int {
        let (nodes, entryPoint) = GraphWriter(state: state).takeChanges()
        var removed = 0
        for node in nodes {
            switch node {
            case .saved(let slot, let key, let links):
                guard let memory = seq(key) ?? state.read({ $0.record(key: key)?.seq }) else {
                    throw StoreError.sqlite("graph node \(slot) has no memory row")
                }
                try statements.saveNode(slot: slot, memory: memory, links: links)
            case .removed(let slot):
                try statements.deleteNode(slot: slot)
                removed += 1
            }
        }
        try statements.set("hnsw_entry", String(entryPoint))
        return removed
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
                    purged: Self.purged(settings), duplicates: Self.duplicates(settings))
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

    private func delete(
        _ memory: MemoryRef, withDerived: Bool, _ statements: WriteStatements, index: Int64
    ) throws -> (deleted: Bool, derived: Int) {
        let key = Self.key(user: memory.user, id: memory.id)
        guard let seq = state.read({ $0.record(key: key)?.seq }) else {
            try recordAlone(index, statements)
            return (false, 0)
        }
        var derived: [String] = []
        try rebuildingGraphOnFailure(statements) {
            try statements.database.transaction {
                try statements.setWindows(memory: seq, [])
                let deleted = try statements.delete(user: memory.user, id: memory.id, seq: seq)
                // The index and the table must agree on what was deleted; if they do not, nothing is.
                guard deleted == 1 else {
                    throw StoreError.sqlite("deleting '\(memory.id)' changed \(deleted) rows, not 1")
                }
                try record(index, statements)
                try unlink([key], statements)
                if withDerived {
                    var removal = Removal()
                    derived = try deleteDerived(user: memory.user, from: [memory.id], statements, into: &removal)
                }
            }
        }
        state.write { state in
            for key in [key] + derived {
                state.dropRecord(key)
                state.flat?.remove(id: key)
            }
        }
        return (true, derived.count)
    }

    /// Deletes, in the current transaction, `user`'s memories whose sources name one of `ids`
    /// (one step: what was derived from those is not followed). Returns their keys.
    private func deleteDerived(
        user: String, from ids: [String], _ statements: WriteStatements, into removal: inout Removal
    ) throws -> [String] {
        var keys: [String] = []
        // In parts, within SQLite's bound on a statement's parameters.
        var start = ids.startIndex
        while start < ids.endIndex {
            let part = ids[start..<min(start + 500, ids.endIndex)]
            keys += try deleteRows(
                SQL.deleteDerived(count: part.count),
                StatementArguments(values: [user] + part.map { $0 as any StatementBindable }), statements,
                into: &removal
            ).map(Self.key)
            start = part.endIndex
        }
        return keys
    }

    private func update(
        _ memory: MemoryRef, _ changes: MemoryChanges, asOf: Int64, _ statements: WriteStatements, index: Int64
    ) throws -> Memory? {
        let key = Self.key(user: memory.user, id: memory.id)
        try Self.checkTime(changes.createdAt)
        // An expired memory is gone for every read, so for update too (the purge may not have
        // deleted it yet).
        guard let current = state.read({ $0.record(key: key) }), !current.expired(at: asOf), !changes.isEmpty
        else {
            try recordAlone(index, statements)
            return state.read { $0.record(key: key) }.flatMap { $0.expired(at: asOf) ? nil : $0.memory(vector: []) }
        }
        try statements.database.transaction {
            let changed = try statements.update(
                user: memory.user, id: memory.id, session: changes.session ?? current.session,
                role: changes.role ?? current.role, speaker: changes.speaker ?? current.speaker,
                metadata: changes.metadata ?? current.metadata, createdAt: changes.createdAt ?? current.createdAt)
            guard changed == 1 else {
                throw StoreError.sqlite("updating '\(memory.id)' changed \(changed) rows, not 1")
            }
            // The keyword row holds the speaker and the day.
            if changes.speaker != nil || changes.createdAt != nil {
                var row = current.memory(vector: [])
                if let speaker = changes.speaker { row.speaker = speaker }
                if let createdAt = changes.createdAt { row.createdAt = createdAt }
                try statements.index(row, seq: current.seq)
            }
            try record(index, statements)
        }
        return state.write { $0.update(key: key, changes) }
    }

    private func forget(user: String, _ statements: WriteStatements, index: Int64) throws -> Removal {
        // The flat index's ids are the memories' keys.
        let keys = state.read { $0.flat?.ids(user: user) ?? [] }
        var removal = Removal()
        guard !keys.isEmpty else {
            try recordAlone(index, statements)
            return removal
        }
        removal.seqs = state.read { state in keys.compactMap { state.record(key: $0)?.seq } }
        try rebuildingGraphOnFailure(statements) {
            try statements.database.transaction {
                let deleted = try statements.delete(user: user)
                guard deleted.memories == keys.count else {
                    throw StoreError.sqlite("forgetting '\(user)' deleted \(deleted.memories) rows, not \(keys.count)")
                }
                (removal.counts.memories, removal.counts.windowRows, removal.counts.keywordRows) = deleted
                try record(index, statements)
                removal.counts.graphNodes = try unlink(keys, statements)
            }
        }
        state.write { state in
            let keys = state.flat?.removeAll(user: user) ?? []
            removal.dropping(keys, from: &state)
        }
        return removal
    }

    private func forget(
        user: String, matching filter: MemoryFilter, asOf: Int64, withDerived: Bool, _ statements: WriteStatements,
        index: Int64
    ) throws -> Removal {
        var arguments: StatementArguments = []
        let condition = SQL.condition(user: user, filter: filter, now: asOf, arguments: &arguments)
        var keys: [String] = []
        var removal = Removal()
        do {
            try rebuildingGraphOnFailure(statements) {
                // Bounded: a heavy filter would hold the writer, every tenant's writes.
                try statements.database.withTimeLimit(statementTimeLimit) {
                    try statements.database.transaction {
                        let forgotten = try deleteRows(
                            "DELETE FROM memories WHERE \(condition) RETURNING user, id, seq", arguments, statements,
                            into: &removal)
                        keys = forgotten.map(Self.key)
                        if withDerived {
                            keys += try deleteDerived(
                                user: user, from: forgotten.map(\.id), statements, into: &removal)
                        }
                        try record(index, statements)
                    }
                }
            }
        } catch let error as SQLiteError where error.interrupted {
            throw StoreError.tooCostly(
                "this forget's filter ran past \(statementTimeLimit) ms and was stopped, nothing deleted; narrow it")
        }
        state.write { state in
            for key in keys { state.flat?.remove(id: key) }
            removal.dropping(keys, from: &state)
        }
        return removal
    }

    private func purge(asOf: Int64, limit: Int, _ statements: WriteStatements, index: Int64) throws -> Int {
        guard limit > 0 else { throw StoreError.invalidValue("a purge's limit must be above 0, not \(limit)") }
        var keys: [String] = []
        var purged: Int64 = 0
        var nextExpiry: Int64?
        try rebuildingGraphOnFailure(statements) {
            try statements.database.transaction {
                var removal = Removal()
                keys = try deleteRows(SQL.purgeExpired, [asOf, Int64(limit)], statements, into: &removal).map(Self.key)
                try record(index, statements)
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

    /// Runs `sql`, a `DELETE FROM memories ... RETURNING user, id, seq`, in the current
    /// transaction, and deletes what belonged to those rows: windows, keyword rows, graph nodes.
    /// Returns the deleted memories.
    /// - Throws: `StoreError.sqlite` when a deleted row is not in the index (then nothing is deleted).
    private func deleteRows(
        _ sql: String, _ arguments: StatementArguments, _ statements: WriteStatements, into removal: inout Removal
    ) throws -> [MemoryRef] {
        let deleted = try statements.database.prepare(sql)
        try deleted.bind(arguments)
        var memories: [MemoryRef] = []
        var seqs: [Int64] = []
        while try deleted.step() {
            memories.append(MemoryRef(user: deleted.string(at: 0) ?? "", id: deleted.string(at: 1) ?? ""))
            seqs.append(deleted.int64(at: 2))
        }
        let keys = memories.map(Self.key)
        removal.counts.memories += memories.count
        removal.seqs += seqs
        for seq in seqs {
            removal.counts.windowRows += try statements.setWindows(memory: seq, [])
            removal.counts.keywordRows += try statements.unindex(seq: seq)
        }
        // The index and the table must agree on what was deleted; if they do not, nothing is.
        if let missing = state.read({ state in keys.first { state.record(key: $0) == nil } }) {
            throw StoreError.sqlite("a deleted row (\(missing)) is not in the index")
        }
        removal.counts.graphNodes += try unlink(keys, statements)
        return memories
    }

    /// Removes the nodes of `keys` from the graph, if the space has one, and writes the repair
    /// in the current transaction. Returns how many nodes went.
    @discardableResult
    private func unlink(_ keys: [String], _ statements: WriteStatements) throws -> Int {
        guard case .hnsw = index else { return 0 }
        GraphWriter(state: state).remove(keys)
        return try saveGraphChanges(statements) { _ in nil }
    }
}

extension MemoryStore {
    fileprivate func feedback(
        _ memory: MemoryRef, helped: Bool, asOf: Int64, _ statements: WriteStatements, index: Int64
    ) throws -> FeedbackCounts? {
        var counts: FeedbackCounts?
        try statements.database.transaction {
            let update = try statements.database.prepare(SQL.feedback)
            try update.bind([Int64(helped ? 1 : 0), Int64(helped ? 0 : 1), memory.user, memory.id, asOf])
            if try update.step() {
                counts = FeedbackCounts(helped: update.int64(at: 0), unhelped: update.int64(at: 1))
                while try update.step() {}  // done: the statement is finished before the commit
            }
            try record(index, statements)
        }
        guard let counts else { return nil }
        state.write { state in
            state.setFeedback(key: Self.key(user: memory.user, id: memory.id), counts)
        }
        return counts
    }
}

extension MemoryStore.State {
    mutating func setFeedback(key: String, _ counts: FeedbackCounts) {
        guard let handle = handles[ExactString(key)] else { return }
        records[Int(handle)]?.helped = counts.helped
        records[Int(handle)]?.unhelped = counts.unhelped
    }
}

extension Removal {
    /// Drops the records of `keys` (their vectors already out of the flat index), counting their
    /// source rows and the in-memory rows that go with them: the vector and the windows'.
    mutating func dropping(_ keys: [String], from state: inout MemoryStore.State) {
        self.keys += keys
        for key in keys {
            guard let record = state.record(key: key) else { continue }
            counts.sourceRows += record.sources.count
            counts.vectors += 1 + record.windowCount
            state.dropRecord(key)
        }
    }
}
