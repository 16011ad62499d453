import Foundation
import Logging
import MemoryStore
import NIOCore
import PostgresNIO
import Synchronization

/// The cluster's ordered log of writes, kept in PostgreSQL: one gapless sequence per range of
/// users, each entry a resolved `WriteCommand`'s bytes. An append commits only where the
/// server is a writable primary with a synchronous standby, so an acknowledged write is on two
/// machines' disks before anyone hears "ok".
///
/// Tables (created by `install`):
/// - `cs_ranges(range, next_seq)`: one row per range; an append takes the row's lock to draw
///   its sequence, so sequences commit in order with no gaps (a bigserial can commit out of
///   order, and a reader following `seq > last` would skip the late one).
/// - `cs_log(range, seq, key, command)`: the entries; `key` (unique) makes an append
///   idempotent, since an append whose connection dies at COMMIT may have committed.
/// - `cs_nodes`, `cs_placement`: membership and placement (`CommandLog+Placement.swift`).
/// - `cs_snapshots`, `cs_snapshot_parts`, `cs_applied` and `cs_ranges.truncated`: snapshots of
///   ranges, and the entries deleted once every host holds them (`CommandLog+Snapshots.swift`).
public final class CommandLog: Sendable {
    public struct Configuration: Sendable {
        /// The PostgreSQL servers of one replicated formation, as `host:port`: writes and reads
        /// go to the one that is a writable primary (postgres-nio takes one host and no
        /// `target_session_attrs`, so the log asks each in turn).
        public var hosts: [(host: String, port: Int)]
        public var username: String
        public var password: String?
        public var database: String
        /// Refuse to commit unless `synchronous_standby_names` names a standby (the cluster's
        /// promise). Off only for a single PostgreSQL used in development: then an entry rests
        /// on one disk.
        public var requireSynchronousStandby: Bool
        /// How long one call to PostgreSQL may take, connecting included. A commit that waits
        /// longer for its standby is abandoned (its connection closed) and reported
        /// `unavailable` with an unknown outcome; never through `statement_timeout`, which
        /// would let the COMMIT succeed with only a warning while the standby lacks it.
        public var deadline: Duration
        /// How long storing or loading a range's snapshot may take.
        public var transferDeadline: Duration

        public init(
            hosts: [(host: String, port: Int)], username: String, password: String? = nil, database: String,
            requireSynchronousStandby: Bool = true, deadline: Duration = .seconds(10),
            transferDeadline: Duration = .seconds(600)
        ) {
            self.hosts = hosts
            self.username = username
            self.password = password
            self.database = database
            self.requireSynchronousStandby = requireSynchronousStandby
            self.deadline = deadline
            self.transferDeadline = transferDeadline
        }
    }

    /// One entry of a range's log.
    public struct Entry: Sendable, Equatable {
        public var seq: Int64
        public var command: WriteCommand
        /// The idempotency key it was appended with.
        public var key: UUID
    }

    /// Entries read at once by `entries(range:after:limit:)` at most.
    public static let maximumPage = 10_000

    public let configuration: Configuration
    let clients: [PostgresClient]
    private let running: Task<Void, Never>
    let logger: Logger
    /// The host that was the writable primary last time (an index into `clients`).
    private let primary = Mutex<Int>(0)
    let announcing = Mutex(Announcing())

    /// The host that was the writable primary last time.
    var primaryHost: Int { primary.withLock { $0 } }

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "contextstore.cluster.log")) {
        self.configuration = configuration
        self.logger = logger
        let clients = configuration.hosts.map { host in
            var settings = PostgresClient.Configuration(
                host: host.host, port: host.port, username: configuration.username,
                password: configuration.password, database: configuration.database, tls: .disable)
            settings.options.connectTimeout = min(configuration.deadline, .seconds(5))
            // Every commit of the log's sessions waits for the synchronous standby, whatever the
            // database's default.
            settings.options.additionalStartupParameters = [("synchronous_commit", "on")]
            return PostgresClient(configuration: settings, backgroundLogger: logger)
        }
        self.clients = clients
        running = Task {
            await withDiscardingTaskGroup { group in
                for client in clients { group.addTask { await client.run() } }
            }
        }
    }

    /// Closes every connection; the log cannot be used after.
    public func shutdown() async {
        running.cancel()
        _ = await running.value
    }

    /// Creates the tables and `ranges` range rows when they are missing (idempotent), and
    /// returns the cluster's number of ranges, which is fixed by the first call.
    @discardableResult
    public func install(ranges: RangeMap) async throws -> RangeMap {
        try await onPrimary { connection in
            try await connection.query("BEGIN", logger: self.logger)
            do {
                // One installer at a time (several nodes may start together).
                try await connection.query("SELECT pg_advisory_xact_lock(7420)", logger: self.logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS cs_ranges (
                        range integer PRIMARY KEY, next_seq bigint NOT NULL DEFAULT 1)
                    """, logger: self.logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS cs_log (
                        range integer NOT NULL REFERENCES cs_ranges (range), seq bigint NOT NULL,
                        key uuid NOT NULL UNIQUE, command bytea NOT NULL, PRIMARY KEY (range, seq))
                    """, logger: self.logger)
                let existing = try await connection.query("SELECT count(*) FROM cs_ranges", logger: self.logger)
                var count = 0
                for try await (n) in existing.decode(Int.self) { count = n }
                if count == 0 {
                    try await connection.query(
                        "INSERT INTO cs_ranges (range) SELECT generate_series(0, \(ranges.count) - 1)",
                        logger: self.logger)
                    count = ranges.count
                }
                for statement in Self.placementTables + Self.snapshotTables {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                try await self.commitDurably(connection)
                return try RangeMap(count: count)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: self.logger)
                throw error
            }
        }
    }

    /// One entry to append: `command` for `range`'s log, with its idempotency key.
    public struct Part: Sendable {
        public var command: WriteCommand
        public var range: Int
        public var key: UUID

        public init(_ command: WriteCommand, range: Int, key: UUID) {
            self.command = command
            self.range = range
            self.key = key
        }
    }

    /// Appends `command` to `range`'s log and returns its sequence, once PostgreSQL has
    /// committed it on the primary and a synchronous standby. Appending again with the same
    /// `key` returns the first append's sequence (after making sure that one is durable too)
    /// and adds nothing: retry with the same key after any failure.
    /// - Parameter fence: The appending node's life: the append is refused unless its lease
    ///   holds (checked in the same transaction).
    /// - Throws: `ClusterError.unavailable` when no server can take a durable write now (a
    ///   standby, a fenced primary, no synchronous standby named, the node's lease lapsed, the
    ///   connection lost or the deadline passed; at COMMIT the outcome is unknown, so retry
    ///   with the key).
    public func append(_ command: WriteCommand, range: Int, key: UUID, fence: Fence? = nil) async throws -> Int64 {
        try await append([Part(command, range: range, key: key)], fence: fence)[0]
    }

    /// Appends each part to its range's log in one transaction (all or none, one wait for the
    /// standby for them all) and returns their sequences in order, as `append` does one. The
    /// parts name distinct ranges; their rows are locked in range order, so that two
    /// appends over the same ranges never wait for each other in a cycle.
    public func append(_ parts: [Part], fence: Fence? = nil) async throws -> [Int64] {
        guard let first = parts.first else { return [] }
        guard Set(parts.map(\.range)).count == parts.count else {
            throw ClusterError.invalidConfiguration("an append names a range twice")
        }
        let encoded = parts.map { (range: $0.range, key: $0.key, bytes: ByteBuffer(bytes: $0.command.encoded())) }
        let sequences: [Int64]
        do {
            sequences = try await onPrimary { connection in
                try await self.append(encoded, first: first.key, fence: fence, on: connection)
            }
        } catch ClusterError.unavailable(let message) where message.hasPrefix(Self.duplicateKey) {
            // Another append of the same keys committed between our lookup and our insert: the
            // retry finds it.
            sequences = try await onPrimary { connection in
                try await self.append(encoded, first: first.key, fence: fence, on: connection)
            }
        }
        for (part, seq) in zip(parts, sequences) { announce(part.range, through: seq) }
        return sequences
    }

    private static let duplicateKey = "duplicate key"

    private func append(
        _ parts: [(range: Int, key: UUID, bytes: ByteBuffer)], first: UUID, fence: Fence?,
        on connection: PostgresConnection
    ) async throws -> [Int64] {
        try await inDurableTransaction(connection, key: first, fence: fence) { existing in
            if existing != nil {
                // All the parts committed together, perhaps here alone (the COMMIT lost its
                // connection while it waited for the standby): this commit waits for the
                // standby past them.
                try await barrier(connection)
                var found: [UUID: Int64] = [:]
                let rows = try await connection.query(
                    "SELECT key, seq FROM cs_log WHERE key = ANY(\(parts.map(\.key)))", logger: logger)
                for try await (key, seq) in rows.decode((UUID, Int64).self) { found[key] = seq }
                return try parts.map { part in
                    guard let seq = found[part.key] else {
                        throw ClusterError.corruptLog(
                            "an append's part \(part.key) is missing from range \(part.range)")
                    }
                    return seq
                }
            }
            if parts.count > 1 {
                let ranges = parts.map { Int32($0.range) }.sorted()
                try await connection.query(
                    "SELECT range FROM cs_ranges WHERE range = ANY(\(ranges)) ORDER BY range FOR UPDATE",
                    logger: logger)
            }
            var sequences: [Int64] = []
            for part in parts {
                // The range row's lock, taken by the UPDATE (or above), is held to COMMIT.
                let drawn = try await connection.query(
                    """
                    WITH drawn AS (
                        UPDATE cs_ranges SET next_seq = next_seq + 1 WHERE range = \(part.range)
                        RETURNING next_seq - 1 AS seq)
                    INSERT INTO cs_log (range, seq, key, command)
                    SELECT \(part.range), seq, \(part.key), \(part.bytes) FROM drawn
                    RETURNING seq
                    """,
                    logger: logger)
                var taken: Int64?
                for try await (next) in drawn.decode(Int64.self) { taken = next }
                guard let taken else { throw ClusterError.invalidConfiguration("no range \(part.range) in the log") }
                sequences.append(taken)
            }
            return sequences
        }
    }

    /// Runs `body` in a transaction that refuses unless the server can make it durable
    /// (`checkDurable`), rolled back when `body` throws, and committed durably.
    func inDurableTransaction<Result: Sendable>(
        _ connection: PostgresConnection, key: UUID? = nil, fence: Fence? = nil, _ body: (Int64?) async throws -> Result
    ) async throws -> Result {
        try await connection.query("BEGIN", logger: logger)
        let result: Result
        do {
            result = try await body(try await checkDurable(connection, key: key, fence: fence))
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
        try await commitDurably(connection)
        return result
    }

    /// COMMIT, which returns once the primary and (with `synchronous_commit = on`) a
    /// synchronous standby have the transaction on disk.
    private func commitDurably(_ connection: PostgresConnection) async throws {
        do {
            try await connection.query("COMMIT", logger: logger)
        } catch let error as PSQLError {
            throw ClusterError.unavailable(
                "the commit's outcome is unknown (\(Self.describe(error))); retry with its key")
        }
    }

    /// Makes the transaction's COMMIT wait for the synchronous standby to have everything
    /// committed before it: a commit waits for its standby only when it wrote WAL (an xid
    /// alone does not), so it writes a transactional logical message, the smallest WAL record
    /// any role may write.
    private func barrier(_ connection: PostgresConnection) async throws {
        try await connection.query("SELECT pg_logical_emit_message(true, 'contextstore', '')", logger: logger)
    }

    /// Refuses (inside the transaction) unless this server is a writable primary whose commits
    /// wait for a synchronous standby. The read-only default is read as well as the
    /// transaction's: a session applies a reloaded configuration only after the command it was
    /// waiting for (here BEGIN), so a fence set just before shows in the default alone. pg_auto_failover accepts writes for a few seconds after
    /// a promotion with `synchronous_standby_names` empty, and fences an old primary with
    /// `default_transaction_read_only`: both are refused here, before anything is written.
    /// In the same round trip, the sequence of an entry appended with `key`, if any, and
    /// whether `fence`'s lease holds.
    @discardableResult
    private func checkDurable(_ connection: PostgresConnection, key: UUID? = nil, fence: Fence? = nil) async throws
        -> Int64?
    {
        let rows = try await connection.query(
            """
            SELECT pg_is_in_recovery(),
                greatest(current_setting('transaction_read_only'), current_setting('default_transaction_read_only')),
                current_setting('synchronous_standby_names'), current_setting('synchronous_commit'),
                (SELECT seq FROM cs_log WHERE key = \(key ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)))),
                (SELECT lease_until > now() FROM cs_nodes WHERE name = \(fence?.node ?? "") AND epoch = \(fence?.epoch ?? 0))
            """, logger: logger)
        var existing: Int64?
        for try await (recovering, readOnly, standbys, commit, seq, leased) in rows.decode(
            (Bool, String, String, String, Int64?, Bool?).self)
        {
            if recovering { throw ClusterError.unavailable(Self.standby) }
            if readOnly == "on" { throw ClusterError.unavailable(Self.fenced) }
            if let fence, leased != true {
                throw ClusterError.unavailable("node \(fence.node)'s lease of epoch \(fence.epoch) \(Self.lapsed)")
            }
            if configuration.requireSynchronousStandby {
                if standbys.trimmingCharacters(in: .whitespaces).isEmpty {
                    throw ClusterError.unavailable("no synchronous standby: a commit would rest on one disk")
                }
                // remote_write or off would answer before the standby has it on disk.
                guard ["on", "remote_apply"].contains(commit) else {
                    throw ClusterError.invalidConfiguration("synchronous_commit is \(commit) for the log's sessions")
                }
            }
            existing = seq
        }
        return existing
    }

    static let standby = "this PostgreSQL is a standby"
    static let lapsed = "has lapsed"
    static let fenced = "this PostgreSQL is read-only (fenced)"

    /// The sequence an append with `key` got, if one committed (perhaps on the primary alone).
    public func sequence(of key: UUID) async throws -> Int64? {
        try await onPrimary { connection in try await self.sequence(of: key, on: connection) }
    }

    private func sequence(of key: UUID, on connection: PostgresConnection) async throws -> Int64? {
        let rows = try await connection.query("SELECT seq FROM cs_log WHERE key = \(key)", logger: logger)
        var seq: Int64?
        for try await (found) in rows.decode(Int64.self) { seq = found }
        return seq
    }

    /// At most `limit` entries of `range` after `seq`, in order, each durable: a primary shows
    /// a commit to other sessions while it still waits for its standby when that wait was cut
    /// short (a killed backend, a cancel), so after reading, a commit of its own waits for the
    /// standby past everything read. An entry that a failover could still lose is never handed
    /// out to be applied.
    /// - Parameter durable: A sequence known to be durable (an append that returned it): the
    ///   entries up to it need no barrier, since each committed before it in the WAL, which a
    ///   standby confirms in order. The page then ends there.
    /// - Throws: `ClusterError.corruptLog` for an entry that does not decode;
    ///   `ClusterError.unavailable` when the primary cannot vouch for them now;
    ///   `ClusterError.truncated` when entries after `seq` were deleted (start from the snapshot).
    public func entries(
        range: Int, after seq: Int64, limit: Int = CommandLog.maximumPage, durable: Int64? = nil
    ) async throws -> [Entry] {
        let bounded = min(max(limit, 1), Self.maximumPage)
        let limit = durable.map { Int(min(Int64(bounded), max(1, $0 - seq))) } ?? bounded
        let known = durable.map { seq + Int64(limit) <= $0 } ?? false
        return try await onPrimary { connection in
            if known {
                return try await self.page(range: range, after: seq, limit: limit, on: connection)
            }
            return try await self.inDurableTransaction(connection) { _ in
                let entries = try await self.page(range: range, after: seq, limit: limit, on: connection)
                if !entries.isEmpty { try await self.barrier(connection) }
                return entries
            }
        }
    }

    /// The durable entries after `applied[range]` of each range it names, at most `limit` of
    /// each, read in one transaction behind one barrier (a follower's round: one commit that
    /// waits for the standby, not one per range).
    /// - Returns: The entries by range, and the ranges whose entries after `applied` were
    ///   deleted (their hosts start again from the snapshot).
    public func entries(after applied: [Int: Int64], limit: Int = 1_000) async throws -> (
        entries: [Int: [Entry]], truncated: Set<Int>
    ) {
        let limit = min(max(limit, 1), Self.maximumPage)
        let order = applied.keys.sorted()
        let ranges = order.map { Int32($0) }
        let sequences = order.map { applied[$0]! }
        guard !order.isEmpty else { return ([:], []) }
        return try await onPrimary { connection in
            try await self.inDurableTransaction(connection) { _ in
                var found: [Int: [Entry]] = [:]
                var truncated: Set<Int> = []
                let rows = try await connection.query(
                    """
                    SELECT a.range, r.truncated, l.seq, l.key, l.command
                    FROM unnest(\(ranges)::integer[], \(sequences)::bigint[]) AS a(range, applied)
                    JOIN cs_ranges r ON r.range = a.range
                    LEFT JOIN LATERAL (
                        SELECT seq, key, command FROM cs_log WHERE range = a.range AND seq > a.applied
                        ORDER BY seq LIMIT \(limit)) AS l ON true
                    ORDER BY a.range, l.seq
                    """,
                    logger: self.logger)
                for try await (range, through, seq, key, bytes) in rows.decode(
                    (Int, Int64, Int64?, UUID?, ByteBuffer?).self)
                {
                    if through > applied[range] ?? 0 {
                        truncated.insert(range)
                    } else if let seq, let key, let bytes {
                        found[range, default: []].append(try Self.entry(range: range, seq: seq, key: key, bytes))
                    }
                }
                if !found.isEmpty { try await self.barrier(connection) }
                return (found, truncated)
            }
        }
    }

    private static func entry(range: Int, seq: Int64, key: UUID, _ bytes: ByteBuffer) throws -> Entry {
        do {
            return Entry(seq: seq, command: try WriteCommand(decoding: Array(buffer: bytes)), key: key)
        } catch {
            throw ClusterError.corruptLog("range \(range) entry \(seq) does not decode: \(error)")
        }
    }

    private func page(range: Int, after seq: Int64, limit: Int, on connection: PostgresConnection) async throws
        -> [Entry]
    {
        let rows = try await connection.query(
            """
            SELECT r.truncated, l.seq, l.key, l.command FROM cs_ranges r
            LEFT JOIN LATERAL (
                SELECT seq, key, command FROM cs_log WHERE range = r.range AND seq > \(seq)
                ORDER BY seq LIMIT \(limit)) AS l ON true
            WHERE r.range = \(range) ORDER BY l.seq
            """,
            logger: logger)
        var entries: [Entry] = []
        var truncated: Int64 = 0
        for try await (through, next, key, bytes) in rows.decode((Int64, Int64?, UUID?, ByteBuffer?).self) {
            truncated = through
            if let next, let key, let bytes { entries.append(try Self.entry(range: range, seq: next, key: key, bytes)) }
        }
        if truncated > seq { throw ClusterError.truncated(range: range, through: truncated) }
        return entries
    }

    /// The last sequence each range has given, by range (index 0 is range 0): possibly past
    /// what is durable yet; `entries` hands out only what is.
    public func lastSequences() async throws -> [Int64] {
        try await onPrimary { connection in
            let rows = try await connection.query(
                "SELECT range, next_seq - 1 FROM cs_ranges ORDER BY range", logger: self.logger)
            var last: [Int64] = []
            for try await (range, seq) in rows.decode((Int, Int64).self) where range == last.count {
                last.append(seq)
            }
            return last
        }
    }

    /// The last sequence `range` has given (0 for none).
    public func lastSequence(range: Int) async throws -> Int64 {
        let all = try await lastSequences()
        return all.indices.contains(range) ? all[range] : 0
    }

    /// Runs `body` on a connection to the writable primary, within the deadline (one for all
    /// the hosts it tries, not one each: a node cut off would otherwise wait through each in
    /// turn): the host that was primary last time first, then each other one. A host that is
    /// a standby or fenced is passed over; when none is the primary, or the deadline passes,
    /// the error is `unavailable`.
    func onPrimary<Result: Sendable>(
        deadline: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let first = primary.withLock { $0 }
        let end = ContinuousClock.now + (deadline ?? configuration.deadline)
        var reasons: [String] = []
        // Each host twice: a connection the pool hands out may have just been closed (by a
        // deadline, or by the server), which says nothing of the host.
        var step = 0
        while step < 2 * clients.count {
            let host = (first + step / 2) % clients.count
            step += 1
            let left = end - ContinuousClock.now
            guard left > .zero else { break }
            // Each host not tried yet gets a fair share of the time left to give a connection.
            let untried = clients.count - (step - 1) / 2
            do {
                let result = try await withDeadline(left, connectingWithin: left / untried, on: clients[host]) {
                    connection in
                    try await self.requirePrimary(connection)
                    return try await body(connection)
                }
                if host != first { primary.withLock { $0 = host } }
                return result
            } catch ClusterError.unavailable(let message)
                where message == Self.standby || message == Self.fenced || message.hasPrefix(Self.unreachable)
            {
                reasons.append(
                    clients.count == 1
                        ? message : "\(configuration.hosts[host].host):\(configuration.hosts[host].port): \(message)")
                step += step % 2  // not this host: on to the next
            } catch let error as PSQLError {
                if error.serverInfo?[.sqlState] == "23505" { throw ClusterError.unavailable(Self.duplicateKey) }
                guard error.serverInfo == nil, step % 2 == 1 else {
                    throw ClusterError.unavailable(Self.describe(error))
                }
                reasons.append(
                    "\(configuration.hosts[host].host):\(configuration.hosts[host].port): \(Self.describe(error))")
            }
        }
        // One host: why it refused, as it said it.
        if clients.count == 1, let reason = reasons.first { throw ClusterError.unavailable(reason) }
        if step < 2 * clients.count {
            reasons.append("\(Self.unreachable) within \(deadline ?? configuration.deadline)")
        }
        throw ClusterError.unavailable("no writable primary: \(reasons.joined(separator: "; "))")
    }

    private static let unreachable = "unreachable"

    /// Whether the connection's server is a writable primary (outside any transaction).
    private func requirePrimary(_ connection: PostgresConnection) async throws {
        guard clients.count > 1 else { return }  // one host: the append's own check says why
        let rows = try await connection.query(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')", logger: logger)
        for try await (recovering, readOnly) in rows.decode((Bool, String).self) {
            if recovering { throw ClusterError.unavailable(Self.standby) }
            if readOnly == "on" { throw ClusterError.unavailable(Self.fenced) }
        }
    }

    /// `body` on a connection of `client`, abandoned at the deadline: the connection is closed
    /// (which fails whatever it was waiting for) and the error is `unavailable`. The caller is
    /// answered at the deadline whatever the work does then: a request for a connection to a
    /// host that is down may not end when cancelled.
    private func withDeadline<Result: Sendable>(
        _ deadline: Duration, connectingWithin: Duration, on client: PostgresClient,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let call = DeadlineCall<Result>()
        return try await withCheckedThrowingContinuation { continuation in
            call.start(continuation)
            let work = Task {
                do {
                    let result = try await client.withConnection { connection in
                        call.connection.withLock { $0 = connection }
                        return try await body(connection)
                    }
                    call.finish(.success(result))
                } catch {
                    // No connection was had (refused, the pool's circuit breaker): the host's
                    // failure, not the work's.
                    let connected = call.connection.withLock { $0 != nil }
                    call.finish(
                        .failure(connected ? error : ClusterError.unavailable("\(Self.unreachable): \(error)")))
                }
            }
            let timer = Task {
                // A host that gives no connection soon is passed over; one that took the work
                // has the whole deadline.
                let first = min(connectingWithin, deadline)
                try? await Task.sleep(for: first)
                guard !Task.isCancelled else { return }
                if call.connection.withLock({ $0 != nil }) {
                    try? await Task.sleep(for: deadline - first)
                    guard !Task.isCancelled else { return }
                }
                let connection = call.connection.withLock { $0 }
                let message =
                    connection == nil
                    ? "\(Self.unreachable) within \(first)"
                    : "no answer from PostgreSQL within \(deadline); a write's outcome is unknown: retry with its key"
                // Closed before the caller hears of it, so that the pool never hands out the
                // connection while its server still works on the abandoned statement.
                guard let answer = call.claim() else { return }
                if let connection { try? await connection.close() }
                work.cancel()
                answer(.failure(ClusterError.unavailable(message)))
            }
            call.onFinish { timer.cancel() }
        }
    }

    private static func describe(_ error: PSQLError) -> String {
        if let message = error.serverInfo?[.message] { return message }
        return "\(error.code)"
    }
}

/// A call with a deadline: answered once, by the work or by the deadline, whichever comes
/// first; the connection it uses, for the deadline to close.
private final class DeadlineCall<Value: Sendable>: Sendable {
    let connection = Mutex<PostgresConnection?>(nil)
    private let state = Mutex<
        (continuation: CheckedContinuation<Value, any Error>?, finished: Bool, then: (@Sendable () -> Void)?)
    >(
        (nil, false, nil))

    func start(_ continuation: CheckedContinuation<Value, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Answers the caller, unless it was answered (or claimed) already.
    func finish(_ result: Result<Value, any Error>) {
        claim()?(result)
    }

    /// Takes the right to answer the caller: nil when it was taken already.
    func claim() -> (@Sendable (Result<Value, any Error>) -> Void)? {
        let (continuation, then) = state.withLock {
            state -> (CheckedContinuation<Value, any Error>?, (@Sendable () -> Void)?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            defer { state.continuation = nil }
            return (state.continuation, state.then)
        }
        guard let continuation else { return nil }
        return { result in
            continuation.resume(with: result)
            then?()
        }
    }

    /// Runs `action` once the caller is answered (now, if it was).
    func onFinish(_ action: @escaping @Sendable () -> Void) {
        let finished = state.withLock { state in
            if !state.finished { state.then = action }
            return state.finished
        }
        if finished { action() }
    }
}
