import CoreMetrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import SidecarCore

/// The sidecar's metrics: swift-metrics handles over one swift-prometheus registry, all made at start-up.
///
/// On the request path a finished exchange costs one atomic add (the request counter) and one or two histogram
/// observations (swift-prometheus guards each histogram with a lock; with one event-loop thread it is never
/// contended). Request counters are registered once per (outcome, status class) and then kept by each event loop,
/// so the registry's own lock is not taken per request. Pool and cache figures live on their event loops and are
/// read into the registry when `/metrics` is scraped.
public final class SidecarMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    let requestDuration: CoreMetrics.Timer
    let upstreamDuration: CoreMetrics.Timer
    let openConnections: Meter
    let upstreamPoolIdle: Meter
    let upstreamConnectionsOpened: CoreMetrics.Counter
    let upstreamRetries: CoreMetrics.Counter
    let tokenCacheHits: CoreMetrics.Counter
    let tokenCacheMisses: CoreMetrics.Counter
    let tokenCacheEntries: Meter

    /// Upper bounds; latencies of a sidecar on loopback sit well under a millisecond.
    static let buckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let requestsName = "authjs_sidecar_requests_total"
    static let requestsHelp = "Requests by auth outcome code and status class."
    /// Status class label by `status / 100` (0 = the response was aborted).
    static let statusClasses = ["aborted", "1xx", "2xx", "3xx", "4xx", "5xx"]

    public init() {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        self.registry = registry
        self.factory = factory
        func timer(_ name: String, _ help: String) -> CoreMetrics.Timer {
            CoreMetrics.Timer(label: name, dimensions: [], handler: registry.makeDurationHistogram(name: name, buckets: Self.buckets, help: help),
                              factory: factory)
        }
        func counter(_ name: String, _ help: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: [], handler: registry.makeCounter(name: name, help: help), factory: factory)
        }
        func gauge(_ name: String, _ help: String) -> Meter {
            Meter(label: name, dimensions: [], handler: registry.makeGauge(name: name, help: help), factory: factory)
        }
        requestDuration = timer("authjs_sidecar_request_duration_seconds", "Time from request head to the end of the response.")
        upstreamDuration = timer("authjs_sidecar_upstream_duration_seconds",
                                 "Time from upstream connect/reuse to the end of the upstream response.")
        openConnections = gauge("authjs_sidecar_open_connections", "Open client connections.")
        upstreamPoolIdle = gauge("authjs_sidecar_upstream_pool_idle", "Idle keep-alive upstream connections.")
        upstreamConnectionsOpened = counter("authjs_sidecar_upstream_connections_opened_total", "Upstream connections opened.")
        upstreamRetries = counter("authjs_sidecar_upstream_retries_total",
                                  "Idempotent bodiless requests sent again after a reused upstream connection closed before answering.")
        tokenCacheHits = counter("authjs_sidecar_token_cache_hits_total", "Verified-token cache hits.")
        tokenCacheMisses = counter("authjs_sidecar_token_cache_misses_total", "Verified-token cache misses.")
        tokenCacheEntries = gauge("authjs_sidecar_token_cache_entries", "Verified tokens cached.")
    }

    /// The request counter of one (outcome, status class). Takes the registry's lock: event loops keep the result.
    func requestCounter(outcome: String, statusClass: Int) -> CoreMetrics.Counter {
        let labels = [("outcome", outcome), ("status_class", Self.statusClasses[statusClass])]
        return CoreMetrics.Counter(label: Self.requestsName, dimensions: labels,
                                   handler: registry.makeCounter(name: Self.requestsName, labels: labels, help: Self.requestsHelp),
                                   factory: factory)
    }

    /// The Prometheus text exposition (format 0.0.4) of everything registered.
    func render() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8192)
        registry.emit(into: &out)
        return out
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
    private var requestCounters: [RequestKey: CoreMetrics.Counter] = [:]
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
        if let counter = requestCounters[key] {
            counter.increment()
        } else {
            let counter = shared.requestCounter(outcome: key.outcome, statusClass: key.statusClass)
            requestCounters[key] = counter
            counter.increment()
        }
        shared.requestDuration.recordNanoseconds(nanoseconds)
        if let upstreamNanoseconds { shared.upstreamDuration.recordNanoseconds(upstreamNanoseconds) }
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
        // Each loop reports its own counters on its own thread; the gauges are summed here.
        let gauges = loops.map { state in
            state.pool.eventLoop.submit { () -> (idle: Int, entries: Int) in
                state.metrics.report(cacheHits: state.cache.hits, cacheMisses: state.cache.misses, connectionsOpened: state.pool.opened,
                                    retries: state.upstreamRetries)
                return (state.pool.idleCount, state.cache.count)
            }
        }
        let connections = self.connections
        let metrics = self.metrics
        EventLoopFuture.whenAllSucceed(gauges, on: context.eventLoop).assumeIsolated().whenSuccess { all in
            metrics.upstreamPoolIdle.set(all.reduce(0) { $0 + $1.idle })
            metrics.tokenCacheEntries.set(all.reduce(0) { $0 + $1.entries })
            metrics.openConnections.set(connections.current)
            self.write(context, .ok, metrics.render())
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
