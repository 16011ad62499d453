import ContextModel
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Shows progress on standard error (an import's rows, a benchmark's questions): a redrawn bar
/// with count, rate and ETA on a terminal, a plain line every few seconds otherwise.
public final class ProgressReporter: Sendable {
    private let terminal = isatty(2) != 0
    /// When the last line was printed (monotonic seconds).
    private let lastPrint = Mutex(0.0)

    public init() {}

    public func update(_ summary: ImportSummary) {
        let done = summary.imported + summary.skipped + summary.conflicts + summary.failed
        show(
            fraction: summary.fractionRead, seconds: summary.seconds,
            text: "\(done) rows, \(Int(rate(done, summary.seconds)))/s", failed: summary.failed)
    }

    /// `done` of `total` things (`unit`, e.g. "questions") after `seconds`.
    public func update(done: Int, of total: Int, unit: String, seconds: Double) {
        show(
            fraction: total > 0 ? Double(done) / Double(total) : 1, seconds: seconds,
            text: "\(done)/\(total) \(unit), \(Int(rate(done, seconds)))/s", failed: nil)
    }

    private func rate(_ done: Int, _ seconds: Double) -> Double { seconds > 0 ? Double(done) / seconds : 0 }

    private func show(fraction: Double, seconds: Double, text: String, failed: Int?) {
        let now = Clock.monotonicSeconds()
        let due = lastPrint.withLock { last in
            guard now - last >= (terminal ? 0.1 : 5) else { return false }
            last = now
            return true
        }
        guard due else { return }
        let eta = fraction > 0 ? seconds * (1 - fraction) / fraction : 0
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
        let line =
            "[\(bar)] \(Int(fraction * 100))% \(text), ETA \(Int(eta.rounded()))s"
            + (failed.map { ", \($0) failed" } ?? "")
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
