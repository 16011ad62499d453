#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A string compared and hashed by its UTF-8 bytes, the way SQLite compares text.
///
/// Swift's `String` equality is Unicode canonical equivalence (`"caf\u{E9}" == "cafe\u{301}"`),
/// while the database compares bytes. Every in-memory map keyed by an id or a user uses this
/// type, so memory and file agree on which strings are one key: two spellings of a text are
/// two keys everywhere.
public struct ExactString: Hashable, Sendable, CustomStringConvertible {
    public let string: String

    @inlinable
    public init(_ string: String) {
        var string = string
        string.makeContiguousUTF8()
        self.string = string
    }

    public var description: String { string }

    @inlinable
    public static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.string.bytewiseEquals(rhs.string)
    }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        var string = string
        string.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

extension String {
    /// Whether the two strings hold the same UTF-8 bytes (not merely canonically equivalent text).
    @inlinable
    public func bytewiseEquals(_ other: String) -> Bool {
        var (lhs, rhs) = (self, other)
        return lhs.withUTF8 { a in
            rhs.withUTF8 { b in
                a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
            }
        }
    }
}

extension Optional where Wrapped == String {
    /// `bytewiseEquals` for optional strings: two nils are equal.
    @inlinable
    public func bytewiseEquals(_ other: String?) -> Bool {
        switch (self, other) {
        case (nil, nil): true
        case (let a?, let b?): a.bytewiseEquals(b)
        default: false
        }
    }
}
