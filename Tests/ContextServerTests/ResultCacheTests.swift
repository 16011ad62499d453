import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import Synchronization
import Testing

@testable import ContextServer
@testable import MemoryStore

/// Answers of `search` and `prompt` kept for repeated requests, never stale after a write.
@Suite struct ResultCacheTests {
    func memory(_ id: String, user: String = "u", _ vector: [Float] = [1, 0]) -> NewMemory {
        NewMemory(id: id, user: user, session: "s", text: "memory \(id)", vector: vector)
    }

    @Test func aRepeatedSearchIsAnsweredFromTheCacheUntilTheUserChanges() async throws {
        // The expiry purge runs often and finds nothing: it must not make answers stale.
        let server = try await TestServer(dimension: 2) { $0.purgeInterval = .milliseconds(5) }
        let client = try await server.client()
        try await client.addBatch([memory("a"), memory("b", [0, 1]), memory("x", user: "v")])
        let search = SearchRequest(user: "u", vector: [1, 0], k: 5)
        let first = try await client.search(search)
        #expect(try await client.search(search) == first)
        var counters = try await client.stats().resultCache
        #expect(counters.hits == 1 && counters.misses == 1 && counters.entries == 1 && counters.bytes > 0)
        // Another user's write leaves it; this user's write makes it stale at once.
        try await client.add(memory("y", user: "v"))
        #expect(try await client.search(search) == first)
        try await client.add(memory("c", [0.9, 0.1]))
        #expect(try await client.search(search).map(\.memory.id) == ["a", "c", "b"])
        try await client.delete(user: "u", id: "a")
        #expect(try await client.search(search).map(\.memory.id) == ["c", "b"])
        _ = try await client.update(user: "u", id: "c", MemoryChanges(metadata: #"{"k":1}"#))
        #expect(try await client.search(search)[0].memory.metadata == #"{"k":1}"#)
        #expect(try await client.forget(user: "u") == 2)
        #expect(try await client.search(search).isEmpty)
        counters = try await client.stats().resultCache
        #expect(counters.hits == 2 && counters.misses == 5)
        // A prompt too; with `half_life` nothing is kept (the answer changes with time).
        let prompt = Operations.Prompt.Arguments(search: SearchRequest(user: "v", text: "memory", vector: [1, 0]))
        let built = try await client.prompt(prompt)
        #expect(try await client.prompt(prompt) == built)
        var recent = search
        recent.halfLife = 60
        _ = try await client.search(recent)
        _ = try await client.search(recent)
        counters = try await client.stats().resultCache
        #expect(counters.hits == 3 && counters.misses == 6)
        await client.close()
        await server.stop()
    }

    /// Writers and readers on their own connections: a search sent after a write was
    /// acknowledged always finds it.
    @Test func noAnswerIsStaleAfterAnAcknowledgedWrite() async throws {
        let server = try await TestServer(dimension: 2)
        let acknowledged = WritesSeen()
        let writer = try await server.client()
        let readers = [try await server.client(), try await server.client()]
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for i in 0..<150 {
                    try await writer.add(NewMemory(id: "m\(i)", user: "u", text: "t", vector: [1, Float(i) / 150]))
                    acknowledged.count.store(i + 1, ordering: .sequentiallyConsistent)
                }
            }
            for reader in readers {
                group.addTask {
                    var stale = 0
                    while acknowledged.count.load(ordering: .sequentiallyConsistent) < 150 {
                        let known = acknowledged.count.load(ordering: .sequentiallyConsistent)
                        // The same request again and again: the cache answers unless a write came.
                        let hits = try await reader.search(SearchRequest(user: "u", vector: [1, 0], k: 1000))
                        if hits.count < known { stale += 1 }
                    }
                    #expect(stale == 0)
                }
            }
            try await group.waitForAll()
        }
        #expect(try await writer.stats().resultCache.hits > 0)
        for client in readers + [writer] { await client.close() }
        await server.stop()
    }

    @Test func theCacheKeepsToItsBytesAndSkipsWhatExpires() async throws {
        let server = try await TestServer(dimension: 2) { $0.resultCacheBytes = 8 * 1024 }
        let client = try await server.client()
        try await client.addBatch((0..<20).map { memory("m\($0)", [1, Float($0)]) })
        for i in 0..<50 { _ = try await client.search(SearchRequest(user: "u", vector: [1, Float(i)], k: 5)) }
        let counters = try await client.stats().resultCache
        #expect(counters.bytes <= 8 * 1024 && counters.entries > 0 && counters.entries < 50)
        // While memories expire, answers change with time alone: none is kept.
        try await client.add(NewMemory(user: "w", text: "brief", vector: [1, 0], ttl: 3600))
        let before = try await client.stats().resultCache
        _ = try await client.search(SearchRequest(user: "u", vector: [1, 0], k: 5))
        _ = try await client.search(SearchRequest(user: "u", vector: [1, 0], k: 5))
        #expect(try await client.stats().resultCache == before)
        await client.close()
        await server.stop()
    }

    @Test func theLeastRecentlyUsedGoFirst() {
        let cache = ResultCache(capacityBytes: 800)
        let now = Generation(space: 0, user: 0)
        func put(_ key: UInt8) { cache.store([UInt8](repeating: key, count: 90), for: [key], at: now) }
        for key: UInt8 in [0, 1, 2, 3] { put(key) }
        _ = cache.answer(for: [0], at: now)  // 0 is now the most recently used
        for key: UInt8 in [9, 8, 7, 6] { put(key) }
        #expect(cache.counters.bytes == 8 * 91)
        put(5)  // 9 x 91 bytes would pass 800: the least recently used, 1, goes
        #expect(cache.answer(for: [1], at: now) == nil && cache.answer(for: [0], at: now) != nil)
        put(4)  // then 2
        #expect(cache.answer(for: [2], at: now) == nil && cache.answer(for: [3], at: now) != nil)
        #expect(cache.counters.bytes <= 800)
        // An answer of more than an eighth of the capacity is not kept; a stale one is let go.
        cache.store([UInt8](repeating: 1, count: 200), for: [50], at: now)
        #expect(cache.answer(for: [50], at: now) == nil)
        #expect(cache.answer(for: [3], at: Generation(space: 0, user: 1)) == nil)
        #expect(cache.answer(for: [3], at: now) == nil)
    }
}

/// How many writes the writer has seen acknowledged.
final class WritesSeen: Sendable {
    let count = Atomic<Int>(0)
}
