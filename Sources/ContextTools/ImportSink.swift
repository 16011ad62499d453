import ContextClient
import ContextModel
import ContextProtocol
import Embedder
import MemoryStore

/// Where imported memories go: a running server, or a database file directly.
public protocol ImportSink: Sendable {
    /// The space's vector dimension, when it is known.
    func dimension() async throws -> Int?
    /// Stores a batch (all or nothing), skipping memories that are already there as they are.
    /// - Returns: How many were stored, how many skipped, and the items (by index) whose id the
    ///   user has with other content (not stored).
    func store(_ batch: [NewMemory]) async throws -> ImportSinkOutcome
}

public struct ImportSinkOutcome: Sendable, Equatable {
    public var stored: Int
    public var skipped: Int
    public var conflicts: [Int]
}

/// Imports over the protocol with `add_batch` (`if_absent`, base64 vectors). A batch whose
/// request line would pass the server's line limit (or its items limit) goes as two halves,
/// and so on: the server would close the connection on a line too long.
public struct ServerSink: ImportSink {
    let client: ContextStoreClient
    /// The server's `--max-line-bytes`.
    let maximumLineBytes: Int

    public init(client: ContextStoreClient, maximumLineBytes: Int = Limits.defaultMaximumLineBytes) {
        self.client = client
        self.maximumLineBytes = maximumLineBytes
    }

    public func dimension() async throws -> Int? {
        try await client.hello().dimension
    }

    public func store(_ batch: [NewMemory]) async throws -> ImportSinkOutcome {
        let arguments = Operations.AddBatch.Arguments(batch, ifAbsent: true)
        if batch.count > 1, batch.count > Limits.maximumBatchItems || Self.lineBytes(arguments) > maximumLineBytes {
            let half = batch.count / 2
            let first = try await store(Array(batch[..<half]))
            let second = try await store(Array(batch[half...]))
            return ImportSinkOutcome(
                stored: first.stored + second.stored, skipped: first.skipped + second.skipped,
                conflicts: first.conflicts + second.conflicts.map { $0 + half })
        }
        let result = try await client.call(Operations.AddBatch.self, arguments)
        return ImportSinkOutcome(stored: result.ids.count, skipped: result.skipped, conflicts: result.conflicts)
    }

    /// The bytes of the request line `arguments` make (with room for the envelope).
    static func lineBytes(_ arguments: Operations.AddBatch.Arguments) -> Int {
        var writer = JSONWriter()
        Operations.AddBatch.encode(arguments, to: &writer)
        return writer.bytes.count + 64
    }
}

/// Imports straight into a database file that no server holds; embeds text-only rows with the
/// model when one is given.
public struct DatabaseSink: ImportSink {
    let store: MemoryStore
    let embedder: SentenceEmbedder?

    public init(store: MemoryStore, embedder: SentenceEmbedder?) {
        self.store = store
        self.embedder = embedder
    }

    public func dimension() async throws -> Int? { store.dimension ?? embedder?.dimension }

    public func store(_ batch: [NewMemory]) async throws -> ImportSinkOutcome {
        var batch = batch
        let missing = batch.indices.filter { batch[$0].vector == nil }
        if !missing.isEmpty {
            guard let embedder else {
                throw StoreError.invalidValue("a row has no vector and no model was given (--model)")
            }
            let texts = missing.map { store.embedTemplate.render(batch[$0]) }
            for (index, document) in zip(
                missing, embedder.embedDocuments(texts, scopes: missing.map { batch[$0].user }))
            {
                batch[index].vector = document.vector
                batch[index].windows = document.windows
            }
        }
        let outcome = try store.addIfAbsent(batch)
        return ImportSinkOutcome(
            stored: outcome.ids.count, skipped: outcome.skipped.count, conflicts: outcome.conflicts)
    }
}
