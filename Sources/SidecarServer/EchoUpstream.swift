import AuthJSToken
import NIOCore
import NIOHTTP1
import NIOPosix

/// The built-in demo upstream: answers every request with the method, path and headers it received, as JSON,
/// so a new user sees exactly what a real upstream would get.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var head: HTTPRequestHead?
    private var bodyBytes = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h; bodyBytes = 0
        case .body(let b): bodyBytes += b.readableBytes
        case .end:
            guard let head else { return }
            var headerList: [JSONValue] = []
            for (n, v) in head.headers { headerList.append(.array([.string(n.lowercased()), .string(v)])) }
            let body = JSONValue.object(JSONObject([
                ("method", .string(head.method.rawValue)), ("path", .string(head.uri)),
                ("headers", .array(headerList)), ("body_bytes", .integer(Int64(bodyBytes))),
            ])).serialized()
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            if !head.method.isHEAD { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            self.head = nil
        }
    }
}

public enum EchoUpstream {
    /// Starts the echo server on `group`; returns its bound channel.
    public static func start(group: EventLoopGroup, host: String, port: Int) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: host, port: port).wait()
    }
}
