import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// The sidecar's upstream encoder must put exactly the bytes on the wire that NIO's `HTTPRequestEncoder` would: same
/// start line, same headers in the same order, same framing decisions, same chunking and trailers.
@Suite("UpstreamRequestEncoder")
struct UpstreamRequestEncoderTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let method: HTTPMethod
        let version: HTTPVersion
        let headers: [(String, String)]
        let body: [String]
        let trailers: [(String, String)]?
        var testDescription: String { name }

        init(_ name: String, _ method: HTTPMethod, _ headers: [(String, String)], body: [String] = [], trailers: [(String, String)]? = nil,
             version: HTTPVersion = .http1_1) {
            self.name = name
            self.method = method
            self.headers = headers
            self.body = body
            self.trailers = trailers
            self.version = version
        }
    }

    static let cases: [Case] = [
        Case("GET, no framing", .GET, [("host", "up"), ("x-auth-sub", "u1"), ("accept", "*/*")]),
        Case("GET with Content-Length and Transfer-Encoding: length wins", .GET,
             [("host", "up"), ("Content-Length", "3"), ("Transfer-Encoding", "chunked")], body: ["abc"]),
        Case("GET chunked", .GET, [("host", "up"), ("transfer-encoding", "chunked")], body: ["hello", "", "world"]),
        Case("DELETE with a non-chunked Transfer-Encoding", .DELETE, [("host", "up"), ("transfer-encoding", "gzip")]),
        Case("POST with Content-Length", .POST, [("host", "up"), ("content-length", "4")], body: ["ab", "cd"]),
        Case("POST without framing becomes chunked", .POST, [("host", "up")], body: ["0123456789abcdef0"]),
        Case("POST without framing, no body", .POST, [("host", "up")]),
        Case("PUT replacing a Transfer-Encoding", .PUT, [("host", "up"), ("Transfer-Encoding", "gzip, chunked")], body: ["x"]),
        Case("PATCH chunked with trailers", .PATCH, [("host", "up"), ("transfer-encoding", "chunked")], body: ["x"],
             trailers: [("x-checksum", "abc"), ("x-other", "1")]),
        Case("PATCH chunked with empty trailers", .PATCH, [("host", "up"), ("transfer-encoding", "chunked")], body: ["x"], trailers: []),
        Case("TRACE loses both framing headers", .TRACE, [("host", "up"), ("content-length", "0"), ("transfer-encoding", "chunked")]),
        Case("custom method", .RAW(value: "PROPFIND"), [("host", "up"), ("depth", "1")]),
        Case("HTTP/1.0 POST is not chunked", .POST, [("host", "up")], body: ["abc"], version: .http1_0),
        Case("a long header block", .GET, (0..<40).map { ("x-h\($0)", String(repeating: "v", count: $0 * 7)) }),
        Case("empty value, non-ASCII value bytes", .GET, [("host", "up"), ("x-empty", ""), ("x-auth-name", "utf-8''J%C3%BCrgen"), ("x-raw", "é")]),
    ]

    /// A NIO request part as the proxy handler sends it: the head serialised from its fields.
    static func ours(_ part: HTTPClientRequestPart) -> UpstreamRequestPart {
        switch part {
        case .head(let head): .head(UpstreamRequestEncoder.serialize(head, allocator: ByteBufferAllocator()))
        case .body(let body): .body(body)
        case .end(let trailers): .end(trailers)
        }
    }

    /// Everything one encoder (the sidecar's, or NIO's `HTTPRequestEncoder`) writes for the case's head, body parts
    /// and end, as one byte string.
    static func wire(_ c: Case, nio: Bool) throws -> [UInt8] {
        let channel = EmbeddedChannel(handler: nio ? HTTPRequestEncoder() : UpstreamRequestEncoder())
        defer { _ = try? channel.finish() }
        func write(_ part: HTTPClientRequestPart) throws {
            if nio { try channel.writeOutbound(part) } else { try channel.writeOutbound(Self.ours(part)) }
        }
        let uri = "/api/items?q=1&r=%20"
        try write(.head(HTTPRequestHead(version: c.version, method: c.method, uri: uri, headers: HTTPHeaders(c.headers))))
        for part in c.body { try write(.body(.byteBuffer(ByteBuffer(string: part)))) }
        try write(.end(c.trailers.map(HTTPHeaders.init)))
        var bytes: [UInt8] = []
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("file region"); continue }
            bytes += buffer.readableBytesView
        }
        return bytes
    }

    @Test("same bytes as NIO's HTTPRequestEncoder", arguments: cases)
    func sameBytesAsNIO(_ c: Case) throws {
        let ours = try Self.wire(c, nio: false)
        let nio = try Self.wire(c, nio: true)
        #expect(String(decoding: ours, as: UTF8.self) == String(decoding: nio, as: UTF8.self))
        #expect(ours == nio)
    }

    /// A `NIOAny` keeps up to three words inline; a larger part is boxed (a heap allocation) at every handler hop.
    @Test func requestPartsFitInANIOAnyWithoutABox() {
        #expect(MemoryLayout<UpstreamRequestPart>.size <= 3 * MemoryLayout<Int>.size)
        #expect(MemoryLayout<ClientResponsePart>.size <= 3 * MemoryLayout<Int>.size)
    }

    @Test func chunkedFramingIsWhatTheUpstreamParses() throws {
        let c = Case("POST", .POST, [("host", "up")], body: ["hello", "world!"])
        let text = String(decoding: try Self.wire(c, nio: false), as: UTF8.self)
        #expect(text == "POST /api/items?q=1&r=%20 HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n")
    }

    @Test func promisesCompleteInOrder() throws {
        let channel = EmbeddedChannel(handler: UpstreamRequestEncoder())
        defer { _ = try? channel.finish() }
        var done: [String] = []
        let head = channel.eventLoop.makePromise(of: Void.self)
        let body = channel.eventLoop.makePromise(of: Void.self)
        let end = channel.eventLoop.makePromise(of: Void.self)
        head.futureResult.assumeIsolated().whenSuccess { done.append("head") }
        body.futureResult.assumeIsolated().whenSuccess { done.append("body") }
        end.futureResult.assumeIsolated().whenSuccess { done.append("end") }
        channel.write(Self.ours(.head(HTTPRequestHead(version: .http1_1, method: .PUT, uri: "/", headers: ["content-length": "1"]))), promise: head)
        channel.write(UpstreamRequestPart.body(.byteBuffer(ByteBuffer(string: "x"))), promise: body)
        channel.write(UpstreamRequestPart.end(nil), promise: end)
        channel.flush()
        #expect(done == ["head", "body", "end"])
    }

    /// The proxy skips a request's `.end` upstream when it judges it empty; the encoder must agree for every framing a
    /// client can send (methods × Content-Length × Transfer-Encoding, the head forwarded as `forwardedHead` does).
    @Test("upstreamEndIsEmpty holds exactly when the encoder writes nothing for .end")
    func skippedEndsAreEmptyOnTheWire() throws {
        let methods: [HTTPMethod] = [.GET, .HEAD, .DELETE, .OPTIONS, .POST, .PUT, .PATCH, .RAW(value: "PROPFIND")]
        let lengths: [String?] = [nil, "0", "5"]
        let encodings: [String?] = [nil, "chunked", "gzip, chunked"]
        for method in methods {
            for length in lengths {
                for encoding in encodings {
                    var client: [(String, String)] = [("host", "s")]
                    if let length { client.append(("content-length", length)) }
                    if let encoding { client.append(("transfer-encoding", encoding)) }
                    let fields = RequestHeadFields(ClientRequestHead(method: method, uri: "/", headers: HTTPHeaders(client)))
                    // Upstream: Content-Length passes; any Transfer-Encoding becomes `chunked` (forwardedHead).
                    var upstream: [(String, String)] = [("host", "up")]
                    if let length { upstream.append(("content-length", length)) }
                    if encoding != nil { upstream.append(("transfer-encoding", "chunked")) }
                    let channel = EmbeddedChannel(handler: UpstreamRequestEncoder())
                    defer { _ = try? channel.finish() }
                    try channel.writeOutbound(Self.ours(.head(HTTPRequestHead(version: .http1_1, method: method, uri: "/", headers: HTTPHeaders(upstream)))))
                    while try channel.readOutbound(as: IOData.self) != nil {}
                    try channel.writeOutbound(UpstreamRequestPart.end(nil))
                    var endBytes = 0
                    while let data = try channel.readOutbound(as: IOData.self) { endBytes += data.readableBytes }
                    let judged = ProxyHandler.upstreamEndIsEmpty(method, fields)
                    let label = "\(method) content-length \(length ?? "-") transfer-encoding \(encoding ?? "-")"
                    if judged { #expect(endBytes == 0, "skipped an .end that writes \(endBytes) bytes: \(label)") }
                    if !fields.hasBody && endBytes == 0 && !judged {
                        // Conservative misses are allowed only where a body was announced by Transfer-Encoding.
                        #expect(encoding != nil, "an empty .end still sent: \(label)")
                    }
                }
            }
        }
    }

    /// The proxy decides the upstream framing itself for the client-bytes path; it must be what the string path (NIO's
    /// rules, tested above) decides for the same fields — for every framing the client parser lets through.
    @Test("the proxy's upstream framing is the string path's, for every method and every framing a client can send")
    func upstreamFramingMatchesTheStringPath() {
        let methods: [HTTPMethod] = [.GET, .HEAD, .DELETE, .OPTIONS, .POST, .PUT, .PATCH, .RAW(value: "PROPFIND")]
        let framings: [[(String, String)]] = [[], [("content-length", "0")], [("Content-Length", "5")], [("Transfer-Encoding", "chunked")]]
        for method in methods {
            for framing in framings {
                let fields = RequestHeadFields(ClientRequestHead(method: method, uri: "/", headers: HTTPHeaders([("host", "s")] + framing)))
                // What the proxy sent before the client-bytes path: the client's fields, its Transfer-Encoding as `chunked`.
                let reference = UpstreamRequestEncoder.serialize(method: method, uri: "/", version: .http1_1, fields: [("host", "up")] + framing,
                                                                 allocator: ByteBufferAllocator())
                #expect(ProxyHandler.upstreamIsChunked(method, fields) == reference.chunked, "\(method) \(framing)")
            }
        }
    }

    /// The client-bytes path (what ``ProxyHandler`` uses) must write what the string path writes for the same fields:
    /// each kept client line as `name: value` with its OWS trimmed, the added ones as given, in order.
    @Test("serialize(client:) writes the bytes serialize(fields:) writes for the same fields")
    func clientBytesPathMatchesStringPath() throws {
        let wire = "POST /in?q=1 HTTP/1.1\r\nHost: a.example\r\nX-Trim:  \t spaced \t \r\nEmpty:\r\ncontent-length: 3\r\n"
            + "Accept: */*\r\nX-Obs: caf\u{E9}\r\n\r\nabc"
        var parser = ClientRequestParser()
        var input = ByteBuffer(string: wire)
        guard case .head(let head)? = try parser.next(&input) else { Issue.record("no head"); return }
        let added = [("cookie", "a=1")]
        let identity = [("x-auth-sub", "u1"), ("x-auth-email", "a@b.example")]
        // Every client field but Host, then the added ones, the connection's, the client's Host as X-Forwarded-Host,
        // the request id and the identity lines.
        let kept = head.fields.filter { field in head.withBytes { !HTTPScan.equalsLowercase(field.name(in: $0), "host") } }
        let host = try #require(head.fields.first { field in head.withBytes { HTTPScan.equalsLowercase(field.name(in: $0), "host") } })
        let connection = [("host", "up"), ("x-forwarded-for", "192.0.2.10"), ("x-forwarded-proto", "http")]
        let ours = UpstreamRequestEncoder.serialize(method: .POST, uri: "/base/in?q=1", client: head, kept: kept, added: added,
                                                    connectionLines: Array(connection.map { "\($0.0): \($0.1)\r\n" }.joined().utf8),
                                                    forwardedHost: host, requestID: "r-1",
                                                    identityLines: Array(identity.map { "\($0.0): \($0.1)\r\n" }.joined().utf8),
                                                    chunked: false, allocator: ByteBufferAllocator())
        let strings = kept.map { ($0.name(in: head.block), $0.value(in: head.block)) } + added + connection
            + [("x-forwarded-host", "a.example"), ("x-request-id", "r-1")] + identity
        let reference = UpstreamRequestEncoder.serialize(method: .POST, uri: "/base/in?q=1", version: .http1_1, fields: strings,
                                                         allocator: ByteBufferAllocator())
        #expect(Array(ours.bytes.readableBytesView) == Array(reference.bytes.readableBytesView))
        #expect(String(buffer: ours.bytes).contains("X-Trim: spaced\r\nEmpty: \r\ncontent-length: 3\r\n"))
        #expect(ours.chunked == reference.chunked)
    }
}
