/// What a search is given to look for: a vector, or text (which the server embeds for the
/// vector side and matches against the keyword index).
public enum SearchQuery: Sendable, Equatable {
    case vector([Float])
    case text(String)
}

/// How a search ranks a user's memories.
public enum SearchMode: String, Sendable, Equatable, CaseIterable {
    /// By the query vector's similarity (the flat index or the graph).
    case vector
    /// By BM25 over the keyword index (the query text's words, stemmed, stop words left out).
    case keyword
    /// Both, fused by reciprocal rank (see `Retrieval`).
    case hybrid
}

/// One user's search: the query, how many hits, the scope within the user's memories, and how
/// the hits are ranked and returned.
public struct SearchRequest: Sendable, Equatable {
    /// The most hits a search may ask for.
    public static let maximumK = 1000
    /// The hits of a search that names no `k`.
    public static let defaultK = 5
    /// The largest graph candidate list a search may ask for.
    public static let maximumEf = 10_000
    /// The most neighbouring turns a search may ask for on each side of a hit.
    public static let maximumContext = 20

    public var user: String
    /// The query's text: searched by the keyword index, embedded for the vector side.
    public var text: String?
    /// The query's vector: given by the client, or the embedding of `text`.
    public var vector: [Float]?
    /// Nil: the server chooses (`hybrid` for text when it can embed it, `keyword` for text when
    /// it cannot, `vector` for a vector alone).
    public var mode: SearchMode?
    public var k: Int
    public var filter: MemoryFilter
    /// The graph search's candidate list; nil for the space's default.
    public var ef: Int?
    /// Scan exactly, never the graph.
    public var exact: Bool
    /// Give each hit the parts of its score (`Explanation`).
    public var explain: Bool
    /// Blend relevance with recency: a memory this many seconds old counts 3/4 as much as a new
    /// one, a very old one half (`Retrieval.recency`). Nil: time plays no part.
    public var halfLife: Double?
    /// With each hit, this many turns of its session before it and after it.
    public var context: Int
    /// Weigh what users said of a memory (`feedback`): relevance x (1 + boost x (helped -
    /// not helped) / (helped + not helped + 1)), at least 0. Nil: feedback plays no part.
    public var feedbackBoost: Double?
    /// The largest `feedbackBoost`.
    public static let maximumFeedbackBoost = 10.0
    /// Which memories it sees by validity: those that hold now (the default), at a time, or all.
    public var validity: ValidityView = .current
    /// The time (unix milliseconds) the search takes as now: recency, expiry and which facts
    /// hold are judged at it, so the same request on the same data gives the same answer. Nil:
    /// the server's clock.
    public var now: Int64?

    public init(
        user: String, query: SearchQuery, k: Int = SearchRequest.defaultK, filter: RowFilter = RowFilter(),
        ef: Int? = nil, exact: Bool = false
    ) {
        switch query {
        case .vector(let vector): self.init(user: user, vector: vector, k: k, ef: ef, exact: exact)
        case .text(let text): self.init(user: user, text: text, k: k, ef: ef, exact: exact)
        }
        self.filter = MemoryFilter(rows: filter)
    }

    public init(
        user: String, text: String? = nil, vector: [Float]? = nil, mode: SearchMode? = nil,
        k: Int = SearchRequest.defaultK, filter: MemoryFilter = MemoryFilter(), ef: Int? = nil, exact: Bool = false,
        explain: Bool = false, halfLife: Double? = nil, context: Int = 0, feedbackBoost: Double? = nil
    ) {
        self.user = user
        self.text = text
        self.vector = vector
        self.mode = mode
        self.k = k
        self.filter = filter
        self.ef = ef
        self.exact = exact
        self.explain = explain
        self.halfLife = halfLife
        self.context = context
        self.feedbackBoost = feedbackBoost
    }

    /// Whether its answer may change with the clock alone, the data unchanged: recency weighs in,
    /// or the query names a time relative to a `now` the request does not give ("yesterday").
    public var changesWithTheClock: Bool {
        guard halfLife == nil else { return true }
        guard now == nil, let text else { return false }
        return TimeExpression.find(in: text, now: Clock.nowMilliseconds())?.relative == true
    }

    /// The mode this search runs in, given whether the server can embed text.
    /// Whether hits are scored by rank fusion (hybrid, or recency or feedback weighed in):
    /// higher is then better, whatever the metric. Of a request whose mode is resolved.
    public var isFused: Bool { mode == .hybrid || halfLife != nil || feedbackBoost != nil }

    /// Whether a hit's score is a distance, lower being better: a plain vector search in an l2
    /// space.
    public func scoresAreDistances(metric: Metric) -> Bool { metric == .l2 && mode == .vector && !isFused }

    public func resolvedMode(canEmbed: Bool) -> SearchMode {
        if let mode { return mode }
        guard text != nil else { return .vector }
        return vector != nil || canEmbed ? .hybrid : .keyword
    }
}

/// Why a hit ranks where it does: each side's score and rank (nil where that side did not find
/// it among its candidates), and what neighbours and recency added. The hit's `score` is the
/// final one.
public struct Explanation: Sendable, Equatable {
    /// Similarity (cosine, inner product) or distance (l2) to the query vector.
    public var vectorScore: Float?
    /// The rank by the vector side (1 = best).
    public var vectorRank: Int?
    /// BM25 relevance (higher is better).
    public var keywordScore: Float?
    /// The rank by the keyword side (1 = best).
    public var keywordRank: Int?
    /// What the hit's neighbouring turns in its session added to its fused score (hybrid).
    public var neighbours: Float?
    /// The factor (between 0.5 and 1) its relevance was multiplied by for its age; nil without
    /// `half_life`.
    public var recency: Float?
    /// What the best fused scores of the hit's session added to its own (hybrid).
    public var session: Float?
    /// The factor its fused score was multiplied by because the query names its speaker
    /// (`MemoryStore.speakerBoost`); nil when it does not.
    public var speaker: Float?
    /// The span of time the query names, when the hit was said within it (and so weighs
    /// `MemoryStore.timeBoost` times as much); nil otherwise.
    public var time: TimeWindow?

    public init(
        vectorScore: Float? = nil, vectorRank: Int? = nil, keywordScore: Float? = nil, keywordRank: Int? = nil,
        neighbours: Float? = nil, recency: Float? = nil, session: Float? = nil, speaker: Float? = nil,
        time: TimeWindow? = nil
    ) {
        self.session = session
        self.speaker = speaker
        self.time = time
        self.vectorScore = vectorScore
        self.vectorRank = vectorRank
        self.keywordScore = keywordScore
        self.keywordRank = keywordRank
        self.neighbours = neighbours
        self.recency = recency
    }
}
