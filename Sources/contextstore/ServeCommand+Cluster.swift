import ContextCluster
import ContextModel
import ContextServer
import Embedder
import Foundation
import Logging
import MemoryStore

extension ServeCommand {
    /// `serve --cluster URL`: opens the node's ranges in its folder, applies what the log holds
    /// that they lack, then serves.
    func serveNode(
        cluster: String, embedder: SentenceEmbedder?, configuration: ServerConfiguration,
        signals: TerminationSignals, logger: Logger
    ) async throws {
        let folder = dbPath ?? "data/cluster-node"
        // Every range must take the same vectors: a dimension each learned from its own first
        // memory could differ.
        guard let dimension = dim ?? embedder?.dimension else {
            throw fail("--cluster needs the space's dimension: --dim N, or a model")
        }
        let settings: CommandLog.Configuration
        do {
            settings = try CommandLog.Configuration(url: cluster)
        } catch {
            throw fail("--cluster: \(error)")
        }
        if !settings.requireSynchronousStandby {
            logger.warning("--cluster with sync=off: an acknowledged write may rest on one disk")
        }
        let log = CommandLog(settings, logger: logger)
        let node: ClusterNode
        do {
            let ranges = try await log.install(ranges: try RangeMap(count: ranges))
            let index = try indexOptions.spaceIndex()
            let name = nodeName ?? URL(fileURLWithPath: folder).standardizedFileURL.lastPathComponent
            node = try ClusterNode(
                name: name, folder: folder, log: log, ranges: ranges, copies: copies, snapshotEvery: snapshotEvery
            ) { path in
                try MemoryStore(
                    path: path, dimension: dimension, metric: metric, model: embedder?.modelID, index: index,
                    flatStorage: indexOptions.flatStorage,
                    embedTemplate: embedTemplate ?? (access(path, F_OK) == 0 ? nil : EmbedTemplate.serverDefault),
                    statementTimeLimit: statementTimeLimitMs)
            }
        } catch {
            await log.shutdown()
            throw fail("cannot start the cluster node: \(error)")
        }
        let server: ContextStoreServer
        do {
            let began = ContinuousClock.now
            var configuration = configuration
            configuration.clusterAddress = clusterAddress
            // Joins the cluster once listening: catches up the ranges it is chosen for first.
            server = try await ContextStoreServer(
                node: node, embedder: embedder, configuration: configuration, logger: logger)
            logger.info(
                "joined the cluster",
                metadata: [
                    "node": "\(node.name)", "ranges": "\(node.replicas.count) of \(node.ranges.count)",
                    "folder": "\(folder)", "memories": "\(node.replicas.reduce(0) { $0 + $1.store.count })",
                    "took": "\(ContinuousClock.now - began)",
                ])
        } catch {
            await node.close()
            await log.shutdown()
            throw fail("cannot start the cluster node: \(error)")
        }
        await serveUntilSignalled(server, signals: signals, keys: configuration.keys, logger: logger)
        await node.close()
        await log.shutdown()
    }
}
