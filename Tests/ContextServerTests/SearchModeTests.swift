import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import Logging
import MemoryStore
import NIOCore
import Testing

@testable import ContextServer

/// The search modes, their options and expiry through a real server on loopback.
@Suite struct SearchModeTests {
    func object(_ line: String?) throws -> JSONObject {
        guard let line, case .object(let object) = try JSONParser.parse(Array(line.utf8)) else {
            throw ProtocolError(.notObject, "not an object: \(line ?? "nil")")
        }
        return object
    }

    @Test func modesOptionsAndExplanationsOverTheWire() async throws {
        let server = try await TestServer(dimension: 2)
        let socket = try RawSocket(port: server.port)
        for line in [
            #"{"op":"add","user":"u","id":"a","session":"s","text":"Which instrument?","vector":[0,1],"created_at":1000}"#,
            #"{"op":"add","user":"u","id":"b","session":"s","text":"I play the violin","vector":[1,0],"created_at":2000}"#,
            #"{"op":"add","user":"u","id":"c","session":"s","text":"Since I was six","vector":[0.6,0.8],"created_at":3000}"#,
        ] {
            socket.send(line + "\n")
            #expect(try object(socket.readLine())["ok"] == true)
        }
        // Text without a model: keyword mode, which explains with the keyword side alone.
        socket.send(#"{"op":"search","user":"u","query":"violins","k":1,"explain":true,"context":1}"# + "\n")
        let keyword = try #require(socket.readLine())
        #expect(keyword.hasPrefix(#"{"ok":true,"hits":[{"id":"b","score":"#))
        #expect(
            keyword.contains(
                #""explain":{"neighbours":null,"vector":null,"keyword":{"score":"#))
        #expect(keyword.contains(#""rank":1},"recency":null,"session":null,"speaker":null},"context":[{"id":"a","#))
        let hits = try Operations.Search.decode(answer: object(keyword)).hits
        #expect(hits.map(\.memory.id) == ["b"] && hits[0].context.map(\.id) == ["a", "c"])
        // Text and a vector: hybrid, both sides explained.
        socket.send(#"{"op":"search","user":"u","query":"violin","vector":[1,0],"k":3,"explain":true}"# + "\n")
        let hybrid = try Operations.Search.decode(answer: object(socket.readLine())).hits
        #expect(hybrid.map(\.memory.id) == ["b", "c", "a"])
        #expect(hybrid[0].explanation?.vectorRank == 1 && hybrid[0].explanation?.keywordRank == 1)
        #expect(hybrid[1].explanation?.keywordRank == nil && hybrid[1].explanation?.neighbours != nil)
        // `where` on a vector search goes through SQL, on the compute pool.
        socket.exchange(
            #"{"op":"search","user":"u","vector":[1,0],"k":3,"where":{"k":1}}"#, #"{"ok":true,"hits":[]}"#,
            now: FixedClock.now)
        socket.send(#"{"op":"search","user":"u","query":"violin","mode":"vector"}"# + "\n")
        #expect(try object(socket.readLine())["error"]?.objectValue?["code"] == .string("no_embedder"))
        await server.stop()
    }

    /// Adds one at a time leave the keyword index in many segments; the server merges them in
    /// the background until each level holds at most one.
    @Test func theKeywordIndexIsMergedInTheBackground() async throws {
        let server = try await TestServer(dimension: 2) { $0.purgeInterval = .seconds(3600) }
        let client = try await server.client()
        for i in 0..<45 {
            try await client.addBatch([
                NewMemory(id: "m\(i)", user: "u", text: "word\(i % 9) and more", vector: [1, 0])
            ])
        }
        let path = server.folder.path + "/space.db"
        #expect(try MemoryStore.check(path: path).keywordSegments.contains { $0 > 1 })
        await client.close()
        await server.stop()
        // Served again, with the upkeep every 100 ms; on a loaded machine, given up to 10 s.
        let store = try MemoryStore(path: path)
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, threads: 2)
        configuration.purgeInterval = .milliseconds(100)
        let again = try await ContextStoreServer(
            store: store, configuration: configuration, logger: Logger(label: "test"))
        var segments = try MemoryStore.check(path: path).keywordSegments
        for _ in 0..<100 where segments.contains(where: { $0 > 1 }) {
            try await Task.sleep(for: .milliseconds(100))
            segments = try MemoryStore.check(path: path).keywordSegments
        }
        #expect(segments.allSatisfy { $0 <= 1 })
        let connection = try await ContextStoreClient.connect(host: "127.0.0.1", port: again.port)
        let found = try await connection.search(SearchRequest(user: "u", text: "word4", mode: .keyword, k: 10))
        #expect(Set(found.map(\.memory.id)) == ["m4", "m13", "m22", "m31", "m40"])
        await connection.close()
        await again.shutdown()
        store.close()
    }

    /// A memory with a ttl is returned until it expires, then by nothing, and the server purges
    /// it in the background; `stats` counts it.
    @Test func expiredMemoriesArePurgedInTheBackground() async throws {
        let server = try await TestServer(dimension: 2) { $0.purgeInterval = .milliseconds(100) }
        let client = try await server.client()
        try await client.addBatch([
            NewMemory(id: "brief", user: "u", text: "brief", vector: [1, 0], ttl: 1),
            NewMemory(id: "kept", user: "u", text: "kept", vector: [1, 0]),
            NewMemory(id: "lasting", user: "u", text: "lasting", vector: [1, 0], ttl: 3600),
        ])
        // The expiry is the time of the write plus the ttl (read on one that lasts: a loaded
        // machine may take a second to answer).
        let lasting = try await client.get(user: "u", id: "lasting")
        #expect(lasting.expiresAt != nil && lasting.expiresAt! - lasting.createdAt == 3_600_000)
        try await Task.sleep(for: .milliseconds(1500))
        let found = try await client.search(SearchRequest(user: "u", vector: [1, 0], k: 5)).map(\.memory.id)
        #expect(Set(found) == ["kept", "lasting"])
        // The purge runs every 100 ms; on a loaded machine, give it up to 10 s.
        var stats = try await client.stats()
        for _ in 0..<100 where stats.store.purged == 0 {
            try await Task.sleep(for: .milliseconds(100))
            stats = try await client.stats()
        }
        #expect(stats.store.purged == 1 && stats.store.expired == 0 && stats.store.memories == 2)
        await client.close()
        await server.stop()
    }
}
