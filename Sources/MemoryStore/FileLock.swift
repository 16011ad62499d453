import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive advisory lock (`flock`) on a file, held until released or deallocated, so that
/// two processes (a server and an offline import) never write one database at once. SQLite's
/// own locks are `fcntl` locks, which `flock` does not interact with on Linux.
///
/// It is taken before SQLite opens the file: closing any descriptor of a file drops every
/// `fcntl` lock the process holds on it, so a failed attempt must not close one while this
/// process has SQLite connections to that file. Files this process already holds are found by
/// device and inode, without opening them again.
final class FileLock: Sendable {
    /// The locked file's descriptor; -1 once released.
    private let descriptor: Mutex<Int32>
    private let identity: FileIdentity

    struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    enum Failure: Error, Equatable {
        /// Another process (or another store in this one) holds the lock.
        case held
        /// The file could not be opened; the text says why.
        case cannotOpen(String)
    }

    private static let held = Mutex<Set<FileIdentity>>([])

    /// Takes the lock without waiting, creating the file when it does not exist.
    init(path: String) throws(Failure) {
        var info = stat()
        if stat(path, &info) == 0 {
            let identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
            guard !Self.held.withLock({ $0.contains(identity) }) else { throw .held }
        }
        var descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if descriptor < 0 && errno == EACCES { descriptor = open(path, O_RDONLY | O_CLOEXEC) }
        guard descriptor >= 0 else { throw .cannotOpen(String(cString: strerror(errno))) }
        guard fstat(descriptor, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw .cannotOpen(reason)
        }
        let identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        guard Self.held.withLock({ $0.insert(identity).inserted }) else {
            close(descriptor)
            throw .held
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            // Not held by this process (checked above), so no SQLite lock of ours is on it.
            close(descriptor)
            Self.held.withLock { _ = $0.remove(identity) }
            throw .held
        }
        self.identity = identity
        self.descriptor = Mutex(descriptor)
    }

    deinit { release() }

    /// Releases the lock. Safe to call twice.
    func release() {
        let released = descriptor.withLock { descriptor in
            guard descriptor >= 0 else { return false }
            close(descriptor)
            descriptor = -1
            return true
        }
        if released { Self.held.withLock { _ = $0.remove(identity) } }
    }
}
