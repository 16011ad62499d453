import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// The operations a chat app keeps its history with (`list`, `sessions`, `get` of several ids,
/// `update`, `forget` by filter, `backup`), through a real server.
@Suite struct MemoryAPITests {
    /// Memory `n` of user `u`: session `s<n%3>`, role alternating, time 1000+n, metadata with a
    /// number, a tag and a flag.
    static func memory(_ n: Int, user: String = "u", time: Int64? = nil) -> NewMemory {
        NewMemory(
            id: "m\(n)", user: user, session: "s\(n % 3)", role: n % 2 == 0 ? .user : .assistant, text: "turn \(n)",
            createdAt: time ?? Int64(1000 + n),
            metadata: #"{"n":\#(n),"tag":"\#(n % 2 == 0 ? "even" : "odd")","flag":\#(n % 4 == 0),"a.b":"\#(n)"}"#,
            vector: [1, Float(n % 7), Float(n % 5) + 0.5])
    }

    func ids(_ memories: [Memory]) -> [String] { memories.map(\.id) }

    @Test(arguments: [false, true])
    func listPagesInTimeOrderAndItsCursorSurvivesWrites(newestFirst: Bool) async throws {
        let server = try await TestServer()
        let client = try await server.client()
        // Times out of insertion order, and two memories at the same time (ties keep insertion order).
        try await client.addBatch((0..<25).map { Self.memory($0, time: Int64(1000 + ($0 * 7) % 25)) })
        try await client.add(
            NewMemory(id: "tie", user: "u", text: "same time as m0", createdAt: 1000, vector: [1, 0, 1]))
        try await client.add(
            NewMemory(id: "other", user: "v", text: "another user", createdAt: 1005, vector: [1, 0, 1]))
        var expected = (0..<25).sorted { ($0 * 7) % 25 < ($1 * 7) % 25 }.map { "m\($0)" }
        expected.insert("tie", at: 1)
        if newestFirst { expected.reverse() }
        let original = expected

        var seen: [String] = []
        var cursor: String?
        var page = 0
        repeat {
            let result = try await client.list(
                ListRequest(user: "u", newestFirst: newestFirst, limit: 10, cursor: cursor))
            seen += ids(result.memories)
            cursor = result.nextCursor
            if page == 0 {
                // Writes between pages: one memory not yet returned goes, one already returned
                // goes, and one arrives far ahead in the page order.
                try await client.delete(user: "u", id: original[15])
                try await client.delete(user: "u", id: original[2])
                try await client.add(
                    NewMemory(
                        id: "late", user: "u", text: "added between pages",
                        createdAt: newestFirst ? 1 : 9999, vector: [1, 1, 1]))
            }
            page += 1
        } while cursor != nil
        // What the first page showed, then everything after it that is still there, then the
        // newcomer: nothing twice, nothing skipped.
        #expect(seen == Array(original.prefix(10)) + original.dropFirst(10).filter { $0 != original[15] } + ["late"])
        #expect(!seen.contains("other"))
        #expect(page == 3)

        // Times changed between pages (issue 24, item 18): a memory not yet returned moved before
        // the position, one already returned moved after it, and one replaced with another
        // time. Each is returned once, and none is skipped; the moved ones carry their new time.
        for order in [false, true] {
            let times = try await client.list(ListRequest(user: "u", newestFirst: order, limit: 1000)).memories
            var (listed, position): ([String], String?) = ([], nil)
            var first = true
            repeat {
                let result = try await client.list(
                    ListRequest(user: "u", newestFirst: order, limit: 7, cursor: position))
                listed += ids(result.memories)
                position = result.nextCursor
                if first {
                    first = false
                    let (ahead, behind) = (times[12].id, times[3].id)
                    _ = try await client.update(user: "u", id: ahead, MemoryChanges(createdAt: order ? 999_999 : 1))
                    _ = try await client.update(user: "u", id: behind, MemoryChanges(createdAt: order ? 1 : 999_999))
                    _ = try await client.add(
                        NewMemory(
                            id: times[20].id, user: "u", text: "replaced", createdAt: order ? 2 : 999_998,
                            vector: [1, 1, 0]))
                }
            } while position != nil
            #expect(listed.sorted() == times.map(\.id).sorted(), "newest first: \(order)")
            #expect(Set(listed).count == listed.count)
            // Listed again from the start: by the new times.
            let now = try await client.list(ListRequest(user: "u", newestFirst: order, limit: 1000)).memories
            #expect(now.count == times.count)
        }

        // The last page says so; a cursor made up by hand is refused.
        let all = try await client.list(ListRequest(user: "u", limit: 1000))
        #expect(all.nextCursor == nil && all.memories.count == 25)
        await #expect(throws: ClientError.self) { try await client.list(ListRequest(user: "u", cursor: "1.2.-3")) }
        await #expect(throws: ClientError.self) { try await client.list(ListRequest(user: "u", cursor: "x.1")) }
        try await checkError(server, #"{"op":"list","user":"u","cursor":"12"}"#, .invalidValue)
        try await checkError(server, #"{"op":"list","user":"u","limit":0}"#, .invalidValue)
        try await checkError(server, #"{"op":"list","user":"u","limit":1001}"#, .invalidValue)
        try await checkError(server, #"{"op":"list","user":"u","order":"up"}"#, .invalidValue)
        try await checkError(server, #"{"op":"list","user":"u","sesion":"s1"}"#, .unknownField)
        await client.close()
        await server.stop()
    }

    @Test func listFiltersLikeSearchAndOnMetadata() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        try await client.addBatch((0..<12).map { Self.memory($0) })
        try await client.add(
            NewMemory(
                id: "str", user: "u", text: "n as a string", createdAt: 2000, metadata: #"{"n":"3","none":null}"#,
                vector: [1, 1, 1]))
        func list(_ filter: MemoryFilter) async throws -> [String] {
            try await ids(client.list(ListRequest(user: "u", filter: filter)).memories)
        }
        func metadata(_ key: String, _ test: MetadataCondition.Test) -> MemoryFilter {
            MemoryFilter(metadata: [MetadataCondition(key: key, test: test)])
        }
        #expect(try await list(MemoryFilter(rows: RowFilter(session: "s1"))) == ["m1", "m4", "m7", "m10"])
        #expect(
            try await list(MemoryFilter(rows: RowFilter(role: .assistant, since: 1003, until: 1007))) == [
                "m3", "m5", "m7",
            ])
        // Numbers compare by value, never with a string of the same digits.
        #expect(try await list(metadata("n", .equals(.integer(3)))) == ["m3"])
        #expect(try await list(metadata("n", .equals(.double(3.0)))) == ["m3"])
        #expect(try await list(metadata("n", .equals(.string("3")))) == ["str"])
        #expect(
            try await list(metadata("n", .oneOf([.integer(1), .integer(11), .string("3")]))) == ["m1", "m11", "str"])
        #expect(
            try await list(
                metadata("n", .range(greaterThan: nil, atLeast: .integer(4), lessThan: .double(6.5), atMost: nil)))
                == ["m4", "m5", "m6"])
        #expect(try await list(metadata("flag", .equals(.bool(true)))) == ["m0", "m4", "m8"])
        #expect(try await list(metadata("none", .equals(.null))) == ["str"])
        // A key with a dot is one key, not a path.
        #expect(try await list(metadata("a.b", .equals(.string("5")))) == ["m5"])
        #expect(try await list(metadata("missing", .equals(.null))) == [])
        // Conditions compose.
        var both = metadata("tag", .equals(.string("even")))
        both.rows.session = "s0"
        both.metadata.append(
            MetadataCondition(
                key: "n", test: .range(greaterThan: .integer(0), atLeast: nil, lessThan: nil, atMost: nil)))
        #expect(try await list(both) == ["m6"])
        // The same through the wire, as JSON.
        let raw = try RawSocket(port: server.port)
        raw.send(
            #"{"op":"list","user":"u","where":{"n":{"gte":9},"tag":{"in":["odd"]}},"since":"1970-01-01T00:00:01.009Z"}"#
                + "\n")
        let line = try #require(raw.readLine())
        #expect(line.contains(#""id":"m9""#) && line.contains(#""id":"m11""#) && !line.contains(#""id":"m10""#))
        try await checkError(server, #"{"op":"list","user":"u","where":{"n":[1,2]}}"#, .wrongType)
        try await checkError(server, #"{"op":"list","user":"u","where":{"n":{"gte":"3"}}}"#, .wrongType)
        try await checkError(server, #"{"op":"list","user":"u","where":{"n":{"in":[1],"lt":3}}}"#, .invalidValue)
        try await checkError(server, #"{"op":"list","user":"u","where":{"n":{"between":[1,3]}}}"#, .unknownField)
        try await checkError(server, #"{"op":"list","user":"u","where":{"n":{}}}"#, .invalidValue)
        try await checkError(server, #"{"op":"list","user":"u","where":"n=3"}"#, .wrongType)
        // The most values an `in` may list, of every kind, in one condition: a shallow query.
        let many = (0..<997).map { "\($0 + 100)" }.joined(separator: ",")
        raw.send(#"{"op":"list","user":"u","where":{"n":{"in":[\#(many),"3",true,null]}}}"# + "\n")
        let found = try #require(raw.readLine())
        #expect(found.contains(#""id":"str""#) && !found.contains(#""id":"m1""#), "\(found.prefix(200))")
        let tooMany = (0..<1001).map(String.init).joined(separator: ",")
        try await checkError(server, #"{"op":"list","user":"u","where":{"n":{"in":[\#(tooMany)]}}}"#, .invalidValue)
        let keys = (0..<65).map { #""k\#($0)":1"# }.joined(separator: ",")
        try await checkError(server, #"{"op":"list","user":"u","where":{\#(keys)}}"#, .invalidValue)
        await client.close()
        await server.stop()
    }

    @Test func sessionsCountTurnsAndTimes() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        try await client.addBatch((0..<10).map { Self.memory($0) })
        try await client.add(NewMemory(id: "loose", user: "u", text: "no session", createdAt: 500, vector: [1, 1, 1]))
        try await client.add(
            NewMemory(id: "x", user: "v", session: "s0", text: "other user", createdAt: 9, vector: [1, 1, 1]))
        let answer = try await client.sessions(user: "u")
        #expect(
            answer.sessions == [
                SessionSummary(session: "s0", turns: 4, firstAt: 1000, lastAt: 1009),
                SessionSummary(session: "s2", turns: 3, firstAt: 1002, lastAt: 1008),
                SessionSummary(session: "s1", turns: 3, firstAt: 1001, lastAt: 1007),
                SessionSummary(session: nil, turns: 1, firstAt: 500, lastAt: 500),
            ])
        #expect(!answer.more)
        let first = try await client.sessions(user: "u", limit: 2)
        #expect(first.sessions.map(\.session) == ["s0", "s2"] && first.more)
        #expect(try await client.sessions(user: "nobody").sessions.isEmpty)
        try await checkError(server, #"{"op":"sessions","user":"u","limit":10001}"#, .invalidValue)
        await client.close()
        await server.stop()
    }

    @Test func getOfSeveralIdsReturnsVectorsOnlyWhenAsked() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        try await client.addBatch((0..<5).map { Self.memory($0) })
        try await client.add(Self.memory(7, user: "v"))
        let (memories, missing) = try await client.get(user: "u", ids: ["m3", "nope", "m1", "m7"])
        #expect(ids(memories) == ["m3", "m1"])
        #expect(missing == ["nope", "m7"], "another user's id is missing, as any unknown id")
        #expect(memories.allSatisfy { $0.vector.isEmpty })
        let withVectors = try await client.get(user: "u", ids: ["m1"], withVector: true).memories
        #expect(withVectors[0].vector == Metric.normalized([1, 1, 1.5]))
        #expect(try await client.get(user: "u", id: "m2").vector.isEmpty)
        #expect(try await client.get(user: "u", id: "m2", withVector: true).vector.count == 3)
        let raw = try RawSocket(port: server.port)
        raw.send(#"{"op":"get","user":"u","id":"m2"}"# + "\n")
        #expect(try #require(raw.readLine()).contains("vector") == false)
        try await checkError(server, #"{"op":"get","user":"u","id":"m7"}"#, .notFound)
        try await checkError(server, #"{"op":"get","user":"u","id":"m1","ids":["m2"]}"#, .invalidValue)
        try await checkError(server, #"{"op":"get","user":"u","ids":[]}"#, .invalidValue)
        try await checkError(server, #"{"op":"get","user":"u","ids":["a",1]}"#, .wrongType)
        let tooMany = "[" + (0...1000).map { "\"i\($0)\"" }.joined(separator: ",") + "]"
        try await checkError(server, #"{"op":"get","user":"u","ids":\#(tooMany)}"#, .invalidValue)
        await client.close()
        await server.stop()
    }

    /// `speaker`: who said it, beside the role; stored, returned, filtered by every op, changed
    /// by `update`.
    @Test(arguments: ["flat", "hnsw"])
    func speakerIsStoredFilteredAndUpdated(index: String) async throws {
        let server = try await TestServer(index: index == "hnsw" ? .hnsw(HNSWParameters()) : .flat)
        let client = try await server.client()
        let names = ["Caroline", "Melanie", "caroline"]
        try await client.addBatch(
            (0..<9).map { n in
                NewMemory(
                    id: "t\(n)", user: "u", role: .user, speaker: names[n % 3], text: "turn \(n)", createdAt: Int64(n),
                    vector: [1, Float(n), 0.5])
            })
        try await client.add(NewMemory(id: "anon", user: "u", text: "nobody", createdAt: 99, vector: [1, 1, 1]))
        #expect(try await client.get(user: "u", id: "t1").speaker == "Melanie")
        #expect(try await client.get(user: "u", id: "anon").speaker == nil)
        let said = try await client.search(
            SearchRequest(user: "u", query: .vector([1, 4, 0.5]), k: 10, filter: RowFilter(speaker: "Caroline")))
        #expect(said.map(\ScoredMemory.memory.id).sorted() == ["t0", "t3", "t6"], "exact bytes: not 'caroline'")
        #expect(said.allSatisfy { $0.memory.speaker == "Caroline" })
        let listed = try await client.list(
            ListRequest(user: "u", filter: MemoryFilter(rows: RowFilter(speaker: "caroline"))))
        #expect(ids(listed.memories) == ["t2", "t5", "t8"])
        let changed = try await client.update(user: "u", id: "t2", MemoryChanges(speaker: .some("Caroline")))
        #expect(changed.speaker == "Caroline")
        let after = try await client.search(
            SearchRequest(user: "u", query: .vector([1, 4, 0.5]), k: 10, filter: RowFilter(speaker: "Caroline")))
        #expect(after.map(\ScoredMemory.memory.id).sorted() == ["t0", "t2", "t3", "t6"])
        #expect(try await client.update(user: "u", id: "t2", MemoryChanges(speaker: .some(nil))).speaker == nil)
        #expect(try await client.forget(user: "u", filter: MemoryFilter(rows: RowFilter(speaker: "Melanie"))) == 3)
        #expect(try await client.stats().store.memories == 7)
        // A rerun of the same rows skips them; another speaker under the same id is a conflict.
        let rerun = try await client.addBatch(
            [
                NewMemory(
                    id: "t0", user: "u", role: .user, speaker: "Bob", text: "turn 0", createdAt: 0, vector: [1, 0, 0.5])
            ],
            ifAbsent: true)
        #expect(rerun.conflicts == [0])
        await client.close()
        await server.stop()
        #expect(try MemoryStore.check(path: server.folder.path + "/space.db").isSound)
    }

    @Test(arguments: ["flat", "hnsw"])
    func updateChangesFieldsWithoutTheTextAndFiltersSeeIt(index: String) async throws {
        let server = try await TestServer(index: index == "hnsw" ? .hnsw(HNSWParameters()) : .flat)
        let client = try await server.client()
        try await client.addBatch((0..<6).map { Self.memory($0) })
        let before = try await client.get(user: "u", id: "m1", withVector: true)
        let changed = try await client.update(
            user: "u", id: "m1", MemoryChanges(session: .some("moved"), role: .some(nil), metadata: #"{"k":[1,2]}"#))
        #expect(changed.session == "moved" && changed.role == nil && changed.metadata == #"{"k":[1,2]}"#)
        #expect(changed.text == before.text && changed.createdAt == before.createdAt)
        let after = try await client.get(user: "u", id: "m1", withVector: true)
        #expect(after.vector == before.vector)
        // Filters of every kind see the change at once.
        let hits = try await client.search(
            SearchRequest(user: "u", query: .vector([1, 1, 1]), k: 10, filter: RowFilter(session: "moved")))
        #expect(ids(hits.map(\ScoredMemory.memory)) == ["m1"])
        let stale = try await client.search(
            SearchRequest(user: "u", query: .vector([1, 1, 1]), k: 10, filter: RowFilter(session: "s1")))
        #expect(!ids(stale.map(\ScoredMemory.memory)).contains("m1"))
        #expect(
            try await ids(
                client.list(ListRequest(user: "u", filter: MemoryFilter(rows: RowFilter(session: "moved")))).memories)
                == ["m1"])
        let retimed = try await client.update(user: "u", id: "m1", MemoryChanges(createdAt: 5))
        #expect(retimed.createdAt == 5 && retimed.session == "moved")
        #expect(try await client.list(ListRequest(user: "u", limit: 1)).memories[0].id == "m1")

        // Another user's id, or an unknown one: not_found; nothing to change, or the text: refused.
        try await checkError(server, #"{"op":"update","user":"v","id":"m1","role":"user"}"#, .notFound)
        try await checkError(server, #"{"op":"update","user":"u","id":"m1"}"#, .missingField)
        try await checkError(server, #"{"op":"update","user":"u","id":"m1","text":"new"}"#, .unknownField)
        try await checkError(server, #"{"op":"update","user":"u","id":"m1","role":"boss"}"#, .invalidValue)
        try await checkError(server, #"{"op":"update","user":"u","id":"m1","created_at":null}"#, .invalidValue)
        await client.close()
        await server.stop()

        // Stored: a reopened space has the change, and passes its check.
        let reopened = try MemoryStore(path: server.folder.path + "/space.db")
        let stored = try #require(try reopened.get(user: "u", id: "m1"))
        #expect(stored.session == "moved" && stored.role == nil && stored.createdAt == 5)
        reopened.close()
        #expect(try MemoryStore.check(path: server.folder.path + "/space.db").isSound)
    }

    @Test(arguments: ["flat", "hnsw"])
    func forgetRemovesASessionOrWhatAFilterMatches(index: String) async throws {
        let server = try await TestServer(index: index == "hnsw" ? .hnsw(HNSWParameters()) : .flat)
        let client = try await server.client()
        try await client.addBatch((0..<30).map { Self.memory($0) })
        try await client.addBatch((0..<5).map { Self.memory($0, user: "v") })
        // The request that once deleted the whole user now deletes one session.
        let raw = try RawSocket(port: server.port)
        raw.send(#"{"op":"forget","user":"u","session":"s0"}"# + "\n")
        let nodes = index == "hnsw" ? 10 : 0
        #expect(
            raw.readLine()
                == #"{"ok":true,"deleted":10,"receipt":{"memories":10,"keyword_rows":10,"window_rows":0,"source_rows":0,"vectors":10,"graph_nodes":\#(nodes),"cache_entries":0,"left":{"memories":0,"keyword_rows":0,"window_rows":0,"source_rows":0,"vectors":0,"graph_nodes":0,"cache_entries":0,"records":0},"verified":true}}"#
        )
        let byMetadata = MemoryFilter(
            rows: RowFilter(role: .user),
            metadata: [
                MetadataCondition(
                    key: "n", test: .range(greaterThan: nil, atLeast: nil, lessThan: .integer(10), atMost: nil))
            ])
        #expect(try await client.forget(user: "u", filter: byMetadata) == 3, "m2, m4, m8")
        #expect(try await client.forget(user: "u", filter: MemoryFilter(rows: RowFilter(session: "none"))) == 0)
        let left = try await client.list(ListRequest(user: "u")).memories
        #expect(ids(left) == (0..<30).filter { $0 % 3 != 0 && !($0 < 10 && $0 % 2 == 0) }.map { "m\($0)" })
        // Searches agree with what is left.
        let hits = try await client.search(SearchRequest(user: "u", query: .vector([1, 1, 1]), k: 100))
        #expect(Set(ids(hits.map(\ScoredMemory.memory))) == Set(ids(left)))
        #expect(try await client.list(ListRequest(user: "v")).memories.count == 5, "another user is untouched")
        #expect(try await client.forget(user: "u") == left.count)
        #expect(try await client.stats().store.memories == 5)
        await client.close()
        await server.stop()
        #expect(try MemoryStore.check(path: server.folder.path + "/space.db").isSound)
    }

    @Test func backupOpWritesACheckedCopy() async throws {
        let backups = TemporaryFolder()
        let server = try await TestServer { $0.backupDirectory = backups.path }
        let client = try await server.client()
        try await client.addBatch((0..<40).map { Self.memory($0) })
        let target = backups.path + "/copy.db"
        let answer = try await client.backup(to: target)
        #expect(answer.path == target && answer.memories == 40 && answer.bytes > 0)
        let copy = try MemoryStore(path: target)
        #expect(try copy.get(user: "u", id: "m39") == server.store.get(user: "u", id: "m39"))
        copy.close()
        #expect(try await client.backup(to: "second.db").path == backups.path + "/second.db")
        try await checkError(server, #"{"op":"backup","to":"\#(target)"}"#, .invalidValue)
        try await checkError(server, #"{"op":"backup"}"#, .missingField)
        // Only inside the backup folder: never elsewhere, never onto the database's own files.
        for outside in [
            server.folder.path + "/space.db-journal", server.folder.path + "/elsewhere.db", "../escape.db",
            "sub/../../escape.db", backups.path + "/", "/etc/x.db",
        ] {
            try await checkError(server, #"{"op":"backup","to":"\#(outside)"}"#, .invalidValue)
        }
        await client.close()
        await server.stop()
        let sameFolder = try await TestServer { $0.backupDirectory = nil }
        try await checkError(sameFolder, #"{"op":"backup","to":"/tmp/x.db"}"#, .forbidden)
        await sameFolder.stop()
        // Backups beside the database: its own files are refused (one was seen broken by a
        // backup onto its journal).
        let folder = TemporaryFolder()
        let process = try ServerProcess(
            database: folder.path + "/space.db", arguments: ["--dim", "2", "--backup-dir", folder.path])
        let socket = try RawSocket(port: process.port)
        for own in ["space.db", "space.db-wal", "space.db-shm", "space.db-journal", folder.path + "/space.db-journal"] {
            socket.send(#"{"op":"backup","to":"\#(own)"}"# + "\n")
            #expect(socket.readLine()?.contains("is one of the database's own files") == true, "\(own)")
        }
        socket.send(#"{"op":"backup","to":"copy.db"}"# + "\n")
        #expect(socket.readLine()?.hasPrefix(#"{"ok":true,"path":"\#(folder.path)/copy.db""#) == true)
        process.signal(SIGTERM)
        #expect(try runContextstore(["check", "--db", folder.path + "/space.db"]).status == 0)
        // The copy holds the same rows and the same last write, until one of them changes.
        let space = folder.path + "/space.db"
        let replica = folder.path + "/copy.db"
        #expect(try runContextstore(["check", "--db", space, "--against", replica]).status == 0)
        let store = try MemoryStore(path: replica)
        try store.add([NewMemory(id: "late", user: "u", text: "t", vector: [1, 0])])
        store.close()
        let differs = try runContextstore(["check", "--db", space, "--against", replica])
        #expect(differs.status == 1 && differs.output.contains("problem: \(replica) differs: applied index"))
    }

    /// Sends one raw request line and expects the error `code`.
    func checkError(_ server: TestServer, _ line: String, _ code: ErrorCode) async throws {
        let socket = try RawSocket(port: server.port)
        socket.send(line + "\n")
        let answer = try #require(socket.readLine())
        #expect(answer.contains(#""code":"\#(code.rawValue)""#), "\(line) -> \(answer)")
    }
}
