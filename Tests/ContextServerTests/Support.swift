import ContextClient
import ContextModel
import ContextServer
import Foundation
import Logging
import MemoryStore
import Testing
import VectorIndex

/// A fresh database path in its own temporary folder, removed afterwards.
final class TemporaryFolder: Sendable {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "contextstore-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A real server on a loopback port the system picked, over a real database file.
final class TestServer: Sendable {
    let folder = TemporaryFolder()
    let store: MemoryStore
    let server: ContextStoreServer
    var port: Int { server.port }

    init(
        dimension: Int? = nil, metric: Metric? = nil, index: SpaceIndex? = nil, busyTimeoutMilliseconds: Int = 5000,
        logger: Logger = Logger(label: "test"), configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws {
        store = try MemoryStore(
            path: folder.path + "/space.db", dimension: dimension, metric: metric, index: index,
            busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, threads: 2)
        // A busy machine may take longer than the default minute between a connection and its
        // `auth`; the tests of the timeout set their own.
        configuration.authenticationTimeout = .seconds(600)
        configure(&configuration)
        server = try await ContextStoreServer(store: store, configuration: configuration, logger: logger)
    }

    func client() async throws -> ContextStoreClient {
        try await ContextStoreClient.connect(host: "127.0.0.1", port: port)
    }

    func stop() async {
        await server.shutdown()
        store.close()
    }
}

/// A blocking TCP socket for sending exactly the bytes a test wants, malformed ones included.
final class RawSocket {
    private let fd: Int32
    private var buffered: [UInt8] = []
    /// Bytes at the front of `buffered` known to hold no newline.
    private var scanned = 0
    /// errno of the read that ended the stream (0: an orderly end, ECONNRESET: a reset).
    private(set) var endError: Int32 = 0

    /// - Parameter receiveBuffer: When given, the socket's receive buffer (SO_RCVBUF), set
    ///   before connecting so the window stays small: a client that reads slowly.
    /// - Parameter source: The loopback address to connect from (127.0.0.2, ...): another peer.
    /// - Parameter timeout: Seconds a read waits before it gives up (a test must never hang).
    init(port: Int, receiveBuffer: Int32? = nil, source: String? = nil, timeout: Int = 10) throws {
        // Close-on-exec: a process another test starts meanwhile (a server, PostgreSQL) must
        // not inherit the socket and hold the connection open after this test closes it.
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
        }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        var wait = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends all of `bytes`; false when the peer has closed.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// The next line without its newline, or nil at end of stream.
    func readLine() -> String? {
        while true {
            // Only the bytes not yet scanned: a long answer arrives in many reads.
            if let newline = buffered[scanned...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeFirst(newline + 1)
                scanned = 0
                return line
            }
            scanned = buffered.count
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 {
                endError = count < 0 ? errno : 0
                return nil
            }
            buffered.append(contentsOf: chunk[..<count])
        }
    }

    /// Reads and drops everything the server sends, on a thread of its own, until it closes:
    /// a client that reads its answers without waiting for them.
    func discardAnswersInBackground() {
        let fd = self.fd
        Thread.detachNewThread {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while chunk.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
        }
    }

    /// Shuts down the sending side only.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}

/// The path of the `contextstore` executable built next to this test bundle.
func contextstoreExecutable() -> String { builtExecutable("contextstore") }

/// The path of an executable of this package, built next to this test bundle.
func builtExecutable(_ name: String) -> String {
    let testBinary = try! FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    var folder = URL(fileURLWithPath: testBinary).deletingLastPathComponent()
    // The test binary may sit inside a .xctest folder.
    if folder.pathExtension == "xctest" { folder.deleteLastPathComponent() }
    return folder.appendingPathComponent(name).path
}

/// The time tests read at when they compare answers byte for byte (2026-01-01T00:00:00Z): a read
/// that depends on time answers with the `now` it used, the clock's when the request names none.
enum FixedClock {
    static let now: Int64 = 1_767_225_600_000

    /// A request or answer line (one JSON object, a newline after it or not) with `"now":now`
    /// as its last field.
    static func at(_ line: String, _ now: Int64 = FixedClock.now) -> String {
        let object = line.hasSuffix("\n") ? String(line.dropLast()) : line
        precondition(object.hasSuffix("}"))
        return object.dropLast() + #","now":\#(now)}"# + (line.hasSuffix("\n") ? "\n" : "")
    }
}

extension RawSocket {
    /// Sends `line` and expects `expected` back, byte for byte; at `now`, both with
    /// `"now":now` as their last field.
    func exchange(
        _ line: String, _ expected: String, now: Int64? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var (line, expected) = (line, expected)
        if let now { (line, expected) = (FixedClock.at(line, now), FixedClock.at(expected, now)) }
        #expect(send(line + "\n"), sourceLocation: sourceLocation)
        #expect(readLine() == expected, sourceLocation: sourceLocation)
    }
}
