import Synchronization

/// What wakes a follower: entries appended (each range's last durable sequence, as notified),
/// or a full round (its interval passed, or notifications may have been missed). Signals sent
/// while no one waits are merged: the next wait returns them at once.
final class Wakeup: Sendable {
    struct Reasons: Sendable, Equatable {
        /// Read every open range (not only the notified ones).
        var all = false
        /// Ranges with a durable entry up to the sequence given.
        var appended: [Int: Int64] = [:]

        var isEmpty: Bool { !all && appended.isEmpty }
    }

    private let state = Mutex<(pending: Reasons, waiter: CheckedContinuation<Void, Never>?)>((Reasons(), nil))

    /// `range` has a durable entry `seq`.
    func appended(_ range: Int, through seq: Int64) {
        signal { $0.appended[range] = max($0.appended[range] ?? 0, seq) }
    }

    /// Every open range is to be read.
    func all() {
        signal { $0.all = true }
    }

    private func signal(_ change: (inout Reasons) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            change(&state.pending)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Returns what came since the last wait: at once if something did, else at the next
    /// signal, after `timeout` (a full round), or when the task is cancelled (nothing).
    /// One waiter at a time.
    func wait(upTo timeout: Duration) async -> Reasons {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { all() }
        }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if !state.pending.isEmpty || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
        return state.withLock { state in
            defer { state.pending = Reasons() }
            return state.pending
        }
    }
}
