import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Prometheus
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

extension SidecarMetrics {
    /// The exposition with the histograms of `loops` merged, parsed.
    func text(_ loops: [LoopMetrics] = []) -> PrometheusText { PrometheusText(String(decoding: render(loops), as: UTF8.self)) }

    /// `authjs_sidecar_requests_total{outcome,status_class}` as rendered.
    func requestCount(_ outcome: String, _ statusClass: String) -> Int? {
        text().samples["authjs_sidecar_requests_total{outcome=\"\(outcome)\",status_class=\"\(statusClass)\"}"].map { Int($0) }
    }

    /// How many `authjs_sidecar_requests_total` series are rendered.
    var requestSeries: Int { text().samples.keys.filter { $0.hasPrefix("authjs_sidecar_requests_total{") }.count }

    /// `<name>_count` of a histogram merged over `loops`.
    func histogramCount(_ name: String, _ loops: [LoopMetrics]) -> Int? { text(loops).samples["\(name)_count"].map { Int($0) } }
}

extension LoopMetrics {
    func requestCount(_ outcome: String, _ statusClass: String) -> Int? { shared.requestCount(outcome, statusClass) }
    /// The exposition as a scrape of this loop alone renders it.
    var text: PrometheusText { shared.text([self]) }
    func histogramCount(_ name: String) -> Int? { shared.histogramCount(name, [self]) }
}

@Suite("SidecarMetrics")
struct SidecarMetricsTests {
    static let total = "authjs_sidecar_request_duration_seconds"
    static let upstream = "authjs_sidecar_upstream_duration_seconds"
    static func ms(_ x: Double) -> Int64 { Int64(x * 1_000_000) }

    @Test func statusClasses() {
        var m = LoopMetrics(shared: SidecarMetrics())
        m.record(status: 200, outcome: "ok", nanoseconds: Self.ms(1), upstreamNanoseconds: Self.ms(0.5))
        m.record(status: 204, outcome: "preflight", nanoseconds: Self.ms(1), upstreamNanoseconds: nil)
        m.record(status: 101, outcome: "ok", nanoseconds: Self.ms(1), upstreamNanoseconds: Self.ms(1))
        m.record(status: 401, outcome: "expired", nanoseconds: Self.ms(1), upstreamNanoseconds: nil)
        m.record(status: 499, outcome: "client_closed", nanoseconds: Self.ms(1), upstreamNanoseconds: nil)
        m.record(status: 502, outcome: "upstream_unreachable", nanoseconds: Self.ms(1), upstreamNanoseconds: Self.ms(1))
        m.record(status: 0, outcome: "upstream_closed", nanoseconds: Self.ms(1), upstreamNanoseconds: Self.ms(1))
        m.record(status: 200, outcome: "ok", nanoseconds: Self.ms(1), upstreamNanoseconds: Self.ms(0.5))
        #expect(m.requestCount("ok", "2xx") == 2)
        #expect(m.requestCount("ok", "1xx") == 1)
        #expect(m.requestCount("preflight", "2xx") == 1)
        #expect(m.requestCount("expired", "4xx") == 1)
        #expect(m.requestCount("client_closed", "4xx") == 1)
        #expect(m.requestCount("upstream_unreachable", "5xx") == 1)
        #expect(m.requestCount("upstream_closed", "aborted") == 1)
        #expect(m.shared.requestSeries == 7)
        #expect(m.histogramCount(Self.total) == 8)
        #expect(m.histogramCount(Self.upstream) == 5, "only exchanges that reached the upstream are timed there")
    }

    @Test func loopsShareOneRegistry() {
        let shared = SidecarMetrics()
        var a = LoopMetrics(shared: shared)
        var b = LoopMetrics(shared: shared)
        a.record(status: 200, outcome: "ok", nanoseconds: 200_000, upstreamNanoseconds: 100_000)
        a.record(status: 401, outcome: "missing_token", nanoseconds: 50_000, upstreamNanoseconds: nil)
        b.record(status: 200, outcome: "ok", nanoseconds: 3_000_000_000, upstreamNanoseconds: 2_900_000_000)
        b.record(status: 0, outcome: "upstream_timeout", nanoseconds: 60_000_000_000, upstreamNanoseconds: 60_000_000_000)
        #expect(shared.requestCount("ok", "2xx") == 2)
        #expect(shared.requestCount("missing_token", "4xx") == 1)
        #expect(shared.requestCount("upstream_timeout", "aborted") == 1)
        #expect(shared.histogramCount(Self.total, [a, b]) == 4)
        #expect(shared.histogramCount(Self.upstream, [a, b]) == 3)
        #expect(a.histogramCount(Self.total) == 2, "each loop keeps its own observations until a scrape merges them")
        let p = shared.text([a, b])
        #expect(abs((p.samples["\(Self.total)_sum"] ?? 0) - (0.0002 + 0.00005 + 3 + 60)) < 1e-9)
        #expect(abs((p.samples["\(Self.upstream)_sum"] ?? 0) - (0.0001 + 2.9 + 60)) < 1e-9)
    }

    @Test func scrapeReportsAddDifferencesPerLoop() {
        let shared = SidecarMetrics()
        var a = LoopMetrics(shared: shared)
        var b = LoopMetrics(shared: shared)
        a.report(cacheHits: 3, cacheMisses: 1, connectionsOpened: 4)
        b.report(cacheHits: 10, cacheMisses: 5, connectionsOpened: 6)
        var p = shared.text()
        #expect(p.samples["authjs_sidecar_token_cache_hits_total"] == 13)
        #expect(p.samples["authjs_sidecar_token_cache_misses_total"] == 6)
        #expect(p.samples["authjs_sidecar_upstream_connections_opened_total"] == 10)
        // A second scrape adds only what changed since the first.
        a.report(cacheHits: 5, cacheMisses: 1, connectionsOpened: 4)
        b.report(cacheHits: 10, cacheMisses: 7, connectionsOpened: 9)
        p = shared.text()
        #expect(p.samples["authjs_sidecar_token_cache_hits_total"] == 15)
        #expect(p.samples["authjs_sidecar_token_cache_misses_total"] == 8)
        #expect(p.samples["authjs_sidecar_upstream_connections_opened_total"] == 13)
    }

    @Test func bucketBoundariesAreInclusiveAndCumulative() throws {
        let shared = SidecarMetrics()
        var m = LoopMetrics(shared: shared)
        for bound in SidecarMetrics.buckets {
            let (s, atto) = bound.components
            m.record(status: 200, outcome: "ok", nanoseconds: s * 1_000_000_000 + atto / 1_000_000_000, upstreamNanoseconds: nil)
        }
        m.record(status: 200, outcome: "ok", nanoseconds: 20_000_000_000, upstreamNanoseconds: nil)
        let buckets = m.text.buckets(Self.total)
        try #require(buckets.count == SidecarMetrics.buckets.count + 1)
        #expect(buckets.last?.le == "+Inf")
        for (i, bound) in SidecarMetrics.buckets.enumerated() {
            let (s, atto) = bound.components
            #expect(Double(buckets[i].le) == Double(s) + Double(atto) / 1e18, "le label \(buckets[i].le) is \(bound) in seconds")
            #expect(buckets[i].count == Double(i + 1), "a value equal to le=\(buckets[i].le) counts in that bucket (cumulative)")
        }
        #expect(buckets.last?.count == Double(SidecarMetrics.buckets.count + 1), "values over the largest bound land only in +Inf")
    }

    @Test("a loop histogram renders the exact lines swift-prometheus renders for the same observations")
    func loopHistogramMatchesSwiftPrometheus() {
        let observations: [Int64] = [0, 99_999, 100_000, 100_001, 1_000_000, 2_500_000, 7_000_000, 1_000_000_000,
                                     9_999_999_999, 10_000_000_000, 12_345_678_901, 60_000_000_000]
        let registry = PrometheusCollectorRegistry()
        let reference = registry.makeDurationHistogram(descriptor: SidecarMetrics.descriptor(SidecarMetricsTests.total, SidecarMetrics.requestDurationHelp),
                                                       buckets: SidecarMetrics.buckets)
        var mine = LoopHistogram()
        for ns in observations {
            reference.recordNanoseconds(ns)
            mine.record(nanoseconds: ns)
        }
        var expected: [UInt8] = []
        registry.emit(into: &expected)
        var rendered: [UInt8] = []
        mine.render(name: SidecarMetricsTests.total, help: SidecarMetrics.requestDurationHelp, into: &rendered)
        #expect(String(decoding: rendered, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
    }

    @Test func bucketsAreSortedAndDistinct() {
        let b = SidecarMetrics.buckets
        #expect(zip(b, b.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func everyFamilyHasHelpAndTypeAndEmptyHistogramsReadZero() {
        let shared = SidecarMetrics()
        var m = LoopMetrics(shared: shared)
        m.record(status: 401, outcome: "missing_token", nanoseconds: 1000, upstreamNanoseconds: nil)
        let p = m.text
        #expect(p.types["authjs_sidecar_requests_total"] == "counter")
        #expect(p.types[Self.total] == "histogram")
        #expect(p.types["authjs_sidecar_open_connections"] == "gauge")
        for family in p.types.keys { #expect(p.helps.contains(family), "\(family) has no HELP") }
        #expect(p.types["authjs_sidecar_log_lines_dropped_total"] == "counter")
        #expect(p.types.count == 11)
        #expect(p.samples["\(Self.upstream)_count"] == 0)
        #expect(p.buckets(Self.upstream).allSatisfy { $0.count == 0 })
    }

    /// The sinks' dropped totals only grow; each scrape adds what is new (two scrapes may report the same total).
    @Test func droppedLogLinesFollowTheSinksTotal() {
        let shared = SidecarMetrics()
        let m = LoopMetrics(shared: shared)
        #expect(m.text.samples["authjs_sidecar_log_lines_dropped_total"] == 0)
        shared.reportLogDrops(total: 5)
        shared.reportLogDrops(total: 5)
        #expect(m.text.samples["authjs_sidecar_log_lines_dropped_total"] == 5)
        shared.reportLogDrops(total: 12)
        #expect(m.text.samples["authjs_sidecar_log_lines_dropped_total"] == 12)
    }
}

@Suite("MetricsHandler")
struct MetricsHandlerTests {
    static func make() throws -> (EmbeddedChannel, EmbeddedEventLoop, LoopState, ConnectionLimit) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let state = LoopState(pool: UpstreamPool(eventLoop: loop, address: ServerFixtures.dummyUpstream, connectTimeout: .seconds(1)),
                              cacheCapacity: 16, metrics: SidecarMetrics())
        let limit = ConnectionLimit(max: 10)
        try channel.pipeline.syncOperations.addHandler(MetricsHandler(loops: [state], connections: limit, metrics: state.metrics.shared))
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
        state.metrics.record(status: 200, outcome: "ok", nanoseconds: 1_000_000, upstreamNanoseconds: 500_000)
        state.metrics.record(status: 0, outcome: "upstream_closed", nanoseconds: 1_000_000, upstreamNanoseconds: 500_000)
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
        #expect(p.samples["authjs_sidecar_request_duration_seconds_count"] == 2)
        // Scraping again does not count the loop's counters twice.
        let (_, again) = try #require(try Self.get(channel, loop, "/metrics"))
        #expect(PrometheusText(again).samples[#"authjs_sidecar_requests_total{outcome="ok",status_class="2xx"}"#] == 1)
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

@Suite("Metrics listener guards")
struct MetricsListenerGuardTests {
    /// A scraper's connection left idle is closed after the timeout (idle connections held open would use up the
    /// file descriptors the main listener shares); one still in use is not.
    @Test func anIdleMetricsConnectionIsClosed() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(CloseWhenIdleHandler(timeout: MetricsHandler.idleTimeout))
        try channel.connect(to: ServerFixtures.dummyClient).wait()
        loop.advanceTime(by: MetricsHandler.idleTimeout - .seconds(1))
        try channel.writeInbound(ByteBuffer(string: "GET /metrics HTTP/1.1\r\n"))
        loop.advanceTime(by: .seconds(2))
        #expect(channel.isActive, "traffic restarted the clock")
        loop.advanceTime(by: MetricsHandler.idleTimeout)
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}
