import ContextProtocol
import Foundation
import MCP

/// One MCP tool as data: its schema and description (written for a model to read), the op it
/// maps onto, how its arguments become the op's fields, and how the op's answer reads as text.
/// The op checks every value (types, ranges) and its errors come back as tool errors.
struct MemoryTool: Sendable {
    /// An argument: its JSON Schema and what it means.
    struct Argument: Sendable {
        var name: String
        var schema: [String: Value]
        var required = false
    }

    var name: String
    var title: String
    var description: String
    var arguments: [Argument]
    var annotations: Tool.Annotations
    /// The op a call sends (`forget` sends `delete` for one id) and its fields, from the call's
    /// arguments (known ones, and checked for what the op cannot check).
    var request: @Sendable ([String: JSONValue]) throws -> (op: String, fields: [(String, JSONValue)])
    /// The answer as text a model can use; `request` is what was sent.
    var text: @Sendable (JSONObject, [(String, JSONValue)]) -> String

    var tool: Tool {
        var properties: [String: Value] = [:]
        for argument in arguments { properties[argument.name] = .object(argument.schema) }
        return Tool(
            name: name, title: title, description: description,
            inputSchema: .object([
                "type": "object", "properties": .object(properties),
                "required": .array(arguments.filter(\.required).map { .string($0.name) }),
                "additionalProperties": false,
            ]), annotations: annotations)
    }

    /// The op and its fields for `arguments`.
    /// - Throws: `ToolError` for an argument the tool does not take, or one missing.
    func call(_ arguments: [String: Value]) throws -> (op: String, fields: [(String, JSONValue)]) {
        var values: [String: JSONValue] = [:]
        let known = Set(arguments.keys.filter { name in self.arguments.contains { $0.name == name } })
        for (name, value) in arguments.sorted(by: { $0.key < $1.key }) {
            guard known.contains(name) else {
                if name == "user" {
                    throw ToolError(
                        "unknown_field", "the user is fixed by this server; \(self.name) takes no 'user' argument")
                }
                throw ToolError(
                    "unknown_field",
                    "\(self.name) takes no argument '\(name)'; it takes \(self.arguments.map(\.name).joined(separator: ", "))"
                )
            }
            values[name] = try Self.json(value, name)
        }
        for argument in self.arguments where argument.required && values[argument.name] == nil {
            throw ToolError("missing_field", "\(name) needs '\(argument.name)'")
        }
        return try request(values)
    }

    /// The values as fields, in the order of their names (a request is written the same way
    /// every time, so the server's result cache knows it again).
    static func fields(_ values: [String: JSONValue]) -> [(String, JSONValue)] {
        values.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// An MCP value as the line protocol's JSON (integers stay exact).
    static func json(_ value: Value, _ name: String) throws -> JSONValue {
        switch value {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        case .int(let number): return .integer(Int64(number))
        case .double(let number): return .number(number)
        case .string(let text): return .string(text)
        case .data: throw ToolError("wrong_type", "'\(name)' must be JSON, not binary data")
        case .array(let values): return .array(try values.map { try json($0, name) })
        case .object(let fields):
            return .object(
                JSONObject(try fields.sorted { $0.key < $1.key }.map { ($0.key, try json($0.value, name)) }))
        }
    }

    static let all: [MemoryTool] = [remember, recall, buildContext, listSessions, getSession, forget, feedback]
    static let named = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
    static let names = all.map(\.name).joined(separator: ", ")

    // MARK: - Schemas

    static func string(_ name: String, _ description: String, required: Bool = false) -> Argument {
        Argument(name: name, schema: ["type": "string", "description": .string(description)], required: required)
    }

    static func integer(_ name: String, _ description: String, _ range: ClosedRange<Int>) -> Argument {
        Argument(
            name: name,
            schema: [
                "type": "integer", "description": .string(description), "minimum": .int(range.lowerBound),
                "maximum": .int(range.upperBound),
            ])
    }

    static let metadata = Argument(
        name: "metadata",
        schema: [
            "type": "object",
            "description":
                "Facts about the memory as key-value pairs (e.g. {\"topic\": \"travel\"}); {\"pinned\": true} puts it in every prompt.",
        ])
    static let whereArgument = Argument(
        name: "where",
        schema: [
            "type": "object",
            "description":
                "Only memories whose metadata match: a key to a value, {\"in\": [values]}, or bounds {\"gt\", \"gte\", \"lt\", \"lte\"}.",
        ])
    static let session = string("session", "A conversation's id.")
    static let now = string(
        "now",
        "Read as if it were this time (ISO 8601): recency, expiry and what holds are judged then; the server's clock when absent. The same read at the same now gives the same answer."
    )
    static let role = Argument(
        name: "role",
        schema: [
            "type": "string", "enum": ["user", "assistant", "system", "tool"],
            "description": "Who said it: user, assistant, system or tool.",
        ])

    // MARK: - The tools

    static let remember = MemoryTool(
        name: "remember", title: "Remember",
        description:
            "Store something the user said or a fact about the user, so it can be recalled in later conversations. Returns the new memory's id.",
        arguments: [
            string("text", "What to remember, in the user's words or as a short fact.", required: true),
            string("speaker", "Who said it (a name)."), role, session, metadata,
            integer(
                "ttl", "Seconds until the memory is forgotten by itself; kept for good when absent.", 1...315_360_000),
            string(
                "supersedes",
                "When a fact changed (the user moved, changed jobs): the id of the memory this one replaces. The old one stays as history but is no longer recalled."
            ),
            Argument(
                name: "sources",
                schema: [
                    "type": "array", "items": ["type": "string"], "maxItems": 64,
                    "description": "Where this came from: ids of the memories (turns) it was derived from.",
                ]),
            Argument(
                name: "dedupe",
                schema: [
                    "type": "string", "enum": ["exact"],
                    "description":
                        "exact: store nothing when the user has a memory with the same text; its id is returned.",
                ]),
        ], annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false),
        request: { ("add", fields($0)) },
        text: { answer, _ in
            let id = answer["id"]?.stringValue ?? "?"
            return answer["duplicate"] == .bool(true)
                ? "Already remembered as memory \(id)." : "Remembered as memory \(id)."
        })

    static let recall = MemoryTool(
        name: "recall", title: "Recall",
        description:
            "Search the user's memories for what bears on a question or topic. Returns the best matches, best first, each with its id, date, session, speaker and score.",
        arguments: [
            string("query", "What to look for, as a question or a few words.", required: true),
            integer("k", "How many memories at most (default 5).", 1...100),
            Argument(
                name: "mode",
                schema: [
                    "type": "string", "enum": ["hybrid", "vector", "keyword"],
                    "description": "hybrid (default: meaning and words), vector (meaning) or keyword (exact words).",
                ]), session, role, string("speaker", "Only what this speaker said."),
            string("since", "Only memories from this time on (ISO 8601, e.g. 2025-03-01)."),
            string("until", "Only memories up to this time (ISO 8601)."), whereArgument,
            Argument(
                name: "half_life",
                schema: [
                    "type": "number", "exclusiveMinimum": 0,
                    "description": "Seconds: favour recent memories, a memory this old counting half.",
                ]),
            string(
                "as_of",
                "Recall what held at this time (ISO 8601), before later changes; what holds now when absent."),
            now,
        ], annotations: .init(readOnlyHint: true, openWorldHint: false),
        request: { ("search", fields($0)) },
        text: { answer, request in
            let hits = answer["hits"]?.arrayValue?.compactMap(\.objectValue) ?? []
            let query = request.first { $0.0 == "query" }?.1.stringValue ?? ""
            guard !hits.isEmpty else { return "No memory matches \"\(query)\"." }
            var lines = ["\(hits.count) memories for \"\(query)\", best first:"]
            for (i, hit) in hits.enumerated() {
                let score = hit["score"]?.numberValue.map { String(format: "%.3f", $0) } ?? "?"
                lines.append("\(i + 1). " + line(hit) + " (score \(score))")
            }
            return lines.joined(separator: "\n")
        })

    static let buildContext = MemoryTool(
        name: "build_context", title: "Build context",
        description:
            "Assemble a ready prompt for the user's new message within a token budget: the user's pinned facts, the memories that bear on it, and the current conversation's latest turns. Returns the prompt, then what was left out.",
        arguments: [
            string("query", "The user's new message.", required: true),
            integer("budget", "Tokens the prompt may use (default 2048).", 1...1_000_000),
            string("session", "The current conversation: its latest turns go in verbatim."),
            integer("limit", "Memories at most (default: as many as the budget holds, up to 100).", 0...100),
            integer("recent", "Turns of the session at most (default 10).", 0...200), now,
        ], annotations: .init(readOnlyHint: true, openWorldHint: false),
        request: { ("prompt", fields($0)) },
        text: { answer, _ in
            let dropped = (answer["dropped"]?.arrayValue ?? []).compactMap(\.objectValue).map {
                "\($0["id"]?.stringValue ?? "?") (\($0["reason"]?.stringValue ?? "?"))"
            }
            return (answer["prompt"]?.stringValue ?? "") + "\n\n---\n\(answer["tokens"]?.integerValue ?? 0) tokens; "
                + (dropped.isEmpty ? "nothing left out." : "left out: " + dropped.joined(separator: ", ") + ".")
        })

    static let listSessions = MemoryTool(
        name: "list_sessions", title: "List sessions",
        description:
            "The user's conversations, most recent first, with their number of turns and when they began and ended.",
        arguments: [integer("limit", "Sessions at most (default 100).", 1...10_000)],
        annotations: .init(readOnlyHint: true, openWorldHint: false),
        request: { ("sessions", [("limit", $0["limit"] ?? .integer(100))]) },
        text: { answer, _ in
            let sessions = answer["sessions"]?.arrayValue?.compactMap(\.objectValue) ?? []
            guard !sessions.isEmpty else { return "The user has no memories yet." }
            return sessions.map { session in
                let name = session["session"]?.stringValue.map { "'\($0)'" } ?? "(no session)"
                return "\(name): \(session["turns"]?.integerValue ?? 0) turns, "
                    + "\(time(session["first_at"])) to \(time(session["last_at"]))"
            }.joined(separator: "\n")
                + (answer["more"] == .bool(true) ? "\n(more: ask for a higher limit)" : "")
        })

    static let getSession = MemoryTool(
        name: "get_session", title: "Get a session",
        description:
            "One conversation of the user's, oldest turn first: time, speaker and text of each. Long ones come a page at a time: pass the cursor the answer ends with.",
        arguments: [
            string("session", "The conversation's id (from list_sessions).", required: true),
            integer("limit", "Turns at most (default 50).", 1...1000),
            string("cursor", "Where the previous page ended."),
        ], annotations: .init(readOnlyHint: true, openWorldHint: false),
        request: { values in
            var values = values
            if values["limit"] == nil { values["limit"] = .integer(50) }
            return ("list", fields(values))
        },
        text: { answer, _ in
            let memories = answer["memories"]?.arrayValue ?? []
            guard !memories.isEmpty else { return "No turns in that session." }
            let next = answer["next_cursor"]?.stringValue.map { "\n(more: call get_session with cursor \"\($0)\")" }
            return conversation(memories) + (next ?? "")
        })

    static let forget = MemoryTool(
        name: "forget", title: "Forget",
        description:
            "Delete memories for good: one by its id, a whole session, or those whose metadata match. Only when the user asks to forget; needs confirm: true.",
        arguments: [
            string("id", "One memory's id."), string("session", "A whole conversation's id."), whereArgument,
            Argument(
                name: "confirm",
                schema: [
                    "type": "boolean", "const": true,
                    "description": "Must be true: forgetting cannot be undone.",
                ], required: true),
            Argument(
                name: "with_derived",
                schema: [
                    "type": "boolean",
                    "description": "Also forget the memories derived from those forgotten (that name them as sources).",
                ]),
        ], annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false),
        request: { values in
            guard values["confirm"] == .bool(true) else {
                throw ToolError(
                    "invalid_value",
                    "forgetting cannot be undone: call again with confirm: true if the user asked for it")
            }
            let chosen = ["id", "session", "where"].filter { values[$0] != nil }
            guard chosen.count == 1 else {
                throw ToolError("invalid_value", "name what to forget with one of id, session or where")
            }
            var chosenValues = values
            chosenValues["confirm"] = nil
            return (values["id"] == nil ? "forget" : "delete", fields(chosenValues))
        },
        text: { answer, _ in "Forgot \(answer["deleted"]?.integerValue ?? 0) memories." })

    static let feedback = MemoryTool(
        name: "feedback", title: "Feedback",
        description:
            "Say whether a recalled memory helped answer the user (true) or not (false); later searches can favour what helped.",
        arguments: [
            string("id", "The memory's id.", required: true),
            Argument(
                name: "helped", schema: ["type": "boolean", "description": "Whether it helped."], required: true),
        ], annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false),
        request: { ("feedback", fields($0)) },
        text: { answer, _ in
            "Noted: helped \(answer["helped"]?.integerValue ?? 0) times, did not help \(answer["not_helped"]?.integerValue ?? 0) times."
        })

    // MARK: - Text

    /// `[id] 2025-11-24 16:00 · session 's1' · Alice (user): text`.
    static func line(_ memory: JSONObject) -> String {
        var parts = ["[\(memory["id"]?.stringValue ?? "?")] \(time(memory["created_at"]))"]
        if let session = memory["session"]?.stringValue { parts.append("session '\(session)'") }
        let who = [memory["speaker"]?.stringValue, memory["role"]?.stringValue.map { "(\($0))" }].compactMap { $0 }
        return parts.joined(separator: " · ") + (who.isEmpty ? "" : " · " + who.joined(separator: " ")) + ": "
            + (memory["text"]?.stringValue ?? "")
    }

    static func conversation(_ memories: [JSONValue]) -> String {
        memories.compactMap(\.objectValue).map(line).joined(separator: "\n")
    }

    /// Unix milliseconds as `2025-11-24 16:00` (UTC).
    static func time(_ value: JSONValue?) -> String {
        guard let milliseconds = value?.integerValue else { return "?" }
        let text = Date(timeIntervalSince1970: Double(milliseconds) / 1000).formatted(.iso8601)
        return String(text.prefix(16)).replacing("T", with: " ")
    }
}
