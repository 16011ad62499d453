import Foundation

/// `report.md`: every run of a results folder, each figure named for what it measures.
extension BenchResult {
    public static func markdown(_ results: [BenchResult]) -> String {
        var text = "# ContextStore benchmark results\n\n"
        let vector = results.filter { $0.mode == "vector" }
        let conversation = results.filter { $0.mode == "conversation" }
        if !vector.isEmpty {
            text += """
                ## Vector search: ANN recall

                recall@k is the share of the exact top k (the ground truth given, or computed by an exact \
                scan) among the k hits returned, averaged over the queries. Latency is one request's round \
                trip seen by the client, in milliseconds; queries/s over all connections.


                """
            text += settingsTable(vector)
            for run in vector { text += run.passTable() }
            text += "![recall@k against queries per second, each point labelled with its ef](recall_qps.svg)\n\n"
        }
        if !conversation.isEmpty {
            text += """
                ## Conversations: LoCoMo evidence recall

                Evidence recall@k is the share of a question's evidence turns (the dialog turns the \
                dataset names as holding the answer) among the top k turns of its conversation, averaged \
                over the questions: how much of what answers a question a prompt of k turns would hold. \
                It is not an ANN recall: an exact search does not score 1. recall_any@k is the share of \
                questions with at least one evidence turn in the top k, recall_all@k the share with all of \
                them; nDCG@10 weighs each evidence turn found by 1/log2(rank + 1), 1 for the best order. \
                "All evidence in prompt" is the share of questions whose evidence turns are all in the \
                prompt the `prompt` op builds for the question at the budget (no session, defaults \
                otherwise), next to that prompt's tokens and build latency.


                """
            text += settingsTable(conversation)
            for run in conversation { text += run.conversationTables() }
            text += "![evidence recall@k by question category and search mode](evidence_recall.svg)\n\n"
        }
        return text
    }

    private static func settingsTable(_ runs: [BenchResult]) -> String {
        var text = "| setting | " + runs.map(\.name).joined(separator: " | ") + " |\n"
        text += "|---|" + runs.map { _ in "---|" }.joined() + "\n"
        for key in runs.flatMap({ $0.settings.map(\.key) }).uniqued() {
            text += "| \(key) | " + runs.map { $0.setting(key) ?? "" }.joined(separator: " | ") + " |\n"
        }
        return text + "\n"
    }

    /// A vector run: a row for each pass (each `ef` of a sweep).
    private func passTable() -> String {
        let k = setting("k") ?? "k"
        var text = "### \(name)\n\n| ef | recall@\(k) | queries/s | p50 ms | p95 ms | p99 ms | max ms |\n"
        text += "|---|---:|---:|---:|---:|---:|---:|\n"
        for point in curve {
            let suffix = point.ef.map { " ef=\($0)" } ?? ""
            func value(_ key: String) -> Double? { figure(key + suffix) }
            text += "| \(point.ef.map(String.init) ?? "default") | \(Self.recall(value("recall@\(k)")))"
            text += " | \(Self.rate(value("queries_per_second")))"
            for latency in ["p50", "p95", "p99", "max"] {
                text += " | \(Self.milliseconds(value("latency_\(latency)_us")))"
            }
            text += " |\n"
        }
        if let rows = figure("base_rows"), let rate = figure("load_rows_per_second") {
            text += "\nLoaded \(Self.rate(rows)) vectors at \(Self.rate(rate)) rows/s.\n"
        }
        return text + "\n"
    }

    /// A conversation run: recall and speed by search mode, then recall by category and by conversation.
    private func conversationTables() -> String {
        let ks = figures.compactMap { figure -> Int? in
            guard let mode = modes.first, figure.key.hasPrefix("\(mode) recall@") else { return nil }
            return Int(figure.key.dropFirst("\(mode) recall@".count))
        }
        let k = setting("k") ?? "k"
        var text = "### \(name)\n\n| search mode | "
        text += ks.map { "evidence recall@\($0)" }.joined(separator: " | ")
        text +=
            " | questions/s | p50 ms | p95 ms | p99 ms |\n|---|" + String(repeating: "---:|", count: ks.count + 4)
            + "\n"
        for mode in modes {
            text += "| \(mode) | " + ks.map { Self.recall(figure("\(mode) recall@\($0)")) }.joined(separator: " | ")
            text += " | \(Self.rate(figure("\(mode) queries_per_second")))"
            for latency in ["p50", "p95", "p99"] {
                text += " | \(Self.milliseconds(figure("\(mode) latency_\(latency)_us")))"
            }
            text += " |\n"
        }
        if let mode = modes.first, figure("\(mode) ndcg@10") != nil {
            text += "\n| search mode | "
            text += ks.map { "any@\($0) | all@\($0)" }.joined(separator: " | ")
            text +=
                " | nDCG@10 | all evidence in prompt | evidence in prompt | prompt tokens p50 | prompt p50 ms | prompt p95 ms |\n"
            text += "|---|" + String(repeating: "---:|", count: 2 * ks.count + 6) + "\n"
            for mode in modes {
                text += "| \(mode) | "
                text += ks.map {
                    Self.recall(figure("\(mode) recall_any@\($0)")) + " | "
                        + Self.recall(figure("\(mode) recall_all@\($0)"))
                }.joined(separator: " | ")
                text += " | \(Self.recall(figure("\(mode) ndcg@10")))"
                text += " | \(Self.recall(figure("\(mode) evidence_all_in_prompt")))"
                text += " | \(Self.recall(figure("\(mode) evidence_in_prompt")))"
                text += " | \(figure("\(mode) prompt_tokens_p50").map { String(Int($0)) } ?? "")"
                text += " | \(Self.milliseconds(figure("\(mode) prompt_latency_p50_us")))"
                text += " | \(Self.milliseconds(figure("\(mode) prompt_latency_p95_us"))) |\n"
            }
        }
        let groups: [(title: String, names: [String])] = [
            ("question category", categories),
            (
                "conversation",
                figures.compactMap { figure in
                    guard let mode = modes.first, figure.key.hasPrefix("\(mode) questions "),
                        !figure.key.hasPrefix("\(mode) questions category ")
                    else { return nil }
                    return String(figure.key.dropFirst("\(mode) questions ".count))
                }
            ),
        ]
        for (title, names) in groups where !names.isEmpty {
            text += "\n| \(title) | questions | " + modes.map { "\($0) recall@\(k)" }.joined(separator: " | ") + " |\n"
            text += "|---|---:|" + String(repeating: "---:|", count: modes.count) + "\n"
            for group in names {
                let asked = modes.first.flatMap { figure("\($0) questions \(group)") }
                text += "| \(group) | \(asked.map { String(Int($0)) } ?? "") | "
                text +=
                    modes.map { Self.recall(figure("\($0) recall@\(k) \(group)")) }.joined(separator: " | ") + " |\n"
            }
        }
        if let turns = figure("turns"), let rate = figure("load_turns_per_second") {
            text += "\nLoaded \(Self.rate(turns)) turns at \(Self.rate(rate)) turns/s (embedded by the server).\n"
        }
        return text + "\n"
    }

    static func recall(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "" }

    /// A rate or a count, with thousands separated; a decimal below 10.
    static func rate(_ value: Double?) -> String {
        guard let value else { return "" }
        if value < 10, value != value.rounded() { return String(format: "%.1f", value) }
        return grouped(value)
    }

    /// Microseconds as milliseconds, to three significant digits (at least a whole millisecond).
    static func milliseconds(_ microseconds: Double?) -> String {
        guard let microseconds else { return "" }
        let ms = microseconds / 1000
        let decimals = ms < 1 ? 3 : ms < 10 ? 2 : ms < 100 ? 1 : 0
        return String(format: "%.\(decimals)f", ms)
    }
}
