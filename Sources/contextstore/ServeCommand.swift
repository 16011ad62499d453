import ArgumentParser
import ContextCluster
import ContextModel
import ContextProtocol
import ContextServer
import Dispatch
import Embedder
import Foundation
import Logging
import MemoryStore
import NIOSSL
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

extension Metric: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `contextstore serve`: opens a memory space and serves it over TCP until SIGINT or SIGTERM.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a memory space over TCP (line-delimited JSON).",
        discussion: """
            Prints 'listening on HOST:PORT' on standard output once ready. SIGINT or SIGTERM stops \
            accepting connections, answers every request already received, and closes the database.
            """
    )

    @Option(
        name: .customLong("db"),
        help: """
            The SQLite database file; created, with its folder, when missing. With --cluster, the \
            node's folder (a file per range; default data/cluster-node).
            """)
    var dbPath: String?

    @Option(
        help: """
            Serve as a node of a cluster whose log is in PostgreSQL: \
            postgres://USER[:PASSWORD]@HOST:PORT[,HOST:PORT...]/DATABASE (every host of the \
            formation; ?sync=off for one PostgreSQL without a standby, in development). Needs \
            --dim or a model. See "When one machine is not enough" in the README.
            """)
    var cluster: String?

    @Option(help: "With --cluster: the number of ranges of users, fixed by the first node that creates the log.")
    var ranges: Int = RangeMap.defaultCount

    @Option(
        help: """
            With --cluster: this node's name, the same at every restart (it keeps its ranges); \
            default: the name of its --db folder.
            """)
    var nodeName: String?

    @Option(
        help: """
            With --cluster: the HOST:PORT other nodes forward requests to; default: --host and \
            the port listened on.
            """)
    var clusterAddress: String?

    @Option(help: "With --cluster: how many nodes host each range (1...16).")
    var copies: Int = 2

    @Option(
        help: """
            With --cluster: a range's first host stores a new snapshot of it once the last one \
            lags by this many log entries; the log keeps entries only until every host has them \
            and a snapshot holds them (1...100000000).
            """)
    var snapshotEvery: Int64 = 10_000

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on; 0 lets the system pick one.")
    var port: Int = 7420

    @Option(
        help: """
            Port of the HTTP/JSON API, /metrics, /health and the dashboard, on --host; 0 lets the \
            system pick one; 'none' serves no HTTP. Prints 'http listening on HOST:PORT' once ready.
            """)
    var httpPort: NumberOrNone = .number(7421)

    @Option(help: "Let browser pages from this one origin (e.g. https://app.example.com) call the HTTP API (CORS).")
    var httpCors: String?

    @Option(help: "Vector dimension of a new space (default: taken from the first vector).")
    var dim: Int?

    @Option(help: "Metric of a new space: cosine, dot or l2 (default: cosine).")
    var metric: Metric?

    @Option(
        help: """
            Embedding model folder (model.safetensors, vocab.txt, config.json), or 'none'. Default: \
            data/models/all-MiniLM-L6-v2 when present (scripts/fetch-model fills it).
            """)
    var model: String?

    @Option(
        help: """
            What the model embeds for a memory in a new space, e.g. "[{speaker}: ]{text}" ({text}, \
            {speaker}, {session}, {role}, {date}; a [part] is left out when a field in it is empty). \
            Default: \(EmbedTemplate.serverDefault). An existing space keeps its own.
            """)
    var embedTemplate: String?

    @Option(help: "Longest request line in bytes; longer lines get line_too_long and the connection is closed.")
    var maxLineBytes: Int = Limits.defaultMaximumLineBytes

    @Option(help: "Event loop threads (default: one per core).")
    var threads: Int?

    @Option(help: "Open connections at most; one more is answered 'overloaded' and closed.")
    var maxConnections = 1024

    @Option(
        help: """
            Milliseconds one SQL statement of a request may run (a heavy metadata filter, say) before it \
            is stopped and answered too_large; reads run on several connections, so it holds one of them.
            """)
    var statementTimeLimitMs = 5000

    @Option(help: "The longest answer one request may have; a longer one is answered too_large.")
    var maxAnswerBytes = 32 * 1024 * 1024

    @Option(
        help: """
            Bytes of long answers (64 KiB or more) all connections together may have unsent; past it, \
            a long answer is 'busy' instead, and a connection that leaves one unsent for 30 s is closed.
            """)
    var maxUnsentBytes = 256 * 1024 * 1024

    @Option(help: "TLS on every listener: the certificate chain (PEM); with --tls-key.")
    var tlsCert: String?

    @Option(help: "TLS: the certificate's private key (PEM).")
    var tlsKey: String?

    @Option(help: "The folder `backup` requests write into (each a new file there); without it, they are refused.")
    var backupDir: String?

    @Option(help: "Open connections one peer address may hold (default: a quarter of --max-connections).")
    var maxConnectionsPerAddress: Int?

    @Option(help: "MCP sessions open at once on the HTTP port's /mcp (an idle one closes after 10 minutes).")
    var maxMcpSessions = 256

    @Option(
        help: """
            With --keys: seconds a connection may take to authenticate before it is closed; at most half of \
            --max-connections may be waiting to.
            """)
    var authTimeout = 60

    @Option(help: "Seconds a connection with nothing in flight may send nothing before it is closed; 0: never.")
    var idleTimeout = 300

    @Option(
        help: """
            Bytes of request input all connections together may hold (unfinished and waiting lines); a \
            connection whose unfinished line would pass it is answered 'overloaded' and closed.
            """)
    var maxBufferedBytes = 256 * 1024 * 1024

    func validate() throws {
        try requireFlag("port", port, in: 0...65535)
        try requireFlag("dim", dim, in: 1...Metric.maximumDimension)
        try requireFlag("ranges", ranges, in: 1...RangeMap.maximumCount)
        try requireFlag("max-line-bytes", maxLineBytes, in: 1024...(1 << 30))
        try requireFlag("threads", threads, in: 1...1024)
        try requireFlag("max-connections", maxConnections, in: 1...1_000_000)
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        if let backupDir {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: backupDir, isDirectory: &isFolder), isFolder.boolValue else {
                throw ValidationError("--backup-dir: \(backupDir) is not a folder")
            }
        }
        try requireFlag("max-connections-per-address", maxConnectionsPerAddress, in: 1...1_000_000)
        try requireFlag("auth-timeout", authTimeout, in: 1...86_400)
        try requireFlag("max-answer-bytes", maxAnswerBytes, in: 4096...(1 << 34))
        try requireFlag("max-unsent-bytes", maxUnsentBytes, in: 65536...(1 << 40))
        try requireFlag("statement-time-limit-ms", statementTimeLimitMs, in: 1...3_600_000)
        try requireFlag("idle-timeout", idleTimeout, in: 0...86_400 * 30)
        try requireFlag("result-cache-bytes", resultCacheBytes, in: 0...(1 << 40))
        try requireFlag("slow-ms", slowMs, in: 0...86_400_000)
        try requireFlag("max-mcp-sessions", maxMcpSessions, in: 1...100_000)
        try requireFlag("metrics-port", metricsPort, in: 0...65535)
        try requireFlag("http-port", httpPort.number, in: 0...65535)
        if let httpCors {
            let parts = httpCors.split(separator: "://", maxSplits: 1)
            guard parts.count == 2, ["http", "https"].contains(parts[0]), !parts[1].isEmpty,
                !parts[1].contains(where: { $0 == "/" || $0.isWhitespace || $0.isNewline })
            else {
                throw ValidationError(
                    "--http-cors: an origin is scheme://host[:port] (http or https), not '\(httpCors)'")
            }
        }
        try requireFlag("quality-sample", qualitySample, in: 0...1_000_000)
        try requireFlag("max-buffered-bytes", maxBufferedBytes, in: maxLineBytes...(1 << 40))
        if let embedTemplate {
            do {
                _ = try EmbedTemplate(embedTemplate)
            } catch {
                throw ValidationError("--embed-template: \(error)")
            }
        }
    }

    @OptionGroup var indexOptions: IndexOptions
    @OptionGroup var promptOptions: PromptOptions

    @Option(
        help: """
            A keys file: {"keys":[{"name":..,"secret":..,"role":"admin|app|read","users":[..]}]}; every \
            connection must then authenticate first. Read again on SIGHUP.
            """)
    var keys: String?

    @Flag(
        help: """
            Listen on a non-loopback address without --keys (anyone who reaches it may do anything), or \
            with keys but without TLS (secrets cross the network in the clear).
            """)
    var insecure = false

    @Option(help: "Bytes of search and prompt answers kept for repeated requests; 0 keeps none.")
    var resultCacheBytes = 64 * 1024 * 1024

    @Option(
        help:
            "Log each request that takes this many milliseconds or longer (op, rid, key, time) and keep the latest for `slow_requests`."
    )
    var slowMs = 250

    @Option(help: "trace, debug (a line per request: op, rid, key, time, outcome), info, notice, warning, error.")
    var logLevel: Logger.Level = .info

    @Option(
        help: """
            Deprecated (kept for one release): /metrics and /health are on --http-port. Serves them \
            on this port too, without a key (0: any free one).
            """)
    var metricsPort: Int?

    @Option(help: "The address of --metrics-port, which needs no key.")
    var metricsHost = "127.0.0.1"

    @Option(help: "Re-run one search in this many exactly, in the background, for the sampled recall gauge; 0: none.")
    var qualitySample = 100

    func run() async throws {
        let signals = TerminationSignals()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "contextstore")
        logger.logLevel = logLevel

        let embedder = try ModelOption.load(model)
        let (prompts, promptNote) = try promptOptions.settings()
        if let promptNote { logger.warning("\(promptNote)") }
        if embedder == nil, model == nil {
            logger.warning(
                "no embedding model at \(ModelOption.defaultFolder) (scripts/fetch-model fetches it; CONTEXTSTORE_HOME names the folder that holds data/): text is searched by its words alone"
            )
        }
        var ring: KeyRing?
        if let keys {
            do {
                ring = KeyRing(try KeyRing.load(path: keys))
            } catch {
                throw fail("--keys: \(error)")
            }
        } else if !Self.isLoopback(host) {
            guard insecure else {
                throw fail(
                    "refusing to listen on \(host) without --keys: anyone who reaches it could read, change and delete every user's memories (--insecure to do it anyway)"
                )
            }
            logger.warning(
                "listening on \(host) with no keys: anyone who reaches this port can read, change and delete every user's memories"
            )
        }
        if keys != nil, tlsCert == nil, !Self.isLoopback(host) {
            // A secret sent in the clear on a network is a secret given away.
            guard insecure else {
                throw fail(
                    "refusing to listen on \(host) with keys but without TLS: secrets and memories would cross the network in the clear (--tls-cert and --tls-key, or --insecure to do it anyway)"
                )
            }
            logger.warning(
                "listening on \(host) without TLS: secrets and memories cross the network in the clear"
            )
        }
        if let cluster {
            guard tlsCert == nil else {
                throw fail("--cluster does not speak TLS between nodes yet: run a cluster's nodes on a private network")
            }
            try await serveNode(
                cluster: cluster, embedder: embedder, configuration: try configuration(prompts: prompts, keys: ring),
                signals: signals, logger: logger)
            return
        }
        let db = dbPath ?? "data/contextstore.db"
        try createParentDirectory(of: db)
        // A server that fails to start leaves no new file behind.
        let existed = access(db, F_OK) == 0
        let store: MemoryStore
        do {
            // With a model, a new space takes the model's dimension (and cosine, the default).
            store = try MemoryStore(
                path: db, dimension: dim ?? embedder?.dimension, metric: metric, model: embedder?.modelID,
                index: try indexOptions.spaceIndex(), flatStorage: indexOptions.flatStorage,
                embedTemplate: embedTemplate ?? (existed ? nil : EmbedTemplate.serverDefault),
                statementTimeLimit: statementTimeLimitMs,
                log: { [logger] in logger.info("\($0)") })
        } catch let error as StoreError {
            if !existed { Self.remove(db) }
            throw fail("cannot open \(db): \(error.message)\(openHint(error, embedder: embedder))")
        }
        // A space filled by a model is not served without it, unless asked: its text searches
        // would quietly become keyword searches.
        if let recorded = store.model, embedder == nil, model != "none" {
            store.close()
            throw fail(
                "\(db) was filled by the model \(recorded), which is not at \(ModelOption.defaultFolder): pass --model PATH (or --model none to serve it without a model, text searched by its words alone)"
            )
        }
        let configuration = try configuration(prompts: prompts, keys: ring)
        let server: ContextStoreServer
        do {
            server = try await ContextStoreServer(
                store: store, embedder: embedder, configuration: configuration, logger: logger)
        } catch {
            store.close()
            if !existed { Self.remove(db) }
            throw fail("\(error)")
        }
        logger.info(
            "space opened",
            metadata: [
                "memories": "\(store.count)", "dimension": "\(store.dimension.map(String.init) ?? "unset")",
                "metric": "\(store.metric.rawValue)", "index": "\(store.index)",
                "flat_storage": "\(store.flatStorage.rawValue)", "blas": "\(BLAS.loadedLibrary)",
                "kernels": "\(Processor.kernels)", "cpu": "\(Processor.model)",
                "embedder": "\(embedder?.modelID ?? "none: text requests get no_embedder")",
                "tokens": "\(prompts.counter.name)", "templates": "\(prompts.templates.keys.sorted())",
                "keys": "\(ring.map { $0.names.joined(separator: ",") } ?? "none: every client may do everything")",
            ])
        await serveUntilSignalled(server, signals: signals, keys: ring, logger: logger)
        store.close()
    }

    /// Waits for SIGINT or SIGTERM (reading the keys again at each SIGHUP), then stops the
    /// server gracefully.
    func serveUntilSignalled(
        _ server: ContextStoreServer, signals: TerminationSignals, keys ring: KeyRing?, logger: Logger
    ) async {
        if let port = server.metricsPort { logger.info("metrics on http://\(metricsHost):\(port)/metrics") }
        print("listening on \(host):\(server.port)")
        if let port = server.httpPort { print("http listening on \(host):\(port)") }
        fflush(nil)  // stdout is block-buffered when piped; whoever waits for this line must see it
        var signal = await signals.next()
        while signal == SIGHUP {
            reloadKeys(into: ring, logger: logger)
            signal = await signals.next()
        }
        logger.info("shutting down", metadata: ["signal": "\(signal)"])
        await server.shutdown()
    }

    /// The server's settings from the flags.
    private func configuration(prompts: PromptSettings, keys ring: KeyRing?) throws -> ServerConfiguration {
        var configuration = ServerConfiguration(
            host: host, port: port, maximumLineBytes: maxLineBytes, maximumConnections: maxConnections,
            maximumBufferedBytes: maxBufferedBytes)
        if let threads { configuration.threads = threads }
        configuration.maximumConnectionsPerAddress = maxConnectionsPerAddress
        configuration.maximumMCPSessions = maxMcpSessions
        configuration.backupDirectory = backupDir
        if let tlsCert, let tlsKey {
            do {
                configuration.tls = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(tlsCert).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: tlsKey, format: .pem)))
            } catch {
                throw fail("cannot load --tls-cert \(tlsCert) and --tls-key \(tlsKey): \(error)")
            }
        }
        configuration.maximumAnswerBytes = maxAnswerBytes
        configuration.maximumUnsentBytesTotal = maxUnsentBytes
        configuration.authenticationTimeout = .seconds(Int64(authTimeout))
        configuration.idleTimeout = idleTimeout == 0 ? nil : .seconds(Int64(idleTimeout))
        configuration.prompts = prompts
        configuration.keys = ring
        configuration.resultCacheBytes = resultCacheBytes
        configuration.slowRequest = .milliseconds(Int64(slowMs))
        configuration.metricsAddress = metricsPort.map { (metricsHost, $0) }
        if let number = httpPort.number { configuration.httpAddress = (host, number) }
        configuration.httpCORSOrigin = httpCors
        configuration.qualitySampleEvery = qualitySample
        return configuration
    }

    /// Reads the keys file again (SIGHUP); a file that does not load leaves the keys as they were.
    private func reloadKeys(into ring: KeyRing?, logger: Logger) {
        guard let ring, let keys else { return logger.info("SIGHUP: no --keys to read again") }
        do {
            ring.replace(try KeyRing.load(path: keys))
            logger.info("keys read again", metadata: ["keys": "\(ring.names.joined(separator: ","))"])
        } catch {
            logger.error("keys not read again, the old ones stay: \(error)")
        }
    }

    /// What to do about an open error, where the model is its cause.
    private func openHint(_ error: StoreError, embedder: SentenceEmbedder?) -> String {
        guard let embedder, case .spaceMismatch(let setting, _) = error else { return "" }
        switch setting {
        case .model:
            return " (start with --model none to serve it without a model)"
        case .dimension where dim == nil:
            return
                " (the model \(embedder.modelID) makes vectors of \(embedder.dimension); start with --model none to serve this space without it)"
        default:
            return ""
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Removes a database file this run created, with its WAL files.
    private static func remove(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    }

    private func createParentDirectory(of path: String) throws {
        guard let slash = path.lastIndex(of: "/") else { return }
        let directory = String(path[..<slash])
        guard !directory.isEmpty else { return }
        var current = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw ValidationError("cannot create folder \(current)")
            }
        }
    }

}

/// The pipe the signal handler writes a terminating signal's number to: writing to a pipe is
/// one of the few things a handler may do.
private let signalPipe: (read: Int32, write: Int32) = {
    var ends: [Int32] = [-1, -1]
    precondition(pipe(&ends) == 0, "cannot create the signal pipe")
    return (ends[0], ends[1])
}()

/// SIGINT and SIGTERM, caught from the moment this is made: a signal that arrives while the
/// server starts is kept in the pipe, not lost, and `next` returns it once the server is up.
/// (A handler, not a dispatch signal source: those rely on the signal being blocked in every
/// thread, and a SIGTERM sent right after start-up was sometimes dropped.)
final class TerminationSignals {
    init() {
        _ = signalPipe
        for number in [SIGINT, SIGTERM, SIGHUP] {
            _ = Glibc.signal(number) { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = Glibc.write(signalPipe.write, &byte, 1)
            }
        }
    }

    /// Suspends until a signal has arrived; returns its number.
    func next() async -> Int32 {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var byte: UInt8 = 0
                while Glibc.read(signalPipe.read, &byte, 1) != 1 {}
                continuation.resume(returning: Int32(byte))
            }
        }
    }
}
