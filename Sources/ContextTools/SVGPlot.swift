/// A line plot of recall (y) against queries/second (x), one curve per run, as SVG text.
public enum SVGPlot {
    public static func recallAgainstQPS(_ runs: [BenchResult]) -> String {
        let width = 720.0
        let height = 440.0
        let left = 70.0
        let right = 180.0
        let top = 30.0
        let bottom = 50.0
        let points = runs.flatMap(\.curve)
        let maxQPS = max(1, (points.map(\.qps).max() ?? 1) * 1.1)
        let recalls = points.map(\.recall)
        let minRecall = max(0, min(recalls.min() ?? 0, 1) - 0.05)
        let maxRecall = min(1.0, (recalls.max() ?? 1) + 0.02)
        let span = max(maxRecall - minRecall, 0.01)
        func x(_ qps: Double) -> Double { left + qps / maxQPS * (width - left - right) }
        func y(_ recall: Double) -> Double { top + (1 - (recall - minRecall) / span) * (height - top - bottom) }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <line x1="\(left)" y1="\(height - bottom)" x2="\(width - right)" y2="\(height - bottom)" stroke="black"/>
            <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(height - bottom)" stroke="black"/>
            <text x="\((left + width - right) / 2)" y="\(height - 12)" text-anchor="middle">queries per second</text>
            <text x="16" y="\((top + height - bottom) / 2)" text-anchor="middle" transform="rotate(-90 16 \((top + height - bottom) / 2))">recall</text>

            """
        for i in 0...5 {
            let qps = maxQPS * Double(i) / 5
            let recall = minRecall + span * Double(i) / 5
            svg += "<text x=\"\(x(qps))\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(Int(qps))</text>\n"
            svg += "<text x=\"\(left - 6)\" y=\"\(y(recall) + 4)\" text-anchor=\"end\">\(format(recall))</text>\n"
            svg +=
                "<line x1=\"\(left)\" y1=\"\(y(recall))\" x2=\"\(width - right)\" y2=\"\(y(recall))\" stroke=\"#ddd\"/>\n"
        }
        for (index, run) in runs.enumerated() {
            let color = colors[index % colors.count]
            let sorted = run.curve.sorted { $0.qps < $1.qps }
            if sorted.count > 1 {
                let path = sorted.map { "\(x($0.qps)),\(y($0.recall))" }.joined(separator: " ")
                svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            }
            for point in sorted {
                svg += "<circle cx=\"\(x(point.qps))\" cy=\"\(y(point.recall))\" r=\"4\" fill=\"\(color)\"/>\n"
            }
            let legendY = top + 18 * Double(index)
            svg +=
                "<rect x=\"\(width - right + 14)\" y=\"\(legendY - 9)\" width=\"10\" height=\"10\" fill=\"\(color)\"/>\n"
            svg += "<text x=\"\(width - right + 30)\" y=\"\(legendY)\">\(escape(run.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
