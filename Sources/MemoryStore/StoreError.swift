import ContextModel

/// Why the storage engine refused or failed an operation.
/// A setting a space is created with and keeps.
public enum SpaceSetting: Sendable, Equatable {
    case dimension, metric, index, model, embedTemplate
}

public enum StoreError: Error, Sendable, Equatable {
    /// A vector's length differs from the space's dimension.
    case wrongDimension(expected: Int, got: Int)
    /// A vector holds NaN or an infinity (also after conversion to float32).
    case nonFiniteVector
    /// A field holds a value the engine does not accept; the text says which and why.
    case invalidValue(String)
    /// The database file cannot be used by this version, is in use, or is damaged.
    case incompatibleDatabase(String)
    /// The file's space was made with another dimension, metric, index or model than the one
    /// asked for.
    case spaceMismatch(SpaceSetting, String)
    /// SQLite failed; the text carries its code and message.
    case sqlite(String)
    /// The store was closed.
    case closed
    /// A statement of the request ran past the store's time limit (`statementTimeLimit`) and
    /// was stopped; nothing of it was stored. The text says what to narrow.
    case tooCostly(String)
    /// A memory the request names (that an `add` supersedes) is not there; the text says which.
    case notFound(String)

    /// The stable code a client sees for this error.
    public var code: ErrorCode {
        switch self {
        case .wrongDimension: .wrongDimension
        case .nonFiniteVector: .nonFinite
        case .invalidValue: .invalidValue
        case .incompatibleDatabase, .spaceMismatch, .sqlite: .storageError
        case .closed: .shuttingDown
        case .tooCostly: .tooLarge
        case .notFound: .notFound
        }
    }

    /// True when the same command on the same rows is refused the same way on any machine (so
    /// a replica may record it as applied); false for failures of the machine or its limits.
    public var followsFromTheCommand: Bool {
        switch self {
        case .wrongDimension, .nonFiniteVector, .invalidValue, .notFound: true
        case .incompatibleDatabase, .spaceMismatch, .sqlite, .closed, .tooCostly: false
        }
    }

    /// What went wrong, for people.
    public var message: String {
        switch self {
        case .wrongDimension(let expected, let got):
            "vector has \(got) components, the space has dimension \(expected)"
        case .nonFiniteVector: "vector holds NaN or infinity"
        case .invalidValue(let message), .incompatibleDatabase(let message), .spaceMismatch(_, let message),
            .sqlite(let message), .tooCostly(let message), .notFound(let message):
            message
        case .closed: "the database is closed"
        }
    }
}
