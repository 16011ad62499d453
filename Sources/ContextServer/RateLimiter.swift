import ContextModel
import ContextProtocol
import Synchronization

/// How fast a key may go: `perSecond` tokens come back each second, up to `burst`.
public struct Rate: Sendable, Equatable {
    public var perSecond: Double
    public var burst: Double

    public init(perSecond: Double, burst: Double) {
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// Token buckets for the keys that have a rate: one per key, and one per user each key touches,
/// both with the key's rate and burst. A request takes its op's cost from the key's bucket and
/// from each of its users' buckets, or from none of them: a refused request has done nothing.
final class RateLimiter: Sendable {
    /// Per-user buckets kept at most; past it, the buckets that have filled up again (which
    /// behave as new ones) are let go.
    static let maximumBuckets = 100_000

    private struct Bucket {
        var tokens: Double
        var updated: UInt64
        var rate: Rate

        /// The tokens at `now`, refilled since the last update.
        func level(at now: UInt64) -> Double {
            min(rate.burst, tokens + Double(now &- updated) / 1e9 * rate.perSecond)
        }
    }

    /// A key's own bucket (`user` nil) or its bucket for one user.
    private struct BucketName: Hashable {
        var key: String
        var user: String?
    }

    private let buckets = Mutex<[BucketName: Bucket]>([:])

    /// Takes `cost` tokens for `key` and each of `users`, or, when a bucket lacks them, none.
    /// - Returns: nil when taken; else how many milliseconds until the emptiest bucket holds
    ///   enough (a cost above the burst waits for a full bucket).
    func take(_ cost: Double, key: String, users: [String], rate: Rate, now: UInt64) -> Int64? {
        let needed = min(cost, rate.burst)
        // A user named twice in one request is charged once.
        let users = users.count > 1 ? Array(Set(users)) : users
        return buckets.withLock { buckets in
            func level(_ name: BucketName) -> Double {
                min(rate.burst, buckets[name]?.level(at: now) ?? rate.burst)
            }
            var lowest = level(BucketName(key: key))
            for user in users { lowest = min(lowest, level(BucketName(key: key, user: user))) }
            guard lowest >= needed else {
                return max(1, Int64(((needed - lowest) / rate.perSecond * 1000).rounded(.up)))
            }
            func take(_ name: BucketName) {
                buckets[name] = Bucket(tokens: level(name) - needed, updated: now, rate: rate)
            }
            take(BucketName(key: key))
            for user in users { take(BucketName(key: key, user: user)) }
            if buckets.count > Self.maximumBuckets {
                buckets = buckets.filter { $0.value.level(at: now) < $0.value.rate.burst }
            }
            return nil
        }
    }
}
