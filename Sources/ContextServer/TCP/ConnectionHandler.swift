import ContextModel
import ContextProtocol
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

/// The line protocol's transport: one request line in, one response line out, in request
/// order. What a request does, and where it runs, is the `Dispatcher`'s; this handler keeps the
/// connection's order, backpressure, authentication deadline and shutdown.
///
/// A connection runs one request at a time; the lines behind it wait in `backlog`. A request
/// the dispatcher answers on the spot (reads of the in-memory indexes) is written at once; one
/// that runs on a pool (writes, the model, SQL) holds the connection's turn until its answer
/// comes back to the event loop.
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
    private let dispatcher: Dispatcher
    private let limits: ConnectionLimits
    private let admission: Admission
    private let authenticationTimeout: TimeAmount
    /// Closes the connection unless it authenticates in time (on a server with keys).
    private var authenticationDeadline: Scheduled<Void>?
    /// Failed `auth`s on this connection; at `maximumFailedAuthentications` it is closed.
    private var failedAuthentications = 0
    static let maximumFailedAuthentications = 3
    private let maximumLineBytes: Int
    /// Answers this long or longer count against the server's budget of unsent answers until
    /// they are sent (a promise each; shorter ones are bounded by the high water mark).
    static let trackedAnswerBytes = 64 * 1024
    /// How long a long answer may wait to be sent before the connection is closed: a client
    /// that does not read must not hold the budget of unsent answers.
    static let unsentAnswerTimeout = TimeAmount.seconds(30)
    private let maximumPending: Int
    private let shutdownGrace: TimeAmount

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
        context: ServerContext, dispatcher: Dispatcher, limits: ConnectionLimits, admission: Admission,
        authenticationTimeout: TimeAmount, maximumLineBytes: Int, maximumPending: Int, shutdownGrace: TimeAmount
    ) {
        self.admission = admission
        self.authenticationTimeout = authenticationTimeout
        self.dispatcher = dispatcher
        // A session of its own: what `auth` sets belongs to this connection alone.
        var context = context
        context.session = ConnectionSession()
        self.context = context
        self.limits = limits
        self.maximumLineBytes = maximumLineBytes
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
                handler.dispatcher.requestLog.logger.info(
                    "closing a connection that proved no key in time",
                    metadata: ["address": "\(handler.admission.address)", "seconds": "\(seconds)"])
                handler.reject(
                    ProtocolError(.unauthorized, "no key was proved within \(seconds) s of connecting; closing"),
                    context: context)
            }
        }
        context.fireChannelActive()
    }

    /// One whole line from `RequestLineDecoder`.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, !draining else { return }
        receive(unwrapInboundIn(data), context: context)
    }

    /// One request line: queued, and started when nothing is ahead of it.
    private func receive(_ line: ByteBuffer, context: ChannelHandlerContext) {
        guard !closing else { return }
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
        switch error as? RequestLineDecoder.Failure {
        case .lineTooLong: reject(lineTooLong, context: context)
        case .overBudget:
            reject(
                ProtocolError(.overloaded, "the server holds too many bytes of unfinished request lines; closing"),
                context: context)
        case nil:
            // A reset connection, ...: nothing to answer, and nothing that concerns other clients.
            context.close(promise: nil)
        }
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

    /// Runs one request through the dispatcher: answered on the spot, or with `inFlight` set
    /// until its answer comes back.
    private func start(_ line: ByteBuffer, refuse: Bool, context: ChannelHandlerContext) {
        let (op, answer) = dispatcher.dispatch(
            line, in: self.context, from: admission.address, stopping: refuse, on: context.eventLoop)
        switch answer {
        case .now(let bytes):
            write(bytes, context: context)
            if op == Operations.Auth.name { authenticationAnswered(bytes, context: context) }
        case .later(let answer):
            inFlight = true
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            answer.whenSuccess { bytes in
                let (handler, context) = bound.value
                handler.inFlight = false
                guard context.channel.isActive else { return }
                handler.write(bytes, context: context)
                handler.pump(context: context)
            }
        }
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
        dispatcher.requestLog.logger.warning(
            "authentication failed",
            metadata: ["address": "\(admission.address)", "failures": "\(failedAuthentications)"])
        if failedAuthentications >= Self.maximumFailedAuthentications {
            reject(
                ProtocolError(.unauthorized, "\(failedAuthentications) failed authentications; closing"),
                context: context)
        }
    }

    private func response(_ bytes: [UInt8]) -> ByteBuffer {
        allocator.buffer(bytes: bytes)
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
