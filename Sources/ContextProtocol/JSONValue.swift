import ContextModel

/// A parsed JSON value. Objects keep their keys in order (`JSONParser` refuses a repeated key).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number with a fraction or an exponent, or an integer beyond 64 bits.
    case number(Double)
    /// A number written without fraction or exponent that fits in 64 bits: kept exact.
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The name of this value's JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number, .integer: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

extension JSONValue {
    /// Whether every number inside is finite. `NaN` and `Infinity` are read (so that a vector
    /// holding them is refused as non-finite) but cannot be written back as JSON.
    public var isFinite: Bool {
        switch self {
        case .number(let number): number.isFinite
        case .array(let elements): elements.allSatisfy(\.isFinite)
        case .object(let object): object.fields.allSatisfy(\.value.isFinite)
        case .null, .bool, .integer, .string: true
        }
    }
}

/// A JSON object: ordered (key, value) pairs. Lookups are linear, which beats hashing for the
/// handful of keys a request has.
public struct JSONObject: Sendable, Equatable {
    public var fields: [(key: String, value: JSONValue)]

    public init(_ fields: [(key: String, value: JSONValue)] = []) {
        self.fields = fields
    }

    /// The value under `key` (the last one when repeated), or nil.
    public subscript(key: String) -> JSONValue? {
        get {
            for field in fields.reversed() where field.key.bytewiseEquals(key) { return field.value }
            return nil
        }
        set {
            fields.removeAll { $0.key.bytewiseEquals(key) }
            if let newValue { fields.append((key, newValue)) }
        }
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(Int64(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(elements.map { (key: $0.0, value: $0.1) }))
    }
    public init(nilLiteral: ()) { self = .null }
}
