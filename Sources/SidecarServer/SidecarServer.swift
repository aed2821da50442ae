import Dispatch
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import SidecarCore

/// Owns the event loops, the listener, the upstream pools and graceful shutdown.
public final class SidecarServer: @unchecked Sendable {
    let config: SidecarConfig
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    private var echoChannel: Channel?
    private var serverChannel: Channel?

    /// Receive buffers for client and upstream sockets: the first read of a connection gets 1 KiB (NIO's default is
    /// 2 KiB), as nginx's `client_header_buffer_size 1k`; NIO's adaptive allocator doubles it after a read that fills it
    /// (up to 64 KiB for bodies). A socket keeps its last buffer while idle, so this halves the buffer every idle
    /// keep-alive connection holds (−1 MiB per 1 000 connections, Tests/bench/HISTORY.md).
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536)

    /// `logger` takes the server's own messages (start, shutdown, warnings). Access lines do not go through it: they
    /// are written to stdout (JSON) or stderr (text) by ``LogSink``, per event-loop iteration, never blocking a loop.
    public init(config: SidecarConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
    }

    /// Binds and serves until SIGTERM/SIGINT, then drains in-flight requests up to the shutdown timeout.
    public func run() throws {
        // The loops stop only after `serve` returned and released what it made: the quiescing helper fails a promise
        // in its deinit, and NIO refuses work handed to a stopped loop (a crash under `SWIFTNIO_STRICT`, and in
        // future NIO versions).
        // Then the log writers get up to two seconds to write what the loops handed them (a reader that is still
        // stalled then loses the rest; the process does not hang on it).
        defer {
            try? group.syncShutdownGracefully()
            LogSink.drainStandardStreams(timeoutSeconds: 2)
        }
        try serve()
    }

    private func serve() throws {
        let quiesce = ServerQuiescingHelper(group: group)
        let upstreamAddress: SocketAddress
        var upstreamHost = "localhost"
        var basePath = ""
        switch config.upstream {
        case .echo:
            let echo = try EchoUpstream.start(group: group, host: "127.0.0.1", port: 0)
            echoChannel = echo
            upstreamAddress = echo.localAddress!
            upstreamHost = "127.0.0.1:\(echo.localAddress!.port!)"
            logger.notice("no upstream configured: running the built-in echo upstream (SIDECAR_UPSTREAM=echo)", metadata: ["echo": "\(upstreamAddress)"])
        case .http(let address, let hostHeader, let base):
            upstreamAddress = try Self.resolve(address)
            upstreamHost = hostHeader
            basePath = base
        }
        let sharedMetrics = SidecarMetrics()
        var loops: [ObjectIdentifier: LoopState] = [:]
        for loop in group.makeIterator() {
            let pool = UpstreamPool(eventLoop: loop, address: upstreamAddress, connectTimeout: .milliseconds(Int64(config.upstreamConnectTimeout * 1000)),
                                    maxIdle: config.upstreamMaxIdle, idleTimeout: .nanoseconds(Int64(config.upstreamIdleTimeout * 1e9)))
            loops[ObjectIdentifier(loop)] = LoopState(pool: pool, cacheCapacity: config.tokenCacheSize, metrics: sharedMetrics,
                                                      accessSink: AccessLog.sink(forFormat: config.logFormat))
        }
        let shared = ProxyContext(config: config, loops: loops, upstreamHost: upstreamHost, upstreamBasePath: basePath, logger: logger)
        let headerTimeout = TimeAmount.milliseconds(Int64(config.headerTimeout * 1000))
        let limit = ConnectionLimit(max: config.maxConnections)
        let idle = TimeAmount.milliseconds(Int64(config.idleTimeout * 1000))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelOption(.recvAllocator, value: SidecarServer.receiveBuffers)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.addClientHandlers(to: channel, limit: limit, headerTimeout: headerTimeout,
                                               idleTimeout: idle, shared: shared)
                }
            }
        let channel: Channel
        switch config.listen {
        case .tcp(let host, let port): channel = try bootstrap.bind(host: host, port: port).wait()
        case .unix(let path):
            SystemIO.removeStaleSocket(path)
            channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
        }
        serverChannel = channel
        var metricsChannel: Channel?
        if let metricsAddress = config.metricsListen {
            let states = Array(loops.values)
            // Its own small cap and an idle close: scrapers come and go, and idle connections held open here would
            // use up the file descriptors the main listener shares (found in review).
            let metricsLimit = ConnectionLimit(max: MetricsHandler.maxConnections)
            let metrics = ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard try ConnectionAdmission.admit(channel, limit: metricsLimit) else { return }
                        try channel.pipeline.syncOperations.addHandler(CloseWhenIdleHandler(timeout: MetricsHandler.idleTimeout))
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsHandler(loops: states, connections: limit, metrics: sharedMetrics))
                    }
                }
            switch metricsAddress {
            case .tcp(let host, let port): metricsChannel = try metrics.bind(host: host, port: port).wait()
            case .unix(let path):
                SystemIO.removeStaleSocket(path)
                metricsChannel = try metrics.bind(unixDomainSocketPath: path).wait()
            }
            logger.notice("metrics listening", metadata: ["metrics": "\(metricsChannel!.localAddress.map { "\($0)" } ?? "")"])
        }
        logger.notice("authjs-sidecar listening", metadata: [
            "listen": "\(channel.localAddress.map { "\($0)" } ?? config.listen.description)", "threads": "\(config.threads)",
            "upstream": "\(upstreamAddress)", "cookies": "\(config.authenticator.extractor.cookies.map(\.name).joined(separator: ","))",
            "secrets": "\(config.authenticator.verifier.keys.secretCount)",
        ])

        let done = DispatchSemaphore(value: 0)
        let signalQueue = DispatchQueue(label: "authjs-sidecar.signals")
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            // The helper weakly: a cancelled source releases its handler later, on its own queue.
            source.setEventHandler { [self, weak quiesce] in
                guard let quiesce else { return }
                logger.notice("shutting down: no new connections; draining in-flight requests", metadata: ["timeout_s": "\(config.shutdownTimeout)"])
                let promise = group.next().makePromise(of: Void.self)
                quiesce.initiateShutdown(promise: promise)
                promise.futureResult.whenComplete { _ in done.signal() }
                signalQueue.asyncAfter(deadline: .now() + config.shutdownTimeout) { done.signal() }
            }
            source.resume()
            sources.append(source)
        }
        withExtendedLifetime(quiesce) { done.wait() }  // the handlers hold it weakly
        for s in sources { s.cancel() }
        for state in loops.values { try? state.pool.eventLoop.submit { state.pool.closeAll() }.wait() }
        try? echoChannel?.close().wait()
        try? metricsChannel?.close().wait()
        logger.notice("stopped")
    }

    static func resolve(_ spec: SocketAddressSpec) throws -> SocketAddress {
        switch spec {
        case .tcp(let host, let port): return try SocketAddress.makeAddressResolvingHost(host, port: port)
        case .unix(let path): return try SocketAddress(unixDomainSocketPath: path)
        }
    }

    /// The HTTP/1 server pipeline of one client connection (the decoder forwards leftover bytes after a WebSocket
    /// upgrade): limit → timeouts (idle between requests, header block) → response encoder (which
    /// also validates response heads) → request decoder → pipelining → proxy (which also answers parse errors).
    static func addClientHandlers(to channel: Channel, limit: ConnectionLimit, headerTimeout: TimeAmount,
                                  idleTimeout: TimeAmount, shared: ProxyContext, watch: HeadWatch = HeadWatch()) throws {
        guard try ConnectionAdmission.admit(channel, limit: limit) else { return }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(ClientTimeoutsHandler(watch: watch, headerTimeout: headerTimeout, idleTimeout: idleTimeout))
        try sync.addHandler(ClientResponseEncoder(watch: watch))
        try sync.addHandler(ClientRequestDecoder())
        try sync.addHandler(PipeliningHandler(watch: watch, sendTimeout: shared.clientSendTimeout))
        try sync.addHandler(ProxyHandler(shared: shared, watch: watch))
    }
}

extension SidecarServer {
    /// The pipeline of one served client connection, for a channel the caller made: the same handlers, limits and
    /// policy as `run()` installs, with an upstream pool on `eventLoop`. The `pipeline` and `forward` fuzz targets
    /// drive it on an `EmbeddedChannel` with raw bytes; there the upstream connect fails like a refused one, unless
    /// `upstreamChannel` makes the upstream's channel (an `EmbeddedChannel` the caller answers on).
    public struct ClientPipeline: Sendable {
        let shared: ProxyContext
        let limit: ConnectionLimit
        let headerTimeout: TimeAmount
        let idleTimeout: TimeAmount

        public init(config: SidecarConfig, eventLoop: EventLoop, upstream: SocketAddress, upstreamHost: String, logger: Logger,
                    upstreamChannel: (@Sendable () -> EventLoopFuture<Channel>)? = nil) {
            let pool = UpstreamPool(eventLoop: eventLoop, address: upstream, connectTimeout: .milliseconds(Int64(config.upstreamConnectTimeout * 1000)),
                                    maxIdle: config.upstreamMaxIdle, idleTimeout: .nanoseconds(Int64(config.upstreamIdleTimeout * 1e9)),
                                    channelMaker: upstreamChannel)
            let state = LoopState(pool: pool, cacheCapacity: config.tokenCacheSize, metrics: SidecarMetrics(),
                                  accessSink: AccessLog.sink(forFormat: config.logFormat))
            shared = ProxyContext(config: config, loops: [ObjectIdentifier(eventLoop): state], upstreamHost: upstreamHost,
                                  upstreamBasePath: "", logger: logger)
            limit = ConnectionLimit(max: config.maxConnections)
            headerTimeout = .milliseconds(Int64(config.headerTimeout * 1000))
            idleTimeout = .milliseconds(Int64(config.idleTimeout * 1000))
        }

        /// Adds the handlers to `channel`, which must be on the pipeline's event loop.
        public func install(on channel: Channel) throws {
            try SidecarServer.addClientHandlers(to: channel, limit: limit, headerTimeout: headerTimeout, idleTimeout: idleTimeout,
                                                shared: shared)
        }
    }
}
