import Foundation
import NIOCore
import PostgresNIO

#if canImport(Glibc)
    import Glibc
#endif

/// Snapshots of ranges and the truncation of the log, kept in PostgreSQL next to it (tables
/// made by `install`):
/// - `cs_snapshots(range, seq, bytes, parts, taken)` and `cs_snapshot_parts(range, part,
///   bytes)`: the last snapshot of each range, an online backup of a host's SQLite file that
///   has applied the range through `seq`, cut into parts of 1 MiB (a bytea is read whole).
/// - `cs_applied(node, range, seq)`: how far each node has applied each range it holds, as it
///   last reported.
/// - `cs_ranges.truncated`: the range's entries through it are deleted; a host behind it
///   starts again from the snapshot.
extension CommandLog {
    /// A range's stored snapshot.
    public struct Snapshot: Sendable, Equatable {
        public var range: Int
        /// The last entry the snapshot holds.
        public var seq: Int64
        /// Its size in bytes.
        public var bytes: Int64
    }

    /// What the log keeps of a range: its snapshot's sequence (0 when it has none) and the last
    /// sequence deleted from its entries.
    public struct Retention: Sendable, Equatable {
        public var snapshot: Int64
        public var truncated: Int64
    }

    /// The size of a snapshot's parts.
    static let snapshotPart = 1 << 20

    static let snapshotTables = [
        "ALTER TABLE cs_ranges ADD COLUMN IF NOT EXISTS truncated bigint NOT NULL DEFAULT 0",
        """
        CREATE TABLE IF NOT EXISTS cs_applied (
            node text NOT NULL, range integer NOT NULL REFERENCES cs_ranges (range), seq bigint NOT NULL,
            PRIMARY KEY (node, range))
        """,
        """
        CREATE TABLE IF NOT EXISTS cs_snapshots (
            range integer PRIMARY KEY REFERENCES cs_ranges (range), seq bigint NOT NULL, bytes bigint NOT NULL,
            parts integer NOT NULL, taken timestamptz NOT NULL DEFAULT now())
        """,
        """
        CREATE TABLE IF NOT EXISTS cs_snapshot_parts (
            range integer NOT NULL REFERENCES cs_ranges (range), part integer NOT NULL, bytes bytea NOT NULL,
            PRIMARY KEY (range, part))
        """,
    ]

    /// Each range's snapshot and truncation, by range.
    public func retention() async throws -> [Int: Retention] {
        try await onPrimary { connection in
            let rows = try await connection.query(
                """
                SELECT r.range, coalesce(s.seq, 0), r.truncated FROM cs_ranges r
                LEFT JOIN cs_snapshots s ON s.range = r.range ORDER BY r.range
                """, logger: self.logger)
            var found: [Int: Retention] = [:]
            for try await (range, snapshot, truncated) in rows.decode((Int, Int64, Int64).self) {
                found[range] = Retention(snapshot: snapshot, truncated: truncated)
            }
            return found
        }
    }

    /// Records how far `node` has applied each range of `applied` (what truncation waits for).
    public func report(node: String, applied: [Int: Int64]) async throws {
        guard !applied.isEmpty else { return }
        let order = applied.keys.sorted()
        let ranges = order.map { Int32($0) }
        let sequences = order.map { applied[$0]! }
        try await onPrimary { connection in
            _ = try await connection.query(
                """
                INSERT INTO cs_applied (node, range, seq)
                SELECT \(node), range, seq FROM unnest(\(ranges)::integer[], \(sequences)::bigint[]) AS a(range, seq)
                ON CONFLICT (node, range) DO UPDATE SET seq = EXCLUDED.seq
                """, logger: self.logger)
        }
    }

    /// Stores the SQLite file at `path`, a copy of `range` applied through `seq`, as the range's
    /// snapshot, in one durable transaction, unless the stored one is as recent.
    /// - Returns: Whether it was stored.
    public func storeSnapshot(of range: Int, seq: Int64, from path: String) async throws -> Bool {
        try await onPrimary(deadline: configuration.transferDeadline) { connection in
            try await self.inDurableTransaction(connection) { _ in
                let current = try await connection.query(
                    "SELECT seq FROM cs_snapshots WHERE range = \(range) FOR UPDATE", logger: self.logger)
                for try await (stored) in current.decode(Int64.self) where stored >= seq { return false }
                try await connection.query("DELETE FROM cs_snapshot_parts WHERE range = \(range)", logger: self.logger)
                guard let file = FileHandle(forReadingAtPath: path) else {
                    throw ClusterError.invalidConfiguration("cannot read the snapshot \(path)")
                }
                defer { try? file.close() }
                var parts = 0
                var bytes: Int64 = 0
                while let data = try file.read(upToCount: Self.snapshotPart), !data.isEmpty {
                    let buffer = ByteBuffer(bytes: data)
                    try await connection.query(
                        "INSERT INTO cs_snapshot_parts (range, part, bytes) VALUES (\(range), \(parts), \(buffer))",
                        logger: self.logger)
                    parts += 1
                    bytes += Int64(data.count)
                }
                try await connection.query(
                    """
                    INSERT INTO cs_snapshots (range, seq, bytes, parts) VALUES (\(range), \(seq), \(bytes), \(parts))
                    ON CONFLICT (range) DO UPDATE SET seq = EXCLUDED.seq, bytes = EXCLUDED.bytes,
                        parts = EXCLUDED.parts, taken = now()
                    """, logger: self.logger)
                return true
            }
        }
    }

    /// Writes `range`'s snapshot into a new file at `path` (synced to disk), read in one
    /// transaction so that its parts are of one snapshot.
    /// - Returns: The snapshot written, or nil when the range has none (nothing is written).
    /// - Throws: `ClusterError.invalidConfiguration` when `path` exists or cannot be written;
    ///   `ClusterError.corruptLog` when the parts do not add up to the snapshot.
    public func loadSnapshot(of range: Int, into path: String) async throws -> Snapshot? {
        try await onPrimary(deadline: configuration.transferDeadline) { connection in
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: self.logger)
            do {
                let snapshot = try await self.copySnapshot(of: range, into: path, on: connection)
                try await connection.query("ROLLBACK", logger: self.logger)
                return snapshot
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: self.logger)
                throw error
            }
        }
    }

    private func copySnapshot(of range: Int, into path: String, on connection: PostgresConnection) async throws
        -> Snapshot?
    {
        var found: (seq: Int64, bytes: Int64, parts: Int)?
        let rows = try await connection.query(
            "SELECT seq, bytes, parts FROM cs_snapshots WHERE range = \(range)", logger: logger)
        for try await (seq, bytes, parts) in rows.decode((Int64, Int64, Int).self) { found = (seq, bytes, parts) }
        guard let found else { return nil }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ClusterError.invalidConfiguration("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        let file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        var written: Int64 = 0
        var next = 0
        do {
            let parts = try await connection.query(
                "SELECT part, bytes FROM cs_snapshot_parts WHERE range = \(range) ORDER BY part", logger: logger)
            for try await (part, bytes) in parts.decode((Int, ByteBuffer).self) {
                // A part out of order is not written (the count below then tells).
                guard part == next else { continue }
                try file.write(contentsOf: bytes.readableBytesView)
                written += Int64(bytes.readableBytes)
                next += 1
            }
            guard next == found.parts, written == found.bytes else {
                throw ClusterError.corruptLog(
                    "range \(range)'s snapshot at \(found.seq) has \(next) of \(found.parts) parts, "
                        + "\(written) of \(found.bytes) bytes")
            }
            try file.synchronize()
            try file.close()
        } catch {
            try? file.close()
            unlink(path)
            throw error
        }
        return Snapshot(range: range, seq: found.seq, bytes: found.bytes)
    }

    /// Deletes `range`'s entries that every host of the range has applied and its snapshot
    /// holds, in one durable transaction. A host that reported nothing for the range holds
    /// truncation back.
    /// - Returns: The range's truncation afterwards.
    @discardableResult
    public func truncate(range: Int) async throws -> Int64 {
        try await onPrimary { connection in
            try await self.inDurableTransaction(connection) { _ in
                let rows = try await connection.query(
                    """
                    WITH through AS (
                        SELECT least(s.seq, (
                            SELECT min(coalesce(a.seq, 0)) FROM unnest(p.hosts) AS h(node)
                            LEFT JOIN cs_applied a ON a.node = h.node AND a.range = p.range)) AS seq
                        FROM cs_placement p JOIN cs_snapshots s ON s.range = p.range
                        WHERE p.range = \(range) AND cardinality(p.hosts) > 0),
                    moved AS (
                        UPDATE cs_ranges r SET truncated = t.seq FROM through t
                        WHERE r.range = \(range) AND t.seq > r.truncated RETURNING r.truncated),
                    deleted AS (
                        DELETE FROM cs_log WHERE range = \(range) AND seq <= (SELECT truncated FROM moved)
                        RETURNING 1)
                    SELECT coalesce((SELECT truncated FROM moved), (SELECT truncated FROM cs_ranges WHERE range = \(range))),
                        (SELECT count(*) FROM deleted)
                    """, logger: self.logger)
                for try await (truncated, _) in rows.decode((Int64, Int64).self) { return truncated }
                throw ClusterError.invalidConfiguration("no range \(range) in the log")
            }
        }
    }
}
