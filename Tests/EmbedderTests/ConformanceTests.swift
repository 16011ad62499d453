import Foundation
import Testing

@testable import Embedder

/// The model folder `scripts/fetch-model` fills, found from this file's place in the repository.
let modelFolder: String = {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return repository.appendingPathComponent("data/models/all-MiniLM-L6-v2").path
}()

/// The reference rows of ../shared/conformance/minilm.jsonl (next to the repository).
struct ConformanceRow: Sendable {
    var text: String
    var inputIDs: [Int32]
    var embedding: [Float]
}

let conformanceRows: [ConformanceRow] = {
    let repository = URL(fileURLWithPath: modelFolder).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let path = repository.deletingLastPathComponent().appendingPathComponent("shared/conformance/minilm.jsonl").path
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").map { line in
        let json = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        return ConformanceRow(
            text: json["text"] as! String, inputIDs: (json["input_ids"] as! [Int]).map { Int32($0) },
            embedding: (json["embedding"] as! [Double]).map { Float($0) })
    }
}()

/// Loaded once for the whole suite: the model is 90 MB.
let sharedEmbedder: SentenceEmbedder? = try? SentenceEmbedder(folder: modelFolder)

@Suite struct ConformanceTests {
    @Test func theReferenceDataAndModelArePresent() {
        #expect(conformanceRows.count == 304, "../shared/conformance/minilm.jsonl is missing")
        #expect(sharedEmbedder != nil, "run scripts/fetch-model to fetch the model into \(modelFolder)")
    }

    @Test func tokenIDsMatchEveryReferenceRow() throws {
        let embedder = try #require(sharedEmbedder)
        var mismatches: [String] = []
        for row in conformanceRows where embedder.tokenize(row.text) != row.inputIDs {
            mismatches.append(String(row.text.prefix(60).debugDescription))
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) rows differ: \(mismatches.prefix(10))")
    }

    @Test func embeddingsMatchEveryReferenceRow() throws {
        let embedder = try #require(sharedEmbedder)
        let vectors = embedder.embedUncached(conformanceRows.map(\.text))
        var worst: (Float, String) = (1, "")
        for (row, vector) in zip(conformanceRows, vectors) {
            let cosine =
                zip(row.embedding, vector).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                / (row.embedding.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot())
            if cosine < worst.0 { worst = (cosine, row.text) }
        }
        #expect(worst.0 >= 0.9999, "lowest cosine \(worst.0) for \(worst.1.prefix(60).debugDescription)")
    }
}

@Suite struct KernelTests {
    @Test func rationalErfMatchesLibm() {
        var worst: Float = 0
        var x: Float = -6
        while x <= 6 {
            worst = max(worst, abs(BertModel.erf(x) - erff(x)))
            x += 0.001
        }
        #expect(worst < 1e-6)
    }

    @Test func theCacheEvictsTheLeastRecentlyUsed() {
        let cache = EmbeddingCache(capacity: 2)
        let a = EmbeddingCache.Key(model: "m", text: "a")
        let b = EmbeddingCache.Key(model: "m", text: "b")
        let c = EmbeddingCache.Key(model: "m", text: "c")
        cache.put(a, [1])
        cache.put(b, [2])
        #expect(cache.get(a) == [1])  // a is now the most recent
        cache.put(c, [3])  // evicts b
        #expect(cache.get(b) == nil)
        #expect(cache.get(c) == [3])
        #expect(cache.get(EmbeddingCache.Key(model: "other", text: "a")) == nil)
        let statistics = cache.statistics
        #expect(statistics.hits == 2)
        #expect(statistics.misses == 2)
        #expect(statistics.entries == 2)
    }

    @Test func embedUsesTheCacheAndKeepsOrder() throws {
        let embedder = try #require(sharedEmbedder)
        let before = embedder.cacheStatistics
        let texts = ["cache test one", "cache test two", "cache test one"]
        let first = embedder.embed(texts)
        #expect(first[0] == first[2])
        let second = embedder.embed(texts)
        #expect(second == first)
        let after = embedder.cacheStatistics
        #expect(after.misses - before.misses == 3)  // "one" twice and "two", first time round
        #expect(after.hits - before.hits == 3)
    }
}
