import NIOCore
import NIOEmbedded
import Testing
@testable import SidecarServer

/// What a forwarded request looks like upstream when the client plays with hop-by-hop fields, pipelining and
/// upgrades — the places an adversarial review of the proxy path found the sidecar and its upstream could read one
/// byte stream two ways (all through the real pipeline, raw bytes in and out).
@Suite("Server pipeline: forwarding edge cases")
struct ForwardingEdgeTests {
    static func cookie() throws -> String { "Cookie: \(ServerFixtures.cookieName)=\(try ServerFixtures.token())\r\n" }

    /// `Connection: content-length` once dropped the `Content-Length` line while the body still went upstream: the
    /// upstream read a request without a body and the body as the next request (smuggled past the route policy, with
    /// whatever `X-Auth-*` fields it carried). A `Connection` list never removes the framing.
    @Test(arguments: ["keep-alive, Content-Length", "content-length", "CONTENT-LENGTH, x-drop", "transfer-encoding, content-length"])
    func connectionCannotRemoveTheBodysLength(connection: String) throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        let smuggled = "GET /admin HTTP/1.1\r\nHost: s\r\nX-Auth-Sub: admin\r\n\r\n"
        try h.send("POST /api/x HTTP/1.1\r\nHost: s\r\n\(try Self.cookie())Connection: \(connection)\r\nX-Drop: 1\r\n"
                   + "Content-Length: \(smuggled.utf8.count)\r\n\r\n\(smuggled)")
        let upstream = try h.upstreamInput()
        let head = upstream.components(separatedBy: "\r\n\r\n")[0].lowercased()
        #expect(head.contains("\r\ncontent-length: \(smuggled.utf8.count)"), "\(upstream)")
        #expect(!head.contains("transfer-encoding"))
        #expect(upstream.hasSuffix("\r\n\r\n" + smuggled), "the body goes up as the request's body")
        if connection.lowercased().contains("x-drop") { #expect(!head.contains("x-drop"), "a listed field is still hop-by-hop") }
    }

    /// The same list on the upstream's side: a response's `Content-Length` stays, so the client reads the body by it.
    @Test func upstreamConnectionListCannotRemoveTheResponsesLength() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("GET /api/x HTTP/1.1\r\nHost: s\r\n\(try Self.cookie())\r\n")
        _ = try h.upstreamInput()
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello")
        let out = try h.output()
        let head = out.components(separatedBy: "\r\n\r\n")[0].lowercased()
        #expect(head.contains("\r\ncontent-length: 5"), "\(out)")
        #expect(!head.contains("x-hop") && !head.contains("transfer-encoding"))
        #expect(out.hasSuffix("\r\n\r\nhello"))
    }

    /// A long `Connection` list is read once into a set: every listed field is dropped, every other kept (the list
    /// was scanned once per field — thousands of tokens × thousands of fields on one request).
    @Test func aLongConnectionListDropsExactlyTheListedFields() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        let listed = (0..<2_000).map { "x-l\($0)" }.joined(separator: ", ")
        let fields = (0..<300).map { "X-L\($0 * 7): a\r\nX-K\($0): b\r\n" }.joined()
        try h.send("GET /api/x HTTP/1.1\r\nHost: s\r\n\(try Self.cookie())Connection: keep-alive, \(listed)\r\n\(fields)\r\n")
        let head = try h.upstreamInput().lowercased()
        for i in 0..<300 {
            #expect(head.contains("\r\nx-l\(i * 7): a\r\n") == (i * 7 >= 2_000), "x-l\(i * 7)")
            #expect(head.contains("\r\nx-k\(i): b\r\n"), "x-k\(i)")
        }
    }

    /// A request pipelined behind an answer that closes the connection is not served: it was forwarded while the
    /// answer was written, and its own answer lost — a client told `Connection: close` sends it again.
    @Test(arguments: ["TRACE / HTTP/1.1\r\nHost: s\r\n\r\n", "GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"])
    func aRequestBehindAClosingAnswerIsNotForwarded(first: String) throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send(first + "POST /docs/x HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\r\nhi")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out).count == 1, "\(out)")
        #expect(out.lowercased().contains("connection: close"))
        #expect(h.upstreams.channels.isEmpty, "nothing went upstream")
        #expect(!h.channel.isActive)
    }

    /// `Connection: upgrade<HTAB>` is no upgrade to the parser (as to llhttp), so none is forwarded either: the
    /// proxy asked the upstream to upgrade while the parser went on reading the next bytes as requests.
    @Test func anUpgradeTheParserDidNotStopForIsNotForwarded() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("GET /docs/ws HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: upgrade\t\r\n\r\n")
        let head = try h.upstreamInput().lowercased()
        #expect(head.hasPrefix("get /docs/ws http/1.1\r\n"))
        #expect(!head.contains("upgrade"), "\(head)")
    }

    /// An upstream that declines an upgrade (any answer but 101) is not pooled: a server may treat the bytes after
    /// such a request as the other protocol's, so the next request would go to a connection in an unknown state.
    @Test func aDeclinedUpgradesUpstreamConnectionIsNotReused() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("GET /docs/ws HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        let head = try h.upstreamInput().lowercased()
        #expect(head.contains("\r\nconnection: upgrade\r\n") && head.contains("\r\nupgrade: websocket\r\n"))
        h.upstreamAnswers("HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
        h.loop.run()
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 426 Upgrade Required"])
        #expect(!h.upstreams.channels[0].isActive, "the declined upgrade's upstream connection was closed, not pooled")
    }

    /// Forwarded preflights (`cors_preflight_passthrough`) go up with the normalised origin-form path, as every
    /// forwarded request does; a target that does not normalise is refused.
    @Test(arguments: [("/a/./b/../c;x=1?q=1", "/a/c?q=1"), ("/x//y", "/x/y")])
    func aForwardedPreflightCarriesTheNormalisedPath(target: String, forwarded: String) throws {
        let h = try RawHarness(["SIDECAR_CORS_PREFLIGHT_PASSTHROUGH": "true", "SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("OPTIONS \(target) HTTP/1.1\r\nHost: s\r\nOrigin: \(ServerFixtures.allowedOrigin)\r\n"
                   + "Access-Control-Request-Method: PUT\r\n\r\n")
        #expect(try h.upstreamInput().hasPrefix("OPTIONS \(forwarded) HTTP/1.1\r\n"))
    }

    @Test(arguments: ["*", "http://evil/x", "/a%2Fb"])
    func aPreflightWhoseTargetDoesNotNormaliseIsRefused(target: String) throws {
        let h = try RawHarness(["SIDECAR_CORS_PREFLIGHT_PASSTHROUGH": "true", "SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("OPTIONS \(target) HTTP/1.1\r\nHost: s\r\nOrigin: \(ServerFixtures.allowedOrigin)\r\n"
                   + "Access-Control-Request-Method: PUT\r\n\r\n")
        h.loop.run()
        #expect(RawHarness.statusLines(try h.output()).first == "HTTP/1.1 400 Bad Request")
        #expect(h.upstreams.channels.isEmpty)
    }

    /// Shutting down, the last answer's `Connection: close` ends the connection: a request read behind it in the same
    /// segment is not forwarded (it was, and its answer was lost; found in the second review).
    @Test func aRequestBehindTheLastAnswerOfAShutdownIsNotForwarded() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\n"
                   + "POST /api/x HTTP/1.1\r\nHost: s\r\n\(try Self.cookie())Content-Length: 0\r\n\r\n")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 200 OK"], "\(out)")
        #expect(out.lowercased().contains("connection: close"))
        #expect(h.upstreams.channels.isEmpty, "nothing went upstream")
    }

    /// After an answer that said `Connection: close` (a 401 whose body is being drained), a parse error in that body
    /// only closes: a second answer was written after the last one.
    @Test func aParseErrorAfterTheLastAnswerOnlyCloses() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try? h.send("POST /api/x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 401 Unauthorized"], "\(out)")
        #expect(!h.channel.isActive)
    }

    /// An upstream's `X_Request_Id` is relayed but is no request id: the sidecar's own `x-request-id` is still added.
    @Test func anUnderscoreRequestIDFromTheUpstreamDoesNotReplaceTheSidecars() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("GET /api/x HTTP/1.1\r\nHost: s\r\n\(try Self.cookie())X-Request-Id: mine-1\r\n\r\n")
        _ = try h.upstreamInput()
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nX_Request_Id: theirs\r\nContent-Length: 0\r\n\r\n")
        let head = try h.output().lowercased()
        #expect(head.contains("\r\nx-request-id: mine-1\r\n"), "\(head)")
        #expect(head.contains("\r\nx_request_id: theirs\r\n"))
    }

    /// Cross-site WebSocket hijacking: browsers apply no CORS to WebSockets and send the session cookie with an upgrade
    /// from any same-site page, so an upgrade whose Origin is neither this host nor an allowed CORS origin is refused.
    @Test(arguments: [
        ("https://evil.example.net", "s", false), ("https://app.example.com.evil.net", "s", false), ("null", "s", false),
        (ServerFixtures.allowedOrigin, "s", true), ("http://s", "s", true), ("http://S", "s:80", true), ("https://api.x", "API.X:443", true),
        ("https://api.x:8443", "api.x:8443", true), ("https://api.x:8443", "api.x", false), ("http://s", "s:81", false), (nil, "s", true),
    ] as [(String?, String, Bool)])
    func aWebSocketUpgradeNeedsItsOwnOrAnAllowedOrigin(origin: String?, host: String, forwarded: Bool) throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        let originLine = origin.map { "Origin: \($0)\r\n" } ?? ""
        try h.send("GET /api/ws HTTP/1.1\r\nHost: \(host)\r\n\(try Self.cookie())\(originLine)Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        h.loop.run()
        if forwarded {
            #expect(try h.upstreamInput().lowercased().contains("\r\nupgrade: websocket\r\n"), "\(origin ?? "no origin") → \(host)")
        } else {
            let out = try h.output()
            #expect(RawHarness.statusLines(out) == ["HTTP/1.1 403 Forbidden"], "\(out)")
            #expect(out.contains("origin_rejected"))
            #expect(h.upstreams.channels.isEmpty)
        }
    }

    /// An upstream's first frames read with its 101 go to the client raw: the splice once handed them to the glue
    /// while the client's response encoder was still in place, which trapped on them (a crash; found in review).
    @Test func bytesThatCameWithThe101ReachTheClientRaw() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("GET /docs/ws HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nclient-first")
        _ = try h.upstreamInput()
        h.upstreamAnswers("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nserver-first")
        h.loop.run()
        let out = try h.output()
        #expect(out.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"), "\(out)")
        #expect(out.hasSuffix("\r\n\r\nserver-first"))
        #expect(try h.upstreamInput() == "client-first")
        h.upstreamAnswers("more")
        #expect(try h.output() == "more")
    }

    /// A client that pipelines requests and takes none of the answers: the next request waits while the channel is
    /// not writable (reads stop), is served once it is, and the connection is closed after the send timeout. Answers
    /// piled up in the outbound buffer without bound from one such connection (found in review: 114 → 401 MB in 20 s).
    @Test func pipelinedRequestsWaitForAClientThatTakesNoAnswers() throws {
        let h = try RawHarness(["SIDECAR_CLIENT_SEND_TIMEOUT": "5"])
        let pipelining = try h.channel.pipeline.syncOperations.handler(type: PipeliningHandler.self)
        h.channel.isWritable = false
        try h.send(String(repeating: "GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\n", count: 3))
        #expect(RawHarness.statusLines(try h.output()).isEmpty, "nothing served while the client takes nothing")
        #expect(pipelining.readsStopped)
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        #expect(RawHarness.statusLines(try h.output()).count == 3)
        #expect(!pipelining.readsStopped)

        h.channel.isWritable = false
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        h.loop.advanceTime(by: .seconds(4))
        #expect(h.channel.isActive)
        h.loop.advanceTime(by: .seconds(1))
        #expect(!h.channel.isActive, "closed after the send timeout")
    }

    /// A body pipelined behind an exchange still waiting for its upstream is queued up to a byte cap, then reads stop
    /// (a count of parts alone let it queue ~4 MB per connection).
    @Test func aQueuedBodyIsBoundedInBytes() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "60"], upstream: true)
        let pipelining = try h.channel.pipeline.syncOperations.handler(type: PipeliningHandler.self)
        try h.send("GET /docs/slow HTTP/1.1\r\nHost: s\r\n\r\nPOST /docs/upload HTTP/1.1\r\nHost: s\r\nContent-Length: 1000000\r\n\r\n")
        let chunk = String(repeating: "b", count: 16 * 1024)
        for _ in 0..<3 { try h.send(chunk) }
        #expect(!pipelining.readsStopped, "48 KiB queued: still reading")
        try h.send(chunk)
        #expect(pipelining.readsStopped, "64 KiB queued: reads stop")
    }

    /// `Expect: 100-continue` from an HTTP/1.0 client is ignored (RFC 9110 §10.1.1): no `HTTP/1.1 100` it cannot read.
    @Test(arguments: [0, 1])
    func expectContinueOnlyForHTTP11(minor: Int) throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("POST /docs/x HTTP/1.\(minor)\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        h.loop.run()
        #expect(try h.output().contains("100 Continue") == (minor == 1))
    }

    /// `/readyz` opens a connection of its own: an idle pooled one says nothing about an upstream that has stopped
    /// listening since.
    @Test func readinessOpensANewUpstreamConnection() throws {
        let h = try RawHarness(["SIDECAR_UPSTREAM_TIMEOUT": "5"], upstream: true)
        try h.send("GET /docs/a HTTP/1.1\r\nHost: s\r\n\r\n")
        _ = try h.upstreamInput()
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(h.upstreams.channels.count == 1)
        try h.send("GET /_sidecar/readyz HTTP/1.1\r\nHost: s\r\n\r\n")
        h.loop.run()
        #expect(h.upstreams.channels.count == 2, "a new connection, not the pooled one")
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"])
    }
}
