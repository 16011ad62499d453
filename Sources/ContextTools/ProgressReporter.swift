#if canImport(Glibc)
    import Glibc
#endif

/// Shows progress on standard error: a redrawn bar with count, rate and ETA on a terminal,
/// a plain line every few seconds otherwise.
public final class ProgressReporter: @unchecked Sendable {
    private let total: Int?
    private let terminal = isatty(2) != 0
    private var lastPrint = 0.0
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    /// - Parameter total: Rows expected, when known (vector files); nil shows no ETA.
    public init(total: Int?) {
        self.total = total
        lock.initialize(to: pthread_mutex_t())
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    public func update(_ summary: ImportSummary) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        let now = monotonicSeconds()
        guard now - lastPrint >= (terminal ? 0.1 : 5) else { return }
        lastPrint = now
        let done = summary.imported + summary.skipped + summary.failed
        let rate = summary.seconds > 0 ? Double(done) / summary.seconds : 0
        var line = "\(done) rows, \(Int(rate))/s, \(summary.failed) failed"
        if let total, total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let eta = rate > 0 ? Double(total - done) / rate : 0
            let filled = Int(fraction * 30)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
            line =
                "[\(bar)] \(Int(fraction * 100))% \(done)/\(total), \(Int(rate))/s, ETA \(Int(eta.rounded()))s, \(summary.failed) failed"
        }
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
