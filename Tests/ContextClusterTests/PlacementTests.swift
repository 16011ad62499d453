import ContextClient
import ContextProtocol
import Foundation
import Synchronization
import Testing

@testable import ContextCluster

/// Which nodes host which ranges: rendezvous hashing over the live nodes, moved by
/// compare-and-set, served only once caught up, and every request answered by any node.
@Suite(.serialized, .timeLimit(.minutes(4))) struct PlacementTests {
    /// A round of `node`'s reconciling, again after a failure for up to a minute: a call's
    /// deadline is a share of the lease, and a loaded machine's pause can outlast it (the node's
    /// own loop tries again the same way).
    static func reconcile(_ node: ClusterServerTests.Node) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                return try await node.node.reconcile()
            } catch  where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    typealias Node = ClusterServerTests.Node

    @Test func rendezvousPlacementMovesOnlyWhatItMust() {
        let nodes = ["a", "b", "c"]
        let empty = (0..<64).map { CommandLog.Placement(range: $0, hosts: [], joining: [], version: 0) }
        // From nothing: every range gets two distinct nodes, all joining.
        let first = empty.map { $0.planned(live: nodes, copies: 2) }
        #expect(first.allSatisfy { $0.hosts.isEmpty && Set($0.joining).count == 2 })
        // Each node is chosen for some ranges (64 ranges over 3 nodes).
        for node in nodes { #expect(first.contains { $0.joining.contains(node) }) }
        // Served: a fourth node takes over only ranges it wins, and the old hosts stay until it
        // serves them.
        let served = first.map { CommandLog.Placement(range: $0.range, hosts: $0.joining, joining: [], version: 1) }
        let withD = served.map { $0.planned(live: nodes + ["d"], copies: 2) }
        let moving = withD.filter { !$0.joining.isEmpty }
        #expect(!moving.isEmpty && moving.count < 64)
        #expect(moving.allSatisfy { $0.joining == ["d"] && $0.hosts.count == 2 })
        #expect(withD.filter(\.joining.isEmpty) == served.filter { s in !moving.contains { $0.range == s.range } })
        // Once d serves, the host it replaces leaves.
        let afterJoin = moving.map {
            CommandLog.Placement(range: $0.range, hosts: $0.hosts + ["d"], joining: [], version: 2)
                .planned(live: nodes + ["d"], copies: 2)
        }
        #expect(afterJoin.allSatisfy { $0.hosts.count == 2 && $0.hosts.contains("d") && $0.joining.isEmpty })
        // A dead host is dropped at once; a live one is chosen to replace it.
        let withoutA = served.map { $0.planned(live: ["b", "c"], copies: 2) }
        #expect(withoutA.allSatisfy { !$0.hosts.contains("a") && Set($0.hosts + $0.joining) == ["b", "c"] })
    }

    /// Three nodes, each range on two of them: every write and read through any node gets the
    /// answer a single node gives; a fourth node joins while clients keep writing and reading
    /// through the others, takes its ranges, and no request fails; every range's hosts hold
    /// equal rows.
    @Test func threeNodesServeEveryUserAndAFourthJoinsWithoutAFailedRequest() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let folders = (0..<4).map { _ in ClusterServerTests.folder() }
        defer {
            withExtendedLifetime(standby) {}
            for folder in folders { try? FileManager.default.removeItem(atPath: folder) }
        }
        var nodes: [Node] = []
        // A short lease: a node keeps a range it left for one, and the test waits for that.
        for folder in folders.prefix(3) {
            nodes.append(try await Node(postgres: [primary], folder: folder, lease: .seconds(6)))
        }
        // Every node has reconciled with all three live (a host that leaves a range learns it
        // at its own next round). On a loaded machine a node's round can outlast the lease, and
        // the others count it out until its next: rounds go on until all three host ranges.
        func settled(_ placement: [CommandLog.Placement]) -> Bool {
            placement.count == 8 && placement.allSatisfy { $0.hosts.count == 2 && $0.joining.isEmpty }
                && Set(placement.flatMap(\.hosts)).count == 3
        }
        for round in 0..<30 {
            for node in nodes { try await Self.reconcile(node) }
            if round >= 2, settled(nodes[0].node.view.placement) { break }
        }
        var placement = nodes[0].node.view.placement
        #expect(settled(placement), "\(placement)")
        // A node keeps a range it left for a lease (others may still forward to it), then
        // closes it: it keeps only those it hosts.
        try await Task.sleep(for: nodes[0].node.lease)
        func hosted(by node: Node) -> [Int] { placement.filter { $0.hosts.contains(node.node.name) }.map(\.range) }
        for _ in 0..<30 {
            for node in nodes { try await Self.reconcile(node) }
            placement = nodes[0].node.view.placement
            if settled(placement), nodes.allSatisfy({ $0.node.replicas.map(\.range) == hosted(by: $0) }) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        for node in nodes { #expect(node.node.replicas.map(\.range) == hosted(by: node)) }
        // Two copies of 8 ranges over three nodes: 16 files, not 24.
        #expect(nodes.map(\.node.replicas.count).reduce(0, +) == 16)

        let clients = try await nodes.asyncMap { try await $0.client() }
        let users = (0..<24).map { "user\($0)" }
        for (n, user) in users.enumerated() {
            let added = try await clients[n % 3].addUntilAnswered([
                #"{"user":"\#(user)","id":"m","text":"\#(user) likes tea","vector":[1,0],"created_at":1000}"#
            ])
            #expect(added["ok"] == true && added["conflicts"] == [], "\(added)")
        }
        // Any node answers about any user (forwarding those it does not host), with min_seq
        // from the write's answer or without it once followed.
        for (n, user) in users.enumerated() {
            for client in clients {
                let got = try await client.roundTrip(line: Array(#"{"op":"get","user":"\#(user)","id":"m"}"#.utf8))
                #expect(got["memory"]?.objectValue?["text"] == .string("\(user) likes tea"), "\(n) \(got)")
            }
        }

        // A batch over every user, whose ranges no one node serves: split by node, one answer
        // in the batch's order.
        func batch(_ items: [String], ifAbsent: Bool) -> [UInt8] {
            Array(
                #"{"op":"add_batch","rid":"b","if_absent":\#(ifAbsent),"items":[\#(items.joined(separator: ","))]}"#
                    .utf8)
        }
        let items = users.map { #"{"user":"\#($0)","id":"b","text":"batch","vector":[1,0],"created_at":1500}"# }
        let whole = try await clients[0].roundTrip(line: batch(items, ifAbsent: false))
        #expect(whole["rid"] == "b")
        #expect(whole["ids"] == .array(users.map { _ in "b" }), "\(whole)")
        #expect(whole["seqs"]?.objectValue?.fields.count == users.count)
        var again = items
        again[5] = #"{"user":"user5","id":"b","text":"changed","vector":[1,0],"created_at":1500}"#
        again.append(#"{"user":"user7","text":"new","vector":[1,0]}"#)
        let repeated = try await clients[1].roundTrip(line: batch(again, ifAbsent: true))
        #expect(repeated["skipped"] == 23, "\(repeated)")
        #expect(repeated["conflicts"] == [5])
        #expect(repeated["ids"]?.arrayValue?.count == 1)

        // A fourth node joins while traffic goes on through the first three.
        let stop = Mutex(false)
        let traffic = Task { () -> (failures: [String], requests: Int) in
            var failures: [String] = []
            var n = 0
            while !stop.withLock({ $0 }) {
                let user = users[n % users.count]
                let client = clients[n % 3]
                let line =
                    n % 2 == 0
                    ? #"{"op":"add","user":"\#(user)","id":"t\#(n)","text":"turn \#(n)","vector":[0,1],"created_at":2000}"#
                    : #"{"op":"search","user":"\#(user)","vector":[1,0],"k":3}"#
                let answer = try await client.roundTrip(line: Array(line.utf8))
                if answer["ok"] != true { failures.append("\(line) -> \(answer)") }
                n += 1
            }
            return (failures, n)
        }
        let fourth = try await Node(postgres: [primary], folder: folders[3], lease: .seconds(6))
        for _ in 0..<3 { for node in nodes + [fourth] { try await Self.reconcile(node) } }
        stop.withLock { $0 = true }
        let (failures, requests) = try await traffic.value
        #expect(failures.isEmpty, "\(failures.prefix(3))")
        #expect(requests > 0)  // the join happened under traffic
        #expect(!fourth.node.replicas.isEmpty)
        let after = fourth.node.view.placement
        #expect(after.allSatisfy { $0.hosts.count == 2 && $0.joining.isEmpty })
        #expect(after.contains { $0.hosts.contains(fourth.node.name) })

        // Every range's hosts hold equal rows at equal sequences.
        let all = nodes + [fourth]
        for _ in 0..<100 {
            for node in all { try await node.node.catchUpAll() }
            let lasts = try await nodes[0].log.lastSequences()
            if all.allSatisfy({ $0.node.replicas.allSatisfy { $0.appliedSequence == lasts[$0.range] } }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        for range in after {
            let copies = try range.hosts.map { host in
                try #require(all.first { $0.node.name == host }?.node.replica(of: range.range)).store.digest().digest
            }
            #expect(Set(copies).count == 1, "range \(range.range)")
        }
        let newcomer = try await fourth.client()
        // The cluster as the newcomer sees it.
        let cluster = try await newcomer.cluster()
        #expect(cluster.node == fourth.node.name)
        #expect(cluster.nodes.map(\.name).sorted() == all.map(\.node.name).sorted())
        #expect(cluster.nodes.allSatisfy { $0.live })
        #expect(cluster.ranges.map(\.hosts) == after.map(\.hosts))
        #expect(
            cluster.ranges.allSatisfy { range in
                (range.applied != nil) == range.hosts.contains(fourth.node.name)
                    && range.applied.map { $0 == range.last } ?? true
            })
        for user in users {
            let got = try await newcomer.roundTrip(line: Array(#"{"op":"get","user":"\#(user)","id":"m"}"#.utf8))
            #expect(got["ok"] == true, "\(got)")
        }
        for client in clients + [newcomer] { await client.close() }
        for node in all { await node.stop() }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

/// A node cut off from PostgreSQL (a relay that drops every byte, as a partition does).
@Suite(.serialized, .timeLimit(.minutes(4))) struct PartitionTests {
    typealias Node = ClusterServerTests.Node

    /// Cut off, a node acknowledges no write and, once its lease has lapsed, answers no read that
    /// asks for a sequence it cannot reach (reads without one get its last copy); the other node
    /// goes on writing and drops it as a host. Mended, it renews (its writes are refused until
    /// then: its lease lapsed), catches up and serves again, with the other's rows.
    @Test func aNodeCutOffFromPostgreSQLAcknowledgesNothingAndConvergesAfter() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let proxy = try TCPProxy(to: primary.port)
        let (folderA, folderC) = (ClusterServerTests.folder(), ClusterServerTests.folder())
        defer {
            proxy.close()
            withExtendedLifetime(standby) {}
            for folder in [folderA, folderC] { try? FileManager.default.removeItem(atPath: folder) }
        }
        let lease = Duration.seconds(8)  // a busy machine may renew a second or two late
        let a = try await Node(postgres: [primary], folder: folderA, ranges: 4, lease: lease)
        let c = try await Node(
            postgres: [primary], through: [proxy.port], folder: folderC, ranges: 4, lease: lease,
            deadline: .seconds(15))  // what cut-off calls wait; a busy machine's healthy ones take seconds
        let (viaA, viaC) = (try await a.client(), try await c.client())
        func add(_ client: ContextStoreClient, _ id: String) async throws -> JSONObject {
            try await client.roundTrip(
                line: Array(#"{"op":"add","user":"alice","id":"\#(id)","text":"\#(id)","vector":[1,0]}"#.utf8))
        }
        #expect(try await add(viaC, "before")["ok"] == true)
        // C must serve alice's range itself before the cut: a node forwards what it does not
        // serve to a host that does, and a busy machine may take seconds to place the range.
        let alices = c.node.ranges.range(of: "alice")
        for _ in 0..<600 where !c.node.serves(alices) {
            try await c.node.reconcile()
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(c.node.serves(alices))

        proxy.set(cut: true)
        let refused = try await add(viaC, "cut-off")
        #expect(refused["error"]?.objectValue?["code"] == "unavailable", "\(refused)")
        try await Task.sleep(for: lease + .seconds(1))
        // A takes the write once it serves alice's range itself; until then (a busy machine may
        // take longer than the lease) it forwards to C and answers `unavailable`, acknowledging
        // nothing, as a client would be told to retry.
        var written = JSONObject()
        for _ in 0..<900 {
            written = try await add(viaA, "while-cut")
            if written["ok"] == true { break }
            #expect(written["error"]?.objectValue?["code"] == "unavailable", "\(written)")
            try await a.node.reconcile()
            try await Task.sleep(for: .milliseconds(100))
        }
        let seq = try #require(written["seqs"]?.objectValue?["alice"]?.integerValue, "\(written)")
        let behind = try await viaC.roundTrip(
            line: Array(#"{"op":"get","user":"alice","id":"while-cut","min_seq":\#(seq)}"#.utf8))
        #expect(behind["error"]?.objectValue?["code"] == "unavailable", "\(behind)")
        let stale = try await viaC.roundTrip(line: Array(#"{"op":"get","user":"alice","id":"before"}"#.utf8))
        #expect(stale["ok"] == true)
        // The other node, in touch for a lease, drops the lapsed node from every range.
        var dropped = false
        for _ in 0..<600 where !dropped {
            try await a.node.reconcile()
            dropped = a.node.view.placement.allSatisfy { !$0.hosts.contains(c.node.name) }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(dropped)
        #expect(try await add(viaA, "after-drop")["ok"] == true)

        proxy.set(cut: false)
        var fresh = JSONObject()
        for _ in 0..<900 {
            fresh = try await viaC.roundTrip(
                line: Array(#"{"op":"get","user":"alice","id":"while-cut","min_seq":\#(seq)}"#.utf8))
            if fresh["ok"] == true, c.node.serves(c.node.ranges.range(of: "alice")) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(fresh["ok"] == true, "\(fresh)")
        var mended = JSONObject()
        for _ in 0..<900 {
            mended = try await add(viaC, "mended")
            if mended["ok"] == true { break }
            #expect(mended["error"]?.objectValue?["code"] == "unavailable", "\(mended)")
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(mended["ok"] == true, "\(mended)")
        // Both copies of alice's range agree once each has applied all of it.
        let range = a.node.ranges.range(of: "alice")
        for _ in 0..<100 {
            try await a.node.catchUpAll()
            try await c.node.catchUpAll()
            if a.node.replica(of: range)?.appliedSequence == c.node.replica(of: range)?.appliedSequence { break }
        }
        #expect(
            try a.node.replica(of: range)?.store.digest().digest == c.node.replica(of: range)?.store.digest().digest)
        #expect(try c.node.replica(of: range)?.store.get(user: "alice", id: "cut-off") == nil)
        for client in [viaA, viaC] { await client.close() }
        await c.stop()
        await a.stop()
    }
}
