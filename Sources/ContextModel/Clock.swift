#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The clocks the product reads: wall time for memories, monotonic time for measurements.
public enum Clock {
    /// Unix milliseconds now: a memory's default `created_at`.
    public static func nowMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// Seconds on a clock that never goes back, for durations.
    public static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// The times the product takes, in unix milliseconds: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999Z, the years ISO 8601 writes with four digits. Every time a request
/// or a file carries is checked against it, so arithmetic with the clock cannot overflow.
public enum TimeRange {
    public static let milliseconds: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// Whether `time` is inside the range.
    public static func contains(_ time: Int64) -> Bool { milliseconds.contains(time) }

    /// Seconds from `earlier` to `later`, computed without overflow for any two 64-bit values
    /// (a row written before times were checked may hold any).
    public static func seconds(from earlier: Int64, to later: Int64) -> Double {
        (Double(later) - Double(earlier)) / 1000
    }
}

/// Ids the store gives memories that come without one.
public enum MemoryID {
    /// A random version-4 UUID in lower-case text.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let digits = Array("0123456789abcdef")
        let hex = bytes.map { String([digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]]) }
        return [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }.joined(separator: "-")
    }
}
