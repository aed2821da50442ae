import NIOCore
import NIOHTTP1

/// Orders pipelined HTTP/1.1 requests: delivers one request at a time and holds the next head (and its body) until
/// the current response has ended.
///
/// Unlike NIO's `HTTPServerPipelineHandler`, it keeps reading while a response is pending — that handler's read
/// deferral costs two `epoll_ctl` calls per request on a proxy — and only stops reading when `maxQueued` events wait.
/// It also handles `ChannelShouldQuiesceEvent` (shutdown): every response from then on says `Connection: close`, busy
/// connections close after their response, idle ones after a short grace for a request already in flight.
final class PipeliningHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// The exchange whose head was delivered; nil between exchanges.
    private struct Current {
        var requestEnded = false
        var responseEnded = false
    }

    private var current: Current?
    private var queue = CircularBuffer<HTTPServerRequestPart>(initialCapacity: 0)
    private var readPending = false
    private var quiescing = false
    private var draining = false
    private let maxQueued: Int
    /// How long an idle connection stays open after shutdown starts, for a request already on its way.
    static let idleGrace = TimeAmount.milliseconds(250)

    init(maxQueued: Int = 64) { self.maxQueued = maxQueued }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if !queue.isEmpty || (current != nil && isHead(part)) {
            queue.append(part)
            return
        }
        deliver(part, context: context)
    }

    private func isHead(_ part: HTTPServerRequestPart) -> Bool {
        if case .head = part { return true }
        return false
    }

    private func deliver(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head: current = Current()
        case .body: break
        case .end:
            current?.requestEnded = true
            if current?.responseEnded == true { current = nil }
        }
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// Delivers queued events until the next head must wait for the current exchange. Re-entrant calls (a response
    /// ended synchronously while an event was being delivered) leave the work to the outer loop.
    private func drain(context: ChannelHandlerContext) {
        guard !draining else { return }
        draining = true
        defer { draining = false }
        while let next = queue.first {
            if case .head = next, current != nil { break }
            queue.removeFirst()
            deliver(next, context: context)
        }
        if readPending, queue.count < maxQueued {
            readPending = false
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        if quiescing, case .head(var head) = part, head.status.code >= 200 {
            // Shutting down: tell the client this is the connection's last response, so it does not send another.
            head.headers.replaceOrAdd(name: "connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        }
        guard case .end = part else {
            context.write(data, promise: promise)
            return
        }
        current?.responseEnded = true
        if current?.requestEnded == true { current = nil }
        if quiescing && current == nil {
            // Shutting down: close once this last response has actually been written (after the caller's flush).
            queue.removeAll()
            let written = promise ?? context.eventLoop.makePromise()
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        context.write(data, promise: promise)
        if current == nil, !queue.isEmpty { drain(context: context) }
    }

    func read(context: ChannelHandlerContext) {
        if queue.count >= maxQueued { readPending = true } else { context.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if current == nil {
                // An idle keep-alive connection may have a request in flight from the client: give it a moment to
                // arrive (it is then answered with `Connection: close`) instead of resetting it.
                // The close itself waits one more loop iteration: timers run after that iteration's I/O, so bytes
                // that arrived since are read first (and make the connection busy) rather than reset by the close.
                let loop = context.eventLoop.assumeIsolated()
                loop.scheduleTask(in: Self.idleGrace) {
                    loop.execute {
                        if self.current == nil, self.queue.isEmpty { context.close(promise: nil) }
                    }
                }
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.removeAll()
        context.fireChannelInactive()
    }
}
