import Logging
import PostgresNIO
import Synchronization

/// Waking followers: after each append, the log sends a `NOTIFY` on channel `cs_log` with the
/// payload `RANGE:SEQ` (outside the append's transaction, and one statement at a time however
/// many appends end meanwhile: a NOTIFY in the append would hold PostgreSQL's global notify
/// lock through every standby wait). The entry is durable when it is sent (its append
/// returned), so a follower that hosts the range reads up to it without a barrier; one that
/// does not host it does nothing. A follower also reads every range every interval, since a
/// notification can be lost (a reconnect, a failover) and `LISTEN` does not work on a standby.
extension CommandLog {
    static let channel = "cs_log"

    /// Whether a NOTIFY is being sent, and the appends that ended since it began.
    struct Announcing {
        var sending = false
        var pending: [Int: Int64] = [:]
    }

    /// Tells listeners that `range` has a durable entry `seq`: in a NOTIFY now, or in the next
    /// one after the one in flight (with every range appended meanwhile). A hint only: it is
    /// not durable (`synchronous_commit` off) and may be lost.
    func announce(_ range: Int, through seq: Int64) {
        let start = announcing.withLock { state in
            state.pending[range] = max(state.pending[range] ?? 0, seq)
            defer { state.sending = true }
            return !state.sending
        }
        guard start else { return }
        Task {
            while let payloads = nextAnnouncement() {
                do {
                    // One statement, its own transaction: a NOTIFY takes an xid, so its commit
                    // would wait for the standby but for the setting, local to it.
                    try await onPrimary { connection in
                        _ = try await connection.query(
                            """
                            SELECT set_config('synchronous_commit', 'off', true), pg_notify('cs_log', payload)
                            FROM unnest(\(payloads)::text[]) AS payload
                            """,
                            logger: self.logger)
                    }
                } catch {
                    logger.debug(
                        "NOTIFY failed; followers read the log at their interval", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// The payloads of the appends not announced yet, or nil (and no longer sending) when
    /// there are none.
    private func nextAnnouncement() -> [String]? {
        announcing.withLock { state in
            guard !state.pending.isEmpty else {
                state.sending = false
                return nil
            }
            defer { state.pending = [:] }
            return state.pending.map { "\($0.key):\($0.value)" }
        }
    }

    /// Calls `woken` with the range and the durable sequence a node has appended, whenever one
    /// has (and with nil each time it starts listening, for what it may have missed), until
    /// cancelled: listens on the first host that takes a `LISTEN` (a standby refuses it),
    /// starting with the last known primary, and moves on when the connection ends.
    public func listen(_ woken: @escaping @Sendable ((range: Int, seq: Int64)?) -> Void) async {
        var host = primaryHost
        while !Task.isCancelled {
            do {
                try await clients[host].withConnection { connection in
                    try await connection.listen(on: Self.channel) { notifications in
                        woken(nil)
                        for try await notification in notifications {
                            let parts = notification.payload.split(separator: ":")
                            if parts.count == 2, let range = Int(parts[0]), let seq = Int64(parts[1]) {
                                woken((range, seq))
                            } else {
                                woken(nil)
                            }
                        }
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
