import ArgumentParser
import ContextProtocol
import MemoryStore

#if canImport(Glibc)
    import Glibc
#endif

/// `contextstore backup`: a consistent copy of a database file, also while a server writes it.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy a database file consistently, also while a server is writing it.",
        discussion: """
            Uses SQLite's online backup API: the copy holds every write committed when the backup \
            began (a plain `cp` of a served file misses what is still in its -wal file). The copy \
            is a single file, checked like `contextstore check` afterwards; the command exits with \
            status 1 when the check finds a problem. To restore, stop the server and start it on \
            the copy (or move the copy to the old path and remove that file's -wal and -shm first).

            Without --db, the server at --host/--port writes the copy (the `backup` op): --to is \
            then a file name in the folder the server was started with (serve --backup-dir).
            """
    )

    @Option(help: "The database file to copy (default: ask the running server).") var db: String?
    @Option(help: "The new file to write (must not exist).") var to: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard let db else {
            return try await connection.send(Operations.Backup.self, [("to", .string(to))])
        }
        let report: BackupReport
        do {
            report = try MemoryStore.backup(path: db, to: to)
        } catch let error as StoreError {
            throw fail("cannot back up \(db): \(error.message)")
        }
        let megabytes = (Double(report.bytes) / 1e6 * 10).rounded() / 10
        let seconds = (report.seconds * 100).rounded() / 100
        print(
            "\(to): \(report.check.index) space, \(report.check.memories) memories, \(megabytes) MB, \(seconds) s")
        for problem in report.check.problems { print("problem: \(problem)") }
        print(report.check.isSound ? "ok" : "\(report.check.problems.count) problems")
        if !report.check.isSound { throw ExitCode(1) }
    }
}
