import ContextModel
import Dispatch
import Foundation
import Synchronization
import Testing
import VectorIndex

@testable import MemoryStore

/// Spaces created with `index: .hnsw`: the graph in the file, the planner, scoped recall.
@Suite struct HNSWSpaceTests {
    let temporary = TemporaryDatabase()
    let dimension = 16
    let hnsw = SpaceIndex.hnsw(HNSWParameters(M: 8, efConstruction: 64, efSearch: 64))

    /// Deterministic clustered vectors: 20 centres, points scattered around them.
    func vectors(_ count: Int, seed: UInt64) -> [[Float]] {
        clusteredVectors(count, dimension: dimension, seed: seed, centres: 20, spread: 0.3)
    }

    func open(index: SpaceIndex? = nil) throws -> MemoryStore {
        try MemoryStore(path: temporary.path, dimension: dimension, metric: .cosine, index: index ?? hnsw)
    }

    /// A write fails inside its transaction and reading the graph back fails too (here: another
    /// connection dropped the node table): the original error is thrown and every later write
    /// is refused, since the graph in memory may hold links the file never got.
    @Test func writesAreRefusedWhenTheGraphCannotBeReadBack() throws {
        let store = try open()
        try store.add([NewMemory(id: "a", user: "u", text: "t", vector: vectors(1, seed: 1)[0])])
        let other = try Database(path: temporary.path)
        try other.execute("DROP TABLE hnsw_nodes")
        other.close()
        #expect(
            throws: StoreError.sqlite(
                "SQLite error 1: no such table: hnsw_nodes (in: INSERT OR REPLACE INTO hnsw_nodes (slot, memory, links) VALUES (?1, ?2, ?3))"
            )
        ) {
            try store.add([NewMemory(id: "b", user: "u", text: "t", vector: vectors(1, seed: 2)[0])])
        }
        let refused = #expect(throws: StoreError.self) {
            try store.add([NewMemory(id: "c", user: "u", text: "t", vector: vectors(1, seed: 3)[0])])
        }
        guard case .sqlite(let message)? = refused else {
            Issue.record("not refused: \(String(describing: refused))")
            return
        }
        #expect(message.hasPrefix("writes are refused until the server restarts: the index could not be read back"))
        #expect(try store.get(user: "u", id: "b") == nil)
        store.close()
    }

    @Test func theGraphIsWrittenWithItsMemoriesAndLoadedBack() throws {
        var store = try open()
        let data = vectors(1200, seed: 7)
        for start in stride(from: 0, to: data.count, by: 300) {
            try store.add(
                (start..<start + 300).map {
                    NewMemory(id: "m\($0)", user: "u\($0 % 3)", session: "s\($0 % 4)", text: "t", vector: data[$0])
                })
        }
        #expect(store.stats().index == "hnsw")
        let queries = vectors(20, seed: 8)
        let before = try queries.map { try store.search(user: "u1", vector: $0, k: 10, ef: 32) }
        #expect(before.allSatisfy { $0.count == 10 })
        store.close()

        let report = try MemoryStore.check(path: temporary.path)
        #expect(
            report
                == CheckReport(
                    index: "hnsw", memories: 1200, nodes: 1200, problems: [], appliedIndex: 4, digest: report.digest,
                    keywordSegments: report.keywordSegments))

        store = try MemoryStore(path: temporary.path)  // the index comes from the file
        #expect(try store.digest() == (report.digest, 4))
        #expect(store.index == hnsw)
        #expect(store.count == 1200)
        let after = try queries.map { try store.search(user: "u1", vector: $0, k: 10, ef: 32) }
        #expect(after == before)  // the same answers from the graph read back from the file
        store.close()

        #expect(throws: StoreError.self) { try open(index: .flat) }
    }

    @Test func deletesReplacementsAndForgetKeepTheFileSound() throws {
        var store = try open()
        let data = vectors(900, seed: 9)
        try store.add((0..<900).map { NewMemory(id: "m\($0)", user: "u\($0 % 3)", text: "t", vector: data[$0]) })
        for i in stride(from: 0, to: 300, by: 2) { #expect(try store.delete(user: "u\(i % 3)", id: "m\(i)")) }
        // Ids of other users: u0 gets new memories under them; the others keep theirs.
        let moved = vectors(50, seed: 10)
        try store.add((0..<50).map { NewMemory(id: "m\(301 + 2 * $0)", user: "u0", text: "new", vector: moved[$0]) })
        #expect(try store.forget(user: "u2") > 0)
        let survivors = store.count
        store.close()

        let report = try MemoryStore.check(path: temporary.path)
        #expect(report.problems == [])
        #expect(report.memories == survivors && report.nodes == survivors)

        store = try open()
        let hits = try store.search(user: "u0", vector: moved[3], k: 5, ef: 64)
        #expect(hits.first?.memory.id == "m307")
        #expect(hits.first?.memory.text == "new")
        for query in vectors(10, seed: 11) {
            let found = try store.search(user: "u0", vector: query, k: 50).map(\.memory.id)
            #expect(found.allSatisfy { id in Int(id.dropFirst()).map { $0 >= 300 || $0 % 2 == 1 } ?? false })
            #expect(try store.search(user: "u2", vector: query, k: 5).isEmpty)
        }
        store.close()
    }

    /// A scope holding 0.1%, 1%, 10% or 50% of the space: min(k, matches) hits, always, and
    /// recall@10 >= 0.98 against the exact scan, whichever plan the planner picks.
    @Test func scopedSearchesNeverStarve() throws {
        let store = try open()
        let data = vectors(10_000, seed: 12)
        // Users by share of the space, spread over the clusters: 10, 100, 1,000 and 5,000 memories.
        let shares = [("tiny", 10), ("small", 100), ("tenth", 1000), ("half", 5000)]
        var owners: [String] = []
        for (user, count) in shares { owners += Array(repeating: user, count: count) }
        owners += Array(repeating: "rest", count: data.count - owners.count)
        var state: UInt64 = 99
        for i in stride(from: owners.count - 1, to: 0, by: -1) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            owners.swapAt(i, Int((state >> 33) % UInt64(i + 1)))
        }
        for start in stride(from: 0, to: data.count, by: 1000) {
            try store.add(
                (start..<start + 1000).map {
                    NewMemory(id: "m\($0)", user: owners[$0], session: "s\($0 % 5)", text: "t", vector: data[$0])
                })
        }
        let queries = vectors(30, seed: 13)
        for (user, count) in shares {
            var recall = 0.0
            for query in queries {
                let exact = try store.search(user: user, vector: query, k: 10, exact: true).map(\.memory.id)
                let found = try store.search(user: user, vector: query, k: 10).map(\.memory.id)
                #expect(found.count == min(10, count))
                recall += Double(Set(exact).intersection(found).count) / Double(exact.count)
            }
            #expect(recall / Double(queries.count) >= 0.98, "\(user)")
        }
        // Small scopes are scanned, the half of the space is walked; a session within it too.
        #expect(store.plan(user: "tiny") == .flat)
        #expect(store.plan(user: "small") == .flat)
        #expect(store.plan(user: "half", ef: 16) == .hnsw)
        #expect(store.plan(user: "half", ef: 16, exact: true) == .flat)
        #expect(store.plan(user: "half", filter: RowFilter(session: "s1")) == .flat)
        store.close()
    }

    /// Searches run while a writer links batches into the graph: every answer is complete and
    /// holds only memories that exist, and the file ends sound.
    @Test func searchesRunWhileTheGraphGrows() throws {
        let store = try open()
        let data = vectors(3000, seed: 14)
        try store.add((0..<1000).map { NewMemory(id: "m\($0)", user: "u", text: "t", vector: data[$0]) })
        let queries = vectors(50, seed: 15)
        let done = Atomic(false)
        let failures = Mutex<[String]>([])
        // Two reader threads search until the writer is done; the writer starts once both have
        // answered a first search, so the two really overlap.
        let readersStarted = DispatchSemaphore(value: 0)
        let finished = DispatchGroup()
        for reader in 0..<2 {
            finished.enter()
            Thread {
                defer { finished.leave() }
                var i = reader
                repeat {
                    let hits = (try? store.search(user: "u", vector: queries[i % queries.count], k: 10, ef: 32)) ?? []
                    let unknown = hits.filter { Int($0.memory.id.dropFirst()).map { !(0..<3000).contains($0) } ?? true }
                    if hits.count != 10 || !unknown.isEmpty || Set(hits.map(\.memory.id)).count != 10 {
                        failures.withLock { $0.append("search \(i): \(hits.map(\.memory.id))") }
                    }
                    if i < 2 { readersStarted.signal() }
                    i += 2
                } while !done.load(ordering: .acquiring)
            }.start()
        }
        readersStarted.wait()
        readersStarted.wait()
        for start in stride(from: 1000, to: 3000, by: 50) {
            do {
                try store.add(
                    (start..<start + 50).map { NewMemory(id: "m\($0)", user: "u", text: "t", vector: data[$0]) })
            } catch {
                failures.withLock { $0.append("add: \(error)") }
            }
        }
        done.store(true, ordering: .releasing)
        finished.wait()
        #expect(failures.withLock { $0 } == [])
        #expect(store.count == 3000)
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
    }

    /// The storage is a setting of the space; searches re-rank to exact scores.
    @Test func compactStorageIsStoredAndReRanked() throws {
        let compact = SpaceIndex.hnsw(HNSWParameters(M: 8, efConstruction: 64, efSearch: 64, storage: .float16))
        var store = try open(index: compact)
        let data = vectors(6000, seed: 16)
        try store.add((0..<6000).map { NewMemory(id: "m\($0)", user: "u", text: "t", vector: data[$0]) })
        store.close()
        store = try MemoryStore(path: temporary.path)
        #expect(store.index == compact)
        #expect(store.plan(user: "u") == .hnsw)
        var recall = 0.0
        let queries = Array(vectors(6020, seed: 16).suffix(20))  // new points of the same clusters
        for query in queries {
            let exact = try store.search(user: "u", vector: query, k: 5, exact: true)
            let found = try store.search(user: "u", vector: query, k: 5)
            recall += Double(Set(exact.map(\.memory.id)).intersection(found.map(\.memory.id)).count) / 5
            // Exact scores (the kernel and BLAS may differ in the last bit).
            for hit in found {
                #expect(abs(hit.score - (exact.first { $0.memory.id == hit.memory.id }?.score ?? hit.score)) < 1e-5)
            }
        }
        #expect(recall / Double(queries.count) >= 0.9)
        store.close()
    }

    /// A file whose graph does not match its memories: `check` names each problem and the store
    /// refuses to open it rather than serve a broken graph.
    @Test func checkFindsADamagedGraph() throws {
        let store = try open()
        let data = vectors(200, seed: 19)
        try store.add((0..<200).map { NewMemory(id: "m\($0)", user: "u", text: "t", vector: data[$0]) })
        store.close()
        let database = try Database(path: temporary.path)
        // One memory loses its node; another node's first link points at a slot that holds none.
        try database.execute("DELETE FROM hnsw_nodes WHERE slot = (SELECT max(slot) FROM hnsw_nodes)")
        let statement = try database.prepare("SELECT slot, links FROM hnsw_nodes WHERE slot = 0")
        #expect(try statement.step())
        var links = statement.int32s(at: 1)
        links[2] = 9999  // [level, count, first link, ...]
        let update = try database.prepare("UPDATE hnsw_nodes SET links = ?1 WHERE slot = 0")
        try update.bind(links, at: 1)
        try update.run()
        database.close()

        let report = try MemoryStore.check(path: temporary.path)
        #expect(report.memories == 200 && report.nodes == 199)
        #expect(report.problems.contains("1 memories have no graph node (e.g. row 200)"))
        #expect(report.problems.contains("node 0 links to 9999 on layer 0, which is not a node"))
        #expect(throws: StoreError.self) { try MemoryStore(path: temporary.path) }
    }
}
