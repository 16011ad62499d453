import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import MemoryStore
import Testing
import VectorIndex

/// Verified forgetting, through a server with the real model: a forget answers what it removed,
/// place by place (rows, keyword rows, windows, sources, vectors, graph nodes, cache entries), and
/// what a look afterwards found left (nothing), on flat and HNSW spaces with every cache warm;
/// another user's memories are untouched.
@Suite(.serialized) struct ForgetReceiptTests {
    static let indexes: [SpaceIndex] = [.flat, .hnsw(HNSWParameters(M: 8, efConstruction: 32, efSearch: 32))]

    @Test(arguments: indexes)
    func aForgetAnswersWhatItRemovedAndThatNothingIsLeft(index: SpaceIndex) async throws {
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder, index: index)
        let client = try await ContextStoreClient.connect(port: server.port)
        // A text past the model's 256 tokens: embedded in windows after the first.
        let long = (0..<120).map { "The lighthouse keeper counted \($0) gulls on the rocks." }.joined(separator: " ")
        try await client.addBatch([
            NewMemory(id: "t1", user: "eve", session: "s1", text: "Eve adopted a cat named Miso", vector: nil),
            NewMemory(id: "t2", user: "eve", session: "s1", text: long, vector: nil),
            NewMemory(id: "t3", user: "eve", session: "s2", text: "Eve plays the cello", vector: nil),
            NewMemory(id: "f1", user: "eve", text: "Eve has a cat", vector: nil, sources: ["t1", "doc:1"]),
            NewMemory(id: "v1", user: "val", session: "s1", text: "Val adopted a cat named Miso", vector: nil),
        ])
        let valBefore = try store.digest(user: "val").digest
        // Every cache warm: answers (asked twice), the query's embedding, keyword statistics.
        for _ in 0..<2 {
            _ = try await client.search(SearchRequest(user: "eve", text: "What pet does Eve have?", k: 3))
            _ = try await client.search(SearchRequest(user: "val", text: "What pet does Val have?", k: 3))
        }
        let graphNodes = index == .flat ? 0 : 1
        let first = try await client.forgetWithReceipt(
            user: "eve", filter: MemoryFilter(rows: RowFilter(session: "s1")), withDerived: true)
        #expect(first.deleted == 3)
        let windowRows = first.receipt.removed["window_rows"] ?? 0
        #expect(windowRows >= 1)
        #expect(
            first.receipt.removed.filter { $0.key != "cache_entries" } == [
                "memories": 3, "keyword_rows": 3, "window_rows": windowRows, "source_rows": 2,
                "vectors": 3 + windowRows, "graph_nodes": 3 * graphNodes,
            ])
        // Eve's kept answer and her texts' embeddings (the query's, the memories') went.
        #expect((first.receipt.removed["cache_entries"] ?? 0) >= 3)
        #expect(first.receipt.verified && first.receipt.left.values.allSatisfy { $0 == 0 })
        #expect(first.receipt.left.keys.sorted() == (Operations.Forget.Receipt.places + ["records"]).sorted())
        let hits = try await client.search(SearchRequest(user: "eve", text: "cat", k: 10))
        #expect(hits.map(\.memory.id) == ["t3"])

        let rest = try await client.forgetWithReceipt(user: "eve")
        #expect(rest.deleted == 1 && rest.receipt.removed["memories"] == 1 && rest.receipt.verified)
        #expect(try await client.search(SearchRequest(user: "eve", text: "cello", k: 10)).isEmpty)
        // Val is untouched, and still answered.
        #expect(try store.digest(user: "val").digest == valBefore)
        #expect(try await client.search(SearchRequest(user: "val", text: "cat", k: 1)).map(\.memory.id) == ["v1"])
        // The server's check finds every place in agreement.
        #expect(
            try await client.call(Operations.Check.self, Nothing())
                == Operations.Check.Answer(users: 1, memories: 1, problems: []))
        await client.close()
        await server.shutdown()
        store.close()
        #expect(try MemoryStore.check(path: folder.path + "/space.db").problems == [])
    }
}
