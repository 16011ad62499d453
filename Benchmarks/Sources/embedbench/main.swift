import ArgumentParser
import Embedder
import Foundation

/// The embedding model in-process, cache off: one short query at a time (the latency a search
/// or a prompt waits for) and batches of 64 texts (an import's rate).
///   swift run -c release --package-path Benchmarks embedbench ../shared/datasets/wordnet-minilm/queries.jsonl
@main struct EmbedBench: ParsableCommand {
    @Argument(help: "A JSON-lines file whose rows have a 'text'.") var texts: String
    @Option(help: "The model folder.") var model = "data/models/all-MiniLM-L6-v2"
    @Option(help: "Short queries to time.") var queries = 400
    @Option(help: "Batches of 64 to time.") var batches = 12

    func run() throws {
        let embedder = try SentenceEmbedder(folder: model, cacheBytes: 0)
        let rows = try String(contentsOfFile: texts, encoding: .utf8).split(separator: "\n").prefix(64 * (batches + 1))
        let glosses = rows.map { line in
            (try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any])["text"] as! String
        }
        func seconds(_ body: () -> Void) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        // A 12-token question, a different one each time so nothing is reused.
        let query = "what did I say about my sister's wedding in"
        print("query tokens: \(embedder.tokenize(query + " 1").count)")
        _ = embedder.embed([query + " 0"], scope: "")
        var single = (1...queries).map { i in seconds { _ = embedder.embed(["\(query) \(i)"], scope: "") } }.sorted()
        print(
            String(
                format: "one short query: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms (%d runs)",
                single[single.count / 2] * 1e3,
                single[single.count * 9 / 10] * 1e3, single[single.count * 99 / 100] * 1e3, single.count))
        single.removeAll()
        _ = embedder.embed(Array(glosses.prefix(64)), scope: "")
        let batch = (1...batches).map { b in
            seconds { _ = embedder.embed(Array(glosses[(64 * b)..<(64 * b + 64)]), scope: "") }
        }
        .sorted()
        print(
            String(
                format: "batch of 64: p50 %.0f ms = %.0f sentences/s (best %.0f/s, %d batches)",
                batch[batch.count / 2] * 1e3,
                64 / batch[batch.count / 2], 64 / batch[0], batch.count))
    }
}
