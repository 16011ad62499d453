import ArgumentParser
import ContextClient
import ContextModel
import ContextProtocol
import ContextTools
import Embedder
import MemoryStore
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

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
    @OptionGroup var key: KeyOption
    @Option(help: "Server port (over the protocol).") var port = 7420
    @Option(help: "Write straight into this database file instead (no server may hold it).") var db: String?
    @Option(help: "jsonl, csv, npy or fvecs (default: from the file's extension).") var format: ImportFormat?
    @Option(help: "For .npy/.fvecs: a JSONL file whose line i holds text (and id, user...) of row i.") var texts:
        String?
    @Option(help: "The user of rows that name none.") var user: String?
    @OptionGroup(title: "Field mapping, for files whose fields have other names") var fields: FieldOptions
    @Option(help: "Memories per batch, one transaction each (default: 1,000 over the protocol, 10,000 with --db).")
    var batch: Int?
    @Option(help: "Batches in flight at once.") var inFlight = 4
    @Option(help: "The server's --max-line-bytes: a batch whose line would be longer goes in parts.")
    var maxLineBytes = Limits.defaultMaximumLineBytes
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
        try requireFlag("batch", batch, in: 1...10_000)
        try requireFlag("max-line-bytes", maxLineBytes, in: 1024...(1 << 30))
        try requireFlag("in-flight", inFlight, in: 1...256)
    }

    func run() async throws {
        guard let format = format ?? ImportFormat(path: path) else {
            throw ValidationError("cannot tell the format of \(path); pass --format jsonl|csv|npy|fvecs")
        }
        let source: ImportSource
        do {
            source = try ImportSource(
                path: path, format: format, texts: texts, defaultUser: user, mapping: fields.mapping())
        } catch let error as ImportError {
            throw ValidationError(error.description)
        }
        let progress = ProgressReporter()
        // Straight into a file, a larger transaction costs nothing a server would feel, and each
        // commit flushes the keyword index (docs/BENCHMARKS.md: 10,000 rows a batch imported 100K
        // rows 9-24% faster than 1,000).
        let importer = Importer(batchSize: batch ?? (db == nil ? 1000 : 10_000), inFlight: inFlight, strict: strict)
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
                    index: try indexOptions.spaceIndex(), flatStorage: indexOptions.flatStorage,
                    embedTemplate: access(db, F_OK) == 0 ? nil : EmbedTemplate.serverDefault, log: { printError($0) })
            } catch let error as StoreError {
                throw fail("cannot open \(db): \(error.message)")
            }
            defer { store.close() }
            summary = try await importer.run(
                source, into: DatabaseSink(store: store, embedder: embedder), onFailure: report,
                onProgress: progress.update)
            // A file just filled is merged now, not by the first server to open it.
            do {
                try store.mergeKeywordSegmentsFully()
            } catch let error as StoreError {
                throw fail("merging the keyword index of \(db) failed: \(error.message)")
            }
        } else {
            let client: ContextStoreClient
            do {
                client = try await ContextStoreClient.connect(host: host, port: port, secret: key.secret)
            } catch let error as ClientError {
                throw fail("\(error)")
            }
            summary = try await importer.run(
                source, into: ServerSink(client: client, maximumLineBytes: maxLineBytes), onFailure: report,
                onProgress: progress.update)
            await client.close()
        }
        progress.finish()
        let seconds = (summary.seconds * 100).rounded() / 100
        print(
            "imported \(summary.imported), skipped \(summary.skipped), conflicts \(summary.conflicts), "
                + "failed \(summary.failed), \(seconds) s, \(Int(summary.rate)) rows/s")
        if !summary.unmapped.isEmpty {
            let listed = summary.unmapped.sorted { $0.key < $1.key }.map { "'\($0.key)' (\($0.value) rows)" }
            printError(
                "not imported: the fields \(listed.joined(separator: ", ")); map them with --id-field, --user-field, "
                    + "--session-field, --role-field, --speaker-field, --text-field, --time-field, or keep them with --metadata-fields"
            )
        }
        // A row left out, for whatever reason, is never a success.
        if summary.failed > 0 || summary.conflicts > 0 { throw ExitCode(1) }
    }
}

/// `import`'s field mapping flags.
struct FieldOptions: ParsableArguments {
    @Option(help: "The field holding the id.") var idField = "id"
    @Option(help: "The field holding the user, e.g. a conversation id.") var userField = "user"
    @Option(help: "The field holding the session.") var sessionField = "session"
    @Option(help: "The field holding the role (user, assistant, system, tool).") var roleField = "role"
    @Option(help: "The field holding who said it (a name).") var speakerField = "speaker"
    @Option(help: "The field holding the text.") var textField = "text"
    @Option(help: "The field holding the time.") var timeField = "created_at"
    @Option(
        help: """
            How the time is written: 'auto' (unix ms or ISO 8601), 'unix-s', or a Unicode date pattern \
            read in English and UTC, e.g. "h:mm a 'on' d MMMM, yyyy" for '1:56 pm on 8 May, 2023'.
            """)
    var timeFormat = "auto"
    @Option(help: "The field holding a JSON object of metadata.") var metadataField = "metadata"
    @Option(help: "The field holding the vector.") var vectorField = "vector"
    @Option(help: "Fields to copy into each memory's metadata, comma-separated (e.g. speaker,date).")
    var metadataFields: String?

    func mapping() -> FieldMapping {
        var mapping = FieldMapping()
        mapping.id = idField
        mapping.user = userField
        mapping.session = sessionField
        mapping.role = roleField
        mapping.speaker = speakerField
        mapping.text = textField
        mapping.time = timeField
        mapping.metadata = metadataField
        mapping.vector = vectorField
        mapping.timeFormat =
            switch timeFormat {
            case "auto": .automatic
            case "unix-s": .unixSeconds
            default: .pattern(timeFormat)
            }
        mapping.metadataFields = metadataFields.map { $0.split(separator: ",").map(String.init) } ?? []
        return mapping
    }
}
