import Benchmark
import ContextModel
import VectorIndex

/// Seeded uniform vectors: the scan's cost does not depend on the values.
private func vectors(count: Int, dimension: Int, seed: UInt64) -> [[Float]] {
    var state = seed
    func next() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24) - 0.5
    }
    return (0..<count).map { _ in (0..<dimension).map { _ in next() } }
}

private func makeIndex(rows: Int, dimension: Int) -> FlatIndex {
    var index = FlatIndex(dimension: dimension, metric: .dot)
    let attributes = RowAttributes(session: nil, role: nil, createdAt: 0)
    for (i, vector) in vectors(count: rows, dimension: dimension, seed: 1).enumerated() {
        index.upsert(id: "m\(i)", user: "u", vector: vector, attributes: attributes)
    }
    return index
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal], warmupIterations: 3, maxDuration: .seconds(5),
        maxIterations: 500)

    let dimension = 384
    let queries = vectors(count: 16, dimension: dimension, seed: 2)

    for rows in [10_000, 100_000] {
        // Built lazily, in setup, so listing the benchmarks stays fast.
        nonisolated(unsafe) var index: FlatIndex?
        Benchmark(
            "search \(rows / 1000)K x \(dimension), k=10",
            configuration: .init(
                setup: { index = makeIndex(rows: rows, dimension: dimension) }, teardown: { index = nil })
        ) { benchmark in
            for i in benchmark.scaledIterations {
                blackHole(index!.search(user: "u", query: queries[i % queries.count], k: 10))
            }
        }
        Benchmark(
            "search 16 queries at once \(rows / 1000)K x \(dimension), k=10 (sgemm)",
            configuration: .init(
                setup: { index = makeIndex(rows: rows, dimension: dimension) }, teardown: { index = nil })
        ) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(index!.search(user: "u", queries: queries, k: 10))
            }
        }
    }
}
