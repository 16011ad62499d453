import ContextModel
import ContextProtocol
import Foundation
import Testing

@testable import ContextServer

/// The adversarial harness, driven by the spec (`OperationSpec`): for every op and every field
/// of a real server's protocol, values at and past the field's bounds, Int64.min and max, NaN
/// and infinities, empty and 1 MB strings, a 1 MB word, two spellings of one character, every
/// wrong JSON type, a required field left out, and the request under another tenant's key. Each
/// answer must come (no crash, no hang), carry the code the spec gives for that value or, where
/// any documented answer will do, one of the op's documented codes, and a success must hold
/// only the answer fields the spec names; the connection stays usable. At the end the server's
/// memory grew boundedly and another user's answers are what they were.
@Suite struct SpecHarnessTests {
    /// One variant of an op's base request: the field set to `value` (JSON text; nil: left
    /// out), and the code expected (nil: any documented answer, success included).
    struct Variant {
        var field: String
        var value: String?
        var expected: ErrorCode?
        var label: String
    }

    static let dimension = 4
    static let vector = "[1,0,0,0]"

    /// A request of each op that the server takes, for user `alice`.
    static func base(_ op: String) -> [String: String] {
        switch op {
        case "auth": ["secret": #""root-secret-0123456789""#]
        case "add": ["user": #""alice""#, "text": #""tea at five""#, "vector": vector]
        case "add_batch": ["items": #"[{"user":"alice","text":"batch tea","vector":\#(vector)}]"#]
        case "search": ["user": #""alice""#, "vector": vector]
        case "prompt": ["user": #""alice""#, "query": #""tea?""#, "vector": vector]
        case "get": ["user": #""alice""#, "id": #""a1""#]
        case "update": ["user": #""alice""#, "id": #""a1""#, "metadata": #"{"seen":1}"#]
        case "feedback": ["user": #""alice""#, "id": #""a1""#, "helped": "true"]
        case "delete": ["user": #""alice""#, "id": #""nothing""#]
        case "forget": ["user": #""alice""#, "session": #""never-used""#]
        case "list", "sessions", "digest": ["user": #""alice""#]
        case "backup": ["to": #""harness.db""#]
        case "embed": ["texts": #"["tea"]"#]
        default: [:]
        }
    }

    static let megabyte = 1 << 20
    static let hugeText = "\"" + String(repeating: "tea time ", count: megabyte / 9) + "\""
    static let hugeWord = "\"" + String(repeating: "x", count: megabyte) + "\""

    /// Fields left out while `field` varies: `get` takes `id` or `ids`, not both.
    static func without(_ op: String, varying field: String) -> [String] {
        op == "get" && field == "ids" ? ["id"] : []
    }

    /// The variants of one field, from its spec.
    static func variants(of field: FieldSpec) -> [Variant] {
        var list: [Variant] = []
        func add(_ value: String?, _ expected: ErrorCode?, _ label: String) {
            list.append(Variant(field: field.name, value: value, expected: expected, label: label))
        }
        func number(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 9e15 ? String(Int64(value)) : String(value)
        }
        if field.required { add(nil, .missingField, "left out") }
        if field.required { add("null", .missingField, "null") }
        switch field.kind {
        case .integer:
            for value in ["true", "\"7\"", "[1]", "{}", "1.5", "1e300"] { add(value, .wrongType, "a \(value)") }
            if let minimum = field.minimum {
                add(number(minimum), nil, "its minimum")
                add(number(minimum - 1), field.outOfRange, "one under its minimum")
                add(String(Int64.min), field.outOfRange, "Int64.min")
            }
            if let maximum = field.maximum {
                add(number(maximum), nil, "its maximum")
                add(number(maximum + 1), field.outOfRange, "one over its maximum")
                add(String(Int64.max), field.outOfRange, "Int64.max")
            }
            add("NaN", .wrongType, "NaN")
        case .number:
            for value in ["true", "\"7\"", "[1]", "{}"] { add(value, .wrongType, "a \(value)") }
            for value in ["NaN", "Infinity", "-Infinity"] { add(value, field.outOfRange, value) }
            if let minimum = field.minimum {
                add(number(minimum), field.exclusiveMinimum ? field.outOfRange : nil, "its minimum")
                add(number(minimum - 1), field.outOfRange, "under its minimum")
            }
            if let maximum = field.maximum {
                add(number(maximum), nil, "its maximum")
                add(String(maximum + 0.001), field.outOfRange, "over its maximum")
            }
        case .boolean:
            for value in ["\"true\"", "1", "[true]", "{}"] { add(value, .wrongType, "a \(value)") }
            add("false", nil, "false")
        case .time:
            for value in ["true", "[1]", "{}", "1.5"] { add(value, .wrongType, "a \(value)") }
            for value in [String(Int64.min), String(Int64.max), "-62135596800001", "253402300800000"] {
                add(value, .invalidValue, "the time \(value)")
            }
            add("\"not a time\"", .invalidValue, "text that is no time")
            add("\"0001-01-01T00:00:00Z\"", nil, "the first time")
            add("\"9999-12-31T23:59:59Z\"", nil, "the last time")
        case .string, .identifier:
            for value in ["7", "true", "[\"a\"]", "{}"] { add(value, .wrongType, "a \(value)") }
            add("\"\"", field.kind == .identifier ? .invalidValue : nil, "empty")
            add(hugeText, nil, "1 MB of text")
            add(hugeWord, nil, "a 1 MB word")
            add("\"caf\\u00e9\"", nil, "a precomposed e-acute")
            add("\"cafe\\u0301\"", nil, "a decomposed e-acute")
            add("\"a\\u0000b\"", nil, "a NUL")
        case .choice:
            for value in ["7", "true", "[]", "{}"] { add(value, .wrongType, "a \(value)") }
            add("\"no-such-choice\"", .invalidValue, "no choice")
            add("\"\(field.choices[0].uppercased())\"", .invalidValue, "a choice in capitals")
            for choice in field.choices { add("\"\(choice)\"", nil, choice) }
        case .vector:
            add("[]", .wrongDimension, "empty")
            add("[1,0]", .wrongDimension, "too short")
            add("[NaN,0,0,0]", .nonFinite, "NaN")
            add("[1e39,0,0,0]", .nonFinite, "too large for float32")
            add("[\"1\",0,0,0]", .wrongType, "a string in it")
            add("\"!!!\"", .wrongType, "not base64")
            add("7", .wrongType, "a number")
            add("{}", .wrongType, "an object")
        case .object:
            for value in ["7", "\"x\"", "[]", "true"] { add(value, .wrongType, "a \(value)") }
        case .strings:
            for value in ["7", "\"x\"", "{}", "[7]"] { add(value, .wrongType, "a \(value)") }
            add("[]", (field.minimum ?? 0) >= 1 ? .invalidValue : nil, "empty")
            if let maximum = field.maximum {
                let many = "[" + Array(repeating: "\"x\"", count: Int(maximum) + 1).joined(separator: ",") + "]"
                add(many, field.outOfRange, "one more than its maximum")
            }
        case .dedupe:
            for value in ["7", "true", "[\"exact\"]"] { add(value, .wrongType, "a \(value)") }
            add("\"near\"", .invalidValue, "a name it does not know")
            add("\"EXACT\"", .invalidValue, "exact in capitals")
            add("{}", .missingField, "no similarity")
            add("{\"near\":\"0.9\"}", .wrongType, "a similarity as text")
            add("{\"near\":0.9,\"far\":1}", .unknownField, "a key it does not know")
            for value in ["0", "-0.5", "1.01", "1e300"] { add("{\"near\":\(value)}", .invalidValue, "near \(value)") }
            add("\"exact\"", nil, "exact")
            add("{\"near\":1}", nil, "near 1")
            add("{\"near\":0.5}", nil, "near 0.5")
        case .memories:
            for value in ["7", "\"x\"", "{}", "[7]"] { add(value, .wrongType, "a \(value)") }
            add("[]", .invalidValue, "empty")
            add("[{\"user\":\"alice\",\"text\":\"t\",\"vector\":[1,0]}]", .wrongDimension, "a short vector")
            add(
                "[{\"user\":\"alice\",\"text\":\"t\",\"vector\":\(vector),\"extra\":1}]", .unknownField,
                "an unknown field")
            if let maximum = field.maximum {
                let item = "{\"user\":\"alice\",\"text\":\"t\",\"vector\":\(vector)}"
                let many = "[" + Array(repeating: item, count: Int(maximum) + 1).joined(separator: ",") + "]"
                add(many, field.outOfRange, "one more than its maximum")
            }
        }
        return list
    }

    static func line(_ op: String, _ fields: [String: String]) -> String {
        "{\"op\":\"\(op)\"" + fields.sorted { $0.key < $1.key }.map { ",\"\($0.key)\":\($0.value)" }.joined() + "}\n"
    }

    /// The answer's `ok` and error code, and its top-level fields.
    static func outcome(_ answer: String) -> (code: String, fields: Set<String>)? {
        guard case .object(let object) = try? JSONParser.parse(Array(answer.utf8)) else { return nil }
        if object["ok"] == .bool(true) { return ("ok", Set(object.fields.map(\.0))) }
        guard case .object(let error) = object["error"], case .string(let code) = error["code"] else { return nil }
        return (code, [])
    }

    @Test func everyFieldOfEveryOpAnswersAsTheSpecSays() throws {
        let folder = TemporaryFolder()
        let keys = folder.path + "/keys.json"
        try #"""
        {"keys":[{"name":"root","secret":"root-secret-0123456789","role":"admin"},
                 {"name":"app-a","secret":"app-a-secret-0123456789","role":"app","users":["alice","caf\u00e9"]},
                 {"name":"reader","secret":"reader-secret-0123456789","role":"read","users":["alice"]}]}
        """#.write(toFile: keys, atomically: true, encoding: .utf8)
        let server = try ServerProcess(
            database: folder.path + "/space.db",
            arguments: ["--dim", "\(Self.dimension)", "--keys", keys, "--backup-dir", folder.path])
        let root = try RawSocket(port: server.port, timeout: 120)
        func ask(_ socket: RawSocket, _ line: String) -> String? {
            socket.send(line)
            return socket.readLine()
        }
        #expect(ask(root, Self.line("auth", ["secret": #""root-secret-0123456789""#])) != nil)
        // Another user's memories and the answers about them, before.
        let other = [
            Self.line("add", ["user": #""bob""#, "id": #""b1""#, "text": #""bob's tea""#, "vector": "[0,1,0,0]"]),
            Self.line("add", ["user": #""alice""#, "id": #""a1""#, "text": #""alice's tea""#, "vector": Self.vector]),
            Self.line(
                "add", ["user": #""caf\u00e9""#, "id": #""c1""#, "text": #""one spelling""#, "vector": Self.vector]),
        ]
        for line in other { #expect(ask(root, line)?.hasPrefix(#"{"ok":true"#) == true) }
        let bobsAnswers = [
            Self.line("search", ["user": #""bob""#, "vector": "[0,1,0,0]", "k": "10", "now": "\(FixedClock.now)"]),
            Self.line(
                "search",
                [
                    "user": #""bob""#, "query": #""tea""#, "mode": #""keyword""#, "explain": "true",
                    "now": "\(FixedClock.now)",
                ]),
            Self.line("list", ["user": #""bob""#, "now": "\(FixedClock.now)"]),
            Self.line("digest", ["user": #""bob""#]),
        ]
        let before = bobsAnswers.map { ask(root, $0) }
        let residentBefore = server.residentBytes

        var socket = root
        var failures: [String] = []
        var requests = 0
        let app = try RawSocket(port: server.port, timeout: 120)
        #expect(ask(app, Self.line("auth", ["secret": #""app-a-secret-0123456789""#])) != nil)
        let reader = try RawSocket(port: server.port, timeout: 120)
        #expect(ask(reader, Self.line("auth", ["secret": #""reader-secret-0123456789""#])) != nil)
        // `auth` last: its failures count against the address, and each variant gets a
        // connection of its own (three failures close one).
        for op in OperationTable.descriptors.sorted(by: { ($0.name == "auth" ? 1 : 0) < ($1.name == "auth" ? 1 : 0) }) {
            let documented = Set(OperationSpec.errors(of: op).map(\.rawValue))
            let answerFields = Set(op.answer.map { $0.hasSuffix("?") ? String($0.dropLast()) : $0 } + ["ok", "rid"])
            func check(_ line: String, expected: ErrorCode?, _ label: String) {
                requests += 1
                let started = Date()
                guard let answer = ask(socket, line) else {
                    failures.append("\(op.name) \(label): no answer")
                    // A closed connection (a line too long) is documented; go on with a new one.
                    if let fresh = try? RawSocket(port: server.port) {
                        socket = fresh
                        _ = ask(socket, Self.line("auth", ["secret": #""root-secret-0123456789""#]))
                    }
                    return
                }
                // Bounded: a slow machine takes seconds; quadratic work or a hang takes minutes.
                if Date().timeIntervalSince(started) > 60 { failures.append("\(op.name) \(label): took over 60 s") }
                guard let (code, fields) = Self.outcome(answer) else {
                    return failures.append("\(op.name) \(label): not an answer: \(answer.prefix(200))")
                }
                if let expected, code != expected.rawValue {
                    failures.append("\(op.name) \(label): \(code), not \(expected.rawValue): \(answer.prefix(300))")
                } else if code != "ok", !documented.contains(code) {
                    failures.append("\(op.name) \(label): undocumented \(code): \(answer.prefix(300))")
                } else if code == "ok", !fields.isSubset(of: answerFields) {
                    failures.append("\(op.name) \(label): answer fields \(fields.subtracting(answerFields).sorted())")
                }
            }
            let base = Self.base(op.name)
            check(Self.line(op.name, base), expected: nil, "as it is")
            check(
                Self.line(op.name, base.merging(["no_such_field": "1"]) { $1 }), expected: .unknownField,
                "an unknown field")
            // A field twice in one object: readers would disagree on which counts.
            if let (name, value) = base.first {
                check(
                    String(Self.line(op.name, base).dropLast(2)) + ",\"\(name)\":\(value)}\n", expected: .invalidJSON,
                    "\(name) twice")
            }
            for field in op.requestFields {
                for variant in Self.variants(of: field) {
                    var fields = base
                    for name in Self.without(op.name, varying: field.name) { fields[name] = nil }
                    fields[field.name] = variant.value
                    let saved = socket
                    if op.name == "auth" { socket = try RawSocket(port: server.port, timeout: 120) }
                    check(Self.line(op.name, fields), expected: variant.expected, "\(field.name) \(variant.label)")
                    socket = saved
                }
            }
            // What the op stored (1 MB texts among it) goes, so later reads stay small.
            if op.writes {
                _ = ask(root, Self.line("forget", ["user": #""alice""#]))
                _ = ask(root, other[1])
            }
            // Under a key that only reads: what writes or spans the space is refused, untried.
            if op.access == .write || op.access == .admin {
                let answer = ask(reader, Self.line(op.name, base))
                if answer.flatMap(Self.outcome)?.code != "forbidden" {
                    failures.append("\(op.name) under a read key: \(answer ?? "no answer")")
                }
            }
            // The same request under a key that does not cover the user: refused, untried.
            if base["user"] != nil, op.access == .read || op.access == .write {
                let swap = { (socket: RawSocket) -> String? in
                    ask(socket, Self.line(op.name, base.merging(["user": #""bob""#]) { $1 }))
                }
                let answer = swap(app)
                if answer.flatMap(Self.outcome)?.code != "forbidden" {
                    failures.append("\(op.name) for bob under app-a: \(answer ?? "no answer")")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) of \(requests) requests:\n\(failures.joined(separator: "\n"))")
        // Still serving, the other user's answers unchanged, and memory bounded.
        #expect(ask(socket, Self.line("ping", [:])) == #"{"ok":true,"pong":true}"#)
        #expect(bobsAnswers.map { ask(socket, $0) } == before)
        // Two spellings of one user are two users.
        #expect(ask(app, Self.line("list", ["user": #""cafe\u0301""#])).map { $0.contains("forbidden") } == true)
        #expect(ask(root, Self.line("get", ["user": #""cafe\u0301""#, "id": #""c1""#]))?.contains("not_found") == true)
        let grown = server.residentBytes - residentBefore
        #expect(grown < 1 << 30, "the server's memory grew by \(grown >> 20) MB")
        server.signal(SIGTERM)
        #expect(try runContextstore(["check", "--db", folder.path + "/space.db"]).status == 0)
    }
}
