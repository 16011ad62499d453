import ArgumentParser
import MemoryStore
import VectorIndex

extension VectorStorage: ExpressibleByArgument {}

/// The index options of a new space, shared by `serve`, `import --db` and `bench`.
struct IndexOptions: ParsableArguments {
    @Option(
        help: "Index of a new space: flat or hnsw (default: flat). An existing space keeps the one it was created with."
    )
    var index: String?

    @Option(name: .customLong("M"), help: "hnsw: links per node (2M on layer 0).")
    var m = 16

    @Option(help: "hnsw: candidates kept while linking a node.")
    var efConstruction = 200

    @Option(help: "hnsw: candidates kept while searching, for searches that pass no 'ef'.")
    var efSearch = 64

    @Option(
        help: "hnsw: how the graph keeps vectors for its walks: float32, float16 or int8 (re-ranked exactly).")
    var storage: VectorStorage = .float32

    @Option(
        help: ArgumentHelp(
            "How the flat index keeps rows in memory: float32, float16 (half the bytes) or int8 (a quarter).",
            discussion: """
                Compact rows are searched by their codes and the best candidates rescored with the \
                float32 vectors the file holds. An existing space keeps its setting unless this is given.
                """)
    )
    var flatStorage: VectorStorage?

    func validate() throws {
        try requireFlag("M", m, in: 2...512)
        try requireFlag("ef-construction", efConstruction, in: 1...10_000)
        try requireFlag("ef-search", efSearch, in: 1...10_000)
    }

    /// The choice for `MemoryStore(index:)`: nil when none was made.
    func spaceIndex() throws -> SpaceIndex? {
        switch index {
        case nil: return nil
        case "flat": return .flat
        case "hnsw":
            guard m >= 2, efConstruction >= 1, efSearch >= 1 else {
                throw ValidationError("--M must be at least 2, --ef-construction and --ef-search at least 1")
            }
            return .hnsw(HNSWParameters(M: m, efConstruction: efConstruction, efSearch: efSearch, storage: storage))
        case let other?: throw ValidationError("--index must be flat or hnsw, not '\(other)'")
        }
    }
}

/// Refuses a numeric flag outside `range`, naming the flag and the range.
func requireFlag<Value: Comparable & CustomStringConvertible>(
    _ flag: String, _ value: Value?, in range: ClosedRange<Value>
) throws {
    guard let value, !range.contains(value) else { return }
    throw ValidationError("--\(flag) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
}

/// A flag that takes a number or `none` (`serve --http-port`, `bench --prompt-budget`).
enum NumberOrNone: ExpressibleByArgument, Equatable {
    case number(Int)
    case none

    init?(argument: String) {
        if argument == "none" {
            self = .none
        } else if let number = Int(argument) {
            self = .number(number)
        } else {
            return nil
        }
    }

    /// The number; nil for `none`.
    var number: Int? {
        if case .number(let number) = self { number } else { nil }
    }

    var defaultValueDescription: String { number.map(String.init) ?? "none" }
}
