import ContextModel

/// Which pinned facts, memories and turns a prompt may hold before the budget is applied: each
/// text once, memories that say nearly what another item says left out, the rest of the memories
/// in order of relevance and cut at the request's limit.
///
/// The memories are not diversified beyond that (maximal marginal relevance was measured and
/// removed, docs/BENCHMARKS.md): a prompt holds tens of memories, and the turns that answer a
/// question together (each painting a person mentioned) are alike, so trading relevance for
/// difference pushed evidence out at every budget measured.
enum MemorySelection {
    /// Cosine similarity from which a memory counts as a near-duplicate of a chosen item.
    static let nearDuplicate: Float = 0.95

    struct Selected {
        var pinned: [PromptItem] = []
        var recent: [PromptItem] = []
        /// Most relevant first.
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
        // Near-duplicates of what the prompt already holds, then the most relevant first, each
        // taking its own near-duplicates out of the running.
        for item in selected.pinned + selected.recent {
            candidates.note(chosen: item.vector.map(Vectors.unit), dropped: &selected.dropped)
        }
        for best in candidates.byRelevance where candidates.alive[best] {
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

    /// The memories still to choose from, and their vectors side by side (unit length, so a dot
    /// product is their cosine).
    struct Candidates {
        var items: [PromptItem] = []
        var alive: [Bool] = []
        /// Where each candidate's vector starts in `vectors`; nil without one.
        var offsets: [Int?] = []
        var vectors: [Float] = []
        var dimension: Int?

        mutating func append(_ item: PromptItem) {
            items.append(item)
            alive.append(true)
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

        /// The candidates' indices, most relevant first: by the search's score, or without one by
        /// place (1 / (place + 1), as if the items came ranked); ties keep the given order.
        var byRelevance: [Int] {
            let relevance = items.indices.map { items[$0].relevance ?? 1 / Double($0 + 1) }
            return items.indices.sorted { (relevance[$0], $1) > (relevance[$1], $0) }
        }

        /// Drops the living candidates `chosen` (a unit vector) nearly repeats.
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
                }
            }
        }
    }
}
