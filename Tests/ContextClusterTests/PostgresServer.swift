import Foundation

/// A throwaway PostgreSQL 15 for a test: `initdb` into a fresh folder, started on a free
/// loopback port with trust authentication for the user `contextstore`. PostgreSQL refuses to
/// run as root, so when the tests run as root (CI) its programs run as the `postgres` user.
final class PostgresServer: @unchecked Sendable {
    let directory: String
    let port: Int
    let user = "contextstore"
    private var running = false

    static let binaries = "/usr/lib/postgresql/15/bin"

    /// Starts a new primary; `settings` go to postgresql.conf.
    init(settings: [String: String] = [:]) throws {
        directory = try Self.makeFolder()
        port = try Self.freePort()
        try Self.run(
            "initdb", ["-D", directory, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"])
        try configure(settings)
        try start()
    }

    /// Starts a streaming standby of `primary` (pg_basebackup -R).
    init(standbyOf primary: PostgresServer) throws {
        directory = try Self.makeFolder()
        port = try Self.freePort()
        try Self.run(
            "pg_basebackup",
            ["-D", directory, "-h", "127.0.0.1", "-p", String(primary.port), "-U", user, "-R", "-X", "stream"])
        try configure([:])
        try start()
        // Streaming before anyone counts on it: a commit that waits for this standby must not
        // wait for its first connection too.
        for _ in 0..<600 {
            if try primary.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") != "0" { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw PostgresFailure(message: "the standby on port \(port) did not stream within 60 s")
    }

    private func configure(_ settings: [String: String]) throws {
        var conf = """

            port = \(port)
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '\(directory)'
            wal_level = replica
            max_wal_senders = 4
            hot_standby = on
            shared_buffers = 16MB

            """
        for (name, value) in settings.sorted(by: { $0.key < $1.key }) { conf += "\(name) = \(value)\n" }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/postgresql.conf"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(conf.utf8))
        try handle.close()
        let hba = "host replication \(user) 127.0.0.1/32 trust\n"
        let hbaHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/pg_hba.conf"))
        try hbaHandle.seekToEnd()
        try hbaHandle.write(contentsOf: Data(hba.utf8))
        try hbaHandle.close()
    }

    func start() throws {
        // The server it starts would hold a pipe open for good: its output goes to its log.
        try Self.run(
            "pg_ctl", ["-D", directory, "-l", directory + "/server.log", "-w", "-t", "60", "start"], captured: false)
        running = true
    }

    /// Stops the server now (`immediate`: as if killed; it recovers from its WAL on start).
    func stop(immediately: Bool = false) throws {
        guard running else { return }
        running = false
        try Self.run("pg_ctl", ["-D", directory, "-m", immediately ? "immediate" : "fast", "-w", "stop"])
    }

    /// Runs SQL with psql and returns what it printed (unaligned, tuples only).
    @discardableResult
    func sql(_ statement: String) throws -> String {
        try Self.run(
            "psql",
            [
                "-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1",
                "-c",
                statement,
            ]
        ).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit {
        try? stop(immediately: true)
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static var asRoot: Bool { geteuid() == 0 }

    private static func makeFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cs-pg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        if asRoot { try run("/bin/chown", ["postgres:postgres", path], asPostgres: false) }
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
        return path
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw PostgresFailure(message: "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a program to its end (as `postgres` through `runuser` when the tests run as root)
    /// and returns its output. `posix_spawn` and `waitpid` directly: Foundation's `Process`
    /// never saw `runuser` end once `pg_ctl` had left a server running in the background.
    @discardableResult
    private static func run(
        _ program: String, _ arguments: [String], asPostgres: Bool = true, captured: Bool = true
    ) throws -> String {
        let path = program.hasPrefix("/") ? program : "\(binaries)/\(program)"
        let argv =
            asRoot && asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--", path] + arguments : [path] + arguments
        // The output goes to a file, not a pipe: a server the program leaves running would
        // hold a pipe's write end open for good.
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("cs-pg-out-\(UUID().uuidString)")
            .path
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(
            &actions, 1, captured ? outputPath : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid = pid_t()
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environ)
        guard spawned == 0 else { throw PostgresFailure(message: "\(program) did not start: errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = captured ? ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "") : ""
        // Exited normally with status 0 (WIFEXITED and WEXITSTATUS, which Swift does not import).
        guard status & 0xffff == 0 else {
            throw PostgresFailure(message: "\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(text)")
        }
        return text
    }
}

struct PostgresFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
