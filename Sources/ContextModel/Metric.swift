/// How two vectors are compared. Fixed for a memory space when it is created.
public enum Metric: String, Sendable, CaseIterable {
    /// Cosine similarity. Vectors are normalized once, at insert, so a search is an inner product.
    case cosine
    /// Inner product of the vectors as given.
    case dot
    /// Euclidean distance; smaller is closer.
    case l2

    /// The longest vector a space may hold. The int8 kernels sum a row's products in int32
    /// exactly, each at most 255 x 127 in magnitude: exact up to about 66,300 components.
    public static let maximumDimension = 65_536

    /// Whether a larger score means a closer match (true for `cosine` and `dot`).
    public var higherIsBetter: Bool { self != .l2 }

    /// The form in which the indexes store and search a vector: unit length under cosine (so a
    /// search is an inner product), as given otherwise. The store prepares each vector once, at
    /// its boundary; the indexes take prepared vectors only.
    public func prepared(_ vector: [Float]) -> [Float] {
        self == .cosine ? Self.normalized(vector) : vector
    }

    /// `v / |v|`, computed in double precision so that neither huge nor subnormal components
    /// overflow or vanish; the zero vector stays zero.
    public static func normalized(_ v: [Float]) -> [Float] {
        let norm = v.withUnsafeBufferPointer { values in
            var sum = 0.0
            for value in values { sum += Double(value) * Double(value) }
            return sum.squareRoot()
        }
        guard norm > 0, norm.isFinite else { return v }
        return v.map { Float(Double($0) / norm) }
    }
}
