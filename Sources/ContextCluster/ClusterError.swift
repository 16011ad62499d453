/// Why the cluster refused or could not do something.
public enum ClusterError: Error, Equatable, CustomStringConvertible {
    /// A setting or argument out of its range.
    case invalidConfiguration(String)
    /// The log cannot take a write durably now (no synchronous standby, a read-only or
    /// recovering server, a lost connection): the write was not acknowledged, and a retry with
    /// the same key is safe.
    case unavailable(String)
    /// The log broke a promise it keeps (a gap in a range's sequence, an entry that does not
    /// decode): applying stops there rather than skip a write.
    case corruptLog(String)
    /// A read asked to see a sequence its range's log has not reached: no write was answered
    /// with it.
    case noSuchSequence(String)
    /// The entries a reader asked for were deleted from the log (`through` is the last one
    /// deleted): the range's snapshot holds them.
    case truncated(range: Int, through: Int64)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message): "invalid configuration: \(message)"
        case .unavailable(let message): "unavailable: \(message)"
        case .corruptLog(let message): "corrupt log: \(message)"
        case .noSuchSequence(let message): "no such sequence: \(message)"
        case .truncated(let range, let through):
            "range \(range)'s log is deleted through entry \(through): its hosts start from its snapshot"
        }
    }
}
