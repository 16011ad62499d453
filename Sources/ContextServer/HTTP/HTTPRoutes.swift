import ContextModel
import ContextProtocol
import HTTPTypes
import NIOCore

/// The HTTP API's routes, as data: the router is made from this table and so is the OpenAPI
/// document, so the two cannot differ. Every op of `OperationTable` is `POST /v1/ops/{op}` with
/// the line protocol's object (without `op`) as the body; the resource routes users expect are
/// each a thin mapping onto one op: the path's segments and the query's parameters become the
/// op's fields, next to the body's.
struct HTTPRoute: Sendable {
    /// What the body of a request holds.
    enum Body: Sendable {
        /// No body (GET, DELETE): every field comes from the path and the query.
        case none
        /// A JSON object with the op's fields.
        case object
        /// A JSON object with `add`'s fields, or an array of them for `add_batch`.
        case memoryOrMemories
    }

    let method: HTTPRequest.Method
    /// The path, with `{name}` for a segment that is the field `name`.
    let path: String
    let op: String
    let body: Body
    let summary: String

    /// The names of the path's `{}` segments, in order.
    var parameters: [String] {
        path.split(separator: "/").compactMap { segment in
            segment.hasPrefix("{") ? String(segment.dropFirst().dropLast()) : nil
        }
    }

    /// The path as Hummingbird's router writes it (`:name` for a parameter).
    var routerPath: String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix("{") ? ":" + segment.dropFirst().dropLast() : segment
        }.joined(separator: "/")
    }

    /// The resource routes (the `/v1/ops/{op}` routes come from the op table itself).
    static let resources: [HTTPRoute] = [
        HTTPRoute(
            method: .post, path: "/v1/users/{user}/memories", op: "add", body: .memoryOrMemories,
            summary: "Add a memory (an object: `add`), or several (an array of objects: `add_batch`)."),
        HTTPRoute(
            method: .get, path: "/v1/users/{user}/memories", op: "list", body: .none,
            summary: "A page of the user's memories (`list`; the query holds its fields, `cursor` included)."),
        HTTPRoute(
            method: .get, path: "/v1/users/{user}/memories/{id}", op: "get", body: .none,
            summary: "One memory (`get`)."),
        HTTPRoute(
            method: .patch, path: "/v1/users/{user}/memories/{id}", op: "update", body: .object,
            summary: "Change a memory's session, role, speaker, metadata or time (`update`)."),
        HTTPRoute(
            method: .delete, path: "/v1/users/{user}/memories/{id}", op: "delete", body: .none,
            summary: "Delete one memory (`delete`)."),
        HTTPRoute(
            method: .post, path: "/v1/users/{user}/search", op: "search", body: .object,
            summary: "Search the user's memories (`search`)."),
        HTTPRoute(
            method: .post, path: "/v1/users/{user}/prompt", op: "prompt", body: .object,
            summary: "A prompt from the user's memories and recent turns, within a token budget (`prompt`)."),
        HTTPRoute(
            method: .get, path: "/v1/users/{user}/sessions", op: "sessions", body: .none,
            summary: "The user's sessions with their turn counts and time ranges (`sessions`)."),
        HTTPRoute(
            method: .delete, path: "/v1/users/{user}", op: "forget", body: .none,
            summary: "Forget every memory of the user, or those the query's filters select (`forget`)."),
        HTTPRoute(
            method: .delete, path: "/v1/users/{user}/sessions/{session}", op: "forget", body: .none,
            summary: "Forget one session of the user (`forget`)."),
        HTTPRoute(
            method: .post, path: "/v1/users/{user}/feedback", op: "feedback", body: .object,
            summary: "Whether a memory helped an answer (`feedback`)."),
        HTTPRoute(
            method: .get, path: "/v1/users", op: "users", body: .none,
            summary: "The users whose ids begin with `?prefix=`, a page at a time (`users`)."),
        HTTPRoute(method: .get, path: "/v1/stats", op: "stats", body: .none, summary: "The server's counts (`stats`)."),
        HTTPRoute(
            method: .get, path: "/v1/cluster", op: "cluster", body: .none,
            summary: "Nodes, ranges, their hosts and lag, when clustered (`cluster`)."),
        HTTPRoute(
            method: .get, path: "/v1/keys", op: "keys", body: .none,
            summary: "The server's keys: names, roles, users and rates, never secrets (`keys`, admin)."),
        HTTPRoute(
            method: .get, path: "/v1/slow-requests", op: "slow_requests", body: .none,
            summary: "The latest requests slower than `serve --slow-ms`, newest first (`slow_requests`, admin)."),
    ]

    /// The line-protocol request this route makes of a request: `{"op":..,` then the path's
    /// and the query's fields, then the body's (a field named twice is a duplicate key, which
    /// the parser refuses as `invalid_json`).
    /// - Parameters:
    ///   - values: The path's parameters, percent-decoded, in `parameters`' order.
    ///   - query: The query's `name=value` pairs, percent-decoded.
    /// - Throws: `ProtocolError` for a body this route does not take.
    func line(values: [String], query: [(String, String)], body content: ByteBuffer) throws(ProtocolError) -> ByteBuffer
    {
        let fields = HTTPRoute.fields(of: op)
        var head = JSONWriter()
        for (name, value) in zip(parameters, values) {
            head.key(name)
            head.string(value)
            head.raw(",")
        }
        for (name, value) in query {
            head.key(name)
            HTTPRoute.write(value, as: fields.first { $0.name == name }?.kind, to: &head)
            head.raw(",")
        }
        switch body {
        case .none:
            guard HTTPRoute.isBlank(content) else {
                throw ProtocolError(.invalidValue, "\(method) \(path) takes no body: its fields go in the query")
            }
            return HTTPRoute.object(op: op, fields: head.bytes, body: nil)
        case .object:
            return try HTTPRoute.object(op: op, fields: head.bytes, body: HTTPRoute.requireObject(content))
        case .memoryOrMemories:
            let bytes = Array(content.readableBytesView)
            guard let first = bytes.first(where: { !HTTPRoute.blank.contains($0) }), first == UInt8(ascii: "[") else {
                return try HTTPRoute.object(op: op, fields: head.bytes, body: HTTPRoute.requireObject(content))
            }
            // An array: `add_batch` with the path's user put into each item, and the query's
            // fields (`if_absent`, `model`) beside `items`.
            var user = JSONWriter()
            user.key("user")
            user.string(values[0])
            user.raw(",")
            guard let items = HTTPRoute.inserting(user.bytes, intoEachObjectOf: bytes) else {
                throw ProtocolError(.notObject, "the body must be an array of memory objects")
            }
            var batch = JSONWriter()
            for (name, value) in query {
                batch.key(name)
                HTTPRoute.write(
                    value, as: HTTPRoute.fields(of: "add_batch").first { $0.name == name }?.kind, to: &batch)
                batch.raw(",")
            }
            batch.key("items")
            batch.raw(items)
            batch.raw(",")
            return HTTPRoute.object(op: "add_batch", fields: batch.bytes, body: nil)
        }
    }

    /// `POST /v1/ops/{op}`'s request: the body's object with `op` put first.
    static func opLine(op: String, body: ByteBuffer) throws(ProtocolError) -> ByteBuffer {
        object(op: op, fields: [], body: try requireObject(body))
    }

    static let blank: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]

    private static func isBlank(_ body: ByteBuffer) -> Bool {
        body.readableBytesView.allSatisfy { blank.contains($0) }
    }

    /// The body's bytes after its opening brace, or `notObject`.
    private static func requireObject(_ body: ByteBuffer) throws(ProtocolError) -> ArraySlice<UInt8> {
        let bytes = Array(body.readableBytesView)
        guard let brace = bytes.firstIndex(where: { !blank.contains($0) }), bytes[brace] == UInt8(ascii: "{") else {
            throw ProtocolError(.notObject, "the body must be a JSON object (the op's fields)")
        }
        return bytes[(brace + 1)...]
    }

    /// `{"op":"<op>",<fields><rest>` where `fields` end with a comma, or the object closed
    /// after them when there is no body. One request per body: the parser refuses what follows
    /// the object, newlines included.
    private static func object(op: String, fields: [UInt8], body rest: ArraySlice<UInt8>?) -> ByteBuffer {
        var writer = JSONWriter()
        writer.raw("{")
        writer.key("op")
        writer.string(op)
        writer.raw(",")
        writer.raw(fields)
        var bytes = writer.bytes
        if let rest {
            // `{}`: no comma may stand before the closing brace.
            if rest.first(where: { !blank.contains($0) }) == UInt8(ascii: "}") { bytes.removeLast() }
            bytes.append(contentsOf: rest)
        } else {
            bytes[bytes.count - 1] = UInt8(ascii: "}")
        }
        return ByteBuffer(bytes: bytes)
    }

    /// A query parameter's value as JSON of the field's kind: numbers and booleans as their
    /// text when they are one (else a string, which the op's decoder refuses as `wrong_type`),
    /// objects and arrays as JSON text, everything else as a string.
    private static func write(_ value: String, as kind: FieldSpec.Kind?, to writer: inout JSONWriter) {
        switch kind {
        case .integer, .time:
            if let number = Int64(value) { return writer.int(number) }
        case .number:
            // Any JSON number (`2`, `0.5`, `1e3`); `NaN`, `+1` or `.5` stay strings.
            if let parsed = try? JSONParser.parse(Array(value.utf8)), parsed.numberValue != nil, parsed.isFinite {
                return writer.value(parsed)
            }
        case .boolean:
            if value == "true" || value == "false" { return writer.raw(value) }
        case .object, .vector, .strings, .memories, .dedupe:
            if let parsed = try? JSONParser.parse(Array(value.utf8)), parsed.isFinite { return writer.value(parsed) }
        case .string, .identifier, .choice, nil:
            break
        }
        writer.string(value)
    }

    /// The request fields of `op`.
    static func fields(of op: String) -> [FieldSpec] {
        OperationTable.byName[op]?.requestFields ?? []
    }

    /// `array` with `text` put after the opening brace of each of its elements; nil when it is
    /// not an array of objects (a scan of the JSON's strings and nesting: the op's parser checks
    /// the rest).
    static func inserting(_ text: [UInt8], intoEachObjectOf array: [UInt8]) -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(array.count + text.count * 16)
        var depth = 0
        var inString = false
        var escaped = false
        var expectingElement = false
        var sawArray = false
        for byte in array {
            result.append(byte)
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            if blank.contains(byte) { continue }
            if depth == 1 && expectingElement {
                expectingElement = false
                if byte == UInt8(ascii: "{") {
                    result.append(contentsOf: text)
                    depth = 2
                    continue
                }
                // `[]`: an empty batch, which `add_batch` refuses in its own words.
                guard byte == UInt8(ascii: "]") else { return nil }
                depth = 0
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                if depth == 0 {
                    guard byte == UInt8(ascii: "["), !sawArray else { return nil }
                    sawArray = true
                    expectingElement = true
                }
                depth += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
                if depth < 0 { return nil }
            case UInt8(ascii: ","):
                if depth == 1 { expectingElement = true }
            default:
                if depth == 0 { return nil }
            }
        }
        // An item `{}` becomes `{"user":"u",}`, which the parser refuses: an item needs its text.
        return sawArray && depth == 0 ? result : nil
    }

    /// `text` with its `%XX` escapes decoded, as UTF-8; nil for a bad escape or bytes that are
    /// not UTF-8. `+` stays `+`: ids are compared byte for byte.
    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The query's `name=value` pairs, each side percent-decoded.
    /// - Throws: `invalid_value` for an escape that is not UTF-8.
    static func queryPairs(_ query: String?) throws(ProtocolError) -> [(String, String)] {
        guard let query, !query.isEmpty else { return [] }
        var pairs: [(String, String)] = []
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let equals = part.firstIndex(of: "=") ?? part.endIndex
            let value = equals == part.endIndex ? "" : part[part.index(after: equals)...]
            guard let name = percentDecoded(part[..<equals]), let decoded = percentDecoded(value) else {
                throw ProtocolError(.invalidValue, "the query's '\(part)' is not percent-encoded UTF-8")
            }
            pairs.append((name, decoded))
        }
        return pairs
    }
}
