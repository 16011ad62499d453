import ArgumentParser
import Foundation
import PromptBuilder

/// Tokens per second of the cl100k_base encoder over the texts of a JSON-lines file, one text
/// per call, one thread: the figure tiktoken is measured by (Benchmarks/scripts/tokenizer_speed.sh).
@main
struct TokenBench: ParsableCommand {
    @Argument(help: "A JSON-lines file.") var file: String
    @Option(help: "The field holding the text.") var field = "text"
    @Option(help: "Read at most this many lines.") var limit = Int.max
    @Option(help: "tiktoken's cl100k_base rank file.") var ranks = BytePairEncoder.defaultRankFile
    @Option(help: "Timed passes; the best is reported.") var passes = 5

    func run() throws {
        let encoder = try BytePairEncoder(rankFile: ranks)
        guard let content = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read \(file)")
        }
        let texts: [String] = content.split(separator: "\n").prefix(limit).compactMap { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return object?[field] as? String
        }
        let tokens = texts.reduce(0) { $0 + encoder.count($1) }
        var best = Double.infinity
        for _ in 0..<passes {
            let start = DispatchTime.now().uptimeNanoseconds
            var total = 0
            for text in texts { total += encoder.count(text) }
            precondition(total == tokens)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print(
            "contextstore \(texts.count) texts \(tokens) tokens \(String(format: "%.2f", Double(tokens) / best / 1e6)) M tokens/s"
        )
    }
}
