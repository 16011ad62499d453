import ContextProtocol
import MemoryStore
import NIOCore
import NIOExtras
import NIOPosix
import VectorIndex

/// An async client for one connection to a ContextStore server.
///
/// Calls may be made concurrently from many tasks: each request is written at once and the
/// answers are matched to callers in order, so concurrent calls are pipelined on the one socket.
public final class ContextStoreClient: Sendable {
    private let channel: Channel

    private init(channel: Channel) {
        self.channel = channel
    }

    /// Connects to a server.
    /// - Parameter maximumResponseBytes: Longest accepted response line.
    public static func connect(
        host: String = "127.0.0.1", port: Int = 7420, maximumResponseBytes: Int = 256 * 1024 * 1024
    ) async throws -> ContextStoreClient {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: maximumResponseBytes),
                        RequestResponseHandler<ByteBuffer, ByteBuffer>())
                }
            }
            .connect(host: host, port: port).get()
        return ContextStoreClient(channel: channel)
    }

    /// Closes the connection.
    public func close() async {
        try? await channel.close()
    }

    // MARK: - Raw requests

    /// Sends one request line (the newline is added) and returns the parsed response object,
    /// whether `ok` is true or false.
    public func roundTrip(line bytes: [UInt8]) async throws -> JSONObject {
        var buffer = channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let promise = channel.eventLoop.makePromise(of: ByteBuffer.self)
        channel.writeAndFlush((buffer, promise), promise: nil)
        let line: ByteBuffer
        do {
            line = try await promise.futureResult.get()
        } catch is NIOExtrasErrors.ClosedBeforeReceivingResponse {
            throw ClientError.connectionClosed
        } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed {
            throw ClientError.connectionClosed
        }
        let value: JSONValue
        do {
            value = try line.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONParser.parse(bytes) }
        } catch {
            throw ClientError.invalidResponse("\(error)")
        }
        guard case .object(let object) = value else { throw ClientError.invalidResponse("not an object") }
        return object
    }

    /// Sends a request object and returns the response object, whether `ok` is true or false.
    public func roundTrip(_ request: JSONValue) async throws -> JSONObject {
        var writer = JSONWriter()
        writer.value(request)
        return try await roundTrip(line: writer.bytes)
    }

    /// Sends `{"op":op, ...}` built by `body` and returns the response if `ok` is true.
    /// - Throws: `ClientError.server` with the server's code when `ok` is false.
    private func call(_ op: String, _ body: (inout JSONWriter) -> Void = { _ in }) async throws -> JSONObject {
        var writer = JSONWriter()
        writer.raw("{\"op\":")
        writer.string(op)
        body(&writer)
        writer.raw(UInt8(ascii: "}"))
        let response = try await roundTrip(line: writer.bytes)
        guard case .bool(true) = response["ok"] else {
            guard case .object(let error) = response["error"], case .string(let code) = error["code"] else {
                throw ClientError.invalidResponse("ok is not true and there is no error")
            }
            let message: String = if case .string(let text) = error["message"] { text } else { "" }
            throw ClientError.server(code: code, message: message)
        }
        return response
    }

    private func decode<T>(_ body: () throws(ProtocolError) -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw ClientError.invalidResponse(error.message)
        }
    }

    // MARK: - Operations

    /// `ping`: checks the server answers.
    public func ping() async throws {
        _ = try await call("ping")
    }

    /// `hello`: what the server is and holds.
    public func hello() async throws -> ServerHello {
        let response = try await call("hello")
        return try decode { () throws(ProtocolError) in try ServerHello(json: response) }
    }

    /// `add`: stores one memory (a memory without a vector is embedded by the server). Returns
    /// its id.
    /// - Parameter model: The model that produced the vector, checked against the space's.
    @discardableResult
    public func add(_ memory: NewMemory, model: String? = nil) async throws -> String {
        let response = try await call("add") { writer in
            writer.raw(UInt8(ascii: ","))
            memory.writeFields(to: &writer)
            if let model {
                writer.field("model")
                writer.string(model)
            }
        }
        guard case .string(let id) = response["id"] else { throw ClientError.invalidResponse("add without id") }
        return id
    }

    /// `add_batch`: stores all of `memories` or none. Returns their ids in order.
    @discardableResult
    public func addBatch(_ memories: [NewMemory]) async throws -> [String] {
        try await addBatch(memories, ifAbsent: false).ids
    }

    /// `add_batch` with its options: with `ifAbsent`, memories whose id exists are skipped; with
    /// `base64Vectors`, vectors travel as base64 float32 (cheaper to encode and parse).
    /// - Returns: The ids stored and how many were skipped.
    public func addBatch(
        _ memories: [NewMemory], ifAbsent: Bool, base64Vectors: Bool = false, model: String? = nil
    ) async throws -> (ids: [String], skipped: Int) {
        let response = try await call("add_batch") { writer in
            if ifAbsent {
                writer.field("if_absent")
                writer.bool(true)
            }
            if let model {
                writer.field("model")
                writer.string(model)
            }
            writer.field("items")
            writer.array(count: memories.count) { writer, index in
                let memory = memories[index]
                writer.raw(UInt8(ascii: "{"))
                if base64Vectors, !memory.vector.isEmpty {
                    var fields = memory
                    fields.vector = []
                    fields.writeFields(to: &writer)
                    writer.field("vector")
                    writer.string(Base64.encode(memory.vector))
                } else {
                    memory.writeFields(to: &writer)
                }
                writer.raw(UInt8(ascii: "}"))
            }
        }
        let skipped = response["skipped"]?.integerValue.map { Int($0) } ?? 0
        guard case .array(let ids) = response["ids"] else { throw ClientError.invalidResponse("add_batch without ids") }
        let stored = try ids.map { value in
            guard case .string(let id) = value else { throw ClientError.invalidResponse("id is not a string") }
            return id
        }
        return (stored, skipped)
    }

    /// `search`: the closest memories of one user, best first.
    public func search(_ search: SearchRequest) async throws -> [ScoredMemory] {
        let response = try await call("search") { writer in
            writer.field("user")
            writer.string(search.user)
            writer.field("k")
            writer.int(Int64(search.k))
            if let query = search.query, search.vector.isEmpty {
                writer.field("query")
                writer.string(query)
            } else {
                // Base64 float32: a quarter of the text, and no float formatting or parsing.
                writer.field("vector")
                writer.string(Base64.encode(search.vector))
            }
            if let session = search.filter.session {
                writer.field("session")
                writer.string(session)
            }
            if let role = search.filter.role {
                writer.field("role")
                writer.string(role)
            }
            if let since = search.filter.since {
                writer.field("since")
                writer.int(since)
            }
            if let until = search.filter.until {
                writer.field("until")
                writer.int(until)
            }
            if let ef = search.ef {
                writer.field("ef")
                writer.int(Int64(ef))
            }
            if search.exact {
                writer.field("exact")
                writer.bool(true)
            }
        }
        guard case .array(let hits) = response["hits"] else { throw ClientError.invalidResponse("search without hits") }
        return try hits.map { hit in
            guard case .object(let object) = hit else { throw ClientError.invalidResponse("hit is not an object") }
            return try decode { () throws(ProtocolError) in try ScoredMemory(json: object) }
        }
    }

    /// `get`: one memory with its vector.
    /// - Throws: `ClientError.server` with code `not_found` when there is none.
    public func get(id: String) async throws -> Memory {
        let response = try await call("get") { writer in
            writer.field("id")
            writer.string(id)
        }
        guard case .object(let memory) = response["memory"] else {
            throw ClientError.invalidResponse("get without memory")
        }
        return try decode { () throws(ProtocolError) in try Memory(json: memory) }
    }

    /// `delete`: removes one memory.
    /// - Throws: `ClientError.server` with code `not_found` when there is none.
    public func delete(id: String) async throws {
        _ = try await call("delete") { writer in
            writer.field("id")
            writer.string(id)
        }
    }

    /// `forget`: removes every memory of a user. Returns how many there were.
    @discardableResult
    public func forget(user: String) async throws -> Int {
        let response = try await call("forget") { writer in
            writer.field("user")
            writer.string(user)
        }
        guard let count = response["deleted"]?.integerValue else {
            throw ClientError.invalidResponse("forget without count")
        }
        return Int(count)
    }

    /// `embed`: the server's embeddings of `texts`, in order.
    public func embed(_ texts: [String]) async throws -> [[Float]] {
        let response = try await call("embed") { writer in
            writer.field("texts")
            writer.value(.array(texts.map { .string($0) }))
        }
        guard case .array(let vectors) = response["vectors"] else {
            throw ClientError.invalidResponse("embed without vectors")
        }
        return try vectors.map { value in
            guard case .array(let numbers) = value else { throw ClientError.invalidResponse("vector is not an array") }
            return try numbers.map { number in
                guard let x = number.numberValue else {
                    throw ClientError.invalidResponse("vector holds a non-number")
                }
                return Float(x)
            }
        }
    }

    /// `stats`: counts and sizes.
    public func stats() async throws -> StoreStats {
        let response = try await call("stats")
        return try decode { () throws(ProtocolError) in try StoreStats(json: response) }
    }
}
