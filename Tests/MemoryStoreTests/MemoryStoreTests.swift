import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// A fresh database path in its own temporary folder, removed afterwards.
final class TemporaryDatabase {
    let folder: String
    var path: String { folder + "/space.db" }

    init() {
        folder = NSTemporaryDirectory() + "contextstore-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }
}

@Suite struct MemoryStoreTests {
    let temporary = TemporaryDatabase()

    func memory(
        _ id: String?, user: String = "alice", vector: [Float], text: String = "t", session: String? = nil,
        role: Role? = nil, createdAt: Int64? = nil
    ) -> NewMemory {
        NewMemory(
            id: id, user: user, session: session, role: role, text: text, createdAt: createdAt, metadata: #"{"k":1}"#,
            vector: vector)
    }

    @Test func anEmptyFileIsRefusedNotTurnedIntoASpace() throws {
        _ = FileManager.default.createFile(atPath: temporary.path, contents: Data())
        #expect(
            throws: StoreError.incompatibleDatabase(
                "\(temporary.path) is an empty file, not a database; remove it to create a new space there")
        ) { try MemoryStore(path: temporary.path, dimension: 2) }
    }

    /// A second open of a file this process holds is refused without opening it again: closing
    /// that descriptor would have dropped the first connection's SQLite locks.
    @Test func aFileHeldByThisProcessIsRefusedAndTheHolderKeepsWorking() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2, metric: .dot)
        try store.add([memory("a", vector: [1, 0])])
        #expect(
            throws: StoreError.incompatibleDatabase(
                "\(temporary.path) is in use by another process (a running server?)")
        ) { try MemoryStore(path: temporary.path) }
        try store.add([memory("b", vector: [0, 1])])
        store.close()
        let reopened = try MemoryStore(path: temporary.path)
        #expect(reopened.count == 2)
        reopened.close()
        #expect(
            throws: StoreError.incompatibleDatabase(
                "cannot open \(temporary.folder)/missing/space.db: No such file or directory")
        ) { try MemoryStore(path: temporary.folder + "/missing/space.db") }
    }

    @Test func addGetSearchDeleteForget() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3, metric: .dot)
        let ids = try store.add([
            memory("a", vector: [1, 0, 0], text: "first", session: "s1", role: .user, createdAt: 1000),
            memory("b", vector: [0, 1, 0], text: "second", session: "s2", role: .assistant, createdAt: 2000),
            memory("c", user: "bob", vector: [1, 1, 0]),
        ])
        #expect(ids == ["a", "b", "c"])
        #expect(
            try store.get(user: "alice", id: "a")
                == Memory(
                    id: "a", user: "alice", session: "s1", role: .user, text: "first", createdAt: 1000,
                    metadata: #"{"k":1}"#, vector: [1, 0, 0]))
        #expect(try store.get(user: "alice", id: "zzz") == nil)
        #expect(try store.get(user: "bob", id: "a") == nil)

        let hits = try store.search(user: "alice", vector: [1, 0.5, 0], k: 10)
        #expect(hits.map(\.memory.id) == ["a", "b"])
        #expect(hits.map(\.score) == [1, 0.5])
        #expect(
            try store.search(user: "alice", vector: [1, 0.5, 0], k: 10, filter: RowFilter(role: .assistant)).map(
                \.memory.id) == ["b"])
        #expect(
            try store.search(user: "alice", vector: [1, 0.5, 0], k: 10, filter: RowFilter(since: 1500)).map(\.memory.id)
                == ["b"])
        #expect(
            try store.search(user: "alice", vector: [1, 0.5, 0], k: 10, filter: RowFilter(until: 1500)).map(\.memory.id)
                == ["a"])

        #expect(try !store.delete(user: "bob", id: "a"))
        #expect(try store.delete(user: "alice", id: "a"))
        #expect(try !store.delete(user: "alice", id: "a"))
        #expect(try store.forget(user: "alice") == 1)
        #expect(try store.forget(user: "alice") == 0)
        #expect(store.stats().memories == 1)
        #expect(store.stats().users == 1)
    }

    @Test func generatesIDsAndTimes() throws {
        let store = try MemoryStore(path: temporary.path)
        let before = Clock.nowMilliseconds()
        let id = try store.add([memory(nil, vector: [1, 2])])[0]
        #expect(id.count == 36)
        let stored = try #require(try store.get(user: "alice", id: id))
        #expect(stored.createdAt >= before)
        // Cosine spaces store the normalized vector.
        #expect(abs(stored.vector[0] - 1 / Float(5).squareRoot()) < 1e-6)
    }

    /// An id is unique within its user: the same id under another user is another memory (it
    /// once took the first user's memory over); under the same user it replaces it.
    @Test(arguments: [SpaceIndex.flat, .hnsw(HNSWParameters(M: 4, efConstruction: 16))])
    func idsBelongToTheirUser(index: SpaceIndex) throws {
        do {
            let store = try MemoryStore(path: temporary.path, metric: .dot, index: index)
            try store.add([memory("x", vector: [1, 0], text: "alice's")])
            try store.add([memory("x", user: "bob", vector: [0, 1], text: "bob's")])
            #expect(store.count == 2)
            #expect(try store.get(user: "alice", id: "x")?.text == "alice's")
            #expect(try store.get(user: "bob", id: "x")?.text == "bob's")
            #expect(try store.search(user: "alice", vector: [1, 0], k: 5).map(\.memory.text) == ["alice's"])
            try store.add([memory("x", vector: [1, 1], text: "alice's again")])
            #expect(store.count == 2)
            #expect(try store.delete(user: "bob", id: "x"))
            #expect(try store.get(user: "alice", id: "x")?.text == "alice's again")
            // One id for two users in one batch is two memories.
            try store.add([memory("y", vector: [1, 0]), memory("y", user: "carol", vector: [0, 1])])
            #expect(store.count == 3)
            store.close()
        }
        let reopened = try MemoryStore(path: temporary.path)
        #expect(reopened.count == 3)
        #expect(try reopened.get(user: "alice", id: "x")?.text == "alice's again")
        #expect(try reopened.get(user: "bob", id: "x") == nil)
        #expect(try reopened.get(user: "carol", id: "y") != nil)
        #expect(try reopened.search(user: "carol", vector: [0, 1], k: 5).map(\.memory.id) == ["y"])
    }

    @Test func theFirstVectorFixesTheDimension() throws {
        let store = try MemoryStore(path: temporary.path)
        #expect(store.dimension == nil)
        try store.add([memory("a", vector: [1, 2, 3])])
        #expect(store.dimension == 3)
        #expect(throws: StoreError.wrongDimension(expected: 3, got: 2)) {
            try store.add([memory("b", vector: [1, 2])])
        }
        #expect(throws: StoreError.wrongDimension(expected: 3, got: 4)) {
            try store.search(user: "alice", vector: [1, 2, 3, 4], k: 1)
        }
    }

    /// A space holds vectors of up to `Metric.maximumDimension` components: a longer first
    /// vector is refused and fixes nothing, as is a longer dimension asked for; one of that
    /// length is stored and fixes the dimension.
    @Test func aFirstVectorLongerThanAnySpaceHoldsIsRefused() throws {
        let longest = Metric.maximumDimension
        #expect(throws: StoreError.invalidValue("dimension must be 1...65536, not 65537")) {
            try MemoryStore(path: temporary.folder + "/other.db", dimension: longest + 1)
        }
        let store = try MemoryStore(path: temporary.path)
        #expect(throws: StoreError.invalidValue("a vector may have at most 65536 components, not 65537")) {
            try store.add([memory("a", vector: [Float](repeating: 1, count: longest + 1))])
        }
        #expect(store.dimension == nil && store.count == 0)
        try store.add([memory("a", vector: [Float](repeating: 1, count: longest))])
        #expect(store.dimension == longest)
    }

    @Test func aBatchIsAllOrNothing() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2)
        #expect(throws: StoreError.nonFiniteVector) {
            try store.add([memory("a", vector: [1, 2]), memory("b", vector: [.nan, 1])])
        }
        #expect(throws: StoreError.invalidValue("user must not be empty")) {
            try store.add([memory("a", vector: [1, 2]), memory("b", user: "", vector: [1, 1])])
        }
        #expect(store.count == 0)
        store.close()
        let reopened = try MemoryStore(path: temporary.path)
        #expect(reopened.count == 0)
    }

    @Test func everythingSurvivesAReopen() throws {
        do {
            let store = try MemoryStore(path: temporary.path, metric: .l2)
            try store.add(
                (0..<50).map {
                    memory(
                        "m\($0)", user: "u\($0 % 5)", vector: [Float($0), 1], text: "text \($0)", createdAt: Int64($0))
                })
            #expect(try store.delete(user: "u2", id: "m7"))
            #expect(try store.forget(user: "u3") == 10)
            store.close()
            #expect(throws: StoreError.closed) { try store.add([memory("late", vector: [1, 1])]) }
        }
        let store = try MemoryStore(path: temporary.path)
        #expect(store.metric == .l2)
        #expect(store.dimension == 2)
        #expect(store.count == 39)
        #expect(try store.get(user: "u3", id: "m8") == nil)  // u3 was forgotten
        #expect(try store.get(user: "u4", id: "m9")?.text == "text 9")
        #expect(try store.get(user: "u2", id: "m7") == nil)
        let hits = try store.search(user: "u0", vector: [10, 1], k: 2)
        // m5 and m15 are both at distance 5: the tie goes to the smaller id.
        #expect(hits.map(\.memory.id) == ["m10", "m15"])
        #expect(hits.map(\.score) == [0, 5])
    }

    @Test func refusesAnotherMetricOrDimension() throws {
        try MemoryStore(path: temporary.path, dimension: 4, metric: .dot).close()
        #expect(throws: StoreError.self) { try MemoryStore(path: temporary.path, metric: .cosine) }
        #expect(throws: StoreError.self) { try MemoryStore(path: temporary.path, dimension: 5) }
        let store = try MemoryStore(path: temporary.path, dimension: 4, metric: .dot)
        #expect(store.dimension == 4)
    }

    @Test func oneWriterProcessAtATime() throws {
        let store = try MemoryStore(path: temporary.path)
        #expect(
            throws: StoreError.incompatibleDatabase(
                "\(temporary.path) is in use by another process (a running server?)")
        ) {
            try MemoryStore(path: temporary.path)
        }
        store.close()
        try MemoryStore(path: temporary.path).close()
    }

    @Test func recordsTheSchemaVersion() throws {
        try MemoryStore(path: temporary.path).close()
        let database = try Database(path: temporary.path)
        #expect(try database.scalarInt("PRAGMA user_version") == Int64(Database.migrations.count))
        #expect(try database.scalarInt("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'") == 1)
        try database.execute("PRAGMA user_version = 99")
        database.close()
        #expect(
            throws: StoreError.incompatibleDatabase(
                "schema version 99 is newer than this server's \(Database.migrations.count)")
        ) {
            try MemoryStore(path: temporary.path)
        }
    }

    @Test func storesVectorsAsLittleEndianFloat32() throws {
        let store = try MemoryStore(path: temporary.path, metric: .dot)
        try store.add([memory("a", vector: [1.5, -2])])
        store.close()
        let database = try Database(path: temporary.path)
        let statement = try database.prepare("SELECT hex(embedding) FROM memories WHERE id = 'a'")
        #expect(try statement.step())
        #expect(statement.string(at: 0) == "0000C03F000000C0")
    }

    /// A file written before ids belonged to their user (schema 2) opens, keeps every row, and
    /// from then on takes one id per user.
    @Test func aSchema2FileIsMigrated() throws {
        do {
            let database = try Database(path: temporary.path)
            for migration in Database.migrations.prefix(2) { try database.execute(migration.sql) }
            try database.execute("PRAGMA user_version = 2")
            try database.execute(
                """
                INSERT INTO space (key, value) VALUES ('metric', 'dot'), ('index', 'flat'), ('dimension', '2');
                INSERT INTO memories (seq, id, user, text, created_at, metadata, embedding)
                VALUES (1, 'a', 'alice', 'one', 5, '{}', X'0000803F00000000'),
                    (2, 'b', 'bob', 'two', 6, '{}', X'000000000000803F');
                """)
            database.close()
        }
        let store = try MemoryStore(path: temporary.path)
        #expect(store.count == 2)
        #expect(try store.get(user: "alice", id: "a")?.vector == [1, 0])
        try store.add([memory("a", user: "bob", vector: [1, 1], text: "bob's a")])
        #expect(store.count == 3)
        #expect(try store.get(user: "alice", id: "a")?.text == "one")
        // Every later migration's column and index work on the migrated rows.
        #expect(try store.get(user: "alice", id: "a")?.speaker == nil)
        #expect(try store.list(ListRequest(user: "bob")).memories.map(\.id) == ["b", "a"])
        #expect(
            try store.sessions(user: "bob", limit: 5).sessions == [
                SessionSummary(
                    session: nil, turns: 2, firstAt: 6, lastAt: try store.get(user: "bob", id: "a")!.createdAt)
            ])
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
    }
}

/// One tenant's heavy `where` held the single reading connection, and a filtered `forget` the
/// writer, for seconds: every tenant's SQL waited (issue 24, item 8).
@Suite struct ReadingConnectionTests {
    let temporary = TemporaryDatabase()

    func heavyFilter() -> MemoryFilter {
        MemoryFilter(
            metadata: (0..<60).map { key in
                MetadataCondition(key: "k\(key)", test: .oneOf((0..<16).map { .string("v\($0)") }))
            })
    }

    func fill(_ store: MemoryStore) throws {
        try store.add(
            (0..<20_000).map { i in
                NewMemory(
                    id: "m\(i)", user: "heavy", text: "t", metadata: #"{"k1":"v\#(i % 16)","n":\#(i)}"#, vector: [1, 0])
            } + [NewMemory(id: "x", user: "light", text: "t", vector: [0, 1])])
    }

    @Test func aStatementPastTheTimeLimitIsStoppedAndSaysSo() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2, statementTimeLimit: 1)
        try fill(store)
        let search = SearchRequest(user: "heavy", vector: [1, 0], mode: .vector, k: 5, filter: heavyFilter())
        #expect {
            try store.search(search)
        } throws: { error in
            guard case StoreError.tooCostly(let message) = error else { return false }
            return message.contains("ran past 1 ms") && (error as! StoreError).code == .tooLarge
        }
        #expect {
            try store.forget(user: "heavy", filter: heavyFilter())
        } throws: { error in
            guard case StoreError.tooCostly = error else { return false }
            return true
        }
        // Nothing was deleted, and the store goes on.
        #expect(store.count == 20_001)
        #expect(try store.list(ListRequest(user: "light")).memories.map(\.id) == ["x"])
        store.close()
    }

    @Test func aReadHeldByOneRequestDoesNotHoldTheOthers() async throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2)
        try fill(store)
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holder = Thread {
            _ = try? store.withReader { _ in
                holding.signal()
                release.wait()
            }
        }
        holder.start()
        holding.wait()
        // With one connection this waited for the holder (here: until it is released below).
        let done = DispatchSemaphore(value: 0)
        let reader = Thread {
            if (try? store.list(ListRequest(user: "light")).memories.map(\.id)) == ["x"] { done.signal() }
        }
        reader.start()
        #expect(done.wait(timeout: .now() + 10) == .success)
        release.signal()
        store.close()
    }
}
