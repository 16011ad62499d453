import NIOCore
import NIOHTTP1
import NIOPosix

/// `serve --metrics-port`: HTTP for monitoring, apart from the protocol's port. `GET /metrics`
/// answers the Prometheus text (as the `metrics` op), `GET /health` `ok` while the server
/// serves; anything else 404. One answer per connection. It needs no key, so it listens on
/// loopback unless told otherwise (`--metrics-host`), and its answers name no key. Its
/// connections are limited apart from the protocol's (`maximumConnections`, each closed after
/// `idleTimeout` without a whole request), so it cannot take the server's descriptors.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Connections the listener holds at most, and how long one may take to send its request.
    static let maximumConnections = 64
    static let idleTimeout = TimeAmount.seconds(5)

    private let context: ServerContext
    private var path: String?

    init(context: ServerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.method == .GET ? head.uri.split(separator: "?").first.map(String.init) : nil
        case .body:
            break
        case .end:
            let (status, body, type) =
                switch path {
                case "/metrics":
                    (HTTPResponseStatus.ok, self.context.metricsText(keyed: false), "text/plain; version=0.0.4")
                case "/health": (HTTPResponseStatus.ok, "ok\n", "text/plain")
                default: (HTTPResponseStatus.notFound, "not found: GET /metrics or /health\n", "text/plain")
                }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            headers.add(name: "Connection", value: "close")
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil)
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
