import CKernels
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The settings of an HNSW graph, by the names the paper uses.
public struct HNSWParameters: Sendable, Equatable {
    /// Links per node on the upper layers; layer 0 keeps `2 M`.
    public var M: Int
    /// Candidates kept while linking a new node.
    public var efConstruction: Int
    /// Candidates kept while searching, unless a search asks for another `ef`.
    public var efSearch: Int
    /// Seeds the level generator, so a build is reproducible.
    public var seed: UInt64

    public init(M: Int = 16, efConstruction: Int = 200, efSearch: Int = 64, seed: UInt64 = 42) {
        precondition(M >= 2 && efConstruction >= 1 && efSearch >= 1)
        self.M = M
        self.efConstruction = efConstruction
        self.efSearch = efSearch
        self.seed = seed
    }
}

/// A Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016/2018) for approximate
/// nearest-neighbour search.
///
/// Memory layout (after hnswlib): a node is a dense slot number. Vectors are one contiguous
/// row-major float32 array indexed by slot. Layer 0's links are one flat `Int32` array with a
/// fixed stride of `1 + 2M` per slot (a count, then the neighbours); a node's links on layers
/// 1...level sit in its own array with a stride of `1 + M` per layer. The external id of a slot is
/// kept apart from it (`ids`, `slots`).
///
/// Scores are "higher is closer" (inner product; `-|a - b|^2` for l2) and are computed pair by
/// pair with a SIMD kernel. Searches may filter: a node that fails the filter (or is deleted) is
/// still walked through but never returned.
///
/// Not thread-safe: the owner serializes writers against readers.
public struct HNSWIndex: Sendable {
    public let dimension: Int
    public let metric: Metric
    public let parameters: HNSWParameters
    /// The pair kernel for this metric, picked once from what the processor supports.
    private let kernel: ck_pair_kernel

    private var vectors: [Float] = []
    private var levels: [Int32] = []
    private var layer0: [Int32] = []
    private var upper: [[Int32]] = []
    private var ids: [String] = []
    private var slots: [String: Int32] = [:]
    private var deleted: [Bool] = []
    private var attributes: [RowAttributes] = []
    /// Each node's user as a small number, so the scope check in a walk compares integers.
    private var userOfSlot: [Int32] = []
    private var userNumbers: [String: Int32] = [:]
    /// Visited sets kept between searches: allocating and zeroing one per query cost more than
    /// the walk on small graphs.
    private let scratch = ScratchPool()
    private var entryPoint: Int32 = -1
    private var topLevel = -1
    private var random: UInt64
    private var liveCount = 0

    private var maxLinks0: Int { 2 * parameters.M }
    private var stride0: Int { 1 + maxLinks0 }
    private var strideUpper: Int { 1 + parameters.M }

    public init(dimension: Int, metric: Metric, parameters: HNSWParameters = HNSWParameters()) {
        precondition(dimension > 0)
        self.dimension = dimension
        self.metric = metric
        self.parameters = parameters
        self.random = parameters.seed
        self.kernel = metric == .l2 ? ck_select_squared_l2() : ck_select_dot()
    }

    /// The instruction set of the distance kernels in use ("avx2+fma" or "baseline").
    public static var kernelInstructionSet: String { String(cString: ck_kernel_isa()) }

    /// Makes room for `nodes` nodes in all, so a bulk build does not reallocate (and briefly
    /// double) its arrays as it grows.
    public mutating func reserveCapacity(_ nodes: Int) {
        vectors.reserveCapacity(nodes * dimension)
        layer0.reserveCapacity(nodes * stride0)
        levels.reserveCapacity(nodes)
        upper.reserveCapacity(nodes)
        ids.reserveCapacity(nodes)
        slots.reserveCapacity(nodes)
        deleted.reserveCapacity(nodes)
        attributes.reserveCapacity(nodes)
        userOfSlot.reserveCapacity(nodes)
    }

    /// Live (not deleted) nodes.
    public var count: Int { liveCount }

    /// Whether `id` is in the graph and not deleted.
    public func contains(id: String) -> Bool { slots[id].map { !deleted[Int($0)] } ?? false }

    // MARK: - Scores

    /// Higher is closer: the inner product, or `-|a - b|^2` for l2.
    @inline(__always)
    private func score(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Float {
        let value = kernel(a, b, dimension)
        return metric == .l2 ? -value : value
    }

    // MARK: - Links

    private func links(_ slot: Int32, level: Int) -> ArraySlice<Int32> {
        if level == 0 {
            let base = Int(slot) * stride0
            return layer0[base + 1..<base + 1 + Int(layer0[base])]
        }
        let base = (level - 1) * strideUpper
        let list = upper[Int(slot)]
        return list[base + 1..<base + 1 + Int(list[base])]
    }

    private mutating func setLinks(_ slot: Int32, level: Int, _ neighbours: [Int32]) {
        if level == 0 {
            let base = Int(slot) * stride0
            layer0[base] = Int32(neighbours.count)
            for (i, n) in neighbours.enumerated() { layer0[base + 1 + i] = n }
        } else {
            let base = (level - 1) * strideUpper
            upper[Int(slot)][base] = Int32(neighbours.count)
            for (i, n) in neighbours.enumerated() { upper[Int(slot)][base + 1 + i] = n }
        }
    }

    // MARK: - Search within one layer

    /// The `ef` closest nodes to `query` on `level` reachable from `entries`, closest first.
    /// Nodes failing `accept` are walked through but not kept.
    private func searchLayer(
        _ query: UnsafePointer<Float>, entries: [Int32], ef: Int, level: Int, visited: VisitedSet,
        accept: (Int32) -> Bool
    ) -> [(score: Float, slot: Int32)] {
        var candidates = ScoreHeap(maxOnTop: true)
        var results = ScoreHeap(maxOnTop: false)
        var fresh: [Int32] = []
        fresh.reserveCapacity(maxLinks0)
        vectors.withUnsafeBufferPointer { vectors in
            layer0.withUnsafeBufferPointer { links0 in
                let base = vectors.baseAddress!
                for entry in entries where visited.insert(entry) {
                    let s = score(query, base + Int(entry) * dimension)
                    candidates.push(s, entry)
                    if accept(entry) { results.push(s, entry) }
                }
                while let (candidateScore, candidate) = candidates.pop() {
                    if results.count >= ef, let worst = results.top, candidateScore < worst.score { break }
                    // Gather the unvisited neighbours first and prefetch their vectors, so the
                    // loads overlap the scoring (hnswlib does the same).
                    fresh.removeAll(keepingCapacity: true)
                    if level == 0 {
                        let start = Int(candidate) * stride0
                        for i in 0..<Int(links0[start]) where visited.insert(links0[start + 1 + i]) {
                            fresh.append(links0[start + 1 + i])
                            ck_prefetch(base + Int(links0[start + 1 + i]) * dimension)
                        }
                    } else {
                        for neighbour in links(candidate, level: level) where visited.insert(neighbour) {
                            fresh.append(neighbour)
                        }
                    }
                    for neighbour in fresh {
                        let s = score(query, base + Int(neighbour) * dimension)
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
        return results.sortedBestFirst()
    }

    /// Greedy descent on one upper layer: move to the closest neighbour until none is closer.
    /// Without a filter and with one result, this needs no heaps and no visited set.
    private func closest(to query: UnsafePointer<Float>, from start: Int32, level: Int) -> Int32 {
        vectors.withUnsafeBufferPointer { vectors in
            let base = vectors.baseAddress!
            var current = start
            var best = score(query, base + Int(current) * dimension)
            var moved = true
            while moved {
                moved = false
                for neighbour in links(current, level: level) {
                    let s = score(query, base + Int(neighbour) * dimension)
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

    /// The neighbour-selection heuristic (the paper's Algorithm 4): walk the candidates from the
    /// closest, keeping one only if it is closer to the base than to every one kept so far.
    private func selectNeighbours(_ candidates: [(score: Float, slot: Int32)], max: Int) -> [Int32] {
        guard candidates.count > max else { return candidates.map(\.slot) }
        var kept: [Int32] = []
        vectors.withUnsafeBufferPointer { vectors in
            let base = vectors.baseAddress!
            for candidate in candidates {
                if kept.count >= max { break }
                let point = base + Int(candidate.slot) * dimension
                let diverse = kept.allSatisfy { score(point, base + Int($0) * dimension) <= candidate.score }
                if diverse { kept.append(candidate.slot) }
            }
        }
        return kept
    }

    // MARK: - Insert

    private mutating func randomLevel() -> Int {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let uniform = (Double(z >> 11) + 0.5) / Double(1 << 53)
        return Int(-log(uniform) / log(Double(parameters.M)))
    }

    /// Adds `vector` under `id` (replacing an existing one: the old node is deleted first).
    public mutating func insert(id: String, user: String, vector: [Float], attributes: RowAttributes) {
        precondition(vector.count == dimension)
        if contains(id: id) { remove(id: id) }
        let stored = metric == .cosine ? FlatIndex.normalized(vector) : vector
        let slot = Int32(ids.count)
        let level = randomLevel()
        vectors.append(contentsOf: stored)
        levels.append(Int32(level))
        layer0.append(contentsOf: repeatElement(0, count: stride0))
        upper.append([Int32](repeating: 0, count: level * strideUpper))
        ids.append(id)
        slots[id] = slot
        deleted.append(false)
        self.attributes.append(attributes)
        let userNumber = userNumbers[user] ?? Int32(userNumbers.count)
        userNumbers[user] = userNumber
        userOfSlot.append(userNumber)
        liveCount += 1
        guard entryPoint >= 0 else {
            entryPoint = slot
            topLevel = level
            return
        }
        let visited = scratch.take(capacity: ids.count)
        defer { scratch.give(visited) }
        var entries = [entryPoint]
        stored.withUnsafeBufferPointer { query in
            let q = query.baseAddress!
            if topLevel > level {
                for layer in stride(from: topLevel, to: level, by: -1) {
                    visited.reset()
                    entries = [
                        searchLayer(q, entries: entries, ef: 1, level: layer, visited: visited) { _ in true }[0].slot
                    ]
                }
            }
            for layer in stride(from: min(level, topLevel), through: 0, by: -1) {
                visited.reset()
                let found = searchLayer(
                    q, entries: entries, ef: parameters.efConstruction, level: layer, visited: visited
                ) { _ in true }
                let maxLinks = layer == 0 ? maxLinks0 : parameters.M
                let neighbours = selectNeighbours(found, max: parameters.M)
                setLinks(slot, level: layer, neighbours)
                for neighbour in neighbours { link(neighbour, to: slot, level: layer, maxLinks: maxLinks) }
                entries = found.map(\.slot)
            }
        }
        if level > topLevel {
            entryPoint = slot
            topLevel = level
        }
    }

    /// Adds `target` to `node`'s links on `level`, re-selecting them by the heuristic when full.
    private mutating func link(_ node: Int32, to target: Int32, level: Int, maxLinks: Int) {
        var current = Array(links(node, level: level))
        if current.count < maxLinks {
            current.append(target)
            return setLinks(node, level: level, current)
        }
        current.append(target)
        let scored: [(score: Float, slot: Int32)] = vectors.withUnsafeBufferPointer { vectors in
            let base = vectors.baseAddress!
            let point = base + Int(node) * dimension
            return current.map { (score(point, base + Int($0) * dimension), $0) }.sorted { $0.score > $1.score }
        }
        setLinks(node, level: level, selectNeighbours(scored, max: maxLinks))
    }

    // MARK: - Delete

    /// Removes `id`: the node is never returned again. It stays in the graph as a tombstone that
    /// searches walk through, so no neighbourhood loses its links (relinking around deleted nodes
    /// lost most of the recall after deleting half the graph: 0.37 against 0.95). Returns false
    /// when it was not there.
    @discardableResult
    public mutating func remove(id: String) -> Bool {
        guard let slot = slots.removeValue(forKey: id), !deleted[Int(slot)] else { return false }
        deleted[Int(slot)] = true
        liveCount -= 1
        return true
    }

    // MARK: - Search

    /// The `k` closest live nodes of `user` that pass `filter`, best first. The walk widens (`ef`
    /// doubles) until `k` matches are found or the graph is exhausted.
    public func search(
        user: String, query: [Float], k: Int, ef: Int? = nil, filter: RowFilter = RowFilter()
    ) -> [SearchHit] {
        precondition(query.count == dimension && k > 0)
        guard entryPoint >= 0, let userNumber = userNumbers[user] else { return [] }
        let q = metric == .cosine ? FlatIndex.normalized(query) : query
        let visited = scratch.take(capacity: ids.count)
        defer { scratch.give(visited) }
        let unfiltered = filter.isEmpty
        let accept: (Int32) -> Bool = { slot in
            let i = Int(slot)
            return userOfSlot[i] == userNumber && !deleted[i] && (unfiltered || filter.matches(attributes[i]))
        }
        return q.withUnsafeBufferPointer { query in
            let pointer = query.baseAddress!
            var entries = [entryPoint]
            for layer in stride(from: topLevel, to: 0, by: -1) {
                visited.reset()
                entries = [
                    searchLayer(pointer, entries: entries, ef: 1, level: layer, visited: visited) { _ in true }[0].slot
                ]
            }
            var width = max(ef ?? parameters.efSearch, k)
            while true {
                visited.reset()
                let found = searchLayer(
                    pointer, entries: entries, ef: width, level: 0, visited: visited, accept: accept)
                if found.count >= k || visited.count >= ids.count || width >= ids.count {
                    return found.prefix(k).map { hit in
                        let score = metric == .l2 ? (-hit.score).squareRoot() : hit.score
                        return SearchHit(id: ids[Int(hit.slot)], score: score)
                    }
                }
                width *= 2
            }
        }
    }
}

/// Which slots a search has seen: a generation counter per slot, so a reset is O(1). A class
/// over raw memory, so that marking a slot in the inner loop costs no copy-on-write check.
final class VisitedSet: @unchecked Sendable {
    private var marks: UnsafeMutablePointer<UInt32>
    private var capacity: Int
    private var generation: UInt32 = 1
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        marks = .allocate(capacity: self.capacity)
        marks.initialize(repeating: 0, count: self.capacity)
    }

    deinit { marks.deallocate() }

    /// Makes room for `capacity` slots and starts a new walk.
    func prepare(capacity: Int) {
        if capacity > self.capacity {
            let grown = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity * 2)
            grown.initialize(repeating: 0, count: capacity * 2)
            marks.deallocate()
            marks = grown
            self.capacity = capacity * 2
            generation = 0
        }
        reset()
    }

    /// Marks `slot`; false when it was already marked.
    @inline(__always)
    func insert(_ slot: Int32) -> Bool {
        let i = Int(slot)
        if marks[i] == generation { return false }
        marks[i] = generation
        count += 1
        return true
    }

    func reset() {
        generation &+= 1
        count = 0
        if generation == 0 {
            marks.update(repeating: 0, count: capacity)
            generation = 1
        }
    }
}

/// A binary heap of (score, slot): the largest score on top, or the smallest.
struct ScoreHeap {
    private var items: [(score: Float, slot: Int32)] = []
    let maxOnTop: Bool

    init(maxOnTop: Bool) { self.maxOnTop = maxOnTop }

    var count: Int { items.count }
    var top: (score: Float, slot: Int32)? { items.first }

    @inline(__always)
    private func above(_ a: Float, _ b: Float) -> Bool { maxOnTop ? a > b : a < b }

    mutating func push(_ score: Float, _ slot: Int32) {
        items.append((score, slot))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard above(items[child].score, items[parent].score) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (Float, Int32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var best = parent
                if left < items.count, above(items[left].score, items[best].score) { best = left }
                if right < items.count, above(items[right].score, items[best].score) { best = right }
                if best == parent { break }
                items.swapAt(parent, best)
                parent = best
            }
        }
        return (first.score, first.slot)
    }

    func sortedBestFirst() -> [(score: Float, slot: Int32)] {
        items.sorted { $0.score > $1.score }
    }
}

/// Visited sets handed out to concurrent searches and taken back, so each search reuses one.
final class ScratchPool: Sendable {
    private let free = Mutex<[VisitedSet]>([])

    func take(capacity: Int) -> VisitedSet {
        let set = free.withLock { $0.popLast() } ?? VisitedSet(capacity: capacity)
        set.prepare(capacity: capacity)
        return set
    }

    func give(_ set: VisitedSet) {
        free.withLock { $0.append(set) }
    }
}
