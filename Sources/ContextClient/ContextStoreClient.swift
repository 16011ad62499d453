import ContextModel
import ContextProtocol
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An async client for one connection to a ContextStore server.
///
/// Calls may be made concurrently from many tasks: each request is written at once and the
/// answers are matched to callers in order, so concurrent calls are pipelined on the one socket.
public final class ContextStoreClient: Sendable {
    private let channel: Channel
    private let timeout: TimeAmount?
    /// Set when the timeout closed the connection, so waiting calls say why.
    private let timedOut = Atomic<Bool>(false)

    private init(channel: Channel, timeout: TimeAmount?) {
        self.channel = channel
        self.timeout = timeout
    }

    /// Connects to a server.
    /// - Parameters:
    ///   - maximumResponseBytes: Longest accepted response line.
    ///   - timeout: How long connecting, and then each call, may take; a call that passes it
    ///     closes the connection and throws `ClientError.timedOut`. Nil waits without limit.
    ///   - secret: A key's secret, sent as the connection's first request (`auth`).
    /// - Throws: `ClientError.cannotConnect` naming the address and the system's reason;
    ///   `ClientError.server` with `unauthorized` for a secret the server does not know.
    /// - Parameter tls: Speak TLS, with this configuration (its trust roots and the name the
    ///   server's certificate must have: `host`); nil: plain TCP.
    public static func connect(
        host: String = "127.0.0.1", port: Int = 7420, maximumResponseBytes: Int = 256 * 1024 * 1024,
        timeout: TimeAmount? = nil, secret: String? = nil, tls: TLSConfiguration? = nil
    ) async throws -> ContextStoreClient {
        // The `auth` line is written by the event loop as soon as the connection is up, not when
        // this task next runs: a server's deadline to authenticate starts at the connection, and
        // a busy process may resume a task long after that.
        let (channel, authenticated) = try await open(
            host: host, port: port, maximumResponseBytes: maximumResponseBytes, timeout: timeout, tls: tls,
            firstLine: secret.map { Operations.Auth.requestLine($0) })
        let client = ContextStoreClient(channel: channel, timeout: timeout)
        guard let authenticated else { return client }
        do {
            _ = try Self.decode(Operations.Auth.self, try Self.object(try await client.answer(to: authenticated)))
        } catch {
            await client.close()
            throw error
        }
        return client
    }

    /// Connects, and writes `firstLine` (when given) once connected; returns the channel and
    /// the future answer to that line.
    private static func open(
        host: String, port: Int, maximumResponseBytes: Int, timeout: TimeAmount?, tls: TLSConfiguration?,
        firstLine: [UInt8]?
    ) async throws -> (Channel, EventLoopFuture<ByteBuffer>?) {
        do {
            let tlsContext = try tls.map { try NIOSSLContext(configuration: $0) }
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(timeout ?? .seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tlsContext {
                            // A name is checked against the certificate; an address cannot be (SNI
                            // carries names only): then the chain alone is.
                            let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: tlsContext, serverHostname: isAddress ? nil : host))
                        }
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: maximumResponseBytes),
                            RequestResponseHandler<ByteBuffer, ByteBuffer>())
                    }
                }
                .connect(host: host, port: port)
                .map { channel in (channel, firstLine.map { send($0, on: channel) }) }
                .get()
        } catch {
            throw ClientError.cannotConnect(host: host, port: port, reason: Self.reason(error))
        }
    }

    /// The system's words for a failed connect.
    private static func reason(_ error: any Error) -> String {
        if let failure = error as? NIOConnectionError {
            if let first = failure.connectionErrors.first { return reason(first.error) }
            if let resolution = failure.dnsAAAAError ?? failure.dnsAError { return "cannot resolve: \(resolution)" }
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if let channel = error as? ChannelError, case .connectTimeout = channel { return "timed out" }
        return "\(error)"
    }

    /// Closes the connection.
    public func close() async {
        try? await channel.close()
    }

    // MARK: - Raw requests

    /// Sends one request line (the newline is added) and returns the parsed response object,
    /// whether `ok` is true or false.
    public func roundTrip(line bytes: [UInt8]) async throws -> JSONObject {
        try Self.object(try await exchange(line: bytes))
    }

    /// Sends one request line (the newline is added) and returns the answer line as it came,
    /// without its newline.
    public func exchange(line bytes: [UInt8]) async throws -> ByteBuffer {
        try await answer(to: Self.send(bytes, on: channel))
    }

    /// Writes one request line (the newline is added); the future is its answer line.
    private static func send(_ bytes: [UInt8], on channel: Channel) -> EventLoopFuture<ByteBuffer> {
        var buffer = channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let promise = channel.eventLoop.makePromise(of: ByteBuffer.self)
        // A write that never reaches the handler (the connection closed first) would leave the
        // answer's promise pending forever: fail it with the write.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { promise.fail($0) }
        channel.writeAndFlush((buffer, promise), promise: written)
        return promise.futureResult
    }

    /// Waits for the answer to a line sent, at most the timeout (which then closes the connection).
    private func answer(to sent: EventLoopFuture<ByteBuffer>) async throws -> ByteBuffer {
        let deadline = timeout.map { timeout in
            channel.eventLoop.scheduleTask(in: timeout) { [self] in
                timedOut.store(true, ordering: .relaxed)
                channel.close(promise: nil)
            }
        }
        defer { deadline?.cancel() }
        do {
            return try await sent.get()
        } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed {
            throw closedError
        } catch is NIOExtrasErrors.ClosedBeforeReceivingResponse {
            throw closedError
        }
    }

    /// An answer line as a JSON object.
    private static func object(_ line: ByteBuffer) throws -> JSONObject {
        let value: JSONValue
        do {
            value = try line.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONParser.parse(bytes) }
        } catch {
            throw ClientError.invalidResponse("\(error)")
        }
        guard case .object(let object) = value else { throw ClientError.invalidResponse("not an object") }
        return object
    }

    private var closedError: ClientError {
        guard timedOut.load(ordering: .relaxed), let timeout else { return .connectionClosed }
        return .timedOut(seconds: Double(timeout.nanoseconds) / 1e9)
    }

    /// Sends a request object and returns the response object, whether `ok` is true or false.
    public func roundTrip(_ request: JSONValue) async throws -> JSONObject {
        var writer = JSONWriter()
        writer.value(request)
        return try await roundTrip(line: writer.bytes)
    }

    /// Sends one operation and returns its decoded answer, with the codecs the server uses.
    /// - Throws: `ClientError.server` with the server's code when `ok` is false;
    ///   `ClientError.invalidResponse` when the answer does not decode.
    public func call<Op: WireOperation>(_ op: Op.Type, _ arguments: Op.Arguments) async throws -> Op.Answer {
        try Self.decode(op, try await roundTrip(line: Op.requestLine(arguments)))
    }

    /// `response`'s answer to `op`, or the server's error.
    private static func decode<Op: WireOperation>(_ op: Op.Type, _ response: JSONObject) throws -> Op.Answer {
        guard case .bool(true) = response["ok"] else {
            guard case .object(let error) = response["error"], case .string(let code) = error["code"] else {
                throw ClientError.invalidResponse("ok is not true and there is no error")
            }
            let message: String = if case .string(let text) = error["message"] { text } else { "" }
            var details: [String: Int64] = [:]
            for (name, value) in error.fields where name != "code" && name != "message" {
                if let number = value.integerValue { details[name] = number }
            }
            throw ClientError.server(code: code, message: message, details: details)
        }
        do {
            return try Op.decode(answer: response)
        } catch {
            throw ClientError.invalidResponse("\(Op.name): \(error.message)")
        }
    }

    // MARK: - Operations

    /// `ping`: checks the server answers.
    public func ping() async throws {
        _ = try await call(Operations.Ping.self, Nothing())
    }

    /// `hello`: what the server is and holds.
    public func hello() async throws -> ServerHello {
        try await call(Operations.Hello.self, Nothing())
    }

    /// `add`: stores one memory (a memory without a vector is embedded by the server). Returns
    /// its id; `call(Operations.Add.self, ...)` also tells whether the model cut its text.
    /// - Parameter model: The model that produced the vector, checked against the space's.
    @discardableResult
    public func add(_ memory: NewMemory, model: String? = nil) async throws -> String {
        try await call(Operations.Add.self, .init(memory, model: model)).id
    }

    /// `add_batch`: stores all of `memories` or none. Returns their ids in order.
    @discardableResult
    public func addBatch(_ memories: [NewMemory]) async throws -> [String] {
        try await addBatch(memories, ifAbsent: false).ids
    }

    /// `add_batch` with its options: with `ifAbsent`, memories whose id exists are skipped.
    /// - Returns: The ids stored and how many were skipped.
    public func addBatch(
        _ memories: [NewMemory], ifAbsent: Bool, model: String? = nil
    ) async throws -> Operations.AddBatch.Answer {
        try await call(Operations.AddBatch.self, .init(memories, model: model, ifAbsent: ifAbsent))
    }

    /// `search`: the closest memories of one user, best first.
    public func search(_ search: SearchRequest) async throws -> [ScoredMemory] {
        try await call(Operations.Search.self, search).hits
    }

    /// `prompt`: the prompt for a user's new message within a token budget, and what went in
    /// and was left out.
    /// - Throws: `ClientError.server` with `budget_too_small` (its `needed` in the details) when
    ///   the system text and the query alone exceed the budget.
    public func prompt(_ request: Operations.Prompt.Arguments) async throws -> Operations.Prompt.Answer {
        try await call(Operations.Prompt.self, request)
    }

    /// `get`: one of `user`'s memories; its vector only `withVector`.
    /// - Throws: `ClientError.server` with code `not_found` when there is none.
    public func get(user: String, id: String, withVector: Bool = false) async throws -> Memory {
        try await call(Operations.Get.self, .init(user: user, id: id, withVector: withVector)).memories[0]
    }

    /// `get` of several ids: the memories found, in the order asked, and the ids not found.
    public func get(
        user: String, ids: [String], withVector: Bool = false
    ) async throws -> (memories: [Memory], missing: [String]) {
        let answer = try await call(Operations.Get.self, .init(user: user, ids: ids, withVector: withVector))
        return (answer.memories, answer.missing)
    }

    /// `list`: one page of a user's memories in time order.
    public func list(_ request: ListRequest) async throws -> ListPage {
        try await call(Operations.List.self, request)
    }

    /// A page of the users whose ids begin with `prefix`, after `after` (the last page's `next`).
    public func users(prefix: String = "", limit: Int = 100, after: String? = nil) async throws
        -> Operations.Users.Answer
    {
        try await call(Operations.Users.self, .init(prefix: prefix, limit: limit, after: after))
    }

    /// `sessions`: a user's sessions, the latest active first.
    public func sessions(user: String, limit: Int = 1000) async throws -> Operations.Sessions.Answer {
        try await call(Operations.Sessions.self, .init(user: user, limit: limit))
    }

    /// `update`: changes a memory's session, role, metadata or time; returns it as it now is.
    /// - Throws: `ClientError.server` with code `not_found` when there is none.
    public func update(user: String, id: String, _ changes: MemoryChanges) async throws -> Memory {
        try await call(Operations.Update.self, .init(MemoryRef(user: user, id: id), changes))
    }

    /// `backup`: the server writes a checked copy of the space to `path` (a new file on its
    /// machine).
    public func backup(to path: String) async throws -> Operations.Backup.Answer {
        try await call(Operations.Backup.self, path)
    }

    /// `feedback`: `user`'s memory `id` helped (or did not); returns its counts.
    /// - Throws: `ClientError.server` with code `not_found` when there is none.
    public func feedback(user: String, id: String, helped: Bool) async throws -> Operations.Feedback.Answer {
        try await call(Operations.Feedback.self, .init(MemoryRef(user: user, id: id), helped: helped))
    }

    /// `delete`: removes one of `user`'s memories.
    /// - Throws: `ClientError.server` with code `not_found` when there is none.
    /// With `withDerived`, also the user's memories whose sources name it. Returns how many
    /// memories went.
    @discardableResult
    public func delete(user: String, id: String, withDerived: Bool = false) async throws -> Int {
        try await call(Operations.Delete.self, .init(MemoryRef(user: user, id: id), withDerived: withDerived))
    }

    /// `forget`: removes a user's memories that pass `filter` (all of them by default) and, with
    /// `withDerived`, the user's memories whose sources name one of them. Returns how many went.
    @discardableResult
    public func forget(user: String, filter: MemoryFilter = MemoryFilter(), withDerived: Bool = false) async throws
        -> Int
    {
        try await forgetWithReceipt(user: user, filter: filter, withDerived: withDerived).deleted
    }

    /// `forget`, answering the receipt too: what went, place by place, and what a look afterwards
    /// found left of it.
    public func forgetWithReceipt(
        user: String, filter: MemoryFilter = MemoryFilter(), withDerived: Bool = false
    ) async throws -> Operations.Forget.Answer {
        try await call(Operations.Forget.self, .init(user: user, filter: filter, withDerived: withDerived))
    }

    /// `metrics`: the server's metrics in Prometheus' text format.
    public func metrics() async throws -> String {
        try await call(Operations.Metrics.self, Nothing())
    }

    /// `embed`: the server's embeddings of `texts`, in order.
    public func embed(_ texts: [String]) async throws -> [[Float]] {
        try await call(Operations.Embed.self, texts).vectors
    }

    /// `stats`: counts and sizes of the space and the embedding cache.
    public func stats() async throws -> ServerStats {
        try await call(Operations.Stats.self, Nothing())
    }

    /// `cluster`: the nodes and each range's hosts, as the node answering sees them (an admin's).
    public func cluster() async throws -> Operations.Cluster.Answer {
        try await call(Operations.Cluster.self, Nothing())
    }

    /// `digest`: a hash of `user`'s rows (nil: the whole space's, an admin's), and the index of
    /// the last write the space applied.
    public func digest(user: String? = nil) async throws -> Operations.Digest.Answer {
        try await call(Operations.Digest.self, user)
    }
}
