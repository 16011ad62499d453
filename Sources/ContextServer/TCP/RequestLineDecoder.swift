import NIOCore

/// The request framing, under NIO's `ByteToMessageHandler` (which gathers reads until a line is
/// whole and reclaims the bytes already handed on): splits a connection's byte stream at `\n` (a
/// `\r` before it is kept; JSON allows it as whitespace). A line, whole or not, may be
/// `maximumLineBytes` long. The storage the handler keeps between reads (the unfinished line,
/// in its buffer) counts against the server-wide budget of buffered input (`ConnectionLimits`),
/// so many slow senders of huge lines cannot exhaust memory together.
///
/// It throws a `Failure` (after handing on the lines before it); the connection handler answers
/// it and closes. An unfinished line when the client shuts its side is not a request.
struct RequestLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    /// Why the connection must be closed.
    enum Failure: Error {
        /// A line passed `maximumLineBytes`.
        case lineTooLong
        /// The server holds more buffered input than its budget allows.
        case overBudget
    }

    let limits: ConnectionLimits
    let maximumLineBytes: Int
    /// Bytes at the front of the buffer known to hold no newline.
    private var scanned = 0
    /// Bytes of storage counted in `limits`.
    private(set) var counted = 0

    init(limits: ConnectionLimits, maximumLineBytes: Int) {
        self.limits = limits
        self.maximumLineBytes = maximumLineBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        guard let newline = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            guard view.count <= maximumLineBytes else { throw Failure.lineTooLong }
            // What stays until the next read: its storage, not only its unread bytes.
            guard account(buffer.storageCapacity) else { throw Failure.overBudget }
            return .needMoreData
        }
        guard newline - view.startIndex <= maximumLineBytes else { throw Failure.lineTooLong }
        let line = buffer.readSlice(length: newline - view.startIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        scanned = 0
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        scanned = 0
        return .needMoreData
    }

    /// The connection is gone: what it held no longer counts.
    mutating func decoderRemoved(context: ChannelHandlerContext) {
        _ = account(0)
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
