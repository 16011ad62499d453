import VectorIndex

/// The index that serves a space's searches, chosen when the space is created and stored with
/// it (keys `index`, `hnsw_m`, `hnsw_ef_construction`, `hnsw_ef_search`, `hnsw_storage` of the
/// `space` table).
public enum SpaceIndex: Sendable, Equatable, CustomStringConvertible {
    /// Exact search only: every search scans the user's rows.
    case flat
    /// An HNSW graph, stored in the same file; small scopes are still scanned exactly.
    case hnsw(HNSWParameters)

    /// `flat` or `hnsw`.
    public var name: String {
        switch self {
        case .flat: "flat"
        case .hnsw: "hnsw"
        }
    }

    public var description: String {
        switch self {
        case .flat: "flat"
        case .hnsw(let p):
            "hnsw (M \(p.M), efConstruction \(p.efConstruction), efSearch \(p.efSearch), storage \(p.storage.rawValue))"
        }
    }

    /// The `space` rows that record this choice.
    var settings: [(String, String)] {
        switch self {
        case .flat: [("index", "flat")]
        case .hnsw(let p):
            [
                ("index", "hnsw"), ("hnsw_m", String(p.M)), ("hnsw_ef_construction", String(p.efConstruction)),
                ("hnsw_ef_search", String(p.efSearch)), ("hnsw_storage", p.storage.rawValue),
            ]
        }
    }

    /// Reads the choice back from the `space` table; a space without one is flat.
    init(settings: [String: String]) throws {
        switch settings["index"] ?? "flat" {
        case "flat": self = .flat
        case "hnsw":
            guard let m = settings["hnsw_m"].flatMap({ Int($0) }), m >= 2,
                let efConstruction = settings["hnsw_ef_construction"].flatMap({ Int($0) }), efConstruction >= 1,
                let efSearch = settings["hnsw_ef_search"].flatMap({ Int($0) }), efSearch >= 1,
                let storage = VectorStorage(rawValue: settings["hnsw_storage"] ?? "float32")
            else { throw StoreError.incompatibleDatabase("the space's HNSW settings are missing or invalid") }
            self = .hnsw(HNSWParameters(M: m, efConstruction: efConstruction, efSearch: efSearch, storage: storage))
        case let other: throw StoreError.incompatibleDatabase("unknown index '\(other)'")
        }
    }
}

/// Which index answers a search.
public enum SearchPlan: String, Sendable {
    /// An exact scan of the user's rows (BLAS).
    case flat
    /// A walk of the HNSW graph with the scope applied during the walk.
    case hnsw
}
