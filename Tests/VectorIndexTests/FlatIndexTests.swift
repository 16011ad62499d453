import ContextModel
import Testing

@testable import VectorIndex

/// A seeded generator, so every run sees the same vectors.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomVector(_ dimension: Int, using generator: inout SplitMix64) -> [Float] {
    (0..<dimension).map { _ in Float.random(in: -1...1, using: &generator) }
}

/// The slow, obvious answer the index must match: score every row, sort, take k.
func referenceSearch(
    rows: [(id: String, vector: [Float], attributes: RowAttributes)], query: [Float], metric: Metric, k: Int,
    filter: RowFilter = RowFilter()
) -> [SearchHit] {
    func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
    func normalized(_ v: [Float]) -> [Float] {
        let norm = dot(v, v).squareRoot()
        return norm > 0 ? v.map { Float(Double($0) / norm) } : v
    }
    let scored = rows.filter { filter.matches($0.attributes) }.map { row -> (String, Double) in
        switch metric {
        case .cosine: (row.id, dot(normalized(row.vector), normalized(query)))
        case .dot: (row.id, dot(row.vector, query))
        case .l2:
            (row.id, zip(row.vector, query).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot())
        }
    }
    let sorted = scored.sorted { a, b in
        if a.1 != b.1 { return metric.higherIsBetter ? a.1 > b.1 : a.1 < b.1 }
        return a.0 < b.0
    }
    return sorted.prefix(k).map { SearchHit(id: $0.0, score: Float($0.1)) }
}

@Suite struct FlatIndexTests {
    let attributes = RowAttributes(session: nil, role: nil, createdAt: 0)

    @Test(arguments: Metric.allCases)
    func matchesTheReferenceSearch(metric: Metric) {
        var generator = SplitMix64(state: 42)
        let dimension = 24
        var index = FlatIndex(dimension: dimension, metric: metric)
        var rows: [(id: String, vector: [Float], attributes: RowAttributes)] = []
        for i in 0..<500 {
            let vector = randomVector(dimension, using: &generator)
            let attributes = RowAttributes(
                session: "s\(i % 3)", role: i % 2 == 0 ? .user : .assistant, createdAt: Int64(i))
            rows.append((padded(i), vector, attributes))
            // The index takes vectors prepared (unit length under cosine); the reference does not.
            index.upsert(id: padded(i), user: "u", vector: metric.prepared(vector), attributes: attributes)
        }
        for _ in 0..<20 {
            let query = randomVector(dimension, using: &generator)
            let expected = referenceSearch(rows: rows, query: query, metric: metric, k: 10)
            let got = index.search(user: "u", query: metric.prepared(query), k: 10)
            #expect(got.map(\.id) == expected.map(\.id))
            for (a, b) in zip(got, expected) { #expect(abs(a.score - b.score) < 1e-4) }

            let filter = RowFilter(session: "s1", role: .user, since: 100, until: 400)
            let filtered = index.search(user: "u", query: metric.prepared(query), k: 7, filter: filter)
            #expect(
                filtered.map(\.id)
                    == referenceSearch(rows: rows, query: query, metric: metric, k: 7, filter: filter).map(\.id))
        }
    }

    /// A large user's search (int8 estimates, the best re-scored in float32) finds what the exact
    /// scan finds, with the exact scores, through filters and deletes; `exact` is the scan itself.
    @Test(arguments: Metric.allCases)
    func compactSearchAgreesWithTheExactScan(metric: Metric) {
        var generator = SplitMix64(state: 7)
        let dimension = 96
        let count = 2400
        #expect(count >= FlatIndex.compactScanRows)
        // Clustered, as embeddings are: 60 centres, each row near one (random vectors in many
        // dimensions are all nearly equidistant, which no data one searches is).
        let centres = (0..<60).map { _ in randomVector(dimension, using: &generator) }
        var index = FlatIndex(dimension: dimension, metric: metric)
        var rows: [(id: String, vector: [Float], attributes: RowAttributes)] = []
        for i in 0..<count {
            let noise = randomVector(dimension, using: &generator)
            let vector = zip(centres[i % 60], noise).map { $0 + 0.35 * $1 }
            let attributes = RowAttributes(session: "s\(i % 4)", role: nil, createdAt: Int64(i))
            rows.append((padded(i), vector, attributes))
            index.upsert(id: padded(i), user: "u", vector: metric.prepared(vector), attributes: attributes)
        }
        // Deletes move the last rows into the holes: their codes must move with them.
        for i in stride(from: 0, to: count, by: 7) {
            let removed = index.remove(id: padded(i))
            #expect(removed)
        }
        rows.removeAll { Int($0.id)! % 7 == 0 }
        var found = 0
        var total = 0
        for q in 0..<16 {
            let noise = randomVector(dimension, using: &generator)
            let query = zip(centres[(q * 7) % 60], noise).map { $0 + 0.35 * $1 }
            let filter = q % 2 == 0 ? RowFilter() : RowFilter(session: "s1")
            let expected = referenceSearch(rows: rows, query: query, metric: metric, k: 10, filter: filter)
            let exact = index.search(user: "u", query: metric.prepared(query), k: 10, filter: filter, exact: true)
            #expect(exact.map(\.id) == expected.map(\.id))
            let compact = index.search(user: "u", query: metric.prepared(query), k: 10, filter: filter)
            #expect(compact.count == 10)
            // Every hit carries its exact score, best first.
            let exactScores = Dictionary(
                uniqueKeysWithValues: referenceSearch(
                    rows: rows, query: query, metric: metric, k: count, filter: filter
                )
                .map { ($0.id, $0.score) })
            for hit in compact { #expect(abs(hit.score - exactScores[hit.id]!) < 1e-3 * max(1, abs(hit.score))) }
            #expect(
                zip(compact, compact.dropFirst()).allSatisfy {
                    metric.higherIsBetter ? $0.score >= $1.score : $0.score <= $1.score
                })
            found += Set(compact.map(\.id)).intersection(expected.map(\.id)).count
            total += expected.count
        }
        #expect(Double(found) / Double(total) >= 0.97, "recall@10 \(Double(found) / Double(total))")
        // A stored row is its own nearest neighbour.
        let own = rows[123]
        #expect(index.search(user: "u", query: metric.prepared(own.vector), k: 1).first?.id == own.id)
    }

    /// A row's int8 code: each component times 127 over the largest magnitude, rounded half
    /// away from zero (2.5 is 3, not the even 2), within -127...127; a zero vector's is zeros
    /// with scale 0.
    @Test func int8CodesRoundHalfAwayFromZero() {
        var codes: [Int8] = [9]
        #expect(FlatIndex.appendCode(of: [127, 2.5, -2.5, 3.5, 0.4, -127], to: &codes) == 1)
        #expect(codes == [9, 127, 3, -3, 4, 0, -127])
        #expect(FlatIndex.appendCode(of: [0, -0, 0], to: &codes) == 0)
        #expect(codes == [9, 127, 3, -3, 4, 0, -127, 0, 0, 0])
        // The scale in double precision: a subnormal vector still gets codes.
        var tiny: [Int8] = []
        FlatIndex.appendCode(of: [Float.leastNonzeroMagnitude, -Float.leastNonzeroMagnitude], to: &tiny)
        #expect(tiny == [127, -127])
        // Every half from -127 to 127 (127 is the largest, so each is its own scaled value).
        let halves: [Float] = [127] + (-254...254).map { Float($0) / 2 }
        var halfCodes: [Int8] = []
        #expect(FlatIndex.appendCode(of: halves, to: &halfCodes) == 1)
        #expect(halfCodes == halves.map { Int8($0.rounded(.toNearestOrAwayFromZero)) })
        // Random vectors, against the definition written out in Swift.
        var generator = SplitMix64(state: 7)
        for length in 0..<2000 {
            // Lengths around the four-component steps of the vectorized form.
            let vector = randomVector(1 + length % 50, using: &generator).map {
                $0 * Float.random(in: 0.001...1000, using: &generator)
            }
            let largest = Double(vector.map(abs).max()!)
            let expected = vector.map { x -> Int8 in
                let step: Double = (Double(x) * (127 / largest)).rounded()
                return Int8(Swift.min(Swift.max(step, -127), 127))
            }
            var codes: [Int8] = []
            let scale = FlatIndex.appendCode(of: vector, to: &codes)
            #expect(codes == expected)
            #expect(scale == Float(largest / 127))
        }
    }

    @Test func searchesOnlyTheUsersPartition() {
        var index = FlatIndex(dimension: 2, metric: .dot)
        index.upsert(id: "a1", user: "alice", vector: [1, 0], attributes: attributes)
        index.upsert(id: "b1", user: "bob", vector: [10, 0], attributes: attributes)
        #expect(index.search(user: "alice", query: [1, 0], k: 5).map(\.id) == ["a1"])
        #expect(index.search(user: "carol", query: [1, 0], k: 5).isEmpty)
        #expect(index.userCount == 2)
    }

    @Test func breaksTiesByID() {
        var index = FlatIndex(dimension: 2, metric: .dot)
        for id in ["d", "b", "a", "c", "e"] { index.upsert(id: id, user: "u", vector: [1, 1], attributes: attributes) }
        #expect(index.search(user: "u", query: [1, 1], k: 3).map(\.id) == ["a", "b", "c"])
        #expect(index.search(user: "u", query: [1, 1], k: 10).map(\.id) == ["a", "b", "c", "d", "e"])
    }

    @Test func removeKeepsRowsConsistent() {
        var generator = SplitMix64(state: 7)
        var index = FlatIndex(dimension: 8, metric: .l2)
        var rows: [(id: String, vector: [Float], attributes: RowAttributes)] = []
        for i in 0..<100 {
            let vector = randomVector(8, using: &generator)
            rows.append(("id\(i)", vector, attributes))
            index.upsert(id: "id\(i)", user: "u", vector: vector, attributes: attributes)
        }
        for i in stride(from: 0, to: 100, by: 3) {
            let removed = index.remove(id: "id\(i)")
            #expect(removed)
        }
        let removedTwice = index.remove(id: "id0")
        #expect(!removedTwice)
        rows.removeAll { Int($0.id.dropFirst(2))! % 3 == 0 }
        #expect(index.count == rows.count)
        for row in rows { #expect(index.vector(id: row.id) == row.vector) }
        let query = randomVector(8, using: &generator)
        #expect(
            index.search(user: "u", query: query, k: 100).map(\.id)
                == referenceSearch(rows: rows, query: query, metric: .l2, k: 100).map(\.id))
    }

    /// Rows carry the owner's handles through removals (which move the last row into the hole)
    /// and moves between users; hits report them and exact scores are found by them.
    @Test func handlesFollowTheirRows() {
        var generator = SplitMix64(state: 7)
        var index = FlatIndex(dimension: 8, metric: .dot)
        var vectors: [Int32: [Float]] = [:]
        for handle in Int32(0)..<60 {
            let vector = randomVector(8, using: &generator)
            vectors[handle] = vector
            index.upsert(
                id: "id\(handle)", user: handle % 3 == 0 ? "a" : "b", vector: vector, attributes: attributes,
                handle: handle)
        }
        for handle in stride(from: Int32(0), to: 60, by: 4) {
            index.remove(id: "id\(handle)")
            vectors[handle] = nil
        }
        index.upsert(id: "id1", user: "a", vector: vectors[1]!, attributes: attributes, handle: 1)
        let query = randomVector(8, using: &generator)
        for user in ["a", "b"] {
            for hit in index.search(user: user, query: query, k: 60) {
                #expect(hit.id == "id\(hit.handle)")
            }
        }
        let live = vectors.keys.sorted()
        let byHandle = index.exactScores(handles: live, query: query)
        #expect(byHandle == index.exactScores(ids: live.map { "id\($0)" }, query: query))
        #expect(byHandle.allSatisfy { $0.isFinite })
        #expect(index.exactScores(handles: [0, 4, 1000, -1], query: query).allSatisfy { $0 == -.infinity })
        _ = index.removeAll(user: "a")
        #expect(index.exactScores(handles: [1, 3], query: query).allSatisfy { $0 == -.infinity })
    }

    @Test func upsertMovesAnIDBetweenUsers() {
        var index = FlatIndex(dimension: 2, metric: .cosine)
        index.upsert(id: "x", user: "alice", vector: [0.6, 0.8], attributes: attributes)
        index.upsert(id: "x", user: "bob", vector: [0, 1], attributes: attributes)
        #expect(index.count == 1)
        #expect(index.search(user: "alice", query: [1, 0], k: 1).isEmpty)
        #expect(index.vector(id: "x") == [0, 1])
        let removed = index.removeAll(user: "bob")
        #expect(removed == ["x"])
        #expect(index.count == 0)
    }

    @Test(arguments: Metric.allCases)
    func batchSearchEqualsOneByOne(metric: Metric) {
        var generator = SplitMix64(state: 99)
        var index = FlatIndex(dimension: 16, metric: metric)
        for i in 0..<300 {
            index.upsert(id: "r\(i)", user: "u", vector: randomVector(16, using: &generator), attributes: attributes)
        }
        let queries = (0..<9).map { _ in randomVector(16, using: &generator) }
        let batch = index.search(user: "u", queries: queries, k: 5)
        for (query, hits) in zip(queries, batch) {
            let single = index.search(user: "u", query: query, k: 5)
            #expect(hits.map(\.id) == single.map(\.id))
            for (a, b) in zip(hits, single) { #expect(abs(a.score - b.score) < 1e-4) }
        }
    }

    @Test func largeScansSplitOverCoresMatchTheReference() {
        var generator = SplitMix64(state: 5)
        let dimension = 384
        let count = FlatIndex.parallelScanFloats / dimension + 1001
        var index = FlatIndex(dimension: dimension, metric: .dot)
        var rows: [(id: String, vector: [Float], attributes: RowAttributes)] = []
        for i in 0..<count {
            let vector = randomVector(dimension, using: &generator)
            rows.append((padded(i), vector, attributes))
            index.upsert(id: padded(i), user: "u", vector: vector, attributes: attributes)
        }
        let query = randomVector(dimension, using: &generator)
        let expected = referenceSearch(rows: rows, query: query, metric: .dot, k: 25)
        let got = index.search(user: "u", query: query, k: 25)
        #expect(got.map(\.id) == expected.map(\.id))
        // The last rows sit in the last chunk: make sure it was scored.
        let last = rows[count - 1]
        #expect(index.search(user: "u", query: last.vector, k: 1).first?.id == last.id)
        // Several queries at once (sgemm), split the same way.
        let queries = [query, last.vector, rows[0].vector]
        let batch = index.search(user: "u", queries: queries, k: 5)
        for (query, hits) in zip(queries, batch) {
            #expect(hits.map(\.id) == referenceSearch(rows: rows, query: query, metric: .dot, k: 5).map(\.id))
        }
    }

    @Test func reportsTheLoadedBLAS() {
        #expect(BLAS.loadedLibrary.contains("libblas"))
    }
}

/// Zero-padded, so string order equals numeric order.
func padded(_ number: Int) -> String {
    let digits = String(number)
    return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
}
