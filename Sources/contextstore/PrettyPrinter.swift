import ContextProtocol

/// Renders a response for people: hits, memories (`list`, `get` of several) and sessions as
/// tables, other fields as `key: value`.
enum PrettyPrinter {
    static func render(_ response: JSONObject) -> String {
        if case .bool(false) = response["ok"], case .object(let error) = response["error"] {
            return "error \(text(error["code"])): \(text(error["message"]))"
        }
        if case .array(let hits) = response["hits"] {
            let rows = hits.compactMap { hit -> [String]? in
                guard case .object(let hit) = hit else { return nil }
                return ["id", "score", "session", "role", "created_at", "text"].map { text(hit[$0]) }
            }
            return table(header: ["id", "score", "session", "role", "created_at", "text"], rows: rows)
                + "\n\(rows.count) hit\(rows.count == 1 ? "" : "s")"
        }
        if case .array(let memories) = response["memories"] {
            let columns = ["id", "session", "role", "speaker", "created_at", "text"]
            let rows = memories.compactMap { memory -> [String]? in
                guard case .object(let memory) = memory else { return nil }
                return columns.map { text(memory[$0]) }
            }
            var footer = "\(rows.count) memor\(rows.count == 1 ? "y" : "ies")"
            if case .string(let cursor) = response["next_cursor"] { footer += "; next page: --cursor \(cursor)" }
            if case .array(let missing) = response["missing"], !missing.isEmpty {
                footer += "; missing: " + missing.map { text($0) }.joined(separator: ", ")
            }
            return table(header: columns, rows: rows) + "\n" + footer
        }
        if case .array(let sessions) = response["sessions"] {
            let columns = ["session", "turns", "first_at", "last_at"]
            let rows = sessions.compactMap { session -> [String]? in
                guard case .object(let session) = session else { return nil }
                return columns.map { text(session[$0]) }
            }
            return table(header: columns, rows: rows) + "\n\(rows.count) session\(rows.count == 1 ? "" : "s")"
                + (response["more"] == .bool(true) ? " (more: raise --limit)" : "")
        }
        if case .object(let memory) = response["memory"] {
            return memory.fields.filter { $0.key != "vector" }.map { "\($0.key): \(text($0.value))" }
                .joined(separator: "\n")
                + (memory["vector"].map { value in
                    if case .array(let values) = value { "\nvector: \(values.count) components" } else { "" }
                } ?? "")
        }
        return response.fields.filter { $0.key != "ok" }.map { "\($0.key): \(text($0.value))" }
            .joined(separator: "\n")
    }

    private static func text(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null: ""
        case .string(let text): text
        default: JSONWriter.serialize(value!)
        }
    }

    private static func table(header: [String], rows: [[String]]) -> String {
        let clipped = rows.map { $0.map { $0.count > 60 ? String($0.prefix(57)) + "..." : $0 } }
        let widths = header.indices.map { column in
            ([header] + clipped).map { $0[column].count }.max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { $1 + String(repeating: " ", count: widths[$0] - $1.count) }
                .joined(separator: "  ")
        }
        return ([line(header), line(widths.map { String(repeating: "-", count: $0) })] + clipped.map(line))
            .joined(separator: "\n")
    }
}
