import ContextModel

/// Limits the protocol enforces on every request.
public enum Limits {
    /// The default cap on one request line, in bytes.
    public static let defaultMaximumLineBytes = 8 * 1024 * 1024
    /// The most texts one `embed` request may carry.
    public static let maximumEmbedTexts = 256
    /// The most items one `add_batch` may carry: each becomes objects and queued work, so a
    /// line of minimal items must not become hundreds of thousands of them.
    public static let maximumBatchItems = 10_000
    /// The most ids one `get` may name (and values one `where` ... `in` may list).
    public static let maximumIds = 1000
    /// The most metadata keys one `where` may test.
    public static let maximumWhereKeys = 64
    /// The most sessions one `sessions` answer may list.
    public static let maximumSessions = 10_000
    /// The most users one `users` answer may list.
    public static let maximumUsers = 1000
}

// MARK: - Reading fields

extension JSONValue {
    public var stringValue: String? { if case .string(let value) = self { value } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let value) = self { value } else { nil } }
    public var objectValue: JSONObject? { if case .object(let value) = self { value } else { nil } }
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
    /// The fields every request may carry besides its op's own: `op`, `rid` (echoed in the
    /// answer), and for a cluster `min_seq` (the sequence of its user's range it must see) and
    /// `forwarded_by` (the node that forwarded it; see PROTOCOL.md).
    public static let envelopeFields: Set<String> = ["op", "rid", "min_seq", "forwarded_by"]

    /// Refuses a field outside `known` (and `envelopeFields` when `envelope`): a misspelt filter
    /// must not be ignored.
    /// - Throws: `unknown_field`, naming the first such field.
    public func requireKnownFields(_ known: Set<String>, envelope: Bool = true) throws(ProtocolError) {
        for (key, _) in fields where !known.contains(key) && !(envelope && Self.envelopeFields.contains(key)) {
            let accepted =
                known.isEmpty ? "this op takes none" : "this accepts \(known.sorted().joined(separator: ", "))"
            throw ProtocolError(.unknownField, "unknown field '\(key)'; \(accepted)")
        }
    }

    /// A required field of one JSON type.
    public func required<T>(_ key: String, as type: String, _ extract: (JSONValue) -> T?) throws(ProtocolError) -> T {
        guard let value = self[key], value != .null else {
            throw ProtocolError(.missingField, "missing field '\(key)'")
        }
        guard let typed = extract(value) else {
            let article = type.first.map { "aeiou".contains($0) } == true ? "an" : "a"
            throw ProtocolError(.wrongType, "'\(key)' must be \(article) \(type), not \(value.typeName)")
        }
        return typed
    }

    /// An optional string; JSON null counts as absent.
    public func optionalString(_ key: String) throws(ProtocolError) -> String? {
        guard let value = self[key], value != .null else { return nil }
        guard let text = value.stringValue else {
            throw ProtocolError(.wrongType, "'\(key)' must be a string, not \(value.typeName)")
        }
        return text
    }

    /// An optional boolean; JSON null counts as absent.
    public func optionalBool(_ key: String) throws(ProtocolError) -> Bool? {
        guard let value = self[key], value != .null else { return nil }
        guard case .bool(let flag) = value else {
            throw ProtocolError(.wrongType, "'\(key)' must be a boolean, not \(value.typeName)")
        }
        return flag
    }

    /// An optional integer (a JSON number with no fraction that fits in 64 bits).
    public func optionalInt(_ key: String) throws(ProtocolError) -> Int64? {
        guard let value = self[key], value != .null else { return nil }
        guard let number = value.numberValue else {
            throw ProtocolError(.wrongType, "'\(key)' must be an integer, not \(value.typeName)")
        }
        guard let integer = value.integerValue else {
            throw ProtocolError(.wrongType, "'\(key)' must be a 64-bit integer, not \(number)")
        }
        return integer
    }

    /// An optional time: unix milliseconds, or an ISO 8601 text (`2023-05-08T13:56:00Z`, see
    /// `ISO8601`); JSON null counts as absent.
    public func optionalTime(_ key: String) throws(ProtocolError) -> Int64? {
        guard let value = self[key], value != .null else { return nil }
        if case .string(let text) = value {
            guard let milliseconds = ISO8601.milliseconds(text), TimeRange.contains(milliseconds) else {
                throw ProtocolError(
                    .invalidValue,
                    "'\(key)' must be unix milliseconds or an ISO 8601 time like 2023-05-08T13:56:00Z, not '\(text)'")
            }
            return milliseconds
        }
        guard value.numberValue != nil else {
            throw ProtocolError(
                .wrongType, "'\(key)' must be unix milliseconds or an ISO 8601 string, not \(value.typeName)")
        }
        let milliseconds = try optionalInt(key)!
        guard TimeRange.contains(milliseconds) else {
            throw ProtocolError(
                .invalidValue,
                "'\(key)' must be a time in the years 0001 to 9999 (unix milliseconds \(TimeRange.milliseconds)), not \(milliseconds)"
            )
        }
        return milliseconds
    }

    /// A required array of strings.
    public func strings(_ key: String) throws(ProtocolError) -> [String] {
        try required(key, as: "array of strings", \.arrayValue).enumerated().map { (i, value) throws(ProtocolError) in
            guard let text = value.stringValue else {
                throw ProtocolError(.wrongType, "\(key)[\(i)] must be a string, not \(value.typeName)")
            }
            return text
        }
    }

    /// A required array of objects.
    func objects(_ key: String) throws(ProtocolError) -> [JSONObject] {
        try required(key, as: "array", \.arrayValue).enumerated().map { (i, value) throws(ProtocolError) in
            guard let object = value.objectValue else {
                throw ProtocolError(.wrongType, "\(key)[\(i)] must be an object, not \(value.typeName)")
            }
            return object
        }
    }

    /// A required array of memory objects (as `JSONWriter.memory` writes them).
    func memories(_ key: String) throws(ProtocolError) -> [Memory] {
        try required(key, as: "array", \.arrayValue).enumerated().map { (i, value) throws(ProtocolError) in
            guard let object = value.objectValue else {
                throw ProtocolError(.wrongType, "\(key)[\(i)] must be an object, not \(value.typeName)")
            }
            return try Memory(json: object)
        }
    }

    /// The tenant: a required, non-empty string.
    func user() throws(ProtocolError) -> String {
        let user = try required("user", as: "string", \.stringValue)
        guard !user.isEmpty else { throw ProtocolError(.invalidValue, "'user' must not be empty") }
        return user
    }

    /// `id`: a required, non-empty string (no memory has an empty id).
    func memoryID() throws(ProtocolError) -> String {
        let id = try required("id", as: "string", \.stringValue)
        guard !id.isEmpty else { throw ProtocolError(.invalidValue, "'id' must not be empty") }
        return id
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

    /// A vector of `count` components is one a space may hold: 1...`Metric.maximumDimension`.
    private static func checkLength(_ count: Int) throws(ProtocolError) {
        guard count > 0 else { throw ProtocolError(.wrongDimension, "'vector' must not be empty") }
        guard count <= Metric.maximumDimension else {
            throw ProtocolError(
                .wrongDimension, "'vector' may have at most \(Metric.maximumDimension) components, not \(count)")
        }
    }

    /// The `vector` field: a non-empty array of finite numbers, converted to float32 once, or a
    /// string holding the little-endian float32 bytes in base64 (a quarter of the size and far
    /// cheaper to read and write).
    func vector() throws(ProtocolError) -> [Float] {
        if case .string(let encoded) = self["vector"] {
            guard let vector = Base64.decodeFloats(encoded) else {
                throw ProtocolError(.wrongType, "'vector' as a string must be base64 of little-endian float32 values")
            }
            try Self.checkLength(vector.count)
            if let i = vector.firstIndex(where: { !$0.isFinite }) {
                throw ProtocolError(.nonFinite, "vector[\(i)] is not a finite float32 (\(vector[i]))")
            }
            return vector
        }
        let elements = try required("vector", as: "array of numbers", \.arrayValue)
        try Self.checkLength(elements.count)
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
    /// vector is nil: the server embeds `text`.
    func newMemory() throws(ProtocolError) -> NewMemory {
        let metadata = try metadata()
        let id = try optionalString("id")
        if let id, id.isEmpty { throw ProtocolError(.invalidValue, "'id' must not be empty") }
        return NewMemory(
            id: id, user: try user(), session: try optionalString("session"), role: try role(),
            speaker: try optionalString("speaker"),
            text: try required("text", as: "string", \.stringValue), createdAt: try optionalTime("created_at"),
            metadata: metadata, vector: self["vector"] == nil || self["vector"] == .null ? nil : try vector(),
            ttl: try ttl(), expiresAt: try expiresAt(), validFrom: try optionalTime("valid_from"),
            supersedes: try supersedes(),
            sources: try sources(), dedupe: try dedupe(), helped: try feedbackCount("helped"),
            notHelped: try feedbackCount("not_helped"))
    }

    /// `helped` or `not_helped`: 0 to `NewMemory.maximumFeedbackCount`; 0 when absent.
    private func feedbackCount(_ key: String) throws(ProtocolError) -> Int64 {
        guard let count = try optionalInt(key) else { return 0 }
        guard (0...NewMemory.maximumFeedbackCount).contains(count) else {
            throw ProtocolError(
                .invalidValue, "'\(key)' must be between 0 and \(NewMemory.maximumFeedbackCount), not \(count)")
        }
        return count
    }

    /// `dedupe`: `"exact"`, or `{"near": s}` with s above 0 and at most 1.
    private func dedupe() throws(ProtocolError) -> Dedupe? {
        let expected = #"'dedupe' must be "exact" or {"near": similarity}"#
        switch self["dedupe"] {
        case nil, .null?: return nil
        case .string(let name)?:
            guard name == "exact" else { throw ProtocolError(.invalidValue, "\(expected), not '\(name)'") }
            return .exact
        case .object(let object)?:
            try object.requireKnownFields(["near"], envelope: false)
            guard let value = object["near"], value != .null else {
                throw ProtocolError(.missingField, "missing field 'dedupe.near'")
            }
            guard let similarity = value.numberValue else {
                throw ProtocolError(.wrongType, "'dedupe.near' must be a number, not \(value.typeName)")
            }
            guard similarity > 0, similarity <= 1 else {
                throw ProtocolError(.invalidValue, "'dedupe.near' must be above 0 and at most 1, not \(similarity)")
            }
            // A similarity too small for a float is the smallest one (any memory not opposed).
            return .near(max(Float(similarity), .leastNonzeroMagnitude))
        case let value?:
            throw ProtocolError(.wrongType, "\(expected), not \(value.typeName)")
        }
    }

    /// `sources`: at most `NewMemory.maximumSources` strings.
    private func sources() throws(ProtocolError) -> [String] {
        guard let value = self["sources"], value != .null else { return [] }
        let sources = try strings("sources")
        guard sources.count <= NewMemory.maximumSources else {
            throw ProtocolError(
                .invalidValue, "'sources' holds at most \(NewMemory.maximumSources) references, not \(sources.count)")
        }
        return sources
    }

    /// `supersedes`: a non-empty id.
    private func supersedes() throws(ProtocolError) -> String? {
        guard let id = try optionalString("supersedes") else { return nil }
        guard !id.isEmpty else { throw ProtocolError(.invalidValue, "'supersedes' must not be empty") }
        return id
    }

    /// `as_of` and, when `all` is allowed, `include_superseded`: which memories a read sees.
    func validityView(allowingAll: Bool) throws(ProtocolError) -> ValidityView {
        let all = allowingAll ? try optionalBool("include_superseded") ?? false : false
        guard let time = try optionalTime("as_of") else { return all ? .all : .current }
        guard !all else {
            throw ProtocolError(
                .invalidValue, "'as_of' reads what held at one time; 'include_superseded' reads all: give one")
        }
        return .asOf(time)
    }

    /// `expires_at`: a time, not with `ttl`.
    private func expiresAt() throws(ProtocolError) -> Int64? {
        guard let time = try optionalTime("expires_at") else { return nil }
        guard self["ttl"] == nil || self["ttl"] == .null else {
            throw ProtocolError(.invalidValue, "give 'ttl' or 'expires_at', not both")
        }
        return time
    }

    /// `ttl`: whole seconds, 1 to `NewMemory.maximumTTL`.
    private func ttl() throws(ProtocolError) -> Int64? {
        guard let ttl = try optionalInt("ttl") else { return nil }
        guard (1...NewMemory.maximumTTL).contains(ttl) else {
            throw ProtocolError(.invalidValue, "ttl must be between 1 and \(NewMemory.maximumTTL) seconds, not \(ttl)")
        }
        return ttl
    }
}
