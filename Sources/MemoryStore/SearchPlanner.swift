/// Which index answers a search: a pure function of counts, so it can be tested on its own.
///
/// The flat scan reads every row of the user's partition; a graph walk scores about `24 ef`
/// nodes, divided by the fraction of the graph the search's scope holds (the walk passes through
/// nodes outside it). The cheaper one wins, with a graph node counted as two rows (a pair kernel
/// on scattered memory against a streaming BLAS scan). So small scopes are scanned exactly and
/// large ones walked.
///
/// A walk whose scope holds a fraction `s` of the graph keeps `ef / s` candidates (at most
/// `4 ef`): on a 10,000-node test graph (HNSWIndexTests), a scope of half the nodes had
/// recall@10 0.94 at ef 64 and 0.99 at ef 128.
enum SearchPlanner {
    /// What a search will do.
    enum Route: Equatable {
        /// Scan the user's rows exactly.
        case flat
        /// Walk the graph with this `ef`.
        case hnsw(ef: Int)
    }

    /// The counts a plan depends on.
    struct Counts: Equatable {
        /// Published nodes of the graph; nil for a space without one.
        var graphNodes: Int?
        /// The user's rows (what a flat scan reads).
        var userRows: Int
        /// The user's rows the filter is estimated to keep.
        var matches: Int
    }

    /// - Parameters:
    ///   - ef: The search's own `ef`, or nil for `defaultEf`.
    ///   - exact: The search asked for the exact scan.
    static func route(_ counts: Counts, ef: Int?, defaultEf: Int, exact: Bool) -> Route {
        guard !exact, let nodes = counts.graphNodes, nodes > 0, counts.matches > 0 else { return .flat }
        let selectivity = min(1, Double(counts.matches) / Double(nodes))
        let width = Double(ef ?? defaultEf)
        guard 2 * 24 * width / selectivity < Double(counts.userRows) else { return .flat }
        return .hnsw(ef: Int((width * min(4, 1 / selectivity)).rounded(.up)))
    }
}
