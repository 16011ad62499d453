import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import Testing
import VectorIndex

@testable import ContextServer

/// The `metrics` op and `/metrics`, `/health` over HTTP.
@Suite struct MetricsTests {
    func line(_ text: String, _ prefix: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map(String.init)
    }

    @Test func requestsOutcomesLatenciesAndGaugesAreCounted() async throws {
        let slow = AccessKey(
            name: "slow", secret: "slow-secret-0123456789", role: .app, users: ["u"],
            rate: Rate(perSecond: 0.001, burst: 1))
        let server = try await TestServer(dimension: 2) { $0.keys = KeyRing(KeysTests.keys + [slow]) }
        let root = try await ContextStoreClient.connect(port: server.port, secret: "root-secret-0123456789")
        try await root.add(NewMemory(id: "a", user: "u", text: "tea", vector: [1, 0]))
        _ = try await root.search(SearchRequest(user: "u", vector: [1, 0]))
        _ = try await root.search(SearchRequest(user: "u", vector: [1, 0]))
        _ = try? await root.get(user: "u", id: "none")
        let limited = try await ContextStoreClient.connect(port: server.port, secret: "slow-secret-0123456789")
        try await limited.ping()
        _ = try? await limited.ping()  // over its rate
        // Not an admin: its own users and prompts alone, nothing of other tenants' traffic.
        try await root.add(NewMemory(id: "b", user: "alice", text: "coffee", vector: [0, 1]))
        let reader = try await ContextStoreClient.connect(port: server.port, secret: "reader-secret-0123456789")
        #expect(
            try await reader.metrics()
                == "# TYPE contextstore_memories gauge\ncontextstore_memories 1\n"
                + "# TYPE contextstore_users gauge\ncontextstore_users 1\n"
                + "# TYPE contextstore_expired_memories gauge\ncontextstore_expired_memories 0\n"
                + "# TYPE contextstore_prompt_tokens_total counter\ncontextstore_prompt_tokens_total{key=\"reader\"} 0\n"
        )
        let text = try await root.metrics()
        #expect(
            line(text, #"contextstore_requests_total{op="search",outcome="ok",door="tcp"}"#)?.hasSuffix(" 2") == true,
            "\(text)")
        #expect(
            line(text, #"contextstore_requests_total{op="get",outcome="not_found",door="tcp"}"#)?.hasSuffix(" 1")
                == true)
        #expect(
            line(text, #"contextstore_requests_total{op="ping",outcome="rate_limited",door="tcp"}"#)?.hasSuffix(" 1")
                == true)
        #expect(line(text, #"contextstore_request_duration_seconds_count{op="search"}"#)?.hasSuffix(" 2") == true)
        // Gauges are floating point in the text format.
        #expect(line(text, "contextstore_memories ") == "contextstore_memories 2.0")
        #expect(line(text, "contextstore_open_connections ") == "contextstore_open_connections 3.0")
        #expect(line(text, "contextstore_result_cache_hits ") == "contextstore_result_cache_hits 1.0")
        // Prompt tokens by key.
        _ = try await root.prompt(.init(search: SearchRequest(user: "u", text: "tea", vector: [1, 0])))
        #expect(line(try await root.metrics(), #"contextstore_prompt_tokens_total{key="root"}"#) != nil)
        for client in [root, limited, reader] { await client.close() }
        await server.stop()
    }

    @Test func healthAndMetricsOverHTTP() async throws {
        let server = try await TestServer(dimension: 2) { $0.metricsAddress = ("127.0.0.1", 0) }
        let port = try #require(server.server.metricsPort)
        func get(_ path: String) throws -> String {
            let socket = try RawSocket(port: port)
            socket.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
            var lines: [String] = []
            while let line = socket.readLine() { lines.append(line) }
            return lines.joined(separator: "\n")
        }
        let health = try get("/health")
        #expect(health.hasPrefix("HTTP/1.1 200 OK") && health.hasSuffix("ok"), "\(health)")
        let client = try await server.client()
        try await client.ping()
        let metrics = try get("/metrics")
        #expect(
            metrics.hasPrefix("HTTP/1.1 200 OK")
                && metrics.contains(#"contextstore_requests_total{op="ping",outcome="ok",door="tcp"} 1"#))
        #expect(try get("/other").hasPrefix("HTTP/1.1 404 Not Found"))
        await client.close()
        await server.stop()
    }

    /// The HTTP listener needs no key: it named every key (prompt tokens by key), and held any
    /// number of half-sent requests open, until the main port could not accept.
    @Test func theHTTPListenerNamesNoKeyAndHoldsFewIdleConnections() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.metricsAddress = ("127.0.0.1", 0)
            $0.keys = KeyRing(KeysTests.keys)
        }
        let port = try #require(server.server.metricsPort)
        let app = try await ContextStoreClient.connect(port: server.port, secret: "app-a-secret-0123456789")
        _ = try await app.prompt(.init(search: SearchRequest(user: "alice", text: "tea", vector: [1, 0])))
        let root = try await ContextStoreClient.connect(port: server.port, secret: "root-secret-0123456789")
        #expect(try await root.metrics().contains(#"contextstore_prompt_tokens_total{key="app-a"}"#))
        let socket = try RawSocket(port: port)
        socket.send("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        var lines: [String] = []
        while let line = socket.readLine() { lines.append(line) }
        #expect(lines.first == "HTTP/1.1 200 OK\r")
        #expect(!lines.contains { $0.contains("app-a") || $0.contains("key=") })
        // 100 half-sent requests: 64 held, the rest refused; every one closed by the server (after
        // the idle time, 5 s), none left for its read to give up on. A read waits up to 60 s, and
        // one that gave up is read once more: a test process loaded by the other suites was seen
        // to hold one past a minute (twice in a day; never alone, nor pinned to one core).
        let halfSent = try (0..<100).map { _ in try RawSocket(port: port, timeout: 60) }
        for socket in halfSent { socket.send("GET /metr") }
        func gaveUp(_ socket: RawSocket) -> Bool { socket.endError == EAGAIN || socket.endError == EWOULDBLOCK }
        for socket in halfSent { while socket.readLine() != nil {} }
        for socket in halfSent where gaveUp(socket) { while socket.readLine() != nil {} }
        let givenUp = halfSent.filter(gaveUp).count
        #expect(givenUp == 0, "\(givenUp) connections were still open after two minutes")
        await app.close()
        await root.close()
        await server.stop()
    }
}

/// The quality gauges: searches re-run exactly in the background, and the share that came short.
@Suite struct QualitySamplerTests {
    @Test func sampledRecallAndShortSearchesArePublished() async throws {
        // Only a graph's vector searches are sampled: an exact rerun of anything else is the
        // same search and would say 1.0 whatever the graph does.
        let server = try await TestServer(dimension: 2, index: .hnsw(HNSWParameters())) { $0.qualitySampleEvery = 1 }
        let client = try await server.client()
        try await client.addBatch(
            (0..<10).map { NewMemory(id: "m\($0)", user: "u", text: "t", vector: [1, Float($0)]) })
        _ = try await client.search(SearchRequest(user: "u", vector: [1, 0], k: 5))
        _ = try await client.search(SearchRequest(user: "u", vector: [1, 1], k: 50))  // 10 of 50: short
        _ = try await client.search(SearchRequest(user: "u", vector: [1, 2], k: 5, exact: true))  // not re-run
        var figures = server.server.quality
        for _ in 0..<500 where figures.sampled < 2 {  // up to 10 s for the background re-runs
            try await Task.sleep(for: .milliseconds(20))
            figures = server.server.quality
        }
        #expect(figures.searches == 3 && figures.short == 1 && figures.sampled == 2 && figures.recall == 1)
        let text = try await client.metrics()
        #expect(text.contains("contextstore_sampled_recall 1.0"), "\(text)")
        #expect(text.contains("contextstore_short_search_share 0.3333333333333333"))
        #expect(text.contains("contextstore_sampled_searches 2.0"))
        await client.close()
        await server.stop()
        // A flat space's searches are not sampled.
        let flat = try await TestServer(dimension: 2) { $0.qualitySampleEvery = 1 }
        let flatClient = try await flat.client()
        try await flatClient.add(NewMemory(id: "m", user: "u", text: "t", vector: [1, 0]))
        _ = try await flatClient.search(SearchRequest(user: "u", vector: [1, 0], k: 5))
        try await Task.sleep(for: .milliseconds(200))
        #expect(flat.server.quality.sampled == 0)
        await flatClient.close()
        await flat.stop()
    }
}

/// In an l2 space, a prompt with `feedback_boost` took fused scores (higher is better) for
/// distances and put the least relevant memories first (issue 24, item 17).
@Suite struct DistanceAndFusionTests {
    @Test func aFeedbackBoostedPromptInAnL2SpaceKeepsTheNearestFirst() async throws {
        let server = try await TestServer(dimension: 2, metric: .l2)
        let client = try await server.client()
        try await client.addBatch([
            NewMemory(id: "near", user: "u", text: "near", vector: [1, 0]),
            NewMemory(id: "far", user: "u", text: "far", vector: [5, 5]),
        ])
        for boost in [nil, 0.5] as [Double?] {
            let prompt = try await client.prompt(
                .init(search: SearchRequest(user: "u", text: "q", vector: [1, 0], mode: .vector, feedbackBoost: boost)))
            #expect(
                prompt.prompt.sections.first { $0.name == .memories }?.ids.first == "near",
                "\(String(describing: boost))")
        }
        await client.close()
        await server.stop()
    }
}
