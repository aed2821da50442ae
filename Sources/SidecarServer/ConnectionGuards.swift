import NIOCore
import Synchronization

/// A per-connection deadline that moves with every request but rarely fires.
///
/// At most one task is scheduled at a time; when it fires before the current deadline it is scheduled again for the
/// rest, and moving or clearing the deadline costs nothing. Cancelling a NIO scheduled task searches the loop's whole
/// timer heap, so a schedule + cancel per request made every request cost O(open connections). Event-loop confined.
final class DeadlineTimer {
    private(set) var deadline: NIODeadline?
    private var task: Scheduled<Void>?
    private var taskDeadline: NIODeadline?
    private let eventLoop: EventLoop
    private let expired: () -> Void

    init(eventLoop: EventLoop, expired: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.expired = expired
    }

    var isArmed: Bool { deadline != nil }
    var hasPendingTask: Bool { task != nil }

    /// Sets the deadline `amount` from now (the loop's clock, so embedded tests can advance it).
    func arm(in amount: TimeAmount) {
        let deadline = eventLoop.now + amount
        self.deadline = deadline
        if let taskDeadline, taskDeadline <= deadline { return }
        task?.cancel()  // only when the new deadline is earlier than the pending task: not the per-request path
        schedule(deadline)
    }

    /// Clears the deadline; a pending task finds nothing to do when it fires.
    func disarm() { deadline = nil }

    /// For the end of the connection.
    func cancel() {
        deadline = nil
        task?.cancel()
        task = nil
        taskDeadline = nil
    }

    private func schedule(_ at: NIODeadline) {
        taskDeadline = at
        // Strong: the task lives until it fires or `cancel()`; a weak capture would move the timer's retains to the
        // slow side-table path.
        task = eventLoop.assumeIsolated().scheduleTask(deadline: at) { self.fire() }
    }

    private func fire() {
        task = nil
        taskDeadline = nil
        guard let deadline else { return }
        if eventLoop.now >= deadline {
            self.deadline = nil
            expired()
        } else {
            schedule(deadline)
        }
    }
}

/// Shared between ``ClientTimeoutsHandler``, ``ClientResponseEncoder``, ``PipeliningHandler`` and ``ProxyHandler`` of
/// one connection (same event loop).
final class HeadWatch {
    /// True between requests: the next bytes start a header block.
    var awaitingHead = true
    /// The request being answered is a HEAD (set by ``ProxyHandler`` per request head, cleared by
    /// ``ClientResponseEncoder`` after each answer): its response carries no body.
    var answeringHead = false
    /// The connection's one read deadline (set by ``ClientTimeoutsHandler``): the idle deadline between requests,
    /// the header-block deadline once a head has started, none while an exchange is in flight.
    var timer: DeadlineTimer?
    /// How long the connection may stay idle between requests; nil: no idle deadline.
    var idleTimeout: TimeAmount?
    /// The timer holds the header-block deadline: a head started and has not arrived yet.
    private(set) var readingHead = false
    /// The timer holds the body deadline: a request body is arriving (from a head that declares one to its end), and
    /// each read moves the deadline `bodyTimeout` on. Paused while the proxy stops reading for backpressure.
    private(set) var readingBody = false
    private(set) var bodyTimeout = TimeAmount.seconds(60)
    /// Shutdown began (``PipeliningHandler`` saw `ChannelShouldQuiesceEvent`): every final response from now on says
    /// `Connection: close` (``ClientResponseEncoder`` adds it).
    var quiescing = false
    /// The connection's pipelining handler, told of each response's end by ``ClientResponseEncoder``; it sets and
    /// clears this itself (a cycle while both live, broken when the handler is removed).
    var pipelining: PipeliningHandler?
    /// When the connection closes unless something happens first; nil while an exchange is in flight.
    var deadline: NIODeadline? { timer?.deadline }

    /// The first bytes of a header block arrived: the header deadline replaces the idle one.
    func headStarted(timeout: TimeAmount) {
        readingHead = true
        timer?.arm(in: timeout)
    }

    func headArrived() {
        awaitingHead = false
        readingHead = false
        timer?.disarm()
    }

    /// A head that declares a body arrived (``ProxyHandler``): the client may pause at most `timeout` between reads.
    func bodyStarted(timeout: TimeAmount) {
        readingBody = true
        bodyTimeout = timeout
        timer?.arm(in: timeout)
    }

    /// Bytes of the body arrived (``ClientTimeoutsHandler``), or reading resumed after backpressure.
    func bodyProgressed() {
        if readingBody { timer?.arm(in: bodyTimeout) }
    }

    /// The proxy stopped reading (the upstream is not taking the body): the client is not the one pausing.
    func bodyReadsPaused() {
        if readingBody { timer?.disarm() }
    }

    /// The request's end arrived, or the exchange ended without it (a closing answer).
    func bodyEnded() {
        guard readingBody else { return }
        readingBody = false
        timer?.disarm()
    }

    /// The response ended: the connection is idle until the next request's first byte.
    func exchangeFinished() {
        awaitingHead = true
        if let idleTimeout { timer?.arm(in: idleTimeout) }
    }
}

/// Closes a client connection that stays idle between requests longer than the idle timeout (counted from the end
/// of the last response, as nginx's `keepalive_timeout`), or whose header block is not complete `headerTimeout`
/// after its first byte (slowloris guard); reports a request body paused longer than the body timeout as
/// ``ClientBodyTimeoutEvent`` (the proxy answers 408 or ends the exchange).
///
/// Sits before the HTTP decoder and sees raw bytes. All deadlines live on one lazily re-armed ``DeadlineTimer``:
/// moving it per request costs a clock read, no scheduled task; a read of a body costs a clock read.
final class ClientTimeoutsHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let watch: HeadWatch
    let headerTimeout: TimeAmount

    init(watch: HeadWatch, headerTimeout: TimeAmount, idleTimeout: TimeAmount?) {
        self.watch = watch
        self.headerTimeout = headerTimeout
        watch.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let watch = self.watch
        watch.timer = DeadlineTimer(eventLoop: context.eventLoop) {
            // A stalled body is the proxy's to end: it may owe the client a 408 and must release the upstream.
            if watch.readingBody, channel.isActive {
                channel.pipeline.fireUserInboundEventTriggered(ClientBodyTimeoutEvent())
            } else {
                channel.close(promise: nil)
            }
        }
        if context.channel.isActive, let idle = watch.idleTimeout { watch.timer?.arm(in: idle) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if let idle = watch.idleTimeout { watch.timer?.arm(in: idle) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if watch.readingBody {
            watch.bodyProgressed()
        } else if watch.awaitingHead, !watch.readingHead {
            watch.headStarted(timeout: headerTimeout)
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        watch.timer?.cancel()
        context.fireChannelInactive()
    }

    /// Removed when a WebSocket upgrade turns the connection into a tunnel: no HTTP deadlines after that.
    func handlerRemoved(context: ChannelHandlerContext) {
        watch.timer?.cancel()
        watch.timer = nil
    }
}

/// The client paused longer than the body timeout in the middle of a request body (fired by
/// ``ClientTimeoutsHandler``, handled by ``ProxyHandler``).
struct ClientBodyTimeoutEvent: Sendable {}

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

/// Admission of a new client connection against the open-connection cap, decided once before its handlers are added:
/// an admitted connection's slot is released by its close future, so no handler sits on its read path for the cap
/// (one handler context and one hop per event less than a limit handler in the pipeline).
enum ConnectionAdmission {
    /// Takes a slot for `channel` and returns true, or gives it only the refusal handler and returns false.
    static func admit(_ channel: Channel, limit: ConnectionLimit) throws -> Bool {
        guard limit.admit() else {
            try channel.pipeline.syncOperations.addHandler(ConnectionRefusalHandler())
            return false
        }
        channel.closeFuture.whenComplete { _ in limit.release() }
        return true
    }
}

/// Answers a connection over the cap with 503 and closes it; nothing it sends is read.
final class ConnectionRefusalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        let body = #"{"error":"service_unavailable","reason":"connection_limit"}"#
        let response = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)"
        let channel = context.channel
        context.writeAndFlush(NIOAny(ByteBuffer(string: response))).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
