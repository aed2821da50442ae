import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// Parses Prometheus text exposition lines (`name{labels} value`) into a dictionary; comments kept apart.
struct PrometheusText {
    var samples: [String: Double] = [:]
    var order: [String] = []
    var types: [String: String] = [:]
    var helps: Set<String> = []

    init(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(text.hasSuffix("\n"), "exposition ends with a newline", sourceLocation: sourceLocation)
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                types[String(parts[2])] = String(parts[3])
            } else if line.hasPrefix("# HELP ") {
                helps.insert(String(line.split(separator: " ")[2]))
            } else {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                    Issue.record("not a sample line: \(line)", sourceLocation: sourceLocation)
                    continue
                }
                let key = String(line[..<space])
                #expect(samples[key] == nil, "duplicate sample \(key)", sourceLocation: sourceLocation)
                samples[key] = value
                order.append(key)
            }
        }
    }

    /// `(le, cumulative count)` of one histogram's buckets, in exposition order.
    func buckets(_ name: String) -> [(le: String, count: Double)] {
        order.filter { $0.hasPrefix(name + "_bucket{le=\"") }.map { key in
            let le = key.dropFirst((name + "_bucket{le=\"").count).dropLast(2)
            return (String(le), samples[key]!)
        }
    }
}

extension LoopMetrics {
    /// `authjs_sidecar_requests_total{outcome,status_class}` as rendered (independent of how the counters are keyed).
    func requestCount(_ outcome: String, _ statusClass: String) -> Int? {
        PrometheusText(LoopMetrics.render(self, openConnections: 0))
            .samples["authjs_sidecar_requests_total{outcome=\"\(outcome)\",status_class=\"\(statusClass)\"}"].map { Int($0) }
    }

    /// How many `authjs_sidecar_requests_total` series are rendered.
    var requestSeries: Int {
        PrometheusText(LoopMetrics.render(self, openConnections: 0)).samples.keys.filter { $0.hasPrefix("authjs_sidecar_requests_total{") }.count
    }
}

@Suite("LoopMetrics")
struct LoopMetricsTests {
    @Test func statusClasses() {
        var m = LoopMetrics()
        m.record(status: 200, outcome: "ok", seconds: 0.001, upstreamSeconds: 0.0005)
        m.record(status: 204, outcome: "preflight", seconds: 0.001, upstreamSeconds: nil)
        m.record(status: 101, outcome: "ok", seconds: 0.001, upstreamSeconds: 0.001)
        m.record(status: 401, outcome: "expired", seconds: 0.001, upstreamSeconds: nil)
        m.record(status: 499, outcome: "client_closed", seconds: 0.001, upstreamSeconds: nil)
        m.record(status: 502, outcome: "upstream_unreachable", seconds: 0.001, upstreamSeconds: 0.001)
        m.record(status: 0, outcome: "upstream_closed", seconds: 0.001, upstreamSeconds: 0.001)
        #expect(m.requestCount("ok", "2xx") == 1)
        #expect(m.requestCount("ok", "1xx") == 1)
        #expect(m.requestCount("preflight", "2xx") == 1)
        #expect(m.requestCount("expired", "4xx") == 1)
        #expect(m.requestCount("client_closed", "4xx") == 1)
        #expect(m.requestCount("upstream_unreachable", "5xx") == 1)
        #expect(m.requestCount("upstream_closed", "aborted") == 1)
        #expect(m.requestSeries == 7)
        #expect(m.total.counts.reduce(0, +) == 7)
        #expect(m.upstream.counts.reduce(0, +) == 4, "only exchanges that reached the upstream are timed there")
    }

    @Test func bucketBoundariesAreInclusive() {
        var h = LoopMetrics.Histogram()
        for (i, bound) in LoopMetrics.buckets.enumerated() {
            h.observe(bound)
            #expect(h.counts[i] == 1, "a value equal to le=\(bound) counts in that bucket")
        }
        h.observe(LoopMetrics.buckets.last! * 2)
        #expect(h.counts.last == 1, "values over the largest bound land in the +Inf overflow")
        h.observe(0)
        #expect(h.counts[0] == 2)
        #expect(h.counts.count == LoopMetrics.buckets.count + 1)
    }

    @Test func bucketsAreSortedAndDistinct() {
        let b = LoopMetrics.buckets
        #expect(zip(b, b.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func mergeAddsEverything() {
        var a = LoopMetrics()
        a.record(status: 200, outcome: "ok", seconds: 0.0002, upstreamSeconds: 0.0001)
        a.record(status: 401, outcome: "missing_token", seconds: 0.00005, upstreamSeconds: nil)
        a.cacheHits = 3; a.cacheMisses = 1; a.cacheEntries = 2; a.poolIdle = 1; a.poolOpened = 4
        var b = LoopMetrics()
        b.record(status: 200, outcome: "ok", seconds: 3, upstreamSeconds: 2.9)
        b.record(status: 0, outcome: "upstream_timeout", seconds: 60, upstreamSeconds: 60)
        b.cacheHits = 10; b.cacheMisses = 5; b.cacheEntries = 7; b.poolIdle = 2; b.poolOpened = 6

        var merged = LoopMetrics()
        merged.merge(a)
        merged.merge(b)
        #expect(merged.requestCount("ok", "2xx") == 2)
        #expect(merged.requestCount("missing_token", "4xx") == 1)
        #expect(merged.requestCount("upstream_timeout", "aborted") == 1)
        #expect(merged.total.counts.reduce(0, +) == 4)
        #expect(merged.upstream.counts.reduce(0, +) == 3)
        #expect(abs(merged.total.sum - (0.0002 + 0.00005 + 3 + 60)) < 1e-9)
        #expect(abs(merged.upstream.sum - (0.0001 + 2.9 + 60)) < 1e-9)
        #expect(merged.cacheHits == 13)
        #expect(merged.cacheMisses == 6)
        #expect(merged.cacheEntries == 9)
        #expect(merged.poolIdle == 3)
        #expect(merged.poolOpened == 10)
        for i in merged.total.counts.indices {
            #expect(merged.total.counts[i] == a.total.counts[i] + b.total.counts[i])
        }
    }

    @Test func renderProducesPrometheusTextWithCumulativeBuckets() throws {
        var m = LoopMetrics()
        m.record(status: 200, outcome: "ok", seconds: 0.00005, upstreamSeconds: 0.00004)
        m.record(status: 200, outcome: "ok", seconds: 0.003, upstreamSeconds: 0.002)
        m.record(status: 401, outcome: "missing_token", seconds: 0.0002, upstreamSeconds: nil)
        m.record(status: 0, outcome: "upstream_closed", seconds: 20, upstreamSeconds: 19)
        m.cacheHits = 5; m.cacheMisses = 2; m.cacheEntries = 1; m.poolIdle = 3; m.poolOpened = 8

        let text = LoopMetrics.render(m, openConnections: 17)
        let p = PrometheusText(text)

        #expect(p.samples[#"authjs_sidecar_requests_total{outcome="ok",status_class="2xx"}"#] == 2)
        #expect(p.samples[#"authjs_sidecar_requests_total{outcome="missing_token",status_class="4xx"}"#] == 1)
        #expect(p.samples[#"authjs_sidecar_requests_total{outcome="upstream_closed",status_class="aborted"}"#] == 1)
        #expect(p.types["authjs_sidecar_requests_total"] == "counter")

        let total = "authjs_sidecar_request_duration_seconds"
        #expect(p.types[total] == "histogram")
        let buckets = p.buckets(total)
        #expect(buckets.count == LoopMetrics.buckets.count + 1)
        #expect(buckets.last?.le == "+Inf")
        for (i, bound) in LoopMetrics.buckets.enumerated() {
            #expect(Double(buckets[i].le) == bound, "le label \(buckets[i].le) parses back to \(bound)")
        }
        let counts = buckets.map(\.count)
        #expect(zip(counts, counts.dropFirst()).allSatisfy { $0 <= $1 }, "buckets are cumulative: \(counts)")
        // 0.00005 ≤ 0.0001; 0.0002 ≤ 0.00025; 0.003 ≤ 0.005; 20 only in +Inf.
        func at(_ le: String) -> Double? { buckets.first { $0.le == le }?.count }
        let index0001 = LoopMetrics.buckets.firstIndex(of: 0.0001)!
        #expect(counts[index0001] == 1)
        #expect(counts[LoopMetrics.buckets.firstIndex(of: 0.00025)!] == 2)
        #expect(counts[LoopMetrics.buckets.firstIndex(of: 0.0025)!] == 2)
        #expect(counts[LoopMetrics.buckets.firstIndex(of: 0.005)!] == 3)
        #expect(counts[LoopMetrics.buckets.firstIndex(of: 10)!] == 3)
        #expect(at("+Inf") == 4)
        #expect(p.samples["\(total)_count"] == 4)
        #expect(abs((p.samples["\(total)_sum"] ?? 0) - 20.00325) < 1e-9)

        let upstream = "authjs_sidecar_upstream_duration_seconds"
        #expect(p.types[upstream] == "histogram")
        #expect(p.samples["\(upstream)_count"] == 3)
        #expect(p.buckets(upstream).last?.count == 3)

        #expect(p.samples["authjs_sidecar_open_connections"] == 17)
        #expect(p.types["authjs_sidecar_open_connections"] == "gauge")
        #expect(p.samples["authjs_sidecar_upstream_pool_idle"] == 3)
        #expect(p.samples["authjs_sidecar_upstream_connections_opened_total"] == 8)
        #expect(p.samples["authjs_sidecar_token_cache_hits_total"] == 5)
        #expect(p.samples["authjs_sidecar_token_cache_misses_total"] == 2)
        #expect(p.samples["authjs_sidecar_token_cache_entries"] == 1)
        // Every metric family has HELP and TYPE.
        for family in p.types.keys { #expect(p.helps.contains(family), "\(family) has no HELP") }
        #expect(p.types.count == 9)
    }

    @Test func renderOfEmptyMetricsHasZeroHistograms() {
        let p = PrometheusText(LoopMetrics.render(LoopMetrics(), openConnections: 0))
        #expect(p.samples["authjs_sidecar_request_duration_seconds_count"] == 0)
        #expect(p.samples["authjs_sidecar_request_duration_seconds_sum"] == 0)
        #expect(p.buckets("authjs_sidecar_request_duration_seconds").allSatisfy { $0.count == 0 })
        #expect(!p.samples.keys.contains { $0.hasPrefix("authjs_sidecar_requests_total{") })
    }

    @Test func requestLinesAreSortedForStableOutput() {
        var m = LoopMetrics()
        for outcome in ["zeta", "alpha", "ok", "expired"] { m.record(status: 401, outcome: outcome, seconds: 0, upstreamSeconds: nil) }
        let p = PrometheusText(LoopMetrics.render(m, openConnections: 0))
        let lines = p.order.filter { $0.hasPrefix("authjs_sidecar_requests_total{") }
        #expect(lines == lines.sorted())
        #expect(lines.count == 4)
    }
}

@Suite("MetricsHandler")
struct MetricsHandlerTests {
    static func make() throws -> (EmbeddedChannel, EmbeddedEventLoop, LoopState, ConnectionLimit) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let state = LoopState(pool: UpstreamPool(eventLoop: loop, address: ServerFixtures.dummyUpstream, connectTimeout: .seconds(1)),
                              cacheCapacity: 16)
        let limit = ConnectionLimit(max: 10)
        try channel.pipeline.syncOperations.addHandler(MetricsHandler(loops: [state], connections: limit))
        return (channel, loop, state, limit)
    }

    static func get(_ channel: EmbeddedChannel, _ loop: EmbeddedEventLoop, _ uri: String) throws -> (HTTPResponseHead, String)? {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        loop.run()
        guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return nil }
        var body = ""
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            if case .body(.byteBuffer(let b)) = part { body += String(buffer: b) }
            if case .end = part { break }
        }
        return (head, body)
    }

    @Test func servesTheMergedSnapshot() throws {
        let (channel, loop, state, limit) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        state.metrics.record(status: 200, outcome: "ok", seconds: 0.001, upstreamSeconds: 0.0005)
        state.metrics.record(status: 0, outcome: "upstream_closed", seconds: 0.001, upstreamSeconds: 0.0005)
        #expect(limit.admit() && limit.admit())
        let (head, body) = try #require(try Self.get(channel, loop, "/metrics"))
        #expect(head.status == .ok)
        #expect(head.headers["content-type"].first?.hasPrefix("text/plain") == true)
        #expect(head.headers["content-length"].first == String(body.utf8.count))
        let p = PrometheusText(body)
        #expect(p.samples[#"authjs_sidecar_requests_total{outcome="ok",status_class="2xx"}"#] == 1)
        #expect(p.samples[#"authjs_sidecar_requests_total{outcome="upstream_closed",status_class="aborted"}"#] == 1)
        #expect(p.samples["authjs_sidecar_open_connections"] == 2)
        #expect(p.samples["authjs_sidecar_token_cache_entries"] == 0)
        #expect(p.samples["authjs_sidecar_upstream_connections_opened_total"] == 0)
    }

    @Test func otherPathsAre404() throws {
        let (channel, loop, _, _) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let (head, _) = try #require(try Self.get(channel, loop, "/metricsx"))
        #expect(head.status == .notFound)
        let (withQuery, _) = try #require(try Self.get(channel, loop, "/metrics?name[]=x"))
        #expect(withQuery.status == .ok)
    }
}
