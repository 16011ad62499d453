import ContextMCP
import ContextProtocol
import Foundation
import HTTPTypes
import Hummingbird
import MCP
import NIOCore

/// MCP's streamable HTTP transport at `/mcp` on the HTTP front door: one MCP session per client,
/// begun by its `initialize` (which names the user) and named by `Mcp-Session-Id` after it.
/// A session's user is fixed when it begins: `/mcp?user=ID`, or the user a key's scope names
/// when it names exactly one; the key must cover it, and every later request of the session must
/// prove the same key. Its tools' requests go through the dispatcher with that key, as the
/// line protocol's would.
///
/// Bounded: at most `maximumSessions` at once; one unused for `idleTimeout` is closed when room
/// is needed and at every new session.
actor MCPDoor {
    struct Session {
        let server: Server
        let transport: StatefulHTTPServerTransport
        /// The key that began it (nil on a server without keys).
        let key: String?
        var lastUsed: NIODeadline
    }

    /// A session unused this long is closed (at the next new session).
    static let idleTimeout = TimeAmount.minutes(10)

    let maximumSessions: Int
    private var sessions: [String: Session] = [:]
    /// Sessions being begun: they hold a place while their `initialize` is answered (the actor
    /// takes other requests meanwhile, so the count alone would let more begin).
    private var starting = 0

    init(maximumSessions: Int) {
        self.maximumSessions = maximumSessions
    }

    /// A line-protocol backend for a session's tools: the dispatcher, with the session's key.
    struct Dispatched: MemoryBackend {
        let serving: HTTPFrontDoor.Serving
        let context: ServerContext
        let address: String
        let loop: any EventLoop

        func roundTrip(line: [UInt8]) async throws -> JSONObject {
            let answer: [UInt8]
            switch serving.dispatcher.dispatch(
                ByteBuffer(bytes: line), in: context, from: address, stopping: serving.stopping(), on: loop
            ).answer {
            case .now(let bytes): answer = bytes
            case .later(let future): answer = try await future.get()
            }
            guard case .object(let object) = try JSONParser.parse(answer) else {
                throw ProtocolError(.invalidJSON, "the dispatcher answered something other than an object")
            }
            return object
        }
    }

    /// Answers one HTTP request to `/mcp`.
    func handle(
        _ request: Request, body: ByteBuffer, context: ServerContext, address: String, loop: any EventLoop,
        serving: HTTPFrontDoor.Serving
    ) async -> Hummingbird.Response {
        let mcpRequest = MCP.HTTPRequest(
            method: request.method.rawValue,
            headers: Dictionary(request.headers.map { ($0.name.canonicalName, $0.value) }) { $0 + ", " + $1 },
            body: Data(body.readableBytesView), path: request.uri.path)
        if let id = request.headers[HTTPField.Name("Mcp-Session-Id")!] {
            guard var session = sessions[id] else {
                return Self.failure(
                    404, "no MCP session '\(id)' (it ended or was closed after being idle); initialize again")
            }
            guard session.key == context.session.key else {
                return Self.failure(403, "this MCP session began with another key")
            }
            session.lastUsed = .now()
            sessions[id] = session
            let response = await session.transport.handleRequest(mcpRequest)
            if request.method == .delete, response.statusCode == 200 {
                sessions[id] = nil
                await session.server.stop()
            }
            return Self.response(response)
        }
        guard request.method == .post else {
            return Self.failure(400, "a request without Mcp-Session-Id must be an initialize POST")
        }
        let user: String
        switch Self.user(of: request, context: context) {
        case .success(let named): user = named
        case .failure(let error): return HTTPFrontDoor.failure(error)
        }
        await closeIdle()
        guard sessions.count + starting < maximumSessions else {
            return HTTPFrontDoor.failure(
                ProtocolError(.overloaded, "\(maximumSessions) MCP sessions are open; retry later"))
        }
        starting += 1
        defer { starting -= 1 }
        let transport = StatefulHTTPServerTransport()
        let tools = MemoryTools(
            user: user, backend: Dispatched(serving: serving, context: context, address: address, loop: loop))
        let server = await tools.makeServer(version: serverVersion)
        do {
            try await server.start(transport: transport)
        } catch {
            return Self.failure(500, "the MCP session could not start: \(error)")
        }
        let response = await transport.handleRequest(mcpRequest)
        if let id = response.headers.first(where: { $0.key.lowercased() == "mcp-session-id" })?.value,
            response.statusCode == 200
        {
            sessions[id] = Session(server: server, transport: transport, key: context.session.key, lastUsed: .now())
        } else {
            await server.stop()
        }
        return Self.response(response)
    }

    private func closeIdle() async {
        let now = NIODeadline.now()
        for (id, session) in sessions where now - session.lastUsed > Self.idleTimeout {
            sessions[id] = nil
            await session.server.stop()
        }
    }

    /// The session's user: `?user=`, else the one user the key's scope names exactly.
    static func user(of request: Request, context: ServerContext) -> Result<String, ProtocolError> {
        let named: String?
        do throws(ProtocolError) {
            named = try HTTPRoute.queryPairs(request.uri.query).first { $0.0 == "user" }?.1
        } catch {
            return .failure(error)
        }
        let key = context.limitingKey
        guard
            let user = named ?? key.flatMap({ $0.users.count == 1 && !$0.users[0].hasSuffix("*") ? $0.users[0] : nil })
        else {
            return .failure(
                ProtocolError(.missingField, "name the user whose memories this MCP session serves: /mcp?user=ID"))
        }
        guard !user.isEmpty else { return .failure(ProtocolError(.invalidValue, "the user must not be empty")) }
        if context.keys != nil, context.session.key == nil {
            return .failure(ProtocolError(.unauthorized, "an MCP session needs a key: Authorization: Bearer <secret>"))
        }
        if let key, !key.covers(user) {
            return .failure(ProtocolError(.forbidden, "the key '\(key.name)' does not cover user '\(user)'"))
        }
        return .success(user)
    }

    static func failure(_ status: Int, _ message: String) -> Hummingbird.Response {
        response(.error(statusCode: status, .invalidRequest(message)))
    }

    /// The transport's answer as Hummingbird's: a JSON body, an SSE stream, or none.
    static func response(_ response: MCP.HTTPResponse) -> Hummingbird.Response {
        var headers = HTTPFields()
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        let status = HTTPResponse.Status(code: response.statusCode)
        switch response {
        case .stream(let stream, _):
            return Hummingbird.Response(
                status: status, headers: headers,
                body: ResponseBody(asyncSequence: stream.map { ByteBuffer(bytes: $0) }))
        default:
            return Hummingbird.Response(
                status: status, headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: response.bodyData ?? Data())))
        }
    }
}
