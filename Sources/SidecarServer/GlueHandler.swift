import NIOCore

/// Relays raw bytes between two channels after a protocol upgrade (WebSocket), with backpressure both ways.
/// Shape of swift-nio's NIOConnectProxy example: one handler per side, paired.
///
/// A tunnel that carries no byte in either direction for its idle timeout is closed on both sides, as nginx closes
/// an upgraded connection after `proxy_read_timeout` and Envoy after its stream idle timeout: without it a silent
/// client (or upstream) held two connections and their buffers for as long as the kernel kept the sockets.
/// WebSocket applications keep a quiet tunnel open with pings, which count as bytes.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// The pair's one idle deadline (both sides live on one event loop): re-armed by a read on either side.
    private final class IdleWatch {
        let timeout: TimeAmount?
        var timer: DeadlineTimer?
        init(timeout: TimeAmount?) { self.timeout = timeout }
    }

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let idle: IdleWatch

    private init(idle: IdleWatch) { self.idle = idle }

    /// Two paired handlers; `idleTimeout` nil: no idle limit (tests of the relay alone).
    static func matchedPair(idleTimeout: TimeAmount? = nil) -> (GlueHandler, GlueHandler) {
        let idle = IdleWatch(timeout: idleTimeout)
        let a = GlueHandler(idle: idle), b = GlueHandler(idle: idle)
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The first side added starts the clock: a tunnel that never carries a byte is closed too.
        if let timeout = idle.timeout, idle.timer == nil {
            let timer = DeadlineTimer(eventLoop: context.eventLoop) { [weak self] in self?.idleExpired() }
            idle.timer = timer
            timer.arm(in: timeout)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
        stopIdleTimer()
    }

    private func partnerWrite(_ data: NIOAny) { context?.write(data, promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerWriteEOF() { context?.close(mode: .output, promise: nil) }
    private func partnerCloseFull() { context?.close(promise: nil) }

    /// The other side ended: what this side still has to write goes out first, then it closes. A close at once
    /// dropped the unwritten bytes — an upstream's last frames before it closed never reached a slowly reading client
    /// (found in review). Bounded: a peer that takes none of them is closed after the idle timeout (60 s without one).
    private func partnerCloseAfterWrites() {
        guard let context else { return }
        let loop = context.eventLoop.assumeIsolated()
        let deadline = loop.scheduleTask(in: idle.timeout ?? .seconds(60)) { context.close(promise: nil) }
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { _ in
            deadline.cancel()
            context.close(promise: nil)
        }
        context.writeAndFlush(NIOAny(ByteBuffer()), promise: written)
    }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    /// Nothing crossed for the whole timeout: both connections end.
    private func idleExpired() {
        let partner = self.partner
        context?.close(promise: nil)
        partner?.partnerCloseFull()
    }

    private func stopIdleTimer() {
        idle.timer?.cancel()
        idle.timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let timeout = idle.timeout { idle.timer?.arm(in: timeout) }
        partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }

    func channelInactive(context: ChannelHandlerContext) {
        stopIdleTimer()
        partner?.partnerCloseAfterWrites()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, case .inputClosed = e { partner?.partnerWriteEOF() }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { partner?.partnerCloseAfterWrites() }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable { context.read() } else { pendingRead = true }
    }
}
