import Foundation
import Logging
import MemoryStore
import NIOCore
import PostgresNIO

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
public final class CommandLog: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        /// Refuse to commit unless `synchronous_standby_names` names a standby (the cluster's
        /// promise). Off only for a single PostgreSQL used in development: then an entry rests
        /// on one disk.
        public var requireSynchronousStandby: Bool

        public init(
            host: String, port: Int, username: String, password: String? = nil, database: String,
            requireSynchronousStandby: Bool = true
        ) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.requireSynchronousStandby = requireSynchronousStandby
        }
    }

    /// One entry of a range's log.
    public struct Entry: Sendable, Equatable {
        public var seq: Int64
        public var command: WriteCommand
    }

    /// Entries read at once by `entries(range:after:limit:)` at most.
    public static let maximumPage = 10_000

    public let configuration: Configuration
    private let client: PostgresClient
    private let running: Task<Void, Never>
    private let logger: Logger

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "contextstore.cluster.log")) {
        self.configuration = configuration
        self.logger = logger
        let client = PostgresClient(
            configuration: .init(
                host: configuration.host, port: configuration.port, username: configuration.username,
                password: configuration.password, database: configuration.database, tls: .disable))
        self.client = client
        running = Task { await client.run() }
    }

    /// Closes every connection; the log cannot be used after.
    public func shutdown() async {
        running.cancel()
        _ = await running.value
    }

    /// Creates the tables and `ranges` range rows when they are missing (idempotent), and
    /// returns the cluster's number of ranges, which is fixed by the first call.
    /// - Throws: `ClusterError.invalidConfiguration` when the log was made with another count.
    @discardableResult
    public func install(ranges: RangeMap) async throws -> RangeMap {
        try await client.withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                // One installer at a time (several nodes may start together).
                try await connection.query("SELECT pg_advisory_xact_lock(7420)", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS cs_ranges (
                        range integer PRIMARY KEY, next_seq bigint NOT NULL DEFAULT 1)
                    """, logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS cs_log (
                        range integer NOT NULL REFERENCES cs_ranges (range), seq bigint NOT NULL,
                        key uuid NOT NULL UNIQUE, command bytea NOT NULL, PRIMARY KEY (range, seq))
                    """, logger: logger)
                let existing = try await connection.query("SELECT count(*) FROM cs_ranges", logger: logger)
                var count = 0
                for try await (n) in existing.decode(Int.self) { count = n }
                if count == 0 {
                    try await connection.query(
                        "INSERT INTO cs_ranges (range) SELECT generate_series(0, \(ranges.count) - 1)",
                        logger: logger)
                    count = ranges.count
                }
                try await connection.query("COMMIT", logger: logger)
                return try RangeMap(count: count)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// Appends `command` to `range`'s log and returns its sequence, once PostgreSQL has
    /// committed it on the primary and a synchronous standby. Appending again with the same
    /// `key` returns the first append's sequence and adds nothing: retry with the same key after
    /// any failure.
    /// - Throws: `ClusterError.unavailable` when the server cannot take a durable write (a
    ///   standby, a fenced primary, no synchronous standby named, the connection lost; at COMMIT
    ///   the outcome is unknown, so retry with the key).
    public func append(_ command: WriteCommand, range: Int, key: UUID) async throws -> Int64 {
        let bytes = ByteBuffer(bytes: command.encoded())
        do {
            return try await client.withConnection { connection in
                try await self.append(bytes, range: range, key: key, on: connection)
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            // Another append of the same key committed between our lookup and our insert.
            guard let seq = try await sequence(of: key) else {
                throw ClusterError.unavailable(String(reflecting: error))
            }
            return seq
        } catch let error as PSQLError {
            throw ClusterError.unavailable(Self.describe(error))
        }
    }

    private func append(_ bytes: ByteBuffer, range: Int, key: UUID, on connection: PostgresConnection) async throws
        -> Int64
    {
        try await connection.query("BEGIN", logger: logger)
        let seq: Int64
        do {
            try await checkDurable(connection)
            if let existing = try await sequence(of: key, on: connection) {
                try await connection.query("ROLLBACK", logger: logger)
                return existing
            }
            let drawn = try await connection.query(
                "UPDATE cs_ranges SET next_seq = next_seq + 1 WHERE range = \(range) RETURNING next_seq - 1",
                logger: logger)
            var taken: Int64?
            for try await (next) in drawn.decode(Int64.self) { taken = next }
            guard let taken else { throw ClusterError.invalidConfiguration("no range \(range) in the log") }
            seq = taken
            try await connection.query(
                "INSERT INTO cs_log (range, seq, key, command) VALUES (\(range), \(seq), \(key), \(bytes))",
                logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
        do {
            try await connection.query("COMMIT", logger: logger)
        } catch let error as PSQLError {
            throw ClusterError.unavailable(
                "the append's outcome is unknown (\(Self.describe(error))); retry with its key")
        }
        return seq
    }

    /// Refuses (inside the append's transaction) unless this server is a writable primary whose
    /// commits wait for a synchronous standby. pg_auto_failover accepts writes for a few seconds
    /// after a promotion with `synchronous_standby_names` empty, and fences an old primary with
    /// `default_transaction_read_only`: both are refused here, before anything is written.
    private func checkDurable(_ connection: PostgresConnection) async throws {
        try await connection.query("SET LOCAL synchronous_commit = on", logger: logger)
        let rows = try await connection.query(
            """
            SELECT pg_is_in_recovery(), current_setting('transaction_read_only'),
                current_setting('synchronous_standby_names')
            """, logger: logger)
        for try await (recovering, readOnly, standbys) in rows.decode((Bool, String, String).self) {
            if recovering { throw ClusterError.unavailable("this PostgreSQL is a standby") }
            if readOnly == "on" { throw ClusterError.unavailable("this PostgreSQL is read-only (fenced)") }
            if configuration.requireSynchronousStandby && standbys.trimmingCharacters(in: .whitespaces).isEmpty {
                throw ClusterError.unavailable("no synchronous standby: a commit would rest on one disk")
            }
        }
    }

    /// The sequence an append with `key` got, if one committed.
    public func sequence(of key: UUID) async throws -> Int64? {
        try await client.withConnection { connection in try await self.sequence(of: key, on: connection) }
    }

    private func sequence(of key: UUID, on connection: PostgresConnection) async throws -> Int64? {
        let rows = try await connection.query("SELECT seq FROM cs_log WHERE key = \(key)", logger: logger)
        var seq: Int64?
        for try await (found) in rows.decode(Int64.self) { seq = found }
        return seq
    }

    /// At most `limit` entries of `range` after `seq`, in order.
    /// - Throws: `ClusterError.corruptLog` for an entry that does not decode.
    public func entries(range: Int, after seq: Int64, limit: Int = CommandLog.maximumPage) async throws -> [Entry] {
        let limit = min(max(limit, 1), Self.maximumPage)
        let rows = try await client.query(
            "SELECT seq, command FROM cs_log WHERE range = \(range) AND seq > \(seq) ORDER BY seq LIMIT \(limit)",
            logger: logger)
        var entries: [Entry] = []
        for try await (seq, bytes) in rows.decode((Int64, ByteBuffer).self) {
            do {
                entries.append(Entry(seq: seq, command: try WriteCommand(decoding: Array(buffer: bytes))))
            } catch {
                throw ClusterError.corruptLog("range \(range) entry \(seq) does not decode: \(error)")
            }
        }
        return entries
    }

    /// The last sequence `range` has given (0 for none).
    public func lastSequence(range: Int) async throws -> Int64 {
        let rows = try await client.query(
            "SELECT next_seq - 1 FROM cs_ranges WHERE range = \(range)", logger: logger)
        var last: Int64 = 0
        for try await (seq) in rows.decode(Int64.self) { last = seq }
        return last
    }

    private static func describe(_ error: PSQLError) -> String {
        if let message = error.serverInfo?[.message] { return message }
        return "\(error.code)"
    }
}
