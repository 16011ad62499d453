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

    @Test func theCacheKeepsToItsBytes() async throws {
        let server = try await TestServer(dimension: 2) { $0.resultCacheBytes = 32 * 1024 }
        let client = try await server.client()
        try await client.addBatch((0..<20).map { memory("m\($0)", [1, Float($0)]) })
        for i in 0..<50 { _ = try await client.search(SearchRequest(user: "u", vector: [1, Float(i)], k: 5)) }
        let counters = try await client.stats().resultCache
        #expect(counters.bytes <= 32 * 1024 && counters.entries > 0 && counters.entries < 50)
        await client.close()
        await server.stop()
    }

    @Test func answersAreKeptUntilTheNextExpiry() async throws {
        // No purge during the test: an expired memory must leave the answers by its deadline alone.
        let server = try await TestServer(dimension: 2) { $0.purgeInterval = .seconds(3600) }
        let client = try await server.client()
        let search = SearchRequest(user: "w", vector: [1, 0], k: 5)
        // Kept while the next expiry is an hour away.
        try await client.add(NewMemory(id: "lasting", user: "w", text: "lasting", vector: [1, 0.1], ttl: 3600))
        #expect(try await client.search(search).map(\.memory.id) == ["lasting"])
        let before = try await client.stats().resultCache
        #expect(try await client.search(search).map(\.memory.id) == ["lasting"])
        #expect(try await client.stats().resultCache.hits == before.hits + 1)
        // A memory that expires leaves the answers kept with it once it has expired, purged or not.
        try await client.add(NewMemory(id: "brief", user: "w", text: "brief", vector: [1, 0], ttl: 1))
        _ = try await client.search(search)  // kept, at most until "brief" expires
        try await Task.sleep(for: .milliseconds(1_100))
        #expect(try await client.search(search).map(\.memory.id) == ["lasting"])
        #expect(try await client.stats().store.expired == 1)  // not purged
        let after = try await client.stats().resultCache
        #expect(try await client.search(search).map(\.memory.id) == ["lasting"])
        #expect(try await client.stats().resultCache.hits == after.hits)  // nothing kept until the purge
        await client.close()
        await server.stop()
    }

    @Test func theLeastRecentlyUsedGoFirst() {
        // Room for eight entries of a one-byte key and a 90-byte answer, not nine: an entry
        // counts its storage and bookkeeping, not its 91 bytes alone. Each entry's arrays are
        // made (and kept) before the cache, so the test knows exactly what each one costs:
        // malloc may hand two arrays of the same size different capacities.
        let keys: [UInt8] = [0, 1, 2, 3, 9, 8, 7, 6, 5, 4]
        let arrays = Dictionary(
            uniqueKeysWithValues: keys.map { ($0, (request: [$0], answer: [UInt8](repeating: $0, count: 90))) })
        let cost = arrays.mapValues { ResultCache.cost(request: $0.request, answer: $0.answer, user: "u") }
        let smallest = cost.values.min()!
        #expect(smallest > 91 + 128)
        let first = keys.prefix(8).reduce(0) { $0 + cost[$1]! }
        let capacity = first + smallest / 2
        // The margins below hold (each entry may be kept; nine do not fit, eight do).
        #expect(2 * (cost.values.max()! - smallest) < smallest / 2 && cost.values.max()! <= capacity / 8)
        let cache = ResultCache(capacityBytes: capacity)
        let now = Generation(space: 0, user: 0)
        func put(_ key: UInt8) {
            cache.store(arrays[key]!.answer, for: arrays[key]!.request, user: "u", at: now, until: nil)
        }
        func kept(_ key: UInt8, at generation: Generation = now) -> Bool {
            cache.answer(for: [key], at: generation, now: 0) != nil
        }
        for key: UInt8 in [0, 1, 2, 3] { put(key) }
        #expect(kept(0))  // 0 is now the most recently used
        for key: UInt8 in [9, 8, 7, 6] { put(key) }
        #expect(cache.counters.entries == 8 && cache.counters.bytes == first)
        put(5)  // nine would pass the capacity: the least recently used, 1, goes
        #expect(!kept(1) && kept(0))
        #expect(cache.counters.bytes == first - cost[1]! + cost[5]!)
        put(4)  // then 2
        #expect(!kept(2) && kept(3))
        #expect(cache.counters.bytes == first - cost[1]! - cost[2]! + cost[5]! + cost[4]!)
        #expect(cache.counters.bytes <= capacity)
        // An answer of more than an eighth of the capacity is not kept; a stale one is let go.
        cache.store([UInt8](repeating: 1, count: capacity / 8), for: [50], user: "u", at: now, until: nil)
        #expect(!kept(50))
        #expect(!kept(3, at: Generation(space: 0, user: 1)))
        #expect(!kept(3))
    }

    @Test func anAnswerIsKeptUntilItsDeadline() {
        let cache = ResultCache(capacityBytes: 8_000)
        let now = Generation(space: 0, user: 0)
        cache.store([1, 2, 3], for: [7], user: "u", at: now, until: 1_000)
        #expect(cache.answer(for: [7], at: now, now: 999) == [1, 2, 3])
        #expect(cache.answer(for: [7], at: now, now: 1_000) == nil)  // a memory expired at 1,000
        #expect(cache.answer(for: [7], at: now, now: 999) == nil)  // and the entry is gone
    }
}

/// How many writes the writer has seen acknowledged.
final class WritesSeen: Sendable {
    let count = Atomic<Int>(0)
}
