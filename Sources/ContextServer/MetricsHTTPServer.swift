import NIOCore
import NIOHTTP1
import NIOPosix

/// `serve --metrics-port`: HTTP for monitoring, apart from the protocol's port. `GET /metrics`
/// answers the Prometheus text (as the `metrics` op), `GET /health` `ok` while the server
/// serves; anything else 404. One answer per connection. It needs no key, so it listens on
/// loopback unless told otherwise (`--metrics-host`).
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

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
                case "/metrics": (HTTPResponseStatus.ok, self.context.metricsText(), "text/plain; version=0.0.4")
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
}
