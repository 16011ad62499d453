import ContextClient
import ContextProtocol
import Foundation
import Testing

@testable import ContextCluster

/// Snapshots of ranges in PostgreSQL, and the log kept small behind them.
@Suite(.serialized, .timeLimit(.minutes(4))) struct SnapshotTests {
    typealias Node = ClusterServerTests.Node

    /// The first host of a range stores a snapshot once the range has `snapshotEvery` entries
    /// past the last one, and the log deletes the entries every host has applied; a node that
    /// joins later starts from the snapshot (the deleted entries are gone) and holds equal rows.
    /// A host whose copy falls behind what was deleted (here: it reported more than it had,
    /// as after losing its disk) stops serving the range, starts again from a newer snapshot,
    /// and serves it again.
    @Test func theLogIsDeletedBehindASnapshotAndNewOrLateHostsStartFromIt() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let folders = (0..<3).map { _ in ClusterServerTests.folder() }
        defer {
            withExtendedLifetime(standby) {}
            for folder in folders { try? FileManager.default.removeItem(atPath: folder) }
        }
        // One range, on every node (three copies). The steps below report and snapshot
        // (`maintain`) themselves: an upkeep of its own, at a time a loaded machine decides,
        // would snapshot and report at other sequences than they expect.
        func node(_ folder: String, listening: Bool = true) async throws -> Node {
            try await Node(
                postgres: [primary], folder: folder, ranges: 1, copies: 3,
                following: listening
                    ? ClusterNode.Following(maintains: false)
                    : ClusterNode.Following(listens: false, interval: .seconds(3600), maintains: false),
                snapshotEvery: 5)
        }
        let a = try await node(folders[0])
        let b = try await node(folders[1])
        try await Self.reconcile([a, b]) { a.node.view.placement.map(\.hosts.count) == [2] }
        let client = try await a.client()
        func add(_ n: Int) async throws {
            let added = try await client.addUntilAnswered([
                #"{"user":"u\#(n)","id":"m\#(n)","text":"memory \#(n)","vector":[1,0],"created_at":1000}"#
            ])
            #expect(added["ok"] == true && added["conflicts"] == [], "\(added)")
        }
        for n in 0..<12 { try await add(n) }
        try await Self.applied(12, on: [a, b])
        // Both report; the first host snapshots and deletes what both have.
        let first = try #require(a.node.view.placement.first?.hosts.first)
        let (leader, other) = first == a.node.name ? (a, b) : (b, a)
        try await other.node.maintain()
        try await leader.node.maintain()
        #expect(try await a.log.retention()[0] == CommandLog.Retention(snapshot: 12, truncated: 12))
        await #expect(throws: ClusterError.truncated(range: 0, through: 12)) {
            try await a.log.entries(range: 0, after: 0)
        }
        for n in 12..<15 { try await add(n) }
        #expect(try await a.log.entries(range: 0, after: 12).map(\.seq) == [13, 14, 15])

        // A third node joins: entries 1...12 exist only in the snapshot. It follows the log
        // only when asked (below).
        let c = try await node(folders[2], listening: false)
        try await Self.reconcile([a, b, c]) { c.node.serves(0) }
        try await Self.applied(15, on: [a, b, c])
        let digests = try [a, b, c].map { try #require($0.node.replica(of: 0)).store.digest().digest }
        #expect(Set(digests).count == 1)
        let reader = try await c.client()
        let got = try await reader.roundTrip(line: Array(#"{"op":"get","user":"u3","id":"m3"}"#.utf8))
        #expect(got["memory"]?.objectValue?["text"] == "memory 3", "\(got)")

        // c claims more than it has; the log moves on past its copy.
        for n in 15..<22 { try await add(n) }
        try await Self.applied(22, on: [a, b])
        try await other.node.maintain()
        try await c.node.maintain()  // reports 15
        _ = try primary.sql("UPDATE cs_applied SET seq = 1000 WHERE node = '\(c.node.name)'")
        try await leader.node.maintain()
        #expect(try await a.log.retention()[0] == CommandLog.Retention(snapshot: 22, truncated: 22))
        // c finds its next entries deleted, leaves the range, and comes back from the snapshot.
        #expect(c.node.replica(of: 0)?.appliedSequence == 15)
        try await c.node.catchUpAll()
        #expect(!c.node.serves(0))
        let deadline = ContinuousClock.now + .seconds(60)
        while c.node.replica(of: 0)?.appliedSequence != 22 || !c.node.serves(0) {
            #expect(ContinuousClock.now < deadline, "c did not come back")
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let after = try [a, c].map { try #require($0.node.replica(of: 0)).store.digest().digest }
        #expect(after[0] == after[1])
        let late = try await reader.roundTrip(line: Array(#"{"op":"get","user":"u20","id":"m20"}"#.utf8))
        #expect(late["memory"]?.objectValue?["text"] == "memory 20", "\(late)")
        // The cluster op tells operators where each range's log begins.
        let range = try #require(try await reader.cluster().ranges.first)
        #expect((range.last, range.snapshot, range.truncated, range.applied) == (22, 22, 22, 22))
        for client in [client, reader] { await client.close() }
        for n in [a, b, c] { await n.stop() }
    }

    /// Waits (60 s at most) until every node has applied range 0 through `seq`.
    /// Rounds of reconciling on every node until `done` (placement converges in a round or two;
    /// on a loaded machine a lease or a compare-and-set may take another), at most a minute.
    static func reconcile(_ nodes: [Node], until done: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        repeat {
            for node in nodes { try await node.node.reconcile() }
            if done() { return }
            try await Task.sleep(for: .milliseconds(50))
        } while ContinuousClock.now < deadline
        Issue.record("the nodes' placement did not converge in a minute")
    }

    static func applied(_ seq: Int64, on nodes: [Node]) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if nodes.allSatisfy({ $0.node.replica(of: 0)?.appliedSequence == seq }) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("not every node applied \(seq)")
    }
}
