import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import MemoryStore
import NIOCore
import NIOEmbedded
import NIOSSL
import Testing
import VectorIndex

@testable import ContextServer

/// The defects of issue 24 that a client reaches through the wire, each through a real server.
@Suite(.serialized) struct HostileInputTests {
    func code(_ line: String?) -> String? {
        guard let line, case .object(let object) = try? JSONParser.parse(line),
            case .object(let error) = object["error"], case .string(let code) = error["code"]
        else { return nil }
        return code
    }

    /// The line reader kept every byte a connection sent while each read ended mid-line (it
    /// only moved its reader index, and dropped the buffer when a read ended at a newline).
    @Test func aConnectionWhoseReadsEndMidLineHoldsOneLine() async throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(database: folder.path + "/space.db", arguments: ["--dim", "2"])
        let socket = try RawSocket(port: server.port)
        socket.discardAnswersInBackground()
        // A stream of 1,001-byte pings (JSON allows the spaces), sent in 1 MiB writes: each
        // write, and so most reads, ends inside a line.
        let line = Array((#"{"op":"ping"}"# + String(repeating: " ", count: 987) + "\n").utf8)
        let pattern = Array(repeating: line, count: 2100).flatMap { $0 }
        var offset = 0
        func nextChunk() -> ArraySlice<UInt8> {
            defer { offset = (offset + (1 << 20)) % line.count }
            return pattern[offset..<(offset + (1 << 20))]
        }
        #expect(socket.send(Array(nextChunk())))
        let before = server.residentBytes
        for _ in 0..<200 { #expect(socket.send(Array(nextChunk()))) }
        let grown = server.residentBytes - before
        // Unbounded, the 200 MB sent stayed in the connection's buffer.
        #expect(grown < 48 << 20, "RSS grew by \(grown >> 20) MB")
        let probe = try RawSocket(port: server.port)
        probe.send(#"{"op":"ping"}"# + "\n")
        #expect(probe.readLine() == #"{"ok":true,"pong":true}"#)
        server.signal(SIGTERM)
    }

    /// Every time a request carries is in the years 0001 to 9999, whichever way it is written.
    @Test func timesOutsideTheCalendarAreRefusedAtDecode() async throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(database: folder.path + "/space.db", arguments: ["--dim", "2"])
        let socket = try RawSocket(port: server.port)
        func send(_ line: String) -> String? {
            socket.send(line + "\n")
            return socket.readLine()
        }
        for time in [
            "-9223372036854775808", "9223372036854775807", "253402300800000", "-62135596800001", #""0000-12-31""#,
        ] {
            #expect(
                code(send(#"{"op":"add","user":"u","text":"t","vector":[1,0],"created_at":\#(time)}"#))
                    == "invalid_value")
            #expect(code(send(#"{"op":"search","user":"u","vector":[1,0],"since":\#(time)}"#)) == "invalid_value")
        }
        #expect(
            code(
                send(
                    #"{"op":"add","user":"u","id":"a","text":"t","vector":[1,0],"created_at":"9999-12-31T23:59:59.999Z"}"#
                )) == nil)
        #expect(
            code(send(#"{"op":"add","user":"u","id":"b","text":"t","vector":[1,0],"created_at":-62135596800000}"#))
                == nil)
        #expect(
            code(send(#"{"op":"update","user":"u","id":"a","created_at":-9223372036854775808}"#)) == "invalid_value")
        let hits = send(#"{"op":"search","user":"u","vector":[1,0],"half_life":1}"#)
        #expect(hits?.hasPrefix(#"{"ok":true,"hits":[{"#) == true)
        server.signal(SIGTERM)
    }

    /// `hello` told any key how many memories the whole space holds.
    @Test func helloTellsTheSpaceSizeToAnAdminOnly() async throws {
        let server = try await TestServer(dimension: 2) { $0.keys = KeyRing(KeysTests.keys) }
        let root = try await ContextStoreClient.connect(port: server.port, secret: "root-secret-0123456789")
        _ = try await root.add(NewMemory(user: "bob", text: "t", vector: [1, 0]))
        #expect(try await root.hello().memories == 1)
        let reader = try await ContextStoreClient.connect(port: server.port, secret: "reader-secret-0123456789")
        #expect(try await reader.hello().memories == nil)
        await root.close()
        await reader.close()
        await server.stop()
    }

    /// Graph nodes of memories added since the start carried no expiry, so an HNSW search
    /// returned them after they expired; `update` answered an expired memory.
    @Test func anExpiredMemoryLeavesEveryReadOfAGraphSpace() async throws {
        let server = try await TestServer(dimension: 2, index: .hnsw(HNSWParameters())) {
            $0.purgeInterval = .seconds(3600)
        }
        let client = try await server.client()
        // Enough rows that the planner walks the graph rather than scanning.
        let rows: [NewMemory] = (0..<3000).map { i in
            let vector: [Float] = [Float(i % 97) + 1, Float(i % 89)]
            return NewMemory(id: "m\(i)", user: "u", text: "t", vector: vector)
        }
        try await client.addBatch(rows)
        let added = ContinuousClock.now
        _ = try await client.add(NewMemory(id: "brief", user: "u", text: "gone soon", vector: [1, 1000], ttl: 2))
        // A small ef: the planner walks the graph (48 ef < the user's rows).
        let before = try await client.search(SearchRequest(user: "u", query: .vector([1, 1000]), k: 1, ef: 16))
        // Found while it lives (unless a busy machine took its 2 s before the search came back).
        if ContinuousClock.now - added < .seconds(2) { #expect(before.map { $0.memory.id } == ["brief"]) }
        try await Task.sleep(until: added + .milliseconds(2100))
        let after = try await client.search(SearchRequest(user: "u", query: .vector([1, 1000]), k: 5, ef: 16))
        #expect(after.count == 5 && !after.contains { $0.memory.id == "brief" })
        let socket = try RawSocket(port: server.port)
        socket.send(#"{"op":"update","user":"u","id":"brief","metadata":{"a":1}}"# + "\n")
        #expect(code(socket.readLine()) == "not_found")
        await client.close()
        await server.stop()
    }

    /// Replacing a memory reset its feedback in memory but not in the file: its ranking changed
    /// at the next start.
    @Test func replacingAMemoryResetsItsFeedbackOnDiskToo() async throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        var server = try ServerProcess(database: database, arguments: ["--dim", "2"])
        var socket = try RawSocket(port: server.port)
        for line in [
            #"{"op":"add","user":"u","id":"a","text":"t","vector":[1,0]}"#,
            #"{"op":"feedback","user":"u","id":"a","helped":true}"#,
            #"{"op":"add","user":"u","id":"a","text":"another","vector":[0,1]}"#,
        ] {
            socket.send(line + "\n")
            #expect(code(socket.readLine()) == nil)
        }
        socket.send(#"{"op":"feedback","user":"u","id":"a","helped":true}"# + "\n")
        #expect(socket.readLine() == #"{"ok":true,"helped":1,"not_helped":0}"#)
        server.signal(SIGTERM)
        server = try ServerProcess(database: database, arguments: ["--dim", "2"])
        socket = try RawSocket(port: server.port)
        socket.send(#"{"op":"feedback","user":"u","id":"a","helped":false}"# + "\n")
        #expect(socket.readLine() == #"{"ok":true,"helped":1,"not_helped":1}"#)
        server.signal(SIGTERM)
    }

    /// A client that shuts down its sending side was cut off (NIO closed the connection at end
    /// of input); it gets the answers to everything it sent, then the end of the stream.
    @Test func aHalfClosedClientGetsEveryAnswer() async throws {
        let server = try await TestServer(dimension: 2)
        let socket = try RawSocket(port: server.port)
        let lines =
            String(repeating: #"{"op":"ping"}"# + "\n", count: 200)
            + #"{"op":"add","user":"u","id":"a","text":"t","vector":[1,0]}"# + "\n" + #"{"op":"pi"#
        socket.send(lines)
        socket.shutdownWrite()
        var answers: [String] = []
        while let line = socket.readLine() { answers.append(line) }
        #expect(answers.count == 201)
        #expect(answers.last == #"{"ok":true,"id":"a"}"#)
        #expect(socket.endError == 0)
        await server.stop()
    }

    /// On SIGTERM a pipelining client was reset: the server closed with its lines unread, and
    /// the reset could drop answers before the client read them. Every line the server read is
    /// answered (ok, or shutting_down), then the stream ends in order.
    @Test func aPipeliningClientIsNotResetAtShutdown() async throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(database: folder.path + "/space.db", arguments: ["--dim", "2"])
        let socket = try RawSocket(port: server.port)
        socket.send(String(repeating: #"{"op":"ping"}"# + "\n", count: 20_000))
        // The first answer read: the server is in the middle of the pipeline (on a loaded
        // machine, 20 ms after the send it had not always read a line, and had none to answer).
        #expect(socket.readLine() == #"{"ok":true,"pong":true}"#)
        kill(server.process.processIdentifier, SIGTERM)
        var pongs = 1
        var refused = 0
        var other: [String] = []
        while let line = socket.readLine() {
            if line == #"{"ok":true,"pong":true}"# {
                pongs += 1
            } else if line.contains(#""code":"shutting_down""#) {
                refused += 1
            } else {
                other.append(line)
            }
        }
        #expect(other.isEmpty, "\(other.prefix(3))")
        #expect(pongs + refused > 1)
        #expect(socket.endError == 0, "the stream ended with errno \(socket.endError)")
        server.process.waitUntilExit()
    }

    /// 150 connections that never read a 20 MB answer grew the server to 3 GB: each connection's
    /// unsent answers were bounded, not all of them together, nor one answer's length.
    @Test func answersNobodyReadsAreBoundedInTotal() async throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(
            database: folder.path + "/space.db",
            arguments: ["--dim", "2", "--max-answer-bytes", "4000000", "--max-unsent-bytes", "8000000"])
        let setup = try RawSocket(port: server.port)
        let blob = String(repeating: "x", count: 150_000)
        for i in 0..<50 {
            let user = i < 20 ? "u" : "big"
            setup.send(#"{"op":"add","user":"\#(user)","text":"t","vector":[1,0],"metadata":{"b":"\#(blob)"}}"# + "\n")
            #expect(setup.readLine()?.hasPrefix(#"{"ok":true"#) == true)
        }
        // One answer past the cap: too_large, and the connection goes on.
        setup.send(#"{"op":"list","user":"big","limit":30}"# + "\n")
        setup.send(#"{"op":"list","user":"u","limit":20}"# + "\n")
        #expect(setup.readLine()?.contains(#""code":"too_large","message":"the answer would be "#) == true)
        #expect(setup.readLine()?.hasPrefix(#"{"ok":true,"memories":["#) == true)
        let before = server.residentBytes
        // 40 clients that never read, each asking for ten 3 MB answers.
        let idle = try (0..<40).map { _ in try RawSocket(port: server.port, receiveBuffer: 4096) }
        for socket in idle {
            socket.send(String(repeating: #"{"op":"list","user":"u","limit":20}"# + "\n", count: 10))
        }
        try await Task.sleep(for: .seconds(3))
        let grown = server.residentBytes - before
        // Unbounded: about 40 x 4 MB (an answer and the high water mark each).
        #expect(grown < 64 << 20, "RSS grew by \(grown >> 20) MB")
        // A client that reads is still served.
        let reader = try RawSocket(port: server.port)
        reader.send(#"{"op":"ping"}"# + "\n")
        #expect(reader.readLine() == #"{"ok":true,"pong":true}"#)
        _ = idle
        server.signal(SIGKILL)
    }

    @Test func theFramerKeepsTheUnfinishedLineAlone() throws {
        let limits = ConnectionLimits(maximumConnections: 1, maximumBufferedBytes: 1 << 20)
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(RequestLineDecoder(limits: limits, maximumLineBytes: 4096)))
        var lines = 0
        for _ in 0..<10_000 {
            for read in [#"{"op":"ping"}"# + "\n" + #"{"op":"pi"#, #"ng"}"# + "\n" + #"{"op""#] {
                try channel.writeInbound(ByteBuffer(string: read))
                while let _: ByteBuffer = try channel.readInbound() { lines += 1 }
                // The storage of an unfinished line (and the 2 KiB of read bytes NIO's
                // handler may keep before it reclaims them), not of everything sent.
                #expect(limits.buffer(0) <= 2048)
            }
        }
        #expect(lines == 20_000)
        // One line too long is refused, whole or not.
        #expect(throws: RequestLineDecoder.Failure.lineTooLong) {
            try channel.writeInbound(ByteBuffer(string: String(repeating: "x", count: 5000)))
        }
        _ = try? channel.finish()
        #expect(limits.buffer(0) == 0)
    }
}

/// A server started outside the checkout ran without its model and token counter (relative
/// default paths), and hybrid searches became keyword searches with one info line (issue 24,
/// item 24).
@Suite struct SilentDegradationTests {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Starts `contextstore serve` in `folder` with `environment`; its first line (or error).
    func serve(_ arguments: [String], in folder: String, home: String?) throws -> (Process, String, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: contextstoreExecutable())
        process.arguments = ["serve", "--port", "0", "--http-port", "none"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        var environment = ProcessInfo.processInfo.environment
        environment["CONTEXTSTORE_HOME"] = home
        process.environment = environment
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        var line = [UInt8]()
        while let byte = output.fileHandleForReading.readData(ofLength: 1).first, byte != 0x0A { line.append(byte) }
        return (process, String(decoding: line, as: UTF8.self), error)
    }

    @Test func aSpaceIsNotServedWithoutItsModelUnlessAsked() throws {
        let model = repository + "/data/models/all-MiniLM-L6-v2"
        try #require(FileManager.default.fileExists(atPath: model + "/model.safetensors"), "scripts/fetch-model")
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        // Made with the model, from another folder: the home is found from the executable.
        var (process, line, _) = try serve(["--db", database], in: folder.path, home: nil)
        #expect(line.hasPrefix("listening on "), "\(line)")
        let port = Int(line.split(separator: ":").last ?? "") ?? 0
        let socket = try RawSocket(port: port)
        socket.send(#"{"op":"hello"}"# + "\n")
        #expect(socket.readLine()?.contains(#""embedder":"all-MiniLM-L6-v2""#) == true)
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        // A home without the model: refused, and said why.
        let empty = TemporaryFolder()
        let error: Pipe
        (process, line, error) = try serve(["--db", database], in: folder.path, home: empty.path)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1)
        let said = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(
            said.contains(
                "was filled by the model all-MiniLM-L6-v2, which is not at \(empty.path)/data/models/all-MiniLM-L6-v2"),
            "\(said)")
        // Asked for: served, and a text search says what it could not use.
        (process, line, _) = try serve(["--db", database, "--model", "none"], in: folder.path, home: empty.path)
        let other = try RawSocket(port: Int(line.split(separator: ":").last ?? "") ?? 0)
        other.exchange(
            #"{"op":"search","user":"u","query":"tea"}"#, #"{"ok":true,"hits":[],"degraded":["vector"]}"#,
            now: FixedClock.now)
        other.exchange(
            #"{"op":"search","user":"u","query":"tea","mode":"keyword"}"#, #"{"ok":true,"hits":[]}"#,
            now: FixedClock.now)
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }
}

/// The line protocol and the metrics listener in the clear, keys included (issue 24, item 15).
@Suite struct TLSTests {
    /// A self-signed certificate for localhost and 127.0.0.1, made with openssl.
    func certificate(in folder: TemporaryFolder) throws -> (certificate: String, key: String) {
        let (certificate, key) = (folder.path + "/cert.pem", folder.path + "/key.pem")
        let made = try runProgram(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                key, "-out", certificate, "-days", "2", "-subj", "/CN=localhost", "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ])
        try #require(made.status == 0, "\(made.error)")
        return (certificate, key)
    }

    @Test func theProtocolAndTheMetricsSpeakTLS() async throws {
        let folder = TemporaryFolder()
        let (certificate, key) = try certificate(in: folder)
        let server = try ServerProcess(
            database: folder.path + "/space.db",
            arguments: ["--dim", "2", "--tls-cert", certificate, "--tls-key", key, "--metrics-port", "0"])
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificate))
        let client = try await ContextStoreClient.connect(host: "localhost", port: server.port, tls: trusting)
        _ = try await client.add(NewMemory(id: "a", user: "u", text: "over TLS \u{0}", vector: [1, 0]))
        #expect(try await client.get(user: "u", id: "a").text == "over TLS \u{0}")
        await client.close()
        // The CLI, trusting the certificate; and refused in the clear.
        let ping = try runContextstore(["ping", "--port", "\(server.port)", "--tls-ca", certificate])
        #expect(ping.output == #"{"ok":true,"pong":true}"# + "\n", "\(ping.error)")
        let plain = try runContextstore(["ping", "--port", "\(server.port)", "--timeout", "2"])
        #expect(plain.status == 1)
        // A client that does not trust it is refused.
        let untrusting = try? await ContextStoreClient.connect(
            host: "localhost", port: server.port, tls: .makeClientConfiguration())
        if let untrusting { await #expect(throws: (any Error).self) { try await untrusting.ping() } }
        server.signal(SIGTERM)
    }

    @Test func keysOffLoopbackNeedTLS() throws {
        let folder = TemporaryFolder()
        let keys = folder.path + "/keys.json"
        _ = FileManager.default.createFile(
            atPath: keys,
            contents: Data(#"{"keys":[{"name":"a","secret":"0123456789abcdef","role":"admin"}]}"#.utf8))
        let result = try runContextstore([
            "serve", "--db", folder.path + "/space.db", "--model", "none", "--host", "0.0.0.0", "--port", "0",
            "--http-port", "none",
            "--keys", keys,
        ])
        #expect(result.status == 1)
        #expect(result.error.contains("with keys but without TLS"), "\(result.error)")
    }
}
