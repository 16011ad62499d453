import ArgumentParser
import ContextProtocol
import ContextServer
import Dispatch
import Embedder
import Logging
import MemoryStore
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

extension Metric: ExpressibleByArgument {}

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

    @Option(help: "The SQLite database file; created, with its folder, when missing.")
    var db: String = "data/contextstore.db"

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on; 0 lets the system pick one.")
    var port: Int = 7420

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

    @Option(help: "Longest request line in bytes; longer lines get line_too_long and the connection is closed.")
    var maxLineBytes: Int = Limits.defaultMaximumLineBytes

    @Option(help: "Event loop threads (default: one per core).")
    var threads: Int?

    @OptionGroup var indexOptions: IndexOptions

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "contextstore")
        logger.logLevel = .info

        let embedder = try ModelOption.load(model)
        if embedder == nil, model == nil {
            logger.info("no embedding model at \(ModelOption.defaultFolder) (scripts/fetch-model fetches it)")
        }
        try createParentDirectory(of: db)
        let store: MemoryStore
        do {
            // With a model, a new space takes the model's dimension (and cosine, the default).
            store = try MemoryStore(
                path: db, dimension: dim ?? embedder?.dimension, metric: metric, model: embedder?.modelID,
                index: try indexOptions.spaceIndex())
        } catch let error as StoreError {
            let hint = embedder == nil ? "" : " (start with --model none to serve it without a model)"
            throw ValidationError("cannot open \(db): \(ProtocolError(error).message)\(hint)")
        }
        var configuration = ServerConfiguration(host: host, port: port, maximumLineBytes: maxLineBytes)
        if let threads { configuration.threads = threads }
        let server: ContextStoreServer
        do {
            server = try await ContextStoreServer(
                store: store, embedder: embedder, configuration: configuration, logger: logger)
        } catch {
            store.close()
            throw error
        }
        logger.info(
            "space opened",
            metadata: [
                "memories": "\(store.count)", "dimension": "\(store.dimension.map(String.init) ?? "unset")",
                "metric": "\(store.metric.rawValue)", "index": "\(store.index)", "blas": "\(BLAS.loadedLibrary)",
                "embedder": "\(embedder?.modelID ?? "none: text requests get no_embedder")",
            ])
        print("listening on \(host):\(server.port)")
        fflush(nil)  // stdout is block-buffered when piped; whoever waits for this line must see it

        let signal = await Self.waitForTerminationSignal()
        logger.info("shutting down", metadata: ["signal": "\(signal)"])
        await server.shutdown()
        store.close()
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

    /// Suspends until SIGINT or SIGTERM arrives; returns its number.
    private static func waitForTerminationSignal() async -> Int32 {
        let signals: [Int32] = [SIGINT, SIGTERM]
        for number in signals { _ = Glibc.signal(number, SIG_IGN) }
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        let sources = signals.map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
        defer { for source in sources { source.cancel() } }
        for await number in stream { return number }
        return SIGTERM
    }
}
