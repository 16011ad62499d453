import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import MCP
import Testing

@testable import ContextMCP
@testable import ContextServer

/// The MCP tools as data, and the HTTP front door's MCP sessions (scripts/mcp-check drives both
/// transports through the official Python SDK).
@Suite struct MCPTests {
    func text(_ result: CallTool.Result) -> String {
        result.content.compactMap { if case .text(let text, _, _) = $0 { text } else { nil } }.joined()
    }

    @Test func toolsMapOntoOpsAndNeverTakeAUser() async throws {
        let server = try await TestServer(dimension: 2)
        let client = try await server.client()
        _ = try await client.addBatch([
            NewMemory(id: "a1", user: "alice", session: "s1", text: "alice's tea", vector: [1, 0]),
            NewMemory(id: "b1", user: "bob", session: "s1", text: "bob's coffee", vector: [1, 0]),
        ])
        let tools = MemoryTools(user: "alice", backend: client)
        let named = await tools.call("recall", ["query": "tea", "user": "bob"])
        #expect(named.isError == true && text(named).hasPrefix("unknown_field: the user is fixed"))
        let unknown = await tools.call("recall", ["query": "tea", "colour": "red"])
        #expect(unknown.isError == true && text(unknown).hasPrefix("unknown_field: recall takes no argument 'colour'"))
        let missing = await tools.call("remember", [:])
        #expect(missing.isError == true && text(missing) == "missing_field: remember needs 'text'")
        let binary = await tools.call("remember", ["text": .data(Data([1]))])
        #expect(binary.isError == true && text(binary).hasPrefix("wrong_type:"))
        // The op checks values: a k out of range is its own code.
        let range = await tools.call("recall", ["query": "tea", "k": 1_000_000])
        #expect(range.isError == true && text(range).hasPrefix("k_out_of_range:"))
        #expect(await tools.call("no_such_tool", [:]).isError == true)
        // forget: one id through `delete`, never another user's.
        let confirmless = await tools.call("forget", ["id": "a1", "confirm": false])
        #expect(
            confirmless.isError == true && text(confirmless).hasPrefix("invalid_value: forgetting cannot be undone"))
        let both = await tools.call("forget", ["id": "a1", "session": "s1", "confirm": true])
        #expect(both.isError == true)
        let theirs = await tools.call("forget", ["id": "b1", "confirm": true])
        #expect(theirs.isError == true && text(theirs).hasPrefix("not_found:"))
        let forgot = await tools.call("forget", ["id": "a1", "confirm": true])
        #expect(text(forgot) == "Forgot 1 memories.")
        #expect(try await client.get(user: "bob", id: "b1").text == "bob's coffee")
        // Integers stay exact on the way to the op.
        #expect(try MemoryTool.json(.int(Int.max), "n") == .integer(Int64.max))
        await client.close()
        await server.stop()
    }

    /// A fact that changes, through the tools: remember the new one superseding the old, recall
    /// now and as of before, a duplicate told apart, and forget with what was derived.
    @Test func toolsSupersedeRecallAsOfAndDedupe() async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder)
        let client = try await ContextStoreClient.connect(port: server.port)
        _ = try await client.addBatch([
            NewMemory(
                id: "lisbon", user: "alice", text: "Alice lives in Lisbon", createdAt: 1_683_504_000_000, vector: nil)
        ])
        let tools = MemoryTools(user: "alice", backend: client)
        let porto = await tools.call(
            "remember", ["text": "Alice moved to Porto", "supersedes": "lisbon", "sources": ["lisbon"]])
        #expect(text(porto).hasPrefix("Remembered as memory "))
        let id = String(text(porto).dropFirst("Remembered as memory ".count).dropLast())
        let again = await tools.call("remember", ["text": "alice moved to  PORTO", "dedupe": "exact"])
        #expect(text(again) == "Already remembered as memory \(id).")
        let now = try await client.search(SearchRequest(user: "alice", text: "Alice", mode: .keyword, k: 5))
        #expect(now.map(\.memory.id) == [id])
        let before = await tools.call("recall", ["query": "Alice", "mode": "keyword", "as_of": "2023-05-09"])
        #expect(text(before).contains("Alice lives in Lisbon") && !text(before).contains("Porto"))
        // Read at a time: Porto, stored by the clock, does not hold yet on 9 May 2023.
        let then = await tools.call("recall", ["query": "Alice", "mode": "keyword", "now": "2023-05-09"])
        #expect(text(then).contains("Alice lives in Lisbon") && !text(then).contains("Porto"), "\(text(then))")
        let context = await tools.call("build_context", ["query": "Where does Alice live?", "now": "2023-05-09"])
        #expect(text(context).contains("Alice lives in Lisbon") && !text(context).contains("Porto"), "\(text(context))")
        let forgot = await tools.call("forget", ["id": "lisbon", "confirm": true, "with_derived": true])
        #expect(text(forgot) == "Forgot 2 memories.")
        await client.close()
        await server.shutdown()
        store.close()
    }

    /// An `initialize` POST to `/mcp` and its status and session id.
    static func initialize(_ port: Int, user: String) async throws -> (status: Int, session: String?) {
        let body =
            #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#
        let answer = try await HTTPTests.raw(
            port,
            "POST /mcp?user=\(user) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                + "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
        let lines = answer.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        let session = lines.first { $0.lowercased().hasPrefix("mcp-session-id:") }.map {
            String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces)
        }
        return (status, session)
    }

    @Test func mcpSessionsAreBoundedAndADeletedOneMakesRoom() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.httpAddress = ("127.0.0.1", 0)
            $0.maximumMCPSessions = 3
        }
        let port = try #require(server.server.httpPort)
        var sessions: [String] = []
        for i in 0..<3 {
            let (status, session) = try await Self.initialize(port, user: "u\(i)")
            #expect(status == 200)
            sessions.append(try #require(session))
        }
        #expect(Set(sessions).count == 3)
        let refused = try await Self.initialize(port, user: "u4")
        #expect(refused.status == 503 && refused.session == nil)
        // A request without a user names none; one for a session that does not exist is 404.
        #expect(try await Self.initialize(port, user: "").status == 400)
        let deleted = try await HTTPTests.raw(
            port,
            "DELETE /mcp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nMcp-Session-Id: \(sessions[0])\r\n"
                + "Mcp-Protocol-Version: 2025-06-18\r\n\r\n")
        #expect(deleted.hasPrefix("HTTP/1.1 200"), "\(deleted)")
        let gone = try await HTTPTests.raw(
            port,
            "DELETE /mcp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nMcp-Session-Id: \(sessions[0])\r\n\r\n")
        #expect(gone.hasPrefix("HTTP/1.1 404"), "\(gone)")
        #expect(try await Self.initialize(port, user: "u5").status == 200)
        await server.stop()
    }

    /// Sessions begun at once count while they begin: no more than the bound are made.
    @Test func sessionsBegunAtOnceStayWithinTheBound() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.httpAddress = ("127.0.0.1", 0)
            $0.maximumMCPSessions = 3
        }
        let port = try #require(server.server.httpPort)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<12 { group.addTask { try await Self.initialize(port, user: "u\(i)").status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 200 }.count == 3, "\(statuses)")
        #expect(statuses.filter { $0 == 503 }.count == 9, "\(statuses)")
        await server.stop()
    }
}
