/// How two vectors are compared. Fixed for a memory space when it is created.
public enum Metric: String, Sendable, CaseIterable {
    /// Cosine similarity. Vectors are normalized once, at insert, so a search is an inner product.
    case cosine
    /// Inner product of the vectors as given.
    case dot
    /// Euclidean distance; smaller is closer.
    case l2

    /// Whether a larger score means a closer match (true for `cosine` and `dot`).
    public var higherIsBetter: Bool { self != .l2 }
}
