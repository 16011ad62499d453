import ContextClient
import ContextProtocol
import ContextServer
import Embedder
import Foundation
import Logging
import MemoryStore
import Testing

@testable import ContextTools

/// Writes rows as .fvecs (float32) or .ivecs (int32).
func writeVecs(_ path: String, _ rows: [[Float]]) {
    var data = Data()
    for row in rows {
        withUnsafeBytes(of: Int32(row.count).littleEndian) { data.append(contentsOf: $0) }
        for value in row { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    }
    _ = FileManager.default.createFile(atPath: path, contents: data)
}

func writeIvecs(_ path: String, _ rows: [[Int32]]) {
    var data = Data()
    for row in rows {
        withUnsafeBytes(of: Int32(row.count).littleEndian) { data.append(contentsOf: $0) }
        for value in row { withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) } }
    }
    _ = FileManager.default.createFile(atPath: path, contents: data)
}

@Suite struct BenchTests {
    func server(_ folder: Folder, embedder: SentenceEmbedder? = nil) async throws -> (MemoryStore, ContextStoreServer) {
        let store = try MemoryStore(
            path: folder.path + "/bench.db", dimension: embedder?.dimension, metric: .dot, model: embedder?.modelID)
        let server = try await ContextStoreServer(
            store: store, embedder: embedder, configuration: ServerConfiguration(port: 0, threads: 2),
            logger: Logger(label: "test"))
        return (store, server)
    }

    @Test func vectorModeMeasuresRecallAgainstGroundTruth() async throws {
        let folder = Folder()
        // A fixed seed: the same vectors, and so the same expected recall, on every run.
        var state: UInt64 = 42
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
        let base = (0..<300).map { _ in (0..<8).map { _ in next() } }
        let queries = (0..<25).map { _ in (0..<8).map { _ in next() } }
        writeVecs(folder.path + "/base.fvecs", base)
        writeVecs(folder.path + "/queries.fvecs", queries)
        let (store, server) = try await server(folder)
        let port = server.port
        let connect: @Sendable () async throws -> ContextStoreClient = {
            try await ContextStoreClient.connect(port: port)
        }

        // Ground truth computed exactly: an exact index finds all of it.
        let exact = try await VectorBenchmark(
            base: folder.path + "/base.fvecs", queries: folder.path + "/queries.fvecs", groundTruth: nil, k: 5,
            concurrency: 3
        ).run(name: "exact", connect: connect, log: { _ in })
        #expect(exact.figure("recall@5") == 1)
        #expect(exact.figure("queries") == 25)
        #expect(exact.figure("base_rows") == 300)
        #expect((exact.figure("queries_per_second") ?? 0) > 0)
        #expect(exact.figure("latency_p50_us")! <= exact.figure("latency_max_us")!)

        // A ground truth that names rows 0-4 for every query: recall counts only true overlaps.
        writeIvecs(folder.path + "/truth.ivecs", queries.map { _ in [0, 1, 2, 3, 4] })
        let skewed = try await VectorBenchmark(
            base: folder.path + "/base.fvecs", queries: folder.path + "/queries.fvecs",
            groundTruth: folder.path + "/truth.ivecs", k: 5, concurrency: 1
        ).run(name: "skewed", connect: connect, log: { _ in })
        var expected = 0.0
        for query in queries {
            let scores: [Float] = base.map { row in zip(row, query).map { $0 * $1 }.reduce(0, +) }
            let best = base.indices.sorted { scores[$0] > scores[$1] }
            expected += Double(best.prefix(5).filter { $0 < 5 }.count) / 5
        }
        #expect(abs(skewed.figure("recall@5")! - expected / 25) < 1e-9)

        // Results round-trip through JSON and compare figure by figure.
        #expect(try BenchResult(json: exact.json) == exact)
        let comparison = BenchResult.compare(exact, skewed)
        #expect(comparison.contains("recall@5"))
        #expect(comparison.hasPrefix("figure"))
        let svg = SVGPlot.recallAgainstQPS([exact, skewed])
        #expect(svg.components(separatedBy: "<circle").count == 3)
        #expect(BenchResult.markdown([exact, skewed]).contains("| recall@5 | 1 |"))
        await server.shutdown()
        store.close()
    }

    @Test func conversationModeAsksEveryQuestionInItsConversation() async throws {
        let embedder = try #require(try? SentenceEmbedder(folder: modelFolder), "run scripts/fetch-model")
        let folder = Folder()
        _ = folder.write(
            "turns.jsonl",
            [
                #"{"conv":"c1","session":"session_1","id":"D1:1","speaker":"Ana","text":"My dog is called Biscuit."}"#,
                #"{"conv":"c1","session":"session_1","id":"D1:2","speaker":"Ben","text":"I started a new job at the bakery."}"#,
                #"{"conv":"c2","session":"session_1","id":"D1:1","speaker":"Cy","text":"My dog is called Rex."}"#,
            ].joined(separator: "\n"))
        _ = folder.write(
            "questions.jsonl",
            [
                #"{"conv":"c1","text":"What is Ana's dog called?","evidence":["D1:1"],"category":1}"#,
                #"{"conv":"c1","text":"Where does Ben work?","evidence":["D1:2"],"category":2}"#,
            ].joined(separator: "\n"))
        let (store, server) = try await server(folder, embedder: embedder)
        let port = server.port
        let result = try await ConversationBenchmark(
            folder: folder.path, k: 1, concurrency: 2, modes: [.vector, .keyword, .hybrid]
        ).run(name: "tiny", connect: { try await ContextStoreClient.connect(port: port) }, log: { _ in })
        for mode in ["vector", "keyword", "hybrid"] {
            #expect(result.figure("\(mode) recall@1") == 1, "\(mode)")
            #expect(result.figure("\(mode) recall@1 category 1") == 1, "\(mode)")
            #expect(result.figure("\(mode) recall@1 c1") == 1, "\(mode)")
            #expect(result.figure("\(mode) questions category 2") == 1, "\(mode)")
            #expect(result.figure("\(mode) questions c2") == nil, "c2 has no questions")
        }
        #expect(result.figure("turns") == 3)
        #expect(store.count == 3)
        await server.shutdown()
        store.close()
    }
}

/// The model folder `scripts/fetch-model` fills.
let modelFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("data/models/all-MiniLM-L6-v2").path
