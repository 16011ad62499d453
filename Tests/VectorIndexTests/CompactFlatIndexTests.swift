import CKernels
import ContextModel
import Testing

@testable import VectorIndex

/// Flat indexes that keep float16 or int8 codes instead of float32 rows: the codes choose the
/// candidates, the owner's exact vectors (here, the test's own copies) give the final order.
@Suite struct CompactFlatIndexTests {
    static let compact: [VectorStorage] = [.float16, .int8]

    /// Rows of three users with filterable attributes, some removed and some moved, as an owner
    /// would leave them; `vectors` holds each live handle's prepared vector.
    struct Fixture {
        var index: FlatIndex
        var rows: [(id: String, vector: [Float], attributes: RowAttributes)] = []
        var vectors: [Int32: [Float]] = [:]

        init(storage: VectorStorage, metric: Metric, dimension: Int = 32, count: Int = 3000, seed: UInt64 = 11) {
            index = FlatIndex(dimension: dimension, metric: metric, storage: storage)
            var generator = SplitMix64(state: seed)
            for i in 0..<count {
                let vector = metric.prepared(randomVector(dimension, using: &generator))
                let attributes = RowAttributes(
                    session: "s\(i % 4)", role: i % 2 == 0 ? .user : .assistant, createdAt: Int64(i))
                index.upsert(id: padded(i), user: "u", vector: vector, attributes: attributes, handle: Int32(i))
                rows.append((padded(i), vector, attributes))
                vectors[Int32(i)] = vector
            }
            // Removals move the last row into each hole: codes, norms and handles must follow.
            for i in stride(from: 0, to: count, by: 7) {
                index.remove(id: padded(i))
                vectors[Int32(i)] = nil
            }
            rows.removeAll { Int($0.id)! % 7 == 0 }
        }

        /// What the owner answers: exact scores, "higher is closer", from its own vectors.
        func rescore(_ handles: [Int32], query: [Float]) -> [Float] {
            handles.map { handle in
                guard let vector = vectors[handle] else { return -.infinity }
                let dot = zip(vector, query).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                let squared = zip(vector, query).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                return index.metric == .l2 ? -squared : dot
            }
        }
    }

    @Test(arguments: compact, Metric.allCases)
    func rescoredSearchesMatchTheReference(storage: VectorStorage, metric: Metric) throws {
        let fixture = Fixture(storage: storage, metric: metric)
        var generator = SplitMix64(state: 3)
        for (k, filter) in [(10, RowFilter()), (1, RowFilter()), (25, RowFilter(session: "s1", role: .user))] {
            let query = metric.prepared(randomVector(32, using: &generator))
            let expected = referenceSearch(rows: fixture.rows, query: query, metric: metric, k: k, filter: filter)
            let got = fixture.index.search(user: "u", query: query, k: k, filter: filter) {
                fixture.rescore($0, query: query)
            }
            #expect(got.map(\.id) == expected.map(\.id), "\(storage) \(metric) k \(k)")
            for (a, b) in zip(got, expected) { #expect(abs(a.score - b.score) < 1e-4) }
            for hit in got { #expect(hit.id == padded(Int(hit.handle))) }
            // The ground truth rescores every row that passes the filter.
            var asked = 0
            let exact = fixture.index.search(user: "u", query: query, k: k, filter: filter, exact: true) {
                asked = $0.count
                return fixture.rescore($0, query: query)
            }
            #expect(exact.map(\.id) == expected.map(\.id))
            #expect(asked == fixture.rows.filter { filter.matches($0.attributes) }.count)
        }
    }

    /// Only the candidates go to the owner: `rescoredCandidates(k:)` of them, not every row.
    @Test(arguments: compact)
    func asksTheOwnerForTheCandidatesOnly(storage: VectorStorage) {
        let fixture = Fixture(storage: storage, metric: .cosine)
        var asked: [Int32] = []
        _ = fixture.index.search(user: "u", query: fixture.rows[5].vector, k: 10) {
            asked = $0
            return fixture.rescore($0, query: fixture.rows[5].vector)
        }
        #expect(asked.count == fixture.index.rescoredCandidates(k: 10))
        #expect(Set(asked).count == asked.count)
    }

    /// A deep pool with only its best hits exact (`exactTop`, as a fused search asks): the owner
    /// is asked for `rescoredCandidates(k: exactTop)` rows, those come first in their exact order
    /// (the same hits as an exact search of `exactTop`), and the rest of the pool follows in the
    /// order of the codes, with their estimates as scores.
    @Test(arguments: compact, Metric.allCases)
    func aDeepPoolRescoresOnlyItsHead(storage: VectorStorage, metric: Metric) {
        let fixture = Fixture(storage: storage, metric: metric)
        var generator = SplitMix64(state: 5)
        for filter in [RowFilter(), RowFilter(session: "s2")] {
            let query = metric.prepared(randomVector(32, using: &generator))
            var asked: [Int32] = []
            let got = fixture.index.search(user: "u", query: query, k: 200, filter: filter, exactTop: 10) {
                asked = $0
                return fixture.rescore($0, query: query)
            }
            let head = fixture.index.rescoredCandidates(k: 10)
            #expect(asked.count == head && Set(asked).count == head)
            #expect(got.count == 200 && Set(got.map(\.id)).count == 200)
            let exact = referenceSearch(rows: fixture.rows, query: query, metric: metric, k: 10, filter: filter)
            #expect(got.prefix(10).map(\.id) == exact.map(\.id), "\(storage) \(metric)")
            #expect(Set(got.prefix(head).map(\.handle)) == Set(asked))
            // The rest: the codes' next best, in their order, each scored by its estimate.
            let estimated = fixture.index.search(user: "u", query: query, k: 200, filter: filter)
            #expect(Set(got.map(\.id)) == Set(estimated.map(\.id)))
            #expect(Array(got.dropFirst(head)) == Array(estimated.filter { !asked.contains($0.handle) }))
            let passing = Set(fixture.rows.filter { filter.matches($0.attributes) }.map(\.id))
            #expect(got.allSatisfy { passing.contains($0.id) })
        }
    }

    /// A row the owner no longer has (scored -infinity) is left out, not returned last.
    @Test(arguments: compact)
    func aRowTheOwnerLostIsLeftOut(storage: VectorStorage) {
        var fixture = Fixture(storage: storage, metric: .l2, count: 40)
        let query = fixture.rows[0].vector
        let best = fixture.index.search(user: "u", query: query, k: 3) { fixture.rescore($0, query: query) }
        fixture.vectors[best[0].handle] = nil
        let got = fixture.index.search(user: "u", query: query, k: 40) { fixture.rescore($0, query: query) }
        #expect(got.count == fixture.rows.count - 1)
        #expect(!got.contains { $0.id == best[0].id })
        #expect(got.allSatisfy { $0.score.isFinite })
    }

    /// Without the owner, the codes' estimates are the scores: close to the exact ones.
    @Test(arguments: compact, Metric.allCases)
    func estimatesAloneAreClose(storage: VectorStorage, metric: Metric) {
        let fixture = Fixture(storage: storage, metric: metric, count: 500)
        var generator = SplitMix64(state: 9)
        let query = metric.prepared(randomVector(32, using: &generator))
        let expected = referenceSearch(rows: fixture.rows, query: query, metric: metric, k: 10)
        let got = fixture.index.search(user: "u", query: query, k: 10)
        let tolerance: Float = storage == .float16 ? 0.01 : 0.1
        let byID = Dictionary(uniqueKeysWithValues: expected.map { ($0.id, $0.score) })
        let overlap = got.filter { byID[$0.id] != nil }
        #expect(overlap.count >= 8, "\(storage) \(metric): \(overlap.count) of 10")
        for hit in overlap { #expect(abs(hit.score - byID[hit.id]!) <= tolerance * max(1, abs(hit.score))) }
    }

    /// Scores of rows chosen by handle, from the codes: close to the exact ones, in the same
    /// form (`-|x - q|^2` for l2), and -infinity for a handle without a row.
    @Test(arguments: compact, Metric.allCases)
    func estimatedScoresByHandleAreClose(storage: VectorStorage, metric: Metric) {
        let fixture = Fixture(storage: storage, metric: metric, count: 300)
        var generator = SplitMix64(state: 21)
        let query = metric.prepared(randomVector(32, using: &generator))
        let handles: [Int32] = [1, 2, 3, 50, 299, 0, 7, 5000, -1]
        let estimates = fixture.index.estimatedScores(handles: handles, query: query)
        let exact = fixture.rescore(handles, query: query)
        for (estimate, truth) in zip(estimates, exact) {
            if truth == -.infinity {
                #expect(estimate == -.infinity)
            } else {
                #expect(abs(estimate - truth) <= (storage == .float16 ? 0.01 : 0.1) * max(1, abs(truth)))
            }
        }
        var float32 = FlatIndex(dimension: 32, metric: metric)
        for (handle, vector) in fixture.vectors {
            float32.upsert(
                id: padded(Int(handle)), user: "u", vector: vector,
                attributes: RowAttributes(session: nil, role: nil, createdAt: 0), handle: handle)
        }
        #expect(
            float32.estimatedScores(handles: handles, query: query)
                == float32.exactScores(handles: handles, query: query))
    }

    /// A compact index keeps no float32 vector: `vector(id:)` answers nil, `contains` still knows
    /// the row, and a row costs its code's bytes.
    @Test func compactRowsCostTheirCodes() {
        let dimension = 384
        var sizes: [VectorStorage: Int] = [:]
        for storage in VectorStorage.allCases {
            var index = FlatIndex(dimension: dimension, metric: .cosine, storage: storage)
            index.reserveCapacity(1000, forUser: "u")
            var generator = SplitMix64(state: 1)
            for i in 0..<1000 {
                index.upsert(
                    id: padded(i), user: "u",
                    vector: Metric.cosine.prepared(randomVector(dimension, using: &generator)),
                    attributes: RowAttributes(session: nil, role: nil, createdAt: 0), handle: Int32(i))
            }
            #expect(index.contains(id: padded(3)))
            #expect((index.vector(id: padded(3)) != nil) == (storage == .float32))
            sizes[storage] = index.bytes
        }
        // Per row: float32 keeps 4d + d + 4 (row, code, scale); float16 2d; int8 d + 4 (within
        // the 1% an allocator may round capacities up by).
        func near(_ value: Int, _ expected: Int) -> Bool { abs(value - expected) <= expected / 100 }
        #expect(near(sizes[.float32]! - sizes[.float16]!, 1000 * (4 * dimension + dimension + 4 - 2 * dimension)))
        #expect(near(sizes[.float32]! - sizes[.int8]!, 1000 * 4 * dimension))
    }

    /// Float16 codes round to nearest even and clamp to the largest finite half.
    @Test func halvesRoundToNearestEvenAndClamp() {
        var halves: [UInt16] = []
        FlatIndex.appendHalves(of: [1, -2, 65504, 1e9, -1e9, 1 + 1 / 2048, 1 + 3 / 2048, 0.1], to: &halves)
        #expect(halves == [0x3C00, 0xC000, 0x7BFF, 0x7BFF, 0xFBFF, 0x3C00, 0x3C02, Float16(0.1).bitPattern])
        var generator = SplitMix64(state: 4)
        for _ in 0..<200 {
            let vector = randomVector(37, using: &generator).map {
                $0 * Float.random(in: 0.0001...60000, using: &generator)
            }
            var codes: [UInt16] = []
            FlatIndex.appendHalves(of: vector, to: &codes)
            #expect(codes == vector.map { Float16($0).bitPattern })
            // The portable form, which processors without F16C run, gives the same bits.
            var portable = [UInt16](repeating: 0, count: vector.count)
            ck_encode_f16_portable(vector, vector.count, &portable)
            #expect(portable == codes)
        }
        // Halfway cases, subnormals and the clamp, in both forms.
        let edges: [Float] = [
            1 + 1 / 2048, 1 + 3 / 2048, 65519, 65520, -65520, 5.96e-8, 2.98e-8, 8.94e-8, -0.0, 6.1e-5, 6.09e-5,
        ]
        var portable = [UInt16](repeating: 0, count: edges.count)
        ck_encode_f16_portable(edges, edges.count, &portable)
        var selected: [UInt16] = []
        FlatIndex.appendHalves(of: edges, to: &selected)
        #expect(portable == selected)
        #expect(portable == edges.map { Float16(min(max($0, -65504), 65504)).bitPattern })
    }

    /// Every form of the int8 scan this processor runs gives the baseline's bits, for lengths
    /// around their block sizes (32 and 64 bytes), extreme codes, and with and without norms.
    @Test func int8ScanFormsAgreeBitForBit() throws {
        var generator = SplitMix64(state: 9)
        let kernels = (0..<CK_I8_ROWS_KINDS.rawValue).map { ck_i8_rows_kernel(rawValue: $0) }.filter {
            ck_i8_rows_supported($0) != 0
        }
        #expect(kernels.contains(CK_I8_ROWS_BASELINE) && kernels.contains(ck_i8_rows_chosen()))
        for n in [1, 5, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 384, 385, 1024] {
            let rows = 37
            let extreme = n % 2 == 0
            let codes: [Int8] = (0..<n * rows).map { i in
                extreme ? (i % 3 == 0 ? -127 : 127) : Int8.random(in: -127...127, using: &generator)
            }
            let query: [Int8] = (0..<n).map { _ in
                extreme ? -127 : Int8.random(in: -127...127, using: &generator)
            }
            let scales: [Float] = (0..<rows).map { _ in Float.random(in: 0.001...1, using: &generator) }
            let norms: [Float] = (0..<rows).map { _ in Float.random(in: 0...4, using: &generator) }
            for withNorms in [false, true] {
                func scan(_ kernel: ck_i8_rows_kernel) -> [Float] {
                    var out = [Float](repeating: .nan, count: rows)
                    norms.withUnsafeBufferPointer { norms in
                        ck_dot_i8_rows_with(
                            kernel, query, 0.01, codes, scales, withNorms ? norms.baseAddress : nil, n, rows, &out)
                    }
                    return out
                }
                let reference = scan(CK_I8_ROWS_BASELINE)
                for kernel in kernels {
                    let name = String(cString: ck_i8_rows_name(kernel))
                    #expect(scan(kernel).map(\.bitPattern) == reference.map(\.bitPattern), "\(name), n \(n)")
                }
            }
        }
        // The product is exact: all 127s against all -127s sum to -127 * 127 * n.
        let n = 1024
        var out: [Float] = [0]
        ck_dot_i8_rows_with(
            ck_i8_rows_chosen(), [Int8](repeating: -127, count: n), 1, [Int8](repeating: 127, count: n), [1], nil, n, 1,
            &out)
        #expect(out == [Float(-127 * 127 * n)])
    }

    /// At the longest vector a space may hold, every form still sums exactly: each product
    /// of extreme codes, in every sign, over `Metric.maximumDimension` components.
    @Test func theLongestVectorSumsExactlyInEveryForm() {
        let n = Metric.maximumDimension
        let kernels = (0..<CK_I8_ROWS_KINDS.rawValue).map { ck_i8_rows_kernel(rawValue: $0) }.filter {
            ck_i8_rows_supported($0) != 0
        }
        for kernel in kernels {
            for (row, query) in [(127, -127), (127, 127), (-127, 127), (-127, -127)] as [(Int8, Int8)] {
                // Five rows: a form that takes rows four at a time sums both ways.
                var out = [Float](repeating: 0, count: 5)
                ck_dot_i8_rows_with(
                    kernel, [Int8](repeating: query, count: n), 1, [Int8](repeating: row, count: 5 * n),
                    [Float](repeating: 1, count: 5), nil, n, 5, &out)
                let name = String(cString: ck_i8_rows_name(kernel))
                #expect(
                    out == [Float](repeating: Float(Int(row) * Int(query) * n), count: 5), "\(name), \(row) x \(query)")
            }
        }
    }

    /// `ck_top_rows` keeps the `count` best scores, ties to the lower index, whatever the order
    /// of the scores and however many tie: against a full sort, for counts below, at and above
    /// the number of scores and for lengths around its blocks of 16.
    @Test func topRowsMatchAFullSort() {
        var generator = SplitMix64(state: 21)
        for n in [0, 1, 15, 16, 17, 100, 1000, 4099] {
            for levels in [3, 1000, 1_000_000] {
                let scores: [Float] = (0..<n).map { _ in Float(Int.random(in: 0..<levels, using: &generator)) }
                for count in [1, 2, 16, 26, 104, n, n + 5] where count > 0 {
                    var rows = [Int](repeating: -1, count: count)
                    let kept = ck_top_rows(scores, n, count, &rows)
                    let expected = scores.indices.sorted { (scores[$0], -$0) > (scores[$1], -$1) }.prefix(count)
                    #expect(kept == min(n, count))
                    #expect(Set(rows.prefix(kept)) == Set(expected), "n \(n), levels \(levels), count \(count)")
                }
            }
        }
    }

    /// A user whose int8 codes pass `FlatIndex.parallelInt8Bytes` is scanned by all cores, each
    /// writing its own rows: every row's estimate comes out as the one-row kernel gives it, so
    /// the hits by estimate are the best estimates of all rows.
    @Test func aSplitScanEstimatesEveryRow() {
        let dimension = 4096
        let rows = FlatIndex.parallelInt8Bytes / dimension + 3
        var index = FlatIndex(dimension: dimension, metric: .dot, storage: .int8)
        var generator = SplitMix64(state: 31)
        for row in 0..<rows {
            index.upsert(
                id: "r\(row)", user: "u", vector: randomVector(dimension, using: &generator),
                attributes: RowAttributes(session: nil, role: nil, createdAt: 0),
                handle: Int32(row))
        }
        let query = randomVector(dimension, using: &generator)
        let estimates = index.estimatedScores(handles: (0..<Int32(rows)).map { $0 }, query: query)
        let best = estimates.indices.sorted { (estimates[$0], -$0) > (estimates[$1], -$1) }.prefix(10)
        let hits = index.search(user: "u", query: query, k: 10)
        #expect(hits.map(\.handle) == best.map { Int32($0) })
        #expect(hits.map(\.score) == best.map { estimates[$0] })
    }
}
