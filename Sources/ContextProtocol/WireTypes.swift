import ContextModel

/// What `hello` reports about a server.
public struct ServerHello: Sendable, Equatable {
    public var server: String
    public var version: String
    public var protocolVersion: Int
    public var dimension: Int?
    public var metric: Metric
    public var index: String
    public var blas: String
    /// The instruction set of the distance kernels the server chose ("avx2+fma+f16c" or "baseline"),
    /// and the form of its int8 scan (", int8 avx512-vnni").
    public var kernels: String
    /// The server's processor, as its system names it.
    public var cpu: String
    /// The memories of the whole space: told to an admin (or on a server without keys) only,
    /// nil for other keys, whose users are a part of it.
    public var memories: Int?
    /// The embedding model the server runs, or nil when it has none (text requests then fail
    /// with `no_embedder`).
    public var embedder: String?

    public init(
        server: String, version: String, protocolVersion: Int, dimension: Int?, metric: Metric, index: String,
        blas: String, kernels: String, cpu: String, memories: Int?, embedder: String?
    ) {
        self.server = server
        self.version = version
        self.protocolVersion = protocolVersion
        self.dimension = dimension
        self.metric = metric
        self.index = index
        self.blas = blas
        self.kernels = kernels
        self.cpu = cpu
        self.memories = memories
        self.embedder = embedder
    }

    /// Writes the `hello` fields.
    public func write(to writer: inout JSONWriter) {
        writer.field("server")
        writer.string(server)
        writer.field("version")
        writer.string(version)
        writer.field("protocol")
        writer.int(Int64(protocolVersion))
        writer.field("dimension")
        if let dimension { writer.int(Int64(dimension)) } else { writer.null() }
        writer.field("metric")
        writer.string(metric.rawValue)
        writer.field("index")
        writer.string(index)
        writer.field("blas")
        writer.string(blas)
        writer.field("kernels")
        writer.string(kernels)
        writer.field("cpu")
        writer.string(cpu)
        writer.field("memories")
        if let memories { writer.int(Int64(memories)) } else { writer.null() }
        writer.field("embedder")
        if let embedder { writer.string(embedder) } else { writer.null() }
    }

    /// Reads a `hello` response.
    public init(json: JSONObject) throws(ProtocolError) {
        let metricName = try json.required("metric", as: "string", \.stringValue)
        guard let metric = Metric(rawValue: metricName) else {
            throw ProtocolError(.invalidValue, "unknown metric '\(metricName)'")
        }
        self.init(
            server: try json.required("server", as: "string", \.stringValue),
            version: try json.required("version", as: "string", \.stringValue),
            protocolVersion: Int(try json.optionalInt("protocol") ?? 0),
            dimension: try json.optionalInt("dimension").map { Int($0) }, metric: metric,
            index: try json.required("index", as: "string", \.stringValue),
            blas: try json.required("blas", as: "string", \.stringValue),
            kernels: try json.required("kernels", as: "string", \.stringValue),
            cpu: try json.required("cpu", as: "string", \.stringValue),
            memories: try json.optionalInt("memories").map { Int($0) }, embedder: try json.optionalString("embedder"))
    }
}

/// What `stats` reports: the space's counts and sizes and the embedding cache's counters.
public struct ServerStats: Sendable, Equatable {
    public var store: StoreStats
    public var embeddingCache: CacheCounters
    /// The answers of `search` and `prompt` kept for repeated requests.
    public var resultCache: CacheCounters

    public init(store: StoreStats, embeddingCache: CacheCounters, resultCache: CacheCounters = CacheCounters()) {
        self.store = store
        self.embeddingCache = embeddingCache
        self.resultCache = resultCache
    }

    /// Writes the `stats` fields.
    public func write(to writer: inout JSONWriter) {
        store.write(to: &writer)
        embeddingCache.write(as: "embedding_cache", to: &writer)
        resultCache.write(as: "result_cache", to: &writer)
    }

    /// Reads a `stats` response.
    public init(json: JSONObject) throws(ProtocolError) {
        self.init(
            store: try StoreStats(json: json),
            embeddingCache: try CacheCounters(json: json, as: "embedding_cache"),
            resultCache: try CacheCounters(json: json, as: "result_cache"))
    }
}

/// The embedding cache's counters (all zero on a server without a model).
public struct CacheCounters: Sendable, Equatable {
    public var hits: Int
    public var misses: Int
    public var entries: Int
    public var bytes: Int

    public init(hits: Int = 0, misses: Int = 0, entries: Int = 0, bytes: Int = 0) {
        self.hits = hits
        self.misses = misses
        self.entries = entries
        self.bytes = bytes
    }

    private var fields: [(String, Int)] {
        [("hits", hits), ("misses", misses), ("entries", entries), ("bytes", bytes)]
    }

    /// Writes `<name>_hits`, `_misses`, `_entries` and `_bytes`.
    func write(as name: String, to writer: inout JSONWriter) {
        for (field, value) in fields {
            writer.field(name + "_" + field)
            writer.int(Int64(value))
        }
    }

    /// Reads what `write(as:to:)` wrote (absent fields: 0).
    init(json: JSONObject, as name: String) throws(ProtocolError) {
        func read(_ field: String) throws(ProtocolError) -> Int { Int(try json.optionalInt(name + "_" + field) ?? 0) }
        self.init(
            hits: try read("hits"), misses: try read("misses"), entries: try read("entries"), bytes: try read("bytes"))
    }
}

extension StoreStats {
    /// Writes the space's `stats` fields.
    public func write(to writer: inout JSONWriter) {
        writer.field("memories")
        writer.int(Int64(memories))
        writer.field("users")
        writer.int(Int64(users))
        writer.field("dimension")
        if let dimension { writer.int(Int64(dimension)) } else { writer.null() }
        writer.field("metric")
        writer.string(metric.rawValue)
        writer.field("index")
        writer.string(index)
        writer.field("flat_storage")
        writer.string(flatStorage)
        writer.field("bytes_on_disk")
        writer.int(bytesOnDisk)
        writer.field("bytes_in_memory")
        writer.int(Int64(bytesInMemory))
        writer.field("expired")
        writer.int(Int64(expired))
        writer.field("purged")
        writer.int(purged)
        writer.field("duplicates")
        writer.int(duplicates)
    }

    /// Reads a `stats` response.
    public init(json: JSONObject) throws(ProtocolError) {
        let metricName = try json.required("metric", as: "string", \.stringValue)
        guard let metric = Metric(rawValue: metricName) else {
            throw ProtocolError(.invalidValue, "unknown metric '\(metricName)'")
        }
        self.init(
            memories: Int(try json.optionalInt("memories") ?? 0), users: Int(try json.optionalInt("users") ?? 0),
            dimension: try json.optionalInt("dimension").map { Int($0) }, metric: metric,
            index: try json.optionalString("index") ?? "flat",
            flatStorage: try json.optionalString("flat_storage") ?? "float32",
            bytesOnDisk: try json.optionalInt("bytes_on_disk") ?? 0,
            bytesInMemory: Int(try json.optionalInt("bytes_in_memory") ?? 0),
            expired: Int(try json.optionalInt("expired") ?? 0), purged: try json.optionalInt("purged") ?? 0,
            duplicates: try json.optionalInt("duplicates") ?? 0)
    }
}

extension Memory {
    /// Reads a memory object as written by `JSONWriter.memory(_:score:)`.
    public init(json: JSONObject) throws(ProtocolError) {
        var vector: [Float] = []
        if let value = json["vector"], value != .null { vector = try json.vector() }
        let metadata = json["metadata"].map { JSONWriter.serialize($0) } ?? "{}"
        self.init(
            id: try json.required("id", as: "string", \.stringValue), user: try json.user(),
            session: try json.optionalString("session"), role: try json.role(),
            speaker: try json.optionalString("speaker"), text: try json.required("text", as: "string", \.stringValue),
            createdAt: try json.optionalInt("created_at") ?? 0, metadata: metadata, vector: vector,
            expiresAt: try json.optionalInt("expires_at"),
            validity: Validity(
                from: try json.optionalInt("valid_from"), to: try json.optionalInt("valid_to"),
                supersedes: try json.optionalString("supersedes"),
                supersededBy: try json.optionalString("superseded_by")),
            sources: json["sources"] == nil ? [] : try json.strings("sources"))
    }
}

extension ScoredMemory {
    /// Writes one element of a search's `hits`: the memory, its score, `explain` when it has an
    /// explanation, `context` when it has turns around it.
    func write(to writer: inout JSONWriter) {
        writer.memory(memory, score: score) { writer in
            if let explanation {
                writer.field("explain")
                explanation.write(to: &writer)
            }
            if !context.isEmpty {
                writer.field("context")
                writer.array(count: context.count) { $0.memory(context[$1]) }
            }
        }
    }

    /// Reads one element of a search's `hits`.
    public init(json: JSONObject) throws(ProtocolError) {
        guard let score = json["score"]?.numberValue else {
            throw ProtocolError(.missingField, "hit without a numeric 'score'")
        }
        var explanation: Explanation?
        if let value = json["explain"], value != .null {
            guard let object = value.objectValue else {
                throw ProtocolError(.wrongType, "'explain' must be an object, not \(value.typeName)")
            }
            explanation = try Explanation(json: object)
        }
        var context: [Memory] = []
        if let value = json["context"], value != .null {
            guard case .array(let elements) = value else {
                throw ProtocolError(.wrongType, "'context' must be an array, not \(value.typeName)")
            }
            for element in elements {
                guard let object = element.objectValue else {
                    throw ProtocolError(.wrongType, "a context turn must be an object, not \(element.typeName)")
                }
                context.append(try Memory(json: object))
            }
        }
        self.init(memory: try Memory(json: json), score: Float(score), explanation: explanation, context: context)
    }
}

extension Explanation {
    /// `{"neighbours","vector":{"score","rank"}|null,"keyword":{"score","rank"}|null,"recency",
    /// "session","speaker"}`, and `"time":{"from","to","phrase"}` when the hit was said in the span
    /// the query names.
    func write(to writer: inout JSONWriter) {
        func side(_ name: String, _ score: Float?, _ rank: Int?) {
            writer.field(name)
            guard let score, let rank else { return writer.null() }
            writer.raw("{\"score\":")
            writer.number(score)
            writer.field("rank")
            writer.int(Int64(rank))
            writer.raw(UInt8(ascii: "}"))
        }
        writer.raw(UInt8(ascii: "{"))
        writer.key("neighbours")
        if let neighbours { writer.number(neighbours) } else { writer.null() }
        side("vector", vectorScore, vectorRank)
        side("keyword", keywordScore, keywordRank)
        writer.field("recency")
        if let recency { writer.number(recency) } else { writer.null() }
        writer.field("session")
        if let session { writer.number(session) } else { writer.null() }
        writer.field("speaker")
        if let speaker { writer.number(speaker) } else { writer.null() }
        if let time {
            writer.field("time")
            writer.raw("{\"from\":")
            writer.int(time.from)
            writer.field("to")
            writer.int(time.to)
            writer.field("phrase")
            writer.string(time.phrase)
            writer.raw(UInt8(ascii: "}"))
        }
        writer.raw(UInt8(ascii: "}"))
    }

    init(json: JSONObject) throws(ProtocolError) {
        func side(_ name: String) throws(ProtocolError) -> (Float, Int)? {
            guard let value = json[name], value != .null else { return nil }
            guard let object = value.objectValue, let score = object["score"]?.numberValue,
                let rank = try object.optionalInt("rank")
            else { throw ProtocolError(.wrongType, "explain.\(name) must be {\"score\", \"rank\"}") }
            return (Float(score), Int(rank))
        }
        let vector = try side("vector")
        let keyword = try side("keyword")
        self.init(
            vectorScore: vector?.0, vectorRank: vector?.1, keywordScore: keyword?.0, keywordRank: keyword?.1,
            neighbours: json["neighbours"]?.numberValue.map { Float($0) },
            recency: json["recency"]?.numberValue.map { Float($0) },
            session: json["session"]?.numberValue.map { Float($0) },
            speaker: json["speaker"]?.numberValue.map { Float($0) },
            time: try json["time"]?.objectValue.map { (time) throws(ProtocolError) in
                TimeWindow(
                    from: try time.required("from", as: "integer", \.integerValue),
                    to: try time.required("to", as: "integer", \.integerValue),
                    phrase: try time.required("phrase", as: "string", \.stringValue), relative: false)
            })
    }
}

extension NewMemory {
    /// Writes the fields of an `add` request (or of one `add_batch` item), without braces,
    /// starting with `"user":`.
    public func writeFields(to writer: inout JSONWriter) {
        writer.key("user")
        writer.string(user)
        if let id {
            writer.field("id")
            writer.string(id)
        }
        if let session {
            writer.field("session")
            writer.string(session)
        }
        if let role {
            writer.field("role")
            writer.string(role.rawValue)
        }
        if let speaker {
            writer.field("speaker")
            writer.string(speaker)
        }
        writer.field("text")
        writer.string(text)
        if let createdAt {
            writer.field("created_at")
            writer.int(createdAt)
        }
        writer.field("metadata")
        writer.raw(metadata)
        if let ttl {
            writer.field("ttl")
            writer.int(ttl)
        }
        if let expiresAt {
            writer.field("expires_at")
            writer.int(expiresAt)
        }
        if let validFrom {
            writer.field("valid_from")
            writer.int(validFrom)
        }
        if let supersedes {
            writer.field("supersedes")
            writer.string(supersedes)
        }
        if !sources.isEmpty {
            writer.field("sources")
            writer.array(count: sources.count) { $0.string(sources[$1]) }
        }
        if helped != 0 || notHelped != 0 {
            writer.field("helped")
            writer.int(helped)
            writer.field("not_helped")
            writer.int(notHelped)
        }
        if let vector {
            // Base64 float32: a quarter of the text, and no float formatting or parsing.
            writer.field("vector")
            writer.string(Base64.encode(vector))
        }
    }
}

extension NewMemory {
    /// Reads a memory given as the fields of an `add` request (as in an import file). Without
    /// `vector`, the vector is nil for an embedder to fill.
    public init(json: JSONObject) throws(ProtocolError) {
        self = try json.newMemory()
    }
}

/// A text longer than the server's model reads: of its `tokens`, the vectors cover the first
/// `kept` (for `add` and `add_batch`, all its windows; for `embed`, the one vector), so what the
/// rest says is not found by a search (split such a text into several memories).
public struct Truncation: Sendable, Equatable {
    /// The text's position in its request (0 for `add`).
    public var index: Int
    public var tokens: Int
    public var kept: Int

    public init(index: Int, tokens: Int, kept: Int) {
        self.index = index
        self.tokens = tokens
        self.kept = kept
    }
}

extension JSONWriter {
    /// Writes `truncated` as an array of `{"index","tokens","kept"}`.
    mutating func truncations(_ list: [Truncation]) {
        field("truncated")
        array(count: list.count) { writer, i in
            writer.raw("{\"index\":")
            writer.int(Int64(list[i].index))
            writer.field("tokens")
            writer.int(Int64(list[i].tokens))
            writer.field("kept")
            writer.int(Int64(list[i].kept))
            writer.raw(UInt8(ascii: "}"))
        }
    }
}

extension JSONObject {
    /// `truncated`, as `JSONWriter.truncations` writes it; empty when absent.
    func truncations() throws(ProtocolError) -> [Truncation] {
        guard let values = self["truncated"], values != .null else { return [] }
        guard case .array(let elements) = values else {
            throw ProtocolError(.wrongType, "'truncated' must be an array, not \(values.typeName)")
        }
        return try elements.map { (value) throws(ProtocolError) in
            guard let object = value.objectValue else {
                throw ProtocolError(.wrongType, "an element of 'truncated' must be an object, not \(value.typeName)")
            }
            return Truncation(
                index: Int(try object.required("index", as: "integer", \.integerValue)),
                tokens: Int(try object.required("tokens", as: "integer", \.integerValue)),
                kept: Int(try object.required("kept", as: "integer", \.integerValue)))
        }
    }
}
