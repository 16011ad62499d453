import ContextModel
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Shows progress on standard error: a redrawn bar with count, rate and ETA on a terminal,
/// a plain line every few seconds otherwise.
public final class ProgressReporter: Sendable {
    private let terminal = isatty(2) != 0
    /// When the last line was printed (monotonic seconds).
    private let lastPrint = Mutex(0.0)

    public init() {}

    public func update(_ summary: ImportSummary) {
        let now = Clock.monotonicSeconds()
        let due = lastPrint.withLock { last in
            guard now - last >= (terminal ? 0.1 : 5) else { return false }
            last = now
            return true
        }
        guard due else { return }
        let done = summary.imported + summary.skipped + summary.conflicts + summary.failed
        let rate = summary.seconds > 0 ? Double(done) / summary.seconds : 0
        let fraction = summary.fractionRead
        let eta = fraction > 0 ? summary.seconds * (1 - fraction) / fraction : 0
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
        let line =
            "[\(bar)] \(Int(fraction * 100))% \(done) rows, \(Int(rate))/s, ETA \(Int(eta.rounded()))s, "
            + "\(summary.failed) failed"
        write(terminal ? "\r\u{1B}[K" + line : line + "\n")
    }

    /// Ends the bar's line on a terminal.
    public func finish() {
        if terminal { write("\n") }
    }

    private func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}
