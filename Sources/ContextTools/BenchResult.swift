import ContextProtocol
import Foundation

/// One benchmark run: its settings and every figure it measured, as written to `<name>.json`.
public struct BenchResult: Sendable, Equatable {
    /// The run's name (its file name in the results folder).
    public var name: String
    /// `vector` or `conversation`.
    public var mode: String
    /// Settings, as given (dataset paths, k, concurrency, index, ...).
    public var settings: [(key: String, value: String)]
    /// Figures: recall, latency percentiles in microseconds, queries/second, ...
    public var figures: [(key: String, value: Double)]
    /// Recall against queries/second: a vector run's point for each `ef` swept (one point without
    /// a sweep), a conversation run's for each search mode.
    public var curve: [CurvePoint]

    /// One pass of a run.
    public struct CurvePoint: Sendable, Equatable {
        public var qps: Double
        public var recall: Double
        /// The pass's `ef` (nil: the space's default, or not a graph search).
        public var ef: Int?

        public init(qps: Double, recall: Double, ef: Int? = nil) {
            self.qps = qps
            self.recall = recall
            self.ef = ef
        }
    }

    public init(
        name: String, mode: String, settings: [(key: String, value: String)], figures: [(key: String, value: Double)],
        curve: [CurvePoint]
    ) {
        self.name = name
        self.mode = mode
        self.settings = settings
        self.figures = figures
        self.curve = curve
    }

    public static func == (a: BenchResult, b: BenchResult) -> Bool {
        a.name == b.name && a.mode == b.mode && a.settings.map(\.key) == b.settings.map(\.key)
            && a.settings.map(\.value) == b.settings.map(\.value) && a.figures.map(\.key) == b.figures.map(\.key)
            && a.figures.map(\.value) == b.figures.map(\.value) && a.curve == b.curve
    }

    public func figure(_ key: String) -> Double? { figures.first { $0.key == key }?.value }

    public func setting(_ key: String) -> String? { settings.first { $0.key == key }?.value }

    /// A conversation run's search modes, as measured.
    var modes: [String] { setting("search")?.split(separator: ",").map(String.init) ?? [] }

    /// A conversation run's question categories (`category 1`, ...), as its figures name them.
    var categories: [String] {
        figures.compactMap { figure in
            guard let mode = modes.first, figure.key.hasPrefix("\(mode) questions category ") else { return nil }
            return String(figure.key.dropFirst("\(mode) questions ".count))
        }
    }

    // MARK: - JSON

    public var json: String {
        let value: JSONValue = .object(
            JSONObject([
                ("name", .string(name)), ("mode", .string(mode)),
                ("settings", .object(JSONObject(settings.map { ($0.key, .string($0.value)) }))),
                ("figures", .object(JSONObject(figures.map { ($0.key, .number($0.value)) }))),
                (
                    "curve",
                    .array(
                        curve.map { point in
                            var fields: [(key: String, value: JSONValue)] = [
                                ("qps", .number(point.qps)), ("recall", .number(point.recall)),
                            ]
                            if let ef = point.ef { fields.append(("ef", .integer(Int64(ef)))) }
                            return .object(JSONObject(fields))
                        })
                ),
            ]))
        return JSONWriter.serialize(value) + "\n"
    }

    public init(json text: String) throws {
        guard case .object(let object) = try JSONParser.parse(text), case .string(let name) = object["name"],
            case .string(let mode) = object["mode"], case .object(let settings) = object["settings"],
            case .object(let figures) = object["figures"], case .array(let curve) = object["curve"]
        else { throw DataFileError("not a benchmark result") }
        self.name = name
        self.mode = mode
        self.settings = settings.fields.compactMap { field in
            if case .string(let value) = field.value { (field.key, value) } else { nil }
        }
        self.figures = figures.fields.compactMap { field in
            field.value.numberValue.map { (field.key, $0) }
        }
        self.curve = curve.compactMap { point in
            guard case .object(let point) = point, let qps = point["qps"]?.numberValue,
                let recall = point["recall"]?.numberValue
            else { return nil }
            return CurvePoint(qps: qps, recall: recall, ef: point["ef"]?.integerValue.map { Int($0) })
        }
    }

    // MARK: - Reports

    /// The figures as a two-column table for the terminal.
    public var table: String {
        let width = max(8, figures.map(\.key.count).max() ?? 0)
        return figures.map { $0.key.padded(to: width) + "  " + format($0.value) }.joined(separator: "\n")
    }

    /// The ratio B/A of every figure both runs have.
    public static func compare(_ a: BenchResult, _ b: BenchResult) -> String {
        let keys = a.figures.map(\.key).filter { b.figure($0) != nil }
        let width = max(8, keys.map(\.count).max() ?? 0)
        var lines = [
            "figure".padded(to: width) + "  " + a.name.padded(to: 12) + "  " + b.name.padded(to: 12) + "  ratio"
        ]
        for key in keys {
            let x = a.figure(key)!
            let y = b.figure(key)!
            let ratio = x != 0 ? format(y / x) + "x" : "-"
            lines.append(
                key.padded(to: width) + "  " + format(x).padded(to: 12) + "  " + format(y).padded(to: 12) + "  " + ratio
            )
        }
        return lines.joined(separator: "\n")
    }
}

func format(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e12 { return String(Int64(value)) }
    return String(format: abs(value) < 10 ? "%.4f" : "%.1f", value)
}

/// `value` rounded to a whole number, its thousands separated by commas (1,250), whatever the
/// machine's locale.
func grouped(_ value: Double) -> String {
    let whole = Int64(value.rounded())
    let digits = String(whole.magnitude)
    var text = whole < 0 ? "-" : ""
    for (position, digit) in digits.enumerated() {
        if position > 0, (digits.count - position) % 3 == 0 { text.append(",") }
        text.append(digit)
    }
    return text
}

extension String {
    func padded(to width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}

extension Sequence where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
