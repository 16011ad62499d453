import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import Histogram
import MemoryStore
import Synchronization
import VectorIndex

/// One query of a benchmark: what to ask and how to score the answer.
struct BenchQuery: Sendable {
    var search: SearchRequest
    /// The ids that count as correct (ground truth top k, or evidence turns).
    var relevant: [String]
    /// Labels to report recall by (question category, conversation).
    var groups: [String] = []
}

/// Per-query outcome: the ids returned, best first (a prompt's: the items it holds), the
/// latency, and a prompt's tokens.
struct QueryOutcome: Sendable {
    var ids: [String]
    var microseconds: UInt64
    var tokens = 0
}

/// The outcomes of a run, filled in by the connections' tasks.
final class Outcomes: Sendable {
    let list: Mutex<[QueryOutcome?]>
    /// How many are in.
    let answered = Atomic<Int>(0)
    init(count: Int) { list = Mutex([QueryOutcome?](repeating: nil, count: count)) }
}

/// Runs queries over `concurrency` connections and measures each one.
enum QueryRunner {
    /// - Parameter progress: Told how many queries are answered, after each one.
    /// - Parameter ask: Sends one query and returns the ids it answered, best first, and the
    ///   tokens it cost (a search: its hits, no tokens).
    static func run(
        _ queries: [BenchQuery], concurrency: Int, connect: @escaping @Sendable () async throws -> ContextStoreClient,
        progress: (@Sendable (_ done: Int, _ seconds: Double) -> Void)? = nil,
        ask: @escaping @Sendable (ContextStoreClient, BenchQuery) async throws -> (ids: [String], tokens: Int) = {
            client, query in (try await client.search(query.search).map(\.memory.id), 0)
        }
    ) async throws -> (outcomes: [QueryOutcome], seconds: Double) {
        let results = Outcomes(count: queries.count)
        let start = Clock.monotonicSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<max(1, concurrency) {
                group.addTask {
                    let client = try await connect()
                    var index = worker
                    while index < queries.count {
                        let began = Clock.monotonicSeconds()
                        let (ids, tokens) = try await ask(client, queries[index])
                        let elapsed = UInt64((Clock.monotonicSeconds() - began) * 1e6)
                        let outcome = QueryOutcome(ids: ids, microseconds: elapsed, tokens: tokens)
                        results.list.withLock { $0[index] = outcome }
                        let done = results.answered.wrappingAdd(1, ordering: .relaxed).newValue
                        progress?(done, Clock.monotonicSeconds() - start)
                        index += max(1, concurrency)
                    }
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        return (results.list.withLock { $0.map { $0! } }, Clock.monotonicSeconds() - start)
    }

    /// Recall, throughput and latency figures of a run; recall is reported at each of `ks`.
    /// - Parameter evidence: Also the turn-level figures of a conversation run (see
    ///   `evidenceFigures`).
    static func figures(
        _ queries: [BenchQuery], _ outcomes: [QueryOutcome], seconds: Double, ks: [Int], evidence: Bool = false
    ) -> [(key: String, value: Double)] {
        let histogram = latencies(outcomes)
        var figures: [(key: String, value: Double)] = []
        func recall(_ k: Int, _ pairs: [(BenchQuery, QueryOutcome)]) -> Double {
            guard !pairs.isEmpty else { return 0 }
            let total = pairs.reduce(0.0) { sum, pair in
                let relevant = Set(pair.0.relevant)
                guard !relevant.isEmpty else { return sum }
                let found = pair.1.ids.prefix(k).filter(relevant.contains).count
                return sum + Double(found) / Double(relevant.count)
            }
            return total / Double(pairs.count)
        }
        let pairs = Array(zip(queries, outcomes))
        for k in ks { figures.append(("recall@\(k)", recall(k, pairs))) }
        let groups = queries.flatMap(\.groups).uniqued().sorted()
        for group in groups {
            let members = pairs.filter { $0.0.groups.contains(group) }
            for k in ks { figures.append(("recall@\(k) \(group)", recall(k, members))) }
            figures.append(("questions \(group)", Double(members.count)))
        }
        if evidence { figures += evidenceFigures(pairs, ks: ks) }
        figures.append(("queries", Double(queries.count)))
        figures.append(("queries_per_second", seconds > 0 ? Double(queries.count) / seconds : 0))
        figures.append(("latency_p50_us", Double(histogram.valueAtPercentile(50))))
        figures.append(("latency_p95_us", Double(histogram.valueAtPercentile(95))))
        figures.append(("latency_p99_us", Double(histogram.valueAtPercentile(99))))
        figures.append(("latency_max_us", Double(histogram.maxRecorded)))
        return figures
    }
}

extension QueryRunner {
    /// The outcomes' latencies, in microseconds (1 at least).
    static func latencies(_ outcomes: [QueryOutcome]) -> Histogram<UInt64> {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for outcome in outcomes { _ = histogram.record(max(1, outcome.microseconds)) }
        return histogram
    }

    /// The figures the memory benchmarks (LongMemEval, LoCoMo retrieval studies) report, over the
    /// questions that name evidence: `recall_any@k`, the share whose top k hold at least one
    /// evidence turn; `recall_all@k`, the share whose top k hold them all; and `ndcg@10`, the
    /// mean normalized discounted cumulative gain of the top 10 with every evidence turn of
    /// relevance 1 (a turn found at rank r counts 1/log2(r + 1); the best order scores 1).
    static func evidenceFigures(_ pairs: [(BenchQuery, QueryOutcome)], ks: [Int]) -> [(key: String, value: Double)] {
        let asked = pairs.compactMap { query, outcome in
            query.relevant.isEmpty ? nil : (relevant: Set(query.relevant), ids: outcome.ids)
        }
        guard !asked.isEmpty else { return [] }
        let count = Double(asked.count)
        var figures: [(key: String, value: Double)] = []
        for k in ks {
            var any = 0
            var all = 0
            for (relevant, ids) in asked {
                let found = relevant.intersection(ids.prefix(k)).count
                if found > 0 { any += 1 }
                if found == relevant.count { all += 1 }
            }
            figures.append(("recall_any@\(k)", Double(any) / count))
            figures.append(("recall_all@\(k)", Double(all) / count))
        }
        let ndcg = asked.reduce(0.0) { sum, pair in
            let (relevant, ids) = pair
            var gain = 0.0
            for (rank, id) in ids.prefix(10).enumerated() where relevant.contains(id) {
                gain += 1 / log2(Double(rank) + 2)
            }
            let best = (0..<min(10, relevant.count)).reduce(0.0) { $0 + 1 / log2(Double($1) + 2) }
            return sum + gain / best
        }
        figures.append(("ndcg@10", ndcg / count))
        return figures
    }

    /// A prompt pass: each question's prompt at a budget, the share whose evidence turns are all
    /// in it (overall and by group), the mean share of evidence turns in it, its tokens (median
    /// and mean) and the latency of building it.
    static func promptFigures(_ queries: [BenchQuery], _ outcomes: [QueryOutcome]) -> [(key: String, value: Double)] {
        let pairs = zip(queries, outcomes).filter { !$0.0.relevant.isEmpty }
        guard !pairs.isEmpty else { return [] }
        func allIn(_ members: [(BenchQuery, QueryOutcome)]) -> Double {
            let held = members.filter { Set($0.0.relevant).isSubset(of: $0.1.ids) }.count
            return members.isEmpty ? 0 : Double(held) / Double(members.count)
        }
        var figures: [(key: String, value: Double)] = [("evidence_all_in_prompt", allIn(pairs))]
        let share = pairs.reduce(0.0) { sum, pair in
            let relevant = Set(pair.0.relevant)
            return sum + Double(relevant.intersection(pair.1.ids).count) / Double(relevant.count)
        }
        figures.append(("evidence_in_prompt", share / Double(pairs.count)))
        for group in pairs.flatMap(\.0.groups).uniqued().sorted() {
            figures.append(("evidence_all_in_prompt \(group)", allIn(pairs.filter { $0.0.groups.contains(group) })))
        }
        let tokens = pairs.map(\.1.tokens).sorted()
        figures.append(("prompt_tokens_p50", Double(tokens[tokens.count / 2])))
        figures.append(("prompt_tokens_mean", Double(tokens.reduce(0, +)) / Double(tokens.count)))
        let histogram = latencies(pairs.map(\.1))
        figures.append(("prompt_latency_p50_us", Double(histogram.valueAtPercentile(50))))
        figures.append(("prompt_latency_p95_us", Double(histogram.valueAtPercentile(95))))
        return figures
    }
}

/// Vector mode: a base and a query set (`.npy`/`.fvecs`), ground truth given or computed exactly.
public struct VectorBenchmark: Sendable {
    public var base: String
    public var queries: String
    public var groundTruth: String?
    public var k: Int
    public var concurrency: Int
    /// The `ef` values to sweep (an hnsw space); empty: one run with the space's default.
    public var efs: [Int]
    public var user = "bench"

    public init(base: String, queries: String, groundTruth: String?, k: Int, concurrency: Int, efs: [Int] = []) {
        self.base = base
        self.queries = queries
        self.groundTruth = groundTruth
        self.k = k
        self.concurrency = concurrency
        self.efs = efs
    }

    public func run(
        name: String, connect: @escaping @Sendable () async throws -> ContextStoreClient,
        log: @escaping @Sendable (String) -> Void
    ) async throws -> BenchResult {
        let baseFile = try VectorFile(path: base)
        let queryFile = try VectorFile(path: queries)
        let stem = URL(fileURLWithPath: base).lastPathComponent
        func id(row: Int) -> String { "\(stem):\(row + 1)" }  // the importer's id for a row

        log("loading \(baseFile.rows) vectors from \(base)")
        let client = try await connect()
        let load = try await Importer(batchSize: 1000).run(
            ImportSource(path: base, format: ImportFormat(path: base) ?? .npy, defaultUser: user),
            into: ServerSink(client: client), onFailure: { log("line \($0.line): \($0.reason)") })
        let hello = try await client.hello()
        await client.close()

        let truth: [[String]]
        if let groundTruth {
            let file = try VectorFile(path: groundTruth)
            truth = (0..<queryFile.rows).map { Array(file.integerRow($0).prefix(k)).map { id(row: $0) } }
        } else {
            log("computing exact ground truth (\(hello.metric.rawValue))")
            var index = FlatIndex(dimension: baseFile.dimension, metric: hello.metric)
            let attributes = RowAttributes(session: nil, role: nil, createdAt: 0)
            for row in 0..<baseFile.rows {
                index.upsert(
                    id: id(row: row), user: user, vector: hello.metric.prepared(baseFile.row(row)),
                    attributes: attributes)
            }
            let queries = (0..<queryFile.rows).map { hello.metric.prepared(queryFile.row($0)) }
            truth = index.search(user: user, queries: queries, k: k).map {
                $0.map(\.id)
            }
        }
        // One pass per ef, its figures named with an "ef=" suffix (none without a sweep).
        var figures: [(key: String, value: Double)] = []
        var curve: [BenchResult.CurvePoint] = []
        for ef in efs.isEmpty ? [nil] : efs.map(Optional.some) {
            let queries = (0..<queryFile.rows).map { row in
                BenchQuery(
                    search: SearchRequest(user: user, query: .vector(queryFile.row(row)), k: k, ef: ef),
                    relevant: truth[row],
                    groups: [])
            }
            log("running \(queries.count) queries over \(concurrency) connections\(ef.map { ", ef \($0)" } ?? "")")
            let (outcomes, seconds) = try await QueryRunner.run(queries, concurrency: concurrency, connect: connect)
            let pass = QueryRunner.figures(queries, outcomes, seconds: seconds, ks: [k])
            let suffix = ef.map { " ef=\($0)" } ?? ""
            figures += pass.map { ($0.key + suffix, $0.value) }
            curve.append(
                BenchResult.CurvePoint(
                    qps: pass.first { $0.key == "queries_per_second" }!.value,
                    recall: pass.first { $0.key == "recall@\(k)" }!.value, ef: ef))
        }
        figures.append(("base_rows", Double(baseFile.rows)))
        figures.append(("load_rows_per_second", load.rate))
        return BenchResult(
            name: name, mode: "vector",
            settings: [
                ("base", base), ("queries", self.queries), ("groundtruth", groundTruth ?? "computed exactly"),
                ("k", String(k)), ("ef", efs.isEmpty ? "default" : efs.map(String.init).joined(separator: ",")),
                ("concurrency", String(concurrency)), ("index", hello.index), ("metric", hello.metric.rawValue),
                ("server", "\(hello.server) \(hello.version)"),
            ] + hello.machine,
            figures: figures, curve: curve)
    }
}

/// Conversation mode: a LoCoMo-format folder (`turns.jsonl`, `questions.jsonl`); each
/// conversation is one user, each question is asked as text in its conversation's scope, once per
/// search mode, and evidence recall is reported per mode, question category and conversation.
public struct ConversationBenchmark: Sendable {
    public var folder: String
    public var k: Int
    public var concurrency: Int
    public var modes: [SearchMode]
    /// The budget of each question's prompt (the `prompt` op, in each mode); nil: no prompts.
    public var promptBudget: Int?

    public init(
        folder: String, k: Int, concurrency: Int, modes: [SearchMode] = [.hybrid], promptBudget: Int? = 1_000
    ) {
        self.folder = folder
        self.k = k
        self.concurrency = concurrency
        self.modes = modes
        self.promptBudget = promptBudget
    }

    public func run(
        name: String, connect: @escaping @Sendable () async throws -> ContextStoreClient,
        log: @escaping @Sendable (String) -> Void
    ) async throws -> BenchResult {
        func objects(_ file: String) throws -> [JSONObject] {
            let lines = try LineReader(path: folder + "/" + file)
            var objects: [JSONObject] = []
            while let line = lines.next() {
                if case .object(let object) = try? JSONParser.parse(line) { objects.append(object) }
            }
            return objects
        }
        func string(_ object: JSONObject, _ key: String) -> String {
            if case .string(let text) = object[key] { text } else { "" }
        }
        let turns = try objects("turns.jsonl")
        let questions = try objects("questions.jsonl")
        // Stored as given: the space's embedding template decides what the model reads.
        var dates = FieldMapping()
        dates.timeFormat = .pattern(FieldMapping.locomoDatePattern)
        let dateReader = dates.makeTimeReader()
        let memories = turns.map { turn in
            NewMemory(
                id: string(turn, "conv") + "/" + string(turn, "id"), user: string(turn, "conv"),
                session: string(turn, "session"), speaker: string(turn, "speaker"), text: string(turn, "text"),
                createdAt: dateReader?.date(from: string(turn, "date")).map { Int64($0.timeIntervalSince1970 * 1000) },
                vector: nil)
        }
        log("loading \(memories.count) turns (embedded by the server)")
        let client = try await connect()
        let hello = try await client.hello()
        guard let model = hello.embedder else {
            throw DataFileError("conversation mode needs a server with an embedding model (hello reports none)")
        }
        let loadStart = Clock.monotonicSeconds()
        for start in stride(from: 0, to: memories.count, by: 128) {
            _ = try await client.addBatch(Array(memories[start..<min(memories.count, start + 128)]), ifAbsent: true)
        }
        let loadSeconds = Clock.monotonicSeconds() - loadStart
        // How the server counts a prompt's tokens, which the prompt figures depend on.
        var counter = "none"
        if let budget = promptBudget, let first = questions.first {
            let search = SearchRequest(user: string(first, "conv"), text: string(first, "text"))
            counter = try await client.prompt(.init(search: search, budget: budget)).counter
        }
        await client.close()

        let ks = [5, 10, 20, k].uniqued().sorted()
        var figures: [(key: String, value: Double)] = []
        var curve: [BenchResult.CurvePoint] = []
        for mode in modes {
            let queries = questions.map { question in
                let conv = string(question, "conv")
                let evidence: [String] =
                    if case .array(let ids) = question["evidence"] {
                        ids.compactMap { if case .string(let id) = $0 { conv + "/" + id } else { nil } }
                    } else { [] }
                let category: String =
                    switch question["category"] {
                    case .integer(let number): "category \(number)"
                    case .number(let number): "category \(number)"
                    case .string(let text): "category \(text)"
                    default: "category ?"
                    }
                return BenchQuery(
                    search: SearchRequest(user: conv, text: string(question, "text"), mode: mode, k: ks.last!),
                    relevant: evidence, groups: [category, conv])
            }
            log("asking \(queries.count) questions (\(mode.rawValue)) over \(concurrency) connections")
            let reporter = ProgressReporter()
            let total = queries.count
            let (outcomes, seconds) = try await QueryRunner.run(queries, concurrency: concurrency, connect: connect) {
                reporter.update(done: $0, of: total, unit: "questions", seconds: $1)
            }
            reporter.finish()
            var modeFigures = QueryRunner.figures(queries, outcomes, seconds: seconds, ks: ks, evidence: true)
            if let budget = promptBudget {
                log("building \(queries.count) prompts of \(budget) tokens (\(mode.rawValue))")
                let (built, _) = try await QueryRunner.run(
                    queries, concurrency: concurrency, connect: connect,
                    ask: { client, query in
                        let answer = try await client.prompt(.init(search: query.search, budget: budget))
                        return (answer.prompt.used, answer.prompt.tokens)
                    })
                modeFigures += QueryRunner.promptFigures(queries, built)
            }
            figures += modeFigures.map { ("\(mode.rawValue) \($0.key)", $0.value) }
            let qps = modeFigures.first { $0.key == "queries_per_second" }!.value
            curve.append(BenchResult.CurvePoint(qps: qps, recall: modeFigures.first { $0.key == "recall@\(k)" }!.value))
        }
        figures.append(("turns", Double(memories.count)))
        figures.append(("load_turns_per_second", loadSeconds > 0 ? Double(memories.count) / loadSeconds : 0))
        return BenchResult(
            name: name, mode: "conversation",
            settings: [
                ("conversations", folder), ("k", String(k)), ("concurrency", String(concurrency)),
                ("search", modes.map(\.rawValue).joined(separator: ",")),
                ("prompt budget", promptBudget.map(String.init) ?? "none"), ("prompt tokens", counter),
                ("model", model), ("index", hello.index),
                ("server", "\(hello.server) \(hello.version)"),
            ] + hello.machine,
            figures: figures, curve: curve)
    }
}

extension ServerHello {
    /// What the figures depend on besides the code: the server's processor, its kernels and its BLAS.
    var machine: [(String, String)] { [("cpu", cpu), ("kernels", kernels), ("blas", blas)] }
}
