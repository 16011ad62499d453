import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Embedder
import Foundation
import Logging
import MemoryStore
import Testing

/// The model `scripts/fetch-model` puts under data/ (the tests' working folder is the repository).
let modelFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("data/models/all-MiniLM-L6-v2").path

/// Loaded once for the suite: the model is 90 MB.
let sharedEmbedder: SentenceEmbedder? = try? SentenceEmbedder(folder: modelFolder)

/// A server with the real model, over a new space.
/// - Parameter own: A model of the server's own, for a test that counts its cache (the shared one
///   is used by other suites at the same time).
func textServer(
    _ folder: TemporaryFolder, embedTemplate: String? = nil, index: SpaceIndex? = nil, own: SentenceEmbedder? = nil
) async throws -> (MemoryStore, ContextStoreServer) {
    let embedder = try #require(own ?? sharedEmbedder, "run scripts/fetch-model to fetch the model")
    let store = try MemoryStore(
        path: folder.path + "/space.db", dimension: embedder.dimension, model: embedder.modelID, index: index,
        embedTemplate: embedTemplate)
    let server = try await ContextStoreServer(
        store: store, embedder: embedder, configuration: ServerConfiguration(port: 0, threads: 2),
        logger: Logger(label: "test"))
    return (store, server)
}

@Suite(.serialized) struct EmbeddingServerTests {
    /// The model reads the space's template over a memory's fields; the stored text is as given.
    @Test func theModelReadsTheTemplate() async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder, embedTemplate: "[{speaker}: ]{text}")
        let client = try await ContextStoreClient.connect(port: server.port)
        let embedder = try #require(sharedEmbedder)
        try await client.addBatch([
            NewMemory(id: "said", user: "u", speaker: "Caroline", text: "I went to the support group.", vector: nil),
            NewMemory(id: "plain", user: "u", text: "I went to the support group.", vector: nil),
        ])
        let said = try await client.get(user: "u", id: "said", withVector: true)
        #expect(said.text == "I went to the support group.")
        // As embedded, then normalized once more by the cosine space.
        func close(_ a: [Float], _ b: [Float]) -> Bool { zip(a, b).allSatisfy { abs($0 - $1) < 1e-6 } }
        #expect(close(said.vector, embedder.embed(["Caroline: I went to the support group."], scope: "")[0]))
        let plain = try await client.get(user: "u", id: "plain", withVector: true)
        #expect(close(plain.vector, embedder.embed(["I went to the support group."], scope: "")[0]))
        #expect(!close(said.vector, plain.vector))
        await client.close()
        await server.shutdown()
        store.close()
    }

    /// A text longer than the model reads is embedded in overlapping windows, so a question
    /// about its tail finds it; past the windows' reach, the answer says how much was covered.
    @Test func aLongTextIsFoundByItsTailAndWhatNoWindowReachesIsReported() async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder)
        let client = try await ContextStoreClient.connect(port: server.port)
        let embedder = try #require(sharedEmbedder)
        // 2,800 characters, a fact at the very end.
        let long =
            String(repeating: "We talked about the weather and the garden again today. ", count: 49)
            + "My sister lives in Lisbon."
        #expect(embedder.tokenize(long).count == 256)
        let total = try #require(embedder.tokensBeyondLimit(long))
        #expect(total > 256)
        #expect(embedder.tokensBeyondLimit("short") == nil)
        // Exactly at the limit: nothing beyond it.
        #expect(embedder.tokensBeyondLimit(String(repeating: "a ", count: 254)) == nil)
        #expect(embedder.tokensBeyondLimit(String(repeating: "a ", count: 255)) == 257)

        let added = try await client.call(
            Operations.Add.self, .init(NewMemory(id: "long", user: "u", text: long, vector: nil)))
        #expect(added == Operations.Add.Answer(id: "long"), "windows cover all of it")
        try await client.addBatch([
            NewMemory(id: "pizza", user: "u", text: "I love pizza with olives", vector: nil),
            NewMemory(id: "brother", user: "u", text: "My brother works in Berlin as an engineer", vector: nil),
            NewMemory(id: "garden", user: "u", text: "The garden needs watering twice a week", vector: nil),
        ])
        let question = "Which city does my sister live in?"
        let hits = try await client.search(SearchRequest(user: "u", text: question, mode: .vector, k: 4))
        #expect(hits.first?.memory.id == "long", "\(hits.map { ($0.memory.id, $0.score) })")
        // Its first window alone (all a search saw of it before windows) scores far lower.
        let query = embedder.embed([question], scope: "")[0]
        let firstWindow = embedder.embed([long], scope: "")[0]
        let alone = zip(query, firstWindow).reduce(Float(0)) { $0 + $1.0 * $1.1 }
        #expect(hits[0].score > alone + 0.2, "\(hits[0].score) against \(alone)")

        // Beyond the windows' reach: reported with the tokens covered.
        let huge = String(repeating: "Another sentence about the weather in the garden today. ", count: 400)
        let hugeTokens = try #require(embedder.tokensBeyondLimit(huge))
        let batch = try await client.call(
            Operations.AddBatch.self,
            .init([
                NewMemory(id: "a", user: "u", text: "short", vector: nil),
                NewMemory(id: "b", user: "u", text: huge, vector: [Float](repeating: 0.1, count: 384)),
                NewMemory(id: "c", user: "u", text: huge, vector: nil),
            ]))
        // Only what the server embedded: "b" came with its own vector.
        let covered = (SentenceEmbedder.maximumWindows - 1) * (254 - SentenceEmbedder.windowOverlap) + 256
        #expect(batch.truncated == [Truncation(index: 2, tokens: hugeTokens, kept: covered)])
        // `embed` answers one vector per text: what the model reads at once.
        let embedded = try await client.call(Operations.Embed.self, ["short", long])
        #expect(embedded.truncated == [Truncation(index: 1, tokens: total, kept: 256)])
        #expect(try await client.get(user: "u", id: "c").text == huge, "the text is stored whole")
        await client.close()
        await server.shutdown()
        store.close()
    }

    @Test func textGoesInAndComesOutAsText() async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder)
        let client = try await ContextStoreClient.connect(port: server.port)

        let hello = try await client.hello()
        #expect(hello.embedder == "all-MiniLM-L6-v2")
        #expect(hello.dimension == 384)
        #expect(hello.metric == .cosine)

        try await client.addBatch([
            NewMemory(id: "tea", user: "ana", text: "I drink green tea every morning", vector: nil),
            NewMemory(id: "dog", user: "ana", text: "My dog is called Biscuit", vector: nil),
            NewMemory(id: "job", user: "ana", text: "I work as a nurse at the city hospital", vector: nil),
        ])
        try await client.add(NewMemory(id: "other", user: "ben", text: "I drink green tea every morning", vector: nil))
        let hits = try await client.search(
            SearchRequest(user: "ana", query: .text("What is the name of my pet?"), k: 3))
        #expect(hits.map(\.memory.id).first == "dog")
        #expect(hits.count == 3)
        let work = try await client.search(SearchRequest(user: "ana", query: .text("where do I work?"), k: 1))
        #expect(work.map(\.memory.id) == ["job"])

        // The stored vector is the embedder's (normalized once more by the cosine space).
        let stored = try await client.get(user: "ana", id: "tea", withVector: true)
        let direct = try #require(sharedEmbedder).embed(["I drink green tea every morning"], scope: "")[0]
        #expect(zip(stored.vector, direct).allSatisfy { abs($0 - $1) < 1e-6 })
        let embedded = try await client.embed(["I drink green tea every morning", "hello"])
        #expect(embedded.count == 2)
        #expect(embedded[0] == direct)

        await client.close()
        await server.shutdown()
        store.close()
    }

    @Test func theCacheCountsHitsAndMisses() async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder, own: try SentenceEmbedder(folder: modelFolder))
        let socket = try RawSocket(port: server.port)
        func stat(_ name: String) throws -> Int {
            socket.send(#"{"op":"stats"}"# + "\n")
            let line = try #require(socket.readLine())
            guard case .object(let object) = try JSONParser.parse(line), let value = object[name]?.integerValue else {
                return -1
            }
            return Int(value)
        }
        let hits = try stat("embedding_cache_hits")
        let misses = try stat("embedding_cache_misses")
        let text = "a sentence seen only by this test \(UUID().uuidString)"
        socket.send(#"{"op":"embed","texts":["\#(text)"]}"# + "\n")
        #expect(socket.readLine()?.hasPrefix(#"{"ok":true,"model":"all-MiniLM-L6-v2","vectors":[["#) == true)
        socket.send(#"{"op":"embed","texts":["\#(text)"]}"# + "\n")
        #expect(socket.readLine()?.hasPrefix(#"{"ok":true,"model":"all-MiniLM-L6-v2","vectors":[["#) == true)
        #expect(try stat("embedding_cache_misses") == misses + 1)
        #expect(try stat("embedding_cache_hits") == hits + 1)
        // A user's search is a tenant of its own: the text the key embedded is not its hit.
        socket.exchange(
            #"{"op":"search","user":"nobody","query":"\#(text)"}"#, #"{"ok":true,"hits":[]}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"search","user":"nobody","query":"\#(text)","mode":"vector"}"#, #"{"ok":true,"hits":[]}"#,
            now: FixedClock.now)
        #expect(try stat("embedding_cache_misses") == misses + 2)
        #expect(try stat("embedding_cache_hits") == hits + 2)
        // A user named as the keyless `embed`'s scope would be ("key:") is still another tenant.
        socket.exchange(
            #"{"op":"search","user":"key:","query":"\#(text)","mode":"vector"}"#, #"{"ok":true,"hits":[]}"#,
            now: FixedClock.now)
        #expect(try stat("embedding_cache_misses") == misses + 3)
        #expect(try stat("embedding_cache_hits") == hits + 2)
        await server.shutdown()
        store.close()
    }

    @Test func aModelMismatchIsRefused() async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder)
        let socket = try RawSocket(port: server.port)
        let vector = "[" + Array(repeating: "0.05", count: 384).joined(separator: ",") + "]"
        socket.send(#"{"op":"add","user":"u","text":"t","vector":\#(vector),"model":"text-embedding-3-small"}"# + "\n")
        #expect(
            socket.readLine()
                == #"{"ok":false,"error":{"code":"model_mismatch","message":"this space holds vectors of the model all-MiniLM-L6-v2, not text-embedding-3-small"}}"#
        )
        socket.send(#"{"op":"add","user":"u","text":"t","vector":\#(vector),"model":"all-MiniLM-L6-v2"}"# + "\n")
        #expect(socket.readLine()?.hasPrefix(#"{"ok":true,"id":"#) == true)
        await server.shutdown()
        store.close()

        // The space remembers its model: opening it with another is refused.
        #expect(
            throws: StoreError.spaceMismatch(
                .model, "\(folder.path)/space.db was filled by the model all-MiniLM-L6-v2, not other-model")
        ) {
            try MemoryStore(path: folder.path + "/space.db", model: "other-model")
        }
    }

    /// Text is embedded only by a model; a text search without one searches the keyword index.
    @Test func withoutAModelTextRequestsGetNoEmbedder() async throws {
        let server = try await TestServer(dimension: 2)
        let socket = try RawSocket(port: server.port)
        let answer =
            #"{"ok":false,"error":{"code":"no_embedder","message":"this server runs without an embedding model; send vectors"}}"#
        socket.send(#"{"op":"add","user":"u","text":"hello"}"# + "\n")
        #expect(socket.readLine() == answer)
        socket.send(#"{"op":"search","user":"u","query":"hello","mode":"vector"}"# + "\n")
        #expect(socket.readLine() == answer)
        socket.send(#"{"op":"search","user":"u","query":"hello","mode":"hybrid"}"# + "\n")
        #expect(socket.readLine() == answer)
        // Without a mode: words alone, and the answer says so.
        socket.exchange(
            #"{"op":"search","user":"u","query":"hello"}"#, #"{"ok":true,"hits":[],"degraded":["vector"]}"#,
            now: FixedClock.now)
        socket.send(#"{"op":"embed","texts":["hello"]}"# + "\n")
        #expect(socket.readLine() == answer)
        socket.send(#"{"op":"hello"}"# + "\n")
        #expect(socket.readLine()?.hasSuffix(#""embedder":null}"#) == true)
        #expect(server.store.count == 0)
        await server.stop()
    }
}

/// The metrics count the tokens the model ran, not those answered from its cache.
@Suite(.serialized) struct EmbeddedTokensTests {
    @Test func tokensTheModelRanAreCounted() async throws {
        // A model of its own: other suites' embeddings must not count here.
        let embedder = try SentenceEmbedder(folder: modelFolder)
        let folder = TemporaryFolder()
        let store = try MemoryStore(
            path: folder.path + "/space.db", dimension: embedder.dimension, model: embedder.modelID)
        let server = try await ContextStoreServer(
            store: store, embedder: embedder, configuration: ServerConfiguration(port: 0, threads: 2),
            logger: Logger(label: "test"))
        let client = try await ContextStoreClient.connect(port: server.port)
        let text = "tokens counted once"
        _ = try await client.embed([text])
        _ = try await client.embed([text])  // from the cache: not run again
        #expect(embedder.tokensEmbedded == embedder.tokenize(text).count)
        #expect(try await client.metrics().contains("contextstore_embedded_tokens \(Double(embedder.tokensEmbedded))"))
        await client.close()
        await server.shutdown()
        store.close()
    }
}
