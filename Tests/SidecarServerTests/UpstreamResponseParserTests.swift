import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// The upstream response parser as a pure state machine: framing, strictness, reads split anywhere, and the same
/// answers as NIO's `HTTPResponseDecoder` (which it replaced) wherever NIO accepts what it accepts.
@Suite("Upstream response parser")
struct UpstreamResponseParserTests {
    enum Request: String, CustomStringConvertible, Sendable {
        case get, head, upgrade
        var description: String { rawValue }
    }

    /// Runs `wire` through a parser in reads of `split` bytes (0: one read), then the connection's close if `eof`.
    /// The transcript: one line per event, or `error: reason` where it failed.
    static func transcript(_ wire: String, request: Request = .get, requests: Int = 1, split: Int = 0, eof: Bool = false) -> [String] {
        var parser = UpstreamResponseParser()
        for _ in 0..<requests { parser.requestSent(isHEAD: request == .head, wantsUpgrade: request == .upgrade) }
        var lines: [String] = []
        var body = ""
        func record(_ event: UpstreamResponseEvent) {
            switch event {
            case .head(let head):
                let fields = head.fields.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
                lines.append("head \(head.version.minor) \(head.status.code) \(head.keepAlive ? "keep" : "close") [\(fields)]")
            case .body(let buffer):
                body += String(buffer: buffer)
            case .end(let trailers):
                if !body.isEmpty { lines.append("body \(body)"); body = "" }
                lines.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ",") } ?? ""))
            }
        }
        let bytes = Array(wire.utf8)
        let step = split == 0 ? max(bytes.count, 1) : split
        do {
            var offset = 0
            while offset < bytes.count {
                var input = ByteBuffer(bytes: bytes[offset..<min(offset + step, bytes.count)])
                offset += step
                while let event = try parser.next(&input) { record(event) }
                if parser.upgraded, input.readableBytes > 0 {
                    lines.append("upgraded \(String(buffer: input))")
                    // The handler passes these bytes on; the parser leaves them in the input.
                }
            }
            if eof, let event = try parser.endOfInput() { record(event) }
        } catch let error as UpstreamResponseError {
            lines.append("error: \(error.reason)")
            return lines
        } catch {
            lines.append("error: \(error)")
        }
        if !body.isEmpty { lines.append("body \(body)") }
        return lines
    }

    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let request: Request
        let wire: String
        let eof: Bool
        let expected: [String]
        var description: String { name }
        init(_ name: String, _ request: Request, _ wire: String, eof: Bool = false, _ expected: [String]) {
            self.name = name; self.request = request; self.wire = wire; self.eof = eof; self.expected = expected
        }
        init(_ name: String, _ wire: String, eof: Bool = false, _ expected: [String]) {
            self.init(name, .get, wire, eof: eof, expected)
        }
    }

    static let accepted: [Case] = [
        Case("Content-Length body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
             ["head 1 200 keep [Content-Length=5,X-A=b]", "body hello", "end"]),
        Case("no body: Content-Length 0", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", ["head 1 200 keep [content-length=0]", "end"]),
        Case("HEAD: Content-Length announces no body", .head, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
             ["head 1 200 keep [Content-Length=5]", "end"]),
        Case("204 and 304 have no body", "HTTP/1.1 204 No Content\r\n\r\n", ["head 1 204 keep []", "end"]),
        Case("304 with Content-Length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", ["head 1 304 keep [Content-Length=9]", "end"]),
        Case("chunked with extensions and trailers",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\nA;a;b=\"q \\\"x\\\"\"\r\n0123456789\r\n0\r\nX-T: 1\r\nX-U: two\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=Chunked]", "body hello0123456789", "end X-T=1,X-U=two"]),
        Case("chunked, empty", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
             ["head 1 200 keep [transfer-encoding=chunked]", "end"]),
        Case("read to the close without a length", "HTTP/1.1 200 OK\r\n\r\nall of it", eof: true,
             ["head 1 200 close []", "body all of it", "end"]),
        Case("Connection: close", "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\nx",
             ["head 1 200 close [Connection=Close,Content-Length=1]", "body x", "end"]),
        Case("HTTP/1.0 without keep-alive closes", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
             ["head 0 200 close [Content-Length=1]", "body x", "end"]),
        Case("HTTP/1.0 with keep-alive", "HTTP/1.0 200 OK\r\nConnection: foo, keep-alive\r\nContent-Length: 1\r\n\r\nx",
             ["head 0 200 keep [Connection=foo, keep-alive,Content-Length=1]", "body x", "end"]),
        Case("interim responses are consumed", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
             ["head 1 200 keep [Content-Length=2]", "body ok", "end"]),
        Case("no reason phrase, empty reason phrase, an unregistered code",
             "HTTP/1.1 299\r\nContent-Length: 0\r\n\r\n", ["head 1 299 keep [Content-Length=0]", "end"]),
        Case("reason phrase with obs-text and tabs", "HTTP/1.1 200 \tÖk\r\nContent-Length: 0\r\n\r\n", ["head 1 200 keep [Content-Length=0]", "end"]),
        Case("whitespace around values is not part of them; empty values kept", "HTTP/1.1 200 OK\r\nA:  x y \t\r\nB:\r\nContent-Length:0\r\n\r\n",
             ["head 1 200 keep [A=x y,B=,Content-Length=0]", "end"]),
        Case("101 to an upgrade request: the rest is the new protocol's", .upgrade,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{01}\u{02}x",
             ["head 1 101 close [Upgrade=websocket,Connection=Upgrade]", "end", "upgraded \u{01}\u{02}x"]),
        Case("a non-101 answer to an upgrade request is an ordinary response", .upgrade,
             "HTTP/1.1 400 Bad Request\r\nContent-Length: 1\r\n\r\nx", ["head 1 400 keep [Content-Length=1]", "body x", "end"]),
    ]

    static let refused: [Case] = [
        Case("not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", ["error: not an HTTP/1.0 or HTTP/1.1 status line"]),
        Case("HTTP/2.0 status line", "HTTP/2.0 200 OK\r\n\r\n", ["error: not an HTTP/1.0 or HTTP/1.1 status line"]),
        Case("lowercase protocol name", "http/1.1 200 OK\r\n\r\n", ["error: not an HTTP/1.0 or HTTP/1.1 status line"]),
        Case("status below 100", "HTTP/1.1 099 X\r\n\r\n", ["error: invalid status code"]),
        Case("status not three digits", "HTTP/1.1 20 OK\r\n\r\n", ["error: invalid status code"]),
        Case("status followed by other than SP", "HTTP/1.1 2000 OK\r\n\r\n", ["error: malformed status line"]),
        Case("control byte in the reason phrase", "HTTP/1.1 200 O\u{0}K\r\n\r\n", ["error: control byte in the reason phrase"]),
        Case("bare LF line ends: refused at once, not awaited", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", ["error: bare LF in the response head"]),
        Case("bare LF inside a value", "HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", ["error: bare LF in the response head"]),
        Case("bare LF in trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: bare LF in the trailers"]),
        Case("bare CR inside a value", "HTTP/1.1 200 OK\r\nA: b\rC: d\r\n\r\n", ["error: bare CR"]),
        Case("obsolete line folding", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", ["error: obsolete line folding"]),
        Case("whitespace before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", ["error: invalid field name"]),
        Case("empty field name", "HTTP/1.1 200 OK\r\n: x\r\n\r\n", ["error: invalid field name"]),
        Case("non-token byte in a name", "HTTP/1.1 200 OK\r\nA\"B: x\r\n\r\n", ["error: invalid field name"]),
        Case("NUL in a value", "HTTP/1.1 200 OK\r\nA: b\u{0}c\r\n\r\n", ["error: control byte in a field value"]),
        Case("repeated Content-Length, even equal", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
             ["error: conflicting or invalid Content-Length"]),
        Case("conflicting Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
             ["error: conflicting or invalid Content-Length"]),
        Case("Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab", ["error: conflicting or invalid Content-Length"]),
        Case("signed Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab", ["error: conflicting or invalid Content-Length"]),
        Case("Content-Length past Int", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
             ["error: conflicting or invalid Content-Length"]),
        Case("Transfer-Encoding with Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
             ["error: both Transfer-Encoding and Content-Length"]),
        Case("Transfer-Encoding with Content-Length in an interim response", "HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: x\r\nContent-Length: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
             ["error: both Transfer-Encoding and Content-Length"]),
        Case("Transfer-Encoding with Content-Length in a 204", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
             ["error: both Transfer-Encoding and Content-Length"]),
        Case("Transfer-Encoding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
             ["error: Transfer-Encoding other than chunked"]),
        Case("Transfer-Encoding twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ["error: Transfer-Encoding other than chunked"]),
        Case("chunked in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ["error: Transfer-Encoding in an HTTP/1.0 response"]),
        Case("chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("chunk size with a sign", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("chunk size of 17 digits", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\nx\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("chunk data longer than its size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: chunk data not followed by CRLF"]),
        Case("bare LF after a chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: bare LF in a chunk-size line"]),
        Case("whitespace after a chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("whitespace in a chunk extension", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1; e\r\nx\r\n0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("open quoted chunk extension", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;e=\"x\r\nx\r\n0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("control byte in a chunk extension", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a\u{1}\r\nx\r\n0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "error: invalid chunk-size line"]),
        Case("interim response in HTTP/1.0", "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx", eof: true,
             ["error: interim response that ends the connection"]),
        Case("interim response that closes the connection", "HTTP/1.1 103 Early Hints\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx",
             eof: true, ["error: interim response that ends the connection"]),
        Case("Content-Length in trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nContent-Length: 0\r\n\r\n",
             ["head 1 200 keep [Transfer-Encoding=chunked]", "body x", "error: framing field in trailers"]),
        Case("101 to a request that asked for none", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
             ["error: 101 to a request that asked for no upgrade"]),
        Case("a second response nobody asked for", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
             ["head 1 200 keep [Content-Length=0]", "end", "error: bytes with no request outstanding"]),
        Case("bytes after a response that closes the connection", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\nX",
             ["head 1 200 close [Connection=close,Content-Length=0]", "end", "error: bytes after the connection's last response"]),
        Case("cut in the body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", eof: true,
             ["head 1 200 keep [Content-Length=5]", "body hel", "error: connection closed in the middle of a response"]),
        Case("cut in the head", "HTTP/1.1 200 OK\r\nContent-Le", eof: true, ["error: connection closed in the middle of a response"]),
        Case("cut before the last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n", eof: true,
             ["head 1 200 keep [Transfer-Encoding=chunked]", "body x", "error: connection closed in the middle of a response"]),
    ]

    /// Splits worth trying: one read, every byte apart, and a few sizes that cut lines and CRLFs.
    static let splits = [0, 1, 2, 3, 7, 16]

    @Test("accepted responses: the events, whatever the reads' boundaries", arguments: accepted, splits)
    func acceptedResponses(_ c: Case, split: Int) {
        var expected = c.expected
        // Split reads deliver the upgraded bytes in pieces: compare them joined.
        var got = Self.transcript(c.wire, request: c.request, split: split, eof: c.eof)
        if c.request == .upgrade, split > 0 {
            let upgraded = got.filter { $0.hasPrefix("upgraded ") }.map { String($0.dropFirst(9)) }.joined()
            got = got.filter { !$0.hasPrefix("upgraded ") } + (upgraded.isEmpty ? [] : ["upgraded " + upgraded])
            expected = expected.filter { !$0.hasPrefix("upgraded ") } + expected.filter { $0.hasPrefix("upgraded ") }
        }
        #expect(got == expected)
    }

    @Test("refused responses fail with a reason, whatever the reads' boundaries", arguments: refused, splits)
    func refusedResponses(_ c: Case, split: Int) {
        var got = Self.transcript(c.wire, request: c.request, split: split, eof: c.eof)
        // Body text arrives in pieces before an error: join it as the whole-read transcript does.
        got = got.filter { !$0.hasPrefix("body ") }
        #expect(got == c.expected.filter { !$0.hasPrefix("body ") })
    }

    @Test("a HEAD then a GET on one connection: the HEAD's answer has no body, the GET's has")
    func headThenGetQueued() {
        var parser = UpstreamResponseParser()
        parser.requestSent(isHEAD: true, wantsUpgrade: false)
        parser.requestSent(isHEAD: false, wantsUpgrade: false)
        var input = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        var kinds: [String] = []
        while let event = try? parser.next(&input) {
            switch event {
            case .head: kinds.append("head")
            case .body(let b): kinds.append("body \(String(buffer: b))")
            case .end: kinds.append("end")
            }
        }
        #expect(kinds == ["head", "end", "head", "body hello", "end"])
    }

    @Test("ten thousand interim responses in one read: consumed in a loop, then the final response")
    func manyInterimResponses() {
        let wire = String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 10_000) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        #expect(Self.transcript(wire) == ["head 1 200 keep [Content-Length=0]", "end"])
    }

    @Test("a head over the limit fails before the limit's end is awaited; one just under it parses")
    func headLimit() {
        let filler = "X-F: " + String(repeating: "a", count: 200) + "\r\n"
        let lines = UpstreamResponseParser.maxHeadBytes / filler.utf8.count
        let big = "HTTP/1.1 200 OK\r\n" + String(repeating: filler, count: lines + 1)  // no end yet
        #expect(Self.transcript(big, split: 4096) == ["error: response head over \(UpstreamResponseParser.maxHeadBytes) bytes"])
        let fits = "HTTP/1.1 200 OK\r\n" + String(repeating: filler, count: lines - 1) + "Content-Length: 0\r\n\r\n"
        #expect(Self.transcript(fits, split: 4096).last == "end")
    }

    @Test("an endless chunk-size line fails at its limit")
    func chunkLineLimit() {
        let wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + String(repeating: "e", count: UpstreamResponseParser.maxChunkLineBytes)
        #expect(Self.transcript(wire, split: 512).last == "error: chunk-size line over \(UpstreamResponseParser.maxChunkLineBytes) bytes")
    }

    @Test("Connection: close in chunked trailers ends the connection; close followed by a tab does not, as llhttp reads them")
    func connectionCloseInTrailers() throws {
        var parser = UpstreamResponseParser()
        parser.requestSent(isHEAD: false, wantsUpgrade: false)
        var input = ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n")
        while try parser.next(&input) != nil {}
        #expect(!parser.connectionReusable)
        var tabbed = UpstreamResponseParser()
        tabbed.requestSent(isHEAD: false, wantsUpgrade: false)
        input = ByteBuffer(string: "HTTP/1.1 200 OK\r\nConnection: close\t\r\nContent-Length: 0\r\n\r\n")
        while try tabbed.next(&input) != nil {}
        #expect(tabbed.connectionReusable)
    }

    @Test("a clean close between responses is no error; a response read to the close ends there")
    func endOfInput() throws {
        var parser = UpstreamResponseParser()
        #expect(try parser.endOfInput() == nil)
        parser.requestSent(isHEAD: false, wantsUpgrade: false)
        #expect(try parser.endOfInput() == nil)  // nothing came: the caller retries or reports the close
    }

    // MARK: NIO's decoder as the reference

    /// What NIO's `HTTPResponseDecoder` makes of `wire` after a GET (or HEAD), in the same transcript form; `nil`
    /// when it fails.
    static func nioTranscript(_ wire: String, request: Request, eof: Bool) -> [String]? {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)
        decoder.write(data: .head(HTTPRequestHead(version: .http1_1, method: request == .head ? .HEAD : .GET, uri: "/")))
        do {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
            try channel.writeInbound(ByteBuffer(string: wire))
            if eof { try channel.close().wait() }
        } catch { return nil }
        var lines: [String] = []
        var body = ""
        while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head(let head):
                // llhttp keeps a value's trailing whitespace, which RFC 9110 §5.5 excludes from it.
                let fields = head.headers.map { "\($0.name)=\(Self.trimmingTrailingWhitespace($0.value))" }.joined(separator: ",")
                lines.append("head \(head.version.minor) \(head.status.code) \(head.isKeepAlive ? "keep" : "close") [\(fields)]")
            case .body(var buffer): body += buffer.readString(length: buffer.readableBytes) ?? ""
            case .end(let trailers):
                if !body.isEmpty { lines.append("body \(body)"); body = "" }
                lines.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ",") } ?? ""))
            }
        }
        return lines
    }

    static func trimmingTrailingWhitespace(_ value: String) -> String {
        var bytes = Array(value.utf8)
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("where NIO's decoder accepts a response, the parser reads it the same", arguments: accepted.filter { $0.request != .upgrade })
    func sameAsNIO(_ c: Case) {
        guard let nio = Self.nioTranscript(c.wire, request: c.request, eof: c.eof) else {
            Issue.record("NIO refused \(c.name)")
            return
        }
        // NIO reports a read-to-close response as keep-alive by its headers alone; the parser says the truth.
        let ours = Self.transcript(c.wire, request: c.request, eof: c.eof)
        #expect(ours.map { $0.replacing(" close [", with: " keep [") } == nio.map { $0.replacing(" close [", with: " keep [") })
    }
}
