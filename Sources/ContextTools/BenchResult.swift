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
    /// Recall against queries/second, one point per setting swept (one point for an exact index).
    public var curve: [(qps: Double, recall: Double)]

    public init(
        name: String, mode: String, settings: [(key: String, value: String)], figures: [(key: String, value: Double)],
        curve: [(qps: Double, recall: Double)]
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
            && a.figures.map(\.value) == b.figures.map(\.value) && a.curve.map(\.qps) == b.curve.map(\.qps)
            && a.curve.map(\.recall) == b.curve.map(\.recall)
    }

    public func figure(_ key: String) -> Double? { figures.first { $0.key == key }?.value }

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
                        curve.map { .object(JSONObject([("qps", .number($0.qps)), ("recall", .number($0.recall))])) })
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
            return (qps, recall)
        }
    }

    // MARK: - Reports

    /// The figures as a two-column table for the terminal.
    public var table: String {
        let width = max(8, figures.map(\.key.count).max() ?? 0)
        return figures.map { $0.key.padded(to: width) + "  " + format($0.value) }.joined(separator: "\n")
    }

    /// Markdown: settings and figures of every run in `results`, side by side.
    public static func markdown(_ results: [BenchResult]) -> String {
        var text = "# ContextStore benchmark results\n\n## Settings\n\n"
        let settingKeys = results.flatMap { $0.settings.map(\.key) }.uniqued()
        text += "| setting | " + results.map(\.name).joined(separator: " | ") + " |\n"
        text += "|---|" + results.map { _ in "---|" }.joined() + "\n"
        for key in settingKeys {
            text +=
                "| \(key) | "
                + results.map { r in r.settings.first { $0.key == key }?.value ?? "" }.joined(separator: " | ") + " |\n"
        }
        text += "\n## Figures\n\n| figure | " + results.map(\.name).joined(separator: " | ") + " |\n"
        text += "|---|" + results.map { _ in "---:|" }.joined() + "\n"
        for key in results.flatMap({ $0.figures.map(\.key) }).uniqued() {
            text +=
                "| \(key) | " + results.map { r in r.figure(key).map(format) ?? "" }.joined(separator: " | ") + " |\n"
        }
        text += "\n![recall against queries per second](recall_qps.svg)\n"
        return text
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

extension String {
    func padded(to width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}

extension Sequence where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
