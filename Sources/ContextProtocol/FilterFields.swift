import ContextModel

/// The filter fields that `search`, `list` and `forget` share: `session`, `role`, `since`,
/// `until`, and (`list`, `forget`) `where` on top-level metadata keys.
/// (Their specs: `FieldSpec.filter`.)
extension JSONObject {
    /// The fields of a `RowFilter`.
    func rowFilter() throws(ProtocolError) -> RowFilter {
        RowFilter(
            session: try optionalString("session"), role: try role(), since: try optionalTime("since"),
            until: try optionalTime("until"), speaker: try optionalString("speaker"))
    }

    /// The row fields and `where`.
    func memoryFilter() throws(ProtocolError) -> MemoryFilter {
        MemoryFilter(rows: try rowFilter(), metadata: try metadataConditions())
    }

    /// `where`: an object from metadata key to a value (equality), `{"in": [values]}`, or bounds
    /// `{"gt"|"gte"|"lt"|"lte": number, ...}`.
    private func metadataConditions() throws(ProtocolError) -> [MetadataCondition] {
        guard let value = self["where"], value != .null else { return [] }
        guard case .object(let keys) = value else {
            throw ProtocolError(.wrongType, "'where' must be an object of metadata keys, not \(value.typeName)")
        }
        guard keys.fields.count <= Limits.maximumWhereKeys else {
            throw ProtocolError(
                .invalidValue, "'where' names \(keys.fields.count) keys; the most is \(Limits.maximumWhereKeys)")
        }
        var conditions: [MetadataCondition] = []
        var values = 0
        for (key, test) in keys.fields {
            let condition = MetadataCondition(key: key, test: try Self.metadataTest(key, test))
            if case .oneOf(let options) = condition.test { values += options.count }
            guard values <= Limits.maximumIds else {
                throw ProtocolError(
                    .invalidValue, "'where' lists more than \(Limits.maximumIds) values in all its 'in' tests")
            }
            conditions.append(condition)
        }
        return conditions
    }

    private static let rangeOperators = ["gt", "gte", "lt", "lte"]

    private static func metadataTest(_ key: String, _ test: JSONValue) throws(ProtocolError) -> MetadataCondition.Test {
        switch test {
        case .array:
            throw ProtocolError(.wrongType, "where.\(key): to match one of several values write {\"in\": [...]}")
        case .object(let operators):
            guard !operators.fields.isEmpty else {
                throw ProtocolError(.invalidValue, "where.\(key) names no test; use in, gt, gte, lt or lte")
            }
            if let values = operators["in"] {
                guard operators.fields.count == 1 else {
                    throw ProtocolError(.invalidValue, "where.\(key): 'in' cannot be combined with other tests")
                }
                guard case .array(let elements) = values else {
                    throw ProtocolError(.wrongType, "where.\(key).in must be an array, not \(values.typeName)")
                }
                guard elements.count <= Limits.maximumIds else {
                    throw ProtocolError(
                        .invalidValue,
                        "where.\(key).in holds \(elements.count) values; the most is \(Limits.maximumIds)")
                }
                var options: [MetadataValue] = []
                for element in elements { options.append(try scalar(element, at: "where.\(key).in")) }
                return .oneOf(options)
            }
            var bounds: [String: MetadataValue] = [:]
            for (name, bound) in operators.fields {
                guard rangeOperators.contains(name) else {
                    throw ProtocolError(
                        .unknownField, "unknown test '\(name)' in where.\(key); use in, gt, gte, lt or lte")
                }
                let number = try scalar(bound, at: "where.\(key).\(name)")
                guard number.isNumber else {
                    throw ProtocolError(.wrongType, "where.\(key).\(name) must be a number, not \(bound.typeName)")
                }
                bounds[name] = number
            }
            return .range(
                greaterThan: bounds["gt"], atLeast: bounds["gte"], lessThan: bounds["lt"], atMost: bounds["lte"])
        default:
            return .equals(try scalar(test, at: "where.\(key)"))
        }
    }

    private static func scalar(_ value: JSONValue, at path: String) throws(ProtocolError) -> MetadataValue {
        switch value {
        case .string(let text): return .string(text)
        case .integer(let integer): return .integer(integer)
        case .number(let number):
            guard number.isFinite else { throw ProtocolError(.nonFinite, "\(path) is not a finite number") }
            return .double(number)
        case .bool(let flag): return .bool(flag)
        case .null: return .null
        case .array, .object:
            throw ProtocolError(.wrongType, "\(path) must be a string, number, boolean or null, not \(value.typeName)")
        }
    }
}

extension JSONWriter {
    /// Writes the fields of a `RowFilter` that are set, each preceded by a comma.
    mutating func rowFilter(_ filter: RowFilter) {
        if let session = filter.session {
            field("session")
            string(session)
        }
        if let role = filter.role {
            field("role")
            string(role.rawValue)
        }
        if let speaker = filter.speaker {
            field("speaker")
            string(speaker)
        }
        if let since = filter.since {
            field("since")
            int(since)
        }
        if let until = filter.until {
            field("until")
            int(until)
        }
    }

    /// Writes a `MemoryFilter`'s fields, `where` when it has metadata conditions.
    mutating func memoryFilter(_ filter: MemoryFilter) {
        rowFilter(filter.rows)
        guard !filter.metadata.isEmpty else { return }
        field("where")
        raw(UInt8(ascii: "{"))
        for (i, condition) in filter.metadata.enumerated() {
            if i > 0 { raw(UInt8(ascii: ",")) }
            key(condition.key)
            switch condition.test {
            case .equals(let value):
                metadataValue(value)
            case .oneOf(let values):
                raw("{\"in\":")
                array(count: values.count) { $0.metadataValue(values[$1]) }
                raw(UInt8(ascii: "}"))
            case .range(let greaterThan, let atLeast, let lessThan, let atMost):
                raw(UInt8(ascii: "{"))
                var first = true
                for (name, bound) in [("gt", greaterThan), ("gte", atLeast), ("lt", lessThan), ("lte", atMost)] {
                    guard let bound else { continue }
                    if !first { raw(UInt8(ascii: ",")) }
                    first = false
                    key(name)
                    metadataValue(bound)
                }
                raw(UInt8(ascii: "}"))
            }
        }
        raw(UInt8(ascii: "}"))
    }

    mutating func metadataValue(_ value: MetadataValue) {
        switch value {
        case .string(let text): string(text)
        case .integer(let integer): int(integer)
        case .double(let double): number(double)
        case .bool(let flag): bool(flag)
        case .null: null()
        }
    }
}
