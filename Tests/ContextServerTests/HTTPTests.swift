import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import Testing

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
        let got = try await Self.exchange(port, "POST", "/v1/ops/get", body: #"{"user":"alice","id":"a1"}"#)
        #expect(got.status == 200)
        #expect(got.answer?["memory"]?.objectValue?["text"] == .string("tea \u{0} time"))
        // The same answer as the line protocol's.
        let client = try await server.client()
        let line = try await client.roundTrip(line: Array(#"{"op":"get","user":"alice","id":"a1"}"#.utf8))
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
        await server.stop()
    }
}
