import Testing

@testable import MemoryStore

/// The planner alone: which index a search uses, from counts.
@Suite struct SearchPlannerTests {
    func route(nodes: Int?, rows: Int, matches: Int, ef: Int? = nil, exact: Bool = false) -> SearchPlanner.Route {
        SearchPlanner.route(
            SearchPlanner.Counts(graphNodes: nodes, userRows: rows, matches: matches), ef: ef, defaultEf: 64,
            exact: exact)
    }

    @Test func withoutAGraphEverySearchScans() {
        #expect(route(nodes: nil, rows: 1_000_000, matches: 1_000_000) == .flat)
        #expect(route(nodes: 0, rows: 1_000_000, matches: 1_000_000) == .flat)
    }

    @Test func exactAlwaysScans() {
        #expect(route(nodes: 100_000, rows: 100_000, matches: 100_000, exact: true) == .flat)
    }

    @Test func aScopeWithNoMatchesScans() {
        #expect(route(nodes: 100_000, rows: 100_000, matches: 0) == .flat)
    }

    /// A walk costs 2 x 24 x ef / selectivity rows: at ef 64 and the whole graph in scope that is
    /// 3,072, so 3,072 rows are scanned and 3,073 walked.
    @Test func theCheaperIndexWins() {
        #expect(route(nodes: 3072, rows: 3072, matches: 3072) == .flat)
        #expect(route(nodes: 3073, rows: 3073, matches: 3073) == .hnsw(ef: 64))
        #expect(route(nodes: 100_000, rows: 100_000, matches: 100_000, ef: 10) == .hnsw(ef: 10))
        // A user with few rows in a big graph: the scan reads only theirs.
        #expect(route(nodes: 1_000_000, rows: 2000, matches: 2000) == .flat)
    }

    /// A scope holding a fraction s of the graph widens the walk to ef / s, at most 4 ef.
    @Test func narrowScopesWidenTheWalk() {
        #expect(route(nodes: 100_000, rows: 100_000, matches: 50_000) == .hnsw(ef: 128))
        #expect(route(nodes: 1_000_000, rows: 1_000_000, matches: 100_000) == .hnsw(ef: 256))
        // Selectivity 1/10: walking costs 30,720 rows, more than the 20,000 a scan reads.
        #expect(route(nodes: 200_000, rows: 20_000, matches: 20_000) == .flat)
    }
}
