import CKernels
import ContextModel

#if canImport(Glibc)
    import Glibc
#endif

/// The links of an HNSW graph (Malkov & Yashunin, 2016/2018) and the algorithms that change
/// them: planning and applying a node's links, removing nodes, re-attaching orphans. The
/// vectors the algorithms score are a `VectorCodes` passed in (FAISS splits its HNSW the same
/// way, graph apart from storage); ids, users and visibility are the `SlotTable`'s.
///
/// Memory layout (after hnswlib): a node is a dense slot number. Layer 0's links are one flat
/// `Int32` array with a fixed stride of `1 + 2M` per slot (a count, then the neighbours); a
/// node's links on layers 1...level sit in its own array with a stride of `1 + M` per layer. A
/// slot with no node has level -1.
struct HNSWGraph: Sendable {
    let M: Int
    let efConstruction: Int
    private(set) var levels: [Int32] = []
    private(set) var layer0: [Int32] = []
    private var upper: [[Int32]] = []
    /// How many layer-0 links point at each slot; a node that would lose its last one is
    /// re-attached, so every node stays reachable.
    private(set) var inDegree: [Int32] = []
    private(set) var freeSlots: [Int32] = []
    private(set) var entryPoint: Int32 = -1
    private(set) var topLevel = -1
    /// Slots whose links changed since the owner last took them.
    var changedSlots: Set<Int32> = []

    var maxLinks0: Int { 2 * M }
    var stride0: Int { 1 + maxLinks0 }
    var strideUpper: Int { 1 + M }

    init(M: Int, efConstruction: Int) {
        self.M = M
        self.efConstruction = efConstruction
    }

    mutating func reserveCapacity(_ slots: Int) {
        levels.reserveCapacity(slots)
        layer0.reserveCapacity(slots * stride0)
        upper.reserveCapacity(slots)
        inDegree.reserveCapacity(slots)
    }

    /// Slots in use or free.
    var slotCount: Int { levels.count }

    /// Whether `slot` holds a node.
    func holdsNode(_ slot: Int32) -> Bool { levels[Int(slot)] >= 0 }

    /// Bytes held by links (an estimate).
    var memoryBytes: Int {
        layer0.capacity * 4 + upper.reduce(0) { $0 + $1.capacity * 4 }
            + levels.count * (8 + MemoryLayout<[Int32]>.stride)
    }

    // MARK: - Slots

    /// A slot for a new node of `level` with no links: a free one, or a new one at the end.
    mutating func takeSlot(level: Int) -> Int32 {
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
        } else {
            slot = appendFreeSlot()
        }
        levels[Int(slot)] = Int32(level)
        upper[Int(slot)] = [Int32](repeating: 0, count: level * strideUpper)
        changedSlots.insert(slot)
        return slot
    }

    /// Adds a slot with no node at the end.
    mutating func appendFreeSlot() -> Int32 {
        levels.append(-1)
        layer0.append(contentsOf: repeatElement(0, count: stride0))
        upper.append([])
        inDegree.append(0)
        return Int32(levels.count - 1)
    }

    // MARK: - Links

    func links(_ slot: Int32, level: Int) -> ArraySlice<Int32> {
        if level == 0 {
            let base = Int(slot) * stride0
            return layer0[base + 1..<base + 1 + Int(layer0[base])]
        }
        let base = (level - 1) * strideUpper
        let list = upper[Int(slot)]
        return list[base + 1..<base + 1 + Int(list[base])]
    }

    /// Replaces `slot`'s links on `level`, keeping the in-degree counts of layer 0 and recording
    /// the change. Returns the layer-0 targets left with no link pointing at them.
    @discardableResult
    mutating func setLinks(_ slot: Int32, level: Int, _ neighbours: some Collection<Int32>) -> [Int32] {
        changedSlots.insert(slot)
        if level == 0 {
            let base = Int(slot) * stride0
            var orphans: [Int32] = []
            for i in 0..<Int(layer0[base]) {
                let old = Int(layer0[base + 1 + i])
                inDegree[old] -= 1
                if inDegree[old] == 0 { orphans.append(Int32(old)) }
            }
            layer0[base] = Int32(neighbours.count)
            for (i, n) in neighbours.enumerated() {
                layer0[base + 1 + i] = n
                inDegree[Int(n)] += 1
            }
            return orphans.filter { inDegree[Int($0)] == 0 }
        }
        let base = (level - 1) * strideUpper
        upper[Int(slot)][base] = Int32(neighbours.count)
        for (i, n) in neighbours.enumerated() { upper[Int(slot)][base + 1 + i] = n }
        return []
    }

    // MARK: - Search within one layer

    /// The `ef` closest nodes to `query` on `level` reachable from `entries`, closest first.
    /// Nodes failing `accept` are walked through but not kept. `userOfSlot` is prefetched with
    /// each neighbour's code, for an `accept` that reads it.
    func searchLayer(
        _ query: UnsafePointer<Float>, codes: VectorCodes, userOfSlot: [Int32], entries: [Int32], ef: Int,
        level: Int, visited: VisitedSet, accept: (Int32) -> Bool
    ) -> [(score: Float, slot: Int32)] {
        var candidates = ScoreHeap(maxOnTop: true)
        var results = ScoreHeap(maxOnTop: false)
        var fresh: [Int32] = []
        fresh.reserveCapacity(maxLinks0)
        let codeBytes = codes.codeBytes
        codes.withCodes { base in
            userOfSlot.withUnsafeBufferPointer { users in
                layer0.withUnsafeBufferPointer { links0 in
                    for entry in entries where visited.insert(entry) {
                        let s = codes.score(query, codes.code(base, entry))
                        candidates.push(s, entry)
                        if accept(entry) { results.push(s, entry) }
                    }
                    while let (candidateScore, candidate) = candidates.pop() {
                        if results.count >= ef, let worst = results.top, candidateScore < worst.score { break }
                        // The next candidate's links, while this one's neighbours are scored.
                        if let next = candidates.top { ck_prefetch(links0.baseAddress! + Int(next.slot) * stride0) }
                        // Gather the unvisited neighbours first and prefetch their vectors and
                        // scopes, so the loads overlap the scoring (hnswlib does the same).
                        fresh.removeAll(keepingCapacity: true)
                        if level == 0 {
                            let start = Int(candidate) * stride0
                            let count = Int(links0[start])
                            for i in 0..<count { visited.prefetch(links0[start + 1 + i]) }
                            for i in 0..<count where visited.insert(links0[start + 1 + i]) {
                                let neighbour = links0[start + 1 + i]
                                fresh.append(neighbour)
                                ck_prefetch(codes.code(base, neighbour))
                                ck_prefetch(users.baseAddress! + Int(neighbour))
                            }
                        } else {
                            for neighbour in links(candidate, level: level) where visited.insert(neighbour) {
                                fresh.append(neighbour)
                            }
                        }
                        // Each whole code one step ahead of its scoring: a walk waits on memory, and
                        // the first line alone (hnswlib's prefetch) left most of the wait (ef 64: 3,439
                        // against 4,375 queries/s on 50,000 WordNet vectors).
                        if let first = fresh.first { ck_prefetch_range(codes.code(base, first), codeBytes) }
                        for (j, neighbour) in fresh.enumerated() {
                            if j + 1 < fresh.count { ck_prefetch_range(codes.code(base, fresh[j + 1]), codeBytes) }
                            let s = codes.score(query, codes.code(base, neighbour))
                            if results.count < ef || s > results.top!.score {
                                candidates.push(s, neighbour)
                                if accept(neighbour) {
                                    results.push(s, neighbour)
                                    if results.count > ef { _ = results.pop() }
                                }
                            }
                        }
                    }
                }
            }
        }
        return results.sortedBestFirst()
    }

    /// Greedy descent on one upper layer: move to the closest neighbour until none is closer.
    /// Without a filter and with one result, this needs no heaps and no visited set.
    func closest(to query: UnsafePointer<Float>, from start: Int32, level: Int, codes: VectorCodes) -> Int32 {
        codes.withCodes { base in
            var current = start
            var best = codes.score(query, codes.code(base, current))
            var moved = true
            while moved {
                moved = false
                for neighbour in links(current, level: level) {
                    let s = codes.score(query, codes.code(base, neighbour))
                    if s > best {
                        best = s
                        current = neighbour
                        moved = true
                    }
                }
            }
            return current
        }
    }

    /// The entry of a walk on layer 0: the greedy descent from the entry point through the
    /// upper layers.
    func descend(to query: UnsafePointer<Float>, codes: VectorCodes, through lowest: Int = 1) -> Int32 {
        var entry = entryPoint
        if topLevel >= lowest {
            for layer in stride(from: topLevel, through: lowest, by: -1) {
                entry = closest(to: query, from: entry, level: layer, codes: codes)
            }
        }
        return entry
    }

    /// The neighbour-selection heuristic (the paper's Algorithm 4): walk the candidates from the
    /// closest, keeping one only if it is closer to the base than to every one kept so far.
    func selectNeighbours(_ candidates: [(score: Float, slot: Int32)], max: Int, codes: VectorCodes) -> [Int32] {
        guard candidates.count > max else { return candidates.map(\.slot) }
        var kept: [Int32] = []
        for candidate in candidates {
            if kept.count >= max { break }
            if isDiverse(candidate, from: kept, codes: codes) { kept.append(candidate.slot) }
        }
        return kept
    }

    /// Whether `candidate` (scored against the node being linked) is closer to that node than
    /// to every node in `kept`, and no copy of one: the heuristic's test.
    ///
    /// A copy (the same code) of a kept node is never diverse. The paper's test keeps ties, so
    /// without this rule a node of many copies (a greeting stored a thousand times) filled its
    /// lists with its copies and lost its links out: the copies became a clique that walks
    /// entered and could not leave (50 copies each of 40 vectors among 3,000 nodes: recall@10
    /// 0.56, against 0.70 when each copy is moved by 0.001; with int8 codes 12 nodes were
    /// unreachable). Now a node keeps one link into its copies, and `reattach` keeps every copy
    /// reachable. (Two links into its copies gave 0.65: walks spent their width on copies.)
    func isDiverse(_ candidate: (score: Float, slot: Int32), from kept: [Int32], codes: VectorCodes) -> Bool {
        guard !kept.isEmpty else { return true }
        return codes.withVector(candidate.slot) { point in
            codes.withCodes { base in
                let own = codes.code(base, candidate.slot)
                return kept.allSatisfy { other in
                    let code = codes.code(base, other)
                    // Distinct codes differ in their first bytes, so the comparison is short.
                    return codes.score(point, code) <= candidate.score && memcmp(own, code, codes.codeBytes) != 0
                }
            }
        }
    }

    /// `candidates` scored against `node`, closest first.
    func scored(_ candidates: some Sequence<Int32>, from node: Int32, codes: VectorCodes) -> [(
        score: Float, slot: Int32
    )] {
        codes.withVector(node) { point in
            codes.withCodes { base in
                candidates.map { (codes.score(point, codes.code(base, $0)), $0) }.sorted { $0.score > $1.score }
            }
        }
    }

    // MARK: - Insert

    /// The links a new node gets and the ones its neighbours get in return: computed without
    /// changing the graph.
    struct LinkPlan: Sendable {
        let slot: Int32
        /// The node's own links, layer 0 first.
        var own: [[Int32]] = []
        /// Neighbours' new link lists: (node, layer, links).
        var updates: [(node: Int32, level: Int, links: [Int32])] = []
    }

    /// Finds `slot`'s neighbours on each of its layers (the paper's Algorithm 1) and how each
    /// neighbour's links change to point back, pruned by the heuristic when they overflow.
    func plan(for slot: Int32, codes: VectorCodes, userOfSlot: [Int32], visited: VisitedSet) -> LinkPlan {
        var plan = LinkPlan(slot: slot)
        guard entryPoint >= 0 else { return plan }
        let level = Int(levels[Int(slot)])
        let query = codes.decode(slot)
        query.withUnsafeBufferPointer { query in
            let q = query.baseAddress!
            var entries = [descend(to: q, codes: codes, through: level + 1)]
            plan.own = Array(repeating: [], count: min(level, topLevel) + 1)
            for layer in stride(from: min(level, topLevel), through: 0, by: -1) {
                visited.reset()
                let found = searchLayer(
                    q, codes: codes, userOfSlot: userOfSlot, entries: entries, ef: efConstruction, level: layer,
                    visited: visited
                ) { _ in true }
                let neighbours = selectNeighbours(found, max: M, codes: codes)
                plan.own[layer] = neighbours
                let maxLinks = layer == 0 ? maxLinks0 : M
                for neighbour in neighbours {
                    var current = Array(links(neighbour, level: layer))
                    current.append(slot)
                    if current.count > maxLinks {
                        current = selectNeighbours(
                            scored(current, from: neighbour, codes: codes), max: maxLinks, codes: codes)
                    }
                    plan.updates.append((neighbour, layer, current))
                }
                entries = found.map(\.slot)
            }
        }
        return plan
    }

    /// Writes a plan's links; the node becomes the entry point when it is the highest.
    mutating func apply(_ plan: LinkPlan, codes: VectorCodes) {
        var orphans: [Int32] = []
        for (layer, neighbours) in plan.own.enumerated() {
            orphans += setLinks(plan.slot, level: layer, neighbours)
        }
        for update in plan.updates {
            orphans += setLinks(update.node, level: update.level, update.links)
        }
        if inDegree[Int(plan.slot)] == 0 { orphans.append(plan.slot) }
        let level = Int(levels[Int(plan.slot)])
        if entryPoint < 0 || level > topLevel {
            entryPoint = plan.slot
            topLevel = level
        }
        reattach(orphans, codes: codes)
    }

    /// Gives each node no layer-0 link points at one again: its closest neighbour with room
    /// takes it, or else the closest gives up its farthest link whose target has another.
    /// (Pruning by the heuristic can drop a node's last incoming link; unreachable, it would
    /// never be found again.)
    mutating func reattach(_ orphans: [Int32], codes: VectorCodes) {
        for orphan in orphans where inDegree[Int(orphan)] == 0 && orphan != entryPoint && holdsNode(orphan) {
            for (_, neighbour) in scored(links(orphan, level: 0), from: orphan, codes: codes) {
                var current = Array(links(neighbour, level: 0))
                if current.count < maxLinks0 {
                    current.append(orphan)
                } else {
                    let spare = scored(current, from: neighbour, codes: codes).last { inDegree[Int($0.slot)] > 1 }
                    guard let spare, let at = current.firstIndex(of: spare.slot) else { continue }
                    current[at] = orphan
                }
                setLinks(neighbour, level: 0, current)
                break
            }
        }
    }

    // MARK: - Remove

    /// What removing some nodes changes: the nodes and, for every node that linked to one of
    /// them, its repaired links per layer.
    struct RemovalPlan: Sendable {
        var doomed: [Int32] = []
        var repairs: [(node: Int32, layer: Int, links: [Int32])] = []
    }

    /// Computes the removal of `doomed` (distinct nodes) without changing anything (after
    /// FreshDiskANN): a node that linked to a removed one keeps its other links and fills the
    /// freed places from the removed node's links on that layer, diverse ones first (the
    /// heuristic), then the closest. Re-selecting the whole list instead lost recall: deleting
    /// half of a graph and inserting it again gave 0.91 against 0.94 for a fresh build, keeping
    /// the survivors 0.94. Finding who links to a removed node takes one pass over all links (no
    /// reverse links are kept), so a batch of removals costs one pass, not one per node.
    func planRemoval(of doomed: [Int32], codes: VectorCodes) -> RemovalPlan {
        var plan = RemovalPlan(doomed: doomed)
        guard !doomed.isEmpty else { return plan }
        var isDoomed = [Bool](repeating: false, count: slotCount)
        for slot in doomed { isDoomed[Int(slot)] = true }
        for node in 0..<Int32(slotCount) where holdsNode(node) && !isDoomed[Int(node)] {
            for layer in 0...Int(levels[Int(node)]) {
                guard links(node, level: layer).contains(where: { isDoomed[Int($0)] }) else { continue }
                let current = links(node, level: layer)
                var kept = current.filter { !isDoomed[Int($0)] }
                var seen = Set(kept)
                seen.insert(node)
                var candidates: [Int32] = []
                for gone in current where isDoomed[Int(gone)] {
                    for neighbour in links(gone, level: layer)
                    where !isDoomed[Int(neighbour)] && seen.insert(neighbour).inserted {
                        candidates.append(neighbour)
                    }
                }
                let maxLinks = layer == 0 ? maxLinks0 : M
                let ranked = scored(candidates, from: node, codes: codes)
                for candidate in ranked where kept.count < maxLinks && isDiverse(candidate, from: kept, codes: codes) {
                    kept.append(candidate.slot)
                }
                var inKept = Set(kept)
                for candidate in ranked where kept.count < maxLinks && inKept.insert(candidate.slot).inserted {
                    kept.append(candidate.slot)
                }
                plan.repairs.append((node, layer, kept))
            }
        }
        return plan
    }

    /// Applies a plan from `planRemoval`: writes the repaired links, frees the removed nodes'
    /// slots, picks a new entry point if it went, and re-attaches any node left without in-links.
    mutating func apply(_ plan: RemovalPlan, codes: VectorCodes) {
        let doomed = plan.doomed
        guard !doomed.isEmpty else { return }
        var orphans: [Int32] = []
        for repair in plan.repairs { orphans += setLinks(repair.node, level: repair.layer, repair.links) }
        for slot in doomed {
            for layer in 0...Int(levels[Int(slot)]) { orphans += setLinks(slot, level: layer, []) }
            levels[Int(slot)] = -1
            upper[Int(slot)] = []
            freeSlots.append(slot)
        }
        if entryPoint >= 0, doomed.contains(entryPoint) {
            entryPoint = -1
            topLevel = -1
            for node in 0..<slotCount where Int(levels[node]) > topLevel {
                entryPoint = Int32(node)
                topLevel = Int(levels[node])
            }
        }
        reattach(orphans, codes: codes)
    }

    // MARK: - Restore

    /// Puts back a stored node's links in the free `slot`, growing the graph to hold it.
    mutating func restore(_ slot: Int32, layers: [[Int32]]) -> Bool {
        let i = Int(slot)
        guard !holdsNode(slot) else { return false }
        levels[i] = Int32(layers.count - 1)
        upper[i] = [Int32](repeating: 0, count: (layers.count - 1) * strideUpper)
        for (layer, neighbours) in layers.enumerated() {
            if layer == 0 {
                let base = i * stride0
                layer0[base] = Int32(neighbours.count)
                for (j, n) in neighbours.enumerated() { layer0[base + 1 + j] = n }
            } else {
                let base = (layer - 1) * strideUpper
                upper[i][base] = Int32(neighbours.count)
                for (j, n) in neighbours.enumerated() { upper[i][base + 1 + j] = n }
            }
        }
        return true
    }

    /// Checks every link of the restored nodes, counts in-degrees and collects the free slots.
    mutating func finishRestoring(entryPoint: Int32, empty: Bool) throws(HNSWRestoreError) {
        for node in 0..<slotCount where levels[node] >= 0 {
            for layer in 0...Int(levels[node]) {
                for target in links(Int32(node), level: layer) {
                    guard target >= 0, Int(target) < slotCount, levels[Int(target)] >= layer, target != Int32(node)
                    else {
                        throw HNSWRestoreError(description: "node \(node) links to \(target), which has no node there")
                    }
                    if layer == 0 { inDegree[Int(target)] += 1 }
                }
            }
        }
        freeSlots = (0..<Int32(slotCount)).filter { !holdsNode($0) }.reversed()
        changedSlots = []
        guard !empty else {
            self.entryPoint = -1
            topLevel = -1
            return
        }
        guard entryPoint >= 0, Int(entryPoint) < slotCount, holdsNode(entryPoint) else {
            throw HNSWRestoreError(description: "the entry point \(entryPoint) has no node")
        }
        self.entryPoint = entryPoint
        topLevel = Int(levels[Int(entryPoint)])
    }
}
