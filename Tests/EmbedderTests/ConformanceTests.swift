import CKernels
import Foundation
import Testing

@testable import Embedder

/// The model folder `scripts/fetch-model` fills, found from this file's place in the repository.
let modelFolder: String = {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return repository.appendingPathComponent("data/models/all-MiniLM-L6-v2").path
}()

/// The reference rows of the embedder (a copy of the datasets' conformance/minilm.jsonl, kept next to
/// this file so the suite runs in a clone of this repository alone).
struct ConformanceRow: Sendable {
    var text: String
    var inputIDs: [Int32]
    var embedding: [Float]
}

let conformanceRows: [ConformanceRow] = {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Reference/minilm.jsonl").path
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
        #expect(conformanceRows.count == 304, "Tests/EmbedderTests/Reference/minilm.jsonl is missing")
        #expect(sharedEmbedder != nil, "run scripts/fetch-model to fetch the model into \(modelFolder)")
    }

    @Test func tokenIDsMatchEveryReferenceRow() throws {
        let embedder = try #require(sharedEmbedder)
        try #require(conformanceRows.count == 304, "Tests/EmbedderTests/Reference/minilm.jsonl is missing")
        var mismatches: [String] = []
        for row in conformanceRows where embedder.tokenize(row.text) != row.inputIDs {
            mismatches.append(String(row.text.prefix(60).debugDescription))
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) rows differ: \(mismatches.prefix(10))")
    }

    @Test func embeddingsMatchEveryReferenceRow() throws {
        let embedder = try #require(sharedEmbedder)
        try #require(conformanceRows.count == 304, "Tests/EmbedderTests/Reference/minilm.jsonl is missing")
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
    @Test func smallProductMatchesTheNaiveReference() {
        var state: UInt64 = 3
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
        // Row counts around the kernel's block of 4, lengths around its 8-float step.
        for (m, k, n) in [(1, 7, 3), (4, 8, 5), (5, 37, 9), (13, 384, 17)] {
            let x = (0..<m * k).map { _ in next() }
            let w = (0..<n * k).map { _ in next() }
            let bias = (0..<n).map { _ in next() }
            var y = [Float](repeating: .nan, count: m * (n + 2))
            ck_small_gemm(x, m, k, w, n, bias, &y, n + 2)  // a wider row stride than n
            for t in 0..<m {
                for o in 0..<n {
                    let expected = (0..<k).reduce(Double(bias[o])) {
                        $0 + Double(x[t * k + $1]) * Double(w[o * k + $1])
                    }
                    #expect(abs(Double(y[t * (n + 2) + o]) - expected) < 1e-3)
                }
                #expect(y[t * (n + 2) + n].isNaN)  // the stride's padding is left alone
            }
        }
    }

    /// Weights packed as float16 give the products of the naive float32 ones to float16's
    /// precision, for every tile height (1-12 rows, and more than a tile), where the processor
    /// has AVX-512; elsewhere the call declines (0) and writes nothing.
    @Test func packedHalfProductMatchesTheNaiveReference() {
        var state: UInt64 = 5
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
        for (m, k, n) in [(1, 7, 32), (3, 384, 64), (12, 33, 32), (13, 384, 96), (25, 100, 32)] {
            let x = (0..<m * k).map { _ in next() }
            let w = (0..<n * k).map { _ in next() }
            let bias = (0..<n).map { _ in next() }
            var packed = [UInt16](repeating: 0, count: ck_packed_f16_count(n, k))
            ck_pack_f16(w, n, k, &packed)
            var y = [Float](repeating: .nan, count: m * (n + 2))
            let taken = ck_packed_gemm_f16(x, m, k, packed, n, bias, &y, n + 2)
            #expect(taken == ck_packed_f16_supported())
            guard taken == 1 else {
                #expect(y.allSatisfy { $0.isNaN })
                continue
            }
            for t in 0..<m {
                for o in 0..<n {
                    let expected = (0..<k).reduce(Double(bias[o])) {
                        $0 + Double(x[t * k + $1]) * Double(w[o * k + $1])
                    }
                    // Each weight off by at most 2^-11 of itself; |x| <= 1.
                    let bound = (0..<k).reduce(1e-4) { $0 + abs(Double(w[o * k + $1])) / 2048 }
                    #expect(abs(Double(y[t * (n + 2) + o]) - expected) <= bound)
                }
                #expect(y[t * (n + 2) + n].isNaN)  // the stride's padding is left alone
            }
        }
        var y = [Float](repeating: 0, count: 16)
        #expect(
            ck_packed_gemm_f16(
                [1], 1, 1, [UInt16](repeating: 0, count: 16), 16, [Float](repeating: 0, count: 16), &y, 16) == 0)
    }

    /// Every reference row embedded alone, as a query is: the short ones through the float16
    /// product, the others through sgemm; all within cosine 0.9999 of sentence-transformers.
    @Test func everyRowEmbeddedAloneStillConforms() throws {
        let embedder = try #require(sharedEmbedder)
        let short = conformanceRows.filter { embedder.tokenize($0.text).count <= BertModel.smallProductRows }
        #expect(short.count >= 100)
        var worst: (Float, String) = (1, "")
        for row in conformanceRows {
            let vector = embedder.embedUncached([row.text])[0]
            let cosine =
                zip(row.embedding, vector).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                / row.embedding.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            if cosine < worst.0 { worst = (cosine, row.text) }
        }
        #expect(worst.0 >= 0.9999, "lowest cosine \(worst.0) for \(worst.1.prefix(60).debugDescription)")
    }

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
        // Room for two entries of one-letter texts and one-float vectors, not three.
        let entry = 1 + 1 + 4 + EmbeddingCache.entryOverhead
        let cache = EmbeddingCache(byteCapacity: 2 * entry + entry / 2, maximumEntryBytes: entry)
        let a = EmbeddingCache.Key(model: "m", scope: "", text: "a")
        let b = EmbeddingCache.Key(model: "m", scope: "", text: "b")
        let c = EmbeddingCache.Key(model: "m", scope: "", text: "c")
        cache.put(a, [1])
        cache.put(b, [2])
        #expect(cache.get(a) == [1])  // a is now the most recent
        cache.put(c, [3])  // evicts b
        #expect(cache.get(b) == nil)
        #expect(cache.get(c) == [3])
        #expect(cache.get(EmbeddingCache.Key(model: "other", scope: "", text: "a")) == nil)
        let statistics = cache.statistics
        #expect(statistics.hits == 2)
        #expect(statistics.misses == 2)
        #expect(statistics.entries == 2)
        #expect(statistics.bytes == 2 * entry)
    }

    @Test func theCacheKeepsNoEntryLargerThanASixteenthOfItsBudget() {
        let cache = EmbeddingCache(byteCapacity: 16 * 1024)
        cache.put(EmbeddingCache.Key(model: "m", scope: "", text: String(repeating: "x", count: 2000)), [1])
        cache.put(EmbeddingCache.Key(model: "m", scope: "", text: "small"), [1])
        #expect(cache.statistics.entries == 1)
        for i in 0..<1000 {
            cache.put(EmbeddingCache.Key(model: "m", scope: "", text: "text \(i)"), [Float](repeating: 0, count: 8))
        }
        #expect(cache.statistics.bytes <= 16 * 1024)
    }

    /// A long text was normalized and tokenized whole for its first 256 tokens, and again to
    /// count them: an 8 MiB text cost that on every request. Now reading stops at what is used.
    @Test func aLongTextIsReadOnlyAsFarAsItsTokensAreNeeded() throws {
        let embedder = try #require(sharedEmbedder)
        let long = String(repeating: "word ", count: 1_000_000)
        #expect(embedder.tokensBeyondLimit(long) == SentenceEmbedder.maximumCountedTokens)
        let started = ContinuousClock.now
        #expect(embedder.tokenizer.encode(long).count == 256)
        print("256 tokens of a 5 MB text: \(ContinuousClock.now - started)")
        // The words a limited read gives are the first words of the whole.
        let text = "Héllo, WORLD! 你好 naïve café\u{301}  déjà-vu"
        let all = embedder.tokenizer.words(text)
        for limit in 1...all.count {
            #expect(Array(embedder.tokenizer.words(text, limit: limit).prefix(limit)) == Array(all.prefix(limit)))
        }
    }

    @Test func embedUsesTheCacheAndKeepsOrder() throws {
        let embedder = try #require(sharedEmbedder)
        let before = embedder.cacheStatistics
        let texts = ["cache test one", "cache test two", "cache test one"]
        let first = embedder.embed(texts, scope: "")
        #expect(first[0] == first[2])
        let second = embedder.embed(texts, scope: "")
        #expect(second == first)
        let after = embedder.cacheStatistics
        #expect(after.misses - before.misses == 3)  // "one" twice and "two", first time round
        #expect(after.hits - before.hits == 3)
        // Another tenant's copy of the text is not a hit: a hit's speed would tell that the
        // text was stored by someone.
        _ = embedder.embed(["cache test one"], scope: "another user")
        #expect(embedder.cacheStatistics.misses - after.misses == 1)
        #expect(embedder.cacheStatistics.hits - after.hits == 0)
    }
}
