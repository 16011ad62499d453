import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Many readers or one writer: searches share the index while a write holds it alone. A
/// waiting writer goes before readers that arrive after it (glibc's default lets new readers
/// pass, so a steady stream of searches could starve every write).
final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() {
        lock.initialize(to: pthread_rwlock_t())
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        defer { pthread_rwlockattr_destroy(&attributes) }
        #if canImport(Glibc)
            pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        #endif
        precondition(pthread_rwlock_init(lock, &attributes) == 0)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

/// A plain mutual-exclusion lock.
final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() {
        mutex.initialize(to: pthread_mutex_t())
        precondition(pthread_mutex_init(mutex, nil) == 0)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// An exclusive advisory lock (`flock`) on a file, held until released or deallocated, so that
/// two processes (a server and an offline import) never write one database at once. SQLite's
/// own locks are `fcntl` locks, which `flock` does not interact with on Linux.
///
/// It is taken before SQLite opens the file: closing any descriptor of a file drops every
/// `fcntl` lock the process holds on it, so a failed attempt must not close one while this
/// process has SQLite connections to that file. Files this process already holds are found by
/// device and inode, without opening them again.
final class FileLock: @unchecked Sendable {
    private var descriptor: Int32
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
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if descriptor < 0 && errno == EACCES { descriptor = open(path, O_RDONLY | O_CLOEXEC) }
        guard descriptor >= 0 else { throw .cannotOpen(String(cString: strerror(errno))) }
        guard fstat(descriptor, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw .cannotOpen(reason)
        }
        identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
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
    }

    deinit { release() }

    /// Releases the lock. Safe to call twice.
    func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
        Self.held.withLock { _ = $0.remove(identity) }
    }
}
