import ContextCluster
import ContextModel
import ContextProtocol
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Between the front doors and the ops: every request of every transport passes through here.
/// It decodes the request (`OperationTable`), admits it (the server is not stopping; the key may
/// run the op on its users at its rate; failed authentications from the address are not over
/// their limit; the writer's queue has room), runs it where its op's placement says (the model
/// first, on the compute pool, when it has text to embed; the result cache in `Call.run`),
/// bounds its answer, and counts and logs it. It keeps no state of a connection: a transport
/// gives it the request's bytes and the `ServerContext` of its session, and writes what it
/// answers.
final class Dispatcher: Sendable {
    let writerPool: NIOThreadPool
    let computePool: NIOThreadPool
    let writeQueue: WriteQueue
    let authFailures: AuthFailures
    let requestLog: RequestLog
    let maximumAnswerBytes: Int
    /// On a cluster node: where requests about ranges it does not serve go.
    let forwarder: Forwarder?

    init(
        writerPool: NIOThreadPool, computePool: NIOThreadPool, writeQueue: WriteQueue, authFailures: AuthFailures,
        requestLog: RequestLog, maximumAnswerBytes: Int, forwarder: Forwarder? = nil
    ) {
        self.forwarder = forwarder
        self.writerPool = writerPool
        self.computePool = computePool
        self.writeQueue = writeQueue
        self.authFailures = authFailures
        self.requestLog = requestLog
        self.maximumAnswerBytes = maximumAnswerBytes
    }

    /// The answer to one request: written already, or when the pool running it is done (a
    /// future on the transport's event loop; it never fails).
    enum Answer {
        case now([UInt8])
        case later(EventLoopFuture<[UInt8]>)
    }

    /// Runs one request that arrived on `loop` from `address`, in `session`'s context.
    /// - Parameter stopping: The server is stopping and did not receive this request before
    ///   it began: it is refused `shutting_down`.
    /// - Returns: The op's name (`-` when the request named none it knows) and the answer line.
    func dispatch(
        _ request: ByteBuffer, in session: ServerContext, from address: String, stopping: Bool, on loop: EventLoop
    ) -> (op: String, answer: Answer) {
        let began = NIODeadline.now()
        let (call, descriptor, rid, minSeq, forwarded): (Call, OperationDescriptor, JSONValue?, Int64?, Bool)
        switch ServerContext.decode(request) {
        case .failure(let bytes):
            return ("-", .now(refused("-", bytes, in: session)))
        case .call(let decodedCall, let decodedDescriptor, let decodedRid, let decodedMinSeq, let decodedForwarded):
            (call, descriptor, rid, minSeq, forwarded) = (
                decodedCall, decodedDescriptor, decodedRid, decodedMinSeq, decodedForwarded
            )
        }
        let op = descriptor.name
        if let refusal = refusal(call, descriptor, in: session, from: address, stopping: stopping, now: began) {
            return (op, .now(refused(op, Response.failure(rid: rid, refusal), in: session)))
        }
        guard let node = session.stores.node else {
            return (op, run(call, descriptor, rid: rid, in: session, on: loop, since: began))
        }
        let ranges = Set(call.users.map { node.ranges.range(of: $0) })
        if !ranges.allSatisfy(node.serves) {
            return (
                op,
                .later(
                    elsewhere(
                        request, ranges: ranges, forwarded: forwarded, descriptor, rid: rid, in: session, on: loop,
                        since: began))
            )
        }
        guard let minSeq, let user = call.users.first, let replica = node.replica(of: user),
            replica.appliedSequence < minSeq
        else {
            return (op, run(call, descriptor, rid: rid, in: session, on: loop, since: began))
        }
        // The request must see a write this node has not applied yet: the log is applied
        // through it first (bounded by the log's deadline).
        let waited = loop.makePromise(of: Void.self)
        waited.completeWithTask { try await node.reach(minSeq, of: user) }
        let answer = waited.futureResult.flatMap { [self] () -> EventLoopFuture<[UInt8]> in
            switch run(call, descriptor, rid: rid, in: session, on: loop, since: began) {
            case .now(let bytes): loop.makeSucceededFuture(bytes)
            case .later(let future): future
            }
        }.flatMapErrorThrowing { [self] error in
            if descriptor.writes { writeQueue.leave() }
            let refusal =
                (error as? ClusterError).map { ProtocolError(cluster: $0, reading: minSeq, of: user) }
                ?? ProtocolError(.storageError, "\(error)")
            return refused(op, Response.failure(rid: rid, refusal), in: session)
        }
        return (op, .later(answer))
    }

    /// The answer of a node that serves `ranges` (the ranges of the request's users, which this
    /// node does not all serve), to which the request is forwarded; `unavailable` when another
    /// node forwarded it here already, or no node serves them all.
    private func elsewhere(
        _ request: ByteBuffer, ranges: Set<Int>, forwarded: Bool, _ descriptor: OperationDescriptor,
        rid: JSONValue?, in session: ServerContext, on loop: EventLoop, since began: NIODeadline
    ) -> EventLoopFuture<[UInt8]> {
        let op = descriptor.name
        guard let node = session.stores.node, let forwarder, !forwarded else {
            if descriptor.writes { writeQueue.leave() }
            let refusal = ProtocolError(
                .unavailable,
                "node \(session.stores.node?.name ?? "") does not serve these users now (placement is moving); retry")
            return loop.makeSucceededFuture(refused(op, Response.failure(rid: rid, refusal), in: session))
        }
        // The nodes that serve every range the request names.
        let serving: @Sendable () -> [String] = {
            var candidates = node.hosts(of: ranges.first!)
            for range in ranges.dropFirst() {
                let hosts = Set(node.hosts(of: range))
                candidates.removeAll { !hosts.contains($0) }
            }
            return candidates
        }
        let line = forwarder.marked(request)
        // For a batch split by node: where each user's range is served, this node included.
        let hosts: @Sendable (String) -> [String] = { user in
            let range = node.ranges.range(of: user)
            return (node.serves(range) ? [node.address] : []) + node.hosts(of: range)
        }
        let secret = session.session.secret
        let answered = loop.makePromise(of: [UInt8].self)
        answered.completeWithTask { [self] in
            defer { if descriptor.writes { writeQueue.leave() } }
            do throws(ProtocolError) {
                var targets = serving()
                if targets.isEmpty {
                    // This node's view lags PostgreSQL by up to a round (placement moved since):
                    // read it again once.
                    try? await node.refresh()
                    targets = serving()
                }
                if targets.isEmpty, ranges.count > 1, op == Operations.AddBatch.name {
                    return try await forwarder.forward(batch: request, rid: rid, hosts: hosts, secret: secret)
                }
                guard !targets.isEmpty else {
                    throw ProtocolError(
                        .unavailable,
                        ranges.count > 1
                            ? "no node serves every user of this request: send one request per user"
                            : "no live node serves this user's range now; retry")
                }
                return try await forwarder.forward(line, to: targets, secret: secret, writes: descriptor.writes)
            } catch {
                return Response.failure(rid: rid, error)
            }
        }
        return answered.futureResult.map { [self] bytes in
            let bytes = bounded(bytes, rid: rid)
            finished(op, rid: rid, since: began, answer: bytes, in: session)
            return bytes
        }
    }

    /// Runs an admitted request where its op's placement says.
    private func run(
        _ call: Call, _ descriptor: OperationDescriptor, rid: JSONValue?, in session: ServerContext,
        on loop: EventLoop, since began: NIODeadline
    ) -> Answer {
        let op = descriptor.name
        if descriptor.placement == .eventLoop, !call.needsComputePool {
            let bytes = bounded(call.run(session, rid), rid: rid)
            finished(op, rid: rid, since: began, answer: bytes, in: session)
            return .now(bytes)
        }
        let answer: EventLoopFuture<[UInt8]>
        switch descriptor.placement {
        case .eventLoop, .computePool:
            // The model's work and the op's, both on the pool.
            answer = computePool.runIfActive(eventLoop: loop) { call.run(session, rid) }
        case .writer:
            let (writerPool, writeQueue) = (self.writerPool, self.writeQueue)
            // The model runs on the compute pool first, so the writer thread never waits on it.
            let prepared: EventLoopFuture<Result<Call, ProtocolError>> =
                call.needsComputePool
                ? computePool.runIfActive(eventLoop: loop) {
                    Result { () throws(ProtocolError) in try call.embedded(session) }
                } : loop.makeSucceededFuture(.success(call))
            answer = prepared.flatMap { prepared in
                switch prepared {
                case .success(let call):
                    writerPool.runIfActive(eventLoop: loop) { call.run(session, rid) }
                case .failure(let error):
                    loop.makeSucceededFuture(Response.failure(rid: rid, error))
                }
            }.always { _ in writeQueue.leave() }
        }
        return .later(
            answer.recover { _ in
                // The pools are gone: the server is stopping.
                Response.failure(rid: nil, ProtocolError(.shuttingDown, "the server is shutting down"))
            }.map { [self] bytes in
                let bytes = bounded(bytes, rid: rid)
                finished(op, rid: rid, since: began, answer: bytes, in: session)
                return bytes
            })
    }

    /// Why a decoded request may not run now: the server is stopping, its key may not, or the
    /// writer's queue is full (else it takes a place there).
    private func refusal(
        _ call: Call, _ descriptor: OperationDescriptor, in session: ServerContext, from address: String,
        stopping: Bool, now: NIODeadline
    ) -> ProtocolError? {
        if stopping { return ProtocolError(.shuttingDown, "the server is shutting down") }
        if descriptor.name == Operations.Auth.name, session.keys != nil,
            let wait = authFailures.wait(address: address, now: now.uptimeNanoseconds)
        {
            return ProtocolError(
                .rateLimited, "too many failed authentications from \(address); retry in \(wait) ms",
                details: ["retry_after_ms": wait])
        }
        if let denied = session.denial(
            descriptor.access, users: call.users, cost: call.cost, now: now.uptimeNanoseconds)
        {
            return denied
        }
        if descriptor.writes, !writeQueue.tryEnter() {
            return ProtocolError(.busy, "too many writes queued; retry later")
        }
        return nil
    }

    /// The error line of a request that did not run, counted under `op`.
    private func refused(_ op: String, _ bytes: [UInt8], in session: ServerContext) -> [UInt8] {
        session.metrics.finished(
            op, outcome: ServerMetrics.outcome(bytes), nanoseconds: nil, door: session.session.door)
        return bytes
    }

    /// Counts a request that ran, and logs it when it was slow.
    private func finished(
        _ op: String, rid: JSONValue?, since began: NIODeadline, answer: [UInt8], in session: ServerContext
    ) {
        let took = NIODeadline.now() - began
        let outcome = ServerMetrics.outcome(answer)
        session.metrics.finished(op, outcome: outcome, nanoseconds: took.nanoseconds, door: session.session.door)
        requestLog.note(
            op, rid: rid, key: session.session.key, took: took, outcome: outcome, door: session.session.door)
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
