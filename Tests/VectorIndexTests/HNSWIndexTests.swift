import CKernels
import ContextModel
import Testing

@testable import VectorIndex

@Suite struct HNSWIndexTests {
    let attributes = RowAttributes(session: nil, role: nil, createdAt: 0)
    let dimension = 16

    /// Clustered unit vectors, as sentence embeddings are: 20 centres, points scattered around them.
    func data(count: Int, seed: UInt64, dimension: Int = 16) -> [[Float]] {
        var generator = SplitMix64(state: seed)
        let centres = (0..<20).map { _ in randomVector(dimension, using: &generator) }
        return (0..<count).map { i in
            Metric.normalized(zip(centres[i % 20], randomVector(dimension, using: &generator)).map { $0 + 0.3 * $1 })
        }
    }

    func recall(
        _ index: HNSWIndex, _ flat: FlatIndex, queries: [[Float]], k: Int, ef: Int, user: String = "u",
        filter: RowFilter = RowFilter()
    ) -> Double {
        var total = 0.0
        for query in queries {
            let truth = Set(flat.search(user: user, query: query, k: k, filter: filter, exact: true).map(\.id))
            let found = index.search(user: user, query: query, k: k, ef: ef, filter: filter).map(\.id)
            total += truth.isEmpty ? 1 : Double(found.filter(truth.contains).count) / Double(truth.count)
        }
        return total / Double(queries.count)
    }

    func build(
        _ vectors: [[Float]], metric: Metric,
        parameters: HNSWParameters = HNSWParameters(M: 8, efConstruction: 64, efSearch: 32),
        kernels: KernelForm = .best, users: (Int) -> String = { _ in "u" }
    ) -> (HNSWIndex, FlatIndex) {
        var index = HNSWIndex(dimension: vectors[0].count, metric: metric, parameters: parameters, kernels: kernels)
        var flat = FlatIndex(dimension: vectors[0].count, metric: metric)
        for (i, vector) in vectors.enumerated() {
            let attributes = RowAttributes(session: "s\(i % 10)", role: nil, createdAt: Int64(i))
            index.insert(id: "n\(i)", user: users(i), vector: vector, attributes: attributes)
            flat.upsert(id: "n\(i)", user: users(i), vector: vector, attributes: attributes)
        }
        return (index, flat)
    }

    @Test func changedAttributesAreWhatFiltersSee() {
        var (index, flat) = build(data(count: 600, seed: 5), metric: .cosine)
        let moved = RowAttributes(session: "moved", role: .tool, createdAt: 7)
        for i in stride(from: 0, to: 600, by: 50) {
            let inGraph = index.setAttributes(id: "n\(i)", moved)
            let inFlat = flat.setAttributes(id: "n\(i)", moved)
            #expect(inGraph && inFlat)
        }
        let absentInGraph = index.setAttributes(id: "absent", moved)
        let absentInFlat = flat.setAttributes(id: "absent", moved)
        #expect(!absentInGraph && !absentInFlat)
        let query = data(count: 1, seed: 6)[0]
        let filter = RowFilter(session: "moved")
        let graphHits = index.search(user: "u", query: query, k: 20, ef: 200, filter: filter).map(\.id)
        let flatHits = flat.search(user: "u", query: query, k: 20, filter: filter, exact: true).map(\.id)
        #expect(Set(graphHits) == Set(stride(from: 0, to: 600, by: 50).map { "n\($0)" }))
        #expect(Set(flatHits) == Set(graphHits))
        // The old session no longer finds them.
        let old = index.search(user: "u", query: query, k: 100, ef: 400, filter: RowFilter(session: "s0")).map(\.id)
        #expect(!old.contains("n0") && !old.contains("n50"))
    }

    @Test(arguments: Metric.allCases, [KernelForm.best, .baseline])
    func findsTheTrueNeighbours(metric: Metric, kernels: KernelForm) {
        let (index, flat) = build(data(count: 1500, seed: 1), metric: metric, kernels: kernels)
        let queries = data(count: 40, seed: 2)
        #expect(index.count == 1500)
        #expect(index.integrityProblems() == [])
        #expect(recall(index, flat, queries: queries, k: 10, ef: 64) >= 0.95)
        // Scores are the metric's own, as the flat index reports them.
        let hit = index.search(user: "u", query: queries[0], k: 1, ef: 64)[0]
        let exact = flat.search(user: "u", query: queries[0], k: 50, exact: true).first { $0.id == hit.id }!
        #expect(abs(hit.score - exact.score) < 1e-3)
    }

    /// Users come and go: the numbers of users whose nodes are all gone are reused, so the map
    /// of user numbers holds only the users the graph has now.
    @Test func userNumbersOfGoneUsersAreReused() {
        var graph = HNSWIndex(dimension: 2, metric: .dot, parameters: HNSWParameters(M: 4, efConstruction: 16))
        let attributes = RowAttributes(session: nil, role: nil, createdAt: 0)
        for round in 0..<20 {
            for n in 0..<3 {
                graph.insert(
                    id: "r\(round)-\(n)", user: "user\(round)", vector: [1, Float(n)], attributes: attributes)
            }
            if round > 0 { graph.remove(ids: (0..<3).map { "r\(round - 1)-\($0)" }) }
        }
        #expect(graph.slots.users.number(of: "user19") != nil)
        #expect(graph.slots.users.number(of: "user18") == nil)
        #expect(graph.slots.users.count == 2)
        #expect(graph.search(user: "user19", query: [1, 0], k: 3).count == 3)
        #expect(graph.search(user: "user18", query: [1, 0], k: 3).isEmpty)
    }

    @Test func filtersDuringTheWalkAndNeverStarve() {
        // 1% of the nodes belong to "rare": a post-filter would usually return nothing.
        let (index, flat) = build(data(count: 1500, seed: 3), metric: .dot) { $0 % 100 == 7 ? "rare" : "common" }
        let queries = data(count: 20, seed: 4)
        for query in queries {
            #expect(index.search(user: "rare", query: query, k: 10, ef: 16).count == 10)
            #expect(index.search(user: "rare", query: query, k: 30, ef: 16).count == 15)  // all there are
        }
        #expect(recall(index, flat, queries: queries, k: 10, ef: 16, user: "rare") >= 0.95)
        let session = RowFilter(session: "s3")
        #expect(recall(index, flat, queries: queries, k: 10, ef: 32, user: "common", filter: session) >= 0.95)
        #expect(index.search(user: "nobody", query: queries[0], k: 5).isEmpty)
    }

    /// The walk itself, with the scope applied during it, at every scope size the planner might
    /// hand it: min(k, matches) hits, and recall@10 >= 0.98 at ef 128 (which the store uses for
    /// a scope of half the graph at its default ef 64; at ef 64 that scope had 0.94).
    @Test func scopedWalksKeepRecall() {
        let vectors = data(count: 10_000, seed: 21)
        // Scopes by user: 0.1%, 1%, 10% and 50% of the graph, spread over the clusters.
        let (index, flat) = build(vectors, metric: .cosine, parameters: HNSWParameters(M: 16, efConstruction: 100)) {
            i in
            switch i % 1000 {
            case 0: "tiny"
            case 1..<11: "small"
            case 11..<111: "tenth"
            case 111..<611: "half"
            default: "rest"
            }
        }
        let queries = data(count: 60, seed: 22)
        for (user, count) in [("tiny", 10), ("small", 100), ("tenth", 1000), ("half", 5000)] {
            for query in queries { #expect(index.search(user: user, query: query, k: 10).count == min(10, count)) }
            #expect(recall(index, flat, queries: queries, k: 10, ef: 128, user: user) >= 0.98, "\(user)")
        }
    }

    @Test func deletedNodesAreNeverReturnedAndQualityHolds() {
        let vectors = data(count: 1500, seed: 5)
        let queries = data(count: 200, seed: 6)
        var (index, flat) = build(vectors, metric: .cosine)
        let fresh = recall(index, flat, queries: queries, k: 10, ef: 48)
        // Delete a random half, check none comes back, then insert them again.
        var generator = SplitMix64(state: 9)
        let victims = (0..<vectors.count).filter { _ in Bool.random(using: &generator) }
        for i in victims {
            let removed = index.remove(ids: ["n\(i)"]) == 1
            #expect(removed)
            flat.remove(id: "n\(i)")
        }
        #expect(index.count == vectors.count - victims.count)
        let gone = Set(victims.map { "n\($0)" })
        for query in queries {
            #expect(index.search(user: "u", query: query, k: 20).allSatisfy { !gone.contains($0.id) })
        }
        #expect(recall(index, flat, queries: queries, k: 10, ef: 48) >= fresh - 0.02)
        // Removed nodes leave the graph: no link points at them and every node stays reachable.
        #expect(index.integrityProblems() == [])
        #expect(index.slotCount == vectors.count)
        for i in victims {
            index.insert(id: "n\(i)", user: "u", vector: vectors[i], attributes: attributes)
            flat.upsert(id: "n\(i)", user: "u", vector: vectors[i], attributes: attributes)
        }
        #expect(index.count == vectors.count)
        #expect(index.slotCount == vectors.count)  // the freed slots were reused
        #expect(index.integrityProblems() == [])
        #expect(recall(index, flat, queries: queries, k: 10, ef: 48) >= fresh - 0.01)
    }

    @Test(arguments: VectorStorage.allCases, [KernelForm.best, .baseline])
    func codeKernelsMatchTheNaiveReference(storage: VectorStorage, form: KernelForm) {
        var generator = SplitMix64(state: 11)
        // Lengths around the kernels' 8-, 16- and 32-component steps.
        for n in [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 384] {
            let query = randomVector(n, using: &generator)
            let vector = randomVector(n, using: &generator)
            for metric in [Metric.dot, .l2] {
                var codes = VectorCodes(dimension: n, metric: metric, storage: storage, kernels: form)
                codes.set(0, to: vector)
                #expect(codes.count == 1)
                // The kernels score the vector the code stands for: compare with the decoded one.
                let decoded = codes.withCodes { base -> [Float] in
                    let raw = UnsafeRawBufferPointer(start: base, count: codes.codeBytes)
                    switch storage {
                    case .float32: return (0..<n).map { raw.load(fromByteOffset: 4 * $0, as: Float.self) }
                    case .float16:
                        return (0..<n).map {
                            Float(Float16(bitPattern: raw.load(fromByteOffset: 2 * $0, as: UInt16.self)))
                        }
                    case .int8:
                        let scale = raw.load(as: Float.self)
                        return (0..<n).map { scale * Float(raw.load(fromByteOffset: 4 + $0, as: Int8.self)) }
                    }
                }
                #expect(codes.decode(0) == decoded)
                // ... which is close to the original: exact, half precision, or within half a step.
                let step: Float = storage == .int8 ? vector.map(abs).max()! / 127 / 2 + 1e-6 : 1e-3
                #expect(zip(decoded, vector).allSatisfy { abs($0 - $1) <= (storage == .float32 ? 0 : step) })
                var expected = 0.0
                for (q, x) in zip(query, decoded) {
                    expected += metric == .dot ? Double(q) * Double(x) : -Double(q - x) * Double(q - x)
                }
                let score = query.withUnsafeBufferPointer { q in codes.withCodes { codes.score(q.baseAddress!, $0) } }
                #expect(abs(Double(score) - expected) <= 1e-5 * max(1, abs(expected)), "n \(n), \(metric)")
            }
        }
        let int8Forms = ["baseline", "avx2", "avx-vnni", "avx512-vnni"]
        #expect(
            int8Forms.map { "avx2+fma+f16c, int8 " + $0 }.contains(Processor.kernels)
                || Processor.kernels == "baseline, int8 baseline")
    }

    /// Compact graphs walk by approximate scores and re-rank with the exact vectors: about the
    /// recall of float32, and exact scores. (With one scale per vector, int8 needs enough
    /// components: at 16 its recall here was 0.05 lower; embeddings have hundreds.)
    @Test(arguments: [VectorStorage.float16, .int8], [KernelForm.best, .baseline])
    func compactStorageKeepsRecall(storage: VectorStorage, kernels: KernelForm) {
        let dimension = 96
        let vectors = data(count: 1500, seed: 1, dimension: dimension)
        let (full, flat) = build(vectors, metric: .cosine)
        let (index, _) = build(
            vectors, metric: .cosine,
            parameters: HNSWParameters(M: 8, efConstruction: 64, efSearch: 32, storage: storage), kernels: kernels)
        // Two or three bytes saved per component.
        #expect(full.bytes - index.bytes >= 1500 * dimension * (storage == .float16 ? 2 : 3) - 1500 * 4)
        var total = 0.0
        let queries = data(count: 40, seed: 2, dimension: dimension)
        for query in queries {
            let truth = flat.search(user: "u", query: query, k: 10, exact: true)
            let found = index.search(user: "u", query: query, k: 10, ef: 64) {
                flat.exactScores(ids: $0.map(\.id), query: query)
            }
            total += Double(Set(truth.map(\.id)).intersection(found.map(\.id)).count) / 10
            for hit in found {
                let exact = flat.exactScores(ids: [hit.id], query: query)[0]
                #expect(hit.score == exact)
            }
        }
        let float32 = recall(full, flat, queries: queries, k: 10, ef: 64)
        #expect(total / Double(queries.count) >= float32 - 0.01)
    }
}

/// Many memories with one vector (a greeting stored a thousand times, a template's filler): the
/// graph must keep every copy reachable and still lead walks past them.
@Suite struct HNSWDuplicateTests {
    /// 1,000 distinct vectors and 40 vectors stored 50 times each, in a shuffled order; with
    /// `jitter`, each copy is moved by about that much (near copies, not exact ones).
    func vectorsWithCopies(dimension: Int, jitter: Float = 0) -> [[Float]] {
        var generator = SplitMix64(state: 17)
        let distinct = HNSWIndexTests().data(count: 1_000, seed: 3, dimension: dimension)
        let repeated = HNSWIndexTests().data(count: 40, seed: 4, dimension: dimension)
        var vectors =
            distinct
            + repeated.flatMap { vector in
                (0..<50).map { _ in
                    jitter == 0
                        ? vector
                        : Metric.normalized(
                            zip(vector, randomVector(dimension, using: &generator)).map { $0 + jitter * $1 })
                }
            }
        vectors.shuffle(using: &generator)
        return vectors
    }

    /// The share of the true best `k` scores a search matched: with ties, any of the tied
    /// memories is a right answer.
    func scoreRecall(_ found: [SearchHit], _ truth: [SearchHit]) -> Double {
        guard let kth = truth.last?.score else { return 1 }
        return Double(found.filter { $0.score >= kth - 1e-5 }.count) / Double(truth.count)
    }

    @Test(arguments: [VectorStorage.float32, .int8])
    func copiesStayReachableAndWalksGoPastThem(storage: VectorStorage) {
        let dimension = 32
        let vectors = vectorsWithCopies(dimension: dimension)
        let (index, flat) = HNSWIndexTests().build(
            vectors, metric: .cosine,
            parameters: HNSWParameters(M: 8, efConstruction: 64, efSearch: 32, storage: storage))
        #expect(index.integrityProblems() == [])
        func search(_ query: [Float], k: Int, ef: Int) -> [SearchHit] {
            index.search(user: "u", query: query, k: k, ef: ef) { flat.exactScores(ids: $0.map(\.id), query: query) }
        }
        // Every copy of a repeated vector is found when all of them are asked for.
        let repeated = HNSWIndexTests().data(count: 40, seed: 4, dimension: dimension)
        var copiesFound = 0.0
        for vector in repeated {
            let truth = flat.search(user: "u", query: vector, k: 50, exact: true)
            copiesFound += scoreRecall(search(vector, k: 50, ef: 100), truth)
        }
        // Queries near the repeated vectors and elsewhere find the best 10 at least as often as
        // when the copies are near copies, not exact ones (before copies had a rule of their
        // own: 0.56 against 0.70 for float32, 0.47 against 0.52 for int8).
        let queries = HNSWIndexTests().data(count: 200, seed: 6, dimension: dimension)
        var total = 0.0
        for query in queries {
            total += scoreRecall(search(query, k: 10, ef: 32), flat.search(user: "u", query: query, k: 10, exact: true))
        }
        // The same walk where each copy is moved a little.
        let distinctVectors = vectorsWithCopies(dimension: dimension, jitter: 0.001)
        let (distinct, distinctFlat) = HNSWIndexTests().build(
            distinctVectors, metric: .cosine,
            parameters: HNSWParameters(M: 8, efConstruction: 64, efSearch: 32, storage: storage))
        var baseline = 0.0
        for query in queries {
            let found = distinct.search(user: "u", query: query, k: 10, ef: 32) {
                distinctFlat.exactScores(ids: $0.map(\.id), query: query)
            }
            baseline += scoreRecall(found, distinctFlat.search(user: "u", query: query, k: 10, exact: true))
        }
        #expect(copiesFound / 40 >= 0.97)
        #expect(total >= baseline - 0.02 * 200)
    }
}
