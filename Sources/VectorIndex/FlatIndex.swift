import CKernels
import ContextModel
import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// An exact index: every vector of a user is scored against the query with one BLAS call.
///
/// Memory layout: vectors are partitioned by user. A partition holds its rows contiguously,
/// row-major, in the index's `storage`, with parallel arrays for the row's id, its attributes
/// (for filters) and, for `l2`, its squared norm. A search scoped to a user reads only that
/// user's partition. Deleting swaps the last row into the hole, so rows stay dense.
///
/// Storage (`VectorStorage`): `float32` keeps each row (`4 x dimension` bytes) and its int8 code
/// beside it, which large users' searches scan first; `float16` keeps the row as half-precision
/// floats (`2 x dimension`), `int8` as its int8 code alone (`dimension + 4`). A compact index
/// keeps no float32 vector: its searches choose candidates by the codes and take their exact
/// scores from the owner (`Rescore`), which keeps the vectors elsewhere (on disk).
///
/// Scores are "higher is better" inside the index (`l2` uses `2 x.q - |x|^2`, which orders rows
/// exactly like the distance); hits report the metric's own score: cosine similarity, inner
/// product, or Euclidean distance. Equal scores are ordered by id, so results are deterministic.
///
/// Vectors and queries come in the metric's prepared form (`Metric.prepared`: unit length for
/// cosine); the owner prepares each one once.
///
/// Each row may carry a handle, the owner's own number for it: hits report it and
/// `exactScores(handles:query:)` finds rows by it, so the owner goes from a hit to its record by
/// array index rather than by id.
///
/// Not thread-safe: the owner serializes writers against readers.
public struct FlatIndex: Sendable {
    /// The length of every vector.
    public let dimension: Int
    /// How vectors are compared.
    public let metric: Metric
    /// How rows are kept in memory.
    public let storage: VectorStorage
    /// The pair kernel of `exactScores`, picked once from what the processor supports.
    private let pairKernel: ck_code_kernel
    /// The inner product of a query and a float16 row (`storage == .float16`).
    private let halfKernel: ck_code_kernel

    /// Exact scores, "higher is closer" (as `exactScores(handles:query:)` gives them), of the
    /// rows with these handles, in order; `-infinity` for a row the owner no longer has. How a
    /// compact index's candidates get their final order.
    public typealias Rescore = (_ handles: [Int32]) throws -> [Float]

    // Keyed by bytes, as SQLite compares text (see ExactString).
    private var partitions: [ExactString: Partition] = [:]
    private var locations: [ExactString: Location] = [:]
    /// Where each handle's row is; nil for a handle not in use.
    private var locationOfHandle: [Location?] = []

    private struct Location {
        var user: ExactString
        var row: Int
    }

    private struct Partition {
        /// float32 storage: each row's components.
        var rows: [Float] = []
        /// float16 storage: each row's components as IEEE half-precision bit patterns.
        var halves: [UInt16] = []
        /// float32 and int8 storage: each row as int8 (`codeScales[r] * codes[r * dimension + i]`
        /// is about component i): what a large user's search scans first (see
        /// `compactScanRows`), and all an int8 index keeps.
        var codes: [Int8] = []
        var codeScales: [Float] = []
        var squaredNorms: [Float] = []
        var ids: [String] = []
        var handles: [Int32] = []
        var attributes: [RowAttributes] = []
        var count: Int { ids.count }
    }

    /// Creates an empty index.
    public init(dimension: Int, metric: Metric, storage: VectorStorage = .float32) {
        precondition(dimension > 0, "dimension must be positive")
        self.dimension = dimension
        self.metric = metric
        self.storage = storage
        self.pairKernel = ck_select_code_kernel(CK_CODE_FLOAT32, metric == .l2 ? 1 : 0, 0)
        // The inner product for every metric: l2's estimate is `2 x.q - |x|^2`, as for int8.
        self.halfKernel = ck_select_code_kernel(CK_CODE_FLOAT16, 0, 0)
    }

    /// Whether rows are kept as float32, so that `vector(id:)` and `exactScores` answer.
    public var keepsVectors: Bool { storage == .float32 }

    /// Whether the int8 codes are kept (float32 storage, for large users' first scan; int8).
    private var keepsCodes: Bool { storage != .float16 }

    /// Scans of at least this many floats (4 MB) are split over all cores; smaller ones run on
    /// the calling thread, where concurrent searches already spread over the cores.
    static let parallelScanFloats = 1 << 20
    /// Int8 scans of at least this many bytes (16 MB, about 43,000 rows of 384 components) are
    /// split over all cores too. Past the caches a scan is bound by how fast a core reads memory,
    /// and two cores read nearly twice as fast (514,804 rows of 384: 19.1-21.9 ms on one core,
    /// 9.8-11.8 ms on two, Benchmarks/kernels/int8_split.c); at 10,000 rows a split measured no faster (p50 over TCP,
    /// three runs each: 0.52-0.56 ms split, 0.53-0.63 ms not) and takes a core from the searches
    /// of other connections.
    static let parallelInt8Bytes = 16 << 20
    private static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// `scores[q * count + i] = rows[i] . queries[q]` for `count` rows and `queryCount` queries:
    /// `sgemv` for one query, `sgemm` for several.
    private func scan(
        _ rows: UnsafePointer<Float>, count: Int, queries: UnsafePointer<Float>, queryCount: Int,
        into scores: UnsafeMutablePointer<Float>
    ) {
        let dimension = self.dimension
        func scan(rowsFrom start: Int, to end: Int) {
            if queryCount == 1 {
                BLAS.matrixVector(
                    rows + start * dimension, rows: end - start, columns: dimension, queries, into: scores + start)
            } else {
                BLAS.matrixMatrixTransposed(
                    rows + start * dimension, rows: end - start, columns: dimension, queries: queries,
                    queryCount: queryCount, into: scores + start, resultStride: count)
            }
        }
        // Each chunk writes its own columns of scores.
        Self.scanRows(count, split: count * dimension >= Self.parallelScanFloats, scan(rowsFrom:to:))
    }

    /// Runs `scan` over rows `0..<count`: in one call, or, with `split`, in a chunk per core run
    /// side by side (each chunk must write only its own rows' results).
    private static func scanRows(_ count: Int, split: Bool, _ scan: (_ start: Int, _ end: Int) -> Void) {
        let chunks = split ? min(cores, count) : 1
        guard chunks > 1 else { return scan(0, count) }
        let perChunk = (count + chunks - 1) / chunks
        withoutActuallyEscaping(scan) { scan in
            // The chunks write apart and the call waits for all of them.
            nonisolated(unsafe) let scanChunk = scan
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let start = chunk * perChunk
                let end = min(count, start + perChunk)
                if start < end { scanChunk(start, end) }
            }
        }
    }

    /// Makes room for `rows` rows of `user`, so a bulk load does not grow the partition by doubling.
    public mutating func reserveCapacity(_ rows: Int, forUser user: String) {
        var partition = partitions.removeValue(forKey: ExactString(user)) ?? Partition()
        switch storage {
        case .float32: partition.rows.reserveCapacity(rows * dimension)
        case .float16: partition.halves.reserveCapacity(rows * dimension)
        case .int8: break
        }
        if keepsCodes {
            partition.codes.reserveCapacity(rows * dimension)
            partition.codeScales.reserveCapacity(rows)
        }
        if metric == .l2 { partition.squaredNorms.reserveCapacity(rows) }
        partition.ids.reserveCapacity(rows)
        partition.handles.reserveCapacity(rows)
        partition.attributes.reserveCapacity(rows)
        partitions[ExactString(user)] = partition
    }

    /// Makes room for `rows` vectors in all (the id lookup).
    public mutating func reserveCapacity(_ rows: Int) {
        locations.reserveCapacity(rows)
        locationOfHandle.reserveCapacity(rows)
    }

    /// Number of vectors in the index.
    public var count: Int { locations.count }

    /// Number of users with at least one vector.
    public var userCount: Int { partitions.count }

    /// Number of vectors stored for `user`.
    public func count(user: String) -> Int { partitions[ExactString(user)]?.count ?? 0 }

    /// The users `included` takes and their vectors, summed: (vectors, users).
    public func counts(ofUsers included: (String) -> Bool) -> (vectors: Int, users: Int) {
        var (vectors, users) = (0, 0)
        for (user, partition) in partitions where included(user.string) {
            vectors += partition.count
            users += 1
        }
        return (vectors, users)
    }

    /// The ids of `user`'s rows.
    public func ids(user: String) -> [String] { partitions[ExactString(user)]?.ids ?? [] }

    /// How many of `user`'s rows pass `filter`, estimated from an even sample of at most
    /// `sample` rows (exact when the user has no more).
    public func estimatedMatches(user: String, filter: RowFilter, sample: Int = 256) -> Int {
        guard let partition = partitions[ExactString(user)] else { return 0 }
        guard !filter.isEmpty else { return partition.count }
        let step = max(1, partition.count / sample)
        var seen = 0
        var matched = 0
        for row in stride(from: 0, to: partition.count, by: step) {
            seen += 1
            if filter.matches(partition.attributes[row]) { matched += 1 }
        }
        return seen == 0 ? 0 : (matched * partition.count + seen - 1) / seen
    }

    /// Bytes held by vectors and their per-row bookkeeping (an estimate of the index's memory).
    public var bytes: Int {
        var total = 0
        for partition in partitions.values {
            total += partition.rows.capacity * MemoryLayout<Float>.stride
            total += partition.halves.capacity * MemoryLayout<UInt16>.stride
            total += partition.codes.capacity + partition.codeScales.capacity * MemoryLayout<Float>.stride
            total += partition.squaredNorms.capacity * MemoryLayout<Float>.stride
            total += partition.ids.capacity * MemoryLayout<String>.stride
            total += partition.handles.capacity * MemoryLayout<Int32>.stride
            total += partition.attributes.capacity * MemoryLayout<RowAttributes>.stride
        }
        return total + locations.count * (MemoryLayout<String>.stride + MemoryLayout<Location>.stride)
            + locationOfHandle.capacity * MemoryLayout<Location?>.stride
    }

    /// Whether a row is stored under `id`.
    public func contains(id: String) -> Bool { locations[ExactString(id)] != nil }

    /// The stored vector of `id` (normalized, for `cosine`); nil when there is none, or when the
    /// index is compact (`keepsVectors` is false) and keeps no float32 vector.
    public func vector(id: String) -> [Float]? {
        guard keepsVectors, let location = locations[ExactString(id)], let partition = partitions[location.user]
        else { return nil }
        let start = location.row * dimension
        return Array(partition.rows[start..<start + dimension])
    }

    /// The exact score of each of `ids` for `query`, "higher is closer": the inner product (of
    /// the normalized vectors, for cosine), or `-|x - q|^2` for l2; `-infinity` for an id not
    /// stored. What a graph walk over compact vectors re-ranks its candidates by.
    /// - Precondition: `keepsVectors` (a compact index's owner scores rows itself).
    public func exactScores(ids: [String], query: [Float]) -> [Float] {
        precondition(keepsVectors, "a compact flat index keeps no float32 vectors")
        return ids.map { exactScore(at: locations[ExactString($0)], query: query) }
    }

    /// `exactScores(ids:query:)` for rows found by handle.
    public func exactScores(handles: [Int32], query: [Float]) -> [Float] {
        precondition(keepsVectors, "a compact flat index keeps no float32 vectors")
        return handles.map { handle in
            exactScore(
                at: handle >= 0 && Int(handle) < locationOfHandle.count ? locationOfHandle[Int(handle)] : nil,
                query: query)
        }
    }

    /// The scores of the rows with these handles as their stored form gives them, "higher is
    /// closer" (as `exactScores` gives them, which it is for float32 storage), `-infinity` for a
    /// handle without a row: how the owner of a compact index narrows rows it chose itself (by
    /// metadata) to the few it rescores.
    public func estimatedScores(handles: [Int32], query: [Float]) -> [Float] {
        if keepsVectors { return exactScores(handles: handles, query: query) }
        let (dimension, l2) = (self.dimension, metric == .l2)
        let queryNorm = l2 ? Self.dot(query, query) : 0
        var queryCode: [Int8] = []
        if storage == .int8 {
            queryCode.reserveCapacity(dimension)
        }
        let queryScale = storage == .int8 ? Self.appendCode(of: query, to: &queryCode) : 0
        return handles.map { handle in
            guard handle >= 0, Int(handle) < locationOfHandle.count, let location = locationOfHandle[Int(handle)],
                let partition = partitions[location.user]
            else { return -Float.infinity }
            let row = location.row
            // For l2, both estimates are `2 x.q - |x|^2`, that is `|q|^2 - |x - q|^2`.
            var estimate: Float = 0
            if storage == .float16 {
                let dot = query.withUnsafeBufferPointer { q in
                    partition.halves.withUnsafeBufferPointer { halves in
                        halfKernel(q.baseAddress!, halves.baseAddress! + row * dimension, dimension)
                    }
                }
                estimate = l2 ? 2 * dot - partition.squaredNorms[row] : dot
            } else {
                queryCode.withUnsafeBufferPointer { q in
                    partition.codes.withUnsafeBufferPointer { codes in
                        partition.codeScales.withUnsafeBufferPointer { scales in
                            partition.squaredNorms.withUnsafeBufferPointer { norms in
                                ck_dot_i8_rows(
                                    q.baseAddress!, queryScale, codes.baseAddress! + row * dimension,
                                    scales.baseAddress! + row, l2 ? norms.baseAddress! + row : nil, dimension, 1,
                                    &estimate)
                            }
                        }
                    }
                }
            }
            return l2 ? estimate - queryNorm : estimate
        }
    }

    /// The exact score of `vector` for `query`, "higher is closer" (as `exactScores` gives):
    /// how a compact index's owner scores the vectors it keeps elsewhere.
    /// - Precondition: both have `dimension` components.
    public func exactScore(of vector: [Float], query: [Float]) -> Float {
        precondition(vector.count == dimension && query.count == dimension)
        let value = query.withUnsafeBufferPointer { q in
            vector.withUnsafeBufferPointer { v in pairKernel(q.baseAddress!, v.baseAddress!, dimension) }
        }
        return metric == .l2 ? -value : value
    }

    private func exactScore(at location: Location?, query: [Float]) -> Float {
        guard let location, let partition = partitions[location.user] else { return -Float.infinity }
        return query.withUnsafeBufferPointer { q in
            partition.rows.withUnsafeBufferPointer { rows in
                let value = pairKernel(q.baseAddress!, rows.baseAddress! + location.row * dimension, dimension)
                return metric == .l2 ? -value : value
            }
        }
    }

    // MARK: - Writes

    /// Adds a vector, or replaces the one stored under `id` (which may move it to another user).
    /// - Parameter handle: The owner's number for the row (reported by hits), or -1 for none.
    /// - Precondition: `vector.count == dimension`.
    public mutating func upsert(
        id: String, user: String, vector: [Float], attributes: RowAttributes, handle: Int32 = -1
    ) {
        precondition(vector.count == dimension, "vector has \(vector.count) components, index has \(dimension)")
        let key = ExactString(id)
        let userKey = ExactString(user)
        if locations[key] != nil { remove(id: id) }
        var squaredNorm: Float = 0
        if metric == .l2 { squaredNorm = Self.dot(vector, vector) }
        let (storage, keepsCodes, l2) = (storage, keepsCodes, metric == .l2)
        // Appended in place, through the dictionary's storage: one lookup, no copy.
        let row = Self.append(
            to: &partitions[userKey, default: Partition()], vector: vector, storage: storage, keepsCodes: keepsCodes,
            squaredNorm: l2 ? squaredNorm : nil, id: id, handle: handle, attributes: attributes)
        let location = Location(user: userKey, row: row)
        locations[key] = location
        if handle >= 0 {
            let i = Int(handle)
            while locationOfHandle.count <= i { locationOfHandle.append(nil) }
            locationOfHandle[i] = location
        }
    }

    /// Appends a row to `partition` and returns its index there.
    private static func append(
        to partition: inout Partition, vector: [Float], storage: VectorStorage, keepsCodes: Bool, squaredNorm: Float?,
        id: String, handle: Int32, attributes: RowAttributes
    ) -> Int {
        switch storage {
        case .float32: partition.rows.append(contentsOf: vector)
        case .float16: appendHalves(of: vector, to: &partition.halves)
        case .int8: break
        }
        if keepsCodes { partition.codeScales.append(appendCode(of: vector, to: &partition.codes)) }
        if let squaredNorm { partition.squaredNorms.append(squaredNorm) }
        partition.ids.append(id)
        partition.handles.append(handle)
        partition.attributes.append(attributes)
        return partition.count - 1
    }

    /// Replaces the filter attributes of `id`'s row; false when there is no such row.
    @discardableResult
    public mutating func setAttributes(id: String, _ attributes: RowAttributes) -> Bool {
        guard let location = locations[ExactString(id)] else { return false }
        partitions[location.user]!.attributes[location.row] = attributes
        return true
    }

    /// Removes `id`. Returns false when it was not there.
    @discardableResult
    public mutating func remove(id: String) -> Bool {
        guard let location = locations.removeValue(forKey: ExactString(id)) else { return false }
        var partition = partitions.removeValue(forKey: location.user)!
        if partition.handles[location.row] >= 0 { locationOfHandle[Int(partition.handles[location.row])] = nil }
        let last = partition.count - 1
        if location.row != last {
            // Keep rows dense: the last row moves into the hole.
            Self.moveRow(last, to: location.row, width: dimension, in: &partition.rows)
            Self.moveRow(last, to: location.row, width: dimension, in: &partition.halves)
            Self.moveRow(last, to: location.row, width: dimension, in: &partition.codes)
            Self.moveRow(last, to: location.row, width: 1, in: &partition.codeScales)
            if metric == .l2 { partition.squaredNorms[location.row] = partition.squaredNorms[last] }
            partition.ids[location.row] = partition.ids[last]
            partition.handles[location.row] = partition.handles[last]
            partition.attributes[location.row] = partition.attributes[last]
            locations[ExactString(partition.ids[location.row])]!.row = location.row
            let moved = partition.handles[location.row]
            if moved >= 0 { locationOfHandle[Int(moved)]?.row = location.row }
        }
        Self.dropLastRow(width: dimension, of: &partition.rows)
        Self.dropLastRow(width: dimension, of: &partition.halves)
        Self.dropLastRow(width: dimension, of: &partition.codes)
        Self.dropLastRow(width: 1, of: &partition.codeScales)
        if metric == .l2 { partition.squaredNorms.removeLast() }
        partition.ids.removeLast()
        partition.handles.removeLast()
        partition.attributes.removeLast()
        if partition.count > 0 { partitions[location.user] = partition }
        return true
    }

    /// Removes every vector of `user` and returns their ids.
    public mutating func removeAll(user: String) -> [String] {
        guard let partition = partitions.removeValue(forKey: ExactString(user)) else { return [] }
        for id in partition.ids { locations[ExactString(id)] = nil }
        for handle in partition.handles where handle >= 0 { locationOfHandle[Int(handle)] = nil }
        return partition.ids
    }

    /// Copies row `from` of `array` (rows of `width`) over row `to`; nothing for an array this
    /// storage leaves empty.
    private static func moveRow<Element>(_ from: Int, to: Int, width: Int, in array: inout [Element]) {
        guard !array.isEmpty else { return }
        array.withUnsafeMutableBufferPointer { array in
            for j in 0..<width { array[to * width + j] = array[from * width + j] }
        }
    }

    /// Drops the last row (of `width`) of `array`, unless this storage leaves it empty.
    private static func dropLastRow<Element>(width: Int, of array: inout [Element]) {
        if !array.isEmpty { array.removeLast(width) }
    }

    // MARK: - Search

    /// Users with at least this many rows are searched through their int8 codes, kept beside
    /// the float32 rows (a quarter of their bytes): the int8 products estimate every row's score,
    /// and the best `compactCandidates(k:)` by that estimate are scored exactly (float32) for the
    /// final order. Smaller users, `exact` searches, and searches whose candidates would be more
    /// than a sixteenth of the rows (measured: at 10,000 rows the float32 scan is as fast from
    /// k = 150 on) scan float32 rows.
    public static let compactScanRows = 2048

    /// How many rows of the int8 estimate are scored exactly for `k` hits.
    static func compactCandidates(k: Int) -> Int { 4 * k + 64 }

    /// How many rows a compact index's estimates hand to `Rescore` for `k` hits: estimates are
    /// close to the exact scores (float16's closer than int8's; the tests bound them at 1% and
    /// 10%), so the margin is small; each candidate is one read of the file. Measured
    /// (Benchmarks/scripts/compact_recall.py): recall@10 and @100 of 1.0000 against float32 on
    /// WordNet's queries and on random ones, even with `k + 16` for int8.
    public func rescoredCandidates(k: Int) -> Int {
        storage == .float16 ? k + 16 : k + max(16, k / 2)
    }

    /// The `k` best rows of `user` for `query` that pass `filter`, best first.
    /// - Parameters:
    ///   - exact: The ground truth: float32 storage scans the float32 rows, never the int8
    ///     codes; compact storage rescores every row that passes the filter.
    ///   - exactTop: For compact storage with `rescore`, when only the best `exactTop` of the
    ///     `k` hits need exact scores (a fused search's deep pool, where a place more or less
    ///     moves a fused score by little): the `rescoredCandidates(k: exactTop)` best rows by
    ///     their codes are rescored and come first, ranked exactly, and the rest of the `k` best
    ///     by the codes follow, ranked and scored by their estimates. Each rescored row is a
    ///     read of the file, so a pool of 200 costs 26 reads, not 300. Nil: every hit exact.
    ///   - rescore: For compact storage, the exact scores of the candidates its codes choose
    ///     (`rescoredCandidates(k:)` of them); without it, the codes' estimates are the scores.
    ///     Float32 storage scores exactly itself and never calls it.
    /// - Precondition: `query.count == dimension`, `k > 0`.
    public func search(
        user: String, query: [Float], k: Int, filter: RowFilter = RowFilter(), exact: Bool = false,
        exactTop: Int? = nil, rescore: Rescore? = nil
    ) rethrows -> [SearchHit] {
        precondition(query.count == dimension && k > 0)
        guard let partition = partitions[ExactString(user)] else { return [] }
        let n = partition.count
        let queryNorm = metric == .l2 ? Self.dot(query, query) : 0
        switch storage {
        case .float32:
            if !exact, n >= Self.compactScanRows, Self.compactCandidates(k: k) * 16 <= n {
                let candidates = candidateRows(
                    int8Estimates(partition, query: query), in: partition, count: Self.compactCandidates(k: k),
                    filter: filter)
                return ranked(
                    candidates, scores: exactScores(rows: candidates, in: partition, query: query), in: partition, k: k)
            }
            let scores = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
                partition.rows.withUnsafeBufferPointer { rows in
                    query.withUnsafeBufferPointer { q in
                        scan(
                            rows.baseAddress!, count: n, queries: q.baseAddress!, queryCount: 1,
                            into: buffer.baseAddress!)
                    }
                }
                initialized = n
            }
            return scores.withUnsafeBufferPointer { scores in
                select(scores, in: partition, queryNorm: queryNorm, k: k, filter: filter)
            }
        case .float16, .int8:
            let estimates =
                storage == .float16
                ? halfEstimates(partition, query: query) : int8Estimates(partition, query: query)
            // An estimate of l2 is 2 x.q - |x|^2, that is |q|^2 - |x - q|^2.
            func estimated(_ row: Int) -> Float { metric == .l2 ? estimates[row] - queryNorm : estimates[row] }
            guard rescore != nil else {
                let candidates = candidateRows(estimates, in: partition, count: k, filter: filter)
                return ranked(candidates, scores: candidates.map(estimated), in: partition, k: k)
            }
            if !exact, let exactTop, rescoredCandidates(k: exactTop) < rescoredCandidates(k: k) {
                let pool = candidateRows(estimates, in: partition, count: k, filter: filter)
                let byEstimate = ranked(pool, scores: pool.map(estimated), in: partition, k: k)
                // The rows of the best by estimate: `pool` holds each row once.
                let heads = Set(byEstimate.prefix(rescoredCandidates(k: exactTop)).map(\.handle))
                let head = pool.filter { heads.contains(partition.handles[$0]) }
                let scores = try rescore?(head.map { partition.handles[$0] }) ?? []
                return ranked(head, scores: scores, in: partition, k: head.count) + byEstimate.dropFirst(head.count)
            }
            let candidates = candidateRows(
                estimates, in: partition, count: exact ? n : rescoredCandidates(k: k), filter: filter)
            // (Called through the optional: `rethrows` follows the parameter, not a copy of it.)
            let scores = try rescore?(candidates.map { partition.handles[$0] }) ?? []
            return ranked(candidates, scores: scores, in: partition, k: k)
        }
    }

    /// Searches several queries for one user at once: one `sgemm` scores them all.
    /// Returns one list of hits per query, in order.
    /// - Precondition: `keepsVectors` (the float32 rows are what `sgemm` reads).
    public func search(user: String, queries: [[Float]], k: Int, filter: RowFilter = RowFilter()) -> [[SearchHit]] {
        precondition(keepsVectors, "a compact flat index keeps no float32 rows to multiply")
        precondition(k > 0 && queries.allSatisfy { $0.count == dimension })
        guard let partition = partitions[ExactString(user)], !queries.isEmpty else { return queries.map { _ in [] } }
        let n = partition.count
        var packed = [Float]()
        packed.reserveCapacity(queries.count * dimension)
        for query in queries { packed.append(contentsOf: query) }
        let scores = [Float](unsafeUninitializedCapacity: n * queries.count) { buffer, initialized in
            partition.rows.withUnsafeBufferPointer { rows in
                packed.withUnsafeBufferPointer { packed in
                    scan(
                        rows.baseAddress!, count: n, queries: packed.baseAddress!, queryCount: queries.count,
                        into: buffer.baseAddress!)
                }
            }
            initialized = n * queries.count
        }
        return scores.withUnsafeBufferPointer { scores in
            packed.withUnsafeBufferPointer { packed in
                (0..<queries.count).map { qi in
                    let query = UnsafeBufferPointer(rebasing: packed[qi * dimension..<(qi + 1) * dimension])
                    return select(
                        UnsafeBufferPointer(rebasing: scores[qi * n..<(qi + 1) * n]), in: partition,
                        queryNorm: metric == .l2 ? Self.dot(query, query) : 0, k: k, filter: filter)
                }
            }
        }
    }

    /// Bounded selection of the best `k` rows: a heap whose root is the worst row kept, so most
    /// rows cost one comparison. The filter runs only on rows that would enter the heap.
    private func select(
        _ raw: UnsafeBufferPointer<Float>, in partition: Partition, queryNorm: Float, k: Int, filter: RowFilter
    ) -> [SearchHit] {
        let l2 = metric == .l2
        let checkFilter = !filter.isEmpty
        var heap = TopKHeap(capacity: min(k, raw.count))
        partition.ids.withUnsafeBufferPointer { ids in
            partition.squaredNorms.withUnsafeBufferPointer { norms in
                for row in 0..<raw.count {
                    // For l2, 2 x.q - |x|^2 = |q|^2 - |x - q|^2: larger is closer.
                    let score = l2 ? 2 * raw[row] - norms[row] : raw[row]
                    if heap.isFull, !heap.admits(score: score, id: ids[row]) { continue }
                    if checkFilter, !filter.matches(partition.attributes[row]) { continue }
                    heap.insert(score: score, row: row, id: ids[row])
                }
            }
        }
        return heap.sortedBestFirst().map { entry in
            let score = l2 ? (max(0, queryNorm - entry.score)).squareRoot() : entry.score
            return SearchHit(id: partition.ids[entry.row], score: score, handle: partition.handles[entry.row])
        }
    }

    /// Every row's score estimated from its int8 code, "higher is closer" (for l2,
    /// `2 x.q - |x|^2`).
    private func int8Estimates(_ partition: Partition, query: [Float]) -> [Float] {
        let n = partition.count
        let dimension = self.dimension
        var queryCode: [Int8] = []
        queryCode.reserveCapacity(dimension)
        let queryScale = Self.appendCode(of: query, to: &queryCode)
        let l2 = metric == .l2
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            let out = buffer.baseAddress!
            partition.codes.withUnsafeBufferPointer { codes in
                partition.codeScales.withUnsafeBufferPointer { scales in
                    partition.squaredNorms.withUnsafeBufferPointer { norms in
                        queryCode.withUnsafeBufferPointer { q in
                            func scan(rowsFrom start: Int, to end: Int) {
                                ck_dot_i8_rows(
                                    q.baseAddress!, queryScale, codes.baseAddress! + start * dimension,
                                    scales.baseAddress! + start, l2 ? norms.baseAddress! + start : nil, dimension,
                                    end - start, out + start)
                            }
                            // Each chunk writes its own rows of `out`.
                            Self.scanRows(n, split: n * dimension >= Self.parallelInt8Bytes, scan(rowsFrom:to:))
                        }
                    }
                }
            }
            initialized = n
        }
    }

    /// Every row's score from its float16 components, "higher is closer" (for l2,
    /// `2 x.q - |x|^2`).
    private func halfEstimates(_ partition: Partition, query: [Float]) -> [Float] {
        let n = partition.count
        let (dimension, l2, kernel) = (self.dimension, metric == .l2, halfKernel)
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            partition.halves.withUnsafeBufferPointer { halves in
                partition.squaredNorms.withUnsafeBufferPointer { norms in
                    query.withUnsafeBufferPointer { q in
                        for row in 0..<n {
                            let dot = kernel(q.baseAddress!, halves.baseAddress! + row * dimension, dimension)
                            out[row] = l2 ? 2 * dot - norms[row] : dot
                        }
                    }
                }
            }
            initialized = n
        }
    }

    /// The exact scores ("higher is closer") of `rows`, from the float32 rows.
    private func exactScores(rows candidates: [Int], in partition: Partition, query: [Float]) -> [Float] {
        let (dimension, l2, kernel) = (self.dimension, metric == .l2, pairKernel)
        return query.withUnsafeBufferPointer { q in
            partition.rows.withUnsafeBufferPointer { rows in
                let ahead = 4
                for row in candidates.prefix(ahead) {
                    ck_prefetch_range(rows.baseAddress! + row * dimension, 4 * dimension)
                }
                return candidates.indices.map { i in
                    if i + ahead < candidates.count {
                        ck_prefetch_range(rows.baseAddress! + candidates[i + ahead] * dimension, 4 * dimension)
                    }
                    let value = kernel(q.baseAddress!, rows.baseAddress! + candidates[i] * dimension, dimension)
                    return l2 ? -value : value
                }
            }
        }
    }

    /// The best `k` of `rows` by `scores` (exact, "higher is closer": `-|x - q|^2` for l2), best
    /// first, with the metric's own scores; a row scored `-infinity` (gone) is left out.
    private func ranked(_ rows: [Int], scores: [Float], in partition: Partition, k: Int) -> [SearchHit] {
        let l2 = metric == .l2
        var heap = TopKHeap(capacity: min(k, rows.count))
        for (row, score) in zip(rows, scores) where score > -Float.infinity {
            let id = partition.ids[row]
            if heap.isFull, !heap.admits(score: score, id: id) { continue }
            heap.insert(score: score, row: row, id: id)
        }
        return heap.sortedBestFirst().map { entry in
            SearchHit(
                id: partition.ids[entry.row], score: l2 ? max(0, -entry.score).squareRoot() : entry.score,
                handle: partition.handles[entry.row])
        }
    }

    /// The rows of the `count` best estimates among those that pass `filter`, in no order.
    private func candidateRows(
        _ estimates: [Float], in partition: Partition, count: Int, filter: RowFilter
    ) -> [Int] {
        guard !filter.isEmpty else {
            // No filter: a heap over plain numbers, in C.
            return [Int](unsafeUninitializedCapacity: min(count, estimates.count)) { rows, initialized in
                estimates.withUnsafeBufferPointer { estimates in
                    initialized = ck_top_rows(estimates.baseAddress!, estimates.count, count, rows.baseAddress!)
                }
            }
        }
        var heap = TopKHeap(capacity: min(count, estimates.count))
        // Below the heap's worst, a row cannot enter: one comparison for most rows.
        var floor = -Float.infinity
        estimates.withUnsafeBufferPointer { estimates in
            partition.ids.withUnsafeBufferPointer { ids in
                for row in 0..<estimates.count {
                    let estimate = estimates[row]
                    if estimate < floor { continue }
                    if heap.isFull, !heap.admits(score: estimate, id: ids[row]) { continue }
                    if !filter.matches(partition.attributes[row]) { continue }
                    heap.insert(score: estimate, row: row, id: ids[row])
                    if heap.isFull { floor = heap.entries[0].score }
                }
            }
        }
        return heap.entries.map(\.row)
    }

    /// Appends `vector`'s int8 code (each component over the scale, rounded, within -127...127)
    /// and returns the scale: the largest magnitude over 127, in double precision so that a
    /// subnormal vector cannot divide by a scale that underflowed to zero (`ck_encode_i8`).
    @discardableResult
    static func appendCode(of vector: [Float], to codes: inout [Int8]) -> Float {
        // Encoded aside and appended as one copy (appending zeros first cost as much as the
        // encoding).
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: vector.count) { code in
            let scale = vector.withUnsafeBufferPointer { vector in
                ck_encode_i8(vector.baseAddress!, vector.count, code.baseAddress!)
            }
            codes.append(contentsOf: UnsafeBufferPointer(code))
            return scale
        }
    }

    /// Appends `vector` as IEEE half-precision bit patterns, each component rounded to nearest
    /// even and clamped to float16's largest finite magnitude (`ck_encode_f16`).
    static func appendHalves(of vector: [Float], to halves: inout [UInt16]) {
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: vector.count) { half in
            vector.withUnsafeBufferPointer { vector in
                ck_encode_f16(vector.baseAddress!, vector.count, half.baseAddress!)
            }
            halves.append(contentsOf: UnsafeBufferPointer(half))
        }
    }

    // MARK: - Vector helpers

    static func dot(_ a: [Float], _ b: [Float]) -> Float {
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in dot(a, b) } }
    }

    static func dot(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Float {
        var sum: Float = 0
        for i in 0..<a.count { sum += a[i] * b[i] }
        return sum
    }

}

/// One search result from an index: a row's id and its score under the index's metric.
public struct SearchHit: Sendable, Equatable {
    public var id: String
    /// The row's handle (see `FlatIndex`), or -1.
    public var handle: Int32
    /// Cosine similarity or inner product (higher is better), or Euclidean distance for `l2`
    /// (lower is better).
    public var score: Float

    public init(id: String, score: Float, handle: Int32 = -1) {
        self.id = id
        self.score = score
        self.handle = handle
    }
}
