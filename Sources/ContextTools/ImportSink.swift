import ContextClient
import ContextModel
import Embedder
import MemoryStore

/// Where imported memories go: a running server, or a database file directly.
public protocol ImportSink: Sendable {
    /// The space's vector dimension, when it is known.
    func dimension() async throws -> Int?
    /// Stores a batch (all or nothing), skipping memories whose id is already there.
    /// - Returns: How many were stored and how many skipped.
    func store(_ batch: [NewMemory]) async throws -> (stored: Int, skipped: Int)
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

    public func store(_ batch: [NewMemory]) async throws -> (stored: Int, skipped: Int) {
        let result = try await client.addBatch(batch, ifAbsent: true)
        return (result.ids.count, result.skipped)
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

    public func store(_ batch: [NewMemory]) async throws -> (stored: Int, skipped: Int) {
        var batch = batch
        let missing = batch.indices.filter { batch[$0].vector == nil }
        if !missing.isEmpty {
            guard let embedder else {
                throw StoreError.invalidValue("a row has no vector and no model was given (--model)")
            }
            for (index, vector) in zip(missing, embedder.embed(missing.map { batch[$0].text })) {
                batch[index].vector = vector
            }
        }
        let stored = try store.add(batch, skippingExisting: true).count
        return (stored, batch.count - stored)
    }
}
