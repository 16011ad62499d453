import ArgumentParser
import ContextModel
import ContextTools
import VectorIndex

#if canImport(Glibc)
    import Glibc
#endif

/// Builds an HNSW graph single-threaded from a base file, then sweeps `ef` over a query file and
/// prints recall@10 against the ground truth and queries/second on one thread, with the build
/// time and the resident memory: the figures hnswlib is compared on.
@main
struct HNSWBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hnswbench", abstract: "Build and sweep an HNSW graph on a dataset (single thread).")

    @Option(help: "Base vectors (.npy/.fvecs).") var base: String
    @Option(help: "Query vectors (.npy/.fvecs).") var queries: String
    @Option(help: "Ground truth rows (.npy int32/.ivecs).") var groundtruth: String
    @Option(help: "Rows of the base to use (default: all).") var rows: Int?
    @Option(name: .customLong("M")) var m = 16
    @Option(name: .customLong("ef-construction")) var efConstruction = 200
    @Option(help: "Comma-separated ef values to sweep.") var ef = "10,16,32,64,128,256"
    @Option(help: "k for recall@k.") var k = 10
    @Option(help: "Vectors in the graph: float32, float16 or int8 (compact ones re-rank with the float32 base).")
    var storage = "float32"
    @Option(help: "Sweeps over the ef list; each ef reports its best queries/s.") var repeats = 1
    @Option(help: "After the sweep: delete this share of the base, insert it again, and sweep again.")
    var churn = 0.0

    func run() throws {
        let baseFile = try VectorFile(path: base)
        let queryFile = try VectorFile(path: queries)
        let truthFile = try VectorFile(path: groundtruth)
        let count = min(rows ?? baseFile.rows, baseFile.rows)
        // Decode the base before measuring, as the hnswlib script holds its NumPy array before
        // it measures: the figure is then the index's own memory (its copy of the vectors included).
        let base = (0..<count).map(baseFile.row)
        // Compact storage re-ranks the walk's candidates with exact float32 vectors, as a server
        // does with its flat index: that index is built here, outside the measured memory.
        let attributes = RowAttributes(session: nil, role: nil, createdAt: 0)
        var exact: FlatIndex?
        if storage != "float32" {
            exact = FlatIndex(dimension: baseFile.dimension, metric: .dot)
            for (row, vector) in base.enumerated() {
                exact!.upsert(id: String(row), user: "u", vector: vector, attributes: attributes, handle: Int32(row))
            }
        }
        print("cpu: \(Processor.model); kernels: \(Processor.kernels); blas: \(BLAS.loadedLibrary)")
        let residentBefore = residentBytes()
        guard let vectorStorage = VectorStorage(rawValue: storage) else {
            throw ValidationError("--storage must be float32, float16 or int8")
        }
        var index = HNSWIndex(
            dimension: baseFile.dimension, metric: .dot,
            parameters: HNSWParameters(M: m, efConstruction: efConstruction, storage: vectorStorage))
        index.reserveCapacity(count)  // as hnswlib's max_elements
        let start = seconds()
        for (row, vector) in base.enumerated() {
            index.insert(id: String(row), user: "u", vector: vector, attributes: attributes, handle: Int32(row))
        }
        let build = seconds() - start
        let resident = residentBytes() - residentBefore
        print(
            "build: \(count) vectors in \(fixed(build, 1)) s = \(Int(Double(count) / build)) inserts/s, resident +\(resident / 1_000_000) MB (\(resident / count) bytes/vector, vectors included)"
        )
        let queryVectors = (0..<queryFile.rows).map(queryFile.row)
        // With a subset of the base, the ground truth is only usable when computed on it.
        let truth: [Set<String>] =
            count == baseFile.rows
            ? (0..<queryFile.rows).map { Set(truthFile.integerRow($0).prefix(k).map(String.init)) }
            : {
                var flat = FlatIndex(dimension: baseFile.dimension, metric: .dot)
                for row in 0..<count {
                    flat.upsert(id: String(row), user: "u", vector: baseFile.row(row), attributes: attributes)
                }
                return flat.search(user: "u", queries: queryVectors, k: k).map { Set($0.map(\.id)) }
            }()
        let widths = ef.split(separator: ",").compactMap { Int($0) }
        func sweep() {
            print("ef\trecall@\(k)\tqueries/s")
            var best = [Double](repeating: 0, count: widths.count)
            var recalls = [Double](repeating: 0, count: widths.count)
            for _ in 0..<max(1, repeats) {
                for (w, width) in widths.enumerated() {
                    var found = 0
                    let began = seconds()
                    var results: [[SearchHit]] = []
                    results.reserveCapacity(queryVectors.count)
                    for query in queryVectors {
                        results.append(
                            index.search(user: "u", query: query, k: k, ef: width) {
                                exact!.exactScores(handles: $0.map(\.handle), query: query)
                            })
                    }
                    let elapsed = seconds() - began
                    for (hits, expected) in zip(results, truth) {
                        found += hits.filter { expected.contains($0.id) }.count
                    }
                    recalls[w] = Double(found) / Double(k * queryVectors.count)
                    best[w] = max(best[w], Double(queryVectors.count) / elapsed)
                }
            }
            for (w, width) in widths.enumerated() { print("\(width)\t\(fixed(recalls[w], 4))\t\(Int(best[w]))") }
        }
        sweep()
        guard churn > 0 else { return }
        // Delete a random share (seeded) in batches of 1,000, insert it again, sweep again.
        var state: UInt64 = 7
        var rows = Array(0..<count)
        for i in stride(from: rows.count - 1, to: 0, by: -1) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            rows.swapAt(i, Int((state >> 33) % UInt64(i + 1)))
        }
        let victims = rows.prefix(Int(Double(count) * churn))
        var began = seconds()
        for start in stride(from: 0, to: victims.count, by: 1000) {
            index.remove(
                ids: victims[victims.startIndex + start..<min(victims.endIndex, victims.startIndex + start + 1000)].map(
                    String.init))
        }
        let removal = seconds() - began
        began = seconds()
        for row in victims {
            index.insert(id: String(row), user: "u", vector: base[row], attributes: attributes, handle: Int32(row))
        }
        let reinsertion = seconds() - began
        print(
            "churn: deleted \(victims.count) in batches of 1,000 in \(fixed(removal, 1)) s (\(Int(Double(victims.count) / removal)) deletes/s), inserted them again in \(fixed(reinsertion, 1)) s; integrity: \(index.integrityProblems().isEmpty ? "ok" : index.integrityProblems().joined(separator: "; "))"
        )
        sweep()
    }

    private func seconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    private func residentBytes() -> Int {
        guard let file = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(file) }
        var size = 0
        var resident = 0
        _ = withUnsafeMutablePointer(to: &size) { s in
            withUnsafeMutablePointer(to: &resident) { r in
                withVaList([s, r]) { vfscanf(file, "%ld %ld", $0) }
            }
        }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// `value` with `places` decimals.
func fixed(_ value: Double, _ places: Int) -> String {
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    let whole = scaled / Int(scale)
    let fraction = String(abs(scaled) % Int(scale))
    return places == 0 ? String(whole) : "\(whole)." + String(repeating: "0", count: places - fraction.count) + fraction
}
