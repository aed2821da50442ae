import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// Request metrics of one event loop: plain integers owned by that loop, so recording takes no lock and no atomic.
/// The metrics endpoint gathers every loop's snapshot (hopping onto each loop) and renders the Prometheus text format.
struct LoopMetrics {
    /// Upper bounds in seconds; latencies of a sidecar on loopback sit well under a millisecond.
    static let buckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    struct Histogram {
        var counts = [Int](repeating: 0, count: LoopMetrics.buckets.count + 1)
        var sum = 0.0

        mutating func observe(_ seconds: Double) {
            var i = 0
            while i < LoopMetrics.buckets.count, seconds > LoopMetrics.buckets[i] { i += 1 }
            counts[i] += 1
            sum += seconds
        }

        mutating func merge(_ other: Histogram) {
            for i in counts.indices { counts[i] += other.counts[i] }
            sum += other.sum
        }
    }

    struct RequestKey: Hashable {
        let outcome: String
        /// 1–5 for 1xx–5xx, 0 for an aborted response.
        let statusClass: Int
    }

    /// Keyed by (outcome, status class); outcomes are the bounded set of verification codes and fixed words.
    var requests: [RequestKey: Int] = [:]
    var total = Histogram()
    var upstream = Histogram()
    var cacheHits = 0
    var cacheMisses = 0
    var cacheEntries = 0
    var poolIdle = 0
    var poolOpened = 0

    mutating func record(status: UInt, outcome: String, seconds: Double, upstreamSeconds: Double?) {
        requests[RequestKey(outcome: outcome, statusClass: Int(min(status / 100, 5))), default: 0] += 1
        total.observe(seconds)
        if let upstreamSeconds { upstream.observe(upstreamSeconds) }
    }

    mutating func merge(_ other: LoopMetrics) {
        for (k, v) in other.requests { requests[k, default: 0] += v }
        total.merge(other.total)
        upstream.merge(other.upstream)
        cacheHits += other.cacheHits
        cacheMisses += other.cacheMisses
        cacheEntries += other.cacheEntries
        poolIdle += other.poolIdle
        poolOpened += other.poolOpened
    }

    static func render(_ m: LoopMetrics, openConnections: Int) -> String {
        var out = ""
        out += "# HELP authjs_sidecar_requests_total Requests by auth outcome code and status class.\n# TYPE authjs_sidecar_requests_total counter\n"
        for (key, value) in m.requests.sorted(by: { ($0.key.outcome, $0.key.statusClass) < ($1.key.outcome, $1.key.statusClass) }) {
            let statusClass = key.statusClass == 0 ? "aborted" : "\(key.statusClass)xx"
            out += "authjs_sidecar_requests_total{outcome=\"\(key.outcome)\",status_class=\"\(statusClass)\"} \(value)\n"
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            var cumulative = 0
            for (i, bound) in buckets.enumerated() {
                cumulative += h.counts[i]
                out += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += h.counts[buckets.count]
            out += "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n\(name)_sum \(h.sum)\n\(name)_count \(cumulative)\n"
        }
        histogram("authjs_sidecar_request_duration_seconds", "Time from request head to the end of the response.", m.total)
        histogram("authjs_sidecar_upstream_duration_seconds", "Time from upstream connect/reuse to the end of the upstream response.", m.upstream)
        out += "# HELP authjs_sidecar_open_connections Open client connections.\n# TYPE authjs_sidecar_open_connections gauge\nauthjs_sidecar_open_connections \(openConnections)\n"
        out += "# HELP authjs_sidecar_upstream_pool_idle Idle keep-alive upstream connections.\n# TYPE authjs_sidecar_upstream_pool_idle gauge\nauthjs_sidecar_upstream_pool_idle \(m.poolIdle)\n"
        out += "# HELP authjs_sidecar_upstream_connections_opened_total Upstream connections opened.\n# TYPE authjs_sidecar_upstream_connections_opened_total counter\nauthjs_sidecar_upstream_connections_opened_total \(m.poolOpened)\n"
        out += "# HELP authjs_sidecar_token_cache_hits_total Verified-token cache hits.\n# TYPE authjs_sidecar_token_cache_hits_total counter\nauthjs_sidecar_token_cache_hits_total \(m.cacheHits)\n"
        out += "# HELP authjs_sidecar_token_cache_misses_total Verified-token cache misses.\n# TYPE authjs_sidecar_token_cache_misses_total counter\nauthjs_sidecar_token_cache_misses_total \(m.cacheMisses)\n"
        out += "# HELP authjs_sidecar_token_cache_entries Verified tokens cached.\n# TYPE authjs_sidecar_token_cache_entries gauge\nauthjs_sidecar_token_cache_entries \(m.cacheEntries)\n"
        return out
    }
}

/// Serves `GET /metrics` on its own listener (never on the proxy port).
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let loops: [LoopState]
    let connections: ConnectionLimit

    init(loops: [LoopState], connections: ConnectionLimit) {
        self.loops = loops
        self.connections = connections
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        guard head.uri == "/metrics" || head.uri.hasPrefix("/metrics?") else {
            write(context, .notFound, "not found\n")
            return
        }
        let snapshots = loops.map { state in
            state.pool.eventLoop.submit { () -> LoopMetrics in
                var m = state.metrics
                m.cacheHits = state.cache.hits
                m.cacheMisses = state.cache.misses
                m.cacheEntries = state.cache.count
                m.poolIdle = state.pool.idleCount
                m.poolOpened = state.pool.opened
                return m
            }
        }
        let connections = self.connections
        EventLoopFuture.whenAllSucceed(snapshots, on: context.eventLoop).assumeIsolated().whenSuccess { all in
            var merged = LoopMetrics()
            for m in all { merged.merge(m) }
            self.write(context, .ok, LoopMetrics.render(merged, openConnections: connections.current))
        }
    }

    private func write(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; version=0.0.4")
        headers.add(name: "content-length", value: String(body.utf8.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
