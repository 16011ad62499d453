import ContextModel
import ContextProtocol
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The second front door: HTTP/JSON (Hummingbird) onto the same `Dispatcher` the line protocol
/// uses, so an op decodes, is admitted, runs, is counted and logged the same way through
/// either. Every op is `POST /v1/ops/{op}` with the op's fields as the JSON body (the line
/// protocol's object without `op`: the path names it), answered with the JSON object the line
/// protocol answers, and an HTTP status for its error code (`status(of:)`).
///
/// Keys: `Authorization: Bearer <secret>` proves a key for that one request (a fresh session
/// of the server's context, as a new connection's); a wrong secret is 401 and counts against
/// the address like a failed `auth`.
enum HTTPFrontDoor {
    /// The request context: Hummingbird's, with the peer's address (the dispatcher limits
    /// failed authentications by address).
    struct Context: RequestContext, RemoteAddressRequestContext {
        var coreContext: CoreRequestContextStorage
        let remoteAddress: SocketAddress?
        /// The connection's loop, which the dispatcher answers on.
        let eventLoop: any EventLoop

        init(source: ApplicationRequestContextSource) {
            coreContext = .init(source: source)
            remoteAddress = source.channel.remoteAddress
            eventLoop = source.channel.eventLoop
        }
    }

    /// Serves `router` on `host:port` on the server's event loops until the returned task is
    /// cancelled, with at most `maximumConnections` connections at once.
    /// - Returns: The port it listens on (the real one when 0 was asked for) and its task.
    /// - Throws: `ServerConfigurationError` when it cannot listen there.
    /// - Parameters:
    ///   - tls: The line protocol's TLS, which HTTP then speaks too (a secret in a header is no
    ///     safer in the clear than one in an `auth` line).
    ///   - idleTimeout: A connection without a request for this long is closed.
    static func start(
        _ router: Router<Context>, host: String, port: Int, maximumConnections: Int, tls: TLSConfiguration?,
        idleTimeout: TimeAmount, group: any EventLoopGroup, logger: Logger
    ) async throws -> (port: Int, running: Task<Void, Never>) {
        let (bound, listening) = AsyncStream<Int>.makeStream()
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: idleTimeout))
        let application = Application(
            router: router,
            server: try tls.map { try .tls(http1, tlsConfiguration: $0) } ?? http1,
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port),
                availableConnectionsDelegate: .maximum(maximumConnections, logger: logger)),
            onServerRunning: { channel in
                listening.yield(channel.localAddress?.port ?? port)
                listening.finish()
            },
            eventLoopGroupProvider: .shared(group), logger: logger)
        let failure = Mutex<(any Error)?>(nil)
        // Its tasks (a connection's, a request's) run on the server's event loops, as the line
        // protocol's handlers do, not on the global concurrency pool: a pool kept busy elsewhere
        // in the process cannot stall HTTP.
        let loops = EventLoopsExecutor(group)
        let running = Task {
            defer { listening.finish() }
            await withTaskExecutorPreference(loops) {
                do {
                    try await application.run()
                } catch {
                    failure.withLock { $0 = error }
                }
            }
        }
        for await port in bound { return (port, running) }
        let error = failure.withLock { $0 }
        throw ServerConfigurationError("cannot serve HTTP on \(host):\(port): \(error.map { "\($0)" } ?? "it stopped")")
    }

    /// What the routes answer with and through.
    struct Serving: Sendable {
        let context: ServerContext
        let dispatcher: Dispatcher
        /// The line limit: a longer body is 413 before it is read whole.
        let maximumBodyBytes: Int
        /// Whether the server is stopping (requests are then `shutting_down`).
        let stopping: @Sendable () -> Bool
        /// `--http-cors`: the one origin a browser may call from; nil: none.
        let corsOrigin: String?
        /// MCP sessions open at once.
        let maximumMCPSessions: Int
    }

    /// The routes: `/health`, `/metrics`, `/openapi.json`, `POST /v1/ops/{op}` for every op and
    /// the resource routes of `HTTPRoute.resources`.
    static func router(_ serving: Serving) -> Router<Context> {
        let router = Router(context: Context.self)
        router.add(middleware: ErrorBodies())
        if let origin = serving.corsOrigin {
            router.add(
                middleware: CORSMiddleware(
                    allowOrigin: .custom(origin), allowHeaders: [.authorization, .contentType],
                    allowMethods: [.get, .post, .patch, .delete, .options], maxAge: .seconds(600)))
        }
        router.get("/health") { _, _ in
            serving.stopping()
                ? failure(ProtocolError(.shuttingDown, "the server is shutting down"))
                : response(Array(#"{"ok":true}"#.utf8) + [UInt8(ascii: "\n")])
        }
        // The dashboard's files; its page may load only its own scripts and styles, and call
        // only this server.
        for (path, file) in Dashboard.files {
            router.get(RouterPath(path)) { _, _ in
                Hummingbird.Response(
                    status: .ok,
                    headers: [
                        .contentType: file.type, .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:",
                        .cacheControl: "no-cache",
                    ],
                    body: .init(byteBuffer: ByteBuffer(string: file.body)))
            }
        }
        let document = OpenAPIDocument.json()
        router.get("/openapi.json") { _, _ in
            Hummingbird.Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
        // The `metrics` op's text, as Prometheus reads it: what a key sees is what the op shows
        // it (a key that is not an admin's: its own users' series alone).
        router.get("/metrics") { request, route in
            let answer = await run(request, route, serving) { _ throws(ProtocolError) in
                ByteBuffer(bytes: Operations.Metrics.requestLine(Nothing()))
            }
            guard let text = (try? JSONParser.parse(answer))?.objectValue?["text"]?.stringValue else {
                return response(answer)
            }
            return Hummingbird.Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.post("/v1/ops/:op") { request, route in
            let op = route.parameters.get("op") ?? ""
            return await answer(request, route, serving) { body throws(ProtocolError) in
                try HTTPRoute.opLine(op: op, body: body)
            }
        }
        // MCP's streamable HTTP transport: sessions of one user each (`MCPDoor`).
        let mcp = MCPDoor(maximumSessions: serving.maximumMCPSessions)
        for method in [HTTPRequest.Method.post, .get, .delete] {
            router.on("/mcp", method: method) { request, route in
                switch await bodyAndKey(request, route, serving) {
                case .success(let (body, context)):
                    return await mcp.handle(
                        request, body: body, context: context, address: route.remoteAddress?.ipAddress ?? "-",
                        loop: route.eventLoop, serving: serving)
                case .failure(let error):
                    return failure(error)
                }
            }
        }
        for resource in HTTPRoute.resources {
            router.on(RouterPath(resource.routerPath), method: resource.method) { request, route in
                var values: [String] = []
                for name in resource.parameters {
                    guard let value = route.parameters.get(name).flatMap({ HTTPRoute.percentDecoded($0[...]) }) else {
                        return failure(
                            ProtocolError(.invalidValue, "the path's {\(name)} is not percent-encoded UTF-8"))
                    }
                    values.append(value)
                }
                let query = request.uri.query
                return await answer(request, route, serving) { body throws(ProtocolError) in
                    try resource.line(values: values, query: HTTPRoute.queryPairs(query), body: body)
                }
            }
        }
        return router
    }

    /// A copy of the server's context for one request, with the key its `Authorization`
    /// header proves (none without the header: the op's access then decides, as for a
    /// connection that has not authenticated).
    private static func authenticated(
        _ request: Request, _ serving: Serving, from route: Context
    ) -> Result<ServerContext, ProtocolError> {
        var session = serving.context
        session.session = ConnectionSession(door: .http)
        guard let authorization = request.headers[.authorization], session.keys != nil else { return .success(session) }
        let address = route.remoteAddress?.ipAddress ?? "-"
        let now = NIODeadline.now().uptimeNanoseconds
        if let wait = serving.dispatcher.authFailures.wait(address: address, now: now) {
            return .failure(
                ProtocolError(
                    .rateLimited, "too many failed authentications from \(address); retry in \(wait) ms",
                    details: ["retry_after_ms": wait]))
        }
        guard authorization.hasPrefix("Bearer ") else {
            return .failure(ProtocolError(.unauthorized, "the Authorization header must be 'Bearer <secret>'"))
        }
        do throws(ProtocolError) {
            _ = try session.authenticate(String(authorization.dropFirst("Bearer ".count)))
        } catch {
            serving.dispatcher.authFailures.failed(address: address, now: now)
            return .failure(error)
        }
        return .success(session)
    }

    /// The body (`line_too_long` past the line limit) and a context with the key the request
    /// proves.
    private static func bodyAndKey(
        _ request: Request, _ route: Context, _ serving: Serving
    ) async -> Result<(ByteBuffer, ServerContext), ProtocolError> {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: serving.maximumBodyBytes)
        } catch is NIOTooManyBytesError {
            return .failure(
                ProtocolError(
                    .lineTooLong, "the body is longer than the server's limit of \(serving.maximumBodyBytes) bytes"))
        } catch {
            // A body cut short or badly framed (the client is often gone by now).
            return .failure(ProtocolError(.invalidValue, "the request's body could not be read: \(error)"))
        }
        return authenticated(request, serving, from: route).map { (body, $0) }
    }

    /// `run`'s answer as an HTTP response.
    private static func answer(
        _ request: Request, _ route: Context, _ serving: Serving,
        line: (ByteBuffer) throws(ProtocolError) -> ByteBuffer
    ) async -> Hummingbird.Response {
        response(await run(request, route, serving, line: line))
    }

    /// Reads the body (413 past the line limit), authenticates, makes the line-protocol request
    /// with `line` and answers it through the dispatcher.
    /// - Returns: The answer line.
    private static func run(
        _ request: Request, _ route: Context, _ serving: Serving,
        line: (ByteBuffer) throws(ProtocolError) -> ByteBuffer
    ) async -> [UInt8] {
        let body: ByteBuffer
        let session: ServerContext
        switch await bodyAndKey(request, route, serving) {
        case .success(let read): (body, session) = read
        case .failure(let error): return ContextProtocol.Response.failure(rid: nil, error)
        }
        let requestLine: ByteBuffer
        do throws(ProtocolError) {
            requestLine = try line(body)
        } catch {
            return ContextProtocol.Response.failure(rid: nil, error)
        }
        let address = route.remoteAddress?.ipAddress ?? "-"
        let loop = route.eventLoop
        let stopping = serving.stopping()
        // Dispatched from this task, which runs on an event loop (`EventLoopsExecutor`): what
        // runs at once (a vector search, a `get`) runs here, the rest is handed to the pools, as
        // for the line protocol's requests.
        switch serving.dispatcher.dispatch(requestLine, in: session, from: address, stopping: stopping, on: loop).answer
        {
        case .now(let bytes):
            return bytes
        case .later(let future):
            do {
                return try await future.get()
            } catch {
                // The dispatcher's futures never fail; a loop that is shutting down can.
                return ContextProtocol.Response.failure(
                    rid: nil, ProtocolError(.shuttingDown, "the server is shutting down"))
            }
        }
    }

    /// Answers Hummingbird's own errors (no route, a method the route does not take) with the
    /// API's error body.
    struct ErrorBodies: RouterMiddleware {
        func handle(
            _ request: Request, context: Context, next: (Request, Context) async throws -> Hummingbird.Response
        ) async throws -> Hummingbird.Response {
            do {
                return try await next(request, context)
            } catch let error as HTTPError {
                let code: ErrorCode =
                    switch error.status {
                    case .notFound: .notFound
                    case .contentTooLarge: .lineTooLong
                    default: .invalidValue
                    }
                var answer = failure(
                    ProtocolError(code, error.body ?? "no route \(request.method) \(request.uri.path)"))
                answer.status = error.status
                return answer
            }
        }
    }

    /// An answer line as an HTTP response (the line, newline included, as its body): 200 for
    /// `ok`, else its error code's status.
    static func response(_ answer: [UInt8]) -> Hummingbird.Response {
        let code = ErrorCode(rawValue: ServerMetrics.outcome(answer))
        var headers: HTTPFields = [.contentType: "application/json"]
        if code == .rateLimited { headers[.retryAfter] = "1" }
        return Hummingbird.Response(
            status: code.map(status(of:)) ?? .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer)))
    }

    static func failure(_ error: ProtocolError) -> Hummingbird.Response {
        response(ContextProtocol.Response.failure(rid: nil, error))
    }

    /// One HTTP status per error code (docs/PROTOCOL.md, "HTTP").
    static func status(of code: ErrorCode) -> HTTPResponse.Status {
        switch code {
        case .invalidJSON, .notObject, .unknownOp, .unknownField, .missingField, .wrongType, .invalidValue,
            .wrongDimension, .nonFinite, .kOutOfRange, .noEmbedder, .modelMismatch, .budgetTooSmall, .unknownTemplate:
            .badRequest
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .busy: .conflict
        case .lineTooLong, .tooLarge: .contentTooLarge
        case .rateLimited: .tooManyRequests
        case .overloaded, .shuttingDown, .unavailable: .serviceUnavailable
        case .storageError: .internalServerError
        }
    }
}

/// Runs a task's jobs on the event loops of `group`, each on the next loop: the HTTP front door's
/// tasks run where the line protocol's handlers run.
final class EventLoopsExecutor: TaskExecutor {
    private let group: any EventLoopGroup

    init(_ group: any EventLoopGroup) {
        self.group = group
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        group.next().execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// A flag set once, when the server begins to stop.
final class StopSignal: Sendable {
    private let flag = Atomic(false)

    var isSet: Bool { flag.load(ordering: .acquiring) }

    func set() { flag.store(true, ordering: .releasing) }
}
