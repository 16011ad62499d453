import ContextModel
import ContextProtocol
import Foundation
import NIOPosix
import Testing

@testable import ContextServer

/// The HTTP/JSON front door: the same ops as the line protocol, through the same dispatcher,
/// with an HTTP status per error code.
@Suite struct HTTPTests {
    /// One HTTP/1.1 exchange on a fresh connection: the status and the body's JSON object. The
    /// blocking socket runs on a thread of its own: blocked in the concurrency pool's few
    /// threads, it would starve the server's handlers, which run there too.
    static func exchange(
        _ port: Int, _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]
    ) async throws -> (status: Int, answer: JSONObject?) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result { try blockingExchange(port, method, path, body: body, headers: headers) })
            }
        }
    }

    private static func blockingExchange(
        _ port: Int, _ method: String, _ path: String, body: String?, headers: [String: String]
    ) throws -> (status: Int, answer: JSONObject?) {
        let socket = try RawSocket(port: port)
        var request = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        request += "\r\n" + (body ?? "")
        _ = socket.send(request)
        // The status line, the headers to the blank line, then the body: one JSON line.
        let status = socket.readLine().flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        while let header = socket.readLine(), !header.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {}
        let text = socket.readLine() ?? ""
        return (status, (try? JSONParser.parse(Array(text.utf8)))?.objectValue)
    }

    static func code(_ answer: JSONObject?) -> String? {
        answer?["error"]?.objectValue?["code"]?.stringValue
    }

    @Test func everyOpAnswersOverHTTPAsOverTheLineProtocol() async throws {
        let server = try await TestServer(dimension: 2) { $0.httpAddress = ("127.0.0.1", 0) }
        let port = try #require(server.server.httpPort)
        let added = try await Self.exchange(
            port, "POST", "/v1/ops/add", body: #"{"user":"alice","id":"a1","text":"tea \u0000 time","vector":[1,0]}"#)
        #expect(added.status == 200)
        #expect(added.answer?["id"] == "a1", "\(String(describing: added.answer))")
        let got = try await Self.exchange(
            port, "POST", "/v1/ops/get", body: #"{"user":"alice","id":"a1","now":\#(FixedClock.now)}"#)
        #expect(got.status == 200)
        #expect(got.answer?["memory"]?.objectValue?["text"] == .string("tea \u{0} time"))
        // The same answer as the line protocol's.
        let client = try await server.client()
        let line = try await client.roundTrip(
            line: Array(FixedClock.at(#"{"op":"get","user":"alice","id":"a1"}"#).utf8))
        #expect(line == got.answer)
        await client.close()

        for (path, body, status, code) in [
            ("/v1/ops/get", #"{"user":"alice","id":"nope"}"#, 404, "not_found"),
            ("/v1/ops/search", #"{"user":"alice","vector":[1,0],"colour":"red"}"#, 400, "unknown_field"),
            ("/v1/ops/search", #"{"user":"alice","vector":[1,0,0]}"#, 400, "wrong_dimension"),
            ("/v1/ops/nosuch", "{}", 400, "unknown_op"),
            ("/v1/ops/get", "[1]", 400, "not_object"),
            ("/v1/ops/get", #"{"op":"get","user":"alice","id":"a1"}"#, 400, "invalid_json"),
            ("/v1/ops/get", "{", 400, "invalid_json"),
        ] {
            let answer = try await Self.exchange(port, "POST", path, body: body)
            #expect(answer.status == status, "\(path) \(body)")
            #expect(Self.code(answer.answer) == code, "\(path) \(body): \(String(describing: answer.answer))")
        }
        // A body over the line limit: 413 before it is read whole.
        let long = #"{"user":"alice","text":""# + String(repeating: "x", count: Limits.defaultMaximumLineBytes) + #""}"#
        let tooLong = try await Self.exchange(port, "POST", "/v1/ops/add", body: long)
        #expect(tooLong.status == 413)
        #expect(Self.code(tooLong.answer) == "line_too_long")
        #expect(try await Self.exchange(port, "GET", "/health").status == 200)
        await server.stop()
    }

    @Test func aBearerKeyIsCheckedAsAnAuthIs() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.keys = KeyRing(KeysTests.keys)
            $0.httpAddress = ("127.0.0.1", 0)
        }
        let port = try #require(server.server.httpPort)
        let body = #"{"user":"alice","id":"a1","text":"tea","vector":[1,0]}"#
        for (headers, status, code) in [
            ([:], 401, "unauthorized"),
            (["Authorization": "Bearer wrong-secret"], 401, "unauthorized"),
            (["Authorization": "Basic cm9vdA=="], 401, "unauthorized"),
            (["Authorization": "Bearer reader-secret-0123456789"], 403, "forbidden"),
        ] {
            let answer = try await Self.exchange(port, "POST", "/v1/ops/add", body: body, headers: headers)
            #expect(answer.status == status, "\(headers)")
            #expect(Self.code(answer.answer) == code, "\(headers): \(String(describing: answer.answer))")
        }
        let app = ["Authorization": "Bearer app-a-secret-0123456789"]
        #expect(try await Self.exchange(port, "POST", "/v1/ops/add", body: body, headers: app).status == 200)
        let outside = try await Self.exchange(
            port, "POST", "/v1/ops/get", body: #"{"user":"bob","id":"a1"}"#, headers: app)
        #expect(outside.status == 403)
        // /metrics shows a key what the `metrics` op shows it: not other tenants' traffic.
        func metrics(_ secret: String?) async throws -> String {
            let header = secret.map { "Authorization: Bearer \($0)\r\n" } ?? ""
            return try await Self.raw(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\(header)Connection: close\r\n\r\n")
        }
        #expect(try await metrics(nil).hasPrefix("HTTP/1.1 401"))
        let own = try await metrics("app-a-secret-0123456789")
        #expect(own.hasPrefix("HTTP/1.1 200") && own.contains("contextstore_memories"), "\(own)")
        #expect(!own.contains("contextstore_requests_total"))
        #expect(try await metrics("root-secret-0123456789").contains("contextstore_requests_total"))
        await server.stop()
    }

    @Test func resourceRoutesMapOntoTheirOps() async throws {
        let server = try await TestServer(dimension: 2) { $0.httpAddress = ("127.0.0.1", 0) }
        let port = try #require(server.server.httpPort)
        // A user id with a slash, a percent sign and a NUL, percent-encoded once and decoded once.
        let user = "al/i%ce\u{0}"
        let path = "/v1/users/al%2Fi%25ce%00"
        let one = try await Self.exchange(
            port, "POST", path + "/memories", body: #"{"id":"m1","text":"tea","vector":[1,0],"session":"s1"}"#)
        #expect(one.status == 200 && one.answer?["id"] == "m1", "\(String(describing: one.answer))")
        // An array is a batch: the path's user goes into each item, the query's fields beside them.
        let batch = try await Self.exchange(
            port, "POST", path + "/memories?if_absent=true",
            body:
                #"[{"id":"m1","text":"tea","vector":[1,0],"session":"s1"},{"id":"m2","text":"c \"]{","vector":[0,1],"session":"s2"}]"#
        )
        #expect(batch.status == 200)
        #expect(batch.answer?["count"] == .integer(1) && batch.answer?["skipped"] == .integer(1))
        let got = try await Self.exchange(port, "GET", path + "/memories/m2")
        #expect(got.answer?["memory"]?.objectValue?["user"] == .string(user))
        #expect(got.answer?["memory"]?.objectValue?["text"] == .string(#"c "]{"#))
        // Query fields typed by the op's spec; a value of the wrong type is the op's own error.
        let page = try await Self.exchange(port, "GET", path + "/memories?limit=1&order=desc")
        #expect(page.answer?["memories"]?.arrayValue?.count == 1)
        #expect(page.answer?["next_cursor"]?.stringValue != nil)
        #expect(Self.code(try await Self.exchange(port, "GET", path + "/memories?limit=x").answer) == "wrong_type")
        #expect(
            Self.code(try await Self.exchange(port, "GET", path + "/memories?colour=red").answer) == "unknown_field")
        let patched = try await Self.exchange(
            port, "PATCH", path + "/memories/m1", body: #"{"metadata":{"pinned":true}}"#)
        #expect(patched.answer?["memory"]?.objectValue?["metadata"] == ["pinned": true])
        let hits = try await Self.exchange(port, "POST", path + "/search", body: #"{"vector":[1,0],"k":1}"#)
        #expect(hits.answer?["hits"]?.arrayValue?.first?.objectValue?["id"] == "m1")
        // A number in the query is any JSON number; what is not one is the op's `wrong_type`.
        for (query, code) in [("half_life=1e3", "ok"), ("half_life=0.5", "ok"), ("half_life=NaN", "wrong_type")] {
            let answer = try await Self.exchange(port, "POST", path + "/search?" + query, body: #"{"vector":[1,0]}"#)
            #expect(
                (answer.status == 200 ? "ok" : Self.code(answer.answer)) == code,
                "\(query): \(String(describing: answer.answer))")
        }
        let sessions = try await Self.exchange(port, "GET", path + "/sessions")
        #expect(sessions.answer?["sessions"]?.arrayValue?.count == 2)
        let feedback = try await Self.exchange(port, "POST", path + "/feedback", body: #"{"id":"m1","helped":true}"#)
        #expect(feedback.answer?["helped"] == .integer(1))
        #expect(try await Self.exchange(port, "DELETE", path + "/sessions/s2").answer?["deleted"] == .integer(1))
        #expect(try await Self.exchange(port, "DELETE", path + "/memories/m1").answer?["deleted"] == .integer(1))
        #expect(try await Self.exchange(port, "GET", path + "/memories/m1").status == 404)
        #expect(try await Self.exchange(port, "GET", "/v1/stats").answer?["memories"] == .integer(0))
        // What a route cannot take: a field named twice, a body where none goes, bad escapes.
        for (method, target, body, status, code) in [
            ("POST", path + "/memories", #"{"user":"bob","text":"x","vector":[1,0]}"#, 400, "invalid_json"),
            ("POST", path + "/memories", "[1]", 400, "not_object"),
            ("GET", "/v1/stats", "{}", 400, "invalid_value"),
            ("GET", "/v1/users/a%FF/memories", nil, 400, "invalid_value"),
            ("GET", "/v1/users/a%2/memories", nil, 400, "invalid_value"),
            ("GET", "/v1/users/a/memories?limit=%FF", nil, 400, "invalid_value"),
            ("GET", "/v1/nothing", nil, 404, "not_found"),
            ("GET", "/v1/cluster", nil, 404, "not_found"),
        ] as [(String, String, String?, Int, String)] {
            let answer = try await Self.exchange(port, method, target, body: body)
            #expect(answer.status == status, "\(method) \(target)")
            #expect(Self.code(answer.answer) == code, "\(method) \(target): \(String(describing: answer.answer))")
        }
        await server.stop()
    }

    @Test func theOpenAPIDocumentHasEveryOpAndEveryRoute() async throws {
        let server = try await TestServer(dimension: 2) { $0.httpAddress = ("127.0.0.1", 0) }
        let port = try #require(server.server.httpPort)
        let document = try await Self.exchange(port, "GET", "/openapi.json")
        #expect(document.answer?["openapi"] == "3.1.0")
        let paths = try #require(document.answer?["paths"]?.objectValue)
        let spec = try #require(try JSONParser.parse(Array(OperationSpec.json().utf8)).objectValue)
        for op in spec["ops"]?.arrayValue ?? [] {
            let name = op.objectValue?["name"]?.stringValue ?? ""
            let post = paths["/v1/ops/\(name)"]?.objectValue?["post"]?.objectValue
            #expect(post != nil, "\(name)")
            // Every field of the op in the body's schema, and no other (but the envelope's).
            let properties = post?["requestBody"]?.objectValue?["content"]?.objectValue?["application/json"]?
                .objectValue?["schema"]?.objectValue?["properties"]?.objectValue
            let fields = (op.objectValue?["fields"]?.arrayValue ?? []).compactMap {
                $0.objectValue?["name"]?.stringValue
            }
            #expect(
                Set(properties?.fields.map(\.key) ?? []) == Set(fields + ["rid", "min_seq"]), "\(name)")
            // A status for each of its error codes.
            let statuses = Set(post?["responses"]?.objectValue?.fields.map(\.key) ?? [])
            for code in op.objectValue?["errors"]?.arrayValue ?? [] {
                let status = try #require(ErrorCode(rawValue: code.stringValue ?? "").map(HTTPFrontDoor.status(of:)))
                #expect(statuses.contains(String(status.code)), "\(name) \(code)")
            }
        }
        for route in [
            "/v1/users/{user}/memories", "/v1/users/{user}/memories/{id}", "/v1/users/{user}/search",
            "/v1/users/{user}/prompt", "/v1/users/{user}/sessions", "/v1/users/{user}",
            "/v1/users/{user}/sessions/{session}", "/v1/users/{user}/feedback", "/v1/stats", "/v1/cluster", "/v1/users",
        ] {
            #expect(paths[route] != nil, "\(route)")
        }
        await server.stop()
    }

    @Test func requestsAreCountedByFrontDoorAndCORSIsOffUnlessAsked() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.httpAddress = ("127.0.0.1", 0)
            $0.httpCORSOrigin = "https://app.example.com"
        }
        let port = try #require(server.server.httpPort)
        _ = try await Self.exchange(port, "POST", "/v1/ops/ping", body: "{}")
        _ = try await Self.exchange(port, "POST", "/v1/ops/ping", body: "{}")
        _ = try await Self.exchange(port, "POST", "/v1/ops/get", body: #"{"user":"a","id":"x"}"#)
        let client = try await server.client()
        _ = try await client.roundTrip(line: Array(#"{"op":"ping"}"#.utf8))
        await client.close()
        let metrics = try await Self.raw(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(metrics.contains(#"contextstore_requests_total{op="ping",outcome="ok",door="http"} 2"#), "\(metrics)")
        #expect(metrics.contains(#"contextstore_requests_total{op="ping",outcome="ok",door="tcp"} 1"#))
        #expect(metrics.contains(#"contextstore_requests_total{op="get",outcome="not_found",door="http"} 1"#))
        let preflight = try await Self.raw(
            port,
            "OPTIONS /v1/ops/ping HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n"
                + "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n")
        #expect(preflight.lowercased().contains("access-control-allow-origin: https://app.example.com"), "\(preflight)")
        await server.stop()

        let closed = try await TestServer(dimension: 2) { $0.httpAddress = ("127.0.0.1", 0) }
        let answer = try await Self.raw(
            try #require(closed.server.httpPort),
            "POST /v1/ops/ping HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n"
                + "Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        #expect(answer.hasPrefix("HTTP/1.1 200"))
        #expect(!answer.lowercased().contains("access-control-allow-origin"))
        await closed.stop()
    }

    @Test func idleConnectionsCloseAndAHugeBodyIsRefusedBeforeItIsSent() async throws {
        let server = try await TestServer(dimension: 2) {
            $0.httpAddress = ("127.0.0.1", 0)
            $0.authenticationTimeout = .seconds(1)
        }
        let port = try #require(server.server.httpPort)
        // Half a request, then nothing: the server closes the connection after the idle time
        // (the read would end with EAGAIN after a minute if it did not).
        let ended = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                guard let socket = try? RawSocket(port: port, timeout: 60) else {
                    return continuation.resume(returning: Int32(-1))
                }
                socket.send("POST /v1/ops/ping HTTP/1.1\r\nHost: x\r\n")
                while let line = socket.readLine() { _ = line }
                continuation.resume(returning: socket.endError)
            }
        }
        #expect(ended == 0 || ended == ECONNRESET, "errno \(ended)")
        // A gigabyte announced, twice the line limit sent: refused then, the rest never read.
        let huge = try await Self.raw(
            port,
            "POST /v1/ops/add HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
                + String(repeating: "x", count: 2 * Limits.defaultMaximumLineBytes))
        #expect(huge.hasPrefix("HTTP/1.1 413"), "\(huge.prefix(200))")
        #expect(huge.contains(#""code":"line_too_long""#))
        await server.stop()
    }

    /// The front door runs its application under `EventLoopsExecutor`: its child tasks (a
    /// connection's, a request's) run on the server's event loops, not on the concurrency pool,
    /// which a busy process may keep from them. (Checked on the executor itself: a test that
    /// blocked the pool to show it stalled every other test of the process.)
    @Test func theFrontDoorsTasksRunOnTheEventLoops() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let onLoops = await withTaskExecutorPreference(EventLoopsExecutor(group)) {
            await withTaskGroup(of: Bool.self) { tasks in
                for _ in 0..<8 {
                    tasks.addTask {
                        await Task.yield()
                        return MultiThreadedEventLoopGroup.currentEventLoop != nil
                    }
                }
                return await tasks.reduce(into: [Bool]()) { $0.append($1) }
            }
        }
        #expect(onLoops == Array(repeating: true, count: 8))
        let plain = await Task.detached { MultiThreadedEventLoopGroup.currentEventLoop != nil }.value
        #expect(!plain)
        try await group.shutdownGracefully()
    }

    @Test func theDashboardIsServedWithAPolicyThatRunsOnlyItsOwnScripts() async throws {
        let server = try await TestServer(dimension: 2) { $0.httpAddress = ("127.0.0.1", 0) }
        let port = try #require(server.server.httpPort)
        for (path, type, marker) in [
            ("/", "text/html; charset=utf-8", "<script type=\"module\" src=\"/dashboard/app.js\">"),
            ("/dashboard/app.js", "text/javascript; charset=utf-8", "textContent"),
            ("/dashboard/style.css", "text/css; charset=utf-8", "font:"),
        ] {
            let answer = try await Self.raw(port, "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(path)")
            #expect(answer.lowercased().contains("content-type: \(type)"), "\(path)")
            #expect(answer.lowercased().contains("content-security-policy: default-src 'self'"), "\(path)")
            #expect(answer.contains(marker), "\(path)")
        }
        // The page never sets markup from data: no innerHTML anywhere in its script.
        #expect(!Dashboard.appJS.contains("innerHTML") && !Dashboard.appJS.contains("insertAdjacentHTML"))
        await server.stop()
    }

    /// Sends `request` as it is and reads until the server closes (the request asks it to).
    static func raw(_ port: Int, _ request: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result {
                        let socket = try RawSocket(port: port)
                        _ = socket.send(request)
                        var text = ""
                        while let line = socket.readLine() { text += line + "\n" }
                        return text
                    })
            }
        }
    }
}
