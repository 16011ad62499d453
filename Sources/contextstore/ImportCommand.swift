import ArgumentParser
import ContextClient
import ContextModel
import ContextProtocol
import ContextTools
import Embedder
import MemoryStore
import VectorIndex

extension ImportFormat: ExpressibleByArgument {}

/// `contextstore import`: loads memories from a file into a running server or a database file.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import memories from JSONL, CSV, .npy or .fvecs into a server or a database file.",
        discussion: """
            Rows without an id get '<file name>:<line>', and rows whose id is already stored are skipped, \
            so an interrupted import can simply be run again. Bad rows are reported on standard error \
            with their line number and the rest goes in (--strict stops at the first). Exits with \
            status 1 when any row failed.
            """
    )

    @Argument(help: "The file to import.") var path: String
    @Option(help: "Server address (over the protocol).") var host = "127.0.0.1"
    @Option(help: "Server port (over the protocol).") var port = 7420
    @Option(help: "Write straight into this database file instead (no server may hold it).") var db: String?
    @Option(help: "jsonl, csv, npy or fvecs (default: from the file's extension).") var format: ImportFormat?
    @Option(help: "For .npy/.fvecs: a JSONL file whose line i holds text (and id, user...) of row i.") var texts:
        String?
    @Option(help: "The user of rows that name none.") var user: String?
    @Option(help: "Memories per add_batch (one transaction each).") var batch = 1000
    @Option(help: "Batches in flight at once.") var inFlight = 4
    @Flag(help: "Stop at the first bad row.") var strict = false
    @Option(
        help:
            "With --db: embedding model folder for text-only rows, or 'none' (default: data/models/all-MiniLM-L6-v2 when present)."
    )
    var model: String?
    @Option(help: "With --db, for a new file: cosine, dot or l2.") var metric: Metric?
    @OptionGroup(title: "With --db, for a new file") var indexOptions: IndexOptions

    func validate() throws {
        try requireFlag("port", port, in: 1...65535)
        try requireFlag("batch", batch, in: 1...100_000)
        try requireFlag("in-flight", inFlight, in: 1...256)
    }

    func run() async throws {
        guard let format = format ?? ImportFormat(path: path) else {
            throw ValidationError("cannot tell the format of \(path); pass --format jsonl|csv|npy|fvecs")
        }
        let source = try ImportSource(path: path, format: format, texts: texts, defaultUser: user)
        let progress = ProgressReporter()
        let importer = Importer(batchSize: batch, inFlight: inFlight, strict: strict)
        let report: @Sendable (ImportFailure) -> Void = { failure in
            printError("line \(failure.line): \(failure.reason)")
        }
        let summary: ImportSummary
        if let db {
            let embedder = try ModelOption.load(model)
            let store: MemoryStore
            do {
                store = try MemoryStore(
                    path: db, dimension: embedder?.dimension, metric: metric, model: embedder?.modelID,
                    index: try indexOptions.spaceIndex())
            } catch let error as StoreError {
                throw ValidationError("cannot open \(db): \(error.message)")
            }
            defer { store.close() }
            summary = try await importer.run(
                source, into: DatabaseSink(store: store, embedder: embedder), onFailure: report,
                onProgress: progress.update)
        } else {
            let client = try await ContextStoreClient.connect(host: host, port: port)
            summary = try await importer.run(
                source, into: ServerSink(client: client), onFailure: report, onProgress: progress.update)
            await client.close()
        }
        progress.finish()
        let seconds = (summary.seconds * 100).rounded() / 100
        print(
            "imported \(summary.imported), skipped \(summary.skipped), conflicts \(summary.conflicts), "
                + "failed \(summary.failed), \(seconds) s, \(Int(summary.rate)) rows/s")
        // A row left out, for whatever reason, is never a success.
        if summary.failed > 0 || summary.conflicts > 0 { throw ExitCode(1) }
    }
}
