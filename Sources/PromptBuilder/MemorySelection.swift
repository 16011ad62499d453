import ContextModel

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
        // The dialogue first: a pinned turn among the recent ones stays where it was said (a
        // hole in the dialogue would change what the turns around it mean), not in the facts.
        for item in request.recent {
            if isNew(item) {
                selected.recent.append(item)
            } else {
                selected.dropped.append(.init(id: item.id, reason: .duplicate))
            }
        }
        for item in request.pinned {
            if isNew(item) {
                selected.pinned.append(item)
            } else {
                selected.dropped.append(.init(id: item.id, reason: .duplicate))
            }
        }
        var candidates = Candidates()
        for item in request.memories {
            if isNew(item) {
                candidates.append(item)
            } else {
                selected.dropped.append(.init(id: item.id, reason: .duplicate))
            }
        }
        candidates.normalizeRelevance()
        // Near-duplicates of what the prompt already holds, then maximal marginal relevance:
        // each next memory is the one best in relevance less likeness to those chosen.
        for item in selected.pinned + selected.recent {
            candidates.note(chosen: item.vector.map(Vectors.unit), dropped: &selected.dropped)
        }
        while let best = candidates.best() {
            if let limit = request.limit, selected.memories.count >= limit {
                selected.dropped += candidates.remaining.map { .init(id: $0.id, reason: .limit) }
                break
            }
            selected.memories.append(candidates.items[best])
            candidates.alive[best] = false
            candidates.note(chosen: candidates.vector(best), dropped: &selected.dropped)
        }
        return selected
    }

    /// The memories still to choose from, their vectors side by side (unit length, so a dot
    /// product is their cosine) and their standing.
    struct Candidates {
        var items: [PromptItem] = []
        var alive: [Bool] = []
        /// Relevance scaled to 0...1.
        var relevance: [Double] = []
        /// The highest cosine similarity to a chosen item.
        var likeness: [Float] = []
        /// Where each candidate's vector starts in `vectors`; nil without one.
        var offsets: [Int?] = []
        var vectors: [Float] = []
        var dimension: Int?

        mutating func append(_ item: PromptItem) {
            items.append(item)
            alive.append(true)
            likeness.append(0)
            if let vector = item.vector, !vector.isEmpty, dimension == nil || dimension == vector.count {
                dimension = vector.count
                offsets.append(vectors.count)
                vectors += Vectors.unit(vector)
            } else {
                offsets.append(nil)
            }
        }

        var remaining: [PromptItem] { items.indices.filter { alive[$0] }.map { items[$0] } }

        func vector(_ index: Int) -> [Float]? {
            guard let offset = offsets[index], let dimension else { return nil }
            return Array(vectors[offset..<offset + dimension])
        }

        /// Relevance as given (the search's scores) or, without scores, by place; scaled to 0...1
        /// so that it weighs against cosine likeness the same way for any kind of score.
        mutating func normalizeRelevance() {
            let scores = items.indices.map { items[$0].relevance ?? 1 / Double($0 + 1) }
            guard let low = scores.min(), let high = scores.max() else { return }
            relevance = scores.map { high > low ? ($0 - low) / (high - low) : 1 }
        }

        /// The living candidate of the highest marginal relevance (ties: the earlier).
        func best() -> Int? {
            var best: Int?
            var bestValue = -Double.infinity
            for index in items.indices where alive[index] {
                let value =
                    relevanceWeight * relevance[index] - (1 - relevanceWeight) * Double(likeness[index])
                if value > bestValue {
                    best = index
                    bestValue = value
                }
            }
            return best
        }

        /// Raises each living candidate's likeness to `chosen` (a unit vector), and drops those
        /// it nearly repeats.
        mutating func note(chosen: [Float]?, dropped: inout [Prompt.Dropped]) {
            guard let chosen, chosen.count == dimension else { return }
            for index in items.indices where alive[index] {
                guard let offset = offsets[index] else { continue }
                let cosine = vectors.withUnsafeBufferPointer { rows in
                    chosen.withUnsafeBufferPointer {
                        Vectors.dot(rows.baseAddress! + offset, $0.baseAddress!, $0.count)
                    }
                }
                if cosine >= nearDuplicate {
                    alive[index] = false
                    dropped.append(.init(id: items[index].id, reason: .duplicate))
                } else {
                    likeness[index] = max(likeness[index], cosine)
                }
            }
        }
    }
}
