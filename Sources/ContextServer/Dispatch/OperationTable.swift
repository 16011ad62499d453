import ContextModel
import ContextProtocol
import MemoryStore
import NIOCore

/// Where an operation runs on the server.
enum Placement: Sendable, Equatable {
    /// On the connection's event loop: quick reads of the in-memory indexes.
    case eventLoop
    /// On the compute pool (one thread per core): CPU-heavy work that would stall a loop.
    case computePool
    /// On the single writer thread, which serializes every change to the space.
    case writer
}

/// One row of the operation table: everything the connection handler needs to know about an op.
struct OperationDescriptor: Sendable {
    /// The `op` of the request line.
    let name: String
    /// Where the op runs once any text it carries has been embedded.
    let placement: Placement
    /// Whether it changes the space (and so queues for the writer).
    var writes: Bool { placement == .writer }
    /// What it needs of the connection's key, on a server with keys.
    let access: Access
    /// Reads a request's fields into a call bound to the op's handler.
    let decode: @Sendable (JSONObject) throws(ProtocolError) -> Call
    /// The request's fields (the codec's).
    let requestFields: [FieldSpec]
    /// What a request costs, in words (`Cost.text`).
    let costText: String
    /// Whether its answers may be kept by the result cache.
    let cached: Bool
    /// The answer's fields (`?`: only in some answers).
    let answer: [String]
    /// Error codes of this op beyond those every request may get and those of its fields' kinds.
    let errors: [ErrorCode]

    /// A descriptor for `Op`.
    /// - Parameters:
    ///   - needsComputePool: Whether a request has work for the compute pool: text for the model to
    ///     embed (a writing op runs `embed` there before it runs at `placement`), or SQL to read
    ///     (an event-loop op then runs there whole).
    ///   - embed: Fills in what the model computes; it must leave no text for `handle`.
    ///   - handle: Runs the op; a thrown `ProtocolError` or `StoreError` is the answer.
    ///   - users: The users whose memories a request reads or changes (the key must cover each).
    ///   - cost: What a request takes from its key's rate (a ping takes 1).
    ///   - cachedFor: The user whose memories a request's answer depends on alone, when the
    ///     answer may be kept (`ResultCache`); nil (the function, or what it returns): it may not.
    ///   - clock: A read's time, when its answer depends on the time (it is then answered with
    ///     `now`).
    ///   - answer: The answer's fields, for the spec.
    ///   - errors: The op's own error codes, for the spec.
    init<Op: WireOperation>(
        _ op: Op.Type, runs placement: Placement, access: Access,
        users: @escaping @Sendable (Op.Arguments) -> [String] = { _ in [] },
        cost: Cost<Op.Arguments> = .fixed(1),
        cachedFor: (@Sendable (Op.Arguments) -> String?)? = nil, clock: ClockField<Op.Arguments>? = nil,
        answer: [String], errors: [ErrorCode] = [],
        needsComputePool: @escaping @Sendable (Op.Arguments) -> Bool = { _ in false },
        embed: @escaping @Sendable (Op.Arguments, ServerContext) throws(ProtocolError) -> Op.Arguments = { a, _ in a },
        handle: @escaping @Sendable (Op.Arguments, ServerContext) throws -> Op.Answer
    ) {
        name = Op.name
        self.placement = placement
        self.access = access
        requestFields = Op.requestFields
        costText = cost.text
        cached = cachedFor != nil
        self.answer = answer + (placement == .writer ? ["seqs?"] : []) + (clock == nil ? [] : ["now"])
        self.errors = errors
        let cachedFor = cachedFor ?? { _ in nil }
        decode = { (object) throws(ProtocolError) in
            let arguments = try Op.decode(object)
            var call = Call.bind(
                arguments, Op.self, writes: placement == .writer, cachedFor: cachedFor, clock: clock,
                needsComputePool: needsComputePool, embed: embed, handle: handle)
            call.users = users(arguments)
            call.cost = cost.of(arguments)
            return call
        }
    }
}

/// Where a read's arguments keep the time it takes as now (nil: the server's clock).
struct ClockField<Arguments>: Sendable {
    let path: WritableKeyPath<Arguments, Int64?> & Sendable

    init(_ path: WritableKeyPath<Arguments, Int64?> & Sendable) { self.path = path }
}

/// What a request takes from its key's rate: a function of its arguments, and the same in words
/// for the spec.
struct Cost<Arguments>: Sendable {
    let text: String
    let of: @Sendable (Arguments) -> Double

    init(_ text: String, _ of: @escaping @Sendable (Arguments) -> Double) {
        self.text = text
        self.of = of
    }

    static func fixed(_ value: Double) -> Cost { Cost(String(Int(value))) { _ in value } }
}

/// A decoded request bound to its op's handler, ready to run.
struct Call: Sendable {
    /// The users whose memories it reads or changes.
    var users: [String] = []
    /// What it takes from its key's rate.
    var cost: Double = 1
    /// Whether text is left to embed (run `embedded` on the compute pool first).
    let needsComputePool: Bool
    /// Runs the model over the request's text; the result needs no embedding.
    let embedded: @Sendable (ServerContext) throws(ProtocolError) -> Call
    /// Runs the op and encodes its answer line, success or failure.
    let run: @Sendable (ServerContext, _ rid: JSONValue?) -> [UInt8]

    /// - Parameter writes: Whether the op changes memories: on a cluster node its answer then
    ///   carries `seqs`, the sequences its writes took (`WriteReceipt`).
    static func bind<Op: WireOperation>(
        _ arguments: Op.Arguments, _ op: Op.Type, writes: Bool,
        cachedFor: @escaping @Sendable (Op.Arguments) -> String?,
        clock: ClockField<Op.Arguments>?,
        needsComputePool: @escaping @Sendable (Op.Arguments) -> Bool,
        embed: @escaping @Sendable (Op.Arguments, ServerContext) throws(ProtocolError) -> Op.Arguments,
        handle: @escaping @Sendable (Op.Arguments, ServerContext) throws -> Op.Answer
    ) -> Call {
        Call(
            needsComputePool: needsComputePool(arguments),
            embedded: { (context) throws(ProtocolError) in
                bind(
                    try embed(arguments, context), op, writes: writes, cachedFor: cachedFor, clock: clock,
                    needsComputePool: { _ in false }, embed: embed, handle: handle)
            },
            run: { context, rid in
                if writes, context.stores.node != nil {
                    var context = context
                    let receipt = WriteReceipt()
                    context.receipt = receipt
                    return answering(rid) {
                        let answer = try handle(arguments, context)
                        return Response.success(rid: rid) { writer in
                            Op.encode(answer: answer, to: &writer)
                            receipt.encode(to: &writer)
                        }
                    }
                }
                // A read that depends on time runs at the request's `now`, or the clock's, and
                // says which: the same request at the same `now` on the same data gives the same
                // answer, byte for byte.
                var timed = arguments
                let given = clock.flatMap { arguments[keyPath: $0.path] }
                let now = clock.map { clock in
                    let now = given ?? Clock.nowMilliseconds()
                    timed[keyPath: clock.path] = now
                    return now
                }
                func line(_ fields: [UInt8]) -> [UInt8] {
                    Response.success(rid: rid) { writer in
                        writer.raw(fields)
                        if let now {
                            writer.field("now")
                            writer.int(now)
                        }
                    }
                }
                // The cache first: whether an answer may be kept costs a look at the request.
                guard let cache = context.results, let user = cachedFor(arguments),
                    let store = try? context.stores.of(user)
                else {
                    return answering(rid) {
                        var fields = JSONWriter()
                        Op.encode(answer: try handle(timed, context), to: &fields)
                        return line(fields.bytes)
                    }
                }
                // Kept by the request as asked: one without `now` is answered from what was kept
                // while the answer stays the same (the deadline), with the `now` of its asking.
                // The generation and the deadline are read before the answer is computed: a write
                // after them makes the kept answer stale, never the other way round.
                let request = Op.requestLine(arguments)
                let generation = store.generation(of: user)
                let clockNow = Clock.nowMilliseconds()
                // At a given `now`, time changes nothing: only a write does.
                let deadline = given == nil ? store.answersStay(at: clockNow) : nil
                if let fields = cache.answer(for: request, at: generation, now: clockNow) {
                    return line(fields)
                }
                return answering(rid) {
                    var fields = JSONWriter()
                    Op.encode(answer: try handle(timed, context), to: &fields)
                    // A memory expired and not yet purged, or a validity bound ahead: nothing to keep.
                    if deadline.map({ $0 > clockNow }) ?? true {
                        cache.store(fields.bytes, for: request, user: user, at: generation, until: deadline)
                    }
                    return line(fields.bytes)
                }
            })
    }

    /// The answer line `body` makes, or the error line of what it throws.
    private static func answering(_ rid: JSONValue?, _ body: () throws -> [UInt8]) -> [UInt8] {
        do {
            return try body()
        } catch let error as ProtocolError {
            return Response.failure(rid: rid, error)
        } catch let error as StoreError {
            return Response.failure(rid: rid, ProtocolError(error.code, error.message))
        } catch {
            return Response.failure(rid: rid, ProtocolError(.storageError, "\(error)"))
        }
    }
}

/// The table of operations, keyed by wire name. Adding an op is a codec in
/// `ContextProtocol.Operations`, a row here, its handler on `ServerContext`, a client method, a
/// round-trip test and a section in docs/PROTOCOL.md (docs/ARCHITECTURE.md has the recipe).
enum OperationTable {
    static let descriptors: [OperationDescriptor] = [
        OperationDescriptor(Operations.Ping.self, runs: .eventLoop, access: .anyKey, answer: ["pong"]) { _, _ in
            Nothing()
        },
        OperationDescriptor(
            Operations.Hello.self, runs: .eventLoop, access: .anyKey,
            answer: [
                "server", "version", "protocol", "dimension", "metric", "index", "blas", "kernels", "cpu", "memories?",
                "embedder",
            ]
        ) { _, context in context.hello() },
        OperationDescriptor(
            Operations.Auth.self, runs: .eventLoop, access: .anyone, cost: .fixed(0), answer: ["key", "role"],
            errors: [.unauthorized]
        ) {
            (secret, context) throws(ProtocolError) in
            try context.authenticate(secret)
        },
        OperationDescriptor(
            Operations.Add.self, runs: .writer, access: .write, users: { [$0.memory.user] },
            answer: ["id", "duplicate?", "truncated?"], errors: [.noEmbedder, .modelMismatch, .notFound],
            needsComputePool: { $0.memory.vector == nil },
            embed: { (arguments, context) throws(ProtocolError) in try context.embedded(arguments) },
            handle: { arguments, context in try context.add(arguments) }),
        OperationDescriptor(
            Operations.AddBatch.self, runs: .writer, access: .write, users: { $0.items.map(\.user) },
            cost: Cost("1 + items/16") { 1 + Double($0.items.count) / 16 },
            answer: ["ids", "count", "skipped", "conflicts?", "truncated?", "duplicates?"],
            errors: [.noEmbedder, .modelMismatch, .notFound],
            needsComputePool: { $0.items.contains { $0.vector == nil } },
            embed: { (arguments, context) throws(ProtocolError) in try context.embedded(arguments) },
            handle: { arguments, context in try context.addBatch(arguments) }),
        OperationDescriptor(
            // A vector search reads the indexes in memory; text to embed and keyword or metadata
            // reads through SQL go to the pool.
            // Kept unless the answer changes with the clock alone (recency, "yesterday").
            Operations.Search.self, runs: .eventLoop, access: .read, users: { [$0.user] }, cost: .fixed(2),
            cachedFor: { $0.changesWithTheClock ? nil : $0.user }, clock: ClockField(\.now),
            answer: ["hits", "degraded?"],
            errors: [.noEmbedder],
            needsComputePool: { search in
                let keywords = search.text != nil && search.mode != .vector
                let toEmbed = search.text != nil && search.vector == nil
                return keywords || toEmbed || !search.filter.metadata.isEmpty
            },
            embed: { (search, context) throws(ProtocolError) in try context.embedded(search) },
            handle: { search, context in try context.search(search) }),
        // Reads through SQL, embeds the query and counts tokens: on the pool.
        OperationDescriptor(
            Operations.Prompt.self, runs: .computePool, access: .read, users: { [$0.search.user] }, cost: .fixed(5),
            cachedFor: { $0.search.changesWithTheClock ? nil : $0.search.user }, clock: ClockField(\.search.now),
            answer: ["prompt", "messages?", "tokens", "counter", "sections", "used", "dropped", "sources?", "spans?"],
            errors: [.noEmbedder, .budgetTooSmall, .unknownTemplate]
        ) {
            request, context in
            try context.prompt(request)
        },
        OperationDescriptor(
            Operations.Get.self, runs: .eventLoop, access: .read, users: { [$0.user] },
            cost: Cost("1 + (ids - 1)/16") { 1 + Double($0.ids.count - 1) / 16 }, clock: ClockField(\.now),
            answer: ["memory?", "memories?", "missing?"], errors: [.notFound]
        ) {
            request, context in try context.get(request)
        },
        // Pages are read through SQL, which may wait for the disk: off the event loops.
        OperationDescriptor(
            Operations.List.self, runs: .computePool, access: .read, users: { [$0.user] }, clock: ClockField(\.now),
            answer: ["memories", "next_cursor"]
        ) {
            request, context in
            try context.stores.of(request.user).list(request)
        },
        OperationDescriptor(
            Operations.Sessions.self, runs: .computePool, access: .read, users: { [$0.user] },
            clock: ClockField(\.now), answer: ["sessions", "more"]
        ) {
            request, context in
            let (sessions, more) = try context.stores.of(request.user).sessions(
                user: request.user, limit: request.limit, now: request.now)
            return Operations.Sessions.Answer(sessions: sessions, more: more)
        },
        // Reads through SQL, a page of users: off the event loops. A key that covers some users
        // sees those alone (the handler filters), so any read key may ask.
        OperationDescriptor(
            Operations.Users.self, runs: .computePool, access: .read, cost: .fixed(2), clock: ClockField(\.now),
            answer: ["users", "next"]
        ) {
            request, context in try context.users(request)
        },
        OperationDescriptor(
            Operations.Update.self, runs: .writer, access: .write, users: { [$0.memory.user] }, answer: ["memory"],
            errors: [.notFound]
        ) {
            request, context in try context.update(request)
        },
        OperationDescriptor(
            Operations.Feedback.self, runs: .writer, access: .write, users: { [$0.memory.user] },
            answer: ["helped", "not_helped"], errors: [.notFound]
        ) {
            request, context in try context.feedback(request)
        },
        OperationDescriptor(
            Operations.Delete.self, runs: .writer, access: .write, users: { [$0.memory.user] }, answer: ["deleted"],
            errors: [.notFound]
        ) {
            request, context in try context.delete(request)
        },
        OperationDescriptor(
            Operations.Forget.self, runs: .writer, access: .write, users: { [$0.user] }, answer: ["deleted", "receipt"]
        ) {
            request, context in try context.forget(request)
        },
        OperationDescriptor(
            Operations.Backup.self, runs: .computePool, access: .admin, cost: .fixed(10),
            answer: ["path", "bytes", "seconds", "memories"]
        ) {
            path, context in
            try context.backup(to: path)
        },
        // One user's rows: read access to them; the whole space's: an admin's key.
        // Pages read through SQL: off the event loops.
        OperationDescriptor(
            Operations.Export.self, runs: .computePool, access: .read, users: { $0.user.map { [$0] } ?? [] },
            cost: Cost("1 + limit/100") { 1 + Double($0.limit) / 100 }, answer: ["memories", "next"],
            errors: [.forbidden]
        ) { request, context in try context.export(request) },
        OperationDescriptor(
            Operations.Digest.self, runs: .computePool, access: .read, users: { $0.map { [$0] } ?? [] },
            cost: Cost("10 for a user, 100 for the whole space") { $0 == nil ? 100 : 10 },
            answer: ["digest", "applied_index?"]
        ) { user, context in try context.digest(user: user) },
        // Any key: an admin's sees the space, another its own users (`ServerContext.stats`,
        // `metricsText`).
        OperationDescriptor(
            Operations.Stats.self, runs: .eventLoop, access: .anyKey,
            answer: [
                "memories", "users", "dimension", "metric", "index", "flat_storage", "bytes_on_disk", "bytes_in_memory",
                "expired",
                "purged", "duplicates", "embedding_cache_hits", "embedding_cache_misses", "embedding_cache_entries",
                "embedding_cache_bytes", "result_cache_hits", "result_cache_misses", "result_cache_entries",
                "result_cache_bytes",
            ]
        ) { _, context in context.stats() },
        // Reads PostgreSQL (the members, the placement, each range's last sequence): on the pool.
        OperationDescriptor(
            Operations.Cluster.self, runs: .computePool, access: .admin, cost: .fixed(10),
            answer: ["node", "nodes", "ranges"], errors: [.notFound, .unavailable]
        ) { _, context in try context.cluster() },
        OperationDescriptor(Operations.Metrics.self, runs: .eventLoop, access: .anyKey, answer: ["text"]) {
            _, context in
            context.metricsText()
        },
        // Server-wide facts no tenant's key may see: an admin's alone.
        // Holds each space's writer while it reads every row: an operator's, and costly.
        OperationDescriptor(
            Operations.Check.self, runs: .computePool, access: .admin, cost: .fixed(100),
            answer: ["users", "memories", "problems"]
        ) { _, context in try context.check() },
        OperationDescriptor(Operations.Keys.self, runs: .eventLoop, access: .admin, answer: ["enabled", "keys"]) {
            _, context in context.keySummaries()
        },
        OperationDescriptor(
            Operations.SlowRequests.self, runs: .eventLoop, access: .admin, answer: ["threshold_ms", "requests"]
        ) { limit, context in context.slowRequests.latest(limit) },
        OperationDescriptor(
            // A role that writes: embedding is what storing a memory costs, and read keys
            // should not spend the model's time.
            Operations.Embed.self, runs: .computePool, access: .write,
            cost: Cost("1 + texts/8") { 1 + Double($0.count) / 8 },
            answer: ["model", "vectors", "truncated?"], errors: [.noEmbedder]
        ) {
            (texts, context) throws(ProtocolError) in
            try context.embed(texts)
        },
    ]

    static let byName: [String: OperationDescriptor] = Dictionary(
        uniqueKeysWithValues: descriptors.map { ($0.name, $0) })

    /// The op whose name is fewest edits from `name` (at most two, or a third of it), if one is.
    static func nearestName(to name: String) -> String? {
        let typed = Array(name.lowercased().utf8.prefix(64))
        func distance(_ other: [UInt8]) -> Int {
            var row = Array(0...other.count)
            for (i, a) in typed.enumerated() {
                var previous = row[0]
                row[0] = i + 1
                for (j, b) in other.enumerated() {
                    let substitution = previous + (a == b ? 0 : 1)
                    previous = row[j + 1]
                    row[j + 1] = min(substitution, row[j] + 1, row[j + 1] + 1)
                }
            }
            return row[other.count]
        }
        let best = descriptors.map { ($0.name, distance(Array($0.name.utf8))) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= max(2, typed.count / 3) else { return nil }
        return best.0
    }

    /// A request object's op and its decoded call.
    /// - Throws: `ProtocolError` (`missing_field` without `op`, `unknown_op`, or the op's own).
    static func decode(_ object: JSONObject) throws(ProtocolError) -> (OperationDescriptor, Call) {
        let name: String
        if case .string(let given)? = object["op"] {
            name = given
        } else {
            name = try object.required("op", as: "string", \.stringValue)  // the error for what it holds
        }
        guard let descriptor = byName[name] else {
            let nearest = nearestName(to: name).map { "; did you mean '\($0)'?" } ?? ""
            throw ProtocolError(.unknownOp, "unknown op '\(name)'\(nearest)")
        }
        return (descriptor, try descriptor.decode(object))
    }
}

extension ContextStoreServer {
    /// Decodes a request object as the server does, without running it.
    /// - Throws: the `ProtocolError` the server would answer.
    public static func check(request object: JSONObject) throws(ProtocolError) {
        _ = try OperationTable.decode(object)
    }
}
