import MemoryStore
import VectorIndex

/// Limits the protocol enforces on every request.
public enum Limits {
    /// The default cap on one request line, in bytes.
    public static let defaultMaximumLineBytes = 8 * 1024 * 1024
    /// The largest `k` a search may ask for.
    public static let maximumK = 1000
    /// The `k` of a search that names none.
    public static let defaultK = 5
    /// The largest `ef` a search may ask for.
    public static let maximumEf = 10_000
    /// The most texts one `embed` request may carry.
    public static let maximumEmbedTexts = 256
}

/// A search as asked on the wire: by `vector`, or by `query` text for the server to embed.
public struct SearchRequest: Sendable, Equatable {
    public var user: String
    /// The query embedding; empty when the search is by `query` text and not yet embedded.
    public var vector: [Float]
    /// Text to embed as the query, when no vector is given.
    public var query: String?
    public var k: Int
    public var filter: RowFilter
    /// The graph search's candidate list; nil for the space's default.
    public var ef: Int?
    /// Scan exactly, never the graph.
    public var exact: Bool

    public init(
        user: String, vector: [Float] = [], query: String? = nil, k: Int = Limits.defaultK,
        filter: RowFilter = RowFilter(), ef: Int? = nil, exact: Bool = false
    ) {
        self.user = user
        self.vector = vector
        self.query = query
        self.k = k
        self.filter = filter
        self.ef = ef
        self.exact = exact
    }
}

/// One decoded request of protocol v1.
public enum Request: Sendable, Equatable {
    case ping
    case hello
    /// `model`, when given, names the model that produced the request's vectors.
    case add(NewMemory, model: String?)
    /// With `ifAbsent`, memories whose id exists are skipped rather than replaced.
    case addBatch([NewMemory], model: String?, ifAbsent: Bool)
    case search(SearchRequest)
    case get(id: String)
    case delete(id: String)
    case forget(user: String)
    case stats
    case embed([String])

    /// The operations, as a table: the wire name and how to read its fields.
    public static let operations: [String: @Sendable (JSONObject) throws(ProtocolError) -> Request] = [
        "ping": { _ in .ping },
        "hello": { _ in .hello },
        "add": { object throws(ProtocolError) in .add(try object.newMemory(), model: try object.optionalString("model"))
        },
        "add_batch": { object throws(ProtocolError) in
            let items = try object.required("items", as: "array", \.arrayValue)
            guard !items.isEmpty else { throw ProtocolError(.invalidValue, "items must not be empty") }
            var batch: [NewMemory] = []
            batch.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                guard case .object(let fields) = item else {
                    throw ProtocolError(.wrongType, "items[\(i)] must be an object, not \(item.typeName)")
                }
                do throws(ProtocolError) {
                    batch.append(try fields.newMemory())
                } catch {
                    throw ProtocolError(error.code, "items[\(i)]: \(error.message)")
                }
            }
            return .addBatch(
                batch, model: try object.optionalString("model"),
                ifAbsent: try object.optionalBool("if_absent") ?? false)
        },
        "search": { object throws(ProtocolError) in
            let k = try object.optionalInt("k") ?? Int64(Limits.defaultK)
            guard (1...Int64(Limits.maximumK)).contains(k) else {
                throw ProtocolError(.kOutOfRange, "k must be between 1 and \(Limits.maximumK), not \(k)")
            }
            let filter = RowFilter(
                session: try object.optionalString("session"), role: try object.role()?.rawValue,
                since: try object.optionalInt("since"), until: try object.optionalInt("until"))
            let user = try object.user()
            let ef = try object.optionalInt("ef")
            if let ef, !(1...Int64(Limits.maximumEf)).contains(ef) {
                throw ProtocolError(.invalidValue, "ef must be between 1 and \(Limits.maximumEf), not \(ef)")
            }
            var search = SearchRequest(
                user: user, k: Int(k), filter: filter, ef: ef.map { Int($0) },
                exact: try object.optionalBool("exact") ?? false)
            if object["vector"] == nil || object["vector"] == .null, let query = try object.optionalString("query") {
                search.query = query
            } else {
                search.vector = try object.vector()
            }
            return .search(search)
        },
        "get": { object throws(ProtocolError) in .get(id: try object.required("id", as: "string", \.stringValue)) },
        "delete": { object throws(ProtocolError) in .delete(id: try object.required("id", as: "string", \.stringValue))
        },
        "forget": { object throws(ProtocolError) in .forget(user: try object.user()) },
        "stats": { _ in .stats },
        "embed": { object throws(ProtocolError) in
            let values = try object.required("texts", as: "array", \.arrayValue)
            guard (1...Limits.maximumEmbedTexts).contains(values.count) else {
                throw ProtocolError(
                    .invalidValue, "texts must hold 1 to \(Limits.maximumEmbedTexts) strings, not \(values.count)")
            }
            return .embed(
                try values.enumerated().map { (i, value) throws(ProtocolError) in
                    guard case .string(let text) = value else {
                        throw ProtocolError(.wrongType, "texts[\(i)] must be a string, not \(value.typeName)")
                    }
                    return text
                })
        },
    ]

    /// Whether the request changes the space (and so is serialized with other writes).
    public var isWrite: Bool {
        switch self {
        case .add, .addBatch, .delete, .forget: true
        case .ping, .hello, .search, .get, .stats, .embed: false
        }
    }

    /// Whether the server must run its embedding model before it can answer: an `embed`, a
    /// search by `query`, or an add whose memories carry no vector.
    public var needsEmbedding: Bool {
        switch self {
        case .embed: true
        case .search(let search): search.vector.isEmpty
        case .add(let memory, _): memory.vector.isEmpty
        case .addBatch(let batch, _, _): batch.contains { $0.vector.isEmpty }
        case .ping, .hello, .get, .delete, .forget, .stats: false
        }
    }

    /// Decodes a request object. The caller has already taken `rid` from it.
    /// - Throws: `ProtocolError` with `missing_field`, `unknown_op`, `wrong_type`, ...
    public init(_ object: JSONObject) throws(ProtocolError) {
        let op = try object.required("op", as: "string", \.stringValue)
        guard let decode = Self.operations[op] else {
            throw ProtocolError(.unknownOp, "unknown op '\(op)'")
        }
        self = try decode(object)
    }
}

// MARK: - Reading fields

extension JSONValue {
    var stringValue: String? { if case .string(let value) = self { value } else { nil } }
    var arrayValue: [JSONValue]? { if case .array(let value) = self { value } else { nil } }
    var objectValue: JSONObject? { if case .object(let value) = self { value } else { nil } }
    /// A number of either kind as a Double (for integers beyond 2^53, the nearest one).
    public var numberValue: Double? {
        switch self {
        case .number(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }
    /// An integer: `.integer`, or a `.number` with no fraction inside 64 bits.
    public var integerValue: Int64? {
        switch self {
        case .integer(let value): value
        case .number(let value) where value.isFinite && value == value.rounded() && abs(value) < 9.2e18: Int64(value)
        default: nil
        }
    }
}

extension JSONObject {
    /// A required field of one JSON type.
    func required<T>(_ key: String, as type: String, _ extract: (JSONValue) -> T?) throws(ProtocolError) -> T {
        guard let value = self[key], value != .null else {
            throw ProtocolError(.missingField, "missing field '\(key)'")
        }
        guard let typed = extract(value) else {
            throw ProtocolError(.wrongType, "'\(key)' must be a \(type), not \(value.typeName)")
        }
        return typed
    }

    /// An optional string; JSON null counts as absent.
    func optionalString(_ key: String) throws(ProtocolError) -> String? {
        guard let value = self[key], value != .null else { return nil }
        guard let text = value.stringValue else {
            throw ProtocolError(.wrongType, "'\(key)' must be a string, not \(value.typeName)")
        }
        return text
    }

    /// An optional boolean; JSON null counts as absent.
    func optionalBool(_ key: String) throws(ProtocolError) -> Bool? {
        guard let value = self[key], value != .null else { return nil }
        guard case .bool(let flag) = value else {
            throw ProtocolError(.wrongType, "'\(key)' must be a boolean, not \(value.typeName)")
        }
        return flag
    }

    /// An optional integer (a JSON number with no fraction that fits in 64 bits).
    func optionalInt(_ key: String) throws(ProtocolError) -> Int64? {
        guard let value = self[key], value != .null else { return nil }
        guard let number = value.numberValue else {
            throw ProtocolError(.wrongType, "'\(key)' must be an integer, not \(value.typeName)")
        }
        guard let integer = value.integerValue else {
            throw ProtocolError(.wrongType, "'\(key)' must be a 64-bit integer, not \(number)")
        }
        return integer
    }

    /// The tenant: a required, non-empty string.
    func user() throws(ProtocolError) -> String {
        let user = try required("user", as: "string", \.stringValue)
        guard !user.isEmpty else { throw ProtocolError(.invalidValue, "'user' must not be empty") }
        return user
    }

    func role() throws(ProtocolError) -> Role? {
        guard let text = try optionalString("role") else { return nil }
        guard let role = Role(rawValue: text) else {
            throw ProtocolError(
                .invalidValue,
                "'role' must be one of \(Role.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
        }
        return role
    }

    /// The `vector` field: a non-empty array of finite numbers, converted to float32 once, or a
    /// string holding the little-endian float32 bytes in base64 (a quarter of the size and far
    /// cheaper to read and write).
    func vector() throws(ProtocolError) -> [Float] {
        if case .string(let encoded) = self["vector"] {
            guard let vector = Base64.decodeFloats(encoded) else {
                throw ProtocolError(.wrongType, "'vector' as a string must be base64 of little-endian float32 values")
            }
            guard !vector.isEmpty else { throw ProtocolError(.wrongDimension, "'vector' must not be empty") }
            if let i = vector.firstIndex(where: { !$0.isFinite }) {
                throw ProtocolError(.nonFinite, "vector[\(i)] is not a finite float32 (\(vector[i]))")
            }
            return vector
        }
        let elements = try required("vector", as: "array of numbers", \.arrayValue)
        guard !elements.isEmpty else { throw ProtocolError(.wrongDimension, "'vector' must not be empty") }
        var vector = [Float]()
        vector.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            guard let number = element.numberValue else {
                throw ProtocolError(.wrongType, "vector[\(i)] must be a number, not \(element.typeName)")
            }
            let value = Float(number)
            guard value.isFinite else {
                throw ProtocolError(.nonFinite, "vector[\(i)] is not a finite float32 (\(number))")
            }
            vector.append(value)
        }
        return vector
    }

    /// The fields of `add` (and of each item of `add_batch`). Without `vector`, the memory's
    /// vector is left empty for the server to embed `text`.
    func newMemory() throws(ProtocolError) -> NewMemory {
        var metadata = "{}"
        if let value = self["metadata"], value != .null {
            guard case .object = value else {
                throw ProtocolError(.wrongType, "'metadata' must be an object, not \(value.typeName)")
            }
            guard value.isFinite else {
                throw ProtocolError(.nonFinite, "'metadata' holds NaN or Infinity, which JSON cannot carry back")
            }
            metadata = JSONWriter.serialize(value)
        }
        let id = try optionalString("id")
        if let id, id.isEmpty { throw ProtocolError(.invalidValue, "'id' must not be empty") }
        return NewMemory(
            id: id, user: try user(), session: try optionalString("session"), role: try role(),
            text: try required("text", as: "string", \.stringValue), createdAt: try optionalInt("created_at"),
            metadata: metadata, vector: self["vector"] == nil || self["vector"] == .null ? [] : try vector())
    }
}
