import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP relay on loopback between a node and a PostgreSQL server, which a test can cut: while
/// cut, bytes in both directions are read and dropped (as on a network that loses every packet;
/// nothing is refused or closed), so the node sees connections hang, as in a partition. Needs
/// no privileges, unlike a network namespace.
final class TCPProxy: Sendable {
    let port: Int
    private let listener: Int32
    private let cut = Atomic(false)
    private let sockets = Mutex<[Int32]>([])

    init(to target: Int) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.listener = listener
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw PostgresFailure(message: "proxy: cannot listen") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                var target4 = loopback(port: target)
                let connected = withUnsafePointer(to: &target4) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard connected == 0 else {
                    Glibc.close(client)
                    Glibc.close(server)
                    continue
                }
                sockets.withLock { $0 += [client, server] }
                for (from, to) in [(client, server), (server, client)] {
                    Thread.detachNewThread { [self] in relay(from: from, to: to) }
                }
            }
        }
    }

    private func relay(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            guard count > 0 else {
                shutdown(to, Int32(SHUT_WR))
                return
            }
            if cut.load(ordering: .relaxed) { continue }  // lost on the way
            var sent = 0
            while sent < count {
                let n = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { return }
                sent += n
            }
        }
    }

    /// Cuts the link (true) or mends it (false). Connections opened while cut stay open and
    /// silent too.
    func set(cut: Bool) { self.cut.store(cut, ordering: .relaxed) }

    /// Stops relaying and closes every socket. Its threads hold the proxy, so a test calls this
    /// (its sockets are close-on-exec besides: a server process a test starts must not inherit
    /// them, or its descriptor limit is spent before it starts).
    func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
        for socket in sockets.withLock({ $0 }) {
            shutdown(socket, Int32(SHUT_RDWR))
            Glibc.close(socket)
        }
    }
}

/// 127.0.0.1:`port` as a socket address (0: any free port, for `bind`).
func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return address
}
