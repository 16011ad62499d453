import CKernels
import ContextModel

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
    /// Mixed into the level of every node, so a build is reproducible.
    public var seed: UInt64
    /// How the graph keeps its vectors for the walk.
    public var storage: VectorStorage

    public init(
        M: Int = 16, efConstruction: Int = 200, efSearch: Int = 64, seed: UInt64 = 42,
        storage: VectorStorage = .float32
    ) {
        precondition(M >= 2 && efConstruction >= 1 && efSearch >= 1)
        self.M = M
        self.efConstruction = efConstruction
        self.efSearch = efSearch
        self.seed = seed
        self.storage = storage
    }
}

/// How a graph keeps the vectors its walks score. The compact forms read half or a quarter of
/// the bytes per node; their walks rank by approximate scores, so a search re-ranks what it found
/// with the exact float32 vectors (`HNSWIndex.search`'s `rerank`).
public enum VectorStorage: String, Sendable, CaseIterable {
    case float32
    /// IEEE half precision.
    case float16
    /// One float32 scale per vector and a signed byte per component (`max |x| / 127` steps).
    case int8

    var format: ck_code_format {
        switch self {
        case .float32: CK_CODE_FLOAT32
        case .float16: CK_CODE_FLOAT16
        case .int8: CK_CODE_INT8
        }
    }
}

/// A Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016/2018) for approximate
/// nearest-neighbour search.
///
/// Memory layout (after hnswlib): a node is a dense slot number. Vectors are one contiguous
/// array of fixed-size codes (float32, float16 or int8, see `VectorStorage`) indexed by slot. Layer 0's links are one flat `Int32` array with a
/// fixed stride of `1 + 2M` per slot (a count, then the neighbours); a node's links on layers
/// 1...level sit in its own array with a stride of `1 + M` per layer. The external id of a slot is
/// kept apart from it (`ids`, `slots`).
///
/// Scores are "higher is closer" (inner product; `-|a - b|^2` for l2) and are computed between a
/// float32 query and a stored code with a SIMD kernel. Searches may filter: a node that fails the filter (or is not yet
/// published) is still walked through but never returned.
///
/// A node's life: `allocate` gives it a slot (unlinked, so no walk can reach it), `plan` computes
/// its links and its neighbours' new links without changing anything, `apply` writes them, and
/// `publish` lets searches return it. The owner can run `plan` under a shared lock, next to
/// searches, and hold an exclusive one only for the short `allocate` and `apply`. `remove`
/// repairs every neighbourhood that pointed at the removed nodes and frees their slots for reuse,
/// so no link ever points at a removed node. Every change is recorded in `changedSlots` for the
/// owner to persist (see `HNSWIndex+Persistence.swift`).
///
/// Not thread-safe: the owner serializes writers against readers.
public struct HNSWIndex: Sendable {
    public let dimension: Int
    public let metric: Metric
    public let parameters: HNSWParameters
    /// The kernel for this metric and storage, picked once from what the processor supports.
    let kernel: ck_code_kernel
    /// Bytes per stored vector.
    let codeBytes: Int

    var codes: [UInt8] = []
    var levels: [Int32] = []
    var layer0: [Int32] = []
    var upper: [[Int32]] = []
    var ids: [String] = []
    // Keyed by bytes, as SQLite compares text (see ExactString).
    var slots: [ExactString: Int32] = [:]
    var status: [SlotStatus] = []
    var attributes: [RowAttributes] = []
    /// How many layer-0 links point at each slot; a node that would lose its last one is
    /// re-attached, so every node stays reachable.
    var inDegree: [Int32] = []
    var freeSlots: [Int32] = []
    /// Each node's user as a small number, so the scope check in a walk compares integers.
    var userOfSlot: [Int32] = []
    var userNumbers: [ExactString: Int32] = [:]
    /// Per user number: its user and how many nodes it has. A number whose last node goes is
    /// freed for the next new user, so the map does not grow with every user ever seen.
    var userOfNumber: [ExactString] = []
    var nodesOfNumber: [Int] = []
    var freeUserNumbers: [Int32] = []
    /// Visited sets kept between searches: allocating and zeroing one per query cost more than
    /// the walk on small graphs.
    let scratch = ScratchPool()
    public internal(set) var entryPoint: Int32 = -1
    var topLevel = -1
    var liveCount = 0
    /// Slots whose links, node or status changed since the owner last took them.
    public internal(set) var changedSlots: Set<Int32> = []

    enum SlotStatus: UInt8 {
        /// No node: the slot waits for reuse.
        case free
        /// Linked (or about to be) but not yet returned by searches.
        case pending
        case live
    }

    var maxLinks0: Int { 2 * parameters.M }
    var stride0: Int { 1 + maxLinks0 }
    var strideUpper: Int { 1 + parameters.M }

    public init(dimension: Int, metric: Metric, parameters: HNSWParameters = HNSWParameters()) {
        precondition(dimension > 0)
        self.dimension = dimension
        self.metric = metric
        self.parameters = parameters
        self.kernel = ck_select_code_kernel(parameters.storage.format, metric == .l2 ? 1 : 0)
        self.codeBytes = ck_code_bytes(parameters.storage.format, dimension)
    }

    /// The instruction set of the distance kernels in use ("avx2+fma+f16c" or "baseline").
    public static var kernelInstructionSet: String { String(cString: ck_kernel_isa()) }

    /// Makes room for `nodes` nodes in all, so a bulk build does not reallocate (and briefly
    /// double) its arrays as it grows.
    public mutating func reserveCapacity(_ nodes: Int) {
        codes.reserveCapacity(nodes * codeBytes)
        layer0.reserveCapacity(nodes * stride0)
        levels.reserveCapacity(nodes)
        upper.reserveCapacity(nodes)
        ids.reserveCapacity(nodes)
        slots.reserveCapacity(nodes)
        status.reserveCapacity(nodes)
        attributes.reserveCapacity(nodes)
        inDegree.reserveCapacity(nodes)
        userOfSlot.reserveCapacity(nodes)
    }

    /// Published nodes.
    public var count: Int { liveCount }

    /// Slots in use or free: the bound of every slot number.
    public var slotCount: Int { ids.count }

    /// Bytes held by vectors and links (an estimate of the graph's memory).
    public var bytes: Int {
        let perSlot =
            MemoryLayout<Int32>.stride * 3 + MemoryLayout<[Int32]>.stride + MemoryLayout<String>.stride
            + MemoryLayout<RowAttributes>.stride + 1
        return codes.capacity + layer0.capacity * 4 + upper.reduce(0) { $0 + $1.capacity * 4 }
            + ids.count * perSlot + slots.count * (MemoryLayout<String>.stride + 4)
    }

    /// Whether `id` has a node (published or not).
    public func contains(id: String) -> Bool { slots[ExactString(id)] != nil }

    /// The id whose node sits in `slot`.
    public func id(at slot: Int32) -> String { ids[Int(slot)] }

    // MARK: - Scores and codes

    /// Higher is closer: the inner product, or `-|q - x|^2` for l2, between a float32 query and
    /// a stored code.
    @inline(__always)
    func score(_ query: UnsafePointer<Float>, _ code: UnsafeRawPointer) -> Float {
        let value = kernel(query, code, dimension)
        return metric == .l2 ? -value : value
    }

    /// `vector` (normalized already, for cosine) in this graph's storage. Total for every finite
    /// vector: float16 components beyond its range are clamped to its largest finite value, and
    /// int8 codes are computed in double precision, so a subnormal vector cannot divide by a
    /// scale that underflowed to zero. The walk's order is approximate anyway; candidates are
    /// re-ranked with the exact float32 vectors.
    func encode(_ vector: [Float]) -> [UInt8] {
        var code = [UInt8](repeating: 0, count: codeBytes)
        code.withUnsafeMutableBytes { raw in
            switch parameters.storage {
            case .float32:
                vector.withUnsafeBytes { raw.copyMemory(from: $0) }
            case .float16:
                let limit = Float(Float16.greatestFiniteMagnitude)
                for (i, x) in vector.enumerated() {
                    let clamped = Float16(min(max(x, -limit), limit))
                    raw.storeBytes(of: clamped.bitPattern, toByteOffset: 2 * i, as: UInt16.self)
                }
            case .int8:
                let largest = Double(vector.reduce(Float(0)) { max($0, abs($1)) })
                raw.storeBytes(of: largest > 0 ? Float(largest / 127) : 1, as: Float.self)
                for (i, x) in vector.enumerated() {
                    let step = largest > 0 ? (Double(x) / largest * 127).rounded() : 0
                    raw.storeBytes(of: Int8(min(max(step, -127), 127)), toByteOffset: 4 + i, as: Int8.self)
                }
            }
        }
        return code
    }

    /// Runs `body` with the float32 vector of `slot`: the code itself for float32 storage, a
    /// decoded copy otherwise.
    @inline(__always)
    func withVector<T>(_ slot: Int32, _ body: (UnsafePointer<Float>) -> T) -> T {
        if parameters.storage == .float32 {
            return withCodes { body(code($0, slot).assumingMemoryBound(to: Float.self)) }
        }
        return decode(slot).withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// The float32 vector `slot`'s code stands for.
    func decode(_ slot: Int32) -> [Float] {
        codes.withUnsafeBytes { codes in
            let code = UnsafeRawBufferPointer(rebasing: codes[Int(slot) * codeBytes..<(Int(slot) + 1) * codeBytes])
            switch parameters.storage {
            case .float32:
                return (0..<dimension).map { code.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            case .float16:
                return [Float](unsafeUninitializedCapacity: dimension) { out, initialized in
                    ck_decode_f16(code.baseAddress!, out.baseAddress!, dimension)
                    initialized = dimension
                }
            case .int8:
                let scale = code.loadUnaligned(as: Float.self)
                return (0..<dimension).map { scale * Float(code.load(fromByteOffset: 4 + $0, as: Int8.self)) }
            }
        }
    }

    /// Runs `body` with the base of the codes and the query's pointer: `code(base, slot)` then
    /// addresses a node's code.
    @inline(__always)
    func withCodes<T>(_ body: (UnsafeRawPointer) -> T) -> T {
        codes.withUnsafeBytes { body($0.baseAddress!) }
    }

    @inline(__always)
    func code(_ base: UnsafeRawPointer, _ slot: Int32) -> UnsafeRawPointer { base + Int(slot) * codeBytes }

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
    /// Nodes failing `accept` are walked through but not kept.
    func searchLayer(
        _ query: UnsafePointer<Float>, entries: [Int32], ef: Int, level: Int, visited: VisitedSet,
        accept: (Int32) -> Bool
    ) -> [(score: Float, slot: Int32)] {
        var candidates = ScoreHeap(maxOnTop: true)
        var results = ScoreHeap(maxOnTop: false)
        var fresh: [Int32] = []
        fresh.reserveCapacity(maxLinks0)
        withCodes { base in
            userOfSlot.withUnsafeBufferPointer { users in
                layer0.withUnsafeBufferPointer { links0 in
                    for entry in entries where visited.insert(entry) {
                        let s = score(query, code(base, entry))
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
                                ck_prefetch(code(base, neighbour))
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
                        if let first = fresh.first { ck_prefetch_range(code(base, first), codeBytes) }
                        for (j, neighbour) in fresh.enumerated() {
                            if j + 1 < fresh.count { ck_prefetch_range(code(base, fresh[j + 1]), codeBytes) }
                            let s = score(query, code(base, neighbour))
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
    func closest(to query: UnsafePointer<Float>, from start: Int32, level: Int) -> Int32 {
        withCodes { base in
            var current = start
            var best = score(query, code(base, current))
            var moved = true
            while moved {
                moved = false
                for neighbour in links(current, level: level) {
                    let s = score(query, code(base, neighbour))
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
    func selectNeighbours(_ candidates: [(score: Float, slot: Int32)], max: Int) -> [Int32] {
        guard candidates.count > max else { return candidates.map(\.slot) }
        var kept: [Int32] = []
        for candidate in candidates {
            if kept.count >= max { break }
            if isDiverse(candidate, from: kept) { kept.append(candidate.slot) }
        }
        return kept
    }

    /// Whether `candidate` (scored against the node being linked) is closer to that node than
    /// to every node in `kept`: the heuristic's test.
    func isDiverse(_ candidate: (score: Float, slot: Int32), from kept: [Int32]) -> Bool {
        guard !kept.isEmpty else { return true }
        return withVector(candidate.slot) { point in
            withCodes { base in kept.allSatisfy { score(point, code(base, $0)) <= candidate.score } }
        }
    }

    /// `candidates` scored against `node`, closest first.
    func scored(_ candidates: some Sequence<Int32>, from node: Int32) -> [(score: Float, slot: Int32)] {
        withVector(node) { point in
            withCodes { base in candidates.map { (score(point, code(base, $0)), $0) }.sorted { $0.score > $1.score } }
        }
    }

    // MARK: - Insert

    /// A node's level, drawn from the exponential distribution of the paper (`mL = 1 / ln M`)
    /// by hashing its id: the same id always gets the same level, so no generator state has to
    /// be stored and a rebuild is reproducible.
    func level(for id: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ parameters.seed
        for byte in id.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
        hash ^= hash >> 31
        let uniform = (Double(hash >> 11) + 0.5) / Double(1 << 53)
        return Int(-log(uniform) / log(Double(parameters.M)))
    }

    /// Adds and publishes `vector` under `id`, replacing the node `id` had.
    public mutating func insert(id: String, user: String, vector: [Float], attributes: RowAttributes) {
        if contains(id: id) { remove(ids: [id]) }
        let slot = allocate(id: id, user: user, vector: vector, attributes: attributes)
        apply(plan(for: slot))
        publish(slot)
    }

    /// The number of `user`, counting one more node of theirs (a new user takes a freed number
    /// when there is one).
    mutating func takeUserNumber(_ user: String) -> Int32 {
        let key = ExactString(user)
        if let number = userNumbers[key] {
            nodesOfNumber[Int(number)] += 1
            return number
        }
        let number: Int32
        if let reused = freeUserNumbers.popLast() {
            number = reused
            userOfNumber[Int(number)] = key
            nodesOfNumber[Int(number)] = 1
        } else {
            number = Int32(userOfNumber.count)
            userOfNumber.append(key)
            nodesOfNumber.append(1)
        }
        userNumbers[key] = number
        return number
    }

    /// Counts one node of user `number` fewer; frees the number with the user's last node.
    mutating func releaseUserNumber(_ number: Int32) {
        let i = Int(number)
        nodesOfNumber[i] -= 1
        guard nodesOfNumber[i] == 0 else { return }
        userNumbers[userOfNumber[i]] = nil
        userOfNumber[i] = ExactString("")
        freeUserNumbers.append(number)
    }

    /// Gives a new node for `id` a slot (a free one when there is one) holding its vector and
    /// empty links. Nothing links to it yet, so no walk reaches it.
    /// - Precondition: `id` has no node; `vector.count == dimension`.
    public mutating func allocate(id: String, user: String, vector: [Float], attributes: RowAttributes) -> Int32 {
        precondition(vector.count == dimension && slots[ExactString(id)] == nil)
        let stored = metric == .cosine ? FlatIndex.normalized(vector) : vector
        let level = level(for: id)
        let userNumber = takeUserNumber(user)
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
            let i = Int(slot)
            codes.replaceSubrange(i * codeBytes..<(i + 1) * codeBytes, with: encode(stored))
            levels[i] = Int32(level)
            upper[i] = [Int32](repeating: 0, count: level * strideUpper)
            ids[i] = id
            status[i] = .pending
            self.attributes[i] = attributes
            userOfSlot[i] = userNumber
        } else {
            slot = Int32(ids.count)
            codes.append(contentsOf: encode(stored))
            levels.append(Int32(level))
            layer0.append(contentsOf: repeatElement(0, count: stride0))
            upper.append([Int32](repeating: 0, count: level * strideUpper))
            ids.append(id)
            status.append(.pending)
            self.attributes.append(attributes)
            inDegree.append(0)
            userOfSlot.append(userNumber)
        }
        slots[ExactString(id)] = slot
        changedSlots.insert(slot)
        return slot
    }

    /// The links a new node gets and the ones its neighbours get in return: computed without
    /// changing the graph.
    public struct LinkPlan: Sendable {
        let slot: Int32
        /// The node's own links, layer 0 first.
        var own: [[Int32]] = []
        /// Neighbours' new link lists: (node, layer, links).
        var updates: [(node: Int32, level: Int, links: [Int32])] = []
    }

    /// Finds `slot`'s neighbours on each of its layers (the paper's Algorithm 1) and how each
    /// neighbour's links change to point back, pruned by the heuristic when they overflow.
    public func plan(for slot: Int32) -> LinkPlan {
        var plan = LinkPlan(slot: slot)
        guard entryPoint >= 0 else { return plan }
        let level = Int(levels[Int(slot)])
        let visited = scratch.take(capacity: ids.count)
        defer { scratch.give(visited) }
        let query = decode(slot)
        query.withUnsafeBufferPointer { query in
            let q = query.baseAddress!
            var entry = entryPoint
            if topLevel > level {
                for layer in stride(from: topLevel, to: level, by: -1) {
                    entry = closest(to: q, from: entry, level: layer)
                }
            }
            var entries = [entry]
            plan.own = Array(repeating: [], count: min(level, topLevel) + 1)
            for layer in stride(from: min(level, topLevel), through: 0, by: -1) {
                visited.reset()
                let found = searchLayer(
                    q, entries: entries, ef: parameters.efConstruction, level: layer, visited: visited
                ) { _ in true }
                let neighbours = selectNeighbours(found, max: parameters.M)
                plan.own[layer] = neighbours
                let maxLinks = layer == 0 ? maxLinks0 : parameters.M
                for neighbour in neighbours {
                    var current = Array(links(neighbour, level: layer))
                    current.append(slot)
                    if current.count > maxLinks {
                        current = selectNeighbours(scored(current, from: neighbour), max: maxLinks)
                    }
                    plan.updates.append((neighbour, layer, current))
                }
                entries = found.map(\.slot)
            }
        }
        return plan
    }

    /// Writes a plan's links; the node becomes the entry point when it is the highest.
    public mutating func apply(_ plan: LinkPlan) {
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
        reattach(orphans)
    }

    /// Lets searches return the node in `slot`.
    public mutating func publish(_ slot: Int32) {
        guard status[Int(slot)] == .pending else { return }
        status[Int(slot)] = .live
        liveCount += 1
        changedSlots.insert(slot)
    }

    /// Gives each node no layer-0 link points at one again: its closest neighbour with room
    /// takes it, or else the closest gives up its farthest link whose target has another.
    /// (Pruning by the heuristic can drop a node's last incoming link; unreachable, it would
    /// never be found again.)
    mutating func reattach(_ orphans: [Int32]) {
        for orphan in orphans where inDegree[Int(orphan)] == 0 && orphan != entryPoint && status[Int(orphan)] != .free {
            for (_, neighbour) in scored(links(orphan, level: 0), from: orphan) {
                var current = Array(links(neighbour, level: 0))
                if current.count < maxLinks0 {
                    current.append(orphan)
                } else {
                    let spare = scored(current, from: neighbour).last { inDegree[Int($0.slot)] > 1 }
                    guard let spare, let at = current.firstIndex(of: spare.slot) else { continue }
                    current[at] = orphan
                }
                setLinks(neighbour, level: 0, current)
                break
            }
        }
    }

    // MARK: - Search

    /// The `k` closest published nodes of `user` that pass `filter`, best first. The walk widens
    /// (`ef` doubles) until `k` matches are found or the graph is exhausted.
    ///
    /// With compact storage the walk's scores are approximate: `rerank`, given the ids the walk
    /// found (up to `ef`), returns each one's exact score ("higher is closer", as the graph's
    /// own: the inner product, or `-|q - x|^2` for l2, of the normalized vectors for cosine), and
    /// the best `k` by it are returned. Without `rerank` the approximate scores stand.
    public func search(
        user: String, query: [Float], k: Int, ef: Int? = nil, filter: RowFilter = RowFilter(),
        rerank: (([String]) -> [Float])? = nil
    ) -> [SearchHit] {
        precondition(query.count == dimension && k > 0)
        guard entryPoint >= 0, let userNumber = userNumbers[ExactString(user)] else { return [] }
        let q = metric == .cosine ? FlatIndex.normalized(query) : query
        let visited = scratch.take(capacity: ids.count)
        defer { scratch.give(visited) }
        let unfiltered = filter.isEmpty
        let accept: (Int32) -> Bool = { slot in
            let i = Int(slot)
            return userOfSlot[i] == userNumber && status[i] == .live
                && (unfiltered || filter.matches(attributes[i]))
        }
        return q.withUnsafeBufferPointer { query in
            let pointer = query.baseAddress!
            var entry = entryPoint
            for layer in stride(from: topLevel, to: 0, by: -1) {
                entry = closest(to: pointer, from: entry, level: layer)
            }
            var width = max(ef ?? parameters.efSearch, k)
            while true {
                visited.reset()
                let found = searchLayer(
                    pointer, entries: [entry], ef: width, level: 0, visited: visited, accept: accept)
                if found.count >= k || visited.count >= ids.count || width >= ids.count {
                    var best = found.map { (score: $0.score, id: ids[Int($0.slot)]) }
                    if parameters.storage != .float32, let rerank {
                        let exact = rerank(best.map(\.id))
                        best = zip(exact, best).map { ($0, $1.id) }.sorted { $0.score > $1.score }
                    }
                    return best.prefix(k).map { hit in
                        SearchHit(id: hit.id, score: metric == .l2 ? max(0, -hit.score).squareRoot() : hit.score)
                    }
                }
                width *= 2
            }
        }
    }
}
