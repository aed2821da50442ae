import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// The request decoder in the real client pipeline (``RawHarness``): how refusals are answered, what happens after
/// a request that stops the parse, and the bytes handed to the WebSocket relay.
@Suite("Client request decoder (raw bytes)")
struct ClientRequestDecoderTests {
    struct Refusal: CustomStringConvertible, Sendable {
        let wire: String
        let status: String
        let code: String
        var description: String { status }
    }

    @Test("each refusal is answered once with its status and error code, Connection: close, and the connection ends",
          arguments: [
              Refusal(wire: "BREW /docs HTTP/1.1\r\nHost: s\r\n\r\n", status: "HTTP/1.1 501 Not Implemented", code: "not_implemented"),
              Refusal(wire: "POST /docs HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip\r\n\r\n", status: "HTTP/1.1 501 Not Implemented", code: "not_implemented"),
              Refusal(wire: "GET /docs HTTP/2.0\r\nHost: s\r\n\r\n", status: "HTTP/1.1 505 HTTP Version Not Supported", code: "http_version_not_supported"),
              Refusal(wire: "GET /docs HTTP/1.1\r\nHost: s\r\n" + String(repeating: "X-F: " + String(repeating: "a", count: 1000) + "\r\n", count: 90),
                      status: "HTTP/1.1 431 Request Header Fields Too Large", code: "request_header_fields_too_large"),
              Refusal(wire: "POST /docs HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                      status: "HTTP/1.1 400 Bad Request", code: "bad_request"),
          ])
    func refusals(_ r: Refusal) throws {
        let h = try RawHarness()
        try? h.send(r.wire + "GET /docs/after HTTP/1.1\r\nHost: s\r\n\r\n")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == [r.status])
        #expect(out.contains(#""error":"\#(r.code)""#))
        #expect(out.lowercased().contains("connection: close"))
        #expect(!h.channel.isActive)
    }

    @Test("after Connection: close, a request in the same segment is never read, let alone forwarded")
    func nothingAfterConnectionClose() throws {
        let h = try RawHarness(upstream: true)
        try h.send("GET /docs/a HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\nGET /docs/smuggled HTTP/1.1\r\nHost: s\r\n\r\n")
        let sent = try h.upstreamInput()
        #expect(sent.hasPrefix("GET /docs/a HTTP/1.1\r\n") && !sent.contains("smuggled"))
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        h.loop.run()
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 200 OK"])
        #expect(!h.channel.isActive)
        #expect(!(try h.upstreamInput()).contains("smuggled"))
    }

    @Test("Connection: close in a chunked request's trailers: the answer says close and the connection ends")
    func trailersEndTheConnection() throws {
        let h = try RawHarness(upstream: true)
        try h.send("POST /docs/t HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nConnection: close\r\n\r\n"
                   + "GET /docs/smuggled HTTP/1.1\r\nHost: s\r\n\r\n")
        #expect(try h.upstreamInput().hasPrefix("POST /docs/t HTTP/1.1\r\n"))
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 200 OK"])
        #expect(out.lowercased().contains("connection: close"))
        #expect(!h.channel.isActive)
        #expect(!(try h.upstreamInput()).contains("smuggled"))
    }

    @Test("a request pipelined behind one that ends the connection is answered in full first, and not told to close")
    func theLastRequestClosesOnlyItsOwnAnswer() throws {
        let h = try RawHarness()
        try h.send("GET /_sidecar/healthz HTTP/1.1\r\nHost: s\r\n\r\nGET /api/ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 200 OK", "HTTP/1.1 401 Unauthorized"])
        let first = out.components(separatedBy: "HTTP/1.1 401")[0].lowercased()
        #expect(!first.contains("connection: close"))
        #expect(!h.channel.isActive)
    }

    @Test("an upgrade request answered locally (no session) ends the connection: what follows it is not HTTP")
    func upgradeAnsweredLocallyCloses() throws {
        let h = try RawHarness()
        try h.send("GET /api/ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /docs HTTP/1.1\r\nHost: s\r\n\r\n")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 401 Unauthorized"])
        #expect(out.lowercased().contains("connection: close"))
        #expect(!h.channel.isActive)
    }

    @Test("an upgrade request the upstream refuses (a 200, not a 101) ends the connection after the answer")
    func upgradeRefusedUpstreamCloses() throws {
        let h = try RawHarness(upstream: true)
        try h.send("GET /docs/ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(try h.upstreamInput().hasPrefix("GET /docs/ws HTTP/1.1\r\n"))
        h.upstreamAnswers("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
        h.loop.run()
        let out = try h.output()
        #expect(RawHarness.statusLines(out) == ["HTTP/1.1 200 OK"])
        #expect(out.lowercased().contains("connection: close"))
        #expect(!h.channel.isActive)
    }

    @Test("after a 101, the bytes that came with the upgrade request and every later byte reach the upstream raw")
    func upgradeSplicesWithTheEarlyBytes() throws {
        let h = try RawHarness(upstream: true)
        try h.send("GET /docs/ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nEARLY")
        let head = try h.upstreamInput()
        #expect(head.hasPrefix("GET /docs/ws HTTP/1.1\r\n") && head.hasSuffix("\r\n\r\n"))
        h.upstreamAnswers("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        h.loop.run()
        #expect(RawHarness.statusLines(try h.output()) == ["HTTP/1.1 101 Switching Protocols"])
        try h.send("LATER")
        h.loop.run()
        #expect(try h.upstreamInput() == "EARLYLATER")
        #expect(h.channel.isActive)
        #expect((try? h.channel.pipeline.syncOperations.context(handlerType: ClientRequestDecoder.self)) == nil)
    }

    @Test("a connection closed in the middle of a forwarded body closes the upstream connection, unanswered")
    func eofInTheMiddleOfABody() throws {
        let h = try RawHarness(upstream: true)
        try h.send("POST /docs/up HTTP/1.1\r\nHost: s\r\nContent-Length: 10\r\n\r\nabc")
        #expect(try h.upstreamInput().hasSuffix("\r\n\r\nabc"))
        try h.channel.close().wait()
        h.loop.run()
        #expect(!h.upstreams.channels[0].isActive)
        #expect(RawHarness.statusLines(try h.output()).isEmpty)
    }

    /// The decoder folds a whole request's `.end` into its head and otherwise passes the parser's parts as they are:
    /// expanding each whole head back into head + end gives exactly the parser's sequence, fed at once or byte by byte.
    @Test("the decoder's parts are the parser's, with a body-less request's end folded into its head", arguments: [
        "GET /a HTTP/1.1\r\nHost: s\r\n\r\nHEAD /b HTTP/1.1\r\nHost: s\r\n\r\nGET /c HTTP/1.1\r\nHost: s\r\nContent-Length: 0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabcGET /a HTTP/1.1\r\nHost: s\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\nDELETE /d HTTP/1.1\r\nHost: s\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nEARLY",
        "GET /a HTTP/1.0\r\n\r\nGET /never HTTP/1.1\r\nHost: s\r\n\r\n",
    ])
    func foldsOnlyWholeRequests(wire: String) throws {
        var parser = ClientRequestParser()
        var input = ByteBuffer(string: wire)
        var expected: [String] = []
        while let part = try parser.next(&input) { expected.append(Self.describe(part)) }
        for split in [wire.utf8.count, 1] {
            let channel = EmbeddedChannel(handler: ClientRequestDecoder())
            var rest = ByteBuffer(string: wire)
            while rest.readableBytes > 0 { try channel.writeInbound(rest.readSlice(length: min(split, rest.readableBytes))!) }
            var seen: [String] = []
            var wholeHeads = 0
            while let part = try channel.readInbound(as: ClientRequestPart.self) {
                seen.append(Self.describe(part))
                if case .head(let head) = part, head.isWhole {
                    seen.append("end nil")
                    wholeHeads += 1
                }
            }
            #expect(Self.joiningBodies(seen) == Self.joiningBodies(expected), "split \(split)")
            #expect(wholeHeads == expected.indices.filter { expected[$0].hasPrefix("head") && expected.indices.contains($0 + 1) && expected[$0 + 1] == "end nil" }.count)
            _ = try? channel.finish()
        }
    }

    /// Body parts as one (a byte-by-byte feed cuts a body into as many parts).
    static func joiningBodies(_ parts: [String]) -> [String] {
        parts.reduce(into: []) { out, part in
            if part.hasPrefix("body "), let last = out.last, last.hasPrefix("body ") { out[out.count - 1] = last + part.dropFirst(5) } else { out.append(part) }
        }
    }

    static func describe(_ part: ClientRequestPart) -> String {
        switch part {
        case .head(let head): return "head \(head.method.rawValue) \(head.uri)"
        case .body(let body): return "body \(String(buffer: body))"
        case .end(let trailers): return "end \(trailers.map { "\($0)" } ?? "nil")"
        }
    }
}
