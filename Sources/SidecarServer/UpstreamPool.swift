import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// What each event loop owns: its upstream pool, its verified-token cache and its metric handles. Touched only on that loop.
final class LoopState: @unchecked Sendable {
    let pool: UpstreamPool
    @exclusivity(unchecked) var cache: VerifiedTokenCache
    @exclusivity(unchecked) var metrics: LoopMetrics
    @exclusivity(unchecked) var requestIDs = RequestIDGenerator()
    /// Requests sent again after a reused upstream connection failed before answering.
    @exclusivity(unchecked) var upstreamRetries = 0
    /// This loop's access lines, handed to the log writer once per loop iteration.
    let accessLines: LogBatch

    init(pool: UpstreamPool, cacheCapacity: Int, metrics: SidecarMetrics, accessSink: LogSink = .standardOutput) {
        self.pool = pool
        self.accessLines = LogBatch(eventLoop: pool.eventLoop, sink: accessSink)
        self.cache = VerifiedTokenCache(capacity: cacheCapacity)
        self.metrics = LoopMetrics(shared: metrics)
    }
}

/// Why a new upstream connection could not be made before any socket was opened.
enum UpstreamConnectError: Error {
    case loopCannotHostSockets
}

/// Keep-alive connections to the upstream, one pool per event loop.
///
/// Confined to its event loop: every method runs there, so there are no locks. Connections are made on the same
/// loop as the client connection that uses them, so a request never hops threads.
final class UpstreamPool: @unchecked Sendable {
    let eventLoop: EventLoop
    let address: SocketAddress
    let connectTimeout: TimeAmount
    let maxIdle: Int
    /// How long a connection may sit idle before it is closed rather than used: below the upstream's own keep-alive
    /// timeout, a request is never sent on a connection the upstream is closing at that moment (a POST, which cannot
    /// be sent again, would get a 502).
    let idleTimeout: TimeAmount
    /// Idle connections, oldest first (released ones are appended, the newest is taken): the expired ones are a prefix.
    @exclusivity(unchecked) private var idle: [IdleConnection] = []
    /// Closes expired idle connections while no request takes them; started with the first release.
    @exclusivity(unchecked) private var sweep: RepeatedTask?
    /// Connections ever opened (for tests and metrics).
    private(set) var opened = 0

    /// Makes the channel of a new connection in place of a socket connect: an in-process upstream on an
    /// `EmbeddedEventLoop` (the `forward` fuzz target). Nil when serving.
    let channelMaker: (@Sendable () -> EventLoopFuture<Channel>)?

    init(eventLoop: EventLoop, address: SocketAddress, connectTimeout: TimeAmount, maxIdle: Int = 128,
         idleTimeout: TimeAmount = .seconds(4), channelMaker: (@Sendable () -> EventLoopFuture<Channel>)? = nil) {
        self.eventLoop = eventLoop
        self.address = address
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        self.channelMaker = channelMaker
    }

    private struct IdleConnection {
        let connection: UpstreamConnection
        let since: NIODeadline
    }

    var idleCount: Int { idle.count }

    /// The newest idle live connection that has not been idle for `idleTimeout`, if any (synchronous: the common case
    /// costs no future and no read pause). An expired one is closed, and with it every older one.
    func takeIdle(now: NIODeadline = .now()) -> UpstreamConnection? {
        eventLoop.preconditionInEventLoop()
        while let entry = idle.popLast() {
            guard entry.connection.channel.isActive else { continue }
            if now - entry.since < idleTimeout { return entry.connection }
            entry.connection.channel.close(promise: nil)
            closeIdle(upTo: idle.count)
            return nil
        }
        return nil
    }

    /// Closes the idle connections that have been idle for `idleTimeout` by `now` (the sweep's work).
    func closeExpired(now: NIODeadline = .now()) {
        eventLoop.preconditionInEventLoop()
        let expired = idle.firstIndex { now - $0.since < idleTimeout } ?? idle.count
        closeIdle(upTo: expired)
    }

    /// Takes the oldest `count` idle connections out of the pool, then closes them (a close removes a connection
    /// from `idle` through ``forget(_:)``, so not while iterating it).
    private func closeIdle(upTo count: Int) {
        guard count > 0 else { return }
        let closing = idle[..<count]
        idle.removeFirst(count)
        for entry in closing { entry.connection.channel.close(promise: nil) }
    }

    /// An idle live connection, or a new one.
    func acquire() -> EventLoopFuture<UpstreamConnection> {
        if let connection = takeIdle() { return eventLoop.makeSucceededFuture(connection) }
        return connect()
    }

    /// A new connection on this loop. On a loop that cannot host sockets (an `EmbeddedEventLoop` in tests and the
    /// pipeline fuzz target) the connect fails like a refused one instead of trapping in `ClientBootstrap`.
    func connect() -> EventLoopFuture<UpstreamConnection> {
        let handler = NIOLoopBound(UpstreamHandler(), eventLoop: eventLoop)  // its channel lives on this loop
        if let channelMaker {
            handler.value.pool = self
            opened += 1
            return channelMaker().flatMapThrowing { channel in
                try Self.addHandlers(handler.value, to: channel.pipeline.syncOperations)
                return UpstreamConnection(channel: channel, handler: handler.value)
            }
        }
        guard let bootstrap = ClientBootstrap(validatingGroup: eventLoop) else {
            return eventLoop.makeFailedFuture(UpstreamConnectError.loopCannotHostSockets)
        }
        handler.value.pool = self
        opened += 1
        return bootstrap
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: true)
            .channelOption(.recvAllocator, value: SidecarServer.receiveBuffers)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.addHandlers(handler.value, to: channel.pipeline.syncOperations)
                }
            }
            .connect(to: address)
            .map { UpstreamConnection(channel: $0, handler: handler.value) }
    }

    /// An upstream connection's pipeline: one handler, which frames requests and parses responses itself (see
    /// ``UpstreamResponseParser``); a WebSocket upgrade splices the raw bytes after its 101.
    static func addHandlers(_ handler: UpstreamHandler, to sync: ChannelPipeline.SynchronousOperations) throws {
        try sync.addHandler(handler)
    }

    /// Back to the pool after a complete exchange; closed when the pool is full.
    func release(_ connection: UpstreamConnection, now: NIODeadline = .now()) {
        eventLoop.preconditionInEventLoop()
        connection.handler.delegate = nil
        guard connection.channel.isActive, idle.count < maxIdle else {
            connection.channel.close(promise: nil)
            return
        }
        idle.append(IdleConnection(connection: connection, since: now))
        if sweep == nil {
            // Every half timeout: a connection is closed by the sweep at most 1.5 timeouts after its last use, and is
            // never used after one.
            let every = TimeAmount.nanoseconds(max(idleTimeout.nanoseconds / 2, TimeAmount.milliseconds(10).nanoseconds))
            sweep = eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { [weak self] _ in self?.closeExpired() }
        }
    }

    func forget(_ handler: UpstreamHandler) {
        idle.removeAll { $0.connection.handler === handler }
    }

    func closeAll() {
        sweep?.cancel()
        sweep = nil
        closeIdle(upTo: idle.count)
    }
}

/// A pooled upstream channel and its handler. Confined to its pool's event loop like the pool (made, used and
/// released there; futures carrying it complete on that loop), hence the unchecked `Sendable`.
struct UpstreamConnection: @unchecked Sendable {
    let channel: Channel
    let handler: UpstreamHandler
}

/// Receives what the proxy handler needs from an upstream connection, on the shared event loop.
protocol UpstreamDelegate: AnyObject {
    func upstreamRead(_ event: UpstreamResponseEvent)
    func upstreamReadComplete()
    func upstreamClosed()
    func upstreamError(_ error: Error)
    func upstreamWritabilityChanged(_ writable: Bool)
}

/// Frames requests to an upstream connection, parses its responses into events for the current exchange, and holds
/// upstream reads while the client cannot keep up.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// The proxy handler of the exchange using this connection. Strong, and cleared on every detach (release to the
    /// pool, failure, close): a weak reference would put every retain of the proxy handler on the slow side-table path.
    @exclusivity(unchecked) var delegate: UpstreamDelegate?
    weak var pool: UpstreamPool?
    @exclusivity(unchecked) private var paused = false
    @exclusivity(unchecked) private var pendingRead = false
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var parser = UpstreamResponseParser()
    /// Whether the connection may go back to the pool (the response parser's verdict, trailers included).
    var connectionReusable: Bool { parser.connectionReusable }
    /// Bytes read after a 101 (the upgraded protocol's first), passed on when the splice removes this handler.
    @exclusivity(unchecked) private var upgradedBytes: ByteBuffer?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        do {
            while let event = try parser.next(&input) {
                guard let delegate else {
                    // A response nobody is waiting for: this connection cannot be reused.
                    context.close(promise: nil)
                    return
                }
                if parser.upgraded, case .end = event, input.readableBytes > 0 {
                    upgradedBytes = input
                    input.moveReaderIndex(to: input.writerIndex)
                }
                delegate.upstreamRead(event)
            }
        } catch {
            fail(error, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool?.forget(self)
        do {
            // A response delimited by the close ends here; one cut short fails its exchange.
            if let event = try parser.endOfInput() { delegate?.upstreamRead(event) }
            delegate?.upstreamClosed()
        } catch {
            delegate?.upstreamError(error)
        }
        delegate = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error, context: context)
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        delegate?.upstreamError(error)
        delegate = nil
        context.close(promise: nil)
    }

    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        if let bytes = upgradedBytes {
            upgradedBytes = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()  // the relay flushes on it
        }
        context.leavePipeline(removalToken: removalToken)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if paused { pendingRead = true } else { context.read() }
    }

    /// HTTP/1.1 framing of the request parts (the pipeline has no separate encoder). Exclusivity-checked, unlike this
    /// handler's other state (see ``ProxyHandler``): its mutating `write` writes to the pipeline.
    private var framing = UpstreamRequestFraming()

    /// Writes a request part, framed, from this handler's context: `Channel.write` is generic over the part and is not
    /// specialised across modules, so each call cost a run-time cast and a metadata lookup (~1 k instructions).
    /// Every head is recorded on the response parser first, so it knows a response is due and how it is framed.
    func send(_ part: UpstreamRequestPart) {
        guard let context else { return }
        if case .head(let head) = part { parser.requestSent(isHEAD: head.method.isHEAD, wantsUpgrade: head.wantsUpgrade) }
        framing.write(part, context: context, promise: nil)
        unflushed = true
    }

    /// Flushes what ``send(_:)`` wrote; nothing when it has all been flushed (the proxy handler flushes once more at the
    /// end of each client read burst, usually after the request went out whole).
    func flush() {
        guard unflushed else { return }
        unflushed = false
        context?.flush()
    }

    @exclusivity(unchecked) private var unflushed = false

    /// Backpressure from the client side.
    func setPaused(_ value: Bool) {
        paused = value
        if !value, pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }
}
