import ContextClient
import ContextProtocol
import Foundation
import MCP

/// Where the MCP tools' requests go: one line-protocol request in, its response object out
/// (`ok` true or false). A `ContextStoreClient` is one (the stdio server's); the server's HTTP
/// front door has its own, through its dispatcher.
public protocol MemoryBackend: Sendable {
    func roundTrip(line: [UInt8]) async throws -> JSONObject
}

extension ContextStoreClient: MemoryBackend {}

/// One user's memories as MCP tools, a resource per session and a prompt: each a thin mapping
/// onto ops, sent through `backend` for `user`. The user is fixed here, by the server's flag or
/// the key's scope; no tool takes a `user` argument, so a model cannot name another user.
public struct MemoryTools: Sendable {
    public let user: String
    let backend: any MemoryBackend

    public init(user: String, backend: any MemoryBackend) {
        self.user = user
        self.backend = backend
    }

    /// A server with this user's tools, resources and prompt registered.
    public func makeServer(version: String) async -> Server {
        let server = Server(
            name: "contextstore", version: version,
            instructions:
                "Long-term memory of one user's conversations. Call recall before answering a question about the user's past; call remember when the user states a fact worth keeping; build_context gives a ready prompt.",
            capabilities: .init(
                prompts: .init(listChanged: false), resources: .init(listChanged: false),
                tools: .init(listChanged: false)))
        await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: MemoryTool.all.map(\.tool)) }
        await server.withMethodHandler(CallTool.self) { call in await self.call(call.name, call.arguments ?? [:]) }
        await server.withMethodHandler(ListResourceTemplates.self) { _ in
            ListResourceTemplates.Result(templates: [
                Resource.Template(
                    uriTemplate: "memory://{user}/sessions/{session}", name: "session",
                    title: "A conversation",
                    description: "One session of the user's, as a conversation: time, speaker and text of each turn.",
                    mimeType: "text/plain")
            ])
        }
        await server.withMethodHandler(ListResources.self) { _ in try await self.sessionResources() }
        await server.withMethodHandler(ReadResource.self) { read in try await self.readSession(read.uri) }
        await server.withMethodHandler(ListPrompts.self) { _ in
            ListPrompts.Result(prompts: [
                Prompt(
                    name: "with_memory",
                    description: "The user's message with what ContextStore remembers of them: build_context's prompt.",
                    arguments: [
                        .init(name: "query", description: "The user's new message.", required: true),
                        .init(name: "session", description: "The current conversation, whose latest turns go in."),
                        .init(name: "budget", description: "Tokens the prompt may use (default 2048)."),
                    ])
            ])
        }
        await server.withMethodHandler(GetPrompt.self) { get in try await self.withMemory(get) }
        return server
    }

    // MARK: - Tools

    /// Runs tool `name`: a result, or a tool error whose text names the error code and what to do.
    func call(_ name: String, _ arguments: [String: Value]) async -> CallTool.Result {
        guard let tool = MemoryTool.named[name] else {
            return Self.failure("unknown_tool", "there is no tool '\(name)'; the tools are \(MemoryTool.names)")
        }
        do {
            let request = try tool.call(arguments)
            let answer = try await send(request.op, request.fields)
            return CallTool.Result(
                content: [.text(text: tool.text(answer, request.fields), annotations: nil, _meta: nil)], isError: false)
        } catch let error as ToolError {
            return Self.failure(error.code, error.message)
        } catch {
            return Self.failure("unavailable", "the memory server could not be reached: \(error)")
        }
    }

    /// Sends `op` with `fields` and this user; the answer, or `ToolError` with the server's code.
    func send(_ op: String, _ fields: [(String, JSONValue)]) async throws -> JSONObject {
        var writer = JSONWriter()
        writer.raw("{\"op\":")
        writer.string(op)
        writer.field("user")
        writer.string(user)
        for (name, value) in fields {
            writer.field(name)
            writer.value(value)
        }
        writer.raw(UInt8(ascii: "}"))
        let answer = try await backend.roundTrip(line: writer.bytes)
        guard answer["ok"] == .bool(true) else {
            let error = answer["error"]?.objectValue
            throw ToolError(
                error?["code"]?.stringValue ?? "error", error?["message"]?.stringValue ?? "the server refused it")
        }
        return answer
    }

    static func failure(_ code: String, _ message: String) -> CallTool.Result {
        CallTool.Result(
            content: [.text(text: "\(code): \(message)", annotations: nil, _meta: nil)],
            structuredContent: .object(["error": .object(["code": .string(code), "message": .string(message)])]),
            isError: true)
    }

    // MARK: - Resources: a session as a conversation

    static let scheme = "memory://"

    func sessionURI(_ session: String) -> String {
        Self.scheme + Self.escaped(user) + "/sessions/" + Self.escaped(session)
    }

    /// RFC 3986's unreserved characters.
    private static let unreserved = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))

    /// Everything but unreserved characters percent-encoded, so `/` in an id stays inside it.
    static func escaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    func sessionResources() async throws -> ListResources.Result {
        let answer = try await protocolCall("sessions", [("limit", .integer(1000))])
        let sessions = answer["sessions"]?.arrayValue?.compactMap(\.objectValue) ?? []
        return ListResources.Result(
            resources: sessions.compactMap { session in
                guard let name = session["session"]?.stringValue else { return nil }
                return Resource(
                    name: name, uri: sessionURI(name), description: "\(session["turns"]?.integerValue ?? 0) turns",
                    mimeType: "text/plain")
            })
    }

    /// `memory://{user}/sessions/{session}` as text; another user's URI is not found.
    func readSession(_ uri: String) async throws -> ReadResource.Result {
        let prefix = Self.scheme + Self.escaped(user) + "/sessions/"
        guard uri.hasPrefix(prefix), let session = String(uri.dropFirst(prefix.count)).removingPercentEncoding,
            !session.isEmpty
        else {
            throw MCPError.invalidParams("no resource '\(uri)'; this server's are \(prefix){session}")
        }
        let answer = try await protocolCall("list", [("session", .string(session)), ("limit", .integer(200))])
        let text = MemoryTool.conversation(answer["memories"]?.arrayValue ?? [])
        return ReadResource.Result(contents: [.text(text, uri: uri, mimeType: "text/plain")])
    }

    // MARK: - The prompt

    func withMemory(_ get: GetPrompt.Parameters) async throws -> GetPrompt.Result {
        guard get.name == "with_memory" else { throw MCPError.invalidParams("no prompt '\(get.name)'") }
        guard let query = get.arguments?["query"] else {
            throw MCPError.invalidParams("with_memory needs a query")
        }
        var fields: [(String, JSONValue)] = [("query", .string(query))]
        if let session = get.arguments?["session"] { fields.append(("session", .string(session))) }
        if let text = get.arguments?["budget"] {
            guard let budget = Int64(text) else { throw MCPError.invalidParams("budget must be a whole number") }
            fields.append(("budget", .integer(budget)))
        }
        let answer = try await protocolCall("prompt", fields)
        return GetPrompt.Result(
            description: "What ContextStore remembers that bears on the message, and the message",
            messages: [.user(.text(text: answer["prompt"]?.stringValue ?? query))])
    }

    /// `send` for resources and prompts: a refusal is a protocol error.
    private func protocolCall(_ op: String, _ fields: [(String, JSONValue)]) async throws -> JSONObject {
        do {
            return try await send(op, fields)
        } catch let error as ToolError {
            throw MCPError.invalidParams("\(error.code): \(error.message)")
        }
    }
}

/// A tool call refused: the server's error code, or one of the tools' own.
struct ToolError: Error {
    var code: String
    var message: String

    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
}
