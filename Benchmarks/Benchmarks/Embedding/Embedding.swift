import Benchmark
import Embedder
import Foundation

/// The model fetched by scripts/fetch-model and the WordNet glosses of ../shared/datasets.
private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

private func glosses(_ count: Int) -> [String] {
    let path = repository.deletingLastPathComponent().appendingPathComponent(
        "shared/datasets/wordnet-minilm/queries.jsonl"
    ).path
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        fatalError("\(path) is missing: the embedding benchmark reads WordNet glosses from ../shared/datasets")
    }
    return text.split(separator: "\n").prefix(count).map { line in
        (try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any])["text"] as! String
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput], warmupIterations: 2, maxDuration: .seconds(10))
    nonisolated(unsafe) var embedder: SentenceEmbedder?
    nonisolated(unsafe) var texts: [String] = []
    let setup = {
        // No cache: every text runs through the model.
        embedder = try! SentenceEmbedder(
            folder: repository.appendingPathComponent("data/models/all-MiniLM-L6-v2").path, cacheBytes: 0)
        texts = glosses(1280)
    }

    Benchmark("batch of 64 WordNet glosses", configuration: .init(maxIterations: 40, setup: setup)) { benchmark in
        for i in benchmark.scaledIterations {
            let start = (i * 64) % (texts.count - 64)
            blackHole(embedder!.embed(Array(texts[start..<start + 64]), scope: ""))
        }
    }

    Benchmark("one short query", configuration: .init(maxIterations: 500, setup: setup)) { benchmark in
        for i in benchmark.scaledIterations {
            blackHole(embedder!.embed(["what did I say about my sister's wedding? \(i)"], scope: ""))
        }
    }
}
