import ContextModel
import ContextProtocol
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

/// Serves one connection: one request line in, one response line out, in request order.
///
/// A connection runs one request at a time; the lines behind it wait in `backlog`. Where a
/// request runs is its op's `Placement` (see `OperationTable`): reads (`ping`, `search`, `get`,
/// ...) on the connection's event loop, so searches on different connections run in parallel on
/// all cores; writes on the single writer thread, which serializes them and keeps blocking disk
/// I/O off the event loops. Requests with text to embed first run the model on the compute pool
/// (one thread per core).
///
/// Backpressure, both ways: the handler stops reading from the socket (switches the channel's
/// `autoRead` off) while `maximumPending` lines (or a full line's worth of bytes) wait or the
/// client does not take its answers, and it starts no request while the channel is not writable
/// (its unsent answers passed the high water mark), so a client that never reads its answers
/// holds at most that mark plus one answer, not an answer per request it sent.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: ServerContext
    private let writerPool: NIOThreadPool
    private let computePool: NIOThreadPool
    private let writeQueue: WriteQueue
    private let limits: ConnectionLimits
    private let admission: Admission
    private let authenticationTimeout: TimeAmount
    /// Closes the connection unless it authenticates in time (on a server with keys).
    private var authenticationDeadline: Scheduled<Void>?
    /// Failed `auth`s on this connection; at `maximumFailedAuthentications` it is closed.
    private var failedAuthentications = 0
    static let maximumFailedAuthentications = 3
    private let maximumLineBytes: Int
    private let maximumAnswerBytes: Int
    /// Answers this long or longer count against the server's budget of unsent answers until
    /// they are sent (a promise each; shorter ones are bounded by the high water mark).
    static let trackedAnswerBytes = 64 * 1024
    /// How long a long answer may wait to be sent before the connection is closed: a client
    /// that does not read must not hold the budget of unsent answers.
    static let unsentAnswerTimeout = TimeAmount.seconds(30)
    private let maximumPending: Int
    private let shutdownGrace: TimeAmount
    private let requestLog: RequestLog

    private enum Item {
        case line(ByteBuffer)
        /// Answer this error, then close the connection.
        case reject(ProtocolError)
    }

    /// Lines received and not yet started, in order.
    private var backlog = CircularBuffer<Item>()
    private var backlogBytes = 0
    /// A request is being answered off the event loop.
    private var inFlight = false
    /// Whether the channel reads by itself (`autoRead`), as the handler last set it.
    private var reading = true
    /// The channel's writability as its last `channelWritabilityChanged` told: the client takes
    /// its answers. Kept here, so a request does not ask the channel.
    private var writable = true
    private var allocator = ByteBufferAllocator()
    private var framer: LineFramer
    private var quiescing = false
    /// Lines that were in the backlog when quiescing began: received before it, so answered.
    private var receivedBeforeQuiescing = 0
    private var closing = false
    /// The client shut down its sending side: its lines are answered, then the connection closes.
    private var inputClosed = false
    /// The answers are all sent and the sending side shut down; what the client still sends is
    /// read and dropped until it closes, so the close never resets answers it has not read.
    private var draining = false

    init(
        context: ServerContext, writerPool: NIOThreadPool, computePool: NIOThreadPool, writeQueue: WriteQueue,
        limits: ConnectionLimits, admission: Admission, authenticationTimeout: TimeAmount, maximumAnswerBytes: Int,
        maximumLineBytes: Int, maximumPending: Int, shutdownGrace: TimeAmount, requestLog: RequestLog
    ) {
        self.maximumAnswerBytes = maximumAnswerBytes
        self.admission = admission
        self.authenticationTimeout = authenticationTimeout
        self.requestLog = requestLog
        // A session of its own: what `auth` sets belongs to this connection alone.
        var context = context
        context.session = ConnectionSession()
        self.context = context
        self.writerPool = writerPool
        self.computePool = computePool
        self.writeQueue = writeQueue
        self.limits = limits
        self.maximumLineBytes = maximumLineBytes
        self.framer = LineFramer(limits: limits, maximumLineBytes: maximumLineBytes)
        self.maximumPending = maximumPending
        self.shutdownGrace = shutdownGrace
    }

    func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
        writable = context.channel.isWritable
    }

    func channelActive(context: ChannelHandlerContext) {
        if admission.unauthenticated {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let seconds = authenticationTimeout.nanoseconds / 1_000_000_000
            authenticationDeadline = context.eventLoop.scheduleTask(in: authenticationTimeout) {
                let (handler, context) = bound.value
                guard handler.admission.unauthenticated else { return }
                handler.requestLog.logger.info(
                    "closing a connection that proved no key in time",
                    metadata: ["address": "\(handler.admission.address)", "seconds": "\(seconds)"])
                handler.reject(
                    ProtocolError(.unauthorized, "no key was proved within \(seconds) s of connecting; closing"),
                    context: context)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, !draining else { return }
        framer.append(unwrapInboundIn(data))
        while !closing, let line = framer.nextLine() { receive(line, context: context) }
        switch framer.endOfRead() {
        case nil: break
        case .lineTooLong: reject(lineTooLong, context: context)
        case .overBudget:
            reject(
                ProtocolError(.overloaded, "the server holds too many bytes of unfinished request lines; closing"),
                context: context)
        }
    }

    /// One request line: queued, and started when nothing is ahead of it.
    private func receive(_ line: ByteBuffer, context: ChannelHandlerContext) {
        guard !closing else { return }
        guard line.readableBytes <= maximumLineBytes else { return reject(lineTooLong, context: context) }
        // An empty line (a bare newline, e.g. a keep-alive from a terminal) is not a request.
        if line.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
        // A line that must wait is a slice of its read and would keep all of that read's storage
        // alive while it waits: it waits in a copy of its own, so `backlogBytes` is what it holds.
        let waits = inFlight || !writable || !backlog.isEmpty
        backlog.append(.line(waits ? allocator.buffer(buffer: line) : line))
        backlogBytes += line.readableBytes
        limits.buffer(line.readableBytes)
        // The answers go out together at `channelReadComplete`: one write for all the lines of a read.
        pump(context: context, flush: false)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable { pump(context: context) } else { adjustReading(context) }
        context.fireChannelWritabilityChanged()
    }

    /// Whether to take more bytes from the socket: not while enough lines wait, nor while the
    /// client is not taking its answers.
    private var mayRead: Bool {
        backlog.count < maximumPending && backlogBytes < maximumLineBytes && writable
    }

    /// Stops reading from the socket while the handler may not, and starts again when it may.
    private func adjustReading(_ context: ChannelHandlerContext) {
        let wanted = draining || (mayRead && !closing)
        guard wanted != reading, let options = context.channel.syncOptions else { return }
        reading = wanted
        try? options.setOption(ChannelOptions.autoRead, value: wanted)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        authenticationDeadline?.cancel()
        framer.release()
        limits.buffer(-backlogBytes)
        backlogBytes = 0
        backlog.removeAll()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Idle: nothing read for the timeout; a connection still being answered stays.
            if !inFlight, backlog.isEmpty { context.close(promise: nil) }
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            // An unfinished last line is not a request.
            if draining { return context.close(promise: nil) }
            return pump(context: context)
        }
        guard event is ChannelShouldQuiesceEvent else { return context.fireUserInboundEventTriggered(event) }
        quiescing = true
        receivedBeforeQuiescing = backlog.count
        // A client that does not read its answers must not hold the server open.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: shutdownGrace) { channel.close(promise: nil) }
        pump(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A reset connection, ...: nothing to answer, and nothing that concerns other clients.
        context.close(promise: nil)
    }

    private var lineTooLong: ProtocolError {
        ProtocolError(.lineTooLong, "request line longer than \(maximumLineBytes) bytes; closing")
    }

    /// Answers `error` after everything received before it, then closes the connection.
    private func reject(_ error: ProtocolError, context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        backlog.append(.reject(error))
        pump(context: context)
    }

    /// Starts what waits, in order, while nothing is in flight and the client takes its answers;
    /// then sends the answers written (unless `flush` is false: the caller sends them) and reads
    /// again if it may.
    private func pump(context: ChannelHandlerContext, flush: Bool = true) {
        while !inFlight, writable, let item = backlog.popFirst() {
            switch item {
            case .reject(let error):
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(response(Response.failure(rid: nil, error))))
                    .whenComplete { _ in channel.close(promise: nil) }
                return
            case .line(let line):
                backlogBytes -= line.readableBytes
                limits.buffer(-line.readableBytes)
                let answered = receivedBeforeQuiescing > 0
                if answered { receivedBeforeQuiescing -= 1 }
                start(line, refuse: quiescing && !answered, context: context)
            }
        }
        if flush { context.flush() }
        if quiescing || inputClosed, !inFlight, backlog.isEmpty {
            finish(context)
            return
        }
        adjustReading(context)
    }

    /// Every answer is written: shuts the sending side (the client reads them all, then end of
    /// stream), and closes once the client has closed its side too. Closing at once while
    /// unread bytes from the client sit in the socket would reset the connection, and a reset
    /// can discard answers the client has not read yet.
    private func finish(_ context: ChannelHandlerContext) {
        guard !draining else { return }
        context.flush()
        if inputClosed { return context.close(promise: nil) }
        draining = true
        context.close(mode: .output, promise: nil)
        adjustReading(context)
        // A client that keeps its side open is closed after a while: it has had its answers.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: Self.drainTime) { channel.close(promise: nil) }
    }

    /// How long a connection whose answers are all sent may keep its side open.
    static let drainTime = TimeAmount.seconds(1)

    /// Runs one request: on the spot when it is a read that needs no model, else off the event
    /// loop, with `inFlight` set until its answer is written.
    private func start(_ line: ByteBuffer, refuse: Bool, context: ChannelHandlerContext) {
        let began = NIODeadline.now()
        let (call, descriptor, rid): (Call, OperationDescriptor, JSONValue?)
        switch ServerContext.decode(line) {
        case .failure(let bytes):
            // "-": not even an op to count it under.
            return answerRefused("-", bytes, context: context)
        case .call(let decodedCall, let decodedDescriptor, let decodedRid):
            (call, descriptor, rid) = (decodedCall, decodedDescriptor, decodedRid)
        }
        if let refusal = refusal(call, descriptor, shuttingDown: refuse, now: began) {
            return answerRefused(descriptor.name, Response.failure(rid: rid, refusal), context: context)
        }
        if descriptor.placement == .eventLoop, !call.needsComputePool {
            let bytes = bounded(call.run(self.context, rid), rid: rid)
            finished(descriptor.name, rid: rid, since: began, answer: bytes)
            write(bytes, context: context)
            if descriptor.name == Operations.Auth.name { authenticationAnswered(bytes, context: context) }
            return
        }
        let loop = context.eventLoop
        let server = self.context
        let answer: EventLoopFuture<[UInt8]>
        switch descriptor.placement {
        case .eventLoop, .computePool:
            // The model's work and the op's, both on the pool.
            answer = computePool.runIfActive(eventLoop: loop) { call.run(server, rid) }
        case .writer:
            let (writerPool, writeQueue) = (self.writerPool, self.writeQueue)
            // The model runs on the compute pool first, so the writer thread never waits on it.
            let prepared: EventLoopFuture<Result<Call, ProtocolError>> =
                call.needsComputePool
                ? computePool.runIfActive(eventLoop: loop) {
                    Result { () throws(ProtocolError) in try call.embedded(server) }
                } : loop.makeSucceededFuture(.success(call))
            answer = prepared.flatMap { prepared in
                switch prepared {
                case .success(let call):
                    writerPool.runIfActive(eventLoop: loop) { call.run(server, rid) }
                case .failure(let error):
                    loop.makeSucceededFuture(Response.failure(rid: rid, error))
                }
            }.always { _ in writeQueue.leave() }
        }
        inFlight = true
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        answer.whenComplete { result in
            let (handler, context) = bound.value
            handler.inFlight = false
            guard context.channel.isActive else { return }
            // A failure means the pools are gone: the server is stopping.
            let bytes = handler.bounded(
                (try? result.get())
                    ?? Response.failure(rid: nil, ProtocolError(.shuttingDown, "the server is shutting down")), rid: rid
            )
            handler.finished(descriptor.name, rid: rid, since: began, answer: bytes)
            handler.write(bytes, context: context)
            handler.pump(context: context)
        }
    }

    /// Why a decoded request may not run now: the server is stopping, its key may not, or the
    /// writer's queue is full (else it takes a place there).
    private func refusal(
        _ call: Call, _ descriptor: OperationDescriptor, shuttingDown: Bool, now: NIODeadline
    ) -> ProtocolError? {
        if shuttingDown { return ProtocolError(.shuttingDown, "the server is shutting down") }
        if descriptor.name == Operations.Auth.name, context.keys != nil,
            let wait = limits.authFailures.wait(address: admission.address, now: now.uptimeNanoseconds)
        {
            return ProtocolError(
                .rateLimited, "too many failed authentications from \(admission.address); retry in \(wait) ms",
                details: ["retry_after_ms": wait])
        }
        if let denied = context.denial(
            descriptor.access, users: call.users, cost: call.cost, now: now.uptimeNanoseconds)
        {
            return denied
        }
        if descriptor.writes, !writeQueue.tryEnter() {
            return ProtocolError(.busy, "too many writes queued; retry later")
        }
        return nil
    }

    /// After an `auth`: a connection that proved a key no longer counts as waiting to; a failure
    /// is logged and counted against the connection and its address.
    private func authenticationAnswered(_ answer: [UInt8], context: ChannelHandlerContext) {
        guard ServerMetrics.outcome(answer) == ErrorCode.unauthorized.rawValue else {
            if admission.unauthenticated, self.context.session.key != nil {
                admission.unauthenticated = false
                limits.authenticated(address: admission.address)
                authenticationDeadline?.cancel()
            }
            return
        }
        guard self.context.keys != nil else { return }
        failedAuthentications += 1
        limits.authFailures.failed(address: admission.address, now: NIODeadline.now().uptimeNanoseconds)
        requestLog.logger.warning(
            "authentication failed",
            metadata: ["address": "\(admission.address)", "failures": "\(failedAuthentications)"])
        if failedAuthentications >= Self.maximumFailedAuthentications {
            reject(
                ProtocolError(.unauthorized, "\(failedAuthentications) failed authentications; closing"),
                context: context)
        }
    }

    /// Sends the error line of a request that did not run, counted under `op`.
    private func answerRefused(_ op: String, _ bytes: [UInt8], context: ChannelHandlerContext) {
        self.context.metrics.finished(op, outcome: ServerMetrics.outcome(bytes), nanoseconds: nil)
        context.write(wrapOutboundOut(response(bytes)), promise: nil)
    }

    /// Counts a request that ran, and logs it when it was slow.
    private func finished(_ op: String, rid: JSONValue?, since began: NIODeadline, answer: [UInt8]) {
        let took = NIODeadline.now() - began
        let outcome = ServerMetrics.outcome(answer)
        context.metrics.finished(op, outcome: outcome, nanoseconds: took.nanoseconds)
        requestLog.note(op, rid: rid, key: context.session.key, took: took, outcome: outcome)
    }

    private func response(_ bytes: [UInt8]) -> ByteBuffer {
        allocator.buffer(bytes: bytes)
    }

    /// The answer, or `too_large` in its place when it is longer than `maximumAnswerBytes`.
    private func bounded(_ bytes: [UInt8], rid: JSONValue?) -> [UInt8] {
        guard bytes.count > maximumAnswerBytes else { return bytes }
        return Response.failure(
            rid: rid,
            ProtocolError(
                .tooLarge,
                "the answer would be \(bytes.count) bytes, more than \(maximumAnswerBytes); ask for fewer memories, without vectors, or a page at a time"
            ))
    }

    /// Writes an answer line. A long one counts against the server's budget of unsent answers
    /// until it is sent: past the budget it is answered `busy` instead (the request was a read;
    /// nothing is lost), and a connection that leaves one unsent for `unsentAnswerTimeout` is
    /// closed.
    private func write(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard bytes.count >= Self.trackedAnswerBytes else {
            return context.write(wrapOutboundOut(response(bytes)), promise: nil)
        }
        let (limits, count) = (self.limits, bytes.count)
        guard limits.reserveUnsent(count) else {
            let busy = ProtocolError(
                .busy, "the server holds too many answers its clients have not read; retry later")
            return context.write(wrapOutboundOut(response(Response.failure(rid: nil, busy))), promise: nil)
        }
        let channel = context.channel
        let stuck = context.eventLoop.scheduleTask(in: Self.unsentAnswerTimeout) { channel.close(promise: nil) }
        let sent = context.eventLoop.makePromise(of: Void.self)
        sent.futureResult.whenComplete { _ in
            stuck.cancel()
            limits.unsent(-count)
        }
        context.write(wrapOutboundOut(response(bytes)), promise: sent)
    }
}

/// Logs each request that ran, with its op, `rid`, key name (never a secret), time and outcome:
/// a warning when it took longer than `slowThreshold`, an error when the database failed, a
/// debug line otherwise (built only when the logger's level lets it through).
struct RequestLog: Sendable {
    let slowThreshold: TimeAmount?
    let logger: Logger

    func note(_ op: String, rid: JSONValue?, key: String?, took: TimeAmount, outcome: String) {
        func metadata() -> Logger.Metadata {
            [
                "op": "\(op)", "rid": "\(rid.map { JSONWriter.serialize($0) } ?? "-")", "key": "\(key ?? "-")",
                "ms": "\(Double(took.nanoseconds / 1000) / 1000)", "answer": "\(outcome == "ok" ? "ok" : "error")",
                "outcome": "\(outcome)",
            ]
        }
        if let slowThreshold, took >= slowThreshold {
            logger.warning("slow request", metadata: metadata())
        } else if outcome == ErrorCode.storageError.rawValue {
            logger.error("request failed", metadata: metadata())
        } else {
            logger.debug("request", metadata: metadata())
        }
    }
}

/// Counts writes queued for the writer thread across all connections, to answer `busy` past a
/// limit rather than queue without bound.
final class WriteQueue: Sendable {
    private let queued = Atomic<Int>(0)
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a place in the queue; false when it is full.
    func tryEnter() -> Bool {
        let now = queued.wrappingAdd(1, ordering: .relaxed).newValue
        if now > limit {
            queued.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func leave() {
        queued.wrappingSubtract(1, ordering: .relaxed)
    }
}
