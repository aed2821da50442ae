import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import SidecarCore

/// The sidecar's metrics: swift-metrics handles over one swift-prometheus registry, all made at start-up.
///
/// On the request path a finished exchange costs one atomic add (the request counter) and one or two increments of
/// its event loop's own histogram counters — no lock: swift-prometheus guards each histogram with a lock taken per
/// observation, so the two duration histograms are kept per loop (``LoopHistogram``), merged and rendered here when
/// `/metrics` is scraped. Request counters are registered once per (outcome, status class) and then kept by each
/// event loop, so the registry's own lock is not taken per request either. Pool and cache figures also live on their
/// event loops and are read into the registry at scrape time.
public final class SidecarMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    let openConnections: Meter
    let upstreamPoolIdle: Meter
    let upstreamConnectionsOpened: CoreMetrics.Counter
    let upstreamRetries: CoreMetrics.Counter
    let tokenCacheHits: CoreMetrics.Counter
    let tokenCacheMisses: CoreMetrics.Counter
    let tokenCacheEntries: Meter
    let logLinesDropped: CoreMetrics.Counter
    /// The dropped-line total last added to `logLinesDropped` (scrapes may run on two loops at once).
    private let reportedLogDrops = NIOLockedValueBox(0)

    /// Upper bounds; latencies of a sidecar on loopback sit well under a millisecond.
    static let buckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    /// ``buckets`` in nanoseconds, for the loops' histograms.
    static let bucketNanoseconds: [Int64] = buckets.map { $0.components.seconds * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000 }
    static let requestDurationName = "authjs_sidecar_request_duration_seconds"
    static let requestDurationHelp = "Time from request head to the end of the response."
    static let upstreamDurationName = "authjs_sidecar_upstream_duration_seconds"
    static let upstreamDurationHelp = "Time from upstream connect/reuse to the end of the upstream response."
    static let requestsName = "authjs_sidecar_requests_total"
    static let requestsHelp = "Requests by auth outcome code and status class."
    /// Status class label by `status / 100` (0 = the response was aborted).
    static let statusClasses = ["aborted", "1xx", "2xx", "3xx", "4xx", "5xx"]

    public init() {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        self.registry = registry
        self.factory = factory
        func counter(_ name: String, _ help: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: [], handler: registry.makeCounter(descriptor: Self.descriptor(name, help)), factory: factory)
        }
        func gauge(_ name: String, _ help: String) -> Meter {
            Meter(label: name, dimensions: [], handler: registry.makeGauge(descriptor: Self.descriptor(name, help)), factory: factory)
        }
        openConnections = gauge("authjs_sidecar_open_connections", "Open client connections.")
        upstreamPoolIdle = gauge("authjs_sidecar_upstream_pool_idle", "Idle keep-alive upstream connections.")
        upstreamConnectionsOpened = counter("authjs_sidecar_upstream_connections_opened_total", "Upstream connections opened.")
        upstreamRetries = counter("authjs_sidecar_upstream_retries_total",
                                  "Idempotent bodiless requests sent again after a reused upstream connection closed before answering.")
        tokenCacheHits = counter("authjs_sidecar_token_cache_hits_total", "Verified-token cache hits.")
        tokenCacheMisses = counter("authjs_sidecar_token_cache_misses_total", "Verified-token cache misses.")
        tokenCacheEntries = gauge("authjs_sidecar_token_cache_entries", "Verified tokens cached.")
        logLinesDropped = counter("authjs_sidecar_log_lines_dropped_total",
                                  "Log lines dropped because stdout or stderr was not being read and the log buffer was full.")
    }

    /// Brings the dropped-log-line counter up to the sinks' current total.
    func reportLogDrops(total: Int) {
        reportedLogDrops.withLockedValue { reported in
            if total > reported { logLinesDropped.increment(by: Int64(total - reported)) }
            reported = max(reported, total)
        }
    }

    /// A full metric name (no namespace, subsystem or unit parts: the names above already carry them) and its help.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The request counter of one (outcome, status class). Takes the registry's lock: event loops keep the result.
    func requestCounter(outcome: String, statusClass: Int) -> CoreMetrics.Counter {
        let labels = [("outcome", outcome), ("status_class", Self.statusClasses[statusClass])]
        return CoreMetrics.Counter(label: Self.requestsName, dimensions: labels,
                                   handler: registry.makeCounter(descriptor: Self.descriptor(Self.requestsName, Self.requestsHelp), labels: labels),
                                   factory: factory)
    }

    /// The Prometheus text exposition (format 0.0.4) of everything registered, then the two duration histograms
    /// merged from the loops' own (each loop's copy is taken on its loop).
    func render(request: LoopHistogram, upstream: LoopHistogram) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8192)
        registry.emit(into: &out)
        request.render(name: Self.requestDurationName, help: Self.requestDurationHelp, into: &out)
        upstream.render(name: Self.upstreamDurationName, help: Self.upstreamDurationHelp, into: &out)
        return out
    }

    /// The exposition with the histograms of `loops` merged (tests and single-threaded callers).
    func render(_ loops: [LoopMetrics]) -> [UInt8] {
        var request = LoopHistogram(), upstream = LoopHistogram()
        for loop in loops {
            request.merge(loop.requestDuration)
            upstream.merge(loop.upstreamDuration)
        }
        return render(request: request, upstream: upstream)
    }
}

/// A duration histogram owned by one event loop: plain counters, touched only on that loop, so recording takes no
/// lock. Buckets are ``SidecarMetrics/buckets`` (a value equal to a bound counts in that bucket, as Prometheus's `le`).
struct LoopHistogram: Sendable {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    private(set) var counts = [Int](repeating: 0, count: SidecarMetrics.buckets.count + 1)
    private(set) var sumNanoseconds: Int64 = 0
    private(set) var count = 0

    mutating func record(nanoseconds: Int64) {
        let value = max(0, nanoseconds)
        let bounds = SidecarMetrics.bucketNanoseconds
        var i = 0
        while i < bounds.count, value > bounds[i] { i += 1 }
        counts[i] += 1
        sumNanoseconds &+= value
        count += 1
    }

    mutating func merge(_ other: LoopHistogram) {
        for i in counts.indices { counts[i] += other.counts[i] }
        sumNanoseconds &+= other.sumNanoseconds
        count += other.count
    }

    /// `# HELP`, `# TYPE`, cumulative `_bucket{le=…}` lines, `_sum` in seconds and `_count` — the lines
    /// swift-prometheus writes for its own duration histograms (same `le` spelling).
    func render(name: String, help: String, into out: inout [UInt8]) {
        func line(_ text: String) { out.append(contentsOf: text.utf8); out.append(0x0A) }
        line("# HELP \(name) \(help)")
        line("# TYPE \(name) histogram")
        var cumulative = 0
        for (i, bound) in SidecarMetrics.buckets.enumerated() {
            cumulative += counts[i]
            line("\(name)_bucket{le=\"\(bound.bucketRepresentation)\"} \(cumulative)")
        }
        line("\(name)_bucket{le=\"+Inf\"} \(count)")
        line("\(name)_sum \(Duration.nanoseconds(sumNanoseconds).bucketRepresentation)")
        line("\(name)_count \(count)")
    }
}

/// One event loop's side of the metrics: the request-counter handles it has used, and what it last reported of its
/// pool and cache counters (added to the registry's counters as differences at scrape time). Touched only on its loop.
struct LoopMetrics {
    struct RequestKey: Hashable {
        let outcome: String
        /// 1–5 for 1xx–5xx, 0 for an aborted response.
        let statusClass: Int
    }

    let shared: SidecarMetrics
    private(set) var requestDuration = LoopHistogram()
    private(set) var upstreamDuration = LoopHistogram()
    private var requestCounters: [RequestKey: CoreMetrics.Counter] = [:]
    private var lastRequest: (key: RequestKey, counter: CoreMetrics.Counter)?
    private var reportedCacheHits = 0
    private var reportedCacheMisses = 0
    private var reportedConnectionsOpened = 0
    private var reportedRetries = 0

    init(shared: SidecarMetrics) {
        self.shared = shared
    }

    /// Counts one finished exchange; `upstreamNanoseconds` is nil when it never reached the upstream.
    mutating func record(status: UInt, outcome: String, nanoseconds: Int64, upstreamNanoseconds: Int64?) {
        let key = RequestKey(outcome: outcome, statusClass: Int(min(status / 100, 5)))
        // Most requests repeat the last one's outcome and status class: compared, not hashed (the outcomes are short
        // strings, compared in place).
        if let last = lastRequest, last.key == key {
            last.counter.increment()
        } else if let counter = requestCounters[key] {
            lastRequest = (key, counter)
            counter.increment()
        } else {
            let counter = shared.requestCounter(outcome: key.outcome, statusClass: key.statusClass)
            requestCounters[key] = counter
            lastRequest = (key, counter)
            counter.increment()
        }
        requestDuration.record(nanoseconds: nanoseconds)
        if let upstreamNanoseconds { upstreamDuration.record(nanoseconds: upstreamNanoseconds) }
    }

    /// Adds what happened since the last scrape to the registry's counters; returns the loop's gauges.
    mutating func report(cacheHits: Int, cacheMisses: Int, connectionsOpened: Int, retries: Int = 0) {
        shared.tokenCacheHits.increment(by: Int64(cacheHits - reportedCacheHits))
        shared.tokenCacheMisses.increment(by: Int64(cacheMisses - reportedCacheMisses))
        shared.upstreamConnectionsOpened.increment(by: Int64(connectionsOpened - reportedConnectionsOpened))
        reportedCacheHits = cacheHits
        reportedCacheMisses = cacheMisses
        shared.upstreamRetries.increment(by: Int64(retries - reportedRetries))
        reportedConnectionsOpened = connectionsOpened
        reportedRetries = retries
    }
}

/// Serves `GET /metrics` on its own listener (never on the proxy port).
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Open connections the metrics listener takes at once (more get the raw 503), and how long one may sit idle.
    static let maxConnections = 32
    static let idleTimeout = TimeAmount.seconds(30)

    let loops: [LoopState]
    let connections: ConnectionLimit
    let metrics: SidecarMetrics

    init(loops: [LoopState], connections: ConnectionLimit, metrics: SidecarMetrics) {
        self.loops = loops
        self.connections = connections
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        guard head.uri == "/metrics" || head.uri.hasPrefix("/metrics?") else {
            write(context, .notFound, Array("not found\n".utf8))
            return
        }
        // Each loop reports its own counters and copies its histograms on its own thread; the rest is merged here.
        let gauges = loops.map { state in
            state.pool.eventLoop.submit { () -> (idle: Int, entries: Int, request: LoopHistogram, upstream: LoopHistogram) in
                state.metrics.report(cacheHits: state.cache.hits, cacheMisses: state.cache.misses, connectionsOpened: state.pool.opened,
                                    retries: state.upstreamRetries)
                return (state.pool.idleCount, state.cache.count, state.metrics.requestDuration, state.metrics.upstreamDuration)
            }
        }
        let connections = self.connections
        let metrics = self.metrics
        EventLoopFuture.whenAllSucceed(gauges, on: context.eventLoop).assumeIsolated().whenSuccess { all in
            metrics.upstreamPoolIdle.set(all.reduce(0) { $0 + $1.idle })
            metrics.tokenCacheEntries.set(all.reduce(0) { $0 + $1.entries })
            metrics.openConnections.set(connections.current)
            metrics.reportLogDrops(total: LogSink.standardOutput.dropped + LogSink.standardError.dropped)
            var request = LoopHistogram(), upstream = LoopHistogram()
            for loop in all {
                request.merge(loop.request)
                upstream.merge(loop.upstream)
            }
            self.write(context, .ok, metrics.render(request: request, upstream: upstream))
        }
    }

    private func write(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; version=0.0.4")
        headers.add(name: "content-length", value: String(body.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Closes a connection that neither read nor wrote anything for `timeout` (the metrics listener's connections), on the
/// loop's clock.
final class CloseWhenIdleHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    private let timeout: TimeAmount
    private var timer: DeadlineTimer?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        let timer = DeadlineTimer(eventLoop: context.eventLoop) { context.close(promise: nil) }
        self.timer = timer
        timer.arm(in: timeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        timer?.arm(in: timeout)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        timer?.arm(in: timeout)
        context.write(data, promise: promise)
    }
}
