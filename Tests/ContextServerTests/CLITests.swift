import Foundation
import Testing

@testable import MemoryStore

/// What the CLI says when there is no server to talk to, or one that never answers.
@Suite struct CLITests {
    @Test func noServerNamesTheAddress() throws {
        // A port nothing listens on: bind one, note it, close it.
        let (probe, port) = boundLoopbackSocket()
        close(probe)
        let result = try runContextstore(["ping", "--port", String(port)])
        #expect(result.status == 1)
        #expect(
            result.error
                == "error: cannot reach a server at 127.0.0.1:\(port): connection refused (is `contextstore serve` running there?)\n"
        )
    }

    /// A peer that accepts the connection and never answers: `ping` gives up at its timeout.
    @Test func aHungPeerTimesOut() throws {
        let (listener, port) = boundLoopbackSocket()
        defer { close(listener) }
        listen(listener, 4)
        let started = Date()
        let result = try runContextstore(["ping", "--port", String(port), "--timeout", "0.5"])
        #expect(result.status == 1)
        #expect(result.error == "error: no answer within 0.5 s; the connection was closed\n")
        #expect(Date().timeIntervalSince(started) < 30)
    }
}

/// The commands a new user missed (issue 24, item 26), against a real server.
@Suite struct CLICommandTests {
    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (
        status: Int32, output: String, error: String
    ) {
        try runContextstore(arguments, environment: environment)
    }

    @Test func feedbackMetricsForgetAllTheEnvironmentAndTables() throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(database: folder.path + "/space.db", arguments: ["--dim", "2"])
        let environment = ["CONTEXTSTORE_PORT": "\(server.port)", "CONTEXTSTORE_HOST": "127.0.0.1"]
        let added = try run(
            ["add", "--user", "alice", "--id", "m1", "--text", "tea", "--vector", "1,0", "--session", "s1"],
            environment: environment)
        #expect(added.output == #"{"ok":true,"id":"m1"}"# + "\n", "\(added.error)")
        #expect(
            try run(["feedback", "--user", "alice", "m1", "--helped"], environment: environment).output
                == #"{"ok":true,"helped":1,"not_helped":0}"# + "\n")
        #expect(
            try run(["metrics"], environment: environment).output.contains(
                #"contextstore_feedback_total{helped="true"} 1"#))
        let list = try run(["list", "--user", "alice", "--pretty"], environment: environment).output
        #expect(list.hasPrefix("id  session  role  speaker  created_at"), "\(list)")
        #expect(list.hasSuffix("1 memory\n"))
        let sessions = try run(["sessions", "--user", "alice", "--pretty"], environment: environment).output
        #expect(sessions.hasPrefix("session  turns  first_at"), "\(sessions)")
        // Without a filter, forget asks for --all.
        let refused = try run(["forget", "alice"], environment: environment)
        #expect(refused.status == 64)
        #expect(refused.error.contains("add --all to mean it"))
        let forgot = try run(["forget", "alice", "--all"], environment: environment).output
        #expect(forgot.hasPrefix(#"{"ok":true,"deleted":1,"receipt":{"memories":1,"keyword_rows":1,"#), "\(forgot)")
        #expect(forgot.hasSuffix(#""verified":true}}"# + "\n"), "\(forgot)")
        let badPort = try run(["ping"], environment: ["CONTEXTSTORE_PORT": "seventy"])
        #expect(badPort.status == 64 && badPort.error.contains("CONTEXTSTORE_PORT must be a port"))
        let socket = try RawSocket(port: server.port)
        socket.send(#"{"op":"serach","user":"alice"}"# + "\n")
        #expect(
            socket.readLine()
                == #"{"ok":false,"error":{"code":"unknown_op","message":"unknown op 'serach'; did you mean 'search'?"}}"#
        )
        server.signal(SIGTERM)
    }
}

/// What `serve` says when it cannot start: one line naming the cause, and no file left behind.
@Suite struct ServeErrorTests {
    @Test func aBusyPortIsOneLineAndLeavesNoDatabase() throws {
        let (listener, port) = boundLoopbackSocket()
        defer { close(listener) }
        listen(listener, 4)
        let folder = TemporaryFolder()
        let database = folder.path + "/fresh.db"
        let result = try runContextstore([
            "serve", "--db", database, "--port", String(port), "--http-port", "0", "--model", "none",
        ])
        #expect(result.status == 1)
        #expect(
            result.error
                == "error: cannot listen on 127.0.0.1:\(port): the port is in use (another server? choose one with --port)\n"
        )
        for suffix in ["", "-wal", "-shm"] { #expect(access(database + suffix, F_OK) != 0, "\(suffix)") }
    }

    @Test func openErrorsNameTheirCauseAndHintAtTheModelOnlyWhenItIsTheCause() throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        let store = try MemoryStore(path: database, dimension: 5, metric: .dot)
        store.close()
        func serve(_ arguments: [String]) throws -> String {
            let result = try runContextstore(
                ["serve", "--db", database, "--port", "0", "--http-port", "0"] + arguments)
            #expect(result.status == 1)
            return result.error
        }
        #expect(
            try serve(["--model", "none", "--metric", "l2"])
                == "error: cannot open \(database): \(database) holds a dot space, not l2\n")
        #expect(
            try serve(["--model", "none", "--index", "hnsw"])
                == "error: cannot open \(database): \(database) holds a space indexed by flat, not hnsw\n")
        #expect(
            try serve(["--model", "none", "--dim", "7"])
                == "error: cannot open \(database): \(database) holds vectors of dimension 5, not 7\n")
        #expect(
            try serve(["--model", folder.path + "/no-model"])
                == "error: cannot load the embedding model in \(folder.path)/no-model: no such folder (scripts/fetch-model fetches all-MiniLM-L6-v2; --model none serves without a model)\n"
        )
        // Held by a running server: the lock is the cause, and the file stays.
        let running = try ServerProcess(database: database)
        #expect(
            try serve(["--model", "none"])
                == "error: cannot open \(database): \(database) is in use by another process (a running server?)\n")
        _ = running
        #expect(access(database, F_OK) == 0)
    }

    /// A non-loopback address without keys is refused, unless told `--insecure` (then served
    /// with a warning); an address this machine does not have is one line (TEST-NET-1: nothing
    /// is sent anywhere).
    @Test func aNonLoopbackHostNeedsKeysOrInsecure() throws {
        let folder = TemporaryFolder()
        let serve = [
            "serve", "--db", folder.path + "/space.db", "--host", "192.0.2.1", "--port", "0", "--http-port", "0",
            "--model", "none",
        ]
        let refused = try runContextstore(serve)
        #expect(refused.status == 1)
        #expect(
            refused.error.hasSuffix(
                "error: refusing to listen on 192.0.2.1 without --keys: anyone who reaches it could read, change and delete every user's memories (--insecure to do it anyway)\n"
            ))
        let result = try runContextstore(serve + ["--insecure"])
        #expect(result.status == 1)
        #expect(result.error.contains("warning contextstore: [contextstore] listening on 192.0.2.1 with no keys"))
        #expect(
            result.error.hasSuffix(
                "error: cannot listen on 192.0.2.1:0: no interface of this machine has that address\n"))
        #expect(access(folder.path + "/space.db", F_OK) != 0)
    }

    /// `serve --keys` as an unprivileged user: the CLI authenticates with `--secret` or
    /// `CONTEXTSTORE_SECRET`; SIGHUP reads the file again (a bad file keeps the old keys).
    @Test func keysFromAFileAndReadAgainOnSIGHUP() throws {
        let folder = TemporaryFolder()
        chmod(folder.path, 0o777)  // the server, as nobody, creates its database here
        let keys = folder.path + "/keys.json"
        func write(_ secret: String) throws {
            try #"{"keys":[{"name":"ops","secret":"\#(secret)","role":"admin"}]}"#.write(
                toFile: keys, atomically: true, encoding: .utf8)
            chmod(keys, 0o644)
        }
        try write("first-secret-0123456789")
        let server = try ServerProcess(
            database: folder.path + "/space.db", arguments: ["--keys", keys, "--dim", "2"], unprivileged: true)
        let port = String(server.port)
        let anonymous = try runContextstore(["stats", "--port", port])
        #expect(anonymous.status == 1 && anonymous.output.contains(#""code":"unauthorized""#), "\(anonymous)")
        let wrong = try runContextstore(["stats", "--port", port, "--secret", "wrong-secret-0123456789"])
        #expect(wrong.status == 1 && wrong.error == "error: unauthorized: no key has that secret\n", "\(wrong)")
        #expect(try runContextstore(["stats", "--port", port, "--secret", "first-secret-0123456789"]).status == 0)
        try write("second-secret-0123456789")
        kill(server.process.processIdentifier, SIGHUP)
        func works(_ secret: String) throws -> Bool {
            try runContextstore(["ping", "--port", port, "--secret", secret]).status == 0
        }
        var waited = 0
        while try !works("second-secret-0123456789"), waited < 50 {
            usleep(100_000)
            waited += 1
        }
        #expect(try works("second-secret-0123456789") && !works("first-secret-0123456789"))
        // A file that does not load leaves the keys as they were.
        try "{".write(toFile: keys, atomically: true, encoding: .utf8)
        kill(server.process.processIdentifier, SIGHUP)
        usleep(300_000)
        #expect(try works("second-secret-0123456789"))
        setenv("CONTEXTSTORE_SECRET", "second-secret-0123456789", 1)
        defer { unsetenv("CONTEXTSTORE_SECRET") }
        #expect(try runContextstore(["ping", "--port", port]).status == 0)
        server.signal(SIGTERM)
        #expect(server.process.terminationStatus == 0)
    }

    /// `serve --templates` loads a folder's NAME.mustache files, which `prompt --template NAME`
    /// names, as an unprivileged user; a bad file stops the server before it listens, naming the
    /// file and line; a missing rank file is named too.
    @Test func servedTemplatesAreNamedByPromptsAndABadOneStopsTheServer() throws {
        let folder = TemporaryFolder()
        let templates = folder.path + "/templates"
        try FileManager.default.createDirectory(atPath: templates, withIntermediateDirectories: true)
        try "Q: {{query}}{{#memories}} | {{text}}{{/memories}}".write(
            toFile: templates + "/short.mustache", atomically: true, encoding: .utf8)
        chmod(folder.path, 0o777)  // the server, as nobody, creates its database here
        chmod(templates, 0o755)
        chmod(templates + "/short.mustache", 0o644)
        let server = try ServerProcess(
            database: folder.path + "/space.db", arguments: ["--templates", templates, "--dim", "2"],
            unprivileged: true)
        let add = try runContextstore([
            "add", "--port", String(server.port), "--user", "u", "--text", "tea at noon", "--vector", "1,0",
        ])
        #expect(add.status == 0, "\(add.error)")
        let prompt = try runContextstore([
            "prompt", "--port", String(server.port), "--user", "u", "--query", "tea", "--template", "short", "--text",
        ])
        #expect(prompt.status == 0 && prompt.output == "Q: tea | tea at noon\n", "\(prompt.output) \(prompt.error)")
        #expect(prompt.error.hasPrefix("prompt: "))
        server.signal(SIGTERM)

        try "fine\n{{#a}}\n{{/b}}\n".write(toFile: templates + "/bad.mustache", atomically: true, encoding: .utf8)
        let refused = try runContextstore([
            "serve", "--db", folder.path + "/other.db", "--port", "0", "--http-port", "0", "--model", "none",
            "--templates", templates,
        ])
        #expect(refused.status == 1)
        #expect(
            refused.error.hasPrefix("error: --templates: template \(templates)/bad.mustache, line 3: "),
            "\(refused.error)")
        #expect(access(folder.path + "/other.db", F_OK) != 0)
        let noRanks = try runContextstore([
            "serve", "--db", folder.path + "/other.db", "--port", "0", "--http-port", "0", "--model", "none",
            "--tokenizer",
            folder.path + "/none.tiktoken",
        ])
        #expect(noRanks.status == 1)
        #expect(noRanks.error.hasPrefix("error: --tokenizer: cannot load the rank file \(folder.path)/none.tiktoken"))
    }
}

/// A TCP socket bound to a free port on 127.0.0.1, and that port.
func boundLoopbackSocket() -> (descriptor: Int32, port: Int) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            _ = bind(descriptor, $0, length)
            _ = getsockname(descriptor, $0, &length)
        }
    }
    return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
}
