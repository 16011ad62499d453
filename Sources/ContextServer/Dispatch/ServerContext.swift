import ContextModel
import ContextProtocol
import Embedder
import Foundation
import MemoryStore
import NIOCore
import PromptBuilder
import Synchronization
import VectorIndex

/// What every handler works with: the stores and the model. Stateless apart from them (and the
/// flag that keeps backups one at a time), so every event loop and pool thread shares one.
struct ServerContext: Sendable {
    let stores: Stores
    let embedder: SentenceEmbedder?
    let version: String
    let prompts: PromptSettings
    /// Where `backup` may write (`serve --backup-dir`); nil: nowhere.
    let backupDirectory: String?
    /// The keys of `serve --keys`; nil: every connection may do everything.
    let keys: KeyRing?
    /// The connection's own: each connection's handler works with a copy of the context that
    /// carries a session of its own.
    var session = ConnectionSession()
    /// The token buckets of keys with a rate, shared by every connection.
    let limiter = RateLimiter()
    /// Answers of `search` and `prompt` kept until their user's memories change; nil: none kept.
    let results: ResultCache?
    /// Open connections and buffered bytes, all connections together.
    let limits: ConnectionLimits
    /// Requests, latencies and prompt tokens, for `metrics`.
    let metrics = ServerMetrics()
    /// Searches that came short, and the sampled recall of those not exact.
    let quality: QualitySampler
    /// The latest requests slower than the threshold, for `slow_requests`.
    let slowRequests: SlowRequestLog
    /// Whether a `backup` is running.
    let backups = BackupFlag()
    /// Where a write request's sequences in the cluster's log are kept for its answer (set for
    /// the request's run on a cluster node alone).
    var receipt: WriteReceipt?

    /// A flag shared by every copy of the context.
    final class BackupFlag: Sendable {
        private let running = Atomic(false)

        /// Sets the flag; false when it was set already.
        func start() -> Bool {
            running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        }

        func finish() { running.store(false, ordering: .releasing) }
    }

    /// A request line, decoded: the call to run, or the error line to send back.
    enum Decoded {
        /// `minSeq`: the sequence of its user's range the request must see (`min_seq`);
        /// `forwarded`: another node forwarded it (`forwarded_by`).
        case call(Call, OperationDescriptor, rid: JSONValue?, minSeq: Int64?, forwarded: Bool)
        case failure([UInt8])
    }

    /// Parses one line and decodes its op's fields. The `rid` of an object is echoed even when
    /// the rest of it is invalid.
    static func decode(_ line: ByteBuffer) -> Decoded {
        let parsed: JSONValue
        do {
            parsed = try line.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONParser.parse(bytes) }
        } catch {
            return .failure(Response.failure(rid: nil, ProtocolError(.invalidJSON, "invalid JSON: \(error)")))
        }
        guard case .object(let object) = parsed else {
            return .failure(
                Response.failure(
                    rid: nil, ProtocolError(.notObject, "a request must be a JSON object, not \(parsed.typeName)")))
        }
        let rid = object["rid"]
        if let rid, !rid.isFinite {
            return .failure(
                Response.failure(
                    rid: nil, ProtocolError(.nonFinite, "'rid' holds NaN or Infinity, which JSON cannot carry back")))
        }
        do throws(ProtocolError) {
            let (descriptor, call) = try OperationTable.decode(object)
            let minSeq = try object.optionalInt("min_seq")
            if let minSeq {
                guard minSeq >= 0 else {
                    throw ProtocolError(
                        .invalidValue, "'min_seq' must be a sequence a write answered (0 or more), not \(minSeq)")
                }
                guard Set(call.users).count == 1 else {
                    throw ProtocolError(
                        .invalidValue,
                        "'min_seq' is for a request about one user; op '\(descriptor.name)' names \(Set(call.users).count)"
                    )
                }
            }
            let forwarded = try object.optionalString("forwarded_by") != nil
            return .call(call, descriptor, rid: rid, minSeq: minSeq, forwarded: forwarded)
        } catch {
            return .failure(Response.failure(rid: rid, error))
        }
    }

    // MARK: - Keys

    /// Why the connection may not run a request needing `access` on `users`' memories, which
    /// costs `cost` of its key's rate at `now` (monotonic nanoseconds); nil when it may (always,
    /// on a server without keys). A request refused has taken nothing from any bucket.
    func denial(_ access: Access, users: [String], cost: Double, now: UInt64) -> ProtocolError? {
        guard let keys, access != .anyone else { return nil }
        guard let (name, key) = session.accessKey(in: keys) else {
            return ProtocolError(.unauthorized, "authenticate first: {\"op\":\"auth\",\"secret\":\"...\"}")
        }
        guard let key else {
            return ProtocolError(
                .unauthorized,
                "the key '\(name)' is no longer one of the server's, or its secret changed; authenticate again")
        }
        guard access.allowed(for: key.role) else {
            return ProtocolError(.forbidden, "the key '\(name)' (\(key.role.rawValue)) may not do this")
        }
        if let outside = users.first(where: { !key.covers($0) }) {
            return ProtocolError(.forbidden, "the key '\(name)' may not touch the memories of user '\(outside)'")
        }
        if let rate = key.rate, let refusal = limiter.take(cost, key: name, users: users, rate: rate, now: now) {
            switch refusal {
            case .wait(let wait):
                return ProtocolError(
                    .rateLimited, "the key '\(name)' is over its rate; retry in \(wait) ms",
                    details: ["retry_after_ms": wait])
            case .exceedsBurst:
                return ProtocolError(
                    .tooLarge,
                    "this request costs \(cost) of the key '\(name)''s rate, more than its burst of \(rate.burst); split it",
                    details: ["cost": Int64(cost.rounded(.up)), "burst": Int64(rate.burst)])
            }
        }
        return nil
    }

    /// `auth`: the connection takes the key whose secret this is. A wrong secret leaves it
    /// with none. A server without keys has nothing to check: every connection is an admin.
    func authenticate(_ secret: String) throws(ProtocolError) -> Operations.Auth.Answer {
        guard let keys else { return Operations.Auth.Answer(key: "", role: AccessRole.admin.rawValue) }
        guard let key = keys.key(secret: secret) else {
            session.authenticated(as: nil)
            throw ProtocolError(.unauthorized, "no key has that secret")
        }
        session.authenticated(as: key)
        return Operations.Auth.Answer(key: key.name, role: key.role.rawValue)
    }

    // MARK: - Embedding (on the compute pool)

    private func requireEmbedder() throws(ProtocolError) -> SentenceEmbedder {
        guard let embedder else {
            throw ProtocolError(.noEmbedder, "this server runs without an embedding model; send vectors")
        }
        return embedder
    }

    /// The memory with its vector computed from its text when it has none.
    func embedded(_ arguments: Operations.Add.Arguments) throws(ProtocolError) -> Operations.Add.Arguments {
        var arguments = arguments
        if arguments.memory.vector == nil {
            let (documents, truncated) = try embedDocuments(
                [stores.any.embedTemplate.render(arguments.memory)],
                scopes: [Self.cacheScope(user: arguments.memory.user)])
            arguments.memory.vector = documents[0].vector
            arguments.memory.windows = documents[0].windows
            arguments.truncated = truncated.first
        }
        return arguments
    }

    /// The batch with every missing vector computed, in one call to the model.
    func embedded(_ arguments: Operations.AddBatch.Arguments) throws(ProtocolError) -> Operations.AddBatch.Arguments {
        var arguments = arguments
        let missing = arguments.items.indices.filter { arguments.items[$0].vector == nil }
        guard !missing.isEmpty else { return arguments }
        let (documents, truncated) = try embedDocuments(
            missing.map { stores.any.embedTemplate.render(arguments.items[$0]) },
            scopes: missing.map { Self.cacheScope(user: arguments.items[$0].user) })
        for (index, document) in zip(missing, documents) {
            arguments.items[index].vector = document.vector
            arguments.items[index].windows = document.windows
        }
        arguments.truncated = truncated.map { Truncation(index: missing[$0.index], tokens: $0.tokens, kept: $0.kept) }
        return arguments
    }

    /// Stored texts' embeddings, windows included, and which texts (by index in `texts`) are
    /// longer than their windows cover.
    private func embedDocuments(
        _ texts: [String], scopes: [String]
    ) throws(ProtocolError) -> ([SentenceEmbedder.DocumentEmbedding], [Truncation]) {
        let documents = try requireEmbedder().embedDocuments(texts, scopes: scopes)
        let truncated = documents.indices.compactMap { i in
            documents[i].cut.map { Truncation(index: i, tokens: $0.tokens, kept: $0.covered) }
        }
        return (documents, truncated)
    }

    /// The embeddings of `texts` (the first window of each), and which of them (by index in
    /// `texts`) are longer than the model reads at once.
    private func embedReporting(_ texts: [String], scope: String) throws(ProtocolError) -> ([[Float]], [Truncation]) {
        let embedder = try requireEmbedder()
        let truncated = texts.indices.compactMap { i in
            embedder.tokensBeyondLimit(texts[i]).map { Truncation(index: i, tokens: $0, kept: embedder.maximumTokens) }
        }
        return (embedder.embed(texts, scope: scope), truncated)
    }

    /// The search with its mode settled and, where that mode needs a vector the client did not
    /// send, its query text embedded.
    func embedded(_ search: SearchRequest) throws(ProtocolError) -> SearchRequest {
        var search = search
        let mode = search.resolvedMode(canEmbed: embedder != nil)
        search.mode = mode
        if mode != .keyword, search.vector == nil, let text = search.text {
            search.vector = try requireEmbedder().embed([text], scope: Self.cacheScope(user: search.user))[0]
        }
        return search
    }

    // MARK: - Handlers, one per op

    func hello() -> ServerHello {
        let stats = stores.stats()
        return ServerHello(
            server: "contextstore", version: version, protocolVersion: protocolVersion, dimension: stats.dimension,
            metric: stats.metric, index: stats.index, blas: BLAS.loadedLibrary, kernels: Processor.kernels,
            cpu: Processor.model,
            memories: limitingKey == nil ? stats.memories : nil, embedder: embedder?.modelID)
    }

    /// Whether the connection may see the whole space: no keys, or an admin's.
    /// The key whose users bound what the connection sees of the space; nil: all of it (an
    /// admin's key, or a server without keys).
    var limitingKey: AccessKey? {
        guard let keys, let key = session.accessKey(in: keys)?.key, key.role != .admin else { return nil }
        return key
    }

    /// Where the embedding cache keeps a text a user's request embedded, and one `embed` of a
    /// key embedded: the prefixes differ, so no user's name is a key's scope.
    static func cacheScope(user: String) -> String { "user:" + user }
    static func cacheScope(key: String?) -> String { "key:" + (key ?? "") }

    /// Every write of a request ends here, resolved into a command (ids drawn, times read,
    /// texts embedded): the one place a front door changes the space.
    private func write(_ command: WriteCommand) throws -> WriteOutcome {
        let (outcome, sequences) = try stores.write(command)
        receipt?.record(sequences)
        return outcome
    }

    func add(_ arguments: Operations.Add.Arguments) throws -> Operations.Add.Answer {
        try check(model: arguments.model)
        let arguments = try embedded(arguments)
        guard case .added(let outcome) = try write(try stores.of(arguments.memory.user).resolve([arguments.memory]))
        else {
            preconditionFailure()
        }
        if let duplicate = outcome.duplicates.first {
            return Operations.Add.Answer(id: duplicate.id, truncated: arguments.truncated, duplicate: true)
        }
        return Operations.Add.Answer(id: outcome.ids[0], truncated: arguments.truncated)
    }

    func addBatch(_ arguments: Operations.AddBatch.Arguments) throws -> Operations.AddBatch.Answer {
        try check(model: arguments.model)
        let arguments = try embedded(arguments)
        guard case .added(let outcome) = try write(stores.any.resolve(arguments.items, ifAbsent: arguments.ifAbsent))
        else { preconditionFailure() }
        return Operations.AddBatch.Answer(
            ids: outcome.ids, skipped: outcome.skipped.count, conflicts: outcome.conflicts,
            truncated: arguments.truncated, duplicates: outcome.duplicates.map { ($0.item, $0.id) })
    }

    func search(_ search: SearchRequest) throws -> Operations.Search.Answer {
        // A text search in the default mode is hybrid; without a model it is words alone.
        let degraded = search.mode == nil && search.text != nil && search.vector == nil && embedder == nil
        let search = try embedded(search)
        let store = try stores.of(search.user)
        let hits = try store.search(search)
        quality.observe(search, hits: hits, store: store)
        return Operations.Search.Answer(hits: hits, degraded: degraded ? ["vector"] : [])
    }

    func get(_ request: Operations.Get.Arguments) throws -> Operations.Get.Answer {
        let found = try stores.of(request.user).get(
            user: request.user, ids: request.ids, withVector: request.withVector, now: request.now)
        if !request.many, found[0] == nil { throw notFound(MemoryRef(user: request.user, id: request.ids[0])) }
        return Operations.Get.Answer(
            memories: found.compactMap { $0 }, missing: zip(request.ids, found).filter { $1 == nil }.map(\.0),
            many: request.many)
    }

    func update(_ request: Operations.Update.Arguments) throws -> Memory {
        let command = WriteCommand.update(request.memory, request.changes, asOf: Clock.nowMilliseconds())
        guard case .updated(let memory) = try write(command) else { preconditionFailure() }
        guard let memory else { throw notFound(request.memory) }
        return memory
    }

    /// One backup at a time: each holds a read transaction and a compute thread for as long as
    /// it copies.
    func backup(to name: String) throws -> Operations.Backup.Answer {
        guard case .single(let store) = stores else {
            throw ProtocolError(
                .forbidden, "a cluster node takes no backups over the wire: PostgreSQL's log is the system of record")
        }
        let path = try backupPath(name, of: store)
        guard backups.start() else {
            throw ProtocolError(.busy, "a backup is already running; retry when it is done")
        }
        defer { backups.finish() }
        let report = try MemoryStore.backup(path: store.path, to: path)
        guard report.check.isSound else {
            throw ProtocolError(
                .storageError, "the copy at \(path) failed its check: \(report.check.problems.joined(separator: "; "))")
        }
        return Operations.Backup.Answer(
            path: path, bytes: report.bytes, seconds: report.seconds, memories: report.check.memories)
    }

    /// Where a backup named `name` goes: a new file directly inside the backup folder (`name` a
    /// file name, or an absolute path there), never one of the database's own files.
    private func backupPath(_ name: String, of store: MemoryStore) throws(ProtocolError) -> String {
        guard let backupDirectory else {
            throw ProtocolError(.forbidden, "this server takes no backups over the wire (serve --backup-dir DIR)")
        }
        let folder = URL(fileURLWithPath: backupDirectory).standardizedFileURL.resolvingSymlinksInPath()
        let requested = name.hasPrefix("/") ? URL(fileURLWithPath: name) : folder.appendingPathComponent(name)
        let file = requested.lastPathComponent
        let parent = requested.deletingLastPathComponent().standardizedFileURL.resolvingSymlinksInPath()
        guard parent.path == folder.path, !file.isEmpty, file != ".", file != "..", !name.hasSuffix("/") else {
            throw ProtocolError(
                .invalidValue, "'to' must be a file name in the backup folder \(folder.path), not '\(name)'")
        }
        let database = URL(fileURLWithPath: store.path).standardizedFileURL.resolvingSymlinksInPath()
        let own = ["", "-wal", "-shm", "-journal"].map { database.lastPathComponent + $0 }
        guard database.deletingLastPathComponent().path != folder.path || !own.contains(file) else {
            throw ProtocolError(.invalidValue, "'\(file)' is one of the database's own files")
        }
        return folder.appendingPathComponent(file).path
    }

    func feedback(_ request: Operations.Feedback.Arguments) throws -> Operations.Feedback.Answer {
        let command = WriteCommand.feedback(request.memory, helped: request.helped, asOf: Clock.nowMilliseconds())
        guard case .counted(let counts) = try write(command) else { preconditionFailure() }
        guard let counts else { throw notFound(request.memory) }
        metrics.feedback(helped: request.helped)
        return Operations.Feedback.Answer(helped: counts.helped, notHelped: counts.unhelped)
    }

    func delete(_ request: Operations.Delete.Arguments) throws -> Int {
        guard
            case .deleted(let deleted, let derived) = try write(
                .delete(request.memory, withDerived: request.withDerived))
        else { preconditionFailure() }
        guard deleted else { throw notFound(request.memory) }
        return 1 + derived
    }

    /// `check` of every space the server holds (a cluster node's ranges).
    func check() throws -> Operations.Check.Answer {
        var answer = Operations.Check.Answer(users: 0, memories: 0, problems: [])
        for store in stores.all {
            let found = try store.verify()
            answer.users += found.users
            answer.memories += found.memories
            answer.problems += found.problems
        }
        return answer
    }

    /// Forgets, then lets go what the caches keep of the user (answers, embeddings of its texts,
    /// keyword statistics), then looks for what is left, in the file, the indexes and the caches:
    /// the receipt.
    func forget(_ request: Operations.Forget.Arguments) throws -> Operations.Forget.Answer {
        let command = WriteCommand.forget(
            user: request.user, request.filter, asOf: Clock.nowMilliseconds(), withDerived: request.withDerived)
        guard case .forgotten(let removal) = try write(command) else { preconditionFailure() }
        let store = try stores.of(request.user)
        let scope = Self.cacheScope(user: request.user)
        let cacheEntries =
            (results?.drop(user: request.user) ?? 0) + (embedder?.dropCached(scope: scope) ?? 0)
            + store.dropKeywordStatistics(user: request.user)
        let left = try store.leftovers(of: removal, user: request.user, whole: request.filter.isEmpty)
        let cachesLeft =
            (results?.drop(user: request.user, countOnly: true) ?? 0)
            + (embedder?.dropCached(scope: scope, countOnly: true) ?? 0) + left.keywordStatistics
        return Operations.Forget.Answer(
            deleted: removal.counts.memories,
            receipt: .init(
                removed: removal.counts.byName.merging(["cache_entries": cacheEntries]) { $1 },
                left: left.counts.byName.merging(["cache_entries": cachesLeft, "records": left.records]) { $1 }))
    }

    /// The cluster as this node sees it: members and placement read from PostgreSQL now, each
    /// range's last sequence, snapshot and truncation, and what is applied here.
    func cluster() throws -> Operations.Cluster.Answer {
        guard let node = stores.node else {
            throw ProtocolError(.notFound, "this server is not a cluster node (serve --cluster)")
        }
        let (view, lasts, retention) = try Stores.waitFor {
            (try await node.log.view(), try await node.log.lastSequences(), try await node.log.retention())
        }
        return Operations.Cluster.Answer(
            node: node.name,
            nodes: view.members.map { .init(name: $0.name, address: $0.address, live: $0.live) },
            ranges: view.placement.map { placement in
                .init(
                    range: placement.range, hosts: placement.hosts, joining: placement.joining,
                    last: lasts.indices.contains(placement.range) ? lasts[placement.range] : 0,
                    applied: node.replica(of: placement.range)?.appliedSequence,
                    snapshot: retention[placement.range]?.snapshot ?? 0,
                    truncated: retention[placement.range]?.truncated ?? 0)
            })
    }

    private func notFound(_ memory: MemoryRef) -> ProtocolError {
        ProtocolError(.notFound, "user '\(memory.user)' has no memory with id '\(memory.id)'")
    }

    /// `stats`: the space's, for an admin (or without keys); for another key, its users' alone,
    /// with the space-wide figures (bytes, caches) left at 0.
    func stats() -> ServerStats {
        if let key = limitingKey {
            return ServerStats(
                store: stores.stats(ofUsers: key.covers), embeddingCache: CacheCounters(), resultCache: CacheCounters())
        }
        let cache = embedder?.cacheStatistics
        return ServerStats(
            store: stores.stats(),
            embeddingCache: CacheCounters(
                hits: cache?.hits ?? 0, misses: cache?.misses ?? 0, entries: cache?.entries ?? 0,
                bytes: cache?.bytes ?? 0),
            resultCache: results?.counters ?? CacheCounters())
    }

    /// `digest`: one user's, or (for an admin, or on a server without keys) the whole space's.
    /// `export`: a page of one user's memories, or of every user's (an admin's, on one server).
    func export(_ request: Operations.Export.Arguments) throws -> ExportPage {
        guard let user = request.user else {
            if limitingKey != nil {
                throw ProtocolError(.forbidden, "the export of every user needs an admin's key; name a user")
            }
            guard case .single(let store) = stores else {
                throw ProtocolError(.invalidValue, "a cluster node exports one user at a time: name a user")
            }
            return try store.export(
                user: nil, after: request.after, limit: request.limit, withVector: request.withVector)
        }
        return try stores.of(user).export(
            user: user, after: request.after, limit: request.limit, withVector: request.withVector)
    }

    func digest(user: String?) throws -> Operations.Digest.Answer {
        if user == nil, limitingKey != nil {
            throw ProtocolError(.forbidden, "the digest of the whole space needs an admin's key; name a user")
        }
        if let user {
            return Operations.Digest.Answer(digest: try stores.of(user).digest(user: user).digest, appliedIndex: nil)
        }
        guard case .single(let store) = stores else {
            throw ProtocolError(.invalidValue, "a cluster node's digests are by range: ask `cluster`, or name a user")
        }
        let (digest, applied) = try store.digest()
        return Operations.Digest.Answer(digest: digest, appliedIndex: applied)
    }

    /// `metrics`: the Prometheus text. Without `keyed`, the series labelled by key are left out
    /// (the HTTP listener asks for no key, so it names none). A key that is not an admin's sees
    /// its own users and prompts alone (`ServerMetrics.text(ofKey:stats:)`).
    func metricsText(keyed: Bool = true) -> String {
        if let key = limitingKey { return metrics.text(ofKey: key.name, stats: stats().store) }
        let text = metrics.text(
            stats: stats(), connections: limits.openConnections, quality: quality.current,
            tokensEmbedded: embedder?.tokensEmbedded ?? 0)
        guard !keyed else { return text }
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("key=\"") }.joined(separator: "\n")
    }

    /// The keys by name, with roles, users and rates; never a secret.
    func keySummaries() -> Operations.Keys.Answer {
        guard let keys else { return Operations.Keys.Answer(enabled: false, keys: []) }
        return Operations.Keys.Answer(
            enabled: true,
            keys: keys.all.map { key in
                KeySummary(
                    name: key.name, role: key.role.rawValue, users: key.users, perSecond: key.rate?.perSecond,
                    burst: key.rate?.burst)
            })
    }

    /// A page of the users whose ids begin with a prefix; a key that covers some users sees
    /// those alone. One space's: a cluster node's users are spread over ranges other nodes host.
    func users(_ request: Operations.Users.Arguments) throws -> Operations.Users.Answer {
        guard case .single(let store) = stores else {
            throw ProtocolError(
                .invalidValue, "users lists one server's users; a cluster node does not hold every range")
        }
        let key = limitingKey
        let (users, next) = try store.users(
            prefix: request.prefix, after: request.after, limit: request.limit, now: request.now,
            included: { user in key?.covers(user) ?? true })
        return Operations.Users.Answer(users: users, next: next)
    }

    func embed(_ texts: [String]) throws(ProtocolError) -> Operations.Embed.Answer {
        // Cached under the key's name: what another key embedded is not a hit.
        let (vectors, truncated) = try embedReporting(texts, scope: Self.cacheScope(key: session.key))
        return Operations.Embed.Answer(model: embedder?.modelID ?? "", vectors: vectors, truncated: truncated)
    }

    /// A request that names the model of its vectors must name the space's (or the server's).
    private func check(model: String?) throws(ProtocolError) {
        guard let model, let expected = stores.any.model ?? embedder?.modelID, model != expected else { return }
        throw ProtocolError(.modelMismatch, "this space holds vectors of the model \(expected), not \(model)")
    }
}
