/// Which range a user belongs to: a stable hash of the user id's UTF-8 bytes, modulo the number
/// of ranges fixed when the cluster is made. Stable means the same on every machine, build and
/// release (FNV-1a, 64 bits; never Swift's `Hasher`, which is seeded per process), since the
/// answer decides which log a user's writes go to for the cluster's whole life.
public struct RangeMap: Sendable, Equatable {
    /// The number of ranges, at least 1.
    public let count: Int

    /// The cluster's default: enough ranges to spread users over tens of nodes, few enough that
    /// each range's file and log stay worth their overhead.
    public static let defaultCount = 64
    /// The most ranges a cluster may have (each is a log, a file per host and a row of state).
    public static let maximumCount = 4_096

    /// - Throws: `ClusterError.invalidConfiguration` when `count` is outside 1...`maximumCount`.
    public init(count: Int = RangeMap.defaultCount) throws {
        guard (1...Self.maximumCount).contains(count) else {
            throw ClusterError.invalidConfiguration("ranges must be 1...\(Self.maximumCount), not \(count)")
        }
        self.count = count
    }

    /// The range of `user`, in `0..<count`.
    public func range(of user: String) -> Int {
        Int(Self.hash(user.utf8) % UInt64(count))
    }

    /// FNV-1a over bytes.
    static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
