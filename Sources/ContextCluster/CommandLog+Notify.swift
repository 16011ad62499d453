import Logging
import PostgresNIO
import Synchronization

/// Waking followers: after each append, the log sends a `NOTIFY` on channel `cs_log` (outside
/// the append's transaction, and one at a time however many appends end meanwhile: a NOTIFY in
/// the append would hold PostgreSQL's global notify lock through every standby wait). A
/// follower `listen`s on the primary and reads the log when woken; it also reads it every
/// interval, since a notification can be lost (a reconnect, a failover) and `LISTEN` does not
/// work on a standby.
extension CommandLog {
    static let channel = "cs_log"

    /// Whether a NOTIFY is being sent, and whether another append ended since it began.
    struct Announcing {
        var sending = false
        var again = false
    }

    /// Tells listeners that the log grew: sends one NOTIFY now, or one more after the one in
    /// flight. A hint only: it is not durable (`synchronous_commit` off) and may be lost.
    func announce() {
        let start = announcing.withLock { state in
            if state.sending {
                state.again = true
                return false
            }
            state.sending = true
            return true
        }
        guard start else { return }
        Task {
            repeat {
                announcing.withLock { $0.again = false }
                do {
                    // One statement, its own transaction: a NOTIFY takes an xid, so its commit
                    // would wait for the standby but for the setting, local to it.
                    try await onPrimary { connection in
                        _ = try await connection.query(
                            "SELECT set_config('synchronous_commit', 'off', true), pg_notify('cs_log', '')",
                            logger: self.logger)
                    }
                } catch {
                    logger.debug(
                        "NOTIFY failed; followers read the log at their interval", metadata: ["error": "\(error)"])
                }
            } while announcing.withLock { state in
                if state.again { return true }
                state.sending = false
                return false
            }
        }
    }

    /// Calls `woken` whenever a node has appended (and once each time it starts listening, for
    /// what it may have missed), until cancelled: listens on the first host that takes a
    /// `LISTEN` (a standby refuses it), starting with the last known primary, and moves on
    /// when the connection ends.
    public func listen(_ woken: @escaping @Sendable () -> Void) async {
        var host = primaryHost
        while !Task.isCancelled {
            do {
                try await clients[host].withConnection { connection in
                    try await connection.listen(on: Self.channel) { notifications in
                        woken()
                        for try await _ in notifications { woken() }
                    }
                }
            } catch {
                logger.debug("LISTEN ended", metadata: ["host": "\(host)", "error": "\(error)"])
                host = (host + 1) % clients.count
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}
