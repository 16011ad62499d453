import ContextClient
import ContextModel
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

/// Imports over the protocol with `add_batch` (`if_absent`, base64 vectors).
public struct ServerSink: ImportSink {
    let client: ContextStoreClient

    public init(client: ContextStoreClient) {
        self.client = client
    }

    public func dimension() async throws -> Int? {
        try await client.hello().dimension
    }

    public func store(_ batch: [NewMemory]) async throws -> ImportSinkOutcome {
        let result = try await client.addBatch(batch, ifAbsent: true)
        return ImportSinkOutcome(stored: result.ids.count, skipped: result.skipped, conflicts: result.conflicts)
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
