import ContextModel
import ContextProtocol
import Foundation
import Testing

@testable import MemoryStore

/// The defects found by adversarial testing (issue 9), each through a real server: strings with
/// NUL and other spellings, clients that never read, that hold lines open or open too many
/// connections, numbers JSON cannot carry, vectors at the edges of float32.
@Suite struct AdversarialTests {
    /// Sends each line and returns each answer line.
    func answers(_ lines: [String], port: Int) throws -> [String] {
        let socket = try RawSocket(port: port)
        return lines.map { line in
            socket.send(line + "\n")
            return socket.readLine() ?? "<closed>"
        }
    }

    func code(_ line: String) -> String? {
        guard case .object(let object) = try? JSONParser.parse(line), case .object(let error) = object["error"],
            case .string(let code) = error["code"]
        else { return nil }
        return code
    }

    @Test(arguments: ["flat", "hnsw"])
    func nulBytesRoundTripThroughTheFile(index: String) async throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        var server = try ServerProcess(database: database, arguments: ["--dim", "2", "--index", index])
        let adds = [
            #"{"op":"add","id":"k1","user":"bob","text":"bob's","vector":[1,0]}"#,
            #"{"op":"add","id":"k1\u0000","user":"mallory","text":"a\u0000b","vector":[0,1]}"#,
            #"{"op":"add","id":"k2","user":"carol\u0000zzz","session":"s\u0000","text":"c","vector":[1,1]}"#,
        ]
        #expect(try answers(adds, port: server.port).allSatisfy { $0.hasPrefix(#"{"ok":true"#) })
        server.signal(SIGTERM)
        server = try ServerProcess(database: database, arguments: ["--dim", "2"])
        let gets = try answers(
            [
                #"{"op":"get","user":"bob","id":"k1"}"#, #"{"op":"get","user":"mallory","id":"k1\u0000"}"#,
                #"{"op":"get","user":"carol\u0000zzz","id":"k2"}"#,
                FixedClock.at(#"{"op":"search","user":"carol","vector":[1,1]}"#),
            ], port: server.port)
        #expect(gets[0].contains(#""user":"bob","session":null,"role":null,"speaker":null,"text":"bob's""#))
        #expect(gets[1].contains(#""user":"mallory","session":null,"role":null,"speaker":null,"text":"a\u0000b""#))
        #expect(gets[2].contains(#""user":"carol\u0000zzz","session":"s\u0000""#))
        #expect(gets[3] == FixedClock.at(#"{"ok":true,"hits":[]}"#))
        server.signal(SIGTERM)
        #expect(try runContextstore(["check", "--db", database]).status == 0)
    }

    @Test func twoSpellingsOfOneTextAreTwoKeys() async throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        var server = try ServerProcess(database: database, arguments: ["--dim", "2", "--index", "hnsw"])
        let precomposed = "caf\\u00e9"
        let decomposed = "cafe\\u0301"
        let lines = try answers(
            [
                #"{"op":"add","id":"\#(precomposed)","user":"\#(precomposed)","text":"t","vector":[1,0]}"#,
                #"{"op":"delete","user":"\#(precomposed)","id":"\#(decomposed)"}"#,
                #"{"op":"forget","user":"\#(decomposed)"}"#,
                #"{"op":"add","id":"\#(decomposed)","user":"\#(decomposed)","text":"u","vector":[0,1]}"#,
                #"{"op":"stats"}"#,
            ], port: server.port)
        #expect(code(lines[1]) == "not_found")
        #expect(
            lines[2]
                == #"{"ok":true,"deleted":0,"receipt":{"memories":0,"keyword_rows":0,"window_rows":0,"source_rows":0,"vectors":0,"graph_nodes":0,"cache_entries":0,"left":{"memories":0,"keyword_rows":0,"window_rows":0,"source_rows":0,"vectors":0,"graph_nodes":0,"cache_entries":0,"records":0},"verified":true}}"#
        )
        #expect(lines[4].contains(#""memories":2,"users":2"#))
        server.signal(SIGTERM)
        server = try ServerProcess(database: database)
        let after = try answers(
            [
                #"{"op":"get","user":"\#(precomposed)","id":"\#(precomposed)"}"#,
                #"{"op":"delete","user":"\#(decomposed)","id":"\#(decomposed)"}"#,
            ], port: server.port)
        #expect(after[0].contains(#""text":"t""#))
        #expect(after[1] == #"{"ok":true,"deleted":1}"#)
        server.signal(SIGTERM)
        #expect(try runContextstore(["check", "--db", database]).status == 0)
    }

    /// CI runs as root, which hid that every connection of any other user was closed unanswered.
    @Test func aServerRunByAnUnprivilegedUserAnswers() async throws {
        let folder = TemporaryFolder()
        chmod(folder.path, 0o777)
        let server = try ServerProcess(
            database: folder.path + "/space.db", arguments: ["--dim", "2"], unprivileged: true)
        #expect(
            try answers([#"{"op":"ping"}"#, #"{"op":"add","user":"u","text":"t","vector":[1,2]}"#], port: server.port)[
                0] == #"{"ok":true,"pong":true}"#)
        #expect(server.uid == (getuid() == 0 ? 65534 : getuid()))
        // The client library had the same mistake: its connections failed for any user but root.
        let client =
            getuid() == 0
            ? try runProgram(
                "/usr/bin/setpriv",
                [
                    "--reuid=65534", "--regid=65534", "--clear-groups", folder.path + "/contextstore", "ping", "--port",
                    "\(server.port)",
                ])
            : try runContextstore(["ping", "--port", "\(server.port)"])
        #expect(client.status == 0, "\(client.error)")
        #expect(client.output == #"{"ok":true,"pong":true}"# + "\n")
        server.signal(SIGTERM)
    }

    @Test func aClientThatNeverReadsHoldsBoundedMemory() async throws {
        let server = try await TestServer(dimension: 2) { $0.shutdownGrace = .seconds(1) }
        // 20 memories of 1 MB metadata: each search answer is 20 MB.
        let client = try await server.client()
        let big = String(repeating: "x", count: 1 << 20)
        for i in 0..<20 {
            _ = try await client.roundTrip(
                [
                    "op": "add", "user": "u", "text": .string("t\(i)"), "vector": [1, .integer(Int64(i))],
                    "metadata": ["blob": .string(big)],
                ])
        }
        await client.close()
        let slow = try RawSocket(port: server.port, receiveBuffer: 4096)
        let before = residentBytes()
        let searches = String(repeating: #"{"op":"search","user":"u","vector":[1,0],"k":20}"# + "\n", count: 200)
        slow.send(searches)
        try await Task.sleep(for: .seconds(3))
        let grown = residentBytes() - before
        // Unbounded, this was 200 answers of 20 MB queued; bounded, about one answer plus the mark.
        #expect(grown < 256 << 20, "RSS grew by \(grown >> 20) MB")
        #expect(try answers([#"{"op":"ping"}"#], port: server.port) == [#"{"ok":true,"pong":true}"#])
        // Stopping waits out the grace for the reader that does not read, not for its answers:
        // a minute is far past the grace, far short of forever.
        let started = ContinuousClock.now
        await server.stop()
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    /// Out of descriptors, accept failed at once every time: the server spun a core. It now
    /// backs off, and accepts again once descriptors are free.
    @Test func runningOutOfDescriptorsDoesNotSpin() async throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(
            database: folder.path + "/space.db", arguments: ["--dim", "2"], descriptorLimit: 64)
        var sockets = try (0..<80).map { _ in try RawSocket(port: server.port) }
        try await Task.sleep(for: .milliseconds(500))
        let before = server.cpuSeconds
        try await Task.sleep(for: .seconds(2))
        let used = server.cpuSeconds - before
        #expect(used < 0.5, "the server used \(used) s of CPU in 2 s while out of descriptors")
        sockets.removeAll()
        // It accepts again once the closed connections are gone: however long that takes on a
        // busy machine (a timed test fails for slowness, not for a defect), within 60 s and
        // ten tries (a starved test process may sleep through the minute in one try).
        var answer: [String] = []
        var tries = 0
        let deadline = ContinuousClock.now + .seconds(60)
        repeat {
            try await Task.sleep(for: .milliseconds(200))
            answer = try answers([#"{"op":"ping"}"#], port: server.port)
            tries += 1
        } while answer != [#"{"ok":true,"pong":true}"#] && (ContinuousClock.now < deadline || tries < 10)
        #expect(answer == [#"{"ok":true,"pong":true}"#], "the server's log:\n\(server.log)")
        server.signal(SIGTERM)
    }

    @Test func connectionsBeyondTheLimitAreRefused() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.maximumConnections = 2
            $0.maximumConnectionsPerAddress = 2
        }
        let first = try RawSocket(port: server.port)
        let second = try RawSocket(port: server.port)
        // Both counted before the third arrives: connections on different event loops become
        // active in no fixed order.
        for socket in [first, second] {
            socket.send(#"{"op":"ping"}"# + "\n")
            #expect(socket.readLine() == #"{"ok":true,"pong":true}"#)
        }
        let third = try RawSocket(port: server.port)
        #expect(
            third.readLine()
                == #"{"ok":false,"error":{"code":"overloaded","message":"the server has 2 connections open, its limit; closing"}}"#
        )
        #expect(third.readLine() == nil)
        for socket in [first, second] {
            socket.send(#"{"op":"ping"}"# + "\n")
            #expect(socket.readLine() == #"{"ok":true,"pong":true}"#)
        }
        await server.stop()
    }

    @Test func unfinishedLinesShareOneBudget() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.maximumLineBytes = 600_000
            $0.maximumBufferedBytes = 1_000_000
        }
        let chunk = "{\"op\":\"ping\",\"rid\":\"" + String(repeating: "y", count: 400_000)
        let first = try RawSocket(port: server.port)
        first.send(chunk)
        try await Task.sleep(for: .milliseconds(300))
        let second = try RawSocket(port: server.port)
        second.send(chunk)
        try await Task.sleep(for: .milliseconds(300))
        let third = try RawSocket(port: server.port)
        third.send(chunk)
        #expect(
            third.readLine()
                == #"{"ok":false,"error":{"code":"overloaded","message":"the server holds too many bytes of unfinished request lines; closing"}}"#
        )
        // The others finish their lines and are answered.
        first.send("\"}\n")
        let answer = first.readLine()
        #expect(answer?.hasPrefix(#"{"ok":true,"rid":"yyy"#) == true && answer?.hasSuffix(#"","pong":true}"#) == true)
        await server.stop()
    }

    @Test func aPipeliningClientIsSlowedDownNotRefused() async throws {
        let server = try await TestServer(dimension: 2)
        let socket = try RawSocket(port: server.port)
        let count = 20_000
        nonisolated(unsafe) let sender = socket
        let writer = Thread {
            var batch = ""
            for i in 0..<count {
                batch += #"{"op":"add","user":"u","text":"t","vector":[1,\#(i)]}"# + "\n"
                if i % 500 == 499 {
                    sender.send(batch)
                    batch = ""
                }
            }
        }
        writer.start()
        var ok = 0
        for _ in 0..<count where socket.readLine()?.hasPrefix(#"{"ok":true,"id":"#) == true { ok += 1 }
        #expect(ok == count)
        #expect(server.store.count == count)
        await server.stop()
    }

    @Test func numbersAndVectorsJSONCannotCarryAreRefused() async throws {
        let server = try await TestServer(dimension: 3, metric: .dot)
        let lines = try answers(
            [
                #"{"op":"add","id":"a","user":"u","text":"t","vector":[1,0,0],"created_at":253402300799999,"metadata":{"n":9007199254740993,"m":-9223372036854775808}}"#,
                #"{"op":"get","user":"u","id":"a"}"#,
                #"{"op":"add","user":"u","text":"t","vector":[1,0,0],"metadata":{"n":NaN}}"#,
                #"{"op":"add","user":"u","text":"t","vector":[1,0,0],"metadata":{"n":1e400}}"#,
                #"{"op":"ping","rid":NaN}"#,
                #"{"op":"add","user":"u","text":"t","vector":[3e38,3e38,0]}"#,
                #"{"op":"add_batch","items":[{"id":"d","user":"u","text":"t","vector":[1,0,0]},{"id":"d","user":"u","text":"t","vector":[0,1,0]}]}"#,
                #"{"op":"add","id":"big","user":"u","text":"t","vector":[1e17,1e17,0]}"#,
                #"{"op":"search","user":"u","vector":[1e17,1e17,1e17],"k":2}"#,
            ], port: server.port)
        #expect(lines[0] == #"{"ok":true,"id":"a"}"#)
        #expect(
            lines[1].contains(
                #""created_at":253402300799999,"metadata":{"n":9007199254740993,"m":-9223372036854775808}"#))
        #expect(code(lines[2]) == "non_finite")
        #expect(code(lines[3]) == "invalid_json")
        #expect(code(lines[4]) == "non_finite")
        #expect(code(lines[5]) == "invalid_value")
        #expect(lines[6].contains(#"appears twice in the batch"#))
        #expect(lines[7] == #"{"ok":true,"id":"big"}"#)
        #expect(!lines[8].contains(#""score":null"#) && lines[8].contains(#""id":"big""#))
        await server.stop()
    }

    @Test(arguments: ["float32", "float16", "int8"])
    func extremeVectorsUnderCosineAndInCompactCodes(storage: String) async throws {
        let folder = TemporaryFolder()
        let store = try MemoryStore(
            path: folder.path + "/space.db", dimension: 3, metric: .cosine,
            index: .hnsw(.init(M: 4, efConstruction: 16, efSearch: 16, storage: .init(rawValue: storage)!)))
        #expect(throws: StoreError.invalidValue("a zero vector has no direction under cosine")) {
            try store.add([NewMemory(user: "u", text: "z", vector: [0, 0, 0])])
        }
        let tiny = try store.add([NewMemory(user: "u", text: "tiny", vector: [.leastNonzeroMagnitude * 7, 0, 0])])[0]
        let huge = try store.add([NewMemory(user: "u", text: "huge", vector: [0, 1e17, 1e17])])[0]
        #expect(try store.get(user: "u", id: tiny)?.vector == [1, 0, 0])
        let hits = try store.search(user: "u", vector: [Float(bitPattern: 0x0001_0000), 0, 0], k: 2)
        #expect(hits.map(\.memory.id) == [tiny, huge])
        #expect(hits.allSatisfy { $0.score.isFinite })
        store.close()
    }

    @Test func portsOutsideTheirRangeAreRefused() throws {
        for arguments in [
            ["serve", "--port", "70000"], ["ping", "--port", "99999"], ["serve", "--max-line-bytes", "0"],
        ] {
            let result = try runContextstore(arguments)
            #expect(result.status == 64, "\(arguments)")
            #expect(result.error.contains("must be between"), "\(arguments): \(result.error)")
        }
    }
}

/// The resident memory of this process, in bytes.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Runs the `contextstore` executable to completion, with `environment` added to this process's.
func runContextstore(
    _ arguments: [String], environment: [String: String] = [:]
) throws -> (status: Int32, output: String, error: String) {
    try runProgram(contextstoreExecutable(), arguments, environment: environment)
}

/// Runs a program to completion and returns its status and output.
func runProgram(
    _ path: String, _ arguments: [String], environment: [String: String] = [:]
) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
}
