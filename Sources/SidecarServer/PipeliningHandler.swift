import NIOCore
import NIOHTTP1

/// Orders pipelined HTTP/1.1 requests: delivers one request at a time and holds the next head (and its body) until
/// the current response has ended.
///
/// Inbound only: the response side reaches it through the connection's ``HeadWatch`` — ``ClientResponseEncoder``,
/// which sees every response part anyway, reports each response's end (``responseEnded()``, then
/// ``deliverQueued()``). As a duplex handler it cost a hop and a run-time cast per response part (1.7 k instructions
/// per request). Unlike NIO's `HTTPServerPipelineHandler`, it keeps reading while a response is pending — that
/// handler's read deferral costs two `epoll_ctl` calls per request on a proxy — and only stops reading (`autoRead`
/// off) when `maxQueued` events wait. It also handles `ChannelShouldQuiesceEvent` (shutdown): every response from then
/// on says `Connection: close` (the encoder reads ``HeadWatch/quiescing``), busy connections close after their
/// response, idle ones after a short grace for a request already in flight.
final class PipeliningHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ClientRequestPart
    typealias InboundOut = ClientRequestPart

    /// The exchange whose head was delivered; nil between exchanges.
    private struct Current {
        var requestEnded = false
        var responseEnded = false
    }

    private let watch: HeadWatch
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var current: Current?
    @exclusivity(unchecked) private var queue = CircularBuffer<ClientRequestPart>(initialCapacity: 0)
    /// Reads were stopped (`autoRead` off) because `maxQueued` events wait.
    @exclusivity(unchecked) private(set) var readsStopped = false
    @exclusivity(unchecked) private var draining = false
    /// The response being written is the connection's last (shutting down): every later part is dropped — a request
    /// read behind it in the same read was delivered and forwarded upstream, its answer lost with the connection.
    @exclusivity(unchecked) private var closing = false
    private let maxQueued: Int
    /// Body bytes queued behind the current exchange; reads stop past ``maxQueuedBytes`` (a count of parts alone let a
    /// pipelined upload queue 64 reads of up to 64 KiB each, ~4 MB a connection; found in review).
    @exclusivity(unchecked) private var queuedBytes = 0
    private let maxQueuedBytes: Int
    /// The next request waits because the client is not taking its answers (the channel is not writable): answers
    /// to pipelined requests piled up in the outbound buffer without bound from one connection that never read
    /// (found in review). It is delivered when the channel is writable again; if that takes `sendTimeout`, the
    /// connection is closed, as a client that takes none of one answer is.
    @exclusivity(unchecked) private var awaitingWritable = false
    private let sendTimeout: TimeAmount?
    @exclusivity(unchecked) private var sendTimer: DeadlineTimer?
    /// How long an idle connection stays open after shutdown starts, for a request already on its way.
    static let idleGrace = TimeAmount.milliseconds(250)

    init(watch: HeadWatch, maxQueued: Int = 64, maxQueuedBytes: Int = 64 * 1024, sendTimeout: TimeAmount? = nil) {
        self.watch = watch
        self.maxQueued = maxQueued
        self.maxQueuedBytes = maxQueuedBytes
        self.sendTimeout = sendTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        watch.pipelining = self
    }

    /// Breaks the watch ↔ handler cycle (also when a WebSocket upgrade removes the HTTP handlers), and never leaves
    /// the channel with its reads stopped.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        sendTimer?.cancel()
        sendTimer = nil
        if watch.pipelining === self { watch.pipelining = nil }
        if readsStopped {
            readsStopped = false
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        let part = unwrapInboundIn(data)
        let head = isHead(part)
        if !queue.isEmpty || (current != nil && head) || (current == nil && head && !context.channel.isWritable) {
            queue.append(part)
            if case .body(let buffer) = part { queuedBytes += buffer.readableBytes }
            if current == nil { waitForWritability(context) }
            stopReadsIfFull(context)
            return
        }
        deliver(part, context: context)
    }

    private func stopReadsIfFull(_ context: ChannelHandlerContext) {
        if queue.count >= maxQueued || queuedBytes >= maxQueuedBytes || awaitingWritable, !readsStopped {
            readsStopped = true
            try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        }
    }

    /// The next request waits for the client to take what was written; the send deadline runs meanwhile.
    private func waitForWritability(_ context: ChannelHandlerContext) {
        guard !awaitingWritable else { return }
        awaitingWritable = true
        if let sendTimeout {
            if sendTimer == nil {
                sendTimer = DeadlineTimer(eventLoop: context.eventLoop) { [weak self] in self?.context?.close(promise: nil) }
            }
            sendTimer?.arm(in: sendTimeout)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if awaitingWritable, context.channel.isWritable {
            awaitingWritable = false
            sendTimer?.disarm()
            deliverQueued()
        }
        context.fireChannelWritabilityChanged()
    }

    private func isHead(_ part: ClientRequestPart) -> Bool {
        if case .head = part { return true }
        return false
    }

    private func deliver(_ part: ClientRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head): current = Current(requestEnded: head.isWhole)
        case .body: break
        case .end:
            current?.requestEnded = true
            if current?.responseEnded == true { current = nil }
        }
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// A response's `.end` is about to be written. True when the connection must close once it is written (shutting
    /// down and nothing else in flight); queued requests are then dropped.
    func responseEnded() -> Bool {
        current?.responseEnded = true
        if current?.requestEnded == true { current = nil }
        if watch.quiescing && current == nil {
            queue.removeAll()
            queuedBytes = 0
            closing = true
            return true
        }
        return false
    }

    /// After a response's `.end` was written: delivers queued events until the next head must wait for the current
    /// exchange, then a read-complete, as a read burst ends — the proxy flushes what it forwarded upstream on it, so
    /// without it a queued request's body and end stayed unsent (a pipelined POST after a HEAD got a 504; found by
    /// the `forward` fuzz target). Re-entrant calls (a response ended synchronously while an event was being
    /// delivered) leave the work to the outer loop.
    func deliverQueued() {
        guard current == nil, !queue.isEmpty, !draining, let context else { return }
        draining = true
        defer { draining = false }
        while let next = queue.first {
            if case .head = next, current != nil { break }
            if case .head = next, !context.channel.isWritable {
                // The client has not taken the last answer yet: the next request waits (and reads stop).
                waitForWritability(context)
                stopReadsIfFull(context)
                break
            }
            queue.removeFirst()
            if case .body(let buffer) = next { queuedBytes -= buffer.readableBytes }
            deliver(next, context: context)
        }
        context.fireChannelReadComplete()
        if readsStopped, queue.count < maxQueued, queuedBytes < maxQueuedBytes, !awaitingWritable {
            readsStopped = false
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            watch.quiescing = true
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
        queuedBytes = 0
        sendTimer?.cancel()
        context.fireChannelInactive()
    }
}
