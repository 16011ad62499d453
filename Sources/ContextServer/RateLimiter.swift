import ContextModel
import ContextProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

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

    private let buckets = Mutex<[String: Bucket]>([:])

    /// Takes `cost` tokens for `key` and each of `users`, or, when a bucket lacks them, none.
    /// - Returns: nil when taken; else how many milliseconds until the emptiest bucket holds
    ///   enough (a cost above the burst waits for a full bucket).
    func take(_ cost: Double, key: String, users: [String], rate: Rate, now: UInt64 = RateLimiter.now())
        -> Int64?
    {
        let needed = min(cost, rate.burst)
        let names = [key] + Set(users).sorted().map { key + "\u{0}" + $0 }
        return buckets.withLock { buckets in
            let levels = names.map { min(rate.burst, buckets[$0]?.level(at: now) ?? rate.burst) }
            let wait = levels.map { ($0 < needed ? (needed - $0) / rate.perSecond : 0) }.max() ?? 0
            guard wait == 0 else { return max(1, Int64((wait * 1000).rounded(.up))) }
            for (name, level) in zip(names, levels) {
                buckets[name] = Bucket(tokens: level - needed, updated: now, rate: rate)
            }
            if buckets.count > Self.maximumBuckets {
                buckets = buckets.filter { $0.value.level(at: now) < $0.value.rate.burst }
            }
            return nil
        }
    }

    /// Monotonic nanoseconds.
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
