import NIOCore
import Synchronization

/// Shared between ``HeaderTimeoutHandler`` and ``ProxyHandler`` of one connection (same event loop).
final class HeadWatch {
    /// True between requests: the next bytes start a header block.
    var awaitingHead = true
    var deadline: Scheduled<Void>?

    func headArrived() {
        awaitingHead = false
        deadline?.cancel()
        deadline = nil
    }

    func exchangeFinished() { awaitingHead = true }
}

/// Closes a connection whose header block is not complete `timeout` after its first byte (slowloris guard).
///
/// Sits before the HTTP decoder, sees raw bytes, and arms a timer only when a new request starts; idle keep-alive
/// connections are left to the idle timeout.
final class HeaderTimeoutHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let watch: HeadWatch
    let timeout: TimeAmount

    init(watch: HeadWatch, timeout: TimeAmount) {
        self.watch = watch
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if watch.awaitingHead, watch.deadline == nil {
            let channel = context.channel
            watch.deadline = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        watch.deadline?.cancel()
        context.fireChannelInactive()
    }
}

/// Counts open client connections across all event loops; one atomic add per connection, none per request.
final class ConnectionLimit: Sendable {
    let max: Int
    private let open = Atomic<Int>(0)

    init(max: Int) { self.max = max }

    /// Reserves a slot; false when full.
    func admit() -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        if now > max {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func release() { open.wrappingSubtract(1, ordering: .relaxed) }

    var current: Int { open.load(ordering: .relaxed) }
}

/// Releases the connection's slot when it closes; refuses with 503 when the limit is reached.
final class ConnectionLimitHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let limit: ConnectionLimit
    private var admitted = false

    init(limit: ConnectionLimit) { self.limit = limit }

    func channelActive(context: ChannelHandlerContext) {
        admitted = limit.admit()
        if !admitted {
            let body = #"{"error":"service_unavailable","reason":"connection_limit"}"#
            let response = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)"
            let channel = context.channel
            context.writeAndFlush(NIOAny(ByteBuffer(string: response))).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if admitted { context.fireChannelRead(data) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if admitted {
            admitted = false
            limit.release()
        }
        context.fireChannelInactive()
    }
}
