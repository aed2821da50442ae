import NIOCore
import NIOHTTP1

/// Decodes a client connection's bytes into request parts with ``ClientRequestParser``.
///
/// A refusal is reported once (`errorCaught` with a ``ClientRequestError``, which the proxy handler answers) and
/// every later byte is dropped. Before a part of a request after which the parser reads no more (an upgrade request,
/// a CONNECT, `Connection: close`, HTTP/1.0 without keep-alive) it tells the connection's ``HeadWatch``, so the answer
/// (any but a `101`) says `Connection: close` and ends the connection — whatever the head's strings suggest. When the WebSocket splice removes it, the bytes that followed the upgrade request go on to the relay.
final class ClientRequestDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart

    private var parser = ClientRequestParser()
    private let watch: HeadWatch
    private var failed = false
    private var removed = false

    init(watch: HeadWatch) {
        self.watch = watch
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var input = unwrapInboundIn(data)
        do {
            // Handlers after this one may remove it while a part is delivered (the splice): then it stops here.
            while !removed, let part = try parser.next(&input) {
                if parser.stopsAfterRequest { watch.inputStopped = true }
                context.fireChannelRead(wrapInboundOut(part))
            }
        } catch {
            failed = true
            context.fireErrorCaught(error)
        }
    }

    /// A connection closed in the middle of a request is reported like a refusal (nobody is left to answer it; the
    /// proxy drops the exchange's upstream connection rather than finishing a request the client never finished).
    func channelInactive(context: ChannelHandlerContext) {
        if !failed, parser.inMessage {
            failed = true
            context.fireErrorCaught(ClientRequestError.bad("connection closed in the middle of a request"))
        }
        context.fireChannelInactive()
    }

    /// Hands the bytes that followed an upgrade request to the handlers that take the connection over.
    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        removed = true
        if let remainder = parser.takeRemainder(), remainder.readableBytes > 0 {
            context.fireChannelRead(NIOAny(remainder))  // raw bytes, for the relay
        }
        context.leavePipeline(removalToken: removalToken)
    }
}
