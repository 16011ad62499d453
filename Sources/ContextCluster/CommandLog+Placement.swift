import Foundation
import PostgresNIO

/// Membership and placement, kept in PostgreSQL next to the log (tables made by `install`):
/// - `cs_nodes(name, address, epoch, lease_until)`: each node renews its lease row every second;
///   `epoch` grows each time the node (re)joins, so an append of an earlier life is fenced.
/// - `cs_placement(range, hosts, joining, version)`: which nodes serve each range, and which
///   are catching up to serve it; changed only by compare-and-set on `version`.
extension CommandLog {
    /// A node as the membership table has it.
    public struct Member: Sendable, Equatable {
        public var name: String
        /// Where other nodes forward requests to it (`host:port` of its line protocol).
        public var address: String
        public var epoch: Int64
        /// Its lease has not lapsed (by PostgreSQL's clock).
        public var live: Bool
    }

    /// A range's hosts.
    public struct Placement: Sendable, Equatable {
        public var range: Int
        /// The nodes that serve it (they hold it applied from the log).
        public var hosts: [String]
        /// The nodes that are catching up to serve it; each moves itself to `hosts` when done.
        public var joining: [String]
        /// Grows with each change (compare-and-set).
        public var version: Int64
    }

    /// What a node's appends prove: it is `node` in its life `epoch`, and its lease holds.
    public struct Fence: Sendable, Equatable {
        public var node: String
        public var epoch: Int64

        public init(node: String, epoch: Int64) {
            self.node = node
            self.epoch = epoch
        }
    }

    /// The statements `install` runs after the log's tables.
    static let placementTables = [
        """
        CREATE TABLE IF NOT EXISTS cs_nodes (
            name text PRIMARY KEY, address text NOT NULL, epoch bigint NOT NULL,
            lease_until timestamptz NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS cs_placement (
            range integer PRIMARY KEY REFERENCES cs_ranges (range), hosts text[] NOT NULL DEFAULT '{}',
            joining text[] NOT NULL DEFAULT '{}', version bigint NOT NULL DEFAULT 0)
        """,
        "INSERT INTO cs_placement (range) SELECT range FROM cs_ranges ON CONFLICT DO NOTHING",
    ]

    /// Starts a new life of node `name` reachable at `address`, with a lease of `lease`.
    /// - Returns: Its epoch (1 the first time, one more at each join).
    public func join(node name: String, address: String, lease: Duration) async throws -> Int64 {
        let seconds = Self.seconds(lease)
        return try await onPrimary(deadline: Self.renewal(lease, within: configuration.deadline)) { connection in
            try await self.inDurableTransaction(connection) { _ in
                let rows = try await connection.query(
                    """
                    INSERT INTO cs_nodes (name, address, epoch, lease_until)
                    VALUES (\(name), \(address), 1, now() + make_interval(secs => \(seconds)))
                    ON CONFLICT (name) DO UPDATE SET epoch = cs_nodes.epoch + 1, address = EXCLUDED.address,
                        lease_until = EXCLUDED.lease_until
                    RETURNING epoch
                    """, logger: self.logger)
                for try await (epoch) in rows.decode(Int64.self) { return epoch }
                throw ClusterError.invalidConfiguration("joining returned no epoch")
            }
        }
    }

    /// Extends the lease of `fence`'s node by `lease` from now.
    /// - Returns: false when that life is over (the node joined again since).
    public func renew(_ fence: Fence, lease: Duration) async throws -> Bool {
        let seconds = Self.seconds(lease)
        return try await onPrimary(deadline: Self.renewal(lease, within: configuration.deadline)) { connection in
            try await self.inDurableTransaction(connection) { _ in
                let rows = try await connection.query(
                    """
                    UPDATE cs_nodes SET lease_until = now() + make_interval(secs => \(seconds))
                    WHERE name = \(fence.node) AND epoch = \(fence.epoch) RETURNING 1
                    """, logger: self.logger)
                for try await _ in rows.decode(Int.self) { return true }
                return false
            }
        }
    }

    /// Every node and every range's placement, read together.
    public func view() async throws -> (members: [Member], placement: [Placement]) {
        try await onPrimary { connection in
            var members: [Member] = []
            let nodes = try await connection.query(
                "SELECT name, address, epoch, lease_until > now() FROM cs_nodes ORDER BY name", logger: self.logger)
            for try await (name, address, epoch, live) in nodes.decode((String, String, Int64, Bool).self) {
                members.append(Member(name: name, address: address, epoch: epoch, live: live))
            }
            var placement: [Placement] = []
            let ranges = try await connection.query(
                "SELECT range, hosts, joining, version FROM cs_placement ORDER BY range", logger: self.logger)
            for try await (range, hosts, joining, version) in ranges.decode((Int, [String], [String], Int64).self) {
                placement.append(Placement(range: range, hosts: hosts, joining: joining, version: version))
            }
            return (members, placement)
        }
    }

    /// Sets a range's hosts and joining nodes if its version is still `placement.version`.
    /// - Returns: Whether it changed (false: someone changed it first; read it again).
    public func place(_ placement: Placement) async throws -> Bool {
        try await onPrimary { connection in
            try await self.inDurableTransaction(connection) { _ in
                let rows = try await connection.query(
                    """
                    UPDATE cs_placement SET hosts = \(placement.hosts), joining = \(placement.joining),
                        version = version + 1
                    WHERE range = \(placement.range) AND version = \(placement.version) RETURNING 1
                    """, logger: self.logger)
                for try await _ in rows.decode(Int.self) { return true }
                return false
            }
        }
    }

    /// How long a join or a renewal may take: half the lease (a node that cannot reach
    /// PostgreSQL tries again soon, rather than wait through the whole deadline while its
    /// lease lapses and a new primary may be up already).
    static func renewal(_ lease: Duration, within deadline: Duration) -> Duration {
        min(deadline, lease / 2)
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension CommandLog.Placement {
    /// Where this range should go with `live` nodes and `copies` hosts per range: the first
    /// `copies` nodes by rendezvous hashing (each node's score for the range, highest first;
    /// a node that joins or leaves moves only the ranges it wins or held). A live host stays
    /// until every chosen node serves; a chosen node that does not serve yet is joining.
    public func planned(live: [String], copies: Int) -> CommandLog.Placement {
        let chosen = live.sorted { Self.score($0, range) > Self.score($1, range) }.prefix(max(1, copies))
        var next = self
        next.hosts = hosts.filter(live.contains)
        next.joining = chosen.filter { !next.hosts.contains($0) }
        if next.joining.isEmpty { next.hosts = next.hosts.filter(chosen.contains) }
        return next
    }

    /// A node's rendezvous score for a range: FNV-1a of its name's bytes, a zero byte and the
    /// range number, mixed (stable on every machine, like `RangeMap`).
    static func score(_ node: String, _ range: Int) -> UInt64 {
        var hash = RangeMap.hash(Array(node.utf8) + [0] + Array(String(range).utf8))
        // FNV's low bits mix poorly for short inputs: a final avalanche (splitmix64's).
        hash ^= hash >> 30
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash = hash &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }
}
