import Testing

@testable import MemoryStore

/// `best(_:by:)` gives what a sort and a prefix give, for every size around its switch from a
/// sort to a heap.
@Suite struct ArrayBestTests {
    @Test func theBestAreTheSortedPrefix() {
        // Scores from a few values, so that ties are common and the tie-break decides; the ids in
        // a fixed scrambled order (263 is prime to 500), so every run checks the same cases.
        let items = (0..<500).map { i in (score: Float(i * 7919 % 7), id: i * 263 % 500) }
        let isBetter = { (a: (score: Float, id: Int), b: (score: Float, id: Int)) in
            a.score != b.score ? a.score > b.score : a.id < b.id
        }
        for count in [0, 1, 2, 3, 10, 39, 40, 41, 200, 500] {
            let slice = Array(items.prefix(count))
            for k in [0, 1, 2, 3, 9, 10, 11, 100, 499, 500, 600] {
                let expected = Array(slice.sorted(by: isBetter).prefix(k))
                let got = slice.best(k, by: isBetter)
                #expect(got.map(\.id) == expected.map(\.id), "count \(count), k \(k)")
            }
        }
    }
}
