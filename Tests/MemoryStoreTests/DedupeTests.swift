import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// Duplicates caught at the door (`dedupe`): what counts as the same text, as a near vector, which
/// memories an add may fold into, and the count, also after the file is opened again.
@Suite struct DedupeTests {
    let temporary = TemporaryDatabase()

    func memory(
        _ text: String, id: String? = nil, user: String = "u", vector: [Float] = [1, 0, 0], ttl: Int64? = nil,
        dedupe: Dedupe? = .exact, supersedes: String? = nil
    ) -> NewMemory {
        NewMemory(
            id: id, user: user, text: text, createdAt: 1_700_000_000_000, vector: vector, ttl: ttl,
            supersedes: supersedes, dedupe: dedupe)
    }

    func add(_ store: MemoryStore, _ items: [NewMemory]) throws -> MemoryStore.AddOutcome {
        guard case .added(let outcome) = try store.apply(try store.resolve(items)) else {
            Issue.record("not an add")
            return MemoryStore.AddOutcome()
        }
        return outcome
    }

    @Test func theSameTextOnceNormalized() {
        #expect(Dedupe.sameText("I like tea", "  i LIKE\t\n tea  "))
        #expect(Dedupe.sameText("", "   "))
        #expect(Dedupe.sameText("Café", "café"))  // ASCII letters fold, the rest is as given
        #expect(!Dedupe.sameText("ÉTÉ", "été"))
        #expect(!Dedupe.sameText("caf\u{E9}", "cafe\u{301}"))
        #expect(!Dedupe.sameText("tea", "teas"))
        #expect(!Dedupe.sameText("a b", "ab"))
        #expect(!Dedupe.sameText("a\u{0}b", "a b"))
    }

    @Test func anExactDuplicateStoresNothingAndIsCounted() throws {
        var store = try MemoryStore(path: temporary.path, dimension: 3)
        #expect(try add(store, [memory("I like tea", id: "first")]).ids == ["first"])
        #expect(
            try add(store, [memory("  i LIKE tea ", vector: [0, 1, 0])])
                == MemoryStore.AddOutcome(duplicates: [MemoryStore.Duplicate(item: 0, id: "first")]))
        // Without dedupe, or for another user, it is stored.
        #expect(try add(store, [memory("I like tea", id: "again", dedupe: nil)]).ids == ["again"])
        #expect(try add(store, [memory("I like tea", id: "v1", user: "v")]).ids == ["v1"])
        // The oldest of several is the one named; within a batch, an earlier item counts.
        let batch = try add(store, [memory("I like tea"), memory("New fact", id: "n1"), memory("new  FACT")])
        #expect(batch.ids == ["n1"])
        #expect(
            batch.duplicates == [
                MemoryStore.Duplicate(item: 0, id: "first"), MemoryStore.Duplicate(item: 2, id: "n1"),
            ])
        #expect(store.count == 4 && store.stats().duplicates == 3)
        store.close()
        store = try MemoryStore(path: temporary.path)
        #expect(store.stats().duplicates == 3)
        store.close()
    }

    /// A memory that no longer holds, or goes before the item would, is not one to fold into.
    @Test func onlyAMemoryThatLastsAsLongIsADuplicate() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        _ = try add(store, [memory("Lisbon", id: "old", dedupe: nil)])
        _ = try add(store, [memory("Porto", id: "new", dedupe: nil, supersedes: "old")])
        // Moving back: the superseded Lisbon is history, not a duplicate.
        #expect(try add(store, [memory("Lisbon", id: "back")]).ids == ["back"])
        _ = try add(store, [memory("brief", id: "brief", ttl: 60, dedupe: nil)])
        // An item that would last longer is stored; one that expires no later folds into it.
        #expect(try add(store, [memory("brief", id: "lasting")]).ids == ["lasting"])
        let short = try add(store, [memory("BRIEF", ttl: 30)])
        #expect(short.duplicates.map(\.id) == ["brief"] || short.duplicates.map(\.id) == ["lasting"])
        #expect(throws: StoreError.invalidValue("item 0: a memory that supersedes another is not deduplicated")) {
            try store.add([memory("Paris", supersedes: "new")])
        }
        store.close()
    }

    @Test func aNearDuplicateIsAVectorThisSimilar() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        _ = try add(store, [memory("a", id: "a", vector: [1, 0, 0], dedupe: nil)])
        // cos = 0.995 and 0.894.
        let close = try add(store, [memory("b", vector: [1, 0.1, 0], dedupe: .near(0.95))])
        #expect(close.duplicates == [MemoryStore.Duplicate(item: 0, id: "a")])
        #expect(try add(store, [memory("c", id: "c", vector: [1, 0.5, 0], dedupe: .near(0.95))]).ids == ["c"])
        #expect(try add(store, [memory("d", vector: [1, 0.5, 0], dedupe: .near(0.99))]).duplicates.map(\.id) == ["c"])
        // In one batch.
        let batch = try add(
            store,
            [
                memory("e", id: "e", vector: [0, 0, 1], dedupe: .near(0.9)),
                memory("f", vector: [0, 0.1, 1], dedupe: .near(0.9)),
            ])
        #expect(batch.ids == ["e"] && batch.duplicates == [MemoryStore.Duplicate(item: 1, id: "e")])
        store.close()
        let dot = try MemoryStore(path: temporary.path + "-dot", dimension: 3, metric: .dot)
        #expect(throws: StoreError.invalidValue("item 0: a near dedupe compares cosine similarity; this space is dot"))
        {
            try dot.add([memory("x", dedupe: .near(0.9))])
        }
        dot.close()
        let many = try MemoryStore(path: temporary.path + "-many", dimension: 3)
        #expect(
            throws: StoreError.tooCostly(
                "at most 16 items of a batch may ask for a near dedupe, not 17; split it")
        ) { try many.add((0..<17).map { memory("n\($0)", dedupe: .near(0.9)) }) }
        many.close()
    }

    /// A batch of 10,000 items asking for an exact dedupe against a user of 20,000 memories: every
    /// item is found (by fingerprint, the user's texts read once for the command).
    @Test func manyExactItemsReadTheUsersTextsOnce() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        for part in 0..<2 {
            try store.add((0..<10_000).map { memory("stored text \(part * 10_000 + $0)", dedupe: nil) })
        }
        let outcome = try add(store, (0..<10_000).map { memory("STORED TEXT \($0 * 2)") })
        #expect(outcome.ids.isEmpty && outcome.duplicates.count == 10_000)
        // Item 1 is "stored text 2", the third memory stored.
        let first = try store.list(ListRequest(user: "u", limit: 3)).memories.map(\.id)
        #expect(outcome.duplicates.prefix(2).map(\.id) == [first[0], first[2]])
        store.close()
    }

    /// Replayed, the same commands find the same duplicates and leave the same rows.
    @Test func aReplayFindsTheSameDuplicates() throws {
        let first = try MemoryStore(path: temporary.path, dimension: 3)
        let commands = try [
            [memory("tea", id: "t")], [memory("TEA"), memory("coffee", id: "c", vector: [0, 1, 0])],
            [memory("cafe", vector: [0, 1, 0.05], dedupe: .near(0.95))],
        ].map { try first.resolve($0) }
        let outcomes = try commands.map { try first.apply($0) }
        let second = try MemoryStore(path: temporary.path + "-replay", dimension: 3)
        #expect(try commands.map { try second.apply(WriteCommand(decoding: $0.encoded())) } == outcomes)
        #expect(try first.digest().digest == second.digest().digest)
        first.close()
        second.close()
    }
}
