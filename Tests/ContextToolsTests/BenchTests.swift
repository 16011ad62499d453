import ContextClient
import ContextModel
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
        let report = BenchResult.markdown([exact, skewed])
        #expect(report.contains("## Vector search: ANN recall"))
        #expect(report.contains("| ef | recall@5 | queries/s | p50 ms | p95 ms | p99 ms | max ms |"))
        #expect(report.contains("| default | 1.0000 | "))
        #expect(!report.contains("evidence"))
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
        for mode in ["vector", "keyword", "hybrid"] {
            #expect(result.figure("\(mode) recall_any@1") == 1 && result.figure("\(mode) recall_all@1") == 1, "\(mode)")
            #expect(result.figure("\(mode) ndcg@10") == 1, "\(mode)")
            // A 1,000-token prompt holds both of a conversation's two turns.
            #expect(result.figure("\(mode) evidence_all_in_prompt") == 1, "\(mode)")
            #expect(result.figure("\(mode) evidence_all_in_prompt category 2") == 1, "\(mode)")
            let tokens = try #require(result.figure("\(mode) prompt_tokens_p50"))
            #expect(tokens > 20 && tokens < 1_000, "\(mode): \(tokens)")
        }
        #expect(result.setting("prompt budget") == "1000")
        #expect(result.figure("turns") == 3)
        #expect(store.count == 3)
        await server.shutdown()
        store.close()
    }
}

/// The figures memory benchmarks report, on answers made by hand.
@Suite struct EvidenceFigureTests {
    /// Three questions: evidence {a, b} with b first and a 12th (outside the top 10); {c} at rank
    /// 2; {d} not found.
    let pairs: [(BenchQuery, QueryOutcome)] = [
        (
            BenchQuery(search: SearchRequest(user: "u", k: 20), relevant: ["a", "b"], groups: ["category 1"]),
            QueryOutcome(ids: ["b"] + (1...10).map { "x\($0)" } + ["a"], microseconds: 100, tokens: 300)
        ),
        (
            BenchQuery(search: SearchRequest(user: "u", k: 20), relevant: ["c"], groups: ["category 2"]),
            QueryOutcome(ids: ["x1", "c"], microseconds: 200, tokens: 500)
        ),
        (
            BenchQuery(search: SearchRequest(user: "u", k: 20), relevant: ["d"], groups: ["category 2"]),
            QueryOutcome(ids: ["x1", "x2"], microseconds: 300, tokens: 700)
        ),
    ]

    @Test func recallAnyAllAndNDCGCountEvidenceTurns() throws {
        let figures = Dictionary(
            uniqueKeysWithValues: QueryRunner.evidenceFigures(pairs, ks: [1, 5, 20]).map { ($0.key, $0.value) })
        #expect(figures["recall_any@1"] == 1.0 / 3 && figures["recall_all@1"] == 0)
        #expect(figures["recall_any@5"] == 2.0 / 3 && figures["recall_all@5"] == 1.0 / 3)
        #expect(figures["recall_any@20"] == 2.0 / 3 && figures["recall_all@20"] == 2.0 / 3)
        // b at rank 1 of an ideal 1 + 1/log2(3); c at rank 2 (1/log2(3) of 1); d none.
        let first = 1 / (1 + 1 / log2(3.0))
        let second = 1 / log2(3.0)
        let ndcg = try #require(figures["ndcg@10"])
        #expect(abs(ndcg - (first + second) / 3) < 1e-12)
        // A question that names no evidence is not counted.
        let none = (
            BenchQuery(search: SearchRequest(user: "u", k: 20), relevant: []), QueryOutcome(ids: [], microseconds: 1)
        )
        let with = Dictionary(
            uniqueKeysWithValues: QueryRunner.evidenceFigures(pairs + [none], ks: [5]).map { ($0.key, $0.value) })
        #expect(with["recall_any@5"] == 2.0 / 3)
        #expect(QueryRunner.evidenceFigures([none], ks: [5]).isEmpty)
    }

    @Test func promptFiguresSayWhoseEvidenceIsAllInThePrompt() {
        let figures = Dictionary(
            uniqueKeysWithValues: QueryRunner.promptFigures(pairs.map(\.0), pairs.map(\.1)).map { ($0.key, $0.value) })
        #expect(figures["evidence_all_in_prompt"] == 2.0 / 3)
        #expect(figures["evidence_all_in_prompt category 1"] == 1)
        #expect(figures["evidence_all_in_prompt category 2"] == 0.5)
        #expect(figures["evidence_in_prompt"] == 2.0 / 3)
        #expect(figures["prompt_tokens_p50"] == 500 && figures["prompt_tokens_mean"] == 500)
        #expect(figures["prompt_latency_p50_us"] == 200)
    }
}

@Suite struct BenchReportTests {
    /// A vector run that swept three `ef` values (recall rising as throughput falls).
    let sweep = BenchResult(
        name: "hnsw", mode: "vector", settings: [("k", "10"), ("concurrency", "4")],
        figures: [16, 32, 64].enumerated().flatMap(Self.pass),
        curve: [
            .init(qps: 1000, recall: 0.9, ef: 64), .init(qps: 3000, recall: 0.8, ef: 16),
            .init(qps: 2000, recall: 0.85, ef: 32),
        ])

    static func pass(_ i: Int, _ ef: Int) -> [(key: String, value: Double)] {
        let step = Double(i)
        let recall: Double = 0.8 + 0.05 * step
        let qps: Double = 3000 - 1000 * step
        return [
            ("recall@10 ef=\(ef)", recall), ("queries_per_second ef=\(ef)", qps),
            ("latency_p50_us ef=\(ef)", 412 + step), ("latency_p95_us ef=\(ef)", 2345.6),
            ("latency_p99_us ef=\(ef)", 23456), ("latency_max_us ef=\(ef)", 234567),
        ]
    }

    let conversations = BenchResult(
        name: "locomo", mode: "conversation", settings: [("k", "10"), ("search", "vector,hybrid")],
        figures: [
            ("vector recall@5", 0.4), ("vector recall@10", 0.5), ("vector recall@10 category 1", 0.25),
            ("vector questions category 1", 4), ("vector recall@10 category 2", 0.75),
            ("vector questions category 2", 6), ("vector recall@10 conv-1", 0.5), ("vector questions conv-1", 10),
            ("vector queries_per_second", 180.4), ("vector latency_p50_us", 5432), ("hybrid recall@5", 0.6),
            ("hybrid recall@10", 0.7), ("hybrid recall@10 category 1", 0.5), ("hybrid questions category 1", 4),
            ("hybrid recall@10 category 2", 0.875), ("hybrid questions category 2", 6),
            ("hybrid recall@10 conv-1", 0.7), ("hybrid questions conv-1", 10), ("vector recall_any@5", 0.6),
            ("vector recall_all@5", 0.3), ("vector recall_any@10", 0.7), ("vector recall_all@10", 0.35),
            ("vector ndcg@10", 0.45), ("vector evidence_all_in_prompt", 0.675), ("vector evidence_in_prompt", 0.7),
            ("vector evidence_all_in_prompt category 1", 0.5), ("vector evidence_all_in_prompt category 2", 0.8),
            ("vector prompt_tokens_p50", 418), ("vector prompt_latency_p50_us", 8123),
            ("vector prompt_latency_p95_us", 12345),
        ],
        curve: [.init(qps: 180.4, recall: 0.5), .init(qps: 120, recall: 0.7)])

    @Test func aSweepShowsEveryPoint() {
        let report = BenchResult.markdown([sweep])
        #expect(report.contains("| 16 | 0.8000 | 3,000 | 0.412 | 2.35 | 23.5 | 235 |"))
        #expect(report.contains("| 32 | 0.8500 | 2,000 | 0.413 | "))
        #expect(report.contains("| 64 | 0.9000 | 1,000 | 0.414 | "))
        let svg = SVGPlot.recallAgainstQPS([sweep])
        #expect(svg.contains(">ef=16<") && svg.contains(">ef=32<") && svg.contains(">ef=64<"))
        #expect(svg.contains("recall@10 (share of the exact top 10 found)"))
        #expect(svg.contains("queries per second (4 connections)"))
        // Joined in order of recall: ef 16, 32, 64 (x grows with qps: 3,000, 2,000, 1,000).
        let line = svg.components(separatedBy: "<polyline points=\"")[1].prefix { $0 != "\"" }
        let xs = line.split(separator: " ").map { Double($0.split(separator: ",")[0])! }
        #expect(xs == xs.sorted(by: >))
    }

    @Test func conversationRunsAreEvidenceRecallByCategory() {
        let report = BenchResult.markdown([conversations])
        #expect(report.contains("## Conversations: LoCoMo evidence recall"))
        #expect(report.contains("It is not an ANN recall"))
        #expect(report.contains("| vector | 0.4000 | 0.5000 | 180 | 5.43 |"))
        #expect(report.contains("| category 2 | 6 | 0.7500 | 0.8750 |"))
        #expect(report.contains("| conv-1 | 10 | 0.5000 | 0.7000 |"))
        #expect(!report.contains("recall_qps.svg"))
        let svg = SVGPlot.evidenceRecallByCategory([conversations])
        // Two categories x two modes: four bars, each with its value.
        #expect(svg.components(separatedBy: "<rect x=").count - 1 == 4 + 2)  // and two legend squares
        for value in ["0.25", "0.50", "0.75", "0.88"] { #expect(svg.contains(">\(value)<"), "\(value)") }
        #expect(svg.contains(">category 1 (4)<") && svg.contains(">category 2 (6)<"))
        #expect(svg.contains("evidence recall@10 (share of evidence turns in the top 10)"))
        #expect(
            report.contains(
                "| vector | 0.6000 | 0.3000 | 0.7000 | 0.3500 | 0.4500 | 0.6750 | 0.7000 | 418 | 8.12 | 12.3 |"))
        // A mode without a prompt pass leaves its cells empty.
        #expect(report.contains("| hybrid |  |  |  |  |  |  |  |  |  |  |"))
        let prompts = SVGPlot.evidenceInPromptByCategory([conversations])
        #expect(prompts.contains(">0.50<") && prompts.contains(">0.80<"))
        #expect(prompts.components(separatedBy: "<rect x=").count - 1 == 2 + 2)  // vector's two bars, two legends
    }

    @Test func ticksAreRound() {
        #expect(SVGPlot.niceTicks(0, 1234) == [0, 250, 500, 750, 1000, 1250])
        #expect(SVGPlot.niceTicks(0.83, 0.97) == [0.8, 0.85, 0.9, 0.95, 1.0].map { $0 })
        #expect(SVGPlot.tickLabel(1250, step: 250) == "1,250")
        #expect(SVGPlot.tickLabel(0.85, step: 0.05) == "0.85")
        #expect(SVGPlot.tickLabel(0.2, step: 0.2) == "0.2")
        #expect(SVGPlot.tickLabel(0.925, step: 0.025) == "0.925")
    }
}

/// The model folder `scripts/fetch-model` fills.
let modelFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("data/models/all-MiniLM-L6-v2").path

/// `bench --conversations` and the README's example read LoCoMo files a clone does not have;
/// scripts/locomo-dev.py builds them from LoCoMo's public locomo10.json (issue 24, item 25).
@Suite struct LoCoMoFilesTests {
    @Test func theScriptWritesTurnsAndQuestionsOfTheDevConversations() throws {
        let folder = Folder()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        // LoCoMo's shape: a list of samples, each with its sessions and questions.
        func sample(_ id: String) -> [String: Any] {
            [
                "sample_id": id,
                "conversation": [
                    "speaker_a": "Ana", "speaker_b": "Bo", "session_2_date_time": "9:00 am on 9 May, 2023",
                    "session_1_date_time": "1:56 pm on 8 May, 2023",
                    "session_1": [
                        ["speaker": "Ana", "dia_id": "D1:1", "text": "I moved to Porto"],
                        ["speaker": "Bo", "dia_id": "D1:2", "text": "Nice!", "blip_caption": "a photo"],
                    ],
                    "session_2": [["speaker": "Ana", "dia_id": "D2:1", "text": "My sister visits"]],
                ],
                "qa": [
                    ["question": "Where did Ana move?", "answer": "Porto", "evidence": ["D1:1"], "category": 4],
                    ["question": "Who is Bo's sister?", "adversarial_answer": "x", "evidence": [], "category": 5],
                ],
            ]
        }
        let source = folder.path + "/locomo10.json"
        let samples = ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43", "conv-44"].map(sample)
        try JSONSerialization.data(withJSONObject: samples).write(to: URL(fileURLWithPath: source))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repository + "/scripts/locomo-dev.py", source, folder.path + "/out"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(said.hasSuffix("5 conversations, 15 turns, 5 questions\n"), "\(said)")
        let turns = try String(contentsOfFile: folder.path + "/out/turns.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(
            turns[0]
                == #"{"conv": "conv-26", "session": "session_1", "date": "1:56 pm on 8 May, 2023", "id": "D1:1", "speaker": "Ana", "text": "I moved to Porto"}"#
        )
        #expect(turns[2].contains(#""session": "session_2", "date": "9:00 am on 9 May, 2023", "id": "D2:1""#))
        let questions = try String(contentsOfFile: folder.path + "/out/questions.jsonl", encoding: .utf8)
        #expect(
            questions.split(separator: "\n")[0]
                == #"{"conv": "conv-26", "text": "Where did Ana move?", "evidence": ["D1:1"], "category": 4}"#)
        #expect(!questions.contains("conv-44") && !questions.contains("adversarial"))
    }
}
