import ContextProtocol
import Logging
import NIOCore
import Synchronization

/// What every connection together may make the server hold: open connections and buffered
/// request bytes (partial lines and complete lines waiting their turn). Shared by all
/// connections; counts are atomics, so no connection waits on another.
final class ConnectionLimits: Sendable {
    let maximumConnections: Int
    let maximumBufferedBytes: Int
    private let connections = Atomic<Int>(0)
    private let buffered = Atomic<Int>(0)

    init(maximumConnections: Int, maximumBufferedBytes: Int) {
        self.maximumConnections = maximumConnections
        self.maximumBufferedBytes = maximumBufferedBytes
    }

    /// Counts a new connection; false (and nothing counted) when the limit is reached.
    func admitConnection() -> Bool {
        if connections.wrappingAdd(1, ordering: .relaxed).newValue > maximumConnections {
            connections.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func releaseConnection() { connections.wrappingSubtract(1, ordering: .relaxed) }

    /// The connections open now.
    var openConnections: Int { connections.load(ordering: .relaxed) }

    /// Adds (or, negative, removes) buffered request bytes; returns the new total.
    @discardableResult
    func buffer(_ delta: Int) -> Int { buffered.wrappingAdd(delta, ordering: .relaxed).newValue }

}

/// First in every connection's pipeline: a connection beyond `maximumConnections` is answered
/// `overloaded` and closed before it can send anything. An admitted connection is counted until
/// it closes, and the gate leaves the pipeline, so its requests do not pass through it.
final class ConnectionGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limits: ConnectionLimits

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func channelActive(context: ChannelHandlerContext) {
        guard limits.admitConnection() else {
            let bytes = Response.failure(
                rid: nil,
                ProtocolError(
                    .overloaded, "the server has \(limits.maximumConnections) connections open, its limit; closing"))
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        let limits = self.limits
        context.channel.closeFuture.whenComplete { _ in limits.releaseConnection() }
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Bytes a refused connection sends before it is closed are dropped.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// The request framing: splits a connection's byte stream at `\n` (a `\r` before it is kept;
/// JSON allows it as whitespace). The bytes of an unfinished line wait for the next read, at
/// most `maximumLineBytes` of them, and count against the server-wide budget of buffered input,
/// so many slow senders of huge lines cannot exhaust memory together.
///
/// What the framer holds between reads is the unfinished line alone, in a buffer of its own:
/// the lines before it have been handed on (as slices of the read, which keep its storage only
/// while they wait in the backlog, itself bounded), so a connection whose every read ends
/// mid-line holds one line, not everything it ever sent. It is counted by the storage it keeps
/// (capacity), not by the bytes it has yet to read.
struct LineFramer {
    /// Why the connection must be closed.
    enum Failure {
        /// An unfinished line passed `maximumLineBytes`.
        case lineTooLong
        /// The server holds more buffered input than its budget allows.
        case overBudget
    }

    let limits: ConnectionLimits
    let maximumLineBytes: Int
    /// Bytes read and not yet split off as lines: an unfinished line, then the latest read.
    private var bytes: ByteBuffer?
    /// Bytes of `bytes` known to hold no newline.
    private var scanned = 0
    /// Bytes held between reads, counted in `limits`.
    private var counted = 0
    private let allocator = ByteBufferAllocator()

    init(limits: ConnectionLimits, maximumLineBytes: Int) {
        self.limits = limits
        self.maximumLineBytes = maximumLineBytes
    }

    /// The bytes of storage the framer keeps between reads (what it counts against the budget).
    var heldBytes: Int { counted }

    /// Takes the bytes of one read; `nextLine()` then splits them. (Each call is short, so that
    /// what a line sets off, closing the connection included, may call the framer again.)
    mutating func append(_ read: ByteBuffer) {
        if bytes == nil {
            bytes = read
            scanned = 0
        } else {
            bytes!.writeImmutableBuffer(read)
        }
    }

    /// The next whole line (a slice of the read, or a copy when it began in an earlier one).
    mutating func nextLine() -> ByteBuffer? {
        guard let view = bytes?.readableBytesView else { return nil }
        guard let newline = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            return nil
        }
        let line = bytes!.readSlice(length: newline - view.startIndex)!
        bytes!.moveReaderIndex(forwardBy: 1)
        scanned = 0
        return line
    }

    /// After a read's lines: keeps the unfinished one for the next read, within the limits.
    mutating func endOfRead() -> Failure? {
        guard var held = bytes, held.readableBytes > 0 else {
            bytes = nil
            _ = account(0)
            return nil
        }
        let unfinished = held.readableBytes
        if unfinished > maximumLineBytes { return .lineTooLong }
        // Lines were split off in front of it, or the read's storage is far larger than the
        // tail: move the tail into storage of its own size. The copy is at most one read's
        // bytes, since a line ended in this read.
        if held.readerIndex > 0 || held.capacity > 2 * unfinished + 4096 {
            bytes = nil
            var tail = allocator.buffer(capacity: unfinished)
            tail.writeBuffer(&held)
            bytes = tail
        }
        return account(bytes!.capacity) ? nil : .overBudget
    }

    /// The connection is gone: what it held no longer counts.
    mutating func release() {
        _ = account(0)
        bytes = nil
    }

    /// Sets this connection's counted bytes to `bytes`; false when growing passes the budget.
    private mutating func account(_ bytes: Int) -> Bool {
        let delta = bytes - counted
        guard delta != 0 else { return true }
        let total = limits.buffer(delta)
        counted = bytes
        return delta < 0 || total <= limits.maximumBufferedBytes
    }
}

/// On the listening channel: when accepting fails (out of file descriptors, typically), stop
/// accepting for `delay`, then try again, and log once per episode. NIO keeps a failed accept's
/// read pending, so the socket stays registered and its `AcceptBackoffHandler` alone does not
/// stop the event loop from spinning on it; switching `autoRead` off unregisters the socket.
final class AcceptBackoff: ChannelInboundHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel

    private let delay: TimeAmount
    private let logger: Logger
    private var paused = false
    private var failing = false

    init(delay: TimeAmount, logger: Logger) {
        self.delay = delay
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if failing {
            failing = false
            logger.info("accepting connections again")
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard error is IOError else { return context.fireErrorCaught(error) }
        if !failing {
            failing = true
            logger.error(
                "cannot accept connections; retrying every \(delay.nanoseconds / 1_000_000) ms",
                metadata: ["error": "\(error)"])
        }
        guard !paused, let options = context.channel.syncOptions else { return }
        paused = true
        try? options.setOption(ChannelOptions.autoRead, value: false)
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        loop.scheduleTask(in: delay) {
            let (handler, context) = bound.value
            handler.paused = false
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        }
    }
}
