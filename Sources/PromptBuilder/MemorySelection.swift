/// Which pinned facts, memories and turns a prompt may hold before the budget is applied: each
/// text once, memories that say nearly what another item says left out, the rest of the memories
/// ordered by maximal marginal relevance and cut at the request's limit.
enum MemorySelection {
    /// How much a memory's relevance weighs against its likeness to what is already chosen
    /// (Carbonell and Goldstein's lambda; 1 = relevance alone).
    static let relevanceWeight = 0.7
    /// Cosine similarity from which a memory counts as a near-duplicate of a chosen item.
    static let nearDuplicate: Float = 0.95

    struct Selected {
        var pinned: [PromptItem] = []
        var recent: [PromptItem] = []
        /// In the order the prompt shows them: relevant first, diversified.
        var memories: [PromptItem] = []
        var dropped: [Prompt.Dropped] = []
    }

    static func select(_ request: PromptRequest) -> Selected {
        var selected = Selected()
        // Each id and each text once: a memory that repeats a pinned fact, a recent turn, an
        // earlier memory or the query adds nothing.
        var texts: Set<String> = [PromptBuilder.normalized(request.query)]
        var ids = Set<String>()
        func isNew(_ item: PromptItem) -> Bool {
            let newID = ids.insert(item.id).inserted
            return texts.insert(PromptBuilder.normalized(item.text)).inserted && newID
        }
        for item in request.pinned {
            if isNew(item) {
                selected.pinned.append(item)
            } else {
                selected.dropped.append(.init(id: item.id, reason: .duplicate))
            }
        }
        for item in request.recent {
            if isNew(item) {
                selected.recent.append(item)
            } else {
                selected.dropped.append(.init(id: item.id, reason: .duplicate))
            }
        }
        var candidates: [Candidate] = []
        for (rank, item) in request.memories.enumerated() {
            if isNew(item) {
                candidates.append(Candidate(item: item, rank: rank))
            } else {
                selected.dropped.append(.init(id: item.id, reason: .duplicate))
            }
        }
        normalizeRelevance(&candidates)
        // Near-duplicates of what the prompt already holds, then maximal marginal relevance:
        // each next memory is the one best in relevance less likeness to those chosen.
        for item in selected.pinned + selected.recent {
            note(chosen: item, in: &candidates, dropped: &selected.dropped)
        }
        while !candidates.isEmpty {
            if let limit = request.limit, selected.memories.count >= limit {
                selected.dropped += candidates.map { .init(id: $0.item.id, reason: .limit) }
                break
            }
            var best = 0
            for index in candidates.indices.dropFirst() where candidates[index].value > candidates[best].value {
                best = index
            }
            let chosen = candidates.remove(at: best).item
            selected.memories.append(chosen)
            note(chosen: chosen, in: &candidates, dropped: &selected.dropped)
        }
        return selected
    }

    struct Candidate {
        var item: PromptItem
        /// Place in the request's list (ties go to the earlier).
        var rank: Int
        /// Relevance scaled to 0...1.
        var relevance = 0.0
        /// The highest cosine similarity to a chosen item.
        var likeness: Float = 0
        /// The length of `item.vector`.
        var norm: Float = 0

        init(item: PromptItem, rank: Int) {
            self.item = item
            self.rank = rank
            norm = item.vector.map { Self.dot($0, $0).squareRoot() } ?? 0
        }

        /// Maximal marginal relevance.
        var value: Double {
            MemorySelection.relevanceWeight * relevance - (1 - MemorySelection.relevanceWeight) * Double(likeness)
        }

        func cosine(_ other: [Float], norm otherNorm: Float) -> Float? {
            guard let vector = item.vector, vector.count == other.count, norm > 0, otherNorm > 0 else { return nil }
            return Self.dot(vector, other) / (norm * otherNorm)
        }

        static func dot(_ a: [Float], _ b: [Float]) -> Float {
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    var sum: Float = 0
                    for i in 0..<a.count { sum += a[i] * b[i] }
                    return sum
                }
            }
        }
    }

    /// Relevance as given (the search's scores) or, without scores, by place; scaled to 0...1
    /// so that it weighs against cosine likeness the same way for any kind of score.
    private static func normalizeRelevance(_ candidates: inout [Candidate]) {
        let scores = candidates.map { $0.item.relevance ?? 1 / Double($0.rank + 1) }
        guard let low = scores.min(), let high = scores.max() else { return }
        for index in candidates.indices {
            candidates[index].relevance = high > low ? (scores[index] - low) / (high - low) : 1
        }
    }

    /// Raises each candidate's likeness to `chosen`, and drops those it nearly repeats.
    private static func note(chosen: PromptItem, in candidates: inout [Candidate], dropped: inout [Prompt.Dropped]) {
        guard let vector = chosen.vector else { return }
        let norm = Candidate.dot(vector, vector).squareRoot()
        var kept: [Candidate] = []
        for var candidate in candidates {
            if let cosine = candidate.cosine(vector, norm: norm) {
                guard cosine < nearDuplicate else {
                    dropped.append(.init(id: candidate.item.id, reason: .duplicate))
                    continue
                }
                candidate.likeness = max(candidate.likeness, cosine)
            }
            kept.append(candidate)
        }
        candidates = kept
    }
}
