import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// A long text's windows: scored with their memory, stored with it, gone with it.
@Suite struct WindowTests {
    let temporary = TemporaryDatabase()

    /// Unit vector along axis `axis` of 4, tilted a little towards axis 3.
    func axis(_ axis: Int, tilt: Float = 0.1) -> [Float] {
        var vector: [Float] = [0, 0, 0, tilt]
        vector[axis] = 1
        return vector
    }

    func ids(_ hits: [ScoredMemory]) -> [String] { hits.map(\.memory.id) }

    @Test(arguments: [Metric.cosine, .l2], ["flat", "hnsw"])
    func aMemoryScoresByItsBestWindow(metric: Metric, index: String) throws {
        let store = try MemoryStore(
            path: temporary.path, dimension: 4, metric: metric,
            index: index == "hnsw" ? .hnsw(HNSWParameters()) : .flat)
        try store.add([
            NewMemory(id: "long", user: "u", session: "s", text: "long", vector: axis(0), windows: [axis(1), axis(2)]),
            NewMemory(id: "near1", user: "u", session: "s", text: "a", vector: axis(1, tilt: 0.5)),
            NewMemory(id: "other", user: "u", session: "t", text: "b", vector: axis(0, tilt: 0.3)),
            NewMemory(id: "v", user: "v", text: "another user", vector: axis(1)),
        ])
        // Its second window is the best match for axis 1; its own vector the best for axis 0.
        let byWindow = try store.search(user: "u", vector: axis(1), k: 2)
        #expect(ids(byWindow) == ["long", "near1"])
        let exact = try store.search(user: "u", vector: axis(1), k: 2, exact: true)
        #expect(byWindow == exact)
        let single = try store.search(user: "u", vector: axis(2), k: 1)
        #expect(ids(single) == ["long"])
        #expect(abs(single[0].score - (metric == .l2 ? 0 : 1)) < 1e-5, "the window's own score")
        #expect(ids(try store.search(user: "u", vector: axis(0), k: 3)) == ["long", "other", "near1"])
        // Filters hold for windows, also after an update; other users never see them.
        #expect(ids(try store.search(user: "u", vector: axis(2), k: 1, filter: RowFilter(session: "t"))) == ["other"])
        _ = try store.update(user: "u", id: "long", MemoryChanges(session: .some("t")))
        #expect(ids(try store.search(user: "u", vector: axis(2), k: 1, filter: RowFilter(session: "t"))) == ["long"])
        #expect(ids(try store.search(user: "v", vector: axis(2), k: 5)) == ["v"])
        store.close()

        // Stored: a reopened space scores the same, and its file passes the check.
        let reopened = try MemoryStore(path: temporary.path)
        #expect(
            try reopened.search(user: "u", vector: axis(1), k: 2)
                == exact.map { hit in
                    var hit = hit
                    if hit.memory.id == "long" { hit.memory.session = "t" }
                    return hit
                })
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        // Replaced without windows, the memory loses them, in memory and on disk.
        try reopened.add([NewMemory(id: "long", user: "u", text: "short now", vector: axis(0))])
        let replaced = try #require(
            try reopened.search(user: "u", vector: axis(2), k: 3).first { $0.memory.id == "long" })
        #expect(abs(replaced.score - (metric == .l2 ? 0 : 1)) > 0.5, "scored by its own vector only")
        #expect(try windowRows() == 0)
        reopened.close()
    }

    /// Against brute force: each memory's best score over its vector and windows, many memories
    /// with up to three windows each, small k (so the window rows searched are a bound, not all).
    @Test func theMergeIsExactForTheFlatIndex() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 8, metric: .dot)
        var generator = SystemRandomNumberGenerator()
        func random() -> [Float] { (0..<8).map { _ in Float.random(in: -1...1, using: &generator) } }
        var vectors: [String: [[Float]]] = [:]
        let batch = (0..<60).map { n in
            // A memory's windows lie close together, so its rows crowd the top of the window
            // ranking: what a search that took only k window rows would get wrong.
            let centre = random()
            let windows = (0..<(n % 4)).map { _ in centre.map { $0 + Float.random(in: -0.05...0.05, using: &generator) }
            }
            let memory = NewMemory(id: "m\(n)", user: "u", text: "t", vector: random(), windows: windows)
            vectors["m\(n)"] = [memory.vector!] + windows
            return memory
        }
        try store.add(batch)
        for _ in 0..<20 {
            let query = random()
            func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
            let best = vectors.mapValues { $0.map { dot($0, query) }.max()! }
            for k in [1, 3, 10] {
                let expected = best.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(k)
                let found = try store.search(user: "u", vector: query, k: k)
                #expect(ids(found) == expected.map(\.key))
                for (hit, truth) in zip(found, expected) { #expect(abs(hit.score - truth.value) < 1e-4) }
            }
        }
        store.close()
    }

    @Test func windowsGoWithDeleteAndForget() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 4, metric: .cosine)
        func long(_ id: String, session: String) -> NewMemory {
            NewMemory(
                id: id, user: "u", session: session, text: id, vector: axis(0), windows: [axis(1), axis(2), axis(3)])
        }
        try store.add([
            long("a", session: "s1"), long("b", session: "s1"), long("c", session: "s2"), long("d", session: "s3"),
        ])
        #expect(try windowRows() == 12)
        #expect(try store.delete(user: "u", id: "a"))
        #expect(try windowRows() == 9)
        #expect(try store.forget(user: "u", filter: MemoryFilter(rows: RowFilter(session: "s1"))) == 1)
        #expect(try windowRows() == 6)
        #expect(ids(try store.search(user: "u", vector: axis(2), k: 5)) == ["c", "d"])
        #expect(try store.forget(user: "u") == 2)
        #expect(try windowRows() == 0)
        #expect(try store.search(user: "u", vector: axis(2), k: 5).isEmpty)
        #expect(store.stats().memories == 0)
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).isSound)
    }

    @Test func aWindowOfAnotherDimensionIsRefused() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 4)
        #expect(throws: StoreError.wrongDimension(expected: 4, got: 3)) {
            try store.add([NewMemory(id: "x", user: "u", text: "x", vector: axis(0), windows: [[1, 0, 0]])])
        }
        #expect(store.count == 0)
        store.close()
    }

    /// Rows in the windows table, read beside the store.
    func windowRows() throws -> Int64 {
        let database = try Database(path: temporary.path, readOnly: true)
        defer { database.close() }
        return try database.scalarInt("SELECT count(*) FROM memory_windows")
    }
}
