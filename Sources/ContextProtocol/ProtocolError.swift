import ContextModel

/// A request that failed: its stable code, a message for people, and numbers a program can act
/// on (`budget_too_small` says how many tokens were `needed`), written into the error object.
public struct ProtocolError: Error, Sendable, Equatable {
    public var code: ErrorCode
    public var message: String
    public var details: [String: Int64]

    public init(_ code: ErrorCode, _ message: String, details: [String: Int64] = [:]) {
        self.code = code
        self.message = message
        self.details = details
    }
}
