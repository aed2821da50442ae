import NIOHTTP1
import Testing
@testable import SidecarServer

/// One pass over a head's bytes must give what the per-name `HTTPHeaders` lookups it replaced gave.
@Suite("RequestHeadFields")
struct RequestHeadFieldsTests {
    static let blocks: [[(String, String)]] = [
        [],
        [("Host", "a.example"), ("Cookie", "a=1"), ("cookie", "b=2"), ("COOKIE", "c=3")],
        [("host", "a"), ("HOST", "b"), ("Content-Length", "5"), ("content-length", "5"), ("Transfer-Encoding", "chunked")],
        [("Authorization", "Bearer x"), ("authorization", "Bearer y"), ("X-Request-Id", "r1"), ("x-request-id", "r2")],
        [("Expect", "100-Continue"), ("Connection", "keep-alive, Upgrade"), ("connection", "x-secret"), ("Upgrade", "websocket"),
         ("upgrade", "h2c")],
        [("traceparent", "00-abc-def-01"), ("TraceState", "k=v"), ("tracestate", "k2=v2")],
        [("Origin", "https://app.example"), ("Access-Control-Request-Method", "PUT"), ("access-control-request-headers", "a, b"),
         ("Access-Control-Request-Headers", "c"), ("Access-Control-Request-Private-Network", "true")],
        // Lookalikes: not these fields (`_` is not `-` here). Names outside the token characters never reach it: the
        // parser refuses them.
        [("Cookies", "x=1"), ("Hosts", "k"), ("content_length", "9"), ("x-request_id", "r"), ("Expect", "100-continue-x")],
        // Values with obs-text (UTF-8 here) count as the bytes they are.
        [("Origin", "https://bücher.example"), ("X-Note", "naïve")],
        [("expect", "100-continue"), ("content-length", "0")],
        [("content-length", "abc")],
    ]

    @Test("the same values as the HTTPHeaders lookups", arguments: blocks.indices)
    func sameAsLookups(index: Int) {
        let headers = HTTPHeaders(Self.blocks[index])
        let head = ClientRequestHead(method: .GET, uri: "/", headers: headers)
        let f = RequestHeadFields(head)
        #expect(f.host == headers["host"].first)
        #expect(f.hostCount == headers["host"].count)
        // Bytes as the wire carries them (UTF-8, `: ` and CRLF per field), the measure of the 431 check.
        #expect(f.headerBytes == Self.blocks[index].reduce(0) { $0 + Array("\($1.0): \($1.1)\r\n".utf8).count })
        #expect(f.contentLength == headers["content-length"].first)
        #expect(f.contentLengthCount == headers["content-length"].count)
        #expect(f.hasTransferEncoding == headers.contains(name: "transfer-encoding"))
        #expect(f.cookie(in: head) == (headers["cookie"].isEmpty ? nil : headers["cookie"].joined(separator: "; ")))
        #expect(f.authorization == headers["authorization"].first)
        #expect(f.requestID == headers["x-request-id"].first)
        #expect(f.expectsContinue == headers["expect"].contains { $0.lowercased() == "100-continue" })
        #expect(f.connection == headers["connection"])
        #expect(f.upgrade == headers["upgrade"].first)
        #expect(f.traceparent == headers["traceparent"].first)
        #expect(f.tracestate == headers["tracestate"].first)
        #expect(f.origin == headers["origin"].first)
        #expect(f.corsRequestMethod == headers["access-control-request-method"].first)
        #expect(f.corsRequestHeaders == (headers["access-control-request-headers"].isEmpty ? nil
            : headers["access-control-request-headers"].joined(separator: ",")))
        #expect(f.corsRequestPrivateNetwork == headers["access-control-request-private-network"].first)
        let declared = headers.contains(name: "content-length") ? (Int(headers["content-length"].first ?? "0") ?? 1) > 0
            : headers.contains(name: "transfer-encoding")
        #expect(f.hasBody == declared)
    }
}
