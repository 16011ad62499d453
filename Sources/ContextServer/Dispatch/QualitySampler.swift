import ContextModel
import Dispatch
import MemoryStore
import Synchronization

/// Watches the quality of searches as they are served: counts those that returned fewer than
/// `k` hits, and re-runs one in `every` searches that were not exact with `exact: true`, in the
/// background and one at a time, to publish their recall@k against the exact answer. An
/// operator sees the index degrade (a graph that lost reachability, say) without a benchmark.
final class QualitySampler: Sendable {
    let every: Int
    /// Searches seen, and those of them that came short: counted on every search, without a lock.
    private let searches = Atomic<Int>(0)
    private let short = Atomic<Int>(0)
    private let running = Atomic<Bool>(false)
    /// What the background re-runs found.
    private let samples = Mutex((count: 0, recallSum: 0.0))

    struct Figures: Sendable, Equatable {
        var searches = 0
        var short = 0
        var sampled = 0
        var recallSum = 0.0

        /// Mean recall@k of the sampled searches; nil before the first.
        var recall: Double? { sampled > 0 ? recallSum / Double(sampled) : nil }
    }

    /// - Parameter every: One search in this many is re-run exactly; 0 re-runs none.
    init(every: Int) {
        self.every = every
    }

    var current: Figures {
        let (sampled, recallSum) = samples.withLock { ($0.count, $0.recallSum) }
        return Figures(
            searches: searches.load(ordering: .relaxed), short: short.load(ordering: .relaxed), sampled: sampled,
            recallSum: recallSum)
    }

    /// A search answered with `hits`; `store` re-runs it exactly when its turn comes.
    func observe(_ search: SearchRequest, hits: [ScoredMemory], store: MemoryStore) {
        let count = searches.wrappingAdd(1, ordering: .relaxed).newValue
        if hits.count < search.k { short.wrappingAdd(1, ordering: .relaxed) }
        // Only a vector search of a graph can come back short of the exact answer: a keyword or
        // hybrid search, or a flat space's, would be compared with itself and report 1.0.
        guard every > 0, !search.exact, search.mode == .vector, case .hnsw = store.index, count % every == 0,
            running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else { return }
        var scan = search
        scan.exact = true
        scan.explain = false
        scan.context = 0
        let exact = scan
        let served = Set(hits.map(\.memory.id))
        DispatchQueue.global(qos: .utility).async { [self] in
            defer { running.store(false, ordering: .releasing) }
            guard let truth = try? store.search(exact), !truth.isEmpty else { return }
            let found = truth.filter { served.contains($0.memory.id) }.count
            samples.withLock { samples in
                samples.count += 1
                samples.recallSum += Double(found) / Double(truth.count)
            }
        }
    }
}
