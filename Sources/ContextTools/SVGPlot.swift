import Foundation

/// The benchmark's pictures, as SVG text: recall against throughput for vector runs (one curve a
/// run, each point labelled with its `ef`), and evidence recall per question category for
/// conversation runs (grouped bars).
public enum SVGPlot {
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// Recall@k (against the exact top k) over queries per second; the points of a run are joined
    /// in order of recall, and each is labelled with its `ef` (none for an exact scan).
    public static func recallAgainstQPS(_ runs: [BenchResult]) -> String {
        let frame = Frame(width: 760, height: 460, left: 80, right: 200, top: 56, bottom: 60)
        let points = runs.flatMap(\.curve)
        let k = shared("k", of: runs) ?? "k"
        let xTicks = niceTicks(0, max(1, points.map(\.qps).max() ?? 1))
        let recalls = points.map(\.recall)
        let yTicks = niceTicks(max(0, (recalls.min() ?? 0) - 0.02), min(1, (recalls.max() ?? 1) + 0.01))
        var svg = frame.open(
            title: "Recall against throughput",
            xTitle: "queries per second (\(concurrencyNote(runs)))",
            yTitle: "recall@\(k) (share of the exact top \(k) found)")
        let x = frame.xScale(xTicks)
        let y = frame.yScale(yTicks)
        svg += frame.axes(xTicks: xTicks, yTicks: yTicks, x: x, y: y)
        for (index, run) in runs.enumerated() {
            let color = colors[index % colors.count]
            let sorted = run.curve.sorted { ($0.recall, $0.qps) < ($1.recall, $1.qps) }
            if sorted.count > 1 {
                let path = sorted.map { "\(fixed(x($0.qps))),\(fixed(y($0.recall)))" }.joined(separator: " ")
                svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            }
            for (order, point) in sorted.enumerated() {
                let (px, py) = (fixed(x(point.qps)), fixed(y(point.recall)))
                svg += "<circle cx=\"\(px)\" cy=\"\(py)\" r=\"4\" fill=\"\(color)\"/>\n"
                // Above and below in turn, so neighbouring points' labels do not overlap; left of the
                // points for one run, right for the next, so two runs' labels keep apart.
                let labelY = y(point.recall) + (order % 2 == 0 ? -6 : 14)
                let (labelX, anchor) = index % 2 == 0 ? (x(point.qps) - 6, "end") : (x(point.qps) + 6, "start")
                svg += "<text x=\"\(fixed(labelX))\" y=\"\(fixed(labelY))\" font-size=\"10\" text-anchor=\"\(anchor)\" "
                svg += "fill=\"\(color)\">\(point.ef.map { "ef=\($0)" } ?? "default")</text>\n"
            }
            svg += frame.legend(index: index, color: color, label: run.name)
        }
        return svg + "</svg>\n"
    }

    /// Evidence recall@k per question category: a group of bars a category, a bar for each search
    /// mode of each run, its value above it.
    public static func evidenceRecallByCategory(_ runs: [BenchResult]) -> String {
        let k = shared("k", of: runs) ?? "k"
        return byCategory(
            runs, title: "LoCoMo evidence recall by question category",
            yTitle: "evidence recall@\(k) (share of evidence turns in the top \(k))"
        ) { run, mode, category in "\(mode) recall@\(run.setting("k") ?? k) \(category)" }
    }

    /// The share of questions whose evidence turns are all in their prompt, per question category,
    /// drawn as `evidenceRecallByCategory` draws recall.
    public static func evidenceInPromptByCategory(_ runs: [BenchResult]) -> String {
        let budget = shared("prompt budget", of: runs) ?? "its budget"
        return byCategory(
            runs, title: "LoCoMo questions with all their evidence in the prompt, by category",
            yTitle: "share of questions (prompt of \(budget) tokens)"
        ) { _, mode, category in "\(mode) evidence_all_in_prompt \(category)" }
    }

    /// The value of setting `key` when every run that has it has the same one.
    private static func shared(_ key: String, of runs: [BenchResult]) -> String? {
        let values = Set(runs.compactMap { $0.setting(key) })
        return values.count == 1 ? values.first : nil
    }

    /// Bars of a figure (between 0 and 1) by question category, one for each mode of each run.
    private static func byCategory(
        _ runs: [BenchResult], title: String, yTitle: String,
        figure: (_ run: BenchResult, _ mode: String, _ category: String) -> String
    ) -> String {
        let series = runs.flatMap { run in run.modes.map { (run: run, mode: $0) } }
        let categories = runs.flatMap(\.categories).uniqued().sorted()
        let frame = Frame(width: 760, height: 460, left: 80, right: 200, top: 56, bottom: 60)
        var svg = frame.open(title: title, xTitle: "question category (questions asked)", yTitle: yTitle)
        let yTicks = niceTicks(0, 1)
        let y = frame.yScale(yTicks)
        svg += frame.axes(xTicks: [], yTicks: yTicks, x: { _ in 0 }, y: y)
        let groupWidth = (frame.width - frame.left - frame.right) / Double(max(1, categories.count))
        let barWidth = min(40, groupWidth * 0.8 / Double(max(1, series.count)))
        for (c, category) in categories.enumerated() {
            let groupLeft = frame.left + groupWidth * Double(c) + (groupWidth - barWidth * Double(series.count)) / 2
            for (s, (run, mode)) in series.enumerated() {
                guard let value = run.figure(figure(run, mode, category)) else { continue }
                let left = groupLeft + barWidth * Double(s)
                svg += "<rect x=\"\(fixed(left))\" y=\"\(fixed(y(value)))\" width=\"\(fixed(barWidth - 2))\" "
                svg += "height=\"\(fixed(y(0) - y(value)))\" fill=\"\(colors[s % colors.count])\"/>\n"
                svg += "<text x=\"\(fixed(left + barWidth / 2 - 1))\" y=\"\(fixed(y(value) - 4))\" font-size=\"10\" "
                svg += "text-anchor=\"middle\">\(String(format: "%.2f", value))</text>\n"
            }
            let asked = series.first.flatMap { $0.run.figure("\($0.mode) questions \(category)") }.map { Int($0) }
            let label = category + (asked.map { " (\($0))" } ?? "")
            svg +=
                "<text x=\"\(fixed(frame.left + groupWidth * (Double(c) + 0.5)))\" y=\"\(fixed(frame.height - frame.bottom + 18))\" "
            svg += "text-anchor=\"middle\">\(escape(label))</text>\n"
        }
        for (s, (run, mode)) in series.enumerated() {
            svg += frame.legend(
                index: s, color: colors[s % colors.count], label: runs.count > 1 ? "\(run.name): \(mode)" : mode)
        }
        return svg + "</svg>\n"
    }

    /// Round tick values covering `low...high`: steps of 1, 2, 2.5 or 5 times a power of ten.
    static func niceTicks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        let span = max(high - low, 1e-9)
        let raw = span / Double(count)
        let exponent = floor(log10(raw))
        let magnitude = pow(10, exponent)
        let mantissa = [1, 2, 2.5, 5, 10].first { $0 * magnitude >= raw * 0.999 } ?? 10
        let step = mantissa * magnitude
        let first = (low / step).rounded(.down)
        let last = (high / step).rounded(.up)
        // Divided by a power of ten rather than multiplied by its inverse: 17 x 5 / 100 is 0.85 exactly.
        return stride(from: first, through: last, by: 1).map {
            exponent >= 0 ? $0 * mantissa * magnitude : $0 * mantissa / pow(10, -exponent)
        }
    }

    /// A tick's text: as many decimals as its step needs, thousands separated.
    static func tickLabel(_ value: Double, step: Double) -> String {
        let decimals =
            (0...4).first { abs((step * pow(10, Double($0))).rounded() - step * pow(10, Double($0))) < 1e-6 } ?? 4
        if decimals == 0 { return grouped(value) }
        return String(format: "%.\(decimals)f", value)
    }

    private static func concurrencyNote(_ runs: [BenchResult]) -> String {
        guard let value = shared("concurrency", of: runs) else { return "connections as each run's settings" }
        return value == "1" ? "one connection" : "\(value) connections"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }

    static func fixed(_ value: Double) -> String { String(format: "%.1f", value) }

    /// A chart's size and margins, and the parts every chart draws.
    struct Frame {
        var width: Double
        var height: Double
        var left: Double
        var right: Double
        var top: Double
        var bottom: Double

        func xScale(_ ticks: [Double]) -> (Double) -> Double {
            let (low, high) = (ticks.first ?? 0, max(ticks.last ?? 1, (ticks.first ?? 0) + 1e-9))
            return { left + ($0 - low) / (high - low) * (width - left - right) }
        }

        func yScale(_ ticks: [Double]) -> (Double) -> Double {
            let (low, high) = (ticks.first ?? 0, max(ticks.last ?? 1, (ticks.first ?? 0) + 1e-9))
            return { top + (1 - ($0 - low) / (high - low)) * (height - top - bottom) }
        }

        func open(title: String, xTitle: String, yTitle: String) -> String {
            let middleY = (top + height - bottom) / 2
            return """
                <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
                <rect width="100%" height="100%" fill="white"/>
                <text x="\(fixed((left + width - right) / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(escape(title))</text>
                <text x="\(fixed((left + width - right) / 2))" y="\(fixed(height - 14))" text-anchor="middle">\(escape(xTitle))</text>
                <text x="18" y="\(fixed(middleY))" text-anchor="middle" transform="rotate(-90 18 \(fixed(middleY)))">\(escape(yTitle))</text>

                """
        }

        func axes(xTicks: [Double], yTicks: [Double], x: (Double) -> Double, y: (Double) -> Double) -> String {
            var svg = ""
            let yStep = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
            for tick in yTicks {
                svg +=
                    "<line x1=\"\(left)\" y1=\"\(fixed(y(tick)))\" x2=\"\(width - right)\" y2=\"\(fixed(y(tick)))\" stroke=\"#ddd\"/>\n"
                svg +=
                    "<text x=\"\(left - 6)\" y=\"\(fixed(y(tick) + 4))\" text-anchor=\"end\">\(tickLabel(tick, step: yStep))</text>\n"
            }
            let xStep = xTicks.count > 1 ? xTicks[1] - xTicks[0] : 1
            for tick in xTicks {
                svg +=
                    "<line x1=\"\(fixed(x(tick)))\" y1=\"\(height - bottom)\" x2=\"\(fixed(x(tick)))\" y2=\"\(height - bottom + 5)\" stroke=\"black\"/>\n"
                svg +=
                    "<text x=\"\(fixed(x(tick)))\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(tickLabel(tick, step: xStep))</text>\n"
            }
            svg +=
                "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - right)\" y2=\"\(height - bottom)\" stroke=\"black\"/>\n"
            svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"black\"/>\n"
            return svg
        }

        func legend(index: Int, color: String, label: String) -> String {
            let legendY = top + 10 + 18 * Double(index)
            return
                "<rect x=\"\(width - right + 14)\" y=\"\(legendY - 9)\" width=\"10\" height=\"10\" fill=\"\(color)\"/>\n"
                + "<text x=\"\(width - right + 30)\" y=\"\(legendY)\">\(escape(label))</text>\n"
        }
    }
}
