/// What a space embeds for a memory: its text together with the fields that carry meaning for a
/// question, e.g. `[{speaker}: ]{text}`. `{text}`, `{speaker}`, `{session}`, `{role}` and `{date}`
/// (the day of `created_at`, as "8 May 2023", UTC) are replaced by the memory's values; a part in
/// square brackets is left out whole when a field inside it has no value. The stored text is
/// never changed: only what the model reads.
public struct EmbedTemplate: Sendable, Equatable, CustomStringConvertible {
    /// The template as written.
    public let description: String
    private let parts: [Part]

    /// The bare text: what a space created before templates embeds.
    public static let plain = "{text}"
    /// What a new space made by `serve`, `import --db` or `bench` embeds (measured on
    /// locomo-dev: docs/BENCHMARKS.md, "What the model reads").
    public static let serverDefault = "[{speaker} said: ]{text}"

    enum Field: String, CaseIterable {
        case text, speaker, session, role, date
    }

    enum Part: Equatable {
        case literal(String)
        case field(Field)
        /// Left out when one of its fields has no value.
        case optional([Part])
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    /// - Throws: for an unknown field, an unclosed `{` or `[`, a `[` inside brackets, or a
    ///   template whose `{text}` is missing or only inside brackets.
    public init(_ source: String) throws(ParseError) {
        var parts: [Part] = []
        var group: [Part]? = nil
        var literal = ""
        var rest = Substring(source)
        func flush() {
            guard !literal.isEmpty else { return }
            if group != nil { group!.append(.literal(literal)) } else { parts.append(.literal(literal)) }
            literal = ""
        }
        while let character = rest.first {
            rest = rest.dropFirst()
            switch character {
            case "{":
                guard let close = rest.firstIndex(of: "}") else {
                    throw ParseError(description: "an unclosed '{' in the template '\(source)'")
                }
                let name = String(rest[..<close])
                guard let field = Field(rawValue: name) else {
                    let known = Field.allCases.map { "{\($0.rawValue)}" }.joined(separator: ", ")
                    throw ParseError(description: "unknown field '{\(name)}' in the template '\(source)'; use \(known)")
                }
                rest = rest[rest.index(after: close)...]
                flush()
                if group != nil { group!.append(.field(field)) } else { parts.append(.field(field)) }
            case "[":
                guard group == nil else { throw ParseError(description: "brackets inside brackets in '\(source)'") }
                flush()
                group = []
            case "]":
                guard group != nil else { throw ParseError(description: "a ']' without '[' in '\(source)'") }
                flush()
                parts.append(.optional(group!))
                group = nil
            default:
                literal.append(character)
            }
        }
        guard group == nil else { throw ParseError(description: "an unclosed '[' in the template '\(source)'") }
        flush()
        guard parts.contains(.field(.text)) else {
            throw ParseError(description: "the template '\(source)' must hold {text} outside brackets")
        }
        self.description = source
        self.parts = parts
    }

    /// What the model reads for `memory`.
    public func render(_ memory: NewMemory) -> String {
        func value(_ field: Field) -> String? {
            let value: String? =
                switch field {
                case .text: memory.text
                case .speaker: memory.speaker
                case .session: memory.session
                case .role: memory.role?.rawValue
                case .date: memory.createdAt.map(Self.day)
                }
            return value?.isEmpty == false ? value : nil
        }
        /// `parts` rendered; a field without a value renders empty, or (`whole`) leaves nil.
        func rendered(_ parts: [Part], whole: Bool) -> String? {
            var output = ""
            for part in parts {
                switch part {
                case .literal(let text): output += text
                case .field(let field):
                    guard let text = value(field) else {
                        if whole { return nil }
                        continue
                    }
                    output += text
                case .optional(let inner): output += rendered(inner, whole: true) ?? ""
                }
            }
            return output
        }
        return rendered(parts, whole: false) ?? ""
    }

    private static let months = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
        "November", "December",
    ]

    /// The UTC day of unix milliseconds `milliseconds`, as "8 May 2023" (days to civil date after
    /// Howard Hinnant's algorithm).
    public static func day(_ milliseconds: Int64) -> String {
        let days = Int(milliseconds.dividedRoundingDown(by: 86_400_000))
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return "\(day) \(months[month - 1]) \(year)"
    }
}

extension Int64 {
    /// The quotient rounded towards negative infinity.
    fileprivate func dividedRoundingDown(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
