import ContextModel

/// One field of a request, as data: what `contextstore spec` prints, what PROTOCOL.md's field
/// tables are generated from, and what the adversarial harness sends values at and past the
/// bounds of. Each op's codec declares its fields (`WireOperation.requestFields`) and takes the
/// names it accepts from them (`fields`), so the two cannot differ by a name; the harness checks
/// the rest (types, ranges, the error codes) against the codec.
public struct FieldSpec: Sendable, Equatable {
    /// What a field holds.
    public enum Kind: String, Sendable, CaseIterable {
        /// Any string (empty included).
        case string
        /// A non-empty string (`user`, `id`).
        case identifier
        /// A 64-bit integer in `minimum...maximum`.
        case integer
        /// A finite number in `minimum...maximum` (above `minimum` when `exclusiveMinimum`).
        case number
        case boolean
        /// Unix milliseconds or an ISO 8601 text, in the years 0001 to 9999.
        case time
        /// An array of numbers, or base64 of little-endian float32s.
        case vector
        /// A JSON object.
        case object
        /// One of `choices`.
        case choice
        /// An array of `minimum...maximum` strings.
        case strings
        /// An array of `minimum...maximum` memory objects (`add`'s fields).
        case memories
        /// `"exact"`, or `{"near": similarity}` (see `Dedupe`).
        case dedupe
    }

    public var name: String
    public var kind: Kind
    public var required: Bool
    public var minimum: Double?
    public var maximum: Double?
    public var exclusiveMinimum: Bool
    public var choices: [String]
    /// The value taken when the field is absent or null, as JSON text.
    public var defaultValue: String?
    /// The code of a value of the right type outside the range.
    public var outOfRange: ErrorCode
    public var summary: String

    public init(
        _ name: String, _ kind: Kind, required: Bool = false, minimum: Double? = nil, maximum: Double? = nil,
        exclusiveMinimum: Bool = false, choices: [String] = [], default defaultValue: String? = nil,
        outOfRange: ErrorCode = .invalidValue, _ summary: String
    ) {
        self.name = name
        self.kind = kind
        self.required = required
        self.minimum = minimum
        self.maximum = maximum
        self.exclusiveMinimum = exclusiveMinimum
        self.choices = choices
        self.defaultValue = defaultValue
        self.outOfRange = outOfRange
        self.summary = summary
    }

    /// The names a request may carry besides `op` and `rid`.
    public static func names(_ fields: [FieldSpec]) -> Set<String> { Set(fields.map(\.name)) }

    /// The type as PROTOCOL.md's tables write it.
    public var typeName: String {
        switch kind {
        case .string, .identifier: "string"
        case .integer: "integer"
        case .number: "number"
        case .boolean: "boolean"
        case .time: "integer or string (time)"
        case .vector: "array of numbers, or base64 string"
        case .object: "object"
        case .choice: "string"
        case .strings: "array of strings"
        case .memories: "array of objects"
        case .dedupe: "string or object"
        }
    }

    /// The values it may take, in words (empty when any value of its type will do).
    public var rangeText: String {
        func number(_ value: Double) -> String {
            value == value.rounded() && abs(value) <= 0x1p53 ? String(Int64(value)) : String(value)
        }
        switch kind {
        case .identifier: return "not empty"
        case .time: return "years 0001 to 9999"
        case .choice: return choices.map { "`\($0)`" }.joined(separator: ", ")
        case .strings, .memories:
            switch (minimum, maximum) {
            case (let low?, let high?): return "\(number(low)) to \(number(high)) items"
            case (nil, let high?): return "at most \(number(high)) items"
            default: return ""
            }
        case .dedupe: return "`\"exact\"`, or `{\"near\": s}` with s above 0, at most 1"
        case .integer, .number:
            switch (minimum, maximum) {
            case (let low?, let high?):
                return exclusiveMinimum
                    ? "above \(number(low)), at most \(number(high))" : "\(number(low)) to \(number(high))"
            case (let low?, nil): return exclusiveMinimum ? "above \(number(low))" : "at least \(number(low))"
            case (nil, let high?): return "at most \(number(high))"
            case (nil, nil): return ""
            }
        case .string, .boolean, .vector, .object: return ""
        }
    }
}

/// Fields several ops share.
extension FieldSpec {
    static let user = FieldSpec("user", .identifier, required: true, "whose memories")
    static let memoryID = FieldSpec("id", .identifier, required: true, "the memory's id within its user")
    static let model = FieldSpec(
        "model", .string, "the model that made the vectors; refused (`model_mismatch`) when it is not the space's")

    /// `add`'s fields, and each `add_batch` item's.
    public static let memory: [FieldSpec] = [
        FieldSpec("id", .identifier, "unique within its user; generated when absent; an id the user has is replaced"),
        user,
        FieldSpec("session", .string, "the conversation it belongs to"),
        FieldSpec("role", .choice, choices: Role.allCases.map(\.rawValue), "the chat role"),
        FieldSpec("speaker", .string, "who said it, apart from the chat role"),
        FieldSpec("text", .string, required: true, "what was said"),
        FieldSpec("created_at", .time, "when; the server's clock when absent"),
        FieldSpec("metadata", .object, default: "{}", "stored and returned as given"),
        FieldSpec("vector", .vector, "the embedding; the server's model embeds `text` when absent"),
        FieldSpec(
            "ttl", .integer, minimum: 1, maximum: Double(NewMemory.maximumTTL),
            "seconds until it expires; never when absent"),
        FieldSpec("expires_at", .time, "when it expires, instead of `ttl` (a restore of an export)"),
        FieldSpec("valid_from", .time, "from when it holds; its `created_at` when absent"),
        FieldSpec(
            "sources", .strings, maximum: Double(NewMemory.maximumSources),
            "where it came from: ids of the user's turns it was derived from, or other references"),
        FieldSpec(
            "dedupe", .dedupe,
            "store nothing when the user has it: the same normalized text (`\"exact\"`) or a vector this similar"),
        FieldSpec(
            "supersedes", .identifier,
            "the id of the user's memory it replaces: that one stops holding when this one begins, in the same write"),
        FieldSpec(
            "helped", .integer, minimum: 0, maximum: Double(NewMemory.maximumFeedbackCount),
            "how often users said it helped (a restore of an export); 0 when absent"),
        FieldSpec(
            "not_helped", .integer, minimum: 0, maximum: Double(NewMemory.maximumFeedbackCount),
            "how often users said it did not help (a restore of an export); 0 when absent"),
    ]

    /// `delete`'s and `forget`'s.
    static let withDerived = FieldSpec(
        "with_derived", .boolean, default: "false", "also remove the user's memories whose `sources` name one removed")

    /// Which memories a read sees by validity (`search`, `list`; `prompt` takes `as_of` alone).
    static let asOf = FieldSpec(
        "as_of", .time, "see what held at this time and had been stored by then; what holds now when absent")
    static let includeSuperseded = FieldSpec(
        "include_superseded", .boolean, default: "false", "see every memory, superseded or not (not with `as_of`)")

    /// The clock of a read that depends on time (`search`, `prompt`, `get`, `list`, `sessions`,
    /// `users`); the answer says which it used.
    static let now = FieldSpec(
        "now", .time,
        "the time the read takes as now (expiry, recency, which facts hold); the server's clock when absent; answered as `now`"
    )

    /// The filter of `search`, `list` and `forget`.
    static let filter: [FieldSpec] = [
        FieldSpec("session", .string, "only this session's memories"),
        FieldSpec("role", .choice, choices: Role.allCases.map(\.rawValue), "only this role's"),
        FieldSpec("speaker", .string, "only this speaker's"),
        FieldSpec("since", .time, "only memories created at or after"),
        FieldSpec("until", .time, "only memories created at or before"),
        FieldSpec(
            "where", .object,
            "metadata conditions: a key to a value, `{\"in\": [...]}` or bounds (`gt`, `gte`, `lt`, `lte`); at most 64 keys"
        ),
    ]

    /// What `search` and `prompt` share.
    static let retrieval: [FieldSpec] = [
        FieldSpec("query", .string, "the text to search by (embedded by the server for vector and hybrid searches)"),
        FieldSpec("vector", .vector, "the query's embedding"),
        FieldSpec(
            "mode", .choice, choices: SearchMode.allCases.map(\.rawValue),
            "`vector`, `keyword` or `hybrid`; hybrid for a text, vector for a vector alone, when absent"),
        FieldSpec(
            "ef", .integer, minimum: 1, maximum: Double(SearchRequest.maximumEf),
            "candidates an HNSW walk keeps; the space's `ef_search` when absent"),
        FieldSpec("exact", .boolean, default: "false", "scan every row, whatever the index"),
        FieldSpec("half_life", .number, minimum: 0, exclusiveMinimum: true, "seconds: lifts recent memories"),
        FieldSpec(
            "context", .integer, minimum: 0, maximum: Double(SearchRequest.maximumContext), default: "0",
            "turns around each hit in its session"),
        FieldSpec(
            "feedback_boost", .number, minimum: 0, maximum: SearchRequest.maximumFeedbackBoost, exclusiveMinimum: true,
            "weighs what users said helped"),
        asOf, now,
    ]
}
