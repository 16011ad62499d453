/// What a search looks for: a vector, or text for the server's model to embed first.
public enum SearchQuery: Sendable, Equatable {
    case vector([Float])
    case text(String)

    /// The vector, once there is one.
    public var vector: [Float]? {
        if case .vector(let vector) = self { vector } else { nil }
    }
}

/// One user's search: the query, how many hits, and the scope within the user's memories.
public struct SearchRequest: Sendable, Equatable {
    /// The most hits a search may ask for.
    public static let maximumK = 1000
    /// The hits of a search that names no `k`.
    public static let defaultK = 5
    /// The largest graph candidate list a search may ask for.
    public static let maximumEf = 10_000

    public var user: String
    public var query: SearchQuery
    public var k: Int
    public var filter: RowFilter
    /// The graph search's candidate list; nil for the space's default.
    public var ef: Int?
    /// Scan exactly, never the graph.
    public var exact: Bool

    public init(
        user: String, query: SearchQuery, k: Int = SearchRequest.defaultK, filter: RowFilter = RowFilter(),
        ef: Int? = nil, exact: Bool = false
    ) {
        self.user = user
        self.query = query
        self.k = k
        self.filter = filter
        self.ef = ef
        self.exact = exact
    }
}
