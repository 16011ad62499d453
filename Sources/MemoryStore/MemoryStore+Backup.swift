import ContextModel

#if canImport(Glibc)
    import Glibc
#endif

/// What `MemoryStore.backup` wrote.
public struct BackupReport: Sendable, Equatable {
    /// Bytes of the copy.
    public var bytes: Int64
    public var seconds: Double
    /// The copy's own check (`MemoryStore.check`).
    public var check: CheckReport
}

extension MemoryStore {
    /// Copies the space at `path` into a new file `destination` with SQLite's online backup API:
    /// a consistent copy of the last committed state, taken while a server may go on writing
    /// (copying the file with `cp` is not a backup: in WAL mode the latest writes sit in the
    /// `-wal` file). The copy is then checked like `contextstore check`.
    /// - Throws: `StoreError.invalidValue` when `destination` exists (a backup never overwrites);
    ///   `StoreError.sqlite` when either file cannot be opened or the copy fails (then the partial
    ///   copy is removed).
    public static func backup(path: String, to destination: String) throws -> BackupReport {
        var info = stat()
        guard stat(path, &info) == 0, info.st_size > 0 else {
            throw StoreError.invalidValue("\(path) is not a database file")
        }
        // Made here, and only if it does not exist (no race with another writer of that path),
        // so that a failure names its cause rather than SQLite's "unable to open".
        let created = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard created >= 0 else {
            if errno == EEXIST {
                throw StoreError.invalidValue("\(destination) exists; a backup is written to a new file")
            }
            throw StoreError.invalidValue("cannot create \(destination): \(String(cString: strerror(errno)))")
        }
        Glibc.close(created)
        let start = Clock.monotonicSeconds()
        do {
            let source = try Database(path: path, readOnly: true)
            defer { source.close() }
            let copy = try Database(path: destination)
            do {
                try source.backup(into: copy)
                // A single file, no `-wal` beside it: what a restore copies back.
                try copy.execute("PRAGMA journal_mode = DELETE")
                copy.close()
            } catch {
                copy.close()
                unlink(destination)
                throw error
            }
        } catch let error as SQLiteError {
            throw StoreError.sqlite("backup of \(path) failed: \(error.description)")
        }
        let seconds = Clock.monotonicSeconds() - start
        return BackupReport(bytes: fileSize(destination), seconds: seconds, check: try check(path: destination))
    }
}
