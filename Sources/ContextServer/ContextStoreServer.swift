import ContextCluster
import ContextProtocol
import Embedder
import Logging
import MemoryStore
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The version of this server, reported by `hello`.
public let serverVersion = "0.1.0"

/// Settings of a running server.
public struct ServerConfiguration: Sendable {
    public var host: String
    /// 0 lets the operating system pick a free port.
    public var port: Int
    /// Longest accepted request line, in bytes; a longer one gets `line_too_long` and the
    /// connection is closed.
    public var maximumLineBytes: Int
    /// Request lines one connection may have waiting before the server stops reading from it.
    public var maximumPendingPerConnection: Int
    /// Writes that may wait for the writer thread before new ones get `busy`.
    public var maximumQueuedWrites: Int
    /// Open connections; one more is answered `overloaded` and closed.
    public var maximumConnections: Int
    /// Bytes of request input all connections together may hold (unfinished lines and lines
    /// waiting their turn); a connection whose unfinished line would pass it gets `overloaded`
    /// and is closed.
    public var maximumBufferedBytes: Int
    /// Connections one peer address may hold open (default: a quarter of
    /// `maximumConnections`); one more is answered `overloaded` and closed.
    public var maximumConnectionsPerAddress: Int?
    /// On a server with keys: how long a connection may take to authenticate before it is
    /// answered `unauthorized` and closed. Connections waiting to authenticate are at most half
    /// of `maximumConnections` (a sixteenth from one address), so the rest stays for clients
    /// with a key.
    public var authenticationTimeout: TimeAmount = .seconds(60)
    /// A connection with nothing in flight that sends nothing for this long is closed; nil: never.
    public var idleTimeout: TimeAmount? = .seconds(300)
    /// The longest answer a request may have; a longer one is answered `too_large` instead.
    public var maximumAnswerBytes = 32 * 1024 * 1024
    /// Bytes of long answers (64 KiB or more) all connections together may have unsent; past it
    /// a long answer is `busy` instead, and a connection that leaves one unsent for 30 s is
    /// closed: clients that never read cannot make the server hold more than this plus a high
    /// water mark of short answers each.
    public var maximumUnsentBytesTotal = 256 * 1024 * 1024
    /// TLS for every listener (the protocol's and the metrics'): a certificate chain and its
    /// private key; nil: plain TCP.
    public var tls: TLSConfiguration?
    /// The folder `backup` writes into (`to` names a new file there); nil: the op is refused.
    public var backupDirectory: String?
    /// Bytes of answers one connection may have unsent before the server starts no more of its
    /// requests (the high water mark; it resumes below half of it).
    public var maximumUnsentBytes: Int
    /// How long a stopping server waits for a connection to take its last answers.
    public var shutdownGrace: TimeAmount
    /// Event loop threads; searches run on these.
    public var threads: Int
    /// How often expired memories are purged and the keyword index's segments merged a few
    /// steps (on the writer thread, between writes).
    public var purgeInterval: TimeAmount = .seconds(1)
    /// How `prompt` counts tokens, and the templates it may name.
    public var prompts = PromptSettings()
    /// The keys a connection must authenticate with; nil: none needed.
    public var keys: KeyRing?
    /// On a cluster node: the `host:port` other nodes forward requests to; nil: the host and
    /// port it listens on.
    public var clusterAddress: String?
    /// Bytes of `search` and `prompt` answers kept for repeated requests (keys and answers); 0
    /// keeps none.
    public var resultCacheBytes = 64 * 1024 * 1024
    /// Requests that take this long or longer (from their start to their answer) are logged,
    /// one warning each with the op, `rid`, key and milliseconds, and the latest are kept for
    /// the `slow_requests` op; nil: none.
    public var slowRequest: TimeAmount? = .milliseconds(250)
    /// One search in this many that was not exact is re-run exactly in the background, for the
    /// `contextstore_sampled_recall` gauge (`QualitySampler`); 0 re-runs none.
    public var qualitySampleEvery = 100
    /// Where `/metrics` and `/health` are served over HTTP (`MetricsHTTPHandler`); nil: nowhere.
    public var metricsAddress: (host: String, port: Int)?
    /// Where the HTTP/JSON API is served (`HTTPFrontDoor`); nil: nowhere.
    public var httpAddress: (host: String, port: Int)?
    /// The one origin browsers may call the HTTP API from (CORS); nil: none.
    public var httpCORSOrigin: String?
    /// MCP sessions open at once on the HTTP front door's `/mcp` (`MCPDoor`).
    public var maximumMCPSessions = 256

    public init(
        host: String = "127.0.0.1", port: Int = 7420, maximumLineBytes: Int = Limits.defaultMaximumLineBytes,
        maximumPendingPerConnection: Int = 256, maximumQueuedWrites: Int = 4096, maximumConnections: Int = 1024,
        maximumBufferedBytes: Int = 256 * 1024 * 1024, maximumUnsentBytes: Int = 1024 * 1024,
        shutdownGrace: TimeAmount = .seconds(10), threads: Int = System.coreCount
    ) {
        self.host = host
        self.port = port
        self.maximumLineBytes = maximumLineBytes
        self.maximumPendingPerConnection = maximumPendingPerConnection
        self.maximumQueuedWrites = maximumQueuedWrites
        self.maximumConnections = maximumConnections
        self.maximumBufferedBytes = maximumBufferedBytes
        self.maximumUnsentBytes = maximumUnsentBytes
        self.shutdownGrace = shutdownGrace
        self.threads = threads
    }
}

/// The TCP server of protocol v1: line-delimited JSON over one listening socket.
public final class ContextStoreServer: Sendable {
    /// The most steps of merging the keyword index (`MemoryStore.mergeKeywordSegments`, about
    /// 256 KB written each) a space takes per `purgeInterval`.
    static let keywordMergeSteps = 16

    /// Up to `steps` steps of merging `store`'s keyword index, one task on `pool` each, until
    /// a step finds nothing to merge.
    private static func mergeKeywordSegments(
        of store: MemoryStore, steps: Int, on pool: NIOThreadPool, _ loop: any EventLoop
    ) -> EventLoopFuture<Void> {
        pool.runIfActive(eventLoop: loop) { try store.mergeKeywordSegments() }.flatMap { merged in
            guard merged, steps > 1 else { return loop.makeSucceededVoidFuture() }
            return mergeKeywordSegments(of: store, steps: steps - 1, on: pool, loop)
        }
    }

    private let stores: Stores
    private let context: ServerContext
    private let configuration: ServerConfiguration
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let writerPool: NIOThreadPool
    private let computePool: NIOThreadPool
    // Released before the event loops stop: its deinit completes a promise on one of them.
    private let quiesce: NIOLockedValueBox<ServerQuiescingHelper?>
    private let channel: Channel
    private let metricsChannel: Channel?
    /// The HTTP/JSON API's server and port, when it is served.
    private let http: (port: Int, running: Task<Void, Never>)?
    /// Set when the server begins to stop: HTTP requests are then `shutting_down`.
    private let stopping = StopSignal()
    private let purge: RepeatedTask
    /// A cluster node's loop that applies what other nodes write (nil on one machine).
    private let following: Task<Void, Never>?
    private let forwarder: Forwarder?

    /// The address the server listens on (with the real port when 0 was asked for).
    public var localAddress: SocketAddress { channel.localAddress! }

    /// The port the server listens on.
    public var port: Int { channel.localAddress?.port ?? configuration.port }

    /// What the quality sampler has seen so far.
    var quality: QualitySampler.Figures { context.quality.current }

    /// The port of `/metrics` and `/health`, when they are served.
    public var metricsPort: Int? { metricsChannel?.localAddress?.port }

    /// The port of the HTTP/JSON API, when it is served.
    public var httpPort: Int? { http?.port }

    /// Binds the listening socket and starts serving `store`.
    /// - Parameter embedder: The model that embeds text; without one, text-only requests get
    ///   `no_embedder`.
    /// - Throws: when the address cannot be bound.
    public convenience init(
        store: MemoryStore, embedder: SentenceEmbedder? = nil, configuration: ServerConfiguration, logger: Logger
    ) async throws {
        try await self.init(stores: .single(store), embedder: embedder, configuration: configuration, logger: logger)
    }

    /// Binds the listening socket and starts serving a cluster node's ranges: writes go
    /// through the cluster's log, and the node follows the log for what other nodes write
    /// (`ClusterNode.follow`).
    public convenience init(
        node: ClusterNode, embedder: SentenceEmbedder? = nil, configuration: ServerConfiguration, logger: Logger,
        following: ClusterNode.Following = ClusterNode.Following()
    ) async throws {
        try await self.init(
            stores: .cluster(node), embedder: embedder, configuration: configuration, logger: logger,
            following: following)
    }

    private init(
        stores: Stores, embedder: SentenceEmbedder?, configuration: ServerConfiguration, logger: Logger,
        following settings: ClusterNode.Following = ClusterNode.Following()
    ) async throws {
        guard (0...65535).contains(configuration.port) else {
            throw ServerConfigurationError("port must be between 0 and 65535, not \(configuration.port)")
        }
        let tlsContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        let socket = try ListeningSocket.open(host: configuration.host, port: configuration.port)
        self.stores = stores
        self.configuration = configuration
        self.logger = logger
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
        // One writer thread: writes are serialized, and their fsyncs never stall an event loop.
        // A cluster node's writers wait for PostgreSQL's commits, many at once (the node
        // applies the entries on a thread of its own, one at a time).
        let writerPool = NIOThreadPool(numberOfThreads: stores.node == nil ? 1 : 64)
        writerPool.start()
        let computePool = NIOThreadPool(numberOfThreads: max(1, configuration.threads))
        computePool.start()
        let quiesce = ServerQuiescingHelper(group: group)
        let limits = ConnectionLimits(
            maximumConnections: configuration.maximumConnections,
            maximumBufferedBytes: configuration.maximumBufferedBytes,
            maximumPerAddress: configuration.maximumConnectionsPerAddress
                ?? max(1, configuration.maximumConnections / 4),
            maximumUnsentBytes: configuration.maximumUnsentBytesTotal)
        let slowRequests = SlowRequestLog(threshold: configuration.slowRequest)
        let serverContext = ServerContext(
            stores: stores, embedder: embedder, version: serverVersion, prompts: configuration.prompts,
            backupDirectory: configuration.backupDirectory,
            keys: configuration.keys,
            results: configuration.resultCacheBytes > 0
                ? ResultCache(capacityBytes: configuration.resultCacheBytes) : nil, limits: limits,
            quality: QualitySampler(every: configuration.qualitySampleEvery), slowRequests: slowRequests)
        self.context = serverContext
        let writeQueue = WriteQueue(limit: configuration.maximumQueuedWrites)
        let forwarder = stores.node.map {
            Forwarder(node: $0.name, maximumAnswerBytes: configuration.maximumAnswerBytes)
        }
        self.forwarder = forwarder
        let dispatcher = Dispatcher(
            writerPool: writerPool, computePool: computePool, writeQueue: writeQueue,
            authFailures: limits.authFailures,
            requestLog: RequestLog(slow: slowRequests, logger: logger),
            maximumAnswerBytes: configuration.maximumAnswerBytes, forwarder: forwarder)
        /// Undoes the start when a socket cannot be bound.
        func stopThreads() async {
            try? await writerPool.shutdownGracefully()
            try? await computePool.shutdownGracefully()
            try? await group.shutdownGracefully()
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of file descriptors, accept fails at once every time it is tried: wait
                    // before trying again instead of spinning.
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptBackoff(delay: .milliseconds(100), logger: logger))
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            // A client that shuts down its sending side still gets the answers to what it sent.
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .childChannelOption(
                ChannelOptions.writeBufferWaterMark,
                value: .init(low: configuration.maximumUnsentBytes / 2, high: configuration.maximumUnsentBytes)
            )
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let admission = Admission()
                    let handlers = channel.pipeline.syncOperations
                    try handlers.addHandler(
                        ConnectionGate(limits: limits, needsKey: configuration.keys != nil, admission: admission))
                    // After the gate: a refused connection costs no handshake.
                    if let tlsContext { try handlers.addHandler(NIOSSLServerHandler(context: tlsContext)) }
                    if let idle = configuration.idleTimeout {
                        try handlers.addHandler(IdleStateHandler(readTimeout: idle))
                    }
                    try handlers.addHandler(
                        ByteToMessageHandler(
                            RequestLineDecoder(limits: limits, maximumLineBytes: configuration.maximumLineBytes)))
                    try handlers.addHandler(
                        ConnectionHandler(
                            context: serverContext, dispatcher: dispatcher, limits: limits, admission: admission,
                            authenticationTimeout: configuration.authenticationTimeout,
                            maximumLineBytes: configuration.maximumLineBytes,
                            maximumPending: configuration.maximumPendingPerConnection,
                            shutdownGrace: configuration.shutdownGrace))
                }
            }
        do {
            self.channel = try await bootstrap.withBoundSocket(socket).get()
        } catch {
            await stopThreads()
            throw error
        }
        let httpServer: (port: Int, running: Task<Void, Never>)?
        if let (httpHost, httpPort) = configuration.httpAddress {
            let router = HTTPFrontDoor.router(
                HTTPFrontDoor.Serving(
                    context: serverContext, dispatcher: dispatcher, maximumBodyBytes: configuration.maximumLineBytes,
                    stopping: { [stopping] in stopping.isSet }, corsOrigin: configuration.httpCORSOrigin,
                    maximumMCPSessions: configuration.maximumMCPSessions))
            do {
                httpServer = try await HTTPFrontDoor.start(
                    router, host: httpHost, port: httpPort, maximumConnections: configuration.maximumConnections,
                    tls: configuration.tls, idleTimeout: configuration.authenticationTimeout, group: group,
                    logger: logger)
            } catch {
                try? await channel.close()
                await stopThreads()
                throw error
            }
        } else {
            httpServer = nil
        }
        http = httpServer
        if let (metricsHost, metricsPort) = configuration.metricsAddress {
            do {
                let metricsLimits = ConnectionLimits(
                    maximumConnections: MetricsHTTPHandler.maximumConnections, maximumBufferedBytes: 0)
                metricsChannel = try await ServerBootstrap(group: group)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let handlers = channel.pipeline.syncOperations
                            try handlers.addHandler(
                                ConnectionGate(limits: metricsLimits, needsKey: false, admission: Admission()))
                            if let tlsContext { try handlers.addHandler(NIOSSLServerHandler(context: tlsContext)) }
                            try handlers.addHandler(IdleStateHandler(allTimeout: MetricsHTTPHandler.idleTimeout))
                            try handlers.configureHTTPServerPipeline()
                            try handlers.addHandler(MetricsHTTPHandler(context: serverContext))
                        }
                    }
                    .bind(host: metricsHost, port: metricsPort).get()
            } catch {
                try? await channel.close()
                httpServer?.running.cancel()
                await httpServer?.running.value
                await stopThreads()
                throw ServerConfigurationError("cannot serve metrics on \(metricsHost):\(metricsPort): \(error)")
            }
        } else {
            metricsChannel = nil
        }
        self.group = group
        self.writerPool = writerPool
        self.computePool = computePool
        self.quiesce = NIOLockedValueBox(quiesce)
        let interval = configuration.purgeInterval
        self.purge = group.next().scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) {
            [stores, logger] task in
            let loop = group.next()
            return writerPool.runIfActive(eventLoop: loop) {
                // A command the server issues, with its own time as the purge's `as_of`, to each
                // space (range) that has memories past their time.
                for store in stores.all {
                    do {
                        if let purge = try store.purgeCommand() { _ = try stores.write(purge, only: store) }
                    } catch {
                        logger.error("purging expired memories failed", metadata: ["error": "\(error)"])
                    }
                }
            }.flatMap {
                // The keyword index's segments merged, a few bounded steps a tick, so that a
                // search looks its words up in few of them (see `MemoryStore.mergeKeywordSegments`).
                // Each step is a task of its own on the writer thread: a write that comes while
                // one runs waits for that step only, not for the tick's.
                stores.all.reduce(loop.makeSucceededVoidFuture()) { previous, store in
                    previous.flatMap {
                        Self.mergeKeywordSegments(of: store, steps: Self.keywordMergeSteps, on: writerPool, loop)
                            .flatMapErrorWithEventLoop { error, loop in
                                // A server stopping (its writer thread, or the space, closed) is no failure.
                                if !(error is NIOThreadPoolError.ThreadPoolInactive), error as? StoreError != .closed {
                                    logger.error("merging the keyword index failed", metadata: ["error": "\(error)"])
                                }
                                return loop.makeSucceededVoidFuture()
                            }
                    }
                }
            }
        }
        if let node = stores.node {
            do {
                try await node.join(
                    address: configuration.clusterAddress
                        ?? "\(configuration.host):\(channel.localAddress?.port ?? configuration.port)")
            } catch {
                try? await channel.close()
                try? await metricsChannel?.close()
                purge.cancel()
                await stopThreads()
                throw error
            }
            following = Task {
                await node.follow(settings) { error in
                    logger.warning("following the cluster's log failed; retrying", metadata: ["error": "\(error)"])
                }
            }
        } else {
            following = nil
        }
        logger.info(
            "serving", metadata: ["address": "\(channel.localAddress!)", "db": "\(stores.any.path)"])
    }

    /// Stops gracefully: no new connections, every request already received is answered, each
    /// connection closes once idle, then the writer finishes and the event loops stop. The store
    /// stays open; its owner closes it.
    public func shutdown() async {
        stopping.set()
        let promise = group.next().makePromise(of: Void.self)
        quiesce.withLockedValue { helper in
            helper?.initiateShutdown(promise: promise)
            helper = nil
        }
        try? await promise.futureResult.get()
        http?.running.cancel()
        await http?.running.value
        // With no connections open the helper reports done before the listening socket has
        // finished closing; the loops must outlive that close.
        try? await channel.closeFuture.get()
        try? await metricsChannel?.close()
        let purgeStopped = group.next().makePromise(of: Void.self)
        purge.cancel(promise: purgeStopped)
        try? await purgeStopped.futureResult.get()
        following?.cancel()
        await following?.value
        await forwarder?.close()
        try? await writerPool.shutdownGracefully()
        try? await computePool.shutdownGracefully()
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }
}

/// A `ServerConfiguration` that cannot be served.
public struct ServerConfigurationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
