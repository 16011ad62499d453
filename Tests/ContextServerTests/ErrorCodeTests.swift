import ContextClient
import ContextModel
import ContextProtocol
import MemoryStore
import Testing

@testable import MemoryStore

/// One test per wire error code, each asserting the exact line the server sends, and that the
/// connection (or, for codes that close it, the server) keeps serving.
@Suite struct ErrorCodeTests {
    /// Sends each request line and checks each answer exactly, then checks the connection works.
    func expectAnswers(_ pairs: [(String, String)], server: TestServer) throws {
        let socket = try RawSocket(port: server.port)
        for (request, answer) in pairs {
            socket.send(request + "\n")
            #expect(socket.readLine() == answer, "request: \(request)")
        }
        socket.send(#"{"op":"ping"}"# + "\n")
        #expect(socket.readLine() == #"{"ok":true,"pong":true}"#)
    }

    /// A vector longer than any space may hold (`Metric.maximumDimension`) is refused as it is
    /// read, as JSON numbers or base64, so a space without a dimension never takes it as its
    /// own; one of that length is stored and fixes the dimension.
    @Test func aVectorLongerThanAnySpaceHoldsIsRefused() async throws {
        let server = try await TestServer()
        let longest = Metric.maximumDimension
        let refused =
            #"{"ok":false,"error":{"code":"wrong_dimension","message":"'vector' may have at most 65536 components, not 65537"}}"#
        let numbers = "[" + Array(repeating: "0.5", count: longest + 1).joined(separator: ",") + "]"
        let base64 = "\"" + Base64.encode([Float](repeating: 0.5, count: longest + 1)) + "\""
        try expectAnswers(
            [
                (#"{"op":"add","user":"u","id":"a","text":"t","vector":"# + numbers + "}", refused),
                (#"{"op":"add","user":"u","id":"a","text":"t","vector":"# + base64 + "}", refused),
                (#"{"op":"search","user":"u","vector":"# + base64 + "}", refused),
            ], server: server)
        #expect(server.store.dimension == nil && server.store.count == 0)
        let socket = try RawSocket(port: server.port)
        let vector = "\"" + Base64.encode([Float](repeating: 0.5, count: longest)) + "\""
        socket.send(#"{"op":"add","user":"u","id":"a","text":"t","vector":"# + vector + "}\n")
        #expect(try #require(socket.readLine()).hasPrefix(#"{"ok":true"#))
        #expect(server.store.dimension == longest)
        await server.stop()
    }

    @Test func requestErrors() async throws {
        let server = try await TestServer(dimension: 2)
        try expectAnswers(
            [
                (
                    "{\"op\":",
                    #"{"ok":false,"error":{"code":"invalid_json","message":"invalid JSON: unexpected end of input at byte 6"}}"#
                ),
                (
                    "[1,2]",
                    #"{"ok":false,"error":{"code":"not_object","message":"a request must be a JSON object, not array"}}"#
                ),
                (#"{"op":"fly"}"#, #"{"ok":false,"error":{"code":"unknown_op","message":"unknown op 'fly'"}}"#),
                (#"{"op":"get"}"#, #"{"ok":false,"error":{"code":"missing_field","message":"missing field 'user'"}}"#),
                (
                    #"{"op":"get","user":"u"}"#,
                    #"{"ok":false,"error":{"code":"missing_field","message":"missing field 'id'"}}"#
                ),
                (
                    #"{"op":"get","user":"u","id":1}"#,
                    #"{"ok":false,"error":{"code":"wrong_type","message":"'id' must be a string, not number"}}"#
                ),
                (
                    #"{"op":"forget","user":""}"#,
                    #"{"ok":false,"error":{"code":"invalid_value","message":"'user' must not be empty"}}"#
                ),
                (
                    #"{"op":"add","user":"u","text":"t","vector":[1,2,3]}"#,
                    #"{"ok":false,"error":{"code":"wrong_dimension","message":"vector has 3 components, the space has dimension 2"}}"#
                ),
                (
                    #"{"op":"search","user":"u","vector":[1]}"#,
                    #"{"ok":false,"error":{"code":"wrong_dimension","message":"vector has 1 components, the space has dimension 2"}}"#
                ),
                (
                    #"{"op":"add","user":"u","text":"t","vector":[1,NaN]}"#,
                    #"{"ok":false,"error":{"code":"non_finite","message":"vector[1] is not a finite float32 (nan)"}}"#
                ),
                (
                    #"{"op":"search","user":"u","vector":[Infinity,1]}"#,
                    #"{"ok":false,"error":{"code":"non_finite","message":"vector[0] is not a finite float32 (inf)"}}"#
                ),
                (
                    #"{"op":"search","user":"u","vector":[1,2],"k":0}"#,
                    #"{"ok":false,"error":{"code":"k_out_of_range","message":"k must be between 1 and 1000, not 0"}}"#
                ),
                (
                    #"{"op":"search","user":"u","vector":[1,2],"k":1000000000}"#,
                    #"{"ok":false,"error":{"code":"k_out_of_range","message":"k must be between 1 and 1000, not 1000000000"}}"#
                ),
                (
                    #"{"op":"get","user":"u","id":"ghost"}"#,
                    #"{"ok":false,"error":{"code":"not_found","message":"user 'u' has no memory with id 'ghost'"}}"#
                ),
                (
                    #"{"op":"delete","user":"u","id":"ghost"}"#,
                    #"{"ok":false,"error":{"code":"not_found","message":"user 'u' has no memory with id 'ghost'"}}"#
                ),
                (
                    #"{"op":"forget","user":"u","sesion":"a"}"#,
                    #"{"ok":false,"error":{"code":"unknown_field","message":"unknown field 'sesion'; this accepts role, session, since, speaker, until, user, where, with_derived"}}"#
                ),
                (
                    #"{"op":"search","user":"u","vector":[1,0,0],"sesion":"a"}"#,
                    #"{"ok":false,"error":{"code":"unknown_field","message":"unknown field 'sesion'; this accepts as_of, context, ef, exact, explain, feedback_boost, half_life, include_superseded, k, mode, now, query, role, session, since, speaker, until, user, vector, where"}}"#
                ),
                (
                    #"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1,0,0],"roll":"user"}]}"#,
                    #"{"ok":false,"error":{"code":"unknown_field","message":"items[0]: unknown field 'roll'; this accepts created_at, dedupe, expires_at, helped, id, metadata, not_helped, role, session, sources, speaker, supersedes, text, ttl, user, valid_from, vector"}}"#
                ),
                (
                    #"{"op":"ping","pong":true}"#,
                    #"{"ok":false,"error":{"code":"unknown_field","message":"unknown field 'pong'; this op takes none"}}"#
                ),
                // `min_seq` is for a request about one user; on one server it is already met.
                (
                    #"{"op":"stats","min_seq":3}"#,
                    #"{"ok":false,"error":{"code":"invalid_value","message":"'min_seq' is for a request about one user; op 'stats' names 0"}}"#
                ),
                (
                    #"{"op":"get","user":"u","id":"ghost","min_seq":-1}"#,
                    #"{"ok":false,"error":{"code":"invalid_value","message":"'min_seq' must be a sequence a write answered (0 or more), not -1"}}"#
                ),
                (
                    #"{"op":"get","user":"u","id":"ghost","min_seq":1.5}"#,
                    #"{"ok":false,"error":{"code":"wrong_type","message":"'min_seq' must be a 64-bit integer, not 1.5"}}"#
                ),
                (
                    #"{"op":"get","rid":2,"user":"u","id":"ghost","min_seq":99}"#,
                    #"{"ok":false,"rid":2,"error":{"code":"not_found","message":"user 'u' has no memory with id 'ghost'"}}"#
                ),
            ], server: server)
        #expect(server.store.count == 0)
        await server.stop()
    }

    @Test func binaryGarbageIsInvalidJSONAndTheConnectionSurvives() async throws {
        let server = try await TestServer()
        let socket = try RawSocket(port: server.port)
        var generator = SystemRandomNumberGenerator()
        var blob = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        blob.removeAll { $0 == 0x0A }
        blob.insert(0xFF, at: 0)  // never valid JSON, whatever follows
        socket.send(blob + [0x0A])
        #expect(socket.readLine()?.contains(#""code":"invalid_json""#) == true)
        socket.send(#"{"op":"ping"}"# + "\n")
        #expect(socket.readLine() == #"{"ok":true,"pong":true}"#)
        await server.stop()
    }

    @Test func lineTooLongClosesOnlyThatConnection() async throws {
        let server = try await TestServer { $0.maximumLineBytes = 1024 }
        let bystander = try RawSocket(port: server.port)

        // An unterminated line that keeps growing: refused once it passes the limit.
        let endless = try RawSocket(port: server.port)
        endless.send(#"{"op":"ping","rid":""# + String(repeating: "x", count: 100_000))
        #expect(
            endless.readLine()
                == #"{"ok":false,"error":{"code":"line_too_long","message":"request line longer than 1024 bytes; closing"}}"#
        )
        #expect(endless.readLine() == nil)

        // A whole line over the limit, arriving at once.
        let whole = try RawSocket(port: server.port)
        whole.send(#"{"op":"ping"}"# + "\n" + #"{"op":"ping","rid":""# + String(repeating: "y", count: 2000) + "\"}\n")
        #expect(whole.readLine() == #"{"ok":true,"pong":true}"#)
        #expect(whole.readLine()?.contains(#""code":"line_too_long""#) == true)
        #expect(whole.readLine() == nil)

        bystander.send(#"{"op":"ping"}"# + "\n")
        #expect(bystander.readLine() == #"{"ok":true,"pong":true}"#)
        await server.stop()
    }

    @Test func hugeLineAtTheDefaultLimit() async throws {
        // 16 MiB without a newline: the server must stop buffering at 8 MiB, not at 4 GB.
        let server = try await TestServer()
        let socket = try RawSocket(port: server.port)
        let chunk = [UInt8](repeating: UInt8(ascii: "7"), count: 1 << 20)
        var sent = 0
        while sent < 16, socket.send(chunk) { sent += 1 }
        #expect(socket.readLine()?.contains(#""code":"line_too_long""#) == true)
        let other = try RawSocket(port: server.port)
        other.send(#"{"op":"ping"}"# + "\n")
        #expect(other.readLine() == #"{"ok":true,"pong":true}"#)
        await server.stop()
    }

    @Test func aSocketClosedMidLineIsCleanedUp() async throws {
        let server = try await TestServer(dimension: 2)
        do {
            let socket = try RawSocket(port: server.port)
            socket.send(#"{"op":"add","user":"u","text":"t","vector":[1,"#)
            socket.shutdownWrite()
            #expect(socket.readLine() == nil)
        }
        let client = try await server.client()
        try await client.ping()
        #expect(try await client.stats().store.memories == 0)
        await client.close()
        await server.stop()
    }

    @Test func busyWhenTheWriteQueueIsFull() async throws {
        let server = try await TestServer(dimension: 2) { $0.maximumQueuedWrites = 0 }
        try expectAnswers(
            [
                (
                    #"{"op":"add","rid":1,"user":"u","text":"t","vector":[1,2]}"#,
                    #"{"ok":false,"rid":1,"error":{"code":"busy","message":"too many writes queued; retry later"}}"#
                )
            ],
            server: server)
        await server.stop()
    }

    @Test func shuttingDownOnceTheDatabaseIsClosed() async throws {
        let server = try await TestServer(dimension: 2)
        server.store.close()
        try expectAnswers(
            [
                (
                    #"{"op":"add","user":"u","text":"t","vector":[1,2]}"#,
                    #"{"ok":false,"error":{"code":"shutting_down","message":"the database is closed"}}"#
                )
            ],
            server: server)
        await server.stop()
    }

    @Test func storageErrorWhenTheFileIsLockedAndNothingIsStored() async throws {
        let server = try await TestServer(dimension: 2, busyTimeoutMilliseconds: 50)
        // Another process holds the write lock on the file.
        let other = try Database(path: server.store.path)
        try other.execute("BEGIN EXCLUSIVE")
        let socket = try RawSocket(port: server.port)
        socket.send(#"{"op":"add","id":"x","user":"u","text":"t","vector":[1,2]}"# + "\n")
        let line = try #require(socket.readLine())
        #expect(
            line.hasPrefix(
                #"{"ok":false,"error":{"code":"storage_error","message":"SQLite error 5: database is locked"#),
            "\(line)")
        try other.execute("ROLLBACK")
        other.close()
        socket.send(#"{"op":"get","user":"u","id":"x"}"# + "\n")
        #expect(socket.readLine()?.contains(#""code":"not_found""#) == true)
        await server.stop()
    }
}
