import ContextProtocol
import Logging
import NIOCore
import Synchronization

/// What every connection together may make the server hold: open connections (in all, per
/// peer address, and not yet authenticated) and buffered request bytes (partial lines and
/// complete lines waiting their turn). Shared by all connections.
///
/// On a server with keys, connections that have not authenticated yet are at most half of
/// `maximumConnections`, and an eighth of that from one address: a client that opens
/// connections and never authenticates holds few slots, each until its deadline, and the other
/// half stays for clients with a key.
final class ConnectionLimits: Sendable {
    let maximumConnections: Int
    let maximumBufferedBytes: Int
    /// Connections one peer address may hold open.
    let maximumPerAddress: Int
    /// Connections waiting to authenticate, in all and from one address.
    let maximumUnauthenticated: Int
    let maximumUnauthenticatedPerAddress: Int
    /// Bytes of large answers written and not yet sent, all connections together (see
    /// `ConnectionHandler.trackedAnswerBytes`), and the most there may be before connections
    /// start no more requests.
    let maximumUnsentBytes: Int
    private let unsent = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)
    private let buffered = Atomic<Int>(0)
    /// Per peer address: connections open, and those of them waiting to authenticate.
    private let counts = Mutex<(byAddress: [String: (open: Int, waiting: Int)], waiting: Int)>(([:], 0))
    /// Failed `auth`s per peer address.
    let authFailures = AuthFailures()

    init(
        maximumConnections: Int, maximumBufferedBytes: Int, maximumPerAddress: Int? = nil,
        maximumUnsentBytes: Int = .max
    ) {
        self.maximumUnsentBytes = maximumUnsentBytes
        self.maximumConnections = maximumConnections
        self.maximumBufferedBytes = maximumBufferedBytes
        self.maximumPerAddress = maximumPerAddress ?? maximumConnections
        self.maximumUnauthenticated = max(1, maximumConnections / 2)
        self.maximumUnauthenticatedPerAddress = max(1, maximumConnections / 16)
    }

    /// Why a connection was not admitted.
    enum Refusal: Error {
        case total, address, unauthenticated, unauthenticatedFromAddress
    }

    /// Counts a new connection from `address` (waiting to authenticate when `needsKey`);
    /// nothing is counted when it is refused.
    func admit(address: String, needsKey: Bool) -> Refusal? {
        if connections.wrappingAdd(1, ordering: .relaxed).newValue > maximumConnections {
            connections.wrappingSubtract(1, ordering: .relaxed)
            return .total
        }
        let refusal = counts.withLock { counts -> Refusal? in
            var mine = counts.byAddress[address] ?? (0, 0)
            guard mine.open < maximumPerAddress else { return .address }
            if needsKey {
                guard counts.waiting < maximumUnauthenticated else { return .unauthenticated }
                guard mine.waiting < maximumUnauthenticatedPerAddress else { return .unauthenticatedFromAddress }
                mine.waiting += 1
                counts.waiting += 1
            }
            mine.open += 1
            counts.byAddress[address] = mine
            return nil
        }
        if refusal != nil { connections.wrappingSubtract(1, ordering: .relaxed) }
        return refusal
    }

    /// A connection from `address` authenticated: it no longer counts as waiting to.
    func authenticated(address: String) {
        counts.withLock { counts in
            counts.waiting -= 1
            counts.byAddress[address]?.waiting -= 1
        }
    }

    /// A connection from `address` closed.
    func release(address: String, authenticated: Bool) {
        connections.wrappingSubtract(1, ordering: .relaxed)
        counts.withLock { counts in
            guard var mine = counts.byAddress[address] else { return }
            mine.open -= 1
            if !authenticated {
                mine.waiting -= 1
                counts.waiting -= 1
            }
            counts.byAddress[address] = mine.open > 0 ? mine : nil
        }
    }

    /// The connections open now.
    var openConnections: Int { connections.load(ordering: .relaxed) }

    /// Counts `bytes` more of answers waiting to be sent; false (nothing counted) when they
    /// would pass the budget.
    func reserveUnsent(_ bytes: Int) -> Bool {
        if unsent.wrappingAdd(bytes, ordering: .relaxed).newValue > maximumUnsentBytes {
            unsent.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Removes (negative) bytes of answers that were sent.
    func unsent(_ delta: Int) { unsent.wrappingAdd(delta, ordering: .relaxed) }

    /// Adds (or, negative, removes) buffered request bytes; returns the new total.
    @discardableResult
    func buffer(_ delta: Int) -> Int { buffered.wrappingAdd(delta, ordering: .relaxed).newValue }
}

/// Failed authentications per peer address, as token buckets: `burst` failures at once, then
/// one per `1 / perSecond` seconds. An address out of tokens has its `auth`s refused
/// (`rate_limited`) without their secrets being tried, so guessing is slow from any address.
final class AuthFailures: Sendable {
    static let burst = 10.0
    static let perSecond = 0.2
    /// Addresses tracked at most; past it, those whose buckets refilled are let go.
    static let maximumAddresses = 100_000

    private let buckets = Mutex<[String: (tokens: Double, updated: UInt64)]>([:])

    /// Milliseconds until `address` may try again; nil when it may now.
    func wait(address: String, now: UInt64) -> Int64? {
        let tokens = buckets.withLock { Self.level($0[address], now: now) }
        guard tokens < 1 else { return nil }
        return Int64(((1 - tokens) / Self.perSecond * 1000).rounded(.up))
    }

    /// Counts a failure from `address`. Past `maximumAddresses`, the buckets that refilled are
    /// let go, and if that is not enough (failures from more addresses than that, all recent),
    /// all of them: memory stays bounded, at the price of forgetting.
    func failed(address: String, now: UInt64) {
        buckets.withLock { buckets in
            buckets[address] = (max(0, Self.level(buckets[address], now: now) - 1), now)
            if buckets.count > Self.maximumAddresses {
                buckets = buckets.filter { Self.level($0.value, now: now) < Self.burst }
                if buckets.count > Self.maximumAddresses { buckets.removeAll() }
            }
        }
    }

    /// A bucket's tokens at `now`, refilled since it was last touched (a new one is full).
    private static func level(_ bucket: (tokens: Double, updated: UInt64)?, now: UInt64) -> Double {
        guard let bucket else { return burst }
        return min(burst, bucket.tokens + Double(now &- bucket.updated) / 1e9 * perSecond)
    }
}

/// What the gate decided for one connection, read by its handler: where it comes from and
/// whether it still counts as unauthenticated. Made per connection, used on its event loop.
final class Admission {
    var address = ""
    var unauthenticated = false
}

/// First in every connection's pipeline: a connection beyond a limit of `ConnectionLimits` is
/// answered `overloaded` and closed before it can send anything. An admitted connection is
/// counted until it closes, and the gate leaves the pipeline, so its requests do not pass
/// through it.
final class ConnectionGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limits: ConnectionLimits
    private let needsKey: Bool
    private let admission: Admission

    init(limits: ConnectionLimits, needsKey: Bool, admission: Admission) {
        self.limits = limits
        self.needsKey = needsKey
        self.admission = admission
    }

    func channelActive(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "-"
        if let refusal = limits.admit(address: address, needsKey: needsKey) {
            let reason =
                switch refusal {
                case .total: "the server has \(limits.maximumConnections) connections open, its limit"
                case .address: "\(address) has \(limits.maximumPerAddress) connections open, the limit per address"
                case .unauthenticated:
                    "\(limits.maximumUnauthenticated) connections are waiting to authenticate, the limit"
                case .unauthenticatedFromAddress:
                    "\(address) has \(limits.maximumUnauthenticatedPerAddress) connections waiting to authenticate, the limit per address"
                }
            let bytes = Response.failure(rid: nil, ProtocolError(.overloaded, reason + "; closing"))
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        admission.address = address
        admission.unauthenticated = needsKey
        let (limits, admission) = (self.limits, NIOLoopBound(admission, eventLoop: context.eventLoop))
        context.channel.closeFuture.whenComplete { _ in
            limits.release(address: address, authenticated: !admission.value.unauthenticated)
        }
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Bytes a refused connection sends before it is closed are dropped.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
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
