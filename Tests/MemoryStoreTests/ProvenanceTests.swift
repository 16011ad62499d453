import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// Where a memory came from (`sources`): kept exactly, through every read and a reopening, and a
/// forget or delete `withDerived` takes the memories derived from what it removes, on both
/// indexes, in one transaction.
@Suite struct ProvenanceTests {
    let temporary = TemporaryDatabase()

    static let indexes: [SpaceIndex] = [
        .flat, .hnsw(HNSWParameters(M: 8, efConstruction: 32, efSearch: 32)),
    ]

    func memory(
        _ id: String, user: String = "u", session: String? = nil, sources: [String] = [], metadata: String = "{}",
        vector: [Float] = [1, 0, 0]
    ) -> NewMemory {
        NewMemory(
            id: id, user: user, session: session, text: "memory \(id)", createdAt: 1_700_000_000_000,
            metadata: metadata,
            vector: vector, sources: sources)
    }

    @Test func sourcesComeBackExactlyFromEveryRead() throws {
        var store = try MemoryStore(path: temporary.path, dimension: 3)
        let sources = ["turn\u{0}1", "doc:7#p3", "caf\u{E9}", "cafe\u{301}"]
        try store.add([memory("f", sources: sources, metadata: #"{"pinned":true}"#), memory("plain")])
        for reopened in [false, true] {
            if reopened {
                store.close()
                store = try MemoryStore(path: temporary.path)
            }
            #expect(try store.get(user: "u", id: "f")?.sources == sources)
            #expect(try store.get(user: "u", id: "plain")?.sources == [])
            let hits = try store.search(user: "u", vector: [1, 0, 0], k: 2, exact: true)
            #expect(hits.map(\.memory.sources).sorted { $0.count < $1.count } == [[], sources])
            #expect(try store.list(ListRequest(user: "u")).memories.map(\.sources) == [sources, []])
            #expect(try store.pinned(user: "u", limit: 5).map(\.sources) == [sources])
        }
        // Replacing a memory replaces its sources; with none, it has none.
        try store.add([memory("f", sources: ["other"])])
        #expect(try store.get(user: "u", id: "f")?.sources == ["other"])
        try store.add([memory("f")])
        #expect(try store.get(user: "u", id: "f")?.sources == [])
        // An import run again: other sources are other content.
        #expect(try store.addIfAbsent([memory("f", sources: ["x"])]) == MemoryStore.AddOutcome(conflicts: [0]))
        #expect(try store.addIfAbsent([memory("f")]) == MemoryStore.AddOutcome(skipped: [0]))
        #expect(throws: StoreError.invalidValue("a memory names at most 64 sources, not 65")) {
            try store.add([memory("g", sources: (0...64).map { "s\($0)" })])
        }
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
    }

    @Test(arguments: indexes)
    func forgettingATurnTakesWhatWasDerivedFromIt(index: SpaceIndex) throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3, index: index)
        try store.add([
            memory("t1", session: "s1", vector: [1, 0, 0]), memory("t2", session: "s1", vector: [0, 1, 0]),
            memory("t3", session: "s2", vector: [0, 0, 1]),
            memory("f1", sources: ["t1"], vector: [1, 1, 0]),
            memory("f2", sources: ["doc:7", "t2"], vector: [0, 1, 1]),
            memory("f3", sources: ["t3"], vector: [1, 0, 1]), memory("f4", sources: ["doc:9"], vector: [1, 1, 1]),
            memory("g", user: "v", sources: ["t1"]),
        ])
        // Without the flag, derived memories stay.
        #expect(try store.forget(user: "u", filter: MemoryFilter(rows: RowFilter(session: "none"))) == 0)
        #expect(
            try store.forget(user: "u", filter: MemoryFilter(rows: RowFilter(session: "s1")), withDerived: true) == 4)
        let left = try store.list(ListRequest(user: "u")).memories.map(\.id)
        #expect(left == ["t3", "f3", "f4"])
        // Another user's memory naming the same id is another user's.
        #expect(try store.get(user: "v", id: "g") != nil)
        // Gone from every index: searches find only what is left.
        let found = try store.search(user: "u", vector: [1, 1, 0], k: 10, exact: index == .flat).map(\.memory.id)
        #expect(Set(found) == ["t3", "f3", "f4"])
        #expect(
            try store.apply(.delete(MemoryRef(user: "u", id: "t3"), withDerived: true)) == .deleted(true, derived: 1))
        #expect(try store.list(ListRequest(user: "u")).memories.map(\.id) == ["f4"])
        #expect(try store.apply(.delete(MemoryRef(user: "u", id: "t3"), withDerived: true)) == .deleted(false))
        let digest = try store.digest(user: "u").digest
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        let reopened = try MemoryStore(path: temporary.path)
        #expect(try reopened.digest(user: "u").digest == digest)
        #expect(reopened.count == 2)
        reopened.close()
    }
}

/// `verify`: every place a memory lives agrees with the rows, checked for every user.
@Suite struct VerifyTests {
    let temporary = TemporaryDatabase()

    @Test(arguments: ProvenanceTests.indexes)
    func verifyNamesWhatDisagrees(index: SpaceIndex) throws {
        var store = try MemoryStore(path: temporary.path, dimension: 3, index: index)
        try store.add([
            NewMemory(id: "a", user: "ana", text: "tea", vector: [1, 0, 0]),
            NewMemory(id: "b", user: "ana", text: "coffee", vector: [0, 1, 0], sources: ["a"]),
            NewMemory(id: "c", user: "bo", text: "juice", vector: [0, 0, 1]),
        ])
        #expect(try store.verify() == Verification(users: 2, memories: 3))
        #expect(try store.forget(user: "bo") == 1)
        #expect(try store.verify() == Verification(users: 1, memories: 2))
        store.close()
        // Rows lost and left behind the store's back.
        let database = try Database(path: temporary.path)
        try database.execute("DELETE FROM memory_terms WHERE rowid = (SELECT seq FROM memories WHERE id = 'a')")
        try database.execute(
            "INSERT INTO memory_terms (rowid, scope, speaker, text, day) VALUES (999, 'x', '', 'left behind', '')")
        try database.execute("INSERT INTO memory_sources (memory, position, source) VALUES (998, 0, 'x')")
        database.close()
        store = try MemoryStore(path: temporary.path)
        #expect(
            try store.verify().problems == [
                "user 'ana' has 2 memories and 1 keyword rows", "1 rows of memory_terms without their memory",
                "1 rows of memory_sources without their memory",
            ])
        store.close()
    }
}
