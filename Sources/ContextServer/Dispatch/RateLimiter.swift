import ContextModel
import ContextProtocol
import Synchronization

/// How fast a key may go: `perSecond` tokens come back each second, up to `burst`. Both are
/// checked where a keys file is read (`Rate.perSecondRange`, `Rate.burstRange`).
public struct Rate: Sendable, Equatable {
    public var perSecond: Double
    public var burst: Double

    /// One token every 1,000 seconds at the slowest; a billion a second at the fastest.
    public static let perSecondRange: ClosedRange<Double> = 0.001...1e9
    public static let burstRange: ClosedRange<Double> = 1...1e9
    /// The longest wait a refusal names: the longest a full bucket takes to refill is
    /// `burstRange.upperBound / perSecondRange.lowerBound` seconds; no client should be told more.
    public static let maximumWaitMilliseconds: Int64 = 86_400_000

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
    /// By bytes (`ExactString`): two spellings of a user are two users, as everywhere else.
    private struct BucketName: Hashable {
        var key: ExactString
        var user: ExactString?

        init(key: String, user: String? = nil) {
            self.key = ExactString(key)
            self.user = user.map(ExactString.init)
        }
    }

    private let buckets = Mutex<[BucketName: Bucket]>([:])

    /// Why a request's tokens were not taken.
    enum Refusal: Equatable {
        /// The buckets hold fewer tokens than the request costs: milliseconds until they do.
        case wait(Int64)
        /// The request costs more than the key's burst, so no wait would let it through.
        case exceedsBurst
    }

    /// Takes `cost` tokens for `key` and each of `users`, or, when a bucket lacks them, none.
    /// A request is charged its whole cost: one that costs more than the burst is refused
    /// outright (split into smaller ones, it goes through at the key's rate).
    /// - Returns: nil when taken; else why not.
    func take(_ cost: Double, key: String, users: [String], rate: Rate, now: UInt64) -> Refusal? {
        guard cost <= rate.burst else { return .exceedsBurst }
        // A user named twice in one request is charged once.
        let users = users.count > 1 ? Set(users.map(ExactString.init)).map(\.string) : users
        return buckets.withLock { buckets in
            func level(_ name: BucketName) -> Double {
                min(rate.burst, buckets[name]?.level(at: now) ?? rate.burst)
            }
            var lowest = level(BucketName(key: key))
            for user in users { lowest = min(lowest, level(BucketName(key: key, user: user))) }
            guard lowest >= cost else {
                // In Double, then clamped: a tiny rate would otherwise overflow Int64.
                let milliseconds = ((cost - lowest) / rate.perSecond * 1000).rounded(.up)
                return .wait(Int64(min(max(1, milliseconds), Double(Rate.maximumWaitMilliseconds))))
            }
            func take(_ name: BucketName) {
                buckets[name] = Bucket(tokens: level(name) - cost, updated: now, rate: rate)
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
