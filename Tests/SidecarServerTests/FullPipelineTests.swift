import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidecarCore
import Testing
@testable import SidecarServer

/// The child pipeline `SidecarServer.run()` builds (limit → header timeout → idle → codec → pipelining → 400 on
/// parse errors → proxy), rebuilt here on an EmbeddedChannel so raw bytes go in and raw bytes come out.
/// Keep in step with `SidecarServer.swift`'s `childChannelInitializer`.
final class RawHarness {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel
    let watch = HeadWatch()
    let config: SidecarConfig
    let limit: ConnectionLimit
    /// With `upstream: true`, the upstream connections opened so far: in-process channels on the same loop; what the
    /// sidecar sends is read from their outbound side, and the test answers by firing bytes into them.
    final class Upstreams: @unchecked Sendable { var channels: [EmbeddedChannel] = [] }
    let upstreams = Upstreams()

    init(_ overrides: [String: String] = [:], limit: ConnectionLimit = ConnectionLimit(max: 100), upstream: Bool = false) throws {
        let config = try ServerFixtures.config(overrides)
        self.config = config
        self.limit = limit
        let maker = upstream ? Self.upstreamMaker(loop: loop, upstreams: upstreams) : nil
        let pool = UpstreamPool(eventLoop: loop, address: ServerFixtures.dummyUpstream, connectTimeout: .seconds(1), channelMaker: maker)
        let state = LoopState(pool: pool, cacheCapacity: config.tokenCacheSize, metrics: SidecarMetrics())
        let shared = ProxyContext(config: config, loops: [ObjectIdentifier(loop): state], upstreamHost: "127.0.0.1:9",
                                  upstreamBasePath: "", logger: ServerFixtures.silentLogger)
        channel = EmbeddedChannel(loop: loop)
        try SidecarServer.addClientHandlers(to: channel, limit: limit,
                                            headerTimeout: .milliseconds(Int64(config.headerTimeout * 1000)),
                                            idleTimeout: .milliseconds(Int64(config.idleTimeout * 1000)), shared: shared, watch: watch)
        try channel.connect(to: ServerFixtures.dummyClient).wait()
    }

    /// The client channel first (an exchange in flight closes its upstream connection), then the upstream channels
    /// still open (pooled): each pipeline holds its pool through its handler and the pool holds the connection, a
    /// cycle only a close breaks — left open, LeakSanitizer reports it.
    deinit {
        _ = try? channel.finish(acceptAlreadyClosed: true)
        for upstream in upstreams.channels { _ = try? upstream.finish(acceptAlreadyClosed: true) }
    }

    private static func upstreamMaker(loop: EmbeddedEventLoop, upstreams: Upstreams) -> @Sendable () -> EventLoopFuture<Channel> {
        return {
            let channel = EmbeddedChannel(loop: loop)
            do { try channel.connect(to: ServerFixtures.dummyUpstream).wait() } catch { return loop.makeFailedFuture(error) }
            upstreams.channels.append(channel)
            return loop.makeSucceededFuture(channel)
        }
    }

    func send(_ raw: String) throws { try channel.writeInbound(ByteBuffer(string: raw)) }

    /// Everything the sidecar has sent to upstream connection `index` so far.
    func upstreamInput(_ index: Int = 0) throws -> String {
        guard index < upstreams.channels.count else { return "" }
        var out = ""
        while let b = try upstreams.channels[index].readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        return out
    }

    /// The upstream's bytes, as if read from its socket.
    func upstreamAnswers(_ raw: String, _ index: Int = 0) {
        let channel = upstreams.channels[index]
        channel.pipeline.fireChannelRead(ByteBuffer(string: raw))
        channel.pipeline.fireChannelReadComplete()
    }

    /// Everything written to the wire so far.
    func output() throws -> String {
        var out = ""
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        return out
    }

    /// Status lines of the responses in `output`, in order (a response's body runs straight into the next status
    /// line, so they are found anywhere, not only at line starts; no test body contains one).
    static func statusLines(_ output: String) -> [String] {
        output.matches(of: /HTTP\/1\.[01] [0-9]{3} [^\r]*/).map { String($0.output) }
    }
}

@Suite("Server pipeline (raw bytes)")
struct FullPipelineTests {
    @Test func healthzOverTheWire() throws {
        let h = try RawHarness()
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: sidecar\r\nX-Request-Id: wire-1\r\n\r\n")
        let out = try h.output()
        #expect(out.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(out.lowercased().contains("\r\nx-request-id: wire-1\r\n"))
        #expect(out.hasSuffix("\r\n\r\n" + #"{"status":"ok"}"#))
        #expect(h.channel.isActive)
    }

    @Test func pipelinedRequestsInOneSegmentAreAnsweredInOrder() throws {
        let h = try RawHarness()
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\nX-Request-Id: p1\r\n\r\n"
                   + "GET /api/orders HTTP/1.1\r\nHost: s\r\nX-Request-Id: p2\r\n\r\n"
                   + "GET /docs%2fx HTTP/1.1\r\nHost: s\r\nX-Request-Id: p3\r\n\r\n"
                   + "HEAD /_sidecar/healthz HTTP/1.1\r\nHost: s\r\nX-Request-Id: p4\r\n\r\n")
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 200 OK", "HTTP/1.1 401 Unauthorized", "HTTP/1.1 400 Bad Request", "HTTP/1.1 200 OK"])
        let ids = out.components(separatedBy: "\r\n").filter { $0.lowercased().hasPrefix("x-request-id:") }
        #expect(ids.map { $0.lowercased() } == ["x-request-id: p1", "x-request-id: p2", "x-request-id: p3", "x-request-id: p4"])
        #expect(h.channel.isActive)
    }

    /// An unparsable request gets a JSON 400 with `Connection: close` from `ProxyHandler.errorCaught`, and the
    /// connection closes at once (Tests/e2e/test_smuggling.py `assert_rejected` expects the close within 1.5 s).
    @Test(arguments: [
        "GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\nBad Header Without Colon\r\n\r\n",
        "GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : s\r\n\r\n",
    ])
    func unparsableRequestIs400AndCloses(_ raw: String) throws {
        let h = try RawHarness()
        try? h.send(raw)
        h.loop.run()
        let out = try h.output()
        #expect(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(out.lowercased().contains("connection: close"))
        #expect(!h.channel.isActive, "the 400 says Connection: close but the sidecar keeps the connection open")
    }

    @Test func parserErrorAfterACompleteRequestStillAnswersTheFirst() throws {
        let h = try RawHarness()
        try? h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\nGARBAGE\r\n\r\n")
        let lines = RawHarness.statusLines(try h.output())
        #expect(lines.first == "HTTP/1.1 200 OK")
        #expect(lines.count == 2 ? lines[1] == "HTTP/1.1 400 Bad Request" : true)
    }

    @Test func slowHeaderBlockIsClosedAfterTheHeaderTimeout() throws {
        let h = try RawHarness(["SIDECAR_HEADER_TIMEOUT": "5"])
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n")
        h.loop.advanceTime(by: .milliseconds(4900))
        #expect(h.channel.isActive)
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(!h.channel.isActive)
        // The decoder's `decodeLast` on close turns the partial head into a parser error; the connection is gone, so
        // no 400 is written (an EmbeddedChannel records writes after close) nor counted.
        #expect(try h.output() == "")
    }

    /// Found by the `pipeline` fuzz target: `GET /` + CRLF CRLF and one more byte made two parse errors (the second
    /// from the bytes left at the close), and each was answered and counted as a 400.
    @Test(arguments: ["GET /\r\n\r\n\u{BF}", "GET / HTTP/1.1\r\nHost: s\r\nBad Header\r\n\r\nGET /"])
    func aParseErrorIsAnsweredOnce(_ raw: String) throws {
        let h = try RawHarness()
        try? h.send(raw)
        h.loop.run()
        _ = try? h.channel.finish(acceptAlreadyClosed: true)
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 400 Bad Request"])
    }

    /// Both read deadlines run on the event loop's clock, so the embedded loop's `advanceTime` drives them.
    @Test func idleKeepAliveConnectionIsNotClosedByTheHeaderTimeout() throws {
        let h = try RawHarness(["SIDECAR_HEADER_TIMEOUT": "5", "SIDECAR_IDLE_TIMEOUT": "60"])
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 200 OK"])
        #expect(h.watch.deadline != nil && !h.watch.readingHead, "idle: the idle deadline runs")
        h.loop.advanceTime(by: .seconds(30))
        #expect(h.channel.isActive, "an idle keep-alive connection is not a slow header block")
        // The next request's first bytes start the header deadline.
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\n")
        h.loop.advanceTime(by: .seconds(5))
        #expect(!h.channel.isActive)
    }

    @Test func idleKeepAliveConnectionIsClosedAfterTheIdleTimeout() throws {
        let h = try RawHarness(["SIDECAR_HEADER_TIMEOUT": "5", "SIDECAR_IDLE_TIMEOUT": "60"])
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 200 OK"])
        h.loop.advanceTime(by: .seconds(59))
        #expect(h.channel.isActive)
        h.loop.advanceTime(by: .seconds(1))
        #expect(!h.channel.isActive, "closed 60 s after the response")
    }

    /// A request with a body that is answered locally on a keep-alive connection (a CORS preflight, a health check
    /// or a forward-auth check that carries a body): `ProxyHandler` marks the exchange finished as soon as it answers
    /// from the head, so body bytes arriving in a later read look like the start of the next header block to
    /// `ClientTimeoutsHandler`, which arms the slowloris timer. The connection is then closed `header_timeout`
    /// after the body, although the client sent a complete request and is merely idle.
    @Test(arguments: [
        "OPTIONS /api/orders HTTP/1.1\r\nHost: s\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nContent-Length: 4\r\n\r\n",
        "GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\nContent-Length: 4\r\n\r\n",
    ])
    func bodyOfALocallyAnsweredRequestDoesNotArmTheHeaderTimeout(_ head: String) throws {
        let h = try RawHarness(["SIDECAR_HEADER_TIMEOUT": "5", "SIDECAR_IDLE_TIMEOUT": "60"])
        try h.send(head)
        try h.send("ab")
        try h.send("cd")
        let lines = RawHarness.statusLines(try h.output())
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("HTTP/1.1 2") == true)
        #expect(!h.watch.readingHead, "a header timer is armed by body bytes of a request whose head was complete")
        h.loop.advanceTime(by: .seconds(6))
        #expect(h.channel.isActive, "a complete request followed by idleness was closed by the header timeout")
    }

    @Test func secondConnectionOverTheLimitGetsRaw503() throws {
        let limit = ConnectionLimit(max: 1)
        let first = try RawHarness(limit: limit)
        let second = try RawHarness(limit: limit)
        #expect(first.channel.isActive)
        let out = try second.output()
        #expect(out.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(!second.channel.isActive)
        // Bytes the refused client sent anyway never reach the HTTP handlers.
        try? second.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        #expect(try second.output().isEmpty)
    }
}

/// Found by the `forward` fuzz target: a request with a body, pipelined behind another and delivered from the
/// pipelining queue when that one's response ended, was forwarded but its body and end never flushed upstream (the
/// flush rides on the client's read-complete, and no read happened): the upstream waited, the client got a 504.
@Suite("Server pipeline: pipelined requests reach the upstream whole")
struct PipelinedForwardingTests {
    @Test(arguments: ["HEAD", "GET"])
    func aPipelinedRequestWithABodyIsFlushedUpstream(first: String) throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        let cookie = "Cookie: \(ServerFixtures.cookieName)=\(try ServerFixtures.token())\r\n"
        try h.send("\(first) /b HTTP/1.1\r\nHost: s\r\n\(cookie)\r\n"
                   + "POST /c HTTP/1.1\r\nHost: s\r\n\(cookie)Content-Length: 3\r\n\r\nabc")
        #expect(try h.upstreamInput().hasPrefix("\(first) /b HTTP/1.1\r\n"))
        h.upstreamAnswers(first == "HEAD" ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        let forwarded = try h.upstreamInput()
        #expect(forwarded.hasPrefix("POST /c HTTP/1.1\r\n") && forwarded.hasSuffix("\r\n\r\nabc"), "the queued request went upstream whole")
        h.upstreamAnswers("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 200 OK", "HTTP/1.1 201 Created"])
    }
}

/// `client_body_timeout`: how long a client may pause in the middle of a request body (as nginx's), and the
/// upstream's wait, which counts from the last request bytes it was sent. Driven on the loop's clock.
@Suite("Server pipeline: request body deadlines")
struct BodyDeadlineTests {
    static let timeouts = ["SIDECAR_CLIENT_BODY_TIMEOUT": "5", "SIDECAR_UPSTREAM_TIMEOUT": "60", "SIDECAR_IDLE_TIMEOUT": "600",
                           "SIDECAR_HEADER_TIMEOUT": "10"]

    static func post(length: Int, token: String?) -> String {
        let cookie = token.map { "Cookie: \(ServerFixtures.cookieName)=\($0)\r\n" } ?? ""
        return "POST /api/upload HTTP/1.1\r\nHost: s\r\n\(cookie)Content-Length: \(length)\r\n\r\n"
    }

    /// Whatever the upstream timeout, a client that stops sending is the client's timeout (408), not the upstream's
    /// (504): the upstream is only waiting for the rest of the body. With both deadlines running, the shorter or the
    /// first scheduled one won, and slow clients were counted as `upstream_timeout`.
    @Test(arguments: ["60", "5", "3"])
    func aForwardedRequestWhoseBodyStallsGets408AndItsUpstreamConnectionIsClosed(upstreamTimeout: String) throws {
        let h = try RawHarness(Self.timeouts.merging(["SIDECAR_UPSTREAM_TIMEOUT": upstreamTimeout]) { $1 }, upstream: true)
        try h.send(Self.post(length: 10, token: try ServerFixtures.token()) + "abcd")
        #expect(try h.upstreamInput().hasSuffix("\r\n\r\nabcd"), "head and the first body bytes are forwarded at once")
        h.loop.advanceTime(by: .milliseconds(4900))
        #expect(try h.output() == "" && h.channel.isActive)
        h.loop.advanceTime(by: .milliseconds(200))
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 408 Request Timeout"])
        #expect(out.lowercased().contains("\r\nconnection: close\r\n"))
        #expect(out.contains(#""error":"request_timeout""#) && out.contains(#""reason":"client_body_timeout""#))
        #expect(!h.upstreams.channels[0].isActive, "the upstream connection holds half a request: it is closed, never pooled")
        h.loop.advanceTime(by: .seconds(1))  // the lingering close
        #expect(!h.channel.isActive)
    }

    @Test func aBodyThatKeepsComingIsNotCutHoweverLongItTakes() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(Self.post(length: 20, token: try ServerFixtures.token()))
        for _ in 0..<20 {  // 80 s in all, every pause under the 5 s body timeout
            h.loop.advanceTime(by: .seconds(4))
            try h.send("x")
        }
        #expect(try h.upstreamInput().hasSuffix("\r\n\r\n" + String(repeating: "x", count: 20)))
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 200 OK"])
        #expect(out.hasSuffix("\r\n\r\nok") && h.channel.isActive)
    }

    /// The upstream timeout used to run from the upstream connection's attach: an upload longer than it got a 504
    /// although the upstream was only waiting for the rest of the body.
    @Test func anUploadLongerThanTheUpstreamTimeoutIsNotA504() throws {
        let h = try RawHarness(Self.timeouts.merging(["SIDECAR_UPSTREAM_TIMEOUT": "6"]) { $1 }, upstream: true)
        try h.send(Self.post(length: 5, token: try ServerFixtures.token()))
        for _ in 0..<5 {
            h.loop.advanceTime(by: .seconds(4))
            try h.send("y")
        }
        #expect(try h.output() == "", "20 s of upload against a 6 s upstream timeout")
        // Once the request is complete, the upstream has its 6 s to answer.
        h.loop.advanceTime(by: .milliseconds(5900))
        #expect(try h.output() == "")
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 504 Gateway Timeout"])
    }

    /// Before the body deadline, a client that stopped in the middle of the body of a request the sidecar had
    /// already answered (401 here) held its connection for ever: no timer ran while the body was drained.
    @Test func aStalledBodyAfterALocalAnswerClosesTheConnection() throws {
        let h = try RawHarness(Self.timeouts)
        try h.send(Self.post(length: 10, token: nil) + "abcd")
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 401 Unauthorized"])
        h.loop.advanceTime(by: .milliseconds(4900))
        #expect(h.channel.isActive)
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(!h.channel.isActive)
        #expect(try h.output() == "", "the 401 was the answer; nothing more is written")
    }

    @Test func theBodyDeadlineEndsWithTheBody() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(Self.post(length: 4, token: try ServerFixtures.token()) + "abcd")
        #expect(!h.watch.readingBody)
        h.loop.advanceTime(by: .seconds(30))  // the upstream thinks; the client has nothing more to send
        #expect(try h.output() == "" && h.channel.isActive)
        h.upstreamAnswers("HTTP/1.1 204 No Content\r\n\r\n")
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 204 No Content"])
    }

    @Test func anUpstreamThatStopsTakingTheBodyGets504() throws {
        let h = try RawHarness(Self.timeouts.merging(["SIDECAR_UPSTREAM_TIMEOUT": "8"]) { $1 }, upstream: true)
        try h.send(Self.post(length: 10, token: try ServerFixtures.token()) + "ab")
        h.upstreams.channels[0].isWritable = false
        try h.send("cd")
        h.loop.advanceTime(by: .milliseconds(7900))
        #expect(try h.output() == "")
        h.loop.advanceTime(by: .milliseconds(200))
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 504 Gateway Timeout"] && out.contains(#""reason":"upstream_timeout""#))
    }

    /// While the upstream takes no more of the body the sidecar stops reading the client: the client is not the one
    /// pausing, and its body deadline waits (the upstream's own deadline runs instead).
    @Test func aPauseForUpstreamBackpressureIsNotTheClientsStall() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(Self.post(length: 10, token: try ServerFixtures.token()) + "ab")
        let upstream = h.upstreams.channels[0]
        upstream.isWritable = false
        try h.send("cd")  // forwarded, and the upstream is not writable: reads pause
        h.loop.advanceTime(by: .seconds(30))
        #expect(try h.output() == "" && h.channel.isActive, "no 408 while the sidecar itself stopped reading")
        upstream.isWritable = true
        upstream.pipeline.fireChannelWritabilityChanged()
        h.loop.advanceTime(by: .milliseconds(4900))
        #expect(try h.output() == "")
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 408 Request Timeout"], "reading resumed: the client's deadline runs again")
    }
}

/// The deadlines of a response being relayed: the upstream's between reads of a response that continues
/// (`upstream_timeout`, as nginx's `proxy_read_timeout`), and the client's while it takes none of it
/// (`client_send_timeout`, as nginx's `send_timeout`). Without them either side could hold both connections for ever.
@Suite("Server pipeline: response deadlines")
struct ResponseDeadlineTests {
    static let timeouts = ["SIDECAR_UPSTREAM_TIMEOUT": "60", "SIDECAR_CLIENT_SEND_TIMEOUT": "20", "SIDECAR_IDLE_TIMEOUT": "600"]

    static func get() throws -> String {
        "GET /api/report HTTP/1.1\r\nHost: s\r\nCookie: \(ServerFixtures.cookieName)=\(try ServerFixtures.token())\r\n\r\n"
    }

    @Test func anUpstreamThatStopsInTheMiddleOfAResponseIsCut() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(try Self.get())
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        let relayed = try h.output()
        #expect(RawHarness.statusLines(relayed) == ["HTTP/1.1 200 OK"] && relayed.hasSuffix("\r\n\r\nabc"))
        h.loop.advanceTime(by: .milliseconds(59_900))
        #expect(h.channel.isActive)
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(!h.channel.isActive, "60 s without a byte of the rest of the response: the client sees it cut")
        #expect(!h.upstreams.channels[0].isActive)
        #expect(try h.output() == "", "nothing is added to a response that was started")
    }

    @Test func aResponseThatKeepsComingIsNotCutHoweverLongItTakes() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(try Self.get())
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        for piece in ["a", "b", "c", "d"] {  // 200 s in all, each pause under the 60 s upstream timeout
            h.loop.advanceTime(by: .seconds(50))
            h.upstreamAnswers(piece)
        }
        h.loop.advanceTime(by: .seconds(50))
        h.upstreamAnswers("e")
        let out = try h.output()
        #expect(out.hasSuffix("\r\n\r\nabcde") && h.channel.isActive)
        h.loop.advanceTime(by: .seconds(120))
        #expect(h.channel.isActive, "the exchange ended: its deadline is gone (the idle timeout is 600 s)")
    }

    @Test func aClientThatTakesNoneOfTheResponseIsCutAfterTheSendTimeout() throws {
        let h = try RawHarness(Self.timeouts.merging(["SIDECAR_UPSTREAM_TIMEOUT": "5"]) { $1 }, upstream: true)
        try h.send(try Self.get())
        h.channel.isWritable = false  // the client's window is full
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
        // While the client takes nothing, the upstream is not read, and its silence is not the upstream's fault.
        h.loop.advanceTime(by: .milliseconds(19_900))
        #expect(h.channel.isActive && h.upstreams.channels[0].isActive)
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(!h.channel.isActive, "20 s without the client taking any of the response")
        #expect(!h.upstreams.channels[0].isActive)
    }

    /// The client's window was already full when the response began (a head and body in one read): the head must
    /// not clear the client's send deadline, or a client that never reads would hold both connections again.
    @Test func aClientThatIsNotReadingWhenTheResponseBeginsIsStillCut() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(try Self.get())
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
        h.loop.advanceTime(by: .milliseconds(19_900))
        #expect(h.channel.isActive)
        h.loop.advanceTime(by: .milliseconds(200))
        #expect(!h.channel.isActive && !h.upstreams.channels[0].isActive)
    }

    @Test func aClientThatReadsSlowlyIsNotCut() throws {
        let h = try RawHarness(Self.timeouts, upstream: true)
        try h.send(try Self.get())
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
        for piece in ["w", "x", "y"] {  // each time: the window fills, 15 s later the client drains it
            h.channel.isWritable = false
            h.upstreamAnswers(piece)
            h.loop.advanceTime(by: .seconds(15))
            h.channel.isWritable = true
            h.channel.pipeline.fireChannelWritabilityChanged()
        }
        h.upstreamAnswers("z")
        #expect(try h.output().hasSuffix("\r\n\r\nwxyz") && h.channel.isActive)
    }
}
