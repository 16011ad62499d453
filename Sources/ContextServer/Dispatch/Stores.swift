import ContextCluster
import ContextModel
import ContextProtocol
import Foundation
import MemoryStore

/// Where a server's memories are: one space (one SQLite file), or a cluster node's ranges (a
/// file per range of users, applied from the log in PostgreSQL). Every request about a user
/// goes to `of(user)`; writes go through `write`, the one place a front door changes them.
enum Stores: Sendable {
    case single(MemoryStore)
    case cluster(ClusterNode)

    /// The space that holds `user`'s memories.
    func of(_ user: String) -> MemoryStore {
        switch self {
        case .single(let store): store
        case .cluster(let node): node.replica(of: user).store
        }
    }

    /// Every space, in range order.
    var all: [MemoryStore] {
        switch self {
        case .single(let store): [store]
        case .cluster(let node): node.replicas.map(\.store)
        }
    }

    /// A space whose settings (dimension, metric, model, embedding template) are every
    /// space's: a node opens every range with the same ones.
    var any: MemoryStore { all[0] }

    var node: ClusterNode? {
        if case .cluster(let node) = self { return node }
        return nil
    }

    /// Applies a resolved write: to the space, or through the cluster's log (answered once it
    /// is durable on two machines and applied here). Blocks its thread (a writer's) meanwhile.
    func write(_ command: WriteCommand) throws -> WriteOutcome {
        switch self {
        case .single(let store):
            return try store.apply(command)
        case .cluster(let node):
            return try Self.waitFor { try await node.write(command).outcome }
        }
    }

    /// Applies a command the server issues for one space (a range's purge).
    func write(_ command: WriteCommand, only store: MemoryStore) throws -> WriteOutcome {
        switch self {
        case .single(let store): return try store.apply(command)
        case .cluster(let node):
            guard let range = node.replicas.firstIndex(where: { $0.store === store }) else {
                throw ProtocolError(.storageError, "no range of this node is at \(store.path)")
            }
            return try Self.waitFor { try await node.write(command, range: range).outcome }
        }
    }

    /// Runs `body` as a task and blocks this thread (a writer's, never an event loop) until it
    /// ends; the cluster's errors become the client's.
    private static func waitFor(_ body: @escaping @Sendable () async throws -> WriteOutcome) throws -> WriteOutcome {
        let result = Waiting<WriteOutcome>()
        Task { result.finish(await Result { try await body() }) }
        do {
            return try result.wait()
        } catch let error as ClusterError {
            throw ProtocolError(cluster: error)
        }
    }

    /// Each space's figures, added up (users are partitioned, so their counts add).
    func stats() -> StoreStats {
        let each = all.map { $0.stats() }
        var total = each[0]
        for stats in each.dropFirst() {
            total.memories += stats.memories
            total.users += stats.users
            total.dimension = total.dimension ?? stats.dimension
            total.bytesOnDisk += stats.bytesOnDisk
            total.bytesInMemory += stats.bytesInMemory
            total.expired += stats.expired
            total.purged += stats.purged
        }
        return total
    }

    /// The figures of the users `included` takes, added up over the spaces.
    func stats(ofUsers included: @escaping (String) -> Bool) -> StoreStats {
        let each = all.map { $0.stats(ofUsers: included) }
        var total = each[0]
        for stats in each.dropFirst() {
            total.memories += stats.memories
            total.users += stats.users
            total.dimension = total.dimension ?? stats.dimension
        }
        return total
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
    /// The error a client hears for the cluster's.
    init(cluster error: ClusterError) {
        switch error {
        case .unavailable(let message): self.init(.unavailable, "the write was not acknowledged: \(message)")
        case .invalidConfiguration(let message), .corruptLog(let message):
            self.init(.storageError, "the cluster failed: \(message)")
        }
    }
}
