import ContextModel

/// The operations of protocol v1, one codec each. docs/PROTOCOL.md describes every field.
public enum Operations {
    /// The fields of a memory in `add` and in each item of `add_batch`.
    public static let memoryFields = FieldSpec.names(FieldSpec.memory)

    /// `ping`: answers `"pong":true`.
    public enum Ping: WireOperation {
        public static let name = "ping"
        public static func encode(answer: Nothing, to writer: inout JSONWriter) {
            writer.field("pong")
            writer.bool(true)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Nothing { Nothing() }
    }

    /// `hello`: what the server is and holds.
    public enum Hello: WireOperation {
        public static let name = "hello"
        public static func encode(answer: ServerHello, to writer: inout JSONWriter) { answer.write(to: &writer) }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> ServerHello {
            try ServerHello(json: answer)
        }
    }

    /// `add`: stores one memory; answers its id, and whether its text was longer than the
    /// server's model reads.
    public enum Add: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var memory: NewMemory
            /// The model that produced the vector, checked against the space's.
            public var model: String?
            /// Set by the server when its model embedded the text and cut it; never sent.
            public var truncated: Truncation?

            public init(_ memory: NewMemory, model: String? = nil) {
                self.memory = memory
                self.model = model
            }
        }

        public struct Answer: Sendable, Equatable {
            public var id: String
            /// The text was longer than the model reads (`index` 0).
            public var truncated: Truncation?
            /// The user had the memory (`dedupe`): nothing was stored, and `id` is the one it had.
            public var duplicate: Bool

            public init(id: String, truncated: Truncation? = nil, duplicate: Bool = false) {
                self.id = id
                self.truncated = truncated
                self.duplicate = duplicate
            }
        }

        public static let name = "add"
        public static let requestFields = FieldSpec.memory + [FieldSpec.model]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writer.raw(UInt8(ascii: ","))
            arguments.memory.writeFields(to: &writer)
            writeModel(arguments.model, to: &writer)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            return Arguments(try request.newMemory(), model: try request.optionalString("model"))
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("id")
            writer.string(answer.id)
            if answer.duplicate {
                writer.field("duplicate")
                writer.bool(true)
            }
            if let truncated = answer.truncated { writer.truncations([truncated]) }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                id: try answer.required("id", as: "string", \.stringValue), truncated: try answer.truncations().first,
                duplicate: try answer.optionalBool("duplicate") ?? false)
        }
    }

    /// `add_batch`: stores all of `items` or none, in one transaction.
    public enum AddBatch: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var items: [NewMemory]
            public var model: String?
            /// Skip the memories whose id exists rather than replace them.
            public var ifAbsent: Bool
            /// Set by the server for each text its model embedded and cut; never sent.
            public var truncated: [Truncation] = []

            public init(_ items: [NewMemory], model: String? = nil, ifAbsent: Bool = false) {
                self.items = items
                self.model = model
                self.ifAbsent = ifAbsent
            }
        }

        public struct Answer: Sendable, Equatable {
            /// The ids stored, in order.
            public var ids: [String]
            /// How many items were skipped (`if_absent`: the same memory was there).
            public var skipped: Int
            /// The items (by index) whose id the user has with other content (`if_absent`): not
            /// stored.
            public var conflicts: [Int]
            /// The items whose text was longer than the model reads.
            public var truncated: [Truncation]
            /// The items (by index) with `dedupe` whose memory the user had: not stored; each with
            /// the id of the one it had.
            public var duplicates: [(item: Int, id: String)]

            public init(
                ids: [String], skipped: Int, conflicts: [Int] = [], truncated: [Truncation] = [],
                duplicates: [(item: Int, id: String)] = []
            ) {
                self.ids = ids
                self.skipped = skipped
                self.conflicts = conflicts
                self.truncated = truncated
                self.duplicates = duplicates
            }

            public static func == (a: Answer, b: Answer) -> Bool {
                a.ids == b.ids && a.skipped == b.skipped && a.conflicts == b.conflicts && a.truncated == b.truncated
                    && a.duplicates.elementsEqual(b.duplicates) { $0.item == $1.item && $0.id == $1.id }
            }
        }

        public static let name = "add_batch"
        public static let requestFields = [
            FieldSpec(
                "items", .memories, required: true, minimum: 1, maximum: Double(Limits.maximumBatchItems),
                outOfRange: .tooLarge, "the memories, each with `add`'s fields"),
            FieldSpec.model,
            FieldSpec(
                "if_absent", .boolean, default: "false",
                "leave out items whose id the user has: the same are skipped, others are conflicts"),
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            if arguments.ifAbsent {
                writer.field("if_absent")
                writer.bool(true)
            }
            writeModel(arguments.model, to: &writer)
            writer.field("items")
            writer.array(count: arguments.items.count) { writer, index in
                writer.raw(UInt8(ascii: "{"))
                arguments.items[index].writeFields(to: &writer)
                writer.raw(UInt8(ascii: "}"))
            }
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            let items = try request.required("items", as: "array", \.arrayValue)
            guard !items.isEmpty else { throw ProtocolError(.invalidValue, "items must not be empty") }
            guard items.count <= Limits.maximumBatchItems else {
                throw ProtocolError(
                    .tooLarge, "add_batch takes at most \(Limits.maximumBatchItems) items, not \(items.count); split it"
                )
            }
            var batch: [NewMemory] = []
            batch.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                guard case .object(let fields) = item else {
                    throw ProtocolError(.wrongType, "items[\(i)] must be an object, not \(item.typeName)")
                }
                do throws(ProtocolError) {
                    try fields.requireKnownFields(memoryFields, envelope: false)
                    batch.append(try fields.newMemory())
                } catch {
                    throw ProtocolError(error.code, "items[\(i)]: \(error.message)")
                }
            }
            let near = batch.count { if case .near = $0.dedupe { true } else { false } }
            guard near <= Dedupe.maximumNearPerBatch else {
                throw ProtocolError(
                    .tooLarge,
                    "at most \(Dedupe.maximumNearPerBatch) items of a batch may ask for a near dedupe, not \(near); split it"
                )
            }
            return Arguments(
                batch, model: try request.optionalString("model"),
                ifAbsent: try request.optionalBool("if_absent") ?? false)
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("count")
            writer.int(Int64(answer.ids.count))
            writer.field("skipped")
            writer.int(Int64(answer.skipped))
            writer.field("ids")
            writer.array(count: answer.ids.count) { $0.string(answer.ids[$1]) }
            writer.field("conflicts")
            writer.array(count: answer.conflicts.count) { $0.int(Int64(answer.conflicts[$1])) }
            writer.truncations(answer.truncated)
            if !answer.duplicates.isEmpty {
                writer.field("duplicates")
                writer.array(count: answer.duplicates.count) { writer, i in
                    writer.raw("{\"item\":")
                    writer.int(Int64(answer.duplicates[i].item))
                    writer.field("id")
                    writer.string(answer.duplicates[i].id)
                    writer.raw(UInt8(ascii: "}"))
                }
            }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            let ids = try answer.required("ids", as: "array", \.arrayValue)
            return Answer(
                ids: try ids.map { (value) throws(ProtocolError) in
                    guard let id = value.stringValue else {
                        throw ProtocolError(.wrongType, "ids must hold strings, not \(value.typeName)")
                    }
                    return id
                }, skipped: Int(try answer.optionalInt("skipped") ?? 0),
                conflicts: try (answer["conflicts"]?.arrayValue ?? []).map { (value) throws(ProtocolError) in
                    guard let index = value.integerValue else {
                        throw ProtocolError(.wrongType, "conflicts must hold integers, not \(value.typeName)")
                    }
                    return Int(index)
                }, truncated: try answer.truncations(),
                duplicates: try (answer["duplicates"] == nil ? [] : answer.objects("duplicates")).map {
                    (object) throws(ProtocolError) in
                    (
                        Int(try object.required("item", as: "integer", \.integerValue)),
                        try object.required("id", as: "string", \.stringValue)
                    )
                })
        }
    }

    /// `search`: the closest memories of one user, best first.
    public enum Search: WireOperation {
        public static let name = "search"
        public static let requestFields =
            [
                FieldSpec.user,
                FieldSpec(
                    "k", .integer, minimum: 1, maximum: Double(SearchRequest.maximumK),
                    default: String(SearchRequest.defaultK), outOfRange: .kOutOfRange, "hits at most"),
            ] + FieldSpec.retrieval + FieldSpec.filter + [
                FieldSpec("explain", .boolean, default: "false", "the parts of each hit's score"),
                FieldSpec.includeSuperseded,
            ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ search: SearchRequest, to writer: inout JSONWriter) {
            writer.field("user")
            writer.string(search.user)
            writer.field("k")
            writer.int(Int64(search.k))
            writeOptions(search, to: &writer)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> SearchRequest {
            try request.requireKnownFields(fields)
            let k = try request.optionalInt("k") ?? Int64(SearchRequest.defaultK)
            guard (1...Int64(SearchRequest.maximumK)).contains(k) else {
                throw ProtocolError(.kOutOfRange, "k must be between 1 and \(SearchRequest.maximumK), not \(k)")
            }
            return try readOptions(request, k: Int(k))
        }

        /// Writes a search's fields but `user` and `k` (what `prompt` shares with `search`).
        static func writeOptions(_ search: SearchRequest, to writer: inout JSONWriter) {
            if let text = search.text {
                writer.field("query")
                writer.string(text)
            }
            if let vector = search.vector {
                // Base64 float32: a quarter of the text, and no float formatting or parsing.
                writer.field("vector")
                writer.string(Base64.encode(vector))
            }
            if let mode = search.mode {
                writer.field("mode")
                writer.string(mode.rawValue)
            }
            writer.memoryFilter(search.filter)
            if let ef = search.ef {
                writer.field("ef")
                writer.int(Int64(ef))
            }
            if search.exact {
                writer.field("exact")
                writer.bool(true)
            }
            if search.explain {
                writer.field("explain")
                writer.bool(true)
            }
            if let halfLife = search.halfLife {
                writer.field("half_life")
                writer.number(halfLife)
            }
            if search.context > 0 {
                writer.field("context")
                writer.int(Int64(search.context))
            }
            if let boost = search.feedbackBoost {
                writer.field("feedback_boost")
                writer.number(boost)
            }
            writer.validityView(search.validity)
            writer.now(search.now)
        }

        /// Reads a search's fields; `k` is given (what `prompt` shares with `search`).
        static func readOptions(_ request: JSONObject, k: Int) throws(ProtocolError) -> SearchRequest {
            var search = try readRetrieval(request, k: k)
            // `prompt` has no `include_superseded`: its field list refuses it first.
            search.validity = try request.validityView(allowingAll: true)
            search.now = try request.optionalTime("now")
            return search
        }

        private static func readRetrieval(_ request: JSONObject, k: Int) throws(ProtocolError) -> SearchRequest {
            let filter = try request.memoryFilter()
            let user = try request.user()
            let ef = try request.optionalInt("ef")
            if let ef, !(1...Int64(SearchRequest.maximumEf)).contains(ef) {
                throw ProtocolError(.invalidValue, "ef must be between 1 and \(SearchRequest.maximumEf), not \(ef)")
            }
            let text = try request.optionalString("query")
            let vector = request["vector"] == nil || request["vector"] == .null ? nil : try request.vector()
            var mode: SearchMode?
            if let name = try request.optionalString("mode") {
                guard let named = SearchMode(rawValue: name) else {
                    throw ProtocolError(.invalidValue, "mode must be vector, keyword or hybrid, not '\(name)'")
                }
                mode = named
            }
            guard text != nil || vector != nil else {
                throw ProtocolError(.missingField, "a search needs 'query' (text) or 'vector'")
            }
            if mode == .keyword, text == nil {
                throw ProtocolError(.missingField, "a keyword search needs 'query' (text)")
            }
            if mode == .hybrid, text == nil {
                throw ProtocolError(.missingField, "a hybrid search needs 'query' (text), and a vector or a model")
            }
            var halfLife: Double?
            if let value = request["half_life"], value != .null {
                guard let seconds = value.numberValue else {
                    throw ProtocolError(.wrongType, "half_life must be a number of seconds, not \(value.typeName)")
                }
                guard seconds.isFinite, seconds > 0 else {
                    throw ProtocolError(.invalidValue, "half_life must be a positive number of seconds")
                }
                halfLife = seconds
            }
            let context = try request.optionalInt("context") ?? 0
            guard (0...Int64(SearchRequest.maximumContext)).contains(context) else {
                throw ProtocolError(
                    .invalidValue, "context must be between 0 and \(SearchRequest.maximumContext), not \(context)")
            }
            var feedbackBoost: Double?
            if let value = request["feedback_boost"], value != .null {
                guard let boost = value.numberValue else {
                    throw ProtocolError(.wrongType, "feedback_boost must be a number, not \(value.typeName)")
                }
                guard boost.isFinite, boost > 0, boost <= SearchRequest.maximumFeedbackBoost else {
                    throw ProtocolError(
                        .invalidValue,
                        "feedback_boost must be above 0 and at most \(SearchRequest.maximumFeedbackBoost)")
                }
                feedbackBoost = boost
            }
            return SearchRequest(
                user: user, text: text, vector: vector, mode: mode, k: k, filter: filter, ef: ef.map { Int($0) },
                exact: try request.optionalBool("exact") ?? false,
                explain: try request.optionalBool("explain") ?? false,
                halfLife: halfLife, context: Int(context), feedbackBoost: feedbackBoost)
        }
        /// The hits, best first, and the parts of the search the server could not run
        /// (`vector`: a text search with no mode, on a server without a model, ranked by words
        /// alone), so an answer never silently leaves out what a search normally uses.
        public struct Answer: Sendable, Equatable {
            public var hits: [ScoredMemory]
            public var degraded: [String]

            public init(hits: [ScoredMemory], degraded: [String] = []) {
                self.hits = hits
                self.degraded = degraded
            }
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("hits")
            writer.array(count: answer.hits.count) { answer.hits[$1].write(to: &$0) }
            if !answer.degraded.isEmpty {
                writer.field("degraded")
                writer.array(count: answer.degraded.count) { $0.string(answer.degraded[$1]) }
            }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            let hits = try answer.required("hits", as: "array", \.arrayValue).map { (hit) throws(ProtocolError) in
                guard let object = hit.objectValue else {
                    throw ProtocolError(.wrongType, "a hit must be an object, not \(hit.typeName)")
                }
                return try ScoredMemory(json: object)
            }
            let degraded = answer["degraded"] == nil ? [] : try answer.strings("degraded")
            return Answer(hits: hits, degraded: degraded)
        }
    }

    /// `get`: one of a user's memories (`id`), or several (`ids`); vectors only `with_vector`.
    public enum Get: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var user: String
            public var ids: [String]
            /// Asked with `ids` (answered with `memories` and `missing`) rather than `id`
            /// (answered with `memory`, or `not_found`).
            public var many: Bool
            public var withVector: Bool
            /// The time the read takes as now (expiry); nil: the server's clock.
            public var now: Int64?

            /// One memory.
            public init(user: String, id: String, withVector: Bool = false, now: Int64? = nil) {
                self.init(user: user, ids: [id], many: false, withVector: withVector, now: now)
            }

            /// Several memories in one request.
            public init(user: String, ids: [String], withVector: Bool = false, now: Int64? = nil) {
                self.init(user: user, ids: ids, many: true, withVector: withVector, now: now)
            }

            private init(user: String, ids: [String], many: Bool, withVector: Bool, now: Int64?) {
                self.user = user
                self.ids = ids
                self.many = many
                self.withVector = withVector
                self.now = now
            }
        }

        public struct Answer: Sendable, Equatable {
            /// The memories found, in the order asked.
            public var memories: [Memory]
            /// The ids asked for that the user has no memory under, in the order asked.
            public var missing: [String]
            public var many: Bool

            public init(memories: [Memory], missing: [String], many: Bool) {
                self.memories = memories
                self.missing = missing
                self.many = many
            }
        }

        public static let name = "get"
        public static let requestFields = [
            FieldSpec.user, FieldSpec("id", .identifier, "one memory's id (or `ids`)"),
            FieldSpec("ids", .strings, minimum: 1, maximum: Double(Limits.maximumIds), "several ids (or `id`)"),
            FieldSpec("with_vector", .boolean, default: "false", "return each memory's vector too"), FieldSpec.now,
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writer.field("user")
            writer.string(arguments.user)
            if arguments.many {
                writer.field("ids")
                writer.array(count: arguments.ids.count) { $0.string(arguments.ids[$1]) }
            } else {
                writer.field("id")
                writer.string(arguments.ids[0])
            }
            if arguments.withVector {
                writer.field("with_vector")
                writer.bool(true)
            }
            writer.now(arguments.now)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            let user = try request.user()
            let withVector = try request.optionalBool("with_vector") ?? false
            let now = try request.optionalTime("now")
            let hasId = request["id"] != nil && request["id"] != .null
            guard request["ids"] != nil && request["ids"] != .null else {
                return Arguments(user: user, id: try request.memoryID(), withVector: withVector, now: now)
            }
            guard !hasId else { throw ProtocolError(.invalidValue, "give 'id' or 'ids', not both") }
            let ids = try request.strings("ids")
            guard (1...Limits.maximumIds).contains(ids.count) else {
                throw ProtocolError(.invalidValue, "'ids' must hold 1 to \(Limits.maximumIds) ids, not \(ids.count)")
            }
            return Arguments(user: user, ids: ids, withVector: withVector, now: now)
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            guard answer.many else {
                writer.field("memory")
                writer.memory(answer.memories[0])
                return
            }
            writer.field("memories")
            writer.array(count: answer.memories.count) { $0.memory(answer.memories[$1]) }
            writer.field("missing")
            writer.array(count: answer.missing.count) { $0.string(answer.missing[$1]) }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            if let memory = answer["memory"]?.objectValue {
                return Answer(memories: [try Memory(json: memory)], missing: [], many: false)
            }
            return Answer(
                memories: try answer.memories("memories"), missing: try answer.strings("missing"), many: true)
        }
    }

    /// `delete`: removes one of a user's memories (and, `with_derived`, the user's memories
    /// whose sources name it); answers how many were removed.
    public enum Delete: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var memory: MemoryRef
            public var withDerived: Bool

            public init(_ memory: MemoryRef, withDerived: Bool = false) {
                self.memory = memory
                self.withDerived = withDerived
            }
        }

        public static let name = "delete"
        public static let requestFields = [FieldSpec.user, FieldSpec.memoryID, FieldSpec.withDerived]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writeRef(arguments.memory, to: &writer)
            writeWithDerived(arguments.withDerived, to: &writer)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            return Arguments(try readRef(request), withDerived: try request.optionalBool("with_derived") ?? false)
        }
        public static func encode(answer: Int, to writer: inout JSONWriter) { writeDeleted(answer, to: &writer) }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Int { try readDeleted(answer) }
    }

    /// `forget`: removes a user's memories, all of them or those passing a filter (a session,
    /// a role, a time range, metadata); answers how many there were.
    public enum Forget: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var user: String
            public var filter: MemoryFilter
            /// Also the user's memories whose sources name one of those forgotten.
            public var withDerived: Bool

            public init(user: String, filter: MemoryFilter = MemoryFilter(), withDerived: Bool = false) {
                self.user = user
                self.filter = filter
                self.withDerived = withDerived
            }
        }

        public static let name = "forget"
        public static let requestFields = [FieldSpec.user] + FieldSpec.filter + [FieldSpec.withDerived]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writer.field("user")
            writer.string(arguments.user)
            writer.memoryFilter(arguments.filter)
            writeWithDerived(arguments.withDerived, to: &writer)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            return Arguments(
                user: try request.user(), filter: try request.memoryFilter(),
                withDerived: try request.optionalBool("with_derived") ?? false)
        }
        /// How many memories went, and the receipt.
        public struct Answer: Sendable, Equatable {
            public var deleted: Int
            public var receipt: Receipt

            public init(deleted: Int, receipt: Receipt) {
                self.deleted = deleted
                self.receipt = receipt
            }
        }

        /// What a forget removed, place by place, and what a look afterwards found left of it
        /// (`left`, every count 0 when `verified`).
        public struct Receipt: Sendable, Equatable {
            /// The places counted, in the order the answer names them.
            public static let places = [
                "memories", "keyword_rows", "window_rows", "source_rows", "vectors", "graph_nodes", "cache_entries",
            ]
            /// Removed, by place (`places`).
            public var removed: [String: Int]
            /// Found afterwards, by place (`places`, and `records`).
            public var left: [String: Int]

            public init(removed: [String: Int], left: [String: Int]) {
                self.removed = removed
                self.left = left
            }

            public var verified: Bool { left.values.allSatisfy { $0 == 0 } }
        }

        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writeDeleted(answer.deleted, to: &writer)
            writer.field("receipt")
            writer.raw(UInt8(ascii: "{"))
            for (i, place) in Receipt.places.enumerated() {
                if i > 0 { writer.raw(UInt8(ascii: ",")) }
                writer.key(place)
                writer.int(Int64(answer.receipt.removed[place] ?? 0))
            }
            writer.field("left")
            writer.raw(UInt8(ascii: "{"))
            for (i, place) in (Receipt.places + ["records"]).enumerated() {
                if i > 0 { writer.raw(UInt8(ascii: ",")) }
                writer.key(place)
                writer.int(Int64(answer.receipt.left[place] ?? 0))
            }
            writer.raw(UInt8(ascii: "}"))
            writer.field("verified")
            writer.bool(answer.receipt.verified)
            writer.raw(UInt8(ascii: "}"))
        }

        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            let receipt = try answer.required("receipt", as: "object", \.objectValue)
            let left = try receipt.required("left", as: "object", \.objectValue)
            func counts(_ object: JSONObject, _ places: [String]) throws(ProtocolError) -> [String: Int] {
                var counts: [String: Int] = [:]
                for place in places { counts[place] = Int(try object.optionalInt(place) ?? 0) }
                return counts
            }
            return Answer(
                deleted: try readDeleted(answer),
                receipt: Receipt(
                    removed: try counts(receipt, Receipt.places), left: try counts(left, Receipt.places + ["records"])))
        }
    }

    /// `stats`: counts and sizes of the space and of the embedding cache.
    public enum Stats: WireOperation {
        public static let name = "stats"
        public static func encode(answer: ServerStats, to writer: inout JSONWriter) { answer.write(to: &writer) }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> ServerStats {
            try ServerStats(json: answer)
        }
    }

    /// `embed`: the server model's embeddings of texts, in order.
    public enum Embed: WireOperation {
        public struct Answer: Sendable, Equatable {
            public var model: String
            public var vectors: [[Float]]
            /// The texts longer than the model reads.
            public var truncated: [Truncation]

            public init(model: String, vectors: [[Float]], truncated: [Truncation] = []) {
                self.model = model
                self.vectors = vectors
                self.truncated = truncated
            }
        }

        public static let name = "embed"
        public static let requestFields = [
            FieldSpec(
                "texts", .strings, required: true, minimum: 1, maximum: Double(Limits.maximumEmbedTexts),
                "the texts to embed")
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ texts: [String], to writer: inout JSONWriter) {
            writer.field("texts")
            writer.array(count: texts.count) { $0.string(texts[$1]) }
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> [String] {
            try request.requireKnownFields(fields)
            let values = try request.required("texts", as: "array", \.arrayValue)
            guard (1...Limits.maximumEmbedTexts).contains(values.count) else {
                throw ProtocolError(
                    .invalidValue, "texts must hold 1 to \(Limits.maximumEmbedTexts) strings, not \(values.count)")
            }
            return try values.enumerated().map { (i, value) throws(ProtocolError) in
                guard let text = value.stringValue else {
                    throw ProtocolError(.wrongType, "texts[\(i)] must be a string, not \(value.typeName)")
                }
                return text
            }
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("model")
            writer.string(answer.model)
            writer.field("vectors")
            writer.array(count: answer.vectors.count) { $0.vector(answer.vectors[$1]) }
            writer.truncations(answer.truncated)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            let vectors = try answer.required("vectors", as: "array", \.arrayValue)
            return Answer(
                model: try answer.required("model", as: "string", \.stringValue),
                vectors: try vectors.enumerated().map { (i, value) throws(ProtocolError) in
                    guard let numbers = value.arrayValue else {
                        throw ProtocolError(.wrongType, "vectors[\(i)] must be an array, not \(value.typeName)")
                    }
                    return try JSONObject([("vector", .array(numbers))]).vector()
                }, truncated: try answer.truncations())
        }
    }

    static func writeRef(_ memory: MemoryRef, to writer: inout JSONWriter) {
        writer.field("user")
        writer.string(memory.user)
        writer.field("id")
        writer.string(memory.id)
    }

    static func readRef(_ request: JSONObject) throws(ProtocolError) -> MemoryRef {
        MemoryRef(user: try request.user(), id: try request.memoryID())
    }

    private static func writeWithDerived(_ withDerived: Bool, to writer: inout JSONWriter) {
        guard withDerived else { return }
        writer.field("with_derived")
        writer.bool(true)
    }

    private static func writeModel(_ model: String?, to writer: inout JSONWriter) {
        guard let model else { return }
        writer.field("model")
        writer.string(model)
    }

    private static func writeDeleted(_ count: Int, to writer: inout JSONWriter) {
        writer.field("deleted")
        writer.int(Int64(count))
    }

    private static func readDeleted(_ answer: JSONObject) throws(ProtocolError) -> Int {
        guard let count = try answer.optionalInt("deleted") else {
            throw ProtocolError(.missingField, "missing field 'deleted'")
        }
        return Int(count)
    }
}
