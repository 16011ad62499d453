import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// Facts that change: `supersedes` closes a memory in the write that adds its successor, and
/// every read sees what holds now, what held at a time (`asOf`), or all of it, on both indexes
/// and through SQL, also after the file is opened again.
@Suite struct ValidityTests {
    let temporary = TemporaryDatabase()
    static let day: Int64 = 86_400_000
    static let start: Int64 = 1_700_000_000_000

    static let indexes: [SpaceIndex] = [
        .flat, .hnsw(HNSWParameters(M: 8, efConstruction: 32, efSearch: 32)),
    ]

    func fact(
        _ id: String, _ text: String, day: Int64, supersedes: String? = nil, validFrom: Int64? = nil,
        session: String? = "s", metadata: String = "{}", vector: [Float] = [1, 0, 0]
    ) -> NewMemory {
        NewMemory(
            id: id, user: "u", session: session, text: text, createdAt: Self.start + day * Self.day,
            metadata: metadata, vector: vector, validFrom: validFrom, supersedes: supersedes)
    }

    func at(_ day: Int64) -> Int64 { Self.start + day * Self.day }

    /// Every way a read can find `u`'s memories by "city", seeing `view`: each search mode,
    /// the list, and the pinned facts, as ids in one order.
    func seen(_ store: MemoryStore, _ view: ValidityView) throws -> [String: [String]] {
        var found: [String: [String]] = [:]
        for mode in SearchMode.allCases {
            var request = SearchRequest(
                user: "u", text: "city", vector: [1, 0, 0], mode: mode, k: 10, exact: mode == .vector)
            request.validity = view
            found[mode.rawValue] = try store.search(request).map(\.memory.id).sorted()
        }
        found["list"] = try store.list(ListRequest(user: "u", validity: view)).memories.map(\.id)
        found["pinned"] = try store.pinned(user: "u", limit: 10, validity: view).map(\.id)
        return found
    }

    func expectSeen(
        _ store: MemoryStore, _ view: ValidityView, _ ids: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let found = try seen(store, view)
        for (read, got) in found.sorted(by: { $0.key < $1.key }) {
            #expect(got == ids, "\(read) as \(view)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: indexes)
    func aChainOfThreeIsSeenAtEveryTime(index: SpaceIndex) throws {
        var store = try MemoryStore(path: temporary.path, dimension: 3, index: index)
        let pinned = #"{"pinned":true}"#
        try store.add([fact("lisbon", "my city is Lisbon", day: 0, metadata: pinned)])
        try store.add([fact("porto", "my city is Porto", day: 10, supersedes: "lisbon", metadata: pinned)])
        try store.add([fact("paris", "my city is Paris", day: 20, supersedes: "porto", metadata: pinned)])
        for reopened in [false, true] {
            if reopened {
                store.close()
                store = try MemoryStore(path: temporary.path)
            }
            try expectSeen(store, .current, ["paris"])
            try expectSeen(store, .asOf(at(0) - 1), [])
            try expectSeen(store, .asOf(at(0)), ["lisbon"])
            try expectSeen(store, .asOf(at(10) - 1), ["lisbon"])
            // A predecessor's end is its successor's start, and an end is not part of it.
            try expectSeen(store, .asOf(at(10)), ["porto"])
            try expectSeen(store, .asOf(at(19)), ["porto"])
            try expectSeen(store, .asOf(at(20)), ["paris"])
            let all = try seen(store, .all)
            #expect(all["list"] == ["lisbon", "porto", "paris"])
            #expect(all["vector"] == ["lisbon", "paris", "porto"])
            // Each memory names the links of its chain.
            let memories = try store.list(ListRequest(user: "u", validity: .all)).memories
            #expect(
                memories.map(\.validity) == [
                    Validity(to: at(10), supersededBy: "porto"),
                    Validity(to: at(20), supersedes: "lisbon", supersededBy: "paris"),
                    Validity(supersedes: "porto"),
                ])
            #expect(try store.get(user: "u", id: "lisbon")?.validity == memories[0].validity)
        }
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
    }

    /// A successor may begin at a time of its own (`valid_from`): the predecessor ends then, and
    /// a memory that begins later than now is not seen now.
    @Test func aStartOfItsOwnIsWherePredecessorsEnd() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        let now = Clock.nowMilliseconds()
        let pinned = #"{"pinned":true}"#
        try store.add([
            NewMemory(
                id: "old", user: "u", text: "city Lisbon", createdAt: now - 10 * Self.day, metadata: pinned,
                vector: [1, 0, 0])
        ])
        try store.add([
            NewMemory(
                id: "new", user: "u", text: "city Porto", createdAt: now - Self.day, metadata: pinned,
                vector: [1, 0, 0], validFrom: now - 5 * Self.day, supersedes: "old")
        ])
        #expect(try store.get(user: "u", id: "old")?.validity == Validity(to: now - 5 * Self.day, supersededBy: "new"))
        // Stored one day ago, holding since five: as of three days ago the store did not know it yet.
        try expectSeen(store, .asOf(now - 3 * Self.day), [])
        try expectSeen(store, .asOf(now - 6 * Self.day), ["old"])
        try expectSeen(store, .current, ["new"])
        try store.add([
            NewMemory(
                id: "later", user: "u", text: "city Paris", createdAt: now, metadata: pinned, vector: [1, 0, 0],
                validFrom: now + Self.day, supersedes: "new")
        ])
        // Porto holds until tomorrow; Paris from then.
        try expectSeen(store, .current, ["new"])
        try expectSeen(store, .asOf(now + 2 * Self.day), ["later"])
        store.close()
    }

    @Test func aSuccessionThatCannotBeIsRefusedAndNothingIsStored() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([fact("a", "city A", day: 0)])
        try store.add([fact("b", "city B", day: 5, supersedes: "a")])
        let before = try store.digest(user: "u").digest
        let refusals: [([NewMemory], StoreError)] = [
            (
                [fact("x", "x", day: 6), fact("y", "y", day: 6, supersedes: "nobody")],
                .notFound("item 1 supersedes 'nobody', which user 'u' does not have")
            ),
            ([fact("z", "z", day: 6, supersedes: "z")], .invalidValue("item 0: 'z' cannot supersede itself")),
            (
                [fact("c", "c", day: 6, supersedes: "a")],
                .invalidValue("item 0: 'a' was already superseded by 'b'; supersede that one")
            ),
            (
                [fact("c", "c", day: 6, supersedes: "b"), fact("d", "d", day: 6, supersedes: "b")],
                .invalidValue("items 0 and 1 both supersede 'b'")
            ),
            (
                [fact("c", "c", day: 4, supersedes: "b")],
                .invalidValue("item 0 begins at \(at(4)), before 'b' does (\(at(5))); it cannot supersede it")
            ),
            (
                [fact("b", "city B", day: 5, supersedes: "x")],
                .invalidValue("item 0: 'b' supersedes 'a'; it cannot supersede 'x' instead")
            ),
        ]
        for (batch, error) in refusals {
            #expect(throws: error) { try store.add(batch) }
        }
        #expect(try store.digest(user: "u").digest == before)
        // Another user's memory of that id is not this user's.
        #expect(throws: StoreError.notFound("item 0 supersedes 'a', which user 'v' does not have")) {
            try store.add([NewMemory(user: "v", text: "t", vector: [1, 0, 0], supersedes: "a")])
        }
        store.close()
    }

    /// Adding a memory again (a retry, an import run twice) neither reopens it nor drops its
    /// predecessor; an `ifAbsent` retry of the successor is skipped.
    @Test func addingAgainKeepsTheChain() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([fact("a", "city A", day: 0)])
        try store.add([fact("b", "city B", day: 5, supersedes: "a")])
        let closed = Validity(to: at(5), supersededBy: "b")
        try store.add([fact("a", "city A again", day: 0)])
        #expect(try store.get(user: "u", id: "a")?.validity == closed)
        try store.add([fact("b", "city B", day: 5)])
        #expect(try store.get(user: "u", id: "b")?.validity == Validity(supersedes: "a"))
        let retry = try store.addIfAbsent([fact("b", "city B", day: 5, supersedes: "a")])
        #expect(retry == MemoryStore.AddOutcome(skipped: [0]))
        #expect(try store.get(user: "u", id: "a")?.validity == closed)
        // A deleted successor frees its predecessor to be superseded again (it stays closed
        // until then: deleting never reopens).
        #expect(try store.delete(user: "u", id: "b"))
        try expectSeen(store, .current, [])
        try store.add([fact("c", "city C", day: 6, supersedes: "a")])
        #expect(try store.get(user: "u", id: "a")?.validity == Validity(to: at(6), supersededBy: "c"))
        store.close()
    }

    /// A history in one batch (as an import of it is): a predecessor earlier in the batch is
    /// stored, then closed, in the same transaction.
    @Test func aHistoryInOneBatch() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        let pinned = #"{"pinned":true}"#
        try store.add([
            fact("a", "city A", day: 0, metadata: pinned),
            fact("b", "city B", day: 1, supersedes: "a", metadata: pinned),
            fact("c", "city C", day: 2, supersedes: "b", metadata: pinned),
        ])
        try expectSeen(store, .current, ["c"])
        try expectSeen(store, .asOf(at(1)), ["b"])
        #expect(try store.get(user: "u", id: "b")?.validity == Validity(to: at(2), supersedes: "a", supersededBy: "c"))
        #expect(throws: StoreError.notFound("item 0 supersedes 'e', which user 'u' does not have")) {
            try store.add([fact("d", "d", day: 3, supersedes: "e"), fact("e", "e", day: 3)])
        }
        store.close()
    }

    /// A kept answer about what holds now must not outlive a bound ahead: while one lies ahead,
    /// nothing is kept; past ones (the common case: a successor beginning when stored) keep
    /// nothing from being kept.
    @Test func answersAreKeptOnlyWhileNoBoundLiesAhead() throws {
        var store = try MemoryStore(path: temporary.path, dimension: 3)
        #expect(store.answersStay(at: at(0)) == nil)
        try store.add([fact("a", "A", day: 0), fact("b", "B", day: 1, supersedes: "a")])
        #expect(store.answersStay(at: at(1)) == nil)
        try store.add([fact("c", "C", day: 1, supersedes: "b", validFrom: at(5))])
        #expect(store.answersStay(at: at(4)) == at(4))
        #expect(store.answersStay(at: at(5)) == nil)
        store.close()
        store = try MemoryStore(path: temporary.path)
        #expect(store.answersStay(at: at(4)) == at(4))
        store.close()
    }

    /// A hit's neighbouring turns are what the read sees too.
    @Test func contextTurnsAreOfTheSameTime() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            fact("t1", "I live in Lisbon", day: 0, vector: [0, 1, 0]),
            fact("t2", "nice weather", day: 1, vector: [1, 0, 0]),
        ])
        try store.add([fact("t3", "I moved to Porto", day: 2, supersedes: "t1", vector: [0, 0, 1])])
        var request = SearchRequest(user: "u", vector: [1, 0, 0], mode: .vector, k: 1, exact: true, context: 2)
        #expect(try store.search(request).first?.context.map(\.id) == ["t3"])
        request.validity = .asOf(at(1))
        #expect(try store.search(request).first?.context.map(\.id) == ["t1"])
        request.validity = .all
        #expect(try store.search(request).first?.context.map(\.id) == ["t1", "t3"])
        store.close()
    }
}
