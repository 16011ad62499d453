import ArgumentParser
import Histogram
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Drives a running ContextStore server over loopback with pre-encoded requests and reports
/// requests/second and latency percentiles, like redis-benchmark does for Redis.
///
/// Each connection keeps `--pipeline` requests in flight; responses are counted by their newline
/// and checked to start with `{"ok":true`, without decoding the rest, so the generator spends its
/// time on the socket rather than on JSON.
@main
struct LoadGenerator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen", abstract: "Measure ContextStore server throughput and latency over TCP.")

    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port = 7420
    @Option(help: "Request to send: ping or search.") var op = "ping"
    @Option(help: "Send this line instead (e.g. PING for a Redis server); --op is then only a label.")
    var request: String?
    @Option(help: "Prefix that marks a successful answer.") var expect = #"{"ok":true"#
    @Option(help: "Concurrent connections.") var connections = 1
    @Option(help: "Requests in flight per connection (1 = no pipelining).") var pipeline = 1
    @Option(help: "Seconds to run.") var seconds = 5.0
    @Option(help: "Event loop threads of the generator.") var threads = 1
    @Option(help: "A key's secret: each connection authenticates first (untimed).") var secret: String?
    @Option(help: "For search: the user searched.") var user = "bench"
    @Option(help: "For search: the vector dimension.") var dim = 384
    @Option(help: "For search: k.") var k = 10
    @Option(help: "For search: first add this many random vectors for the user (0 = use what is there).")
    var load = 0

    func run() throws {
        var random = SplitMix(state: 20_261_129)
        if load > 0 { try loadVectors(random: &random) }
        let requests: [String] =
            if let request { [request] } else {
                switch op {
                case "ping": [#"{"op":"ping"}"#]
                case "search":
                    (0..<64).map { _ in
                        let vector = (0..<dim).map { _ in String(random.nextFloat()) }.joined(separator: ",")
                        return #"{"op":"search","user":"\#(user)","k":\#(k),"vector":[\#(vector)]}"#
                    }
                default: throw ValidationError("--op must be ping or search")
                }
            }

        let authLine = secret.map { #"{"op":"auth","secret":"\#($0)"}"# + "\n" }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { try? group.syncShutdownGracefully() }
        let start = Clock.nanoseconds()
        let deadline = start + UInt64(seconds * 1e9)
        let results = try (0..<connections).map { _ in
            let promise = group.next().makePromise(of: ConnectionResult.self)
            let lines = requests.map { $0 + "\n" }
            _ = try ClientBootstrap(group: group)
                .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            LoadHandler(
                                requests: lines, expect: Array(expect.utf8), pipeline: pipeline, deadline: deadline,
                                auth: authLine, done: promise))
                    }
                }
                .connect(host: host, port: port).wait()
            return promise.futureResult
        }.map { try $0.wait() }
        let elapsed = Double(Clock.nanoseconds() - start) / 1e9

        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var completed = 0
        var failed = 0
        for result in results {
            histogram.add(result.latencies)
            completed += result.completed
            failed += result.failed
        }
        func micros(_ p: Double) -> String { String(format: histogram.valueAtPercentile(p)) }
        print(
            "op=\(op) connections=\(connections) pipeline=\(pipeline) requests=\(completed) failed=\(failed) "
                + "seconds=\(String(format: elapsed)) rps=\(Int(Double(completed) / elapsed)) "
                + "p50_us=\(micros(50)) p95_us=\(micros(95)) p99_us=\(micros(99)) max_us=\(String(format: histogram.maxRecorded))"
        )
        if failed > 0 { throw ExitCode(1) }
    }

    /// Adds `load` random vectors for `user`, 1,000 per `add_batch`, over a blocking socket.
    private func loadVectors(random: inout SplitMix) throws {
        let socket = try BlockingSocket(host: host, port: port)
        if let secret {
            try socket.send(#"{"op":"auth","secret":"\#(secret)"}"# + "\n")
            let answer = try socket.readLine()
            guard answer.hasPrefix(#"{"ok":true"#) else { throw ValidationError("auth failed: \(answer)") }
        }
        var remaining = load
        var batch = 0
        while remaining > 0 {
            let count = min(1000, remaining)
            var line = #"{"op":"add_batch","items":["#
            for i in 0..<count {
                if i > 0 { line += "," }
                let vector = (0..<dim).map { _ in String(random.nextFloat()) }.joined(separator: ",")
                line +=
                    #"{"id":"bench-\#(batch)-\#(i)","user":"\#(user)","text":"row \#(batch)-\#(i)","vector":[\#(vector)]}"#
            }
            line += "]}\n"
            try socket.send(line)
            let answer = try socket.readLine()
            guard answer.hasPrefix(#"{"ok":true"#) else { throw ValidationError("load failed: \(answer.prefix(300))") }
            remaining -= count
            batch += 1
        }
    }
}

struct ConnectionResult: Sendable {
    var completed = 0
    var failed = 0
    var latencies = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
}

/// One connection's request loop: keeps `pipeline` requests in flight until the deadline.
final class LoadHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let requests: [String]
    private let pipeline: Int
    private let deadline: UInt64
    private let done: EventLoopPromise<ConnectionResult>
    private var sentAt = CircularBuffer<UInt64>()
    private var next = 0
    private var result = ConnectionResult()
    private var lineStart: [UInt8] = []
    private let okPrefix: [UInt8]
    /// The `auth` line sent first, whose answer is awaited before the timed requests.
    private var auth: String?

    init(
        requests: [String], expect: [UInt8], pipeline: Int, deadline: UInt64, auth: String?,
        done: EventLoopPromise<ConnectionResult>
    ) {
        self.auth = auth
        self.requests = requests
        self.okPrefix = expect
        self.pipeline = pipeline
        self.deadline = deadline
        self.done = done
    }

    private func send(context: ChannelHandlerContext) {
        let request = requests[next % requests.count]
        next += 1
        sentAt.append(Clock.nanoseconds())
        context.write(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        if let auth {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: auth)), promise: nil)
            return
        }
        startSending(context: context)
    }

    private func startSending(context: ChannelHandlerContext) {
        for _ in 0..<pipeline { send(context: context) }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var sent = false
        for byte in buffer.readableBytesView {
            if byte != 0x0A {
                if lineStart.count < okPrefix.count { lineStart.append(byte) }
                continue
            }
            if auth != nil {
                auth = nil
                guard lineStart == okPrefix else {
                    done.fail(ValidationError("auth was refused"))
                    return context.close(promise: nil)
                }
                lineStart.removeAll(keepingCapacity: true)
                startSending(context: context)
                continue
            }
            let now = Clock.nanoseconds()
            _ = result.latencies.record((now - sentAt.removeFirst()) / 1000)
            if lineStart == okPrefix { result.completed += 1 } else { result.failed += 1 }
            lineStart.removeAll(keepingCapacity: true)
            if now < deadline {
                send(context: context)
                sent = true
            }
        }
        if sent { context.flush() }
        if sentAt.isEmpty {
            done.succeed(result)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        done.fail(error)
        context.close(promise: nil)
    }
}

enum Clock {
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) - 0.5 }
}

extension String {
    init(format value: Double) { self = String(Double(Int(value * 1000)) / 1000) }
    init(format value: UInt64) { self = String(value) }
}

/// A minimal blocking TCP client for the load phase.
final class BlockingSocket {
    private let fd: Int32
    private var buffered: [UInt8] = []

    init(host: String, port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw ValidationError("cannot connect to \(host):\(port)") }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { throw ValidationError("connection closed") }
            offset += sent
        }
    }

    func readLine() throws -> String {
        while true {
            if let newline = buffered.firstIndex(of: 0x0A) {
                defer { buffered.removeFirst(newline + 1) }
                return String(decoding: buffered[..<newline], as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw ValidationError("connection closed") }
            buffered.append(contentsOf: chunk[..<count])
        }
    }
}
