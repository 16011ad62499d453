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
/// nearest-neighbour search, made of three parts:
/// - `HNSWGraph`: the links, levels, entry point and in-degrees, and the algorithms that change
///   them (plan / apply / remove / reattach);
/// - `VectorCodes`: each node's vector as a fixed-size code and the kernel that scores it;
/// - `SlotTable`: each node's id, user, filter attributes and visibility.
/// A node is a slot number shared by the three.
///
/// Vectors and queries come in the metric's prepared form (`Metric.prepared`: unit length for
/// cosine); the owner prepares them once. Searches may filter: a node that fails the filter (or
/// is not yet published) is still walked through but never returned.
///
/// A node's life: `allocate` gives it a slot (unlinked, so no walk can reach it), `plan` computes
/// its links and its neighbours' new links without changing anything, `apply` writes them, and
/// `publish` lets searches return it. The owner can run `plan` under a shared lock, next to
/// searches, and hold an exclusive one only for the short `allocate` and `apply`. Removal is
/// planned and applied the same way (`planRemoval`, `apply`). Every change is recorded for the
/// owner to persist (see `HNSWIndex+Persistence.swift`).
///
/// Not thread-safe: the owner serializes writers against readers.
public struct HNSWIndex: Sendable {
    public let dimension: Int
    public let metric: Metric
    public let parameters: HNSWParameters
    var graph: HNSWGraph
    var codes: VectorCodes
    var slots = SlotTable()
    /// Visited sets kept between searches: allocating and zeroing one per query cost more than
    /// the walk on small graphs.
    let scratch = ScratchPool()

    /// - Parameter kernels: `.baseline` forces the portable distance kernels (for tests).
    public init(
        dimension: Int, metric: Metric, parameters: HNSWParameters = HNSWParameters(), kernels: KernelForm = .best
    ) {
        precondition(dimension > 0)
        self.dimension = dimension
        self.metric = metric
        self.parameters = parameters
        graph = HNSWGraph(M: parameters.M, efConstruction: parameters.efConstruction)
        codes = VectorCodes(dimension: dimension, metric: metric, storage: parameters.storage, kernels: kernels)
    }

    /// Makes room for `nodes` nodes in all, so a bulk build does not reallocate (and briefly
    /// double) its arrays as it grows.
    public mutating func reserveCapacity(_ nodes: Int) {
        graph.reserveCapacity(nodes)
        codes.reserveCapacity(nodes)
        slots.reserveCapacity(nodes)
    }

    /// Published nodes.
    public var count: Int { slots.liveCount }

    /// Slots in use or free: the bound of every slot number.
    public var slotCount: Int { slots.count }

    /// The node searches start from, or -1 for an empty graph.
    public var entryPoint: Int32 { graph.entryPoint }

    /// Bytes held by vectors, links and slots (an estimate of the graph's memory).
    public var bytes: Int { codes.memoryBytes + graph.memoryBytes + slots.memoryBytes }

    /// Whether `id` has a node (published or not).
    public func contains(id: String) -> Bool { slots.slot(of: id) != nil }

    /// How many nodes `user`'s rows have.
    public func count(user: String) -> Int { slots.users.nodes(of: user) }

    /// The id whose node sits in `slot`.
    public func id(at slot: Int32) -> String { slots.ids[Int(slot)] }

    /// Replaces the filter attributes of `id`'s node (its vector and links stay); false when it
    /// has none.
    @discardableResult
    public mutating func setAttributes(id: String, _ attributes: RowAttributes) -> Bool {
        guard let slot = slots.slot(of: id) else { return false }
        slots.setAttributes(slot, attributes)
        return true
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
    public mutating func insert(
        id: String, user: String, vector: [Float], attributes: RowAttributes, handle: Int32 = -1
    ) {
        if contains(id: id) { remove(ids: [id]) }
        let slot = allocate(id: id, user: user, vector: vector, attributes: attributes, handle: handle)
        apply(plan(for: slot))
        publish(slot)
    }

    /// Gives a new node for `id` a slot (a free one when there is one) holding its vector and
    /// empty links. Nothing links to it yet, so no walk reaches it.
    /// - Parameter handle: The owner's number for the node, reported by hits; -1 for none.
    /// - Precondition: `id` has no node; `vector.count == dimension`, in the prepared form.
    public mutating func allocate(
        id: String, user: String, vector: [Float], attributes: RowAttributes, handle: Int32 = -1
    ) -> Int32 {
        precondition(vector.count == dimension && !contains(id: id))
        let slot = graph.takeSlot(level: level(for: id))
        if Int(slot) == slots.count { _ = slots.appendFree() }
        codes.set(slot, to: vector)
        slots.occupy(slot, id: id, handle: handle, user: user, attributes: attributes, status: .pending)
        return slot
    }

    /// The links a new node gets and the ones its neighbours get in return (see `plan(for:)`).
    public struct LinkPlan: Sendable {
        let links: HNSWGraph.LinkPlan
    }

    /// Finds `slot`'s neighbours on each of its layers (the paper's Algorithm 1) and how each
    /// neighbour's links change to point back, without changing the graph.
    public func plan(for slot: Int32) -> LinkPlan {
        let visited = scratch.take(capacity: slotCount)
        defer { scratch.give(visited) }
        return LinkPlan(links: graph.plan(for: slot, codes: codes, userOfSlot: slots.userOfSlot, visited: visited))
    }

    /// Writes a plan's links; the node becomes the entry point when it is the highest.
    public mutating func apply(_ plan: LinkPlan) {
        graph.apply(plan.links, codes: codes)
    }

    /// Lets searches return the node in `slot`. (Visibility is not stored: a stored node is
    /// published when it is read back.)
    public mutating func publish(_ slot: Int32) {
        _ = slots.publish(slot)
    }

    // MARK: - Remove

    /// Removes the nodes of `ids` and repairs the graph around them (see
    /// `HNSWGraph.planRemoval`); the slots are free for reuse and no link points at them.
    /// Returns how many nodes were removed.
    @discardableResult
    public mutating func remove(ids: some Sequence<String>) -> Int {
        apply(planRemoval(ids: ids))
    }

    /// What removing some nodes changes (see `planRemoval`).
    public struct RemovalPlan: Sendable {
        let links: HNSWGraph.RemovalPlan
    }

    /// Computes a removal without changing anything: the pass over every link and the scoring
    /// of the repairs, the costly part, can run under a shared lock next to searches. The graph
    /// must not change before `apply`.
    public func planRemoval(ids: some Sequence<String>) -> RemovalPlan {
        var doomed: [Int32] = []
        var seen = Set<Int32>()
        // An id named twice is removed once.
        for id in ids {
            if let slot = slots.slot(of: id), seen.insert(slot).inserted { doomed.append(slot) }
        }
        return RemovalPlan(links: graph.planRemoval(of: doomed, codes: codes))
    }

    /// Applies a plan from `planRemoval`. Returns how many nodes were removed.
    @discardableResult
    public mutating func apply(_ plan: RemovalPlan) -> Int {
        for slot in plan.links.doomed { slots.free(slot) }
        graph.apply(plan.links, codes: codes)
        return plan.links.doomed.count
    }

    // MARK: - Search

    /// The `k` closest published nodes of `user` that pass `filter`, best first. The walk widens
    /// (`ef` doubles) until `k` matches are found or the graph is exhausted.
    ///
    /// With compact storage the walk's scores are approximate: `rerank`, given the hits the walk
    /// found (up to `ef`; id and handle), returns each one's exact score ("higher is closer", as
    /// the graph's own: the inner product, or `-|q - x|^2` for l2), and the best `k` by it are
    /// returned; a hit it scores `-infinity` (gone from the owner) is left out. Without `rerank`
    /// the approximate scores stand.
    /// - Precondition: `query` is in the metric's prepared form.
    public func search(
        user: String, query: [Float], k: Int, ef: Int? = nil, filter: RowFilter = RowFilter(),
        rerank: (([SearchHit]) throws -> [Float])? = nil
    ) rethrows -> [SearchHit] {
        precondition(query.count == dimension && k > 0)
        guard graph.entryPoint >= 0, let userNumber = slots.users.number(of: user) else { return [] }
        let visited = scratch.take(capacity: slotCount)
        defer { scratch.give(visited) }
        let unfiltered = filter.isEmpty
        let (userOfSlot, status, attributes) = (slots.userOfSlot, slots.status, slots.attributes)
        let accept: (Int32) -> Bool = { slot in
            let i = Int(slot)
            return userOfSlot[i] == userNumber && status[i] == .live && (unfiltered || filter.matches(attributes[i]))
        }
        return try query.withUnsafeBufferPointer { query in
            let pointer = query.baseAddress!
            let entry = graph.descend(to: pointer, codes: codes)
            var width = max(ef ?? parameters.efSearch, k)
            while true {
                visited.reset()
                let found = graph.searchLayer(
                    pointer, codes: codes, userOfSlot: userOfSlot, entries: [entry], ef: width, level: 0,
                    visited: visited, accept: accept)
                if found.count >= k || visited.count >= slotCount || width >= slotCount {
                    var best = found.map {
                        SearchHit(id: slots.ids[Int($0.slot)], score: $0.score, handle: slots.handles[Int($0.slot)])
                    }
                    if parameters.storage != .float32, let rerank {
                        for (i, exact) in try rerank(best).enumerated() { best[i].score = exact }
                        best.removeAll { $0.score == -Float.infinity }
                        best.sort { $0.score > $1.score }
                    }
                    return best.prefix(k).map { hit in
                        var hit = hit
                        if metric == .l2 { hit.score = max(0, -hit.score).squareRoot() }
                        return hit
                    }
                }
                width *= 2
            }
        }
    }
}
