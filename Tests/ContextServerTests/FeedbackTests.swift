import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import Testing

@testable import ContextServer
@testable import MemoryStore

/// `feedback`: counted with the memory, kept across a restart, weighed by `feedback_boost`.
@Suite struct FeedbackTests {
    @Test func feedbackIsCountedKeptAndWeighedOnlyWhenAsked() async throws {
        let folder = TemporaryFolder()
        let path = folder.path + "/space.db"
        do {
            let store = try MemoryStore(path: path, dimension: 2)
            try store.add([
                NewMemory(id: "a", user: "u", text: "first", vector: [1, 0]),
                NewMemory(id: "b", user: "u", text: "second", vector: [1, 0]),
                NewMemory(id: "c", user: "u", text: "third", vector: [0.8, 0.6]),
                NewMemory(id: "x", user: "v", text: "other", vector: [1, 0]),
            ])
            #expect(try store.feedback(user: "u", id: "b", helped: true) == FeedbackCounts(helped: 1, unhelped: 0))
            #expect(try store.feedback(user: "u", id: "b", helped: true) == FeedbackCounts(helped: 2, unhelped: 0))
            #expect(try store.feedback(user: "u", id: "a", helped: false) == FeedbackCounts(helped: 0, unhelped: 1))
            #expect(try store.feedback(user: "u", id: "x", helped: true) == nil)  // another user's id
            #expect(try store.feedback(user: "u", id: "none", helped: true) == nil)
            store.close()
        }
        // Kept in the file; read again when the space opens.
        let store = try MemoryStore(path: path)
        defer { store.close() }
        let plain = try store.search(SearchRequest(user: "u", vector: [1, 0], k: 3))
        #expect(plain.map(\.memory.id) == ["a", "b", "c"])
        let weighed = try store.search(SearchRequest(user: "u", vector: [1, 0], k: 3, feedbackBoost: 1))
        // b: x (1 + 2/3); a: x (1 - 1/2); c unchanged.
        #expect(weighed.map(\.memory.id) == ["b", "c", "a"])
    }

    @Test func theOpAnswersCountsAndNotFoundAsGetDoes() async throws {
        let server = try await TestServer(dimension: 2) { $0.keys = KeyRing(KeysTests.keys) }
        let app = try await ContextStoreClient.connect(port: server.port, secret: "app-a-secret-0123456789")
        try await app.add(NewMemory(id: "m", user: "alice", text: "tea", vector: [1, 0]))
        #expect(try await app.feedback(user: "alice", id: "m", helped: true) == .init(helped: 1, notHelped: 0))
        #expect(try await app.feedback(user: "alice", id: "m", helped: false) == .init(helped: 1, notHelped: 1))
        await #expect(
            throws: ClientError.server(code: "not_found", message: "user 'alice' has no memory with id 'zz'")
        ) { _ = try await app.feedback(user: "alice", id: "zz", helped: true) }
        let reader = try await ContextStoreClient.connect(port: server.port, secret: "reader-secret-0123456789")
        await #expect(throws: ClientError.self) { _ = try await reader.feedback(user: "alice", id: "m", helped: true) }
        let root = try await ContextStoreClient.connect(port: server.port, secret: "root-secret-0123456789")
        #expect(try await root.metrics().contains(#"contextstore_feedback_total{helped="true"} 1"#))
        for client in [app, reader, root] { await client.close() }
        await server.stop()
    }
}
