import ContextCluster
import ContextModel
import ContextProtocol
import Foundation
import MemoryStore
import Synchronization

/// Where a server's memories are: one space (one SQLite file), or a cluster node's ranges (a
/// file per range of users, applied from the log in PostgreSQL). Every request about a user
/// goes to `of(user)`; writes go through `write`, the one place a front door changes them.
enum Stores: Sendable {
    case single(MemoryStore)
    case cluster(ClusterNode)

    /// The space that holds `user`'s memories.
    /// - Throws: `unavailable` on a node that does not serve the user's range (it moved since
    ///   the request was let through here).
    func of(_ user: String) throws(ProtocolError) -> MemoryStore {
        switch self {
        case .single(let store): return store
        case .cluster(let node):
            guard let replica = node.replica(of: user) else {
                throw ProtocolError(.unavailable, "node \(node.name) does not serve user '\(user)' now; retry")
            }
            return replica.store
        }
    }

    /// Every space this server serves, in range order.
    var all: [MemoryStore] {
        switch self {
        case .single(let store): [store]
        case .cluster(let node): node.replicas.filter { node.serves($0.range) }.map(\.store)
        }
    }

    /// A space whose settings (dimension, metric, model, embedding template) are every
    /// space's: a node opens every range with the same ones as its settings space.
    var any: MemoryStore {
        switch self {
        case .single(let store): store
        case .cluster(let node): node.settings
        }
    }

    var node: ClusterNode? {
        if case .cluster(let node) = self { return node }
        return nil
    }

    /// Applies a resolved write: to the space, or through the cluster's log (answered once it
    /// is durable on two machines and applied here). Blocks its thread (a writer's) meanwhile.
    /// - Returns: Its outcome, and on a cluster node the sequence it took for each user it names.
    func write(_ command: WriteCommand) throws -> (outcome: WriteOutcome, sequences: [String: Int64]) {
        switch self {
        case .single(let store):
            return (try store.apply(command), [:])
        case .cluster(let node):
            return try Self.waitFor { try await node.write(command) }
        }
    }

    /// Applies a command the server issues for one space (a range's purge).
    func write(_ command: WriteCommand, only store: MemoryStore) throws -> WriteOutcome {
        switch self {
        case .single(let store): return try store.apply(command)
        case .cluster(let node):
            guard let range = node.replicas.first(where: { $0.store === store })?.range else {
                throw ProtocolError(.unavailable, "no range of this node is at \(store.path) now")
            }
            return try Self.waitFor { try await node.write(command, range: range).outcome }
        }
    }

    /// Runs `body` as a task and blocks this thread (a writer's or the compute pool's, never an
    /// event loop) until it ends; the cluster's errors become the client's.
    static func waitFor<Value: Sendable>(_ body: @escaping @Sendable () async throws -> Value) throws -> Value {
        let result = Waiting<Value>()
        Task { result.finish(await Result { try await body() }) }
        do {
            return try result.wait()
        } catch let error as ClusterError {
            throw ProtocolError(cluster: error)
        }
    }

    /// Each space's figures, added up (users are partitioned, so their counts add).
    func stats() -> StoreStats {
        let each = (all.isEmpty ? [any] : all).map { $0.stats() }
        var total = each[0]
        for stats in each.dropFirst() {
            total.memories += stats.memories
            total.users += stats.users
            total.dimension = total.dimension ?? stats.dimension
            total.bytesOnDisk += stats.bytesOnDisk
            total.bytesInMemory += stats.bytesInMemory
            total.expired += stats.expired
            total.purged += stats.purged
            total.duplicates += stats.duplicates
        }
        return total
    }

    /// The figures of the users `included` takes, added up over the spaces.
    func stats(ofUsers included: @escaping (String) -> Bool) -> StoreStats {
        let each = (all.isEmpty ? [any] : all).map { $0.stats(ofUsers: included) }
        var total = each[0]
        for stats in each.dropFirst() {
            total.memories += stats.memories
            total.users += stats.users
            total.dimension = total.dimension ?? stats.dimension
        }
        return total
    }
}

/// The sequences a request's writes took in the cluster's log, by user: its answer's `seqs`.
final class WriteReceipt: Sendable {
    private let sequences = Mutex<[String: Int64]>([:])

    func record(_ new: [String: Int64]) {
        sequences.withLock { $0.merge(new) { max($0, $1) } }
    }

    /// The answer's field, after the op's own (nothing on one server, whose writes take none).
    func encode(to writer: inout JSONWriter) {
        let sequences = self.sequences.withLock { $0 }.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        guard !sequences.isEmpty else { return }
        writer.field("seqs")
        writer.raw("{")
        for (n, (user, seq)) in sequences.enumerated() {
            if n > 0 { writer.raw(",") }
            writer.key(user)
            writer.int(seq)
        }
        writer.raw("}")
    }
}

/// A result a thread waits for while a task computes it.
private final class Waiting<Value: Sendable>: Sendable {
    private let condition = NSCondition()
    nonisolated(unsafe) private var result: Result<Value, any Error>?

    func finish(_ result: Result<Value, any Error>) {
        condition.lock()
        self.result = result
        condition.signal()
        condition.unlock()
    }

    func wait() throws -> Value {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return try result!.get()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

extension ProtocolError {
    /// The error a client hears for the cluster's, when it wrote.
    init(cluster error: ClusterError) {
        switch error {
        case .unavailable(let message): self.init(.unavailable, "the write was not acknowledged: \(message)")
        case .truncated: self.init(.unavailable, "the write was not acknowledged: \(error)")
        case .invalidConfiguration(let message), .corruptLog(let message), .noSuchSequence(let message):
            self.init(.storageError, "the cluster failed: \(message)")
        }
    }

    /// The error a client hears for the cluster's, when its request had to see sequence
    /// `minSeq` of `user`'s range first.
    init(cluster error: ClusterError, reading minSeq: Int64, of user: String) {
        switch error {
        case .unavailable(let message):
            self.init(.unavailable, "this node cannot reach sequence \(minSeq) of user '\(user)': \(message)")
        case .noSuchSequence(let message):
            self.init(.invalidValue, "'min_seq' is past every write of user '\(user)': \(message)")
        default:
            self.init(cluster: error)
        }
    }
}
