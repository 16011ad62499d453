import ContextModel
import Foundation
import MemoryStore
import Testing

@testable import ContextCluster

/// The write log on real PostgreSQL servers started by the test (a primary, and a streaming
/// standby where durability is the point).
@Suite(.serialized) struct CommandLogTests {
    static func log(
        _ servers: PostgresServer..., requireStandby: Bool = true, deadline: Duration = .seconds(60)
    ) -> CommandLog {
        CommandLog(
            .init(
                hosts: servers.map { ("127.0.0.1", $0.port) }, username: servers[0].user, database: "postgres",
                requireSynchronousStandby: requireStandby, deadline: deadline))
    }

    static func add(_ user: String, _ id: String, _ vector: [Float] = [1, 0], at time: Int64 = 1_000) -> WriteCommand {
        .add(
            AddCommand([
                ResolvedMemory(Memory(id: id, user: user, text: "memory \(id)", createdAt: time, vector: vector))
            ]))
    }

    @Test func aUsersRangeIsStableAndInBounds() throws {
        let ranges = try RangeMap()
        // Pinned: a user's range must never change between builds or machines.
        #expect(RangeMap.hash("".utf8) == 0xcbf2_9ce4_8422_2325)
        #expect(RangeMap.hash("a".utf8) == 0xaf63_dc4c_8601_ec8c)
        #expect(ranges.range(of: "alice") == Int(RangeMap.hash("alice".utf8) % 64))
        // Two spellings of one character are two users, and may be two ranges.
        #expect(RangeMap.hash("caf\u{E9}".utf8) != RangeMap.hash("cafe\u{301}".utf8))
        for user in ["", "\u{0}", "alice", String(repeating: "x", count: 10_000)] {
            #expect((0..<64).contains(ranges.range(of: user)))
        }
        #expect(throws: ClusterError.invalidConfiguration("ranges must be 1...4096, not 0")) { try RangeMap(count: 0) }
        #expect(throws: ClusterError.invalidConfiguration("ranges must be 1...4096, not 4097")) {
            try RangeMap(count: 4_097)
        }
        #expect(try RangeMap(count: 1).range(of: "anyone") == 0)
    }

    /// Without a synchronous standby an append would rest on one disk: it is refused, and
    /// nothing is in the log. A fenced (read-only) primary and a standby refuse too.
    @Test func anAppendThatWouldRestOnOneDiskIsRefused() async throws {
        let primary = try PostgresServer()
        let log = Self.log(primary)
        try await log.install(ranges: try RangeMap(count: 4))
        await #expect(throws: ClusterError.unavailable("no synchronous standby: a commit would rest on one disk")) {
            try await log.append(Self.add("alice", "1"), range: 0, key: UUID())
        }
        #expect(try await log.lastSequence(range: 0) == 0)
        #expect(try primary.sql("SELECT count(*) FROM cs_log") == "0")

        let standby = try PostgresServer(standbyOf: primary)
        try primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'")
        try primary.sql("SELECT pg_reload_conf()")
        #expect(try await log.append(Self.add("alice", "1"), range: 0, key: UUID()) == 1)

        try primary.sql("ALTER SYSTEM SET default_transaction_read_only = on")
        try primary.sql("SELECT pg_reload_conf()")
        await #expect(throws: ClusterError.unavailable("this PostgreSQL is read-only (fenced)")) {
            try await log.append(Self.add("alice", "2"), range: 0, key: UUID())
        }
        let onStandby = Self.log(standby)
        await #expect(throws: ClusterError.unavailable("this PostgreSQL is a standby")) {
            try await onStandby.append(Self.add("alice", "2"), range: 0, key: UUID())
        }
        await onStandby.shutdown()
        await log.shutdown()
    }

    /// Given every server of the formation, the log writes where the primary is, whichever
    /// is named first.
    @Test func theLogFindsThePrimaryAmongItsHosts() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let log = Self.log(standby, primary)
        try await log.install(ranges: try RangeMap(count: 2))
        #expect(try await log.append(Self.add("alice", "1"), range: 1, key: UUID()) == 1)
        #expect(try await log.entries(range: 1, after: 0).map(\.seq) == [1])
        await log.shutdown()
    }

    /// The standby stops while an append waits for it: the append is abandoned at the deadline
    /// as `unavailable` (never "ok"), and the entry, committed on the primary alone, is not
    /// handed out to be applied. Once the standby is back, the append retried with its key
    /// returns that entry's sequence and adds none.
    @Test func anAppendTheStandbyNeverConfirmedIsNeitherAcknowledgedNorApplied() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        // The set-up append has the default deadline: only the one the standby never confirms
        // has the short one (a busy machine can take 2 s for a healthy append too).
        let patient = Self.log(primary)
        try await patient.install(ranges: try RangeMap(count: 1))
        #expect(try await patient.append(Self.add("alice", "1"), range: 0, key: UUID()) == 1)
        let log = Self.log(primary, deadline: .seconds(2))

        try standby.stop(immediately: true)
        let key = UUID()
        var began = ContinuousClock.now
        // On a busy machine the 2 s deadline may abandon the append before its COMMIT: then it is
        // sent again (same key) until one waits for the standby at COMMIT, as the test needs.
        for _ in 0..<20 {
            began = ContinuousClock.now
            await #expect(throws: ClusterError.self) {
                try await log.append(Self.add("alice", "2"), range: 0, key: key)
            }
            if try primary.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") != "0" { break }
        }
        // Without the deadline it would wait for ever; 30 s leaves a busy machine its slowness.
        #expect(ContinuousClock.now - began < .seconds(30))
        // While its backend waits for the standby, nobody sees the entry (a read may also run
        // out of time on a busy machine: either way, not handed out); once the backend is gone,
        // it is committed on the primary's disk alone and visible there, and the log still
        // does not hand it out.
        #expect(((try? await log.entries(range: 0, after: 1)) ?? []).isEmpty)
        try primary.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
        var visible = ""
        for _ in 0..<300 {
            visible = try primary.sql("SELECT count(*) FROM cs_log")
            if visible == "2" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(visible == "2")
        await #expect(throws: ClusterError.self) { try await log.entries(range: 0, after: 1) }
        await log.shutdown()

        try standby.start()
        #expect(try await patient.append(Self.add("alice", "2"), range: 0, key: key) == 2)
        #expect(try await patient.entries(range: 0, after: 0).map(\.seq) == [1, 2])
        await patient.shutdown()
    }

    /// Four writers append to two ranges at once: each range's sequences are 1...n with no gap
    /// and no repeat, the standby holds every acknowledged entry, and an append retried with its
    /// key is the first one, not a second.
    @Test func concurrentAppendsGetGaplessSequencesAndReachTheStandby() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let log = Self.log(primary)
        try await log.install(ranges: try RangeMap(count: 2))

        let perWriter = 50
        let acknowledged = try await withThrowingTaskGroup(of: [(Int, Int64)].self) { group in
            for writer in 0..<4 {
                group.addTask {
                    var got: [(Int, Int64)] = []
                    if writer >= 2 {
                        // Appends over both ranges at once, named in opposite orders by the two
                        // writers: their row locks are taken in range order, so neither waits
                        // for the other in a cycle.
                        for n in 0..<perWriter / 2 {
                            let order = writer == 2 ? [0, 1] : [1, 0]
                            let parts = order.map {
                                CommandLog.Part(Self.add("u\(writer)-\($0)", "\(n)"), range: $0, key: UUID())
                            }
                            got += zip(order, try await log.append(parts)).map { ($0, $1) }
                        }
                        return got
                    }
                    for n in 0..<perWriter {
                        let range = (writer + n) % 2
                        got.append(
                            (range, try await log.append(Self.add("u\(writer)", "\(n)"), range: range, key: UUID())))
                    }
                    return got
                }
            }
            var all: [(Int, Int64)] = []
            for try await got in group { all += got }
            return all
        }
        for range in 0..<2 {
            let seqs = acknowledged.filter { $0.0 == range }.map(\.1).sorted()
            #expect(seqs == Array(1...Int64(seqs.count)))
            #expect(try await log.lastSequence(range: range) == Int64(seqs.count))
        }
        // Synchronous commit: what was acknowledged is on the standby (written there; replayed
        // within moments, so the test waits for replay, not for the data to arrive).
        var onStandby = ""
        for _ in 0..<100 {
            onStandby = try standby.sql("SELECT count(*) FROM cs_log")
            if onStandby == "200" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(onStandby == "200")

        // Appended again with the same keys, a multi-range append returns its first sequences.
        let pair = [0, 1].map { CommandLog.Part(Self.add("bob", "pair\($0)"), range: $0, key: UUID()) }
        let taken = try await log.append(pair)
        #expect(try await log.append(pair) == taken)
        #expect(try await log.append(pair.reversed()) == taken.reversed())
        await #expect(throws: ClusterError.invalidConfiguration("an append names a range twice")) {
            try await log.append([pair[0], CommandLog.Part(Self.add("bob", "x"), range: 0, key: UUID())])
        }
        let key = UUID()
        let first = try await log.append(Self.add("alice", "once"), range: 1, key: key)
        #expect(try await log.append(Self.add("alice", "once"), range: 1, key: key) == first)
        #expect(try await log.lastSequence(range: 1) == first)
        await log.shutdown()
    }

    /// Two replicas of a range (two SQLite files) applying the same log reach equal digests,
    /// equal to a space the commands were applied to directly; a command refused by the rows
    /// still takes its sequence on both; a replica reopened resumes after what it applied.
    @Test func replicasApplyingTheLogReachTheSameRows() async throws {
        let primary = try PostgresServer()
        let log = Self.log(primary, requireStandby: false)
        try await log.install(ranges: try RangeMap(count: 1))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cs-replicas-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let paths = ["a", "b", "direct"].map { folder.appendingPathComponent("\($0).db").path }

        let history: [WriteCommand] = [
            Self.add("alice", "1"), Self.add("bob", "1", [0, 1]),
            Self.add("alice", "bad", [1, 0, 0]),  // wrong dimension: refused by every replica alike
            .update(MemoryRef(user: "alice", id: "1"), MemoryChanges(speaker: .some("Ana")), asOf: 2_000),
            .feedback(MemoryRef(user: "bob", id: "1"), helped: true, asOf: 2_000),
            Self.add("alice", "2", [0.6, 0.8], at: 1_500), .delete(MemoryRef(user: "bob", id: "1")),
            .forget(user: "alice", MemoryFilter(rows: RowFilter(since: 1_200)), asOf: 3_000),
        ]
        for command in history.prefix(5) { _ = try await log.append(command, range: 0, key: UUID()) }

        let a = RangeReplica(range: 0, store: try MemoryStore(path: paths[0], metric: .cosine))
        let page = try await log.entries(range: 0, after: 0)
        let outcomes = try a.apply(page)
        #expect(outcomes.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(outcomes[2].outcome == .failure(.wrongDimension(expected: 2, got: 3)))
        #expect(a.appliedSequence == 5)
        #expect(try a.apply(page).isEmpty)  // a page seen again: nothing applied twice
        #expect(throws: ClusterError.corruptLog("range 0 goes from 5 to 7")) {
            try a.apply([CommandLog.Entry(seq: 7, command: Self.add("zed", "1"), key: UUID())])
        }

        for command in history.dropFirst(5) { _ = try await log.append(command, range: 0, key: UUID()) }
        #expect(try await a.catchUp(from: log, pageSize: 2) == 3)
        let b = RangeReplica(range: 0, store: try MemoryStore(path: paths[1], metric: .cosine))
        #expect(try await b.catchUp(from: log) == 8)

        let direct = try MemoryStore(path: paths[2], metric: .cosine)
        for (n, command) in history.enumerated() { _ = try direct.applyLogged(command, index: Int64(n + 1)) }
        let expected = try direct.digest()
        #expect(try a.store.digest() == expected)
        #expect(try b.store.digest() == expected)
        #expect(expected.appliedIndex == 8)
        #expect(try a.store.get(user: "alice", id: "2") == nil)  // forgotten: since 1_200
        #expect(try a.store.get(user: "alice", id: "1")?.speaker == "Ana")

        // Reopened, a replica resumes: nothing is applied twice.
        a.store.close()
        let reopened = RangeReplica(range: 0, store: try MemoryStore(path: paths[0]))
        #expect(reopened.appliedSequence == 8)
        _ = try await log.append(Self.add("carol", "1"), range: 0, key: UUID())
        #expect(try await reopened.catchUp(from: log) == 1)
        #expect(reopened.appliedSequence == 9)
        await log.shutdown()
    }
}
