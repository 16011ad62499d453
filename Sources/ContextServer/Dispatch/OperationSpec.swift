import ContextModel
import ContextProtocol

/// The operation table as data (`contextstore spec`): per op its fields (types, ranges,
/// defaults, from the codecs), what it needs of a key, the users it names, what it costs, where
/// it runs, whether its answers are kept, its error codes and its answer's fields. PROTOCOL.md's
/// reference tables are generated from it (a test fails when they differ), the Python client's
/// op list is checked against it, and the adversarial harness sends every field its bounds and
/// past them.
public enum OperationSpec {
    /// Codes any request may be answered with, whatever its op.
    static let everyRequest: [ErrorCode] = [
        .invalidJSON, .notObject, .unknownOp, .unknownField, .lineTooLong, .overloaded, .shuttingDown, .storageError,
        .rateLimited,
    ]

    /// The op's error codes: those of every request, those its key and fields can cause, and
    /// its own.
    static func errors(of op: OperationDescriptor) -> [ErrorCode] {
        var codes = everyRequest
        if op.access != .anyone { codes += [.unauthorized] }
        if op.access != .anyone && op.access != .anyKey { codes += [.forbidden] }
        if op.requestFields.contains(where: \.required) || op.name == "get" || op.name == "search" {
            codes += [.missingField]
        }
        if !op.requestFields.isEmpty { codes += [.wrongType, .invalidValue] }
        codes += op.requestFields.map(\.outOfRange)
        if op.requestFields.contains(where: { $0.kind == .vector || $0.kind == .memories }) {
            codes += [.wrongDimension, .nonFinite]
        }
        if op.costText != "0" && op.costText != "1" { codes += [.tooLarge] }
        if op.writes { codes += [.busy] }
        codes += op.errors
        var seen = Set<ErrorCode>()
        return codes.filter { seen.insert($0).inserted }
    }

    static func placementName(_ placement: Placement) -> String {
        switch placement {
        case .eventLoop: "event loop"
        case .computePool: "compute pool"
        case .writer: "writer"
        }
    }

    static func accessName(_ access: Access) -> String {
        switch access {
        case .anyone: "anyone"
        case .anyKey: "any key"
        case .read: "read"
        case .write: "write"
        case .admin: "admin"
        }
    }

    /// The users a request names, whose memories its key must cover.
    static func users(of op: OperationDescriptor) -> String {
        switch op.access {
        case .anyone, .anyKey, .admin: "none"
        case .read, .write:
            op.name == "add_batch" ? "each item's `user`" : op.name == "digest" ? "`user`, when given" : "`user`"
        }
    }

    /// The whole table as JSON.
    public static func json() -> String {
        var writer = JSONWriter()
        writer.raw("{")
        writer.key("protocol")
        writer.int(1)
        writer.raw(",")
        writer.key("ops")
        let ops = OperationTable.descriptors.sorted { $0.name < $1.name }
        writer.array(count: ops.count) { writer, i in
            let op = ops[i]
            writer.raw("{")
            writer.key("name")
            writer.string(op.name)
            for (key, value) in [
                ("access", accessName(op.access)), ("users", users(of: op)), ("placement", placementName(op.placement)),
                ("cost", op.costText),
            ] {
                writer.raw(",")
                writer.key(key)
                writer.string(value)
            }
            writer.raw(",")
            writer.key("cached")
            writer.bool(op.cached)
            writer.raw(",")
            writer.key("fields")
            writer.array(count: op.requestFields.count) { writer, j in field(op.requestFields[j], to: &writer) }
            writer.raw(",")
            writer.key("answer")
            writer.array(count: op.answer.count) { $0.string(op.answer[$1]) }
            let codes = errors(of: op)
            writer.raw(",")
            writer.key("errors")
            writer.array(count: codes.count) { $0.string(codes[$1].rawValue) }
            writer.raw("}")
        }
        writer.raw("}")
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    private static func field(_ field: FieldSpec, to writer: inout JSONWriter) {
        writer.raw("{")
        writer.key("name")
        writer.string(field.name)
        writer.raw(",")
        writer.key("kind")
        writer.string(field.kind.rawValue)
        writer.raw(",")
        writer.key("required")
        writer.bool(field.required)
        if let minimum = field.minimum {
            writer.raw(",")
            writer.key(field.exclusiveMinimum ? "above" : "minimum")
            writer.number(minimum)
        }
        if let maximum = field.maximum {
            writer.raw(",")
            writer.key("maximum")
            writer.number(maximum)
        }
        if !field.choices.isEmpty {
            writer.raw(",")
            writer.key("choices")
            writer.array(count: field.choices.count) { $0.string(field.choices[$1]) }
        }
        if let value = field.defaultValue {
            writer.raw(",")
            writer.key("default")
            writer.raw(value)
        }
        writer.raw(",")
        writer.key("out_of_range")
        writer.string(field.outOfRange.rawValue)
        writer.raw(",")
        writer.key("summary")
        writer.string(field.summary)
        writer.raw("}")
    }

    /// PROTOCOL.md's reference: a table of fields per op, and what the op needs and costs.
    public static func markdown() -> String {
        var text = ""
        for op in OperationTable.descriptors.sorted(by: { $0.name < $1.name }) {
            text += "#### `\(op.name)`\n\n"
            text +=
                "Access: \(accessName(op.access)); users: \(users(of: op)); runs on: \(placementName(op.placement));"
            text += " cost: \(op.costText); answers kept: \(op.cached ? "yes" : "no").\n"
            text += "Answer: \(op.answer.map { "`\($0)`" }.joined(separator: ", ")).\n"
            text += "Errors: \(errors(of: op).map { "`\($0.rawValue)`" }.joined(separator: ", ")).\n\n"
            guard !op.requestFields.isEmpty else {
                text += "No fields.\n\n"
                continue
            }
            text += "| field | type | required | values | default | |\n|---|---|---|---|---|---|\n"
            for field in op.requestFields {
                let cells = [
                    "`\(field.name)`", field.typeName, field.required ? "yes" : "", field.rangeText,
                    field.defaultValue.map { "`\($0)`" } ?? "", field.summary.replacing("|", with: "\\|"),
                ]
                text += "| " + cells.joined(separator: " | ") + " |\n"
            }
            text += "\n"
        }
        return text
    }
}
