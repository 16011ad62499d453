import ContextModel
import ContextProtocol

/// Why a client call failed.
public enum ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered `ok: false` with this code and message, and the error object's
    /// integer fields besides them (`needed` of `budget_too_small`).
    case server(code: String, message: String, details: [String: Int64] = [:])
    /// The server's answer could not be read.
    case invalidResponse(String)
    /// The connection closed before the answer arrived.
    case connectionClosed
    /// No server could be reached at that address; the reason is the system's.
    case cannotConnect(host: String, port: Int, reason: String)
    /// The server did not answer within the client's timeout (the connection is then closed).
    case timedOut(seconds: Double)

    /// The server's error code as the protocol defines it, when it is one.
    public var errorCode: ErrorCode? {
        if case .server(let code, _, _) = self { ErrorCode(rawValue: code) } else { nil }
    }

    public var description: String {
        switch self {
        case .server(let code, let message, _): "\(code): \(message)"
        case .invalidResponse(let reason): "invalid response: \(reason)"
        case .connectionClosed: "connection closed"
        case .cannotConnect(let host, let port, let reason):
            "cannot reach a server at \(host):\(port): \(reason) (is `contextstore serve` running there?)"
        case .timedOut(let seconds): "no answer within \(seconds) s; the connection was closed"
        }
    }
}
