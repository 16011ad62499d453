import ContextModel

/// Why the storage engine refused or failed an operation.
public enum StoreError: Error, Sendable, Equatable {
    /// A vector's length differs from the space's dimension.
    case wrongDimension(expected: Int, got: Int)
    /// A vector holds NaN or an infinity (also after conversion to float32).
    case nonFiniteVector
    /// A field holds a value the engine does not accept; the text says which and why.
    case invalidValue(String)
    /// The database file cannot be used by this version (or with these settings).
    case incompatibleDatabase(String)
    /// SQLite failed; the text carries its code and message.
    case sqlite(String)
    /// The store was closed.
    case closed

    /// The stable code a client sees for this error.
    public var code: ErrorCode {
        switch self {
        case .wrongDimension: .wrongDimension
        case .nonFiniteVector: .nonFinite
        case .invalidValue: .invalidValue
        case .incompatibleDatabase, .sqlite: .storageError
        case .closed: .shuttingDown
        }
    }

    /// What went wrong, for people.
    public var message: String {
        switch self {
        case .wrongDimension(let expected, let got):
            "vector has \(got) components, the space has dimension \(expected)"
        case .nonFiniteVector: "vector holds NaN or infinity"
        case .invalidValue(let message), .incompatibleDatabase(let message), .sqlite(let message): message
        case .closed: "the database is closed"
        }
    }
}
