import ContextModel
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

/// How a search ranks: one side alone (the vector index, or the keyword index), or both fused.
///
/// Hybrid search fuses the two ranked lists by reciprocal rank: a memory at rank r on a side
/// gets 1 / (c + r) from it, with c = `fusionConstant`. Each memory is then credited
/// `neighbourCredit` times the better of what its session's previous and next turns got from
/// that side: an answer often lies in the turn next to the one that names the question's words.
/// A memory whose speaker the query names weighs `speakerBoost` times as much (a question about
/// someone is most often answered by what they said), and each memory is credited
/// `sessionCredit` times the sum of the best `sessionBest` scores in its session, itself
/// included (a conversation that answers part of a question often answers the rest). Each side
/// offers `pool(k:)` candidates; a compact flat index scores its side's best k exactly and the
/// rest of its pool by their codes (`FlatIndex.search`, `exactTop`). With `half_life`, the
/// relevance (the fused score, or 1 / (c + r) for one side) is multiplied by `recency`.
/// docs/BENCHMARKS.md has what each part measured on LoCoMo.
extension MemoryStore {
    /// The c of 1 / (c + rank).
    public static let fusionConstant: Float = 10
    /// The share of a neighbouring turn's fused score a memory is credited with.
    public static let neighbourCredit: Float = 0.5

    /// How many candidates each side offers a fusion for `k` hits. A memory outside both
    /// pools, with no neighbour in them, would fuse to at most 2 (1 + credit) / (c + pool); the
    /// k-th best memory of the pools fuses to at least 1 / (c + k), halved at most by recency; the
    /// pool makes the first below the second. The factors after the fusion (speaker, session,
    /// time, feedback) reorder the candidates the pools found.
    static func pool(k: Int) -> Int {
        max(200, Int((4 * (1 + neighbourCredit)).rounded(.up)) * (k + Int(fusionConstant)))
    }

    /// What a fused score is multiplied by when the memory was said within the span of time
    /// the query names (`TimeExpression`).
    public static let timeBoost: Float = 2
    /// What a fused score is multiplied by when the query holds every word of the memory's
    /// speaker.
    public static let speakerBoost: Float = 1.5
    /// The share of the sum of its session's best `sessionBest` fused scores a memory is
    /// credited with.
    public static let sessionCredit: Float = 0.25
    /// How many of a session's best fused scores its memories are credited with a share of.
    public static let sessionBest = 3

    /// The factor between 0.5 and 1 a memory `ageSeconds` old is weighed with: 1 when new, 3/4
    /// at one half-life, towards 1/2 for the very old (relevance still counts most).
    public static func recency(ageSeconds: Double, halfLife: Double) -> Float {
        Float((1 + exp2(-max(0, ageSeconds) / halfLife)) / 2)
    }

    /// The search's hits, best first, as `request.mode` ranks them (see above; a request
    /// without a mode searches by vector when it has one, else by keywords). Its vector, for
    /// the vector and hybrid modes, is the client's or the embedding of its text.
    /// - Throws: `StoreError.invalidValue` when the mode lacks what it searches with (a vector,
    ///   or text); `.wrongDimension`, `.nonFiniteVector`; `.sqlite` from the keyword index or
    ///   metadata conditions.
    public func search(_ request: SearchRequest) throws -> [ScoredMemory] {
        precondition(request.k > 0)
        let mode = request.resolvedMode(canEmbed: false)
        let now = request.now ?? Clock.nowMilliseconds()
        var query: [Float] = []
        if mode != .keyword {
            guard let vector = request.vector else {
                throw StoreError.invalidValue("a \(mode.rawValue) search needs a vector (or text the server embeds)")
            }
            // Checked and prepared once, here, for whichever index answers.
            query = try Self.storable(vector, metric: metric)
        }
        if mode != .vector, request.text == nil {
            throw StoreError.invalidValue("a \(mode.rawValue) search needs query text")
        }
        var resolved = request
        resolved.mode = mode
        let fused = resolved.isFused
        let candidates = fused ? Self.pool(k: request.k) : request.k
        var filter = request.filter
        filter.rows = filter.rows.seeing(request.validity, at: now, tested: validityTested(at: now))
        // Metadata conditions are SQL's: they give the rows a side may return.
        let allowed = filter.metadata.isEmpty ? nil : try matchingHandles(request.user, filter, now)
        let keywordHits =
            mode == .vector
            ? []
            : try keywordSearch(
                user: request.user, text: request.text ?? "", limit: candidates, filter: filter, now: now)
        return try state.read { state in
            var rows = filter.rows
            if state.expiring > 0 { rows.liveAt = now }
            let vectorHits =
                mode == .keyword
                ? []
                : try self.vectorHits(
                    state, user: request.user, query: query, k: candidates, filter: rows, allowed: allowed,
                    ef: request.ef, exact: request.exact, exactTop: fused ? request.k : nil)
            let keyword = keywordHits.compactMap { hit -> SearchHit? in
                // A row committed after the state was read, or another user's under the same scope token.
                guard let handle = state.handleOfSeq[hit.seq],
                    state.records[Int(handle)]?.user.bytewiseEquals(request.user) == true
                else { return nil }
                return SearchHit(id: "", score: hit.score, handle: handle)
            }
            var ranked: [Ranked]
            switch mode {
            case .vector: ranked = rank(vectorHits, side: .vector, fused: fused, state: state)
            case .keyword: ranked = rank(keyword, side: .keyword, fused: fused, state: state)
            case .hybrid:
                // A neighbouring turn becomes a candidate only if the search could return it.
                ranked = fuse(vectorHits, keyword, state: state) { turn in
                    // The record's fields read in place (binding a whole `Record` would retain its strings).
                    guard state.records[Int(turn)]?.user.bytewiseEquals(request.user) == true,
                        let attributes = state.records[Int(turn)]?.attributes, rows.matches(attributes)
                    else { return false }
                    return allowed?.contains(turn) ?? true
                }
                weighSpeakers(&ranked, namedIn: request.text ?? "", state: state)
                creditSessions(&ranked, state: state)
            }
            if let halfLife = request.halfLife {
                for i in ranked.indices {
                    guard let record = state.records[Int(ranked[i].handle)] else { continue }
                    let factor = Self.recency(
                        ageSeconds: TimeRange.seconds(from: record.createdAt, to: now), halfLife: halfLife)
                    ranked[i].explanation.recency = factor
                    ranked[i].score *= factor
                }
            }
            if let boost = request.feedbackBoost {
                for i in ranked.indices {
                    guard let helped = state.records[Int(ranked[i].handle)]?.helped,
                        let unhelped = state.records[Int(ranked[i].handle)]?.unhelped, helped + unhelped > 0
                    else { continue }
                    let balance = Double(helped - unhelped) / Double(helped + unhelped + 1)
                    ranked[i].score *= Float(max(0, 1 + boost * balance))
                }
            }
            // A question that names a time ("last week", "in May 2023") weighs what was said then.
            if fused, let text = request.text, let window = TimeExpression.find(in: text, now: now) {
                for i in ranked.indices {
                    guard let record = state.records[Int(ranked[i].handle)], window.contains(record.createdAt)
                    else { continue }
                    ranked[i].explanation.time = window
                    ranked[i].score *= Self.timeBoost
                }
            }
            let best =
                fused
                ? ranked.best(request.k) { a, b in a.score != b.score ? a.score > b.score : a.handle < b.handle }
                : Array(ranked.prefix(request.k))
            // What the view sees of the neighbouring turns (not the request's other conditions).
            var visible = RowFilter().seeing(request.validity, at: now, tested: rows.validAt != nil)
            visible.liveAt = rows.liveAt
            return hits(best, request: request, state: state, visible: visible)
        }
    }

    /// A memory on its way to being a hit.
    struct Ranked {
        var handle: Int32
        var score: Float
        var explanation = Explanation()
    }

    enum Side { case vector, keyword }

    /// One side's hits as they rank (scored 1 / (c + rank) when `fused`, for recency to weigh).
    private func rank(_ hits: [SearchHit], side: Side, fused: Bool, state: borrowing State) -> [Ranked] {
        hits.enumerated().map { position, hit in
            var ranked = Ranked(
                handle: hit.handle, score: fused ? 1 / (Self.fusionConstant + Float(position + 1)) : hit.score)
            ranked.explanation.record(side, score: hit.score, rank: position + 1)
            return ranked
        }
    }

    /// Both sides' hits fused by reciprocal rank, with the neighbouring turns' credit.
    ///
    /// The candidates sit in one array, each side's gains in arrays beside it, and a dictionary
    /// finds a handle's place: one lookup where a dictionary per side held a `Ranked` each.
    private func fuse(
        _ vector: [SearchHit], _ keyword: [SearchHit], state: borrowing State, admits: (Int32) -> Bool
    ) -> [Ranked] {
        var place: [Int32: Int] = [:]
        place.reserveCapacity(2 * (vector.count + keyword.count))
        var ranked: [Ranked] = []
        ranked.reserveCapacity(2 * (vector.count + keyword.count))
        // What each side gave each candidate, 1 / (c + rank), by place (0: not found by it).
        var gains: [[Float]] = [[], []]
        func candidate(_ handle: Int32) -> Int {
            if let known = place[handle] { return known }
            place[handle] = ranked.count
            ranked.append(Ranked(handle: handle, score: 0))
            gains[0].append(0)
            gains[1].append(0)
            return ranked.count - 1
        }
        for (sideIndex, (side, hits)) in [(Side.vector, vector), (Side.keyword, keyword)].enumerated() {
            for (position, hit) in hits.enumerated() {
                let i = candidate(hit.handle)
                gains[sideIndex][i] = 1 / (Self.fusionConstant + Float(position + 1))
                ranked[i].explanation.record(side, score: hit.score, rank: position + 1)
            }
        }
        // The found memories' neighbours are candidates too: the credit may lift them. Each
        // candidate's neighbours are looked up once.
        let found = ranked.count
        var neighbourhoods: [(turns: ArraySlice<Int32>, position: Int)?] = []
        neighbourhoods.reserveCapacity(ranked.capacity)
        for i in 0..<found {
            let neighbours = state.neighbours(of: ranked[i].handle, count: 1)
            neighbourhoods.append(neighbours)
            for turn in neighbours?.turns ?? [] where place[turn] == nil && admits(turn) { _ = candidate(turn) }
        }
        for i in found..<ranked.count { neighbourhoods.append(state.neighbours(of: ranked[i].handle, count: 1)) }
        for i in ranked.indices {
            var credit: Float = 0
            for gain in gains {
                ranked[i].score += gain[i]
                if let (turns, position) = neighbourhoods[i] {
                    var best: Float = 0
                    for (j, turn) in turns.enumerated() where j != position {
                        best = max(best, place[turn].map { gain[$0] } ?? 0)
                    }
                    credit += Self.neighbourCredit * best
                }
            }
            ranked[i].score += credit
            ranked[i].explanation.neighbours = credit
        }
        return ranked
    }

    /// Multiplies by `speakerBoost` the fused score of each memory whose speaker's words, stop
    /// words aside, are all among the query's (as the keyword index reads words: letters and
    /// digits, lowercased).
    private func weighSpeakers(_ ranked: inout [Ranked], namedIn query: String, state: borrowing State) {
        let words = Set(KeywordIndex.words(query))
        var named: [ExactString: Bool] = [:]
        for i in ranked.indices {
            guard let speaker = state.records[Int(ranked[i].handle)]?.speaker else { continue }
            let key = ExactString(speaker)
            let isNamed: Bool
            if let known = named[key] {
                isNamed = known
            } else {
                // A speaker called "I" or "me" is not named by every question that holds the word.
                let parts = KeywordIndex.words(speaker).filter { !KeywordIndex.stopWords.contains($0) }
                isNamed = !parts.isEmpty && parts.allSatisfy(words.contains)
                named[key] = isNamed
            }
            guard isNamed else { continue }
            ranked[i].score *= Self.speakerBoost
            ranked[i].explanation.speaker = Self.speakerBoost
        }
    }

    /// Credits each memory in a session with `sessionCredit` times the sum of the session's best
    /// `sessionBest` scores among the candidates (its own included). Each candidate's session is
    /// looked up once; each session's credit is summed once.
    private func creditSessions(_ ranked: inout [Ranked], state: borrowing State) {
        var sessionIndex: [ExactString: Int] = [:]
        var best: [[Float]] = []
        // Each candidate's session, by its place in `best` (nil: none).
        var sessionOf: [Int?] = []
        sessionOf.reserveCapacity(ranked.count)
        for candidate in ranked {
            guard let session = state.records[Int(candidate.handle)]?.session else {
                sessionOf.append(nil)
                continue
            }
            let key = ExactString(session)
            let index: Int
            if let known = sessionIndex[key] {
                index = known
            } else {
                index = best.count
                sessionIndex[key] = index
                best.append([])
            }
            sessionOf.append(index)
            Self.keep(candidate.score, among: &best[index])
        }
        // Summed in one order whatever order the candidates came in, so that a restart (another
        // hash seed) answers the same bits.
        let credits = best.map { Self.sessionCredit * $0.sorted(by: >).reduce(0, +) }
        for i in ranked.indices {
            guard let index = sessionOf[i] else { continue }
            ranked[i].score += credits[index]
            ranked[i].explanation.session = credits[index]
        }
    }

    /// Keeps `score` in `scores` if they hold fewer than `sessionBest` or a lower one (replaced).
    private static func keep(_ score: Float, among scores: inout [Float]) {
        if scores.count < sessionBest {
            scores.append(score)
        } else if let lowest = scores.indices.min(by: { scores[$0] < scores[$1] }), scores[lowest] < score {
            scores[lowest] = score
        }
    }

    /// The hits as returned: memories (without vectors), explanations when asked, and each
    /// hit's neighbouring turns that pass `visible` (none twice, none that is a hit).
    private func hits(
        _ ranked: [Ranked], request: SearchRequest, state: borrowing State, visible: RowFilter
    ) -> [ScoredMemory] {
        var shown = Set(ranked.map(\.handle))
        return ranked.compactMap { ranked in
            guard let record = state.records[Int(ranked.handle)] else { return nil }
            var context: [Memory] = []
            if request.context > 0, let (turns, _) = state.neighbours(of: ranked.handle, count: request.context) {
                for turn in turns where shown.insert(turn).inserted {
                    guard let neighbour = state.records[Int(turn)], visible.matches(neighbour.attributes) else {
                        continue
                    }
                    context.append(neighbour.memory(vector: []))
                }
            }
            return ScoredMemory(
                memory: record.memory(vector: []), score: ranked.score,
                explanation: request.explain ? ranked.explanation : nil, context: context)
        }
    }

    // MARK: - Reads through SQL

    /// A keyword hit: a memory row and its BM25 relevance (higher is better).
    struct KeywordHit: Sendable {
        var seq: Int64
        var score: Float
    }

    /// `user`'s best `limit` memories for the words of `text` that pass `filter`, best first,
    /// scored by BM25 over the user's own memories (see `KeywordIndex`).
    func keywordSearch(user: String, text: String, limit: Int, filter: MemoryFilter, now: Int64) throws -> [KeywordHit]
    {
        let terms = KeywordIndex.terms(text)
        guard !terms.isEmpty else { return [] }
        let generation = changes.generation(of: user)
        // Validity is tested on the records, below; what else the filter asks, through SQL.
        var conditions = filter
        conditions.rows.validAt = nil
        let allowed = conditions.isEmpty ? nil : try matchingHandles(user, conditions, now)
        // Each row holding a word, side by side: its `seq`, and in `counts`, from `row * stride`,
        // its tokens and how often it holds each word (`term_counts`).
        let stride = terms.count + 1
        var seqs: [Int64] = []
        var counts: [Int32] = []
        let totals = try withReader { database -> KeywordTotals in
            let matches = try database.cachedStatement(KeywordIndex.matches)
            try matches.bind([KeywordIndex.matchExpression(user: user, terms: terms)])
            while try matches.step() {
                let read = matches.appendInt32s(at: 1, to: &counts)
                if read == stride {
                    seqs.append(matches.int64(at: 0))
                } else {
                    counts.removeLast(read)
                }
            }
            matches.reset()
            return try keywordTotals(user: user, generation: generation, database)
        }
        // The user's rows (two users' scope tokens may be the same: the rows of others are left
        // out of everything, statistics included), and of those, the ones the filter (and expiry,
        // and validity) lets through: the filter narrows what is returned, not the statistics.
        var visible = RowFilter()
        visible.validAt = filter.rows.validAt
        var holding = Array(repeating: 0, count: terms.count)
        var returned: [Int] = []
        state.read { state in
            if state.expiring > 0 { visible.liveAt = now }
            for row in seqs.indices {
                // The record's fields read in place (binding a whole `Record` would retain its strings).
                guard let handle = state.handleOfSeq[seqs[row]],
                    state.records[Int(handle)]?.user.bytewiseEquals(user) == true
                else { continue }
                for term in 0..<terms.count where counts[row * stride + 1 + term] > 0 { holding[term] += 1 }
                if let allowed, !allowed.contains(handle) { continue }
                if !visible.isEmpty, let attributes = state.records[Int(handle)]?.attributes,
                    !visible.matches(attributes)
                {
                    continue
                }
                returned.append(row)
            }
        }
        var hits: [KeywordHit] = []
        hits.reserveCapacity(returned.count)
        counts.withUnsafeBufferPointer { counts in
            for row in returned {
                let score = KeywordIndex.bm25(
                    rows: totals.rows, tokens: totals.tokens, holding: holding,
                    occurrences: counts[(row * stride + 1)..<((row + 1) * stride)], length: Int(counts[row * stride]))
                hits.append(KeywordHit(seq: seqs[row], score: Float(score)))
            }
        }
        return hits.best(limit) { $0.score != $1.score ? $0.score > $1.score : $0.seq < $1.seq }
    }

    /// A user's rows and their tokens (all columns), for BM25.
    struct KeywordTotals: Sendable {
        var rows: Int
        var tokens: Int
    }

    /// `user`'s `KeywordTotals`, kept until the user's memories change (read at `generation`).
    private func keywordTotals(user: String, generation: Generation, _ database: Database) throws -> KeywordTotals {
        if let kept = keywordStatistics.totals(user: user, generation: generation) { return kept }
        let rows = try database.cachedStatement(KeywordIndex.userSizes)
        try rows.bind([user])
        var totals = KeywordTotals(rows: 0, tokens: 0)
        while try rows.step() {
            totals.rows += 1
            totals.tokens += KeywordIndex.tokens(inSizes: rows.bytes(at: 1))
        }
        rows.reset()
        keywordStatistics.keep(totals, user: user, generation: generation)
        return totals
    }

    /// The handles of `user`'s memories that pass `filter` (metadata conditions included).
    func matchingHandles(_ user: String, _ filter: MemoryFilter, _ now: Int64) throws -> Set<Int32> {
        var arguments: StatementArguments = []
        let sql =
            "SELECT seq FROM memories WHERE "
            + SQL.condition(user: user, filter: filter, now: now, arguments: &arguments)
        let seqs = try withReader { database in
            let rows = try database.cachedStatement(sql)
            try rows.bind(arguments)
            var seqs: [Int64] = []
            while try rows.step() { seqs.append(rows.int64(at: 0)) }
            rows.reset()
            return seqs
        }
        return state.read { state in Set(seqs.compactMap { state.handleOfSeq[$0] }) }
    }
}

extension Explanation {
    mutating func record(_ side: MemoryStore.Side, score: Float, rank: Int) {
        switch side {
        case .vector:
            vectorScore = score
            vectorRank = rank
        case .keyword:
            keywordScore = score
            keywordRank = rank
        }
    }
}
