import NIOCore
import NIOHTTP1

/// Decodes a client connection's bytes into request parts with ``ClientRequestParser``.
///
/// A refusal is reported once (`errorCaught` with a ``ClientRequestError``, which the proxy handler answers) and
/// every later byte is dropped. The head of a request after which the parser reads no more (an upgrade request, a
/// CONNECT, a `Connection` value llhttp reads as no keep-alive) says so (``ClientRequestHead/isLast``), in band —
/// pipelining may still have earlier requests to answer first: its answer (any but a `101`) is the connection's
/// last. A head that is the whole request (``ClientRequestHead/isWhole``: no body) goes on alone, its `.end` folded
/// into it. When the WebSocket splice removes this handler, the bytes that followed the upgrade request go on to the
/// relay.
final class ClientRequestDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ClientRequestPart

    @exclusivity(unchecked) private var parser = ClientRequestParser()
    @exclusivity(unchecked) private var failed = false
    @exclusivity(unchecked) private var removed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var input = unwrapInboundIn(data)
        do {
            // Handlers after this one may remove it while a part is delivered (the splice): then it stops here.
            while !removed, let part = try parser.next(&input) {
                if case .head(let head) = part, head.isWhole {
                    // Its `.end` is read now and folded into it (the parser is then past the request, as it was when
                    // both parts were delivered: a handler that removes this one meanwhile gets the same remainder).
                    guard case .end(nil)? = try parser.next(&input) else { preconditionFailure("a whole request's head not followed by its end") }
                }
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
            context.fireChannelReadComplete()  // which flushes them on: no later read may come to do it
        }
        context.leavePipeline(removalToken: removalToken)
    }
}
