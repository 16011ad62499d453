import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Why the server could not listen, in words that name the address and what to do.
public struct ListenError: Error, CustomStringConvertible {
    public var description: String
}

/// The server's listening socket, made here rather than by NIO's `bind`, so that a busy port is
/// one clear error (and no channel is made, and torn down, on event loops that stop with it).
enum ListeningSocket {
    /// A socket bound to `host:port` and listening, for `ServerBootstrap.withBoundSocket`.
    static func open(host: String, port: Int, backlog: Int32 = 256) throws(ListenError) -> NIOBSDSocket.Handle {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        let looked = getaddrinfo(host, String(port), &hints, &found)
        guard looked == 0, let address = found else {
            throw ListenError(description: "cannot listen on \(host):\(port): \(String(cString: gai_strerror(looked)))")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure(host, port, errno) }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0, listen(fd, backlog) == 0 else {
            let error = errno
            close(fd)
            throw failure(host, port, error)
        }
        return fd
    }

    private static func failure(_ host: String, _ port: Int, _ error: Int32) -> ListenError {
        let reason =
            switch error {
            case EADDRINUSE: "the port is in use (another server? choose one with --port)"
            case EACCES: "permission denied (ports below 1024 need privileges)"
            case EADDRNOTAVAIL: "no interface of this machine has that address"
            default: String(cString: strerror(error))
            }
        return ListenError(description: "cannot listen on \(host):\(port): \(reason)")
    }
}
