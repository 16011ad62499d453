import ContextProtocol
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

/// Serves one connection: one request line in, one response line out, in request order.
///
/// Reads (`ping`, `search`, `get`, ...) run on the connection's event loop, so searches on
/// different connections run in parallel on all cores. Writes go to the single writer thread,
/// which serializes them and keeps blocking disk I/O off the event loops. Requests with text to
/// embed first run the model on the compute pool (one thread per core). A request that arrives
/// while an earlier one is still being answered waits for it, which keeps pipelined responses in
/// order. When too many requests are waiting the handler stops reading from the socket, so a
/// client that floods the server is slowed down rather than buffered without bound.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let executor: RequestExecutor
    private let writerPool: NIOThreadPool
    private let computePool: NIOThreadPool
    private let writeQueue: WriteQueue
    private let maximumLineBytes: Int
    private let maximumPending: Int

    /// Requests accepted and not yet answered.
    private var pending = 0
    /// Completes once the most recently queued response has been written.
    private var tail: EventLoopFuture<Void>?
    private var quiescing = false
    private var readHeldBack = false

    init(
        executor: RequestExecutor, writerPool: NIOThreadPool, computePool: NIOThreadPool, writeQueue: WriteQueue,
        maximumLineBytes: Int, maximumPending: Int
    ) {
        self.executor = executor
        self.writerPool = writerPool
        self.computePool = computePool
        self.writeQueue = writeQueue
        self.maximumLineBytes = maximumLineBytes
        self.maximumPending = maximumPending
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        guard line.readableBytes <= maximumLineBytes else { return rejectLongLine(context: context) }
        // An empty line (a bare newline, e.g. a keep-alive from a terminal) is not a request.
        if line.readableBytes == 0 || line.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }

        var decoded = executor.decode(line)
        if quiescing, case .request(_, let rid) = decoded {
            decoded = .failure(Response.failure(rid: rid, ProtocolError(.shuttingDown, "the server is shutting down")))
        }
        if case .request(let request, let rid) = decoded, request.isWrite, !writeQueue.tryEnter() {
            decoded = .failure(Response.failure(rid: rid, ProtocolError(.busy, "too many writes queued; retry later")))
        }

        switch decoded {
        case .failure(let bytes) where pending == 0:
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        case .request(let request, let rid) where pending == 0 && !request.isWrite && !request.needsEmbedding:
            let bytes = executor.execute(request, rid: rid)
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        default:
            enqueue(decoded, context: context)
        }
    }

    /// Queues a response behind the ones still being produced.
    private func enqueue(_ decoded: RequestExecutor.Decoded, context: ChannelHandlerContext) {
        pending += 1
        let loop = context.eventLoop
        let previous = tail ?? loop.makeSucceededVoidFuture()
        let executor = self.executor
        let response: EventLoopFuture<[UInt8]>
        switch decoded {
        case .failure(let bytes):
            response = previous.map { bytes }
        case .request(let request, let rid) where request.isWrite:
            let (writerPool, computePool, writeQueue) = (self.writerPool, self.computePool, self.writeQueue)
            let prepared: EventLoopFuture<Result<Request, ProtocolError>> =
                request.needsEmbedding
                ? previous.flatMap {
                    computePool.runIfActive(eventLoop: loop) {
                        Result { () throws(ProtocolError) in try executor.embed(request) }
                    }
                } : previous.map { .success(request) }
            response = prepared.flatMap { prepared in
                switch prepared {
                case .success(let request):
                    writerPool.runIfActive(eventLoop: loop) { executor.execute(request, rid: rid) }
                case .failure(let error):
                    loop.makeSucceededFuture(Response.failure(rid: rid, error))
                }
            }.always { _ in writeQueue.leave() }
        case .request(let request, let rid) where request.needsEmbedding:
            let computePool = self.computePool
            response = previous.flatMap {
                computePool.runIfActive(eventLoop: loop) { executor.execute(request, rid: rid) }
            }
        case .request(let request, let rid):
            response = previous.map { executor.execute(request, rid: rid) }
        }
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        tail = response.map { bytes in
            let (handler, context) = bound.value
            context.writeAndFlush(handler.wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            handler.finishedOne(context: context)
        }.recover { _ in
            // The writer pool is gone: the server is stopping.
            let (handler, context) = bound.value
            let bytes = Response.failure(rid: nil, ProtocolError(.shuttingDown, "the server is shutting down"))
            context.writeAndFlush(handler.wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            handler.finishedOne(context: context)
        }
    }

    private func finishedOne(context: ChannelHandlerContext) {
        pending -= 1
        if pending == 0 {
            tail = nil
            if quiescing { context.close(promise: nil) }
        }
        if pending < maximumPending, readHeldBack {
            readHeldBack = false
            context.read()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func read(context: ChannelHandlerContext) {
        // Backpressure: no more bytes from this client until its queue drains.
        if pending >= maximumPending {
            readHeldBack = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if pending == 0 { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is ByteToMessageDecoderError.PayloadTooLargeError {
            return rejectLongLine(context: context)
        }
        // A half-sent last line (NIOExtrasErrors.LeftOverBytesError), a reset connection, ...:
        // nothing to answer, and nothing that concerns other clients.
        context.close(promise: nil)
    }

    /// Answers `line_too_long` (after anything still pending) and closes the connection.
    private func rejectLongLine(context: ChannelHandlerContext) {
        let bytes = Response.failure(
            rid: nil, ProtocolError(.lineTooLong, "request line longer than \(maximumLineBytes) bytes; closing"))
        let loop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: loop)
        (tail ?? loop.makeSucceededVoidFuture()).whenComplete { _ in
            let context = bound.value
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
                bound.value.close(promise: nil)
            }
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
