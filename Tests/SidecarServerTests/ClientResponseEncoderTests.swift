import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// The client-side encoder writes what NIO's `HTTPResponseEncoder` writes for every response that does not answer a
/// HEAD, and after a HEAD writes the head only — never a body or a chunked terminator.
@Suite("ClientResponseEncoder")
struct ClientResponseEncoderTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let status: HTTPResponseStatus
        let headers: [(String, String)]
        let body: [String]
        let trailers: [(String, String)]?
        let version: HTTPVersion
        var testDescription: String { name }

        init(_ name: String, _ status: HTTPResponseStatus, _ headers: [(String, String)], body: [String] = [],
             trailers: [(String, String)]? = nil, version: HTTPVersion = .http1_1) {
            self.name = name
            self.status = status
            self.headers = headers
            self.body = body
            self.trailers = trailers
            self.version = version
        }
    }

    static let cases: [Case] = [
        Case("200 with Content-Length", .ok, [("content-type", "application/json"), ("Content-Length", "11")], body: [#"{"ok":true}"#]),
        Case("200 without framing becomes chunked", .ok, [("content-type", "text/plain")], body: ["hello", "", "world"]),
        Case("200 chunked with trailers", .ok, [("Transfer-Encoding", "chunked")], body: ["x"], trailers: [("x-digest", "abc")]),
        Case("200 chunked, one empty body part", .ok, [("x-a", "1")], body: [""]),
        Case("200 chunked, a 300-byte body part", .ok, [("x-a", "1")], body: [String(repeating: "z", count: 300)]),
        Case("Content-Length wins over Transfer-Encoding", .ok, [("transfer-encoding", "chunked"), ("content-length", "3")], body: ["abc"]),
        Case("204 loses framing headers", .noContent, [("content-length", "0"), ("x-request-id", "r1")]),
        Case("304 loses framing headers", .notModified, [("etag", "\"v1\""), ("transfer-encoding", "chunked")]),
        Case("101 Switching Protocols", .switchingProtocols, [("connection", "upgrade"), ("upgrade", "websocket")]),
        Case("100 Continue", .continue, []),
        Case("custom status and reason", .custom(code: 299, reasonPhrase: "Custom Thing"), [("content-length", "0")]),
        Case("unknown code", HTTPResponseStatus(statusCode: 599), [("content-length", "0")]),
        Case("HTTP/1.0 response without framing is not chunked", .ok, [("x-a", "1")], body: ["abc"], version: .http1_0),
        Case("502 local JSON", .badGateway, [("content-type", "application/json"), ("content-length", "2"), ("connection", "close")], body: ["{}"]),
        Case("many headers", .ok, (0..<30).map { ("x-h\($0)", String(repeating: "w", count: $0 * 5)) } + [("content-length", "0")]),
    ]

    /// A NIO response part as the proxy handler writes it: a head of the sidecar's own, or (`relayed`) an upstream's
    /// as its field list.
    static func part(_ part: HTTPServerResponsePart, relayed: Bool = false) -> ClientResponsePart {
        switch part {
        case .head(let head) where relayed:
            .relayedHead(relayedHead(head))
        case .head(let head): .head(head)
        case .body(let body): .body(body)
        case .end(let trailers): .end(trailers)
        }
    }

    /// `head` as the proxy relays an upstream's: its fields as ranges in a block of upstream bytes (copied as they
    /// are), plus the proxy's own `x-request-id` when the head has none.
    static func relayedHead(_ head: HTTPResponseHead) -> RelayedResponseHead {
        var block = ByteBuffer()
        var kept: [FieldRange] = []
        for (name, value) in head.headers {
            let nameStart = block.writerIndex
            block.writeString(name)
            block.writeString(": ")
            let valueStart = block.writerIndex
            block.writeString(value)
            block.writeString("\r\n")
            kept.append(FieldRange(nameStart: Int32(nameStart), nameCount: Int32(name.utf8.count), valueStart: Int32(valueStart),
                                   valueCount: Int32(value.utf8.count)))
        }
        return RelayedResponseHead(version: head.version, status: head.status, block: block, kept: kept, added: [])
    }

    /// Everything our encoder writes for a sequence of answers, each to a HEAD request or not, as bytes.
    static func ours(_ answers: [(head: Bool, parts: [HTTPServerResponsePart])], relayed: Bool = false) throws -> [UInt8] {
        let watch = HeadWatch()
        let channel = EmbeddedChannel(handler: ClientResponseEncoder(watch: watch))
        defer { _ = try? channel.finish() }
        for answer in answers {
            watch.answeringHead = answer.head  // what ProxyHandler.receiveHead records
            for part in answer.parts { try channel.writeOutbound(Self.part(part, relayed: relayed)) }
        }
        return try drain(channel)
    }

    /// What NIO's `HTTPResponseEncoder` (added by hand, as the sidecar did) writes for the parts.
    static func nio(_ parts: [HTTPServerResponsePart]) throws -> [UInt8] {
        let channel = EmbeddedChannel(handler: HTTPResponseEncoder())
        defer { _ = try? channel.finish() }
        for part in parts { try channel.writeOutbound(part) }
        return try drain(channel)
    }

    static func drain(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("file region"); continue }
            bytes += buffer.readableBytesView
        }
        return bytes
    }

    static func parts(_ c: Case) -> [HTTPServerResponsePart] {
        [.head(HTTPResponseHead(version: c.version, status: c.status, headers: HTTPHeaders(c.headers)))]
            + c.body.map { .body(.byteBuffer(ByteBuffer(string: $0))) }
            + (c.status.code >= 100 && c.status.code < 200 ? [] : [.end(c.trailers.map(HTTPHeaders.init))])
    }

    @Test("same bytes as NIO's HTTPResponseEncoder when the request was not HEAD (own and relayed heads)",
          arguments: cases, [false, true])
    func sameBytesAsNIO(_ c: Case, relayed: Bool) throws {
        let ours = try Self.ours([(false, Self.parts(c))], relayed: relayed)
        let nio = try Self.nio(Self.parts(c))
        #expect(String(decoding: ours, as: UTF8.self) == String(decoding: nio, as: UTF8.self))
        #expect(ours == nio)
    }

    /// The whole-response part must put on the wire exactly what its head, body part and end write as three parts —
    /// for every case with at most one body part, each answering a HEAD or not, and followed by a second answer on the
    /// same connection (the framing state must be reset as `.end` resets it).
    @Test("a whole relayed response in one part writes the bytes of its head, body and end written apart",
          arguments: cases.filter { $0.body.count <= 1 && !($0.status.code >= 100 && $0.status.code < 200) }, [false, true])
    func wholeResponseWritesWhatItsPartsWrite(_ c: Case, answeringHead: Bool) throws {
        let head = HTTPResponseHead(version: c.version, status: c.status, headers: HTTPHeaders(c.headers))
        let body = c.body.first.map { ByteBuffer(string: $0) }
        let trailers = c.trailers.map(HTTPHeaders.init)
        let next: [ClientResponsePart] = [.relayedHead(Self.relayedHead(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["x-b": "2"]))),
                                          .body(.byteBuffer(ByteBuffer(string: "next"))), .end(nil)]
        func written(_ parts: [ClientResponsePart]) throws -> [UInt8] {
            let watch = HeadWatch()
            let channel = EmbeddedChannel(handler: ClientResponseEncoder(watch: watch))
            defer { _ = try? channel.finish() }
            watch.answeringHead = answeringHead
            for part in parts.dropLast(3) { channel.write(part, promise: nil) }
            watch.answeringHead = false
            for part in parts.suffix(3) { channel.write(part, promise: nil) }
            channel.flush()
            return try Self.drain(channel)
        }
        let whole = Self.relayedHead(head)
        whole.body = body
        whole.trailers = trailers
        let apart: [ClientResponsePart] = [.relayedHead(Self.relayedHead(head))] + (body.map { [.body(.byteBuffer($0))] } ?? []) + [.end(trailers)]
        let one = try written([.relayedResponse(whole)] + next)
        let three = try written(apart + next)
        #expect(String(decoding: one, as: UTF8.self) == String(decoding: three, as: UTF8.self))
        #expect(one == three)
    }

    /// The request id travels apart from the added fields (no array for the common response): it must write, and be
    /// validated, exactly as the same field first among them.
    @Test("a relayed head's request id is written as the first added field would be, and validated as one",
          arguments: ["0123456789abcdef0123456789abcdef", "client-id.1", "bad\r\nx-injected: 1", "tab\tok", "del\u{7F}"])
    func requestIDIsTheFirstAddedField(_ id: String) throws {
        let block = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: up\r\n\r\n")
        var parser = UpstreamResponseParser()
        parser.requestSent(isHEAD: false, wantsUpgrade: false)
        var input = block
        guard case .head(let head)? = try parser.next(&input) else { Issue.record("no head"); return }
        let added = [("connection", "close"), ("access-control-allow-origin", "https://app.example")]
        let apart = ClientResponseEncoder.serialize(version: .http1_1, status: .ok, block: head.block, kept: head.fieldRanges, requestID: id,
                                                    fields: added, allocator: ByteBufferAllocator())
        let first = ClientResponseEncoder.serialize(version: .http1_1, status: .ok, block: head.block, kept: head.fieldRanges,
                                                    fields: [("x-request-id", id)] + added, allocator: ByteBufferAllocator())
        #expect(apart.map { Array($0.0.readableBytesView) } == first.map { Array($0.0.readableBytesView) })
        #expect((apart == nil) == id.utf8.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }, "refused exactly when a byte must not be sent")
    }

    @Test func headAnswerKeepsFramingHeadersButHasNoBodyOrTerminator() throws {
        // The upstream's answer to HEAD: chunked, no body (RFC 9110 §9.3.2); then a GET on the same connection.
        let headAnswer: [HTTPServerResponsePart] = [.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["transfer-encoding": "chunked"])), .end(nil)]
        let getAnswer: [HTTPServerResponsePart] = [.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["x-a": "1"])),
                                                   .body(.byteBuffer(ByteBuffer(string: "hi"))), .end(nil)]
        for relayed in [false, true] {
            let text = String(decoding: try Self.ours([(true, headAnswer), (false, getAnswer)], relayed: relayed), as: UTF8.self)
            #expect(text == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         + "HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        }
        // What NIO's encoder does when nothing tells it about the HEAD: a terminator the client reads as a response.
        let nio = String(decoding: try Self.nio(headAnswer), as: UTF8.self)
        #expect(nio.hasSuffix("\r\n\r\n0\r\n\r\n"))
    }

    @Test(arguments: [false, true])
    func headAnswerWithContentLengthWritesNoBody(relayed: Bool) throws {
        let parts: [HTTPServerResponsePart] = [.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "5"])),
                                               .body(.byteBuffer(ByteBuffer(string: "hello"))), .end(nil)]
        let watch = HeadWatch()
        watch.answeringHead = true
        let channel = EmbeddedChannel(handler: ClientResponseEncoder(watch: watch))
        defer { _ = try? channel.finish() }
        var bodyFailed = false
        for part in parts {
            let promise = channel.eventLoop.makePromise(of: Void.self)
            if case .body = part { promise.futureResult.assumeIsolated().whenFailure { _ in bodyFailed = true } }
            channel.writeAndFlush(Self.part(part, relayed: relayed), promise: promise)
        }
        var text = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let b) = data { text += String(buffer: b) }
        }
        #expect(text == "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        #expect(bodyFailed, "a body part after HEAD is refused, not written")
        #expect(!watch.answeringHead, "cleared at the answer's end: a later answer to an unseen request is not a HEAD answer")
    }

    @Test func informationalResponsesLeaveTheHeadFlagForTheFinalAnswer() throws {
        // 100 Continue, then the final answer to the same HEAD request, then a GET's answer.
        let text = String(decoding: try Self.ours([
            (true, [.head(HTTPResponseHead(version: .http1_1, status: .continue)),
                    .head(HTTPResponseHead(version: .http1_1, status: .ok, headers: [:])), .end(nil)]),
            (false, [.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: [:])), .end(nil)]),
        ]), as: UTF8.self)
        #expect(text == "HTTP/1.1 100 Continue\r\n\r\n"
                     + "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                     + "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
    }

    static let invalidHeads: [(String, HTTPResponseHead)] = [
        ("CRLF in a value", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x-a", "1\r\nx-auth-sub: admin")]))),
        ("LF in a value", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x-a", "1\nx")]))),
        ("NUL in a value", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x-a", "1\u{0}")]))),
        ("DEL in a value", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x-a", "\u{7F}")]))),
        ("space in a name", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x a", "1")]))),
        ("colon in a name", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x:a", "1")]))),
        ("empty name", HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("", "1")]))),
        ("CRLF in the reason phrase", HTTPResponseHead(version: .http1_1, status: .custom(code: 200, reasonPhrase: "OK\r\nx-a: 1"))),
    ]

    @Test("a head with a byte that must not be sent is not written, and the connection closes (own heads, and the fields the proxy adds to relayed ones; an upstream's own bytes are validated by its response parser)",
          arguments: invalidHeads, [false, true])
    func invalidHeadIsRefused(_ invalid: (name: String, head: HTTPResponseHead), relayed: Bool) throws {
        let (name, head) = invalid
        let channel = EmbeddedChannel(handler: ClientResponseEncoder(watch: HeadWatch()))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        var failed = 0
        for part: HTTPServerResponsePart in [.head(head), .body(.byteBuffer(ByteBuffer(string: "x"))), .end(nil)] {
            let promise = channel.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenFailure { _ in failed += 1 }
            if relayed, case .head(let head) = part {
                let added = RelayedResponseHead(version: head.version, status: head.status, fields: head.headers.map { ($0.name, $0.value) })
                channel.writeAndFlush(ClientResponsePart.relayedHead(added), promise: promise)
            } else {
                channel.writeAndFlush(Self.part(part, relayed: relayed), promise: promise)
            }
        }
        #expect(try Self.drain(channel).isEmpty, "\(name): nothing of the response reaches the wire")
        #expect(failed == 3)
        #expect(!channel.isActive)
    }

    @Test("every byte, in a name and in a value: accepted exactly when RFC 9110 allows it there")
    func everyByteInNamesAndValues() {
        // Written here from the RFC, independently of the encoder's table.
        func isTchar(_ b: UInt8) -> Bool {
            (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) || Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
        func isFieldValueByte(_ b: UInt8) -> Bool { b == 0x09 || b == 0x20 || (0x21...0x7E).contains(b) || b >= 0x80 }
        for b in UInt8.min...UInt8.max {
            let odd = String(decoding: [b], as: UTF8.self) == "\u{FFFD}" ? nil : String(decoding: [b], as: UTF8.self)
            guard let odd else { continue }  // not one scalar on its own (a lone byte ≥ 0x80): covered below
            let nameHead = HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x\(odd)y", "v")]))
            #expect((ClientResponseEncoder.serialize(nameHead, allocator: ByteBufferAllocator()) != nil) == isTchar(b), "name byte \(b)")
            let valueHead = HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x", "a\(odd)b")]))
            #expect((ClientResponseEncoder.serialize(valueHead, allocator: ByteBufferAllocator()) != nil) == isFieldValueByte(b), "value byte \(b)")
        }
        // Non-ASCII (obs-text) bytes: fine in values, never in names.
        let utf8Value = HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("x", "caf\u{E9} \u{1F600}")]))
        #expect(ClientResponseEncoder.serialize(utf8Value, allocator: ByteBufferAllocator()) != nil)
        let utf8Name = HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("caf\u{E9}", "v")]))
        #expect(ClientResponseEncoder.serialize(utf8Name, allocator: ByteBufferAllocator()) == nil)
        let empty = HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([("", "v")]))
        #expect(ClientResponseEncoder.serialize(empty, allocator: ByteBufferAllocator()) == nil, "an empty name")
    }

    @Test func invalidTrailersAreRefused() throws {
        let channel = EmbeddedChannel(handler: ClientResponseEncoder(watch: HeadWatch()))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeOutbound(ClientResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
        try channel.writeOutbound(ClientResponsePart.body(.byteBuffer(ByteBuffer(string: "x"))))
        let before = try Self.drain(channel)
        #expect(String(decoding: before, as: UTF8.self).hasSuffix("1\r\nx\r\n"))
        channel.writeAndFlush(ClientResponsePart.end(HTTPHeaders([("x-t", "a\r\nb")])), promise: nil)
        #expect(try Self.drain(channel).isEmpty, "no terminator and no trailer block")
        #expect(!channel.isActive)
    }

    @Test func http10ResponseIsNeverChunkedAndLosesTransferEncoding() throws {
        let text = String(decoding: try Self.ours([(false, [
            .head(HTTPResponseHead(version: .http1_0, status: .ok, headers: ["transfer-encoding": "chunked", "connection": "close"])),
            .body(.byteBuffer(ByteBuffer(string: "hello"))), .body(.byteBuffer(ByteBuffer(string: " world"))), .end(nil),
        ])]), as: UTF8.self)
        #expect(text == "HTTP/1.0 200 OK\r\nconnection: close\r\n\r\nhello world")
    }
}
