import ContextProtocol
import Foundation

/// Which field of an import row holds which part of a memory, for files whose fields have other
/// names than `add`'s, and how the time is written. The default maps every field to itself.
public struct FieldMapping: Sendable, Equatable {
    public var id = "id"
    public var user = "user"
    public var session = "session"
    public var role = "role"
    public var speaker = "speaker"
    public var text = "text"
    public var time = "created_at"
    /// A field holding a JSON object of metadata.
    public var metadata = "metadata"
    public var vector = "vector"
    public var timeFormat = TimeFormat.automatic
    /// Fields copied into each memory's metadata under their own names.
    public var metadataFields: [String] = []

    public enum TimeFormat: Sendable, Equatable {
        /// Unix milliseconds (a number, or digits in text), or ISO 8601 text.
        case automatic
        /// Unix seconds, with a fraction if any.
        case unixSeconds
        /// A Unicode date pattern (as ICU and `DateFormatter` read them), in English and UTC:
        /// `h:mm a 'on' d MMMM, yyyy` reads "1:56 pm on 8 May, 2023".
        case pattern(String)
    }

    public init() {}

    /// How the LoCoMo conversations write their dates ("1:56 pm on 8 May, 2023").
    public static let locomoDatePattern = "h:mm a 'on' d MMMM, yyyy"

    /// Fields of `add` read under their own names, as `contextstore export` writes them.
    static let passedThrough = ["valid_from", "supersedes", "sources", "expires_at", "helped", "not_helped"]
    /// Fields of an export that a store sets itself: a predecessor's end and successor come from
    /// the row that `supersedes` it.
    static let derived: Set<String> = ["valid_to", "superseded_by"]

    /// Each memory field with the row field it is read from.
    var fields: [(memoryField: String, rowField: String)] {
        [
            ("id", id), ("user", user), ("session", session), ("role", role), ("speaker", speaker), ("text", text),
            ("created_at", time),
            ("metadata", metadata), ("vector", vector),
        ] + Self.passedThrough.map { ($0, $0) }
    }

    /// - Throws: when two memory fields are read from one row field.
    public func validate() throws(ImportError) {
        var seen: [String: String] = [:]
        for (memoryField, rowField) in fields {
            if let other = seen.updateValue(memoryField, forKey: rowField) {
                throw ImportError(description: "the field '\(rowField)' cannot be both \(other) and \(memoryField)")
            }
        }
    }

    /// The reader of a `pattern` time format (nil for the others): made once per import, as
    /// making one costs far more than reading a date with it.
    func makeTimeReader() -> DateFormatter? {
        guard case .pattern(let pattern) = timeFormat else { return nil }
        let reader = DateFormatter()
        reader.locale = Locale(identifier: "en_US_POSIX")
        reader.timeZone = TimeZone(identifier: "UTC")
        reader.dateFormat = pattern
        return reader
    }

    /// What reading each row needs, made once per import: the memory field of each row field,
    /// and the time reader (`makeTimeReader`).
    struct Prepared {
        let memoryField: [String: String]
        let timeReader: DateFormatter?
    }

    func prepared() -> Prepared {
        Prepared(
            memoryField: Dictionary(
                fields.map { ($0.rowField, $0.memoryField) }, uniquingKeysWith: { first, _ in first }),
            timeReader: makeTimeReader())
    }

    /// A row's fields under `add`'s names, and the row fields that went nowhere.
    /// - Parameter prepared: `prepared()`'s.
    /// - Throws: `ImportRowError` for a time that does not match the format.
    func apply(
        _ row: JSONObject, prepared: Prepared
    ) throws(ImportRowError) -> (fields: JSONObject, unmapped: [String]) {
        var mapped = JSONObject()
        var unmapped: [String] = []
        var copied: [(key: String, value: JSONValue)] = []
        for (key, value) in row.fields {
            let memoryField = prepared.memoryField[key]
            if let memoryField {
                mapped[memoryField] = memoryField == "created_at" ? try timeValue(value, prepared.timeReader) : value
            }
            if metadataFields.contains(key) {
                copied.append((key, value))
            } else if memoryField == nil, !Self.derived.contains(key) {
                unmapped.append(key)
            }
        }
        if !copied.isEmpty {
            // Into the row's own metadata object, when it has one (a copied field wins).
            var metadata = mapped["metadata"]?.objectValue ?? JSONObject()
            guard mapped["metadata"] == nil || mapped["metadata"] == .null || mapped["metadata"]?.objectValue != nil
            else {
                throw ImportRowError(
                    reason: "wrong_type: '\(self.metadata)' must be an object, not \(mapped["metadata"]!.typeName)")
            }
            for (key, value) in copied { metadata[key] = value }
            mapped["metadata"] = .object(metadata)
        }
        return (mapped, unmapped)
    }

    /// The time as `add` takes it: unix milliseconds, or ISO 8601 text.
    private func timeValue(_ value: JSONValue, _ reader: DateFormatter?) throws(ImportRowError) -> JSONValue {
        switch (timeFormat, value) {
        case (.automatic, .string(let text)):
            return Int64(text).map(JSONValue.integer) ?? value
        case (.automatic, _):
            return value
        case (.unixSeconds, _):
            let seconds = value.numberValue ?? value.stringValue.flatMap { Double($0) }
            guard let seconds, seconds.isFinite, abs(seconds) < 9e15 else {
                throw ImportRowError(
                    reason: "invalid_value: '\(time)' is not unix seconds: \(JSONWriter.serialize(value))")
            }
            return .integer(Int64((seconds * 1000).rounded()))
        case (.pattern(let pattern), .string(let text)):
            guard let date = reader?.date(from: text) else {
                throw ImportRowError(
                    reason: "invalid_value: '\(time)' is '\(text)', which does not match --time-format '\(pattern)'")
            }
            return .integer(Int64((date.timeIntervalSince1970 * 1000).rounded()))
        case (.pattern(let pattern), _):
            throw ImportRowError(
                reason: "wrong_type: '\(time)' must be text in the form '\(pattern)', not \(value.typeName)")
        }
    }
}
