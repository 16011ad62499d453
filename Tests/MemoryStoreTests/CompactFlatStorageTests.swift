import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// Spaces whose flat index keeps float16 or int8 codes (`flatStorage`): searches, reads and
/// writes give what a float32 space gives, for the vectors come from the file.
@Suite struct CompactFlatStorageTests {
    let temporary = TemporaryDatabase()
    let dimension = 24

    /// Clustered vectors of three users (some large enough for every scan path), deterministic.
    func memories(count: Int = 2600, seed: UInt64 = 5) -> [NewMemory] {
        let vectors = clusteredVectors(count, dimension: dimension, seed: seed, centres: 12, spread: 0.4)
        return (0..<count).map { i -> NewMemory in
            let user = i % 5 == 0 ? "small" : i % 2 == 0 ? "even" : "odd"
            return NewMemory(
                id: "m\(i)", user: user, session: "s\(i % 3)", text: "memory \(i)",
                createdAt: 1_700_000_000_000 + Int64(i), metadata: "{\"topic\": \"t\(i % 4)\"}",
                vector: vectors[i])
        }
    }

    func open(_ name: String, _ storage: VectorStorage?, index: SpaceIndex? = nil, metric: Metric = .cosine)
        throws -> MemoryStore
    {
        try MemoryStore(
            path: temporary.folder + "/\(name).db", dimension: dimension, metric: metric, index: index,
            flatStorage: storage)
    }

    /// Each user's hits for each query: ids and scores.
    func results(_ store: MemoryStore, _ queries: [[Float]], filter: RowFilter = RowFilter(), k: Int = 10) throws
        -> [[(id: String, score: Float)]]
    {
        try ["small", "even", "odd"].flatMap { user in
            try queries.map { query in
                try store.search(user: user, vector: query, k: k, filter: filter).map { ($0.memory.id, $0.score) }
            }
        }
    }

    /// The same ids in the same order, and the same scores within 1e-5 (a float32 space scans a
    /// small user with BLAS, and for l2 takes the distance from `|q|^2 - (2 x.q - |x|^2)`: its
    /// last bits differ from the pair kernel's).
    func expectSame(_ a: [[(id: String, score: Float)]], _ b: [[(id: String, score: Float)]]) {
        #expect(a.map { $0.map(\.id) } == b.map { $0.map(\.id) })
        for (x, y) in zip(a.joined(), b.joined()) { #expect(abs(x.score - y.score) < 1e-5, "\(x) \(y)") }
    }

    /// The same hits and the same scores: candidates are rescored with the float32 vectors the
    /// file holds.
    @Test(arguments: [VectorStorage.float16, .int8], [Metric.cosine, .l2])
    func searchesAnswerAsAFloat32SpaceDoes(storage: VectorStorage, metric: Metric) throws {
        let reference = try open("f32", nil, metric: metric)
        let compact = try open("compact", storage, metric: metric)
        defer {
            reference.close()
            compact.close()
        }
        let batch = memories()
        for part in stride(from: 0, to: batch.count, by: 500) {
            let slice = Array(batch[part..<min(part + 500, batch.count)])
            _ = try reference.add(slice)
            _ = try compact.add(slice)
        }
        for id in stride(from: 0, to: batch.count, by: 9) {
            _ = try reference.delete(user: batch[id].user, id: "m\(id)")
            _ = try compact.delete(user: batch[id].user, id: "m\(id)")
        }
        let queries = memories(count: 6, seed: 99).map(\.vector!)
        expectSame(try results(compact, queries), try results(reference, queries))
        expectSame(try results(compact, queries, k: 1), try results(reference, queries, k: 1))
        let filter = RowFilter(session: "s2")
        expectSame(try results(compact, queries, filter: filter), try results(reference, queries, filter: filter))
        // Metadata conditions choose the rows through SQL; a compact index rescores only the
        // best of them by its codes (here a quarter of each user's rows pass).
        let topic = MemoryFilter(metadata: [MetadataCondition(key: "topic", test: .oneOf([.string("t1")]))])
        for user in ["small", "even", "odd"] {
            for query in queries {
                let request = SearchRequest(user: user, vector: query, mode: .vector, k: 10, filter: topic)
                let (got, expected) = (try compact.search(request), try reference.search(request))
                #expect(got.map(\.memory.id) == expected.map(\.memory.id))
                for (a, b) in zip(got, expected) { #expect(abs(a.score - b.score) < 1e-5) }
            }
        }
        // The ground truth too.
        for user in ["small", "odd"] {
            #expect(
                try compact.search(user: user, vector: queries[0], k: 7, exact: true).map(\.memory.id)
                    == reference.search(user: user, vector: queries[0], k: 7, exact: true).map(\.memory.id))
        }
        // A compact row costs its code, not 4 bytes a component.
        #expect(compact.stats().bytesInMemory < reference.stats().bytesInMemory)
    }

    /// An exact search of a compact space reads every row of the user from the file: it is
    /// stopped past the statement time limit (here 0 ms) rather than running unbounded.
    @Test func exactReadsOfTheFileAreBoundedInTime() throws {
        let store = try MemoryStore(
            path: temporary.folder + "/space.db", dimension: dimension, flatStorage: .int8, statementTimeLimit: 0)
        defer { store.close() }
        _ = try store.add(memories(count: 1000))
        let query = memories(count: 1, seed: 3)[0].vector!
        #expect(try store.search(user: "even", vector: query, k: 5).count == 5)
        #expect(throws: StoreError.tooCostly("reading 400 vectors from the file ran past 0 ms and was stopped")) {
            try store.search(user: "even", vector: query, k: 5, exact: true)
        }
    }

    /// Reads return the vector stored, byte for byte, from the file.
    @Test(arguments: [VectorStorage.float16, .int8])
    func readsReturnTheStoredVector(storage: VectorStorage) throws {
        let store = try open("space", storage, metric: .dot)
        let vector: [Float] = (0..<dimension).map { Float($0) * 1.000_1 + 1e-7 }
        _ = try store.add([NewMemory(id: "a", user: "u", session: "s", text: "t", vector: vector)])
        #expect(try store.get(user: "u", id: "a")?.vector == vector)
        #expect(try store.get(user: "u", ids: ["a", "none"], withVector: true).map { $0?.vector } == [vector, nil])
        #expect(try store.vectors(user: "u", ids: ["none", "a"]) == [nil, vector])
        #expect(try store.get(user: "v", id: "a") == nil)
        // An add that repeats the memory is skipped; one with another vector is a conflict.
        var changed = vector
        changed[3] = 2
        let same = try store.addIfAbsent([NewMemory(id: "a", user: "u", session: "s", text: "t", vector: vector)])
        #expect(same.skipped == [0])
        let other = try store.addIfAbsent([NewMemory(id: "a", user: "u", session: "s", text: "t", vector: changed)])
        #expect(other.conflicts == [0])
        store.close()
    }

    /// A near duplicate is found through the codes and the file's vectors.
    @Test func nearDuplicatesAreFound() throws {
        let store = try open("space", .int8)
        defer { store.close() }
        _ = try store.add(memories(count: 600))
        var near = memories(count: 600)[40]
        near.id = "again"
        near.dedupe = .near(0.999)
        let outcome = try store.addIfAbsent([near])
        #expect(outcome.duplicates.map(\.id) == ["m40"])
    }

    /// The setting is the space's: kept when the file is opened again without one, replaced when
    /// another is given, and the searches answer the same either way.
    @Test func theSettingIsKeptAndCanBeChanged() throws {
        let path = temporary.folder + "/space.db"
        var store = try MemoryStore(path: path, dimension: dimension, flatStorage: .float16)
        _ = try store.add(memories(count: 300))
        let query = memories(count: 1, seed: 7)[0].vector!
        let expected = try store.search(user: "even", vector: query, k: 5).map(\.memory.id)
        store.close()
        store = try MemoryStore(path: path)
        #expect(store.flatStorage == .float16)
        #expect(try store.search(user: "even", vector: query, k: 5).map(\.memory.id) == expected)
        store.close()
        store = try MemoryStore(path: path, flatStorage: .int8)
        #expect(store.flatStorage == .int8)
        #expect(try store.search(user: "even", vector: query, k: 5).map(\.memory.id) == expected)
        store.close()
        store = try MemoryStore(path: path)
        #expect(store.flatStorage == .int8)
        #expect(store.stats().flatStorage == "int8")
        store.close()
        store = try MemoryStore(path: path, flatStorage: .float32)
        #expect(store.flatStorage == .float32)
        #expect(try store.search(user: "even", vector: query, k: 5).map(\.memory.id) == expected)
        store.close()
    }

    /// An HNSW space with a compact flat index: the graph's walk is rescored from the file.
    @Test func anHNSWSpaceRescoresFromTheFile() throws {
        // A narrow walk, so that users of 600 rows are walked rather than scanned.
        let hnsw = SpaceIndex.hnsw(HNSWParameters(M: 8, efConstruction: 64, efSearch: 4, storage: .int8))
        let reference = try open("f32", nil, index: hnsw)
        let compact = try open("compact", .int8, index: hnsw)
        defer {
            reference.close()
            compact.close()
        }
        let batch = memories(count: 1500)
        _ = try reference.add(batch)
        _ = try compact.add(batch)
        let queries = memories(count: 4, seed: 31).map(\.vector!)
        #expect(compact.plan(user: "even") == .hnsw)
        expectSame(try results(compact, queries), try results(reference, queries))
    }
}
