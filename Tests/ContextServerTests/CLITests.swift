import Foundation
import Testing

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

/// A TCP socket bound to a free port on 127.0.0.1, and that port.
func boundLoopbackSocket() -> (descriptor: Int32, port: Int) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
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
