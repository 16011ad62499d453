import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import Logging
import MemoryStore
import Testing

@testable import ContextCluster

/// Servers that are nodes of one cluster (a PostgreSQL primary with a synchronous standby, two
/// nodes on loopback), next to a server on one machine given the same requests.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ClusterServerTests {
    /// A node: its folder of ranges, its log, its server.
    final class Node: Sendable {
        let folder: String
        let log: CommandLog
        let node: ClusterNode
        let server: ContextStoreServer

        init(
            postgres: [PostgresServer], through ports: [Int]? = nil, folder: String, ranges: Int = 8,
            copies: Int = 2, lease: Duration = .seconds(30), deadline: Duration = .seconds(120),
            following: ClusterNode.Following = ClusterNode.Following(), snapshotEvery: Int64 = 10_000
        ) async throws {
            self.folder = folder
            log = CommandLog(
                .init(
                    hosts: (ports ?? postgres.map(\.port)).map { ("127.0.0.1", $0) }, username: postgres[0].user,
                    database: "postgres", deadline: deadline))  // long by default: a busy machine is slow, not broken
            let map = try await log.install(ranges: try RangeMap(count: ranges))
            node = try ClusterNode(
                name: URL(fileURLWithPath: folder).lastPathComponent, folder: folder, log: log, ranges: map,
                copies: copies,
                lease: lease,  // long: a busy machine may renew late
                snapshotEvery: snapshotEvery
            ) { path in
                try MemoryStore(path: path, dimension: 2, metric: .cosine)
            }
            server = try await ContextStoreServer(
                node: node, configuration: ServerConfiguration(host: "127.0.0.1", port: 0, threads: 2),
                logger: Logger(label: "node"), following: following)
        }

        func client() async throws -> ContextStoreClient {
            try await ContextStoreClient.connect(host: "127.0.0.1", port: server.port)
        }

        func stop() async {
            await server.shutdown()
            await node.close()
            await log.shutdown()
        }
    }

    static func folder() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cs-node-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Requests that write, with ids and times given so that every server stores the same.
    static let writes: [String] = [
        #"{"op":"add","user":"alice","id":"a1","text":"I live in Lisbon","vector":[1,0],"created_at":1000,"session":"s1"}"#,
        #"{"op":"add","user":"bob","id":"b1","text":"bob likes tea","vector":[0,1],"created_at":1000}"#,
        #"{"op":"add_batch","items":[{"user":"alice","id":"a2","text":"I moved to Porto","vector":[0.8,0.6],"created_at":2000,"session":"s1"},{"user":"carol","id":"c1","text":"carol runs","vector":[0.6,0.8],"created_at":2000},{"user":"bob","id":"b2","text":"bob naps","vector":[0.1,0.9],"created_at":3000}]}"#,
        #"{"op":"update","user":"alice","id":"a1","speaker":"Ana"}"#,
        #"{"op":"feedback","user":"bob","id":"b1","helped":true}"#,
        #"{"op":"delete","user":"carol","id":"c1"}"#,
        #"{"op":"add","user":"dave","id":"d1","text":"wrong","vector":[1,0,0]}"#,
    ]

    /// The users each of `writes` names, in the order of its answer's `seqs`.
    static let writeUsers: [[String]] = [
        ["alice"], ["bob"], ["alice", "bob", "carol"], ["alice"], ["bob"], ["carol"], [],
    ]

    /// Requests that read, answered alike by every server holding the same memories.
    /// Reads at one `now` (2026-01-01), so that every server answers them alike.
    static let reads: [String] = [
        #"{"op":"search","user":"alice","vector":[1,0],"k":5,"now":1767225600000}"#,
        #"{"op":"search","user":"bob","query":"tea","mode":"keyword","k":5,"now":1767225600000}"#,
        #"{"op":"get","user":"alice","id":"a1","now":1767225600000}"#,
        #"{"op":"list","user":"bob","now":1767225600000}"#,
        #"{"op":"sessions","user":"alice","now":1767225600000}"#,
        #"{"op":"get","user":"carol","id":"c1","now":1767225600000}"#,
        #"{"op":"digest","user":"alice"}"#,
        #"{"op":"digest","user":"bob"}"#,
    ]

    /// Writes through either node, reads from either: every answer is the one a single server
    /// gives for the same requests, and both nodes hold equal ranges.
    @Test func twoNodesAnswerAsOneServerDoes() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let (folderA, folderB, folderSingle) = (Self.folder(), Self.folder(), Self.folder())
        defer {
            for folder in [folderA, folderB, folderSingle] { try? FileManager.default.removeItem(atPath: folder) }
        }
        let a = try await Node(postgres: [standby, primary], folder: folderA)
        let b = try await Node(postgres: [primary, standby], folder: folderB)
        let store = try MemoryStore(path: folderSingle + "/one.db", dimension: 2, metric: .cosine)
        let single = try await ContextStoreServer(
            store: store, configuration: ServerConfiguration(host: "127.0.0.1", port: 0, threads: 2),
            logger: Logger(label: "single"))
        let one = try await ContextStoreClient.connect(host: "127.0.0.1", port: single.port)
        let clients = [try await a.client(), try await b.client()]

        for (n, write) in Self.writes.enumerated() {
            let expected = try await one.roundTrip(line: Array(write.utf8))
            // Alternate nodes: each write through a different one. A node's answer also gives the
            // sequence the write took for each user it names.
            var answer = try await clients[n % 2].roundTrip(line: Array(write.utf8))
            let seqs = answer["seqs"]?.objectValue
            answer["seqs"] = nil
            #expect(answer == expected, "\(write)")
            #expect(seqs?.fields.map(\.key) == (expected["ok"] == true ? Self.writeUsers[n] : nil), "\(write)")
        }
        // The other node has followed the log within moments (a busy machine: longer).
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if zip(a.node.replicas, b.node.replicas).allSatisfy({ $0.appliedSequence == $1.appliedSequence }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        for read in Self.reads {
            let expected = try await one.roundTrip(line: Array(read.utf8))
            for client in clients { #expect(try await client.roundTrip(line: Array(read.utf8)) == expected, "\(read)") }
        }
        for (x, y) in zip(a.node.replicas, b.node.replicas) {
            #expect(x.appliedSequence == y.appliedSequence)
            #expect(try x.store.digest() == y.store.digest())
        }
        // A node's ranges come from the log: no backup of one file over the wire.
        let backup = try await clients[0].roundTrip(line: Array(#"{"op":"backup","to":"x.db"}"#.utf8))
        #expect(backup["error"]?.objectValue?["code"] == .string("forbidden"))

        // A node restarted resumes where it was: nothing applied twice, and what was written
        // meanwhile arrives.
        let appliedBefore = a.node.replicas.map(\.appliedSequence)
        await a.stop()
        _ = try await clients[1].roundTrip(
            line: Array(#"{"op":"add","user":"erin","id":"e1","text":"erin","vector":[1,1],"created_at":5000}"#.utf8))
        let again = try await Node(postgres: [primary, standby], folder: folderA)
        #expect(zip(again.node.replicas, appliedBefore).filter { $0.appliedSequence < $1 }.isEmpty)
        let erin = try again.node.replica(of: "erin")?.store.get(user: "erin", id: "e1")
        #expect(erin?.text == "erin")
        for (x, y) in zip(again.node.replicas, b.node.replicas) { #expect(try x.store.digest() == y.store.digest()) }

        for client in clients { await client.close() }
        await one.close()
        await single.shutdown()
        store.close()
        await again.stop()
        await b.stop()
    }

    /// A read that carries the sequence of a write made through another node sees it, even
    /// where that node has not read the log since (its follower is idle here); without
    /// `min_seq` it may not. A `min_seq` past every write of the range is refused.
    @Test func aReadWithMinSeqSeesAWriteMadeElsewhere() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let (folderA, folderB) = (Self.folder(), Self.folder())
        defer {
            withExtendedLifetime(standby) {}  // until the end: it confirms every commit
            for folder in [folderA, folderB] { try? FileManager.default.removeItem(atPath: folder) }
        }
        let a = try await Node(postgres: [primary], folder: folderA)
        let b = try await Node(postgres: [primary], folder: folderB, following: .idle)
        let (writer, reader) = (try await a.client(), try await b.client())

        let added = try await writer.roundTrip(
            line: Array(#"{"op":"add","user":"alice","id":"a1","text":"tea","vector":[1,0]}"#.utf8))
        let seq = try #require(added["seqs"]?.objectValue?["alice"]?.integerValue)
        let stale = try await reader.roundTrip(line: Array(#"{"op":"get","user":"alice","id":"a1"}"#.utf8))
        #expect(stale["error"]?.objectValue?["code"] == "not_found")
        let fresh = try await reader.roundTrip(
            line: Array(#"{"op":"get","rid":7,"user":"alice","id":"a1","min_seq":\#(seq)}"#.utf8))
        #expect(fresh["rid"] == 7)
        #expect(fresh["memory"]?.objectValue?["text"] == "tea")

        for (line, code) in [
            (#"{"op":"get","user":"alice","id":"a1","min_seq":\#(seq + 1)}"#, "invalid_value"),
            (#"{"op":"get","user":"alice","id":"a1","min_seq":-1}"#, "invalid_value"),
            (#"{"op":"get","user":"alice","id":"a1","min_seq":"1"}"#, "wrong_type"),
            (#"{"op":"stats","min_seq":1}"#, "invalid_value"),
            (
                #"{"op":"add_batch","items":[{"user":"x","id":"1","text":"x","vector":[1,0]},{"user":"y","id":"1","text":"y","vector":[1,0]}],"min_seq":1}"#,
                "invalid_value"
            ),
        ] {
            let answer = try await reader.roundTrip(line: Array(line.utf8))
            #expect(answer["error"]?.objectValue?["code"] == .string(code), "\(line)")
        }
        // The connection goes on.
        #expect(try await reader.roundTrip(line: Array(#"{"op":"ping"}"#.utf8))["ok"] == true)
        for client in [writer, reader] { await client.close() }
        await a.stop()
        await b.stop()
    }

    /// A follower that would read the log only once an hour learns of another node's append at
    /// once: the appending node's NOTIFY wakes its LISTEN.
    @Test func aFollowerIsWokenByAnotherNodesAppend() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let (folderA, folderB) = (Self.folder(), Self.folder())
        defer {
            withExtendedLifetime(standby) {}
            for folder in [folderA, folderB] { try? FileManager.default.removeItem(atPath: folder) }
        }
        let a = try await Node(postgres: [primary], folder: folderA)
        let b = try await Node(
            postgres: [primary], folder: folderB, following: ClusterNode.Following(interval: .seconds(3600)))
        let writer = try await a.client()
        for n in 1...3 {
            let added = try await writer.roundTrip(
                line: Array(#"{"op":"add","user":"alice","id":"a\#(n)","text":"tea","vector":[1,0]}"#.utf8))
            let seq = try #require(added["seqs"]?.objectValue?["alice"]?.integerValue)
            let deadline = ContinuousClock.now + .seconds(30)
            while (b.node.replica(of: "alice")?.appliedSequence ?? 0) < seq, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
            }
            #expect(b.node.replica(of: "alice")?.appliedSequence == seq, "write \(n)")
        }
        await writer.close()
        await a.stop()
        await b.stop()
    }

    /// Without a synchronous standby, a node acknowledges no write: `unavailable`, and the
    /// connection goes on serving reads.
    @Test func aNodeRefusesWritesItCannotMakeDurable() async throws {
        let primary = try PostgresServer(settings: ["synchronous_standby_names": "'ANY 1 (*)'"])
        let standby = try PostgresServer(standbyOf: primary)
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let node = try await Node(postgres: [primary], folder: folder)
        let client = try await node.client()
        _ = try await client.roundTrip(
            line: Array(#"{"op":"add","user":"u","id":"1","text":"one","vector":[1,0]}"#.utf8))
        try primary.sql("ALTER SYSTEM SET synchronous_standby_names = ''")
        try primary.sql("SELECT pg_reload_conf()")
        let refused = try await client.roundTrip(
            line: Array(#"{"op":"add","user":"u","id":"2","text":"two","vector":[1,0]}"#.utf8))
        #expect(refused["ok"] == .bool(false))
        #expect(refused["error"]?.objectValue?["code"] == .string("unavailable"))
        let read = try await client.roundTrip(line: Array(#"{"op":"get","user":"u","id":"1"}"#.utf8))
        #expect(read["ok"] == .bool(true))
        #expect(try node.node.replica(of: "u")?.store.get(user: "u", id: "2") == nil)
        _ = standby
        await client.close()
        await node.stop()
    }
}

extension ClusterNode.Following {
    /// A follower that reads the log only when a test asks it to.
    static let idle = ClusterNode.Following(listens: false, interval: .seconds(3600))
}

extension ContextStoreClient {
    /// Adds `items` (`add_batch` items as JSON) as a client that must not lose them does: a node
    /// refuses with `unavailable` while it cannot prove its lease (a loaded machine may renew
    /// late) or when a write's outcome is unknown, and the batch goes again with `if_absent`
    /// (what did commit is skipped, never stored twice) until it is answered, within a minute.
    /// - Returns: The last answer.
    func addUntilAnswered(_ items: [String]) async throws -> JSONObject {
        let line = Array(#"{"op":"add_batch","if_absent":true,"items":[\#(items.joined(separator: ","))]}"#.utf8)
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let answer = try await roundTrip(line: line)
            guard answer["error"]?.objectValue?["code"] == "unavailable", ContinuousClock.now < deadline else {
                return answer
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
