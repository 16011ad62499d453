import ContextModel
import ContextProtocol
import Foundation
import MemoryStore
import Metrics
import Prometheus
import Synchronization

/// The server's metrics, through swift-metrics into a Prometheus registry of this server's own
/// (so several servers in one process keep theirs apart), shown in Prometheus' text format by
/// the `metrics` op and `serve --metrics-port`'s `/metrics`.
///
/// Counted as requests finish: requests per op and outcome (`ok` or the error code, so errors and
/// `rate_limited` per code), latency per op, prompt tokens per key. Read when shown: memories,
/// users, expired and purged memories, the caches' counters, open connections.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// Each op's latency and `ok` count, made once: a request that succeeds takes no lock here.
    private let ops: [String: OpHandles]
    private let handles = Mutex<Handles>(Handles())

    /// Handles made as they are first needed.
    private struct Handles {
        /// Counts by op, then "DOOR CODE" (op `-` for a line that named no known op).
        var errors: [String: [String: CoreMetrics.Counter]] = [:]
        var promptTokens: [String: CoreMetrics.Counter] = [:]
        /// The same counts, readable: a key that is not an admin's is shown its own.
        var promptTokenCounts: [String: Int] = [:]
    }

    private struct OpHandles {
        var timer: CoreMetrics.Timer
        /// The `ok` counter of each front door.
        var ok: [FrontDoor: CoreMetrics.Counter]
    }

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .seconds(1),
        ]
        self.factory = factory
        ops = Dictionary(
            uniqueKeysWithValues: OperationTable.descriptors.map { descriptor in
                let op = descriptor.name
                let timer = CoreMetrics.Timer(
                    label: "contextstore_request_duration_seconds", dimensions: [("op", op)], factory: factory)
                let ok = Dictionary(
                    uniqueKeysWithValues: FrontDoor.allCases.map { ($0, Self.requests(op, "ok", $0, factory)) })
                return (op, OpHandles(timer: timer, ok: ok))
            })
    }

    /// A request of `op` answered with `outcome` (`ok` or an error code, `outcome(_:)`) after
    /// `nanoseconds` (nil: refused before it ran, or `op` is not an op's name), through `door`.
    func finished(_ op: String, outcome: String, nanoseconds: Int64?, door: FrontDoor) {
        let known = ops[op]
        if let known, let nanoseconds { known.timer.recordNanoseconds(nanoseconds) }
        if let known, outcome == "ok", let counter = known.ok[door] { return counter.increment() }
        let key = "\(door.rawValue) \(outcome)"
        handles.withLock { handles in
            if let counter = handles.errors[op]?[key] { return counter }
            let counter = Self.requests(op, outcome, door, factory)
            handles.errors[op, default: [:]][key] = counter
            return counter
        }.increment()
    }

    private static let failurePrefix = Array(#"{"ok":false"#.utf8)

    private static func requests(
        _ op: String, _ outcome: String, _ door: FrontDoor, _ factory: PrometheusMetricsFactory
    ) -> CoreMetrics.Counter {
        CoreMetrics.Counter(
            label: "contextstore_requests_total",
            dimensions: [("op", op), ("outcome", outcome), ("door", door.rawValue)],
            factory: factory)
    }

    /// A user's word on a memory.
    func feedback(helped: Bool) {
        CoreMetrics.Counter(
            label: "contextstore_feedback_total", dimensions: [("helped", helped ? "true" : "false")], factory: factory
        ).increment()
    }

    /// A prompt of `tokens` built for `key` ("-" without keys).
    func prompt(tokens: Int, key: String) {
        let counter = handles.withLock { handles in
            handles.promptTokenCounts[key, default: 0] += tokens
            return handles.promptTokens[key]
                ?? {
                    let made = CoreMetrics.Counter(
                        label: "contextstore_prompt_tokens_total", dimensions: [("key", key)], factory: factory)
                    handles.promptTokens[key] = made
                    return made
                }()
        }
        counter.increment(by: tokens)
    }

    /// The registry in Prometheus' text format, with the gauges read now.
    func text(stats: ServerStats, connections: Int, quality: QualitySampler.Figures, tokensEmbedded: Int) -> String {
        if let recall = quality.recall {
            CoreMetrics.Gauge(label: "contextstore_sampled_recall", factory: factory).record(recall)
        }
        if quality.searches > 0 {
            CoreMetrics.Gauge(label: "contextstore_short_search_share", factory: factory)
                .record(Double(quality.short) / Double(quality.searches))
        }
        let gauges: [(String, Int)] = [
            ("contextstore_sampled_searches", quality.sampled),
            ("contextstore_embedded_tokens", tokensEmbedded),
            ("contextstore_memories", stats.store.memories), ("contextstore_users", stats.store.users),
            ("contextstore_expired_memories", stats.store.expired),
            ("contextstore_purged_memories", Int(stats.store.purged)),
            ("contextstore_duplicate_adds", Int(stats.store.duplicates)),
            ("contextstore_open_connections", connections),
            ("contextstore_result_cache_hits", stats.resultCache.hits),
            ("contextstore_result_cache_misses", stats.resultCache.misses),
            ("contextstore_result_cache_bytes", stats.resultCache.bytes),
            ("contextstore_embedding_cache_hits", stats.embeddingCache.hits),
            ("contextstore_embedding_cache_misses", stats.embeddingCache.misses),
            ("process_resident_memory_bytes", Self.residentBytes()),
        ]
        for (name, value) in gauges {
            CoreMetrics.Gauge(label: name, factory: factory).record(value)
        }
        return registry.emitToString()
    }

    /// The process's resident set in bytes (Linux' `/proc/self/statm`, in pages); 0 where it
    /// cannot be read.
    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// What a key that is not an admin's sees: the memories, users and expired memories of its
    /// users (`stats`), and the prompt tokens built for it. The server-wide series (requests,
    /// latencies, caches, connections) tell of other tenants' traffic, so they are left out.
    func text(ofKey key: String, stats: StoreStats) -> String {
        let tokens = handles.withLock { $0.promptTokenCounts[key] ?? 0 }
        var text = ""
        for (name, value) in [
            ("contextstore_memories", stats.memories), ("contextstore_users", stats.users),
            ("contextstore_expired_memories", stats.expired),
        ] {
            text += "# TYPE \(name) gauge\n\(name) \(value)\n"
        }
        let label = key.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
        text += "# TYPE contextstore_prompt_tokens_total counter\n"
        text += "contextstore_prompt_tokens_total{key=\"\(label)\"} \(tokens)\n"
        return text
    }

    /// `ok`, or the error code of an error line (`{"ok":false,...,"error":{"code":"...`).
    static func outcome(_ answer: [UInt8]) -> String {
        guard answer.starts(with: failurePrefix) else { return "ok" }
        let marker = Array(#""code":""#.utf8)
        guard let start = answer.indices.first(where: { answer[$0...].starts(with: marker) }) else { return "error" }
        let code = answer[(start + marker.count)...].prefix { $0 != UInt8(ascii: "\"") }
        return String(decoding: code, as: UTF8.self)
    }
}
