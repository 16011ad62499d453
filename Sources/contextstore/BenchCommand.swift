import ArgumentParser
import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import ContextTools
import Embedder
import Foundation
import Logging
import MemoryStore
import VectorIndex

/// `contextstore bench`: recall, latency and throughput of a server on a dataset.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark recall, latency and throughput; compare runs.",
        subcommands: [BenchRunCommand.self, BenchCompareCommand.self],
        defaultSubcommand: BenchRunCommand.self
    )
}

struct BenchRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load a dataset into a server and measure it (the default of `bench`).",
        discussion: """
            Vector mode: --base and --queries (.npy or .fvecs), ground truth from --groundtruth (.npy int32 \
            or .ivecs, row numbers of the base) or computed exactly. Conversation mode: --conversations, a \
            LoCoMo-format folder (turns.jsonl, questions.jsonl); each conversation is one user and every \
            question is asked as text (the server must have a model). Without --port, an embedded server \
            on a temporary database is started and stopped. Writes DIR/NAME.json, and over every run in \
            DIR: report.md, recall_qps.svg (vector runs: recall against queries/s, a point per ef), \
            evidence_recall.svg (conversation runs: evidence recall by question category and mode) and \
            evidence_in_prompt.svg (conversation runs: the share of questions whose evidence turns are all \
            in a prompt of --prompt-budget tokens). Conversation runs also report recall_any@k and \
            recall_all@k (k = 5, 10, 20 and --k), nDCG@10, and each prompt's tokens and latency.
            """
    )

    @Option(help: "Base vectors (.npy/.fvecs).") var base: String?
    @Option(help: "Query vectors (.npy/.fvecs).") var queries: String?
    @Option(help: "Ground truth: base row numbers per query (.npy int32 or .ivecs).") var groundtruth: String?
    @Option(help: "A LoCoMo-format folder (conversation mode).") var conversations: String?
    @Option(help: "Hits per query; recall is measured at k.") var k = 10
    @Option(help: "Conversation mode: comma-separated search modes to measure (vector, keyword, hybrid).")
    var mode = "vector,keyword,hybrid"
    @Option(
        help:
            "Conversation mode: the budget of the prompt built for each question in each mode ('none': no prompts).")
    var promptBudget: NumberOrNone = .number(1000)
    @Option(help: "Concurrent connections.") var concurrency = 1
    @Option(help: "Vector mode, hnsw space: comma-separated ef values to sweep (one pass each).") var ef: String?
    @Option(help: "Results folder.") var out = "bench-results"
    @Option(help: "The run's name (default: mode and time).") var name: String?
    @Option(help: "A running server's address.") var host = "127.0.0.1"
    @OptionGroup var key: KeyOption
    @Option(help: "A running server's port (default: start an embedded server).") var port: Int?
    @Option(help: "Embedded server: metric of the space.") var metric: Metric = .cosine
    @Option(
        help: "Embedded server: model folder, or 'none' (default: data/models/all-MiniLM-L6-v2 in conversation mode).")
    var model: String?
    @OptionGroup(title: "Embedded server") var indexOptions: IndexOptions
    @Option(
        help: """
            Embedded server: how prompts count tokens, as `serve --tokenizer` (default: the cl100k_base \
            rank file when present, as `serve`).
            """)
    var tokenizer: String?

    func validate() throws {
        try requireFlag("port", port, in: 1...65535)
        try requireFlag("k", k, in: 1...1000)
        try requireFlag("concurrency", concurrency, in: 1...1024)
        try requireFlag("prompt-budget", promptBudget.number, in: 1...Operations.Prompt.Arguments.maximumBudget)
    }

    func run() async throws {
        let vectorMode = base != nil || queries != nil
        guard vectorMode != (conversations != nil), !vectorMode || (base != nil && queries != nil) else {
            throw ValidationError("give --base and --queries (vector mode) or --conversations (conversation mode)")
        }
        let runName = name ?? "\(vectorMode ? "vector" : "conversation")-\(Int(Date().timeIntervalSince1970))"
        let log: @Sendable (String) -> Void = { printError($0) }

        var embedded: (store: MemoryStore, server: ContextStoreServer, folder: String)?
        let serverPort: Int
        if let port {
            serverPort = port
        } else {
            let folder = NSTemporaryDirectory() + "contextstore-bench-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let embedder = try ModelOption.load(model ?? (vectorMode ? "none" : nil))
            let store = try MemoryStore(
                path: folder + "/bench.db", dimension: embedder?.dimension, metric: metric, model: embedder?.modelID,
                index: try indexOptions.spaceIndex(), flatStorage: indexOptions.flatStorage,
                embedTemplate: EmbedTemplate.serverDefault)
            var logger = Logger(label: "bench")
            logger.logLevel = .warning
            // Prompts as a default `serve` builds them.
            let (counter, note) = try PromptOptions.counter(tokenizer)
            if let note { log(note) }
            var configuration = ServerConfiguration(port: 0)
            configuration.prompts = PromptSettings(counter: counter)
            let server = try await ContextStoreServer(
                store: store, embedder: embedder, configuration: configuration, logger: logger)
            embedded = (store, server, folder)
            serverPort = server.port
            log("embedded server on 127.0.0.1:\(serverPort)")
        }
        let (host, secret) = (self.host, key.secret)
        let connect: @Sendable () async throws -> ContextStoreClient = {
            try await ContextStoreClient.connect(host: host, port: serverPort, secret: secret)
        }
        let result: BenchResult
        do {
            if let base, let queries {
                let efs = try (ef ?? "").split(separator: ",").map { value in
                    guard let width = Int(value), width > 0 else {
                        throw ValidationError("--ef takes positive integers")
                    }
                    return width
                }
                result = try await VectorBenchmark(
                    base: base, queries: queries, groundTruth: groundtruth, k: k, concurrency: concurrency, efs: efs
                ).run(name: runName, connect: connect, log: log)
            } else {
                result = try await ConversationBenchmark(
                    folder: conversations!, k: k, concurrency: concurrency, modes: try searchModes(),
                    promptBudget: promptBudget.number
                ).run(name: runName, connect: connect, log: log)
            }
        } catch {
            await stop(embedded)
            throw error
        }
        await stop(embedded)

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try result.json.write(toFile: out + "/" + runName + ".json", atomically: true, encoding: .utf8)
        let runs = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".json") }.sorted()
            .compactMap { try? BenchResult(json: String(contentsOfFile: out + "/" + $0, encoding: .utf8)) }
        var written = ["\(out)/\(runName).json", "\(out)/report.md"]
        try BenchResult.markdown(runs).write(toFile: out + "/report.md", atomically: true, encoding: .utf8)
        let plots = [
            ("recall_qps.svg", runs.filter { $0.mode == "vector" }, SVGPlot.recallAgainstQPS),
            ("evidence_recall.svg", runs.filter { $0.mode == "conversation" }, SVGPlot.evidenceRecallByCategory),
            (
                "evidence_in_prompt.svg",
                runs.filter { $0.mode == "conversation" && $0.setting("prompt budget") != "none" },
                SVGPlot.evidenceInPromptByCategory
            ),
        ]
        for (file, shown, plot) in plots where !shown.isEmpty {
            try plot(shown).write(toFile: out + "/" + file, atomically: true, encoding: .utf8)
            written.append("\(out)/\(file)")
        }
        print(result.table)
        print("wrote " + written.joined(separator: ", "))
    }

    private func searchModes() throws -> [SearchMode] {
        try mode.split(separator: ",").map { name in
            guard let mode = SearchMode(rawValue: String(name)) else {
                throw ValidationError("--mode: '\(name)' is not vector, keyword or hybrid")
            }
            return mode
        }
    }

    private func stop(_ embedded: (store: MemoryStore, server: ContextStoreServer, folder: String)?) async {
        guard let embedded else { return }
        await embedded.server.shutdown()
        embedded.store.close()
        try? FileManager.default.removeItem(atPath: embedded.folder)
    }
}

struct BenchCompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare", abstract: "Show each figure of two runs and the ratio B/A.")
    @Argument(help: "Run A (a result .json).") var a: String
    @Argument(help: "Run B (a result .json).") var b: String

    func run() throws {
        let first = try BenchResult(json: String(contentsOfFile: a, encoding: .utf8))
        let second = try BenchResult(json: String(contentsOfFile: b, encoding: .utf8))
        print(BenchResult.compare(first, second))
    }
}
