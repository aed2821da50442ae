import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// The client request parser as a pure state machine: framing, strictness (the smuggling surface), reads split
/// anywhere, and the same reading as NIO's `HTTPRequestDecoder` (which it replaced) wherever both accept.
@Suite("Client request parser")
struct ClientRequestParserTests {
    /// Runs `wire` through a parser in reads of `split` bytes (0: one read). The transcript: one line per event,
    /// `stopped <bytes>` for what follows a stop, or `error <status>: <reason>` where it failed.
    static func transcript(_ wire: [UInt8], split: Int = 0) -> [String] {
        var parser = ClientRequestParser()
        var lines: [String] = []
        var body = ""
        func record(_ part: HTTPServerRequestPart) {
            switch part {
            case .head(let head):
                let fields = head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
                lines.append("head \(head.method.rawValue) \(head.uri) \(head.version.minor) [\(fields)]")
            case .body(let buffer):
                body += String(buffer: buffer)
            case .end(let trailers):
                if !body.isEmpty { lines.append("body \(body)"); body = "" }
                lines.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ",") } ?? ""))
            }
        }
        let step = split == 0 ? max(wire.count, 1) : split
        do {
            var offset = 0
            while offset < wire.count {
                var input = ByteBuffer(bytes: wire[offset..<min(offset + step, wire.count)])
                offset += step
                while let part = try parser.next(&input) { record(part.nio) }
                if input.readableBytes > 0 { lines.append("unconsumed \(input.readableBytes)") }
            }
        } catch {
            if !body.isEmpty { lines.append("body \(body)") }
            lines.append("error \(error.status.code): \(error.reason)")
            return lines
        }
        if !body.isEmpty { lines.append("body \(body)") }
        if parser.stopped, let rest = parser.takeRemainder() { lines.append("stopped \(String(buffer: rest))") }
        if parser.inMessage { lines.append("incomplete") }
        return lines
    }

    static func transcript(_ wire: String, split: Int = 0) -> [String] { transcript(Array(wire.utf8), split: split) }

    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let wire: String
        let expected: [String]
        /// NIO reads the same bytes the same way (false where the parser stops or ignores what NIO would go on reading).
        let comparable: Bool
        var description: String { name }
        init(_ name: String, _ wire: String, _ expected: [String], comparable: Bool = true) {
            self.name = name; self.wire = wire; self.expected = expected; self.comparable = comparable
        }
    }

    static let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Auth-Sub: admin\r\n\r\n"

    static let accepted: [Case] = [
        Case("GET with a query", "GET /a/b?c=1&d=%20 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
             ["head GET /a/b?c=1&d=%20 1 [Host=x,Accept=*/*]", "end"]),
        Case("POST with Content-Length", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
             ["head POST /p 1 [Host=x,Content-Length=5]", "body hello", "end"]),
        Case("POST with Content-Length 0", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
             ["head POST /p 1 [Host=x,Content-Length=0]", "end"]),
        Case("chunked with extensions and trailers",
             "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\nA;a;b=\"q \\\"x\\\"\"\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
             ["head POST /c 1 [Host=x,Transfer-Encoding=Chunked]", "body hello0123456789", "end X-T=1"]),
        Case("chunked, empty", "POST /c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
             ["head POST /c 1 [Host=x,transfer-encoding=chunked]", "end"]),
        Case("pipelined requests, bodies included",
             "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
             ["head GET /1 1 [Host=x]", "end", "head POST /2 1 [Host=x,Content-Length=3]", "body abc", "end", "head GET /3 1 [Host=x]", "end"]),
        Case("a request in a body is body", "POST /carrier HTTP/1.1\r\nHost: x\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled,
             ["head POST /carrier 1 [Host=x,Content-Length=\(smuggled.utf8.count)]", "body " + smuggled, "end"]),
        Case("empty lines before a request line are skipped", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", ["head GET / 1 [Host=x]", "end"]),
        Case("whitespace around values is not part of them; empty values",
             "GET / HTTP/1.1\r\nHost:x\r\nX-A: \t a b \t\r\nX-E:\r\nX-F: \r\n\r\n", ["head GET / 1 [Host=x,X-A=a b,X-E=,X-F=]", "end"]),
        Case("obs-text in a value", "GET /caf%C3%A9 HTTP/1.1\r\nHost: x\r\nX-N: Ren\u{e9}e\r\n\r\n",
             ["head GET /caf%C3%A9 1 [Host=x,X-N=Ren\u{e9}e]", "end"]),
        Case("HTTP/1.0 with keep-alive goes on", "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
             ["head GET /1 0 [Connection=keep-alive]", "end", "head GET /2 0 []", "end"]),
        Case("methods llhttp knows, asterisk and absolute-form targets",
             "M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\nQUERY /q HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nPATCH http://h/p HTTP/1.1\r\nHost: h\r\n\r\n"
             + "GET https://[::1]:8443?q HTTP/1.1\r\nHost: h\r\n\r\nGET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
             ["head MSEARCH * 1 [Host=x]", "end", "head QUERY /q 1 [Host=x]", "end", "head OPTIONS * 1 [Host=x]", "end",
              "head PATCH http://h/p 1 [Host=h]", "end", "head GET https://[::1]:8443?q 1 [Host=h]", "end", "head GET http://h 1 [Host=h]", "end"]),
        Case("Transfer-Encoding with whitespace and case", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tCHUNKED \r\n\r\n1\r\na\r\n0\r\n\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=CHUNKED]", "body a", "end"]),
        // Stops and ends: the parser reads nothing as requests past these (NIO would go on, or stop differently).
        Case("Connection: close: nothing after it is read", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + smuggled,
             ["head GET / 1 [Host=x,Connection=close]", "end"], comparable: false),
        Case("HTTP/1.0 without keep-alive: nothing after it is read", "GET / HTTP/1.0\r\n\r\n" + smuggled, ["head GET / 0 []", "end"], comparable: false),
        Case("an upgrade request stops the parse; what follows is kept for the relay",
             "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\u{1}\u{2}frame",
             ["head GET /ws 1 [Host=x,Connection=keep-alive, Upgrade,Upgrade=websocket]", "end", "stopped \u{1}\u{2}frame"], comparable: false),
        Case("CONNECT stops the parse", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + smuggled,
             ["head CONNECT h:443 1 [Host=h:443]", "end", "stopped " + smuggled], comparable: false),
        Case("an Upgrade field without Connection: upgrade is no upgrade", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
             ["head GET / 1 [Host=x,Upgrade=h2c]", "end", "head GET /2 1 [Host=x]", "end"], comparable: false),
        Case("keep-alive followed by a tab is not keep-alive, as llhttp reads it (client-request-4)",
             "GET / HTTP/1.0\r\nConnection: keep-alive\t\r\n\r\nGET /2 HTTP/1.0\r\n\r\n", ["head GET / 0 [Connection=keep-alive]", "end"], comparable: false),
        Case("Connection: close in trailers ends the connection, as llhttp reads it (client-request-5)",
             "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n" + smuggled,
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "end Connection=close"], comparable: false),
        Case("a request cut short is incomplete, not an error", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nhal",
             ["head POST / 1 [Host=x,Content-Length=9]", "body hal", "incomplete"], comparable: false),
    ]

    static let refused: [Case] = [
        Case("two spaces after the method", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("an unknown method", "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", ["error 501: unknown method"]),
        Case("a lower-case method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", ["error 501: unknown method"]),
        Case("HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", ["error 505: HTTP version other than 1.0 and 1.1"]),
        Case("HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", ["error 505: HTTP version other than 1.0 and 1.1"]),
        Case("HTTP/0.9 style, no version", "GET /\r\n\r\n", ["error 400: malformed request target"]),
        Case("lower-case protocol name", "GET / http/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request line"]),
        Case("space after the version", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", ["error 400: malformed request line"]),
        Case("control byte in the target", "GET /a\u{1}b HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("a target in no form (client-request-1)", "GET ' HTTP/1.0\r\n\r\n", ["error 400: malformed request target"]),
        Case("absolute-form without an authority", "GET http:///p HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("a scheme with a digit", "GET h2://x/ HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("CONNECT to no host (client-request-6)", "CONNECT @@ HTTP/1.1\r\n\r\n", ["error 400: malformed request target"]),
        Case("CONNECT without a port", "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", ["error 400: malformed request target"]),
        Case("user info in an absolute-form target", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", ["error 400: malformed request target"]),
        Case("CONNECT to a path", "CONNECT /p HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("UTF-8 in the target (browsers percent-encode it)", "GET /caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("DEL in the target", "GET /a\u{7f} HTTP/1.1\r\nHost: x\r\n\r\n", ["error 400: malformed request target"]),
        Case("bare LF ends a line", "GET / HTTP/1.1\r\nHost: x\nX-Auth-Sub: admin\r\n\r\n", ["error 400: bare LF in the request head"]),
        Case("all bare LFs", "GET / HTTP/1.1\nHost: x\n\n", ["error 400: bare LF in the request head"]),
        Case("bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", ["error 400: bare CR"]),
        Case("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n X-Auth-Sub: admin\r\n\r\n", ["error 400: obsolete line folding"]),
        Case("whitespace before the colon", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", ["error 400: invalid field name"]),
        Case("separator in a name", "GET / HTTP/1.1\r\nHost: x\r\nX-A(b): 1\r\n\r\n", ["error 400: invalid field name"]),
        Case("empty name", "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", ["error 400: invalid field name"]),
        Case("NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n", ["error 400: control byte in a field value"]),
        Case("two Content-Lengths, equal", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
             ["error 400: invalid or repeated Content-Length"]),
        Case("a Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", ["error 400: invalid or repeated Content-Length"]),
        Case("a signed Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", ["error 400: invalid or repeated Content-Length"]),
        Case("a Content-Length past 18 digits", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n",
             ["error 400: invalid or repeated Content-Length"]),
        Case("a tab after the Content-Length (client-request-3)", "POST / HTTP/1.1\r\nContent-Length: 1\t\r\n\r\nx",
             ["error 400: invalid or repeated Content-Length"]),
        Case("a tab after chunked (client-request-2)", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
             ["error 400: tab in Transfer-Encoding"]),
        Case("Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ["error 400: both Transfer-Encoding and Content-Length"]),
        Case("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ["error 400: Transfer-Encoding in an HTTP/1.0 request"]),
        Case("a coding other than chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", ["error 501: Transfer-Encoding other than chunked"]),
        Case("chunked not alone", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
             ["error 501: Transfer-Encoding other than chunked"]),
        Case("two Transfer-Encoding lines", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
             ["error 501: Transfer-Encoding other than chunked"]),
        Case("a chunk size with a sign", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "error 400: invalid chunk-size line"]),
        Case("a chunk size past 16 hex digits", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "error 400: invalid chunk-size line"]),
        Case("whitespace in a chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a\r\nhello\r\n0\r\n\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "error 400: invalid chunk-size line"]),
        Case("a bare LF in a chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n0\r\n\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "error 400: bare LF in a chunk-size line"]),
        Case("chunk data longer than its size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "body ab", "error 400: chunk data not followed by CRLF"]),
        Case("Content-Length in trailers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
             ["head POST / 1 [Host=x,Transfer-Encoding=chunked]", "error 400: framing field in trailers"]),
        Case("an upgrade request with a body", "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi",
             ["error 400: upgrade request with a body"]),
        Case("an error after a good request", "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost : x\r\n\r\n",
             ["head GET /1 1 [Host=x]", "end", "error 400: invalid field name"]),
    ]

    /// Splits worth trying: one read, every byte apart, and a few sizes that cut lines and CRLFs.
    static let splits = [0, 1, 2, 3, 7, 16]

    /// Body text arrives in pieces with split reads: joined, as in one read.
    static func joiningBodies(_ lines: [String]) -> [String] {
        var out: [String] = []
        for line in lines {
            if line.hasPrefix("body "), let last = out.last, last.hasPrefix("body ") {
                out[out.count - 1] = last + line.dropFirst(5)
            } else if line.hasPrefix("stopped "), let last = out.last, last.hasPrefix("stopped ") {
                out[out.count - 1] = last + line.dropFirst(8)
            } else {
                out.append(line)
            }
        }
        return out
    }

    @Test("accepted requests: the events, whatever the reads' boundaries", arguments: accepted, splits)
    func acceptedRequests(_ c: Case, split: Int) {
        #expect(Self.joiningBodies(Self.transcript(c.wire, split: split)) == c.expected)
    }

    @Test("refused requests fail with a status and a reason, whatever the reads' boundaries", arguments: refused, splits)
    func refusedRequests(_ c: Case, split: Int) {
        #expect(Self.joiningBodies(Self.transcript(c.wire, split: split)) == c.expected)
    }

    static let lastRequests: [(String, Bool)] = [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n", true),
        ("GET / HTTP/1.0\r\n\r\n", true),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
        ("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true),
        ("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", true),
    ]

    @Test("a head says whether the parser reads any request after it", arguments: lastRequests)
    func headSaysWhetherItIsLast(wire: String, last: Bool) throws {
        var parser = ClientRequestParser()
        var input = ByteBuffer(string: wire)
        guard case .head(let head)? = try parser.next(&input) else { Issue.record("no head"); return }
        #expect(head.isLast == last)
        #expect(head.isLast == parser.stopsAfterRequest)
        // One field range per field line (the lines between the request line and the empty line).
        #expect(head.fields.count == wire.components(separatedBy: "\r\n").count - 3)
        #expect(head.firstValue("host") == wire.split(separator: "\r\n").first { $0.hasPrefix("Host: ") }.map { String($0.dropFirst(6)) })
    }

    @Test("a head over the limit is a 431 before the limit's end is awaited; one just under it parses")
    func headLimit() {
        let filler = "X-F: " + String(repeating: "a", count: 200) + "\r\n"
        let lines = ClientRequestParser.maxHeadBytes / filler.utf8.count
        let big = "GET / HTTP/1.1\r\n" + String(repeating: filler, count: lines + 1)  // no end yet
        #expect(Self.transcript(big, split: 4096) == ["error 431: request head over \(ClientRequestParser.maxHeadBytes) bytes"])
        let fits = "GET / HTTP/1.1\r\n" + String(repeating: filler, count: lines - 1) + "Host: x\r\n\r\n"
        #expect(Self.transcript(fits, split: 4096).last == "end")
    }

    @Test("head and trailers share one limit, as llhttp counts them")
    func headAndTrailersShareTheLimit() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-A: " + String(repeating: "a", count: 50_000) + "\r\n\r\n"
        let left = ClientRequestParser.maxHeadBytes - head.utf8.count
        let over = head + "0\r\nX-T: " + String(repeating: "t", count: 40_000) + "\r\n\r\n"
        #expect(Self.transcript(over, split: 4096).last == "error 400: trailers over \(left) bytes")
        let fits = head + "0\r\nX-T: " + String(repeating: "t", count: left - 20) + "\r\n\r\n"
        #expect(Self.transcript(fits, split: 4096).last?.hasPrefix("end X-T=") == true)
    }

    @Test("an endless chunk-size line fails at its limit")
    func chunkLineLimit() {
        let wire = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;" + String(repeating: "e", count: ChunkedBodyReader.maxLineBytes)
        #expect(Self.transcript(wire, split: 512).last == "error 400: chunk-size line over \(ChunkedBodyReader.maxLineBytes) bytes")
    }

    @Test("the eight-at-a-time value check flags every byte a value cannot hold, at every position of a word")
    func wordCheckMissesNothing() {
        for position in 0..<8 {
            for byte in 0...255 {
                var word = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                word[position] = UInt8(byte)
                let loaded = word.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                let mustFlag = byte < 0x20 || byte == 0x7F
                if mustFlag { #expect(HTTPScan.mayHoldNonValueByte(loaded), "byte \(byte) at \(position)") }
                // Clean words are never flagged here (a flag would only cost speed, but this shows the test is exact).
                if !mustFlag { #expect(!HTTPScan.mayHoldNonValueByte(loaded), "byte \(byte) at \(position)") }
            }
        }
    }

    /// The scan skips to a word's lowest flagged byte: that byte must be the word's first non-value byte, whatever
    /// the bytes above it (borrows from it may flag clean ones there). Every pair of bytes at every pair of positions,
    /// over a background of each byte class.
    @Test("the lowest flagged byte of a word is its first byte below 0x20 or DEL")
    func lowestFlagIsTheFirstNonValueByte() {
        let samples: [UInt8] = [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F, 0x20, 0x21, 0x3A, 0x61, 0x7E, 0x7F, 0x80, 0x9F, 0xA0, 0xFF]
        for background in [UInt8(ascii: "a"), 0x20, 0xA0, 0xFF] {
            for first in 0..<8 {
                for second in first..<8 {
                    for a in samples {
                        for b in samples {
                            var word = [UInt8](repeating: background, count: 8)
                            word[first] = a
                            word[second] = b
                            let loaded = word.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                            let flags = HTTPScan.nonValueFlags(loaded)
                            let expected = word.firstIndex { $0 < 0x20 || $0 == 0x7F }
                            #expect((flags == 0 ? nil : flags.trailingZeroBitCount / 8) == expected, "\(word)")
                        }
                    }
                }
            }
        }
    }

    /// Values long enough to take the 32-, eight- and one-at-a-time paths, with a bad byte at each offset (block
    /// edges, word edges, the tail).
    @Test("a control byte anywhere in a long value is refused; obs-text and tabs are not",
          arguments: [0, 7, 8, 15, 16, 23, 24, 31, 32, 33, 38, 63, 64, 70, 95, 96, 99])
    func longValueScan(offset: Int) {
        let length = 100
        var value = Array(String(repeating: "v", count: length).utf8)
        value[offset] = 0x01
        let bad = "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + String(decoding: value, as: UTF8.self) + "\r\n\r\n"
        #expect(Self.transcript(bad).last == "error 400: control byte in a field value")
        // After a tab in the same word, a control byte is still found.
        if offset >= 3 {
            value[offset - 3] = 0x09
            let afterTab = "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + String(decoding: value, as: UTF8.self) + "\r\n\r\n"
            #expect(Self.transcript(afterTab).last == "error 400: control byte in a field value")
            value[offset - 3] = UInt8(ascii: "v")
        }
        // A tab (OWS: trimmed at either end) and obs-text pass.
        value[offset] = 0x09
        value[(offset + 5) % length] = 0xE9
        var expected = value[...]
        while expected.first == 0x09 { expected = expected.dropFirst() }
        while expected.last == 0x09 { expected = expected.dropLast() }
        var input = ByteBuffer(bytes: Array("GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".utf8) + value + Array("\r\n\r\n".utf8))
        var parser = ClientRequestParser()
        guard case .head(let head)? = try? parser.next(&input) else { Issue.record("no head"); return }
        #expect(head.withBytes { Array(head.fields[1].value(in: $0)) } == Array(expected))
    }

    @Test("ten thousand empty lines in one read are skipped in a loop")
    func manyEmptyLines() {
        let wire = String(repeating: "\r\n", count: 10_000) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(Self.transcript(wire) == ["head GET / 1 [Host=x]", "end"])
    }

    @Test("every method in llhttp's table parses; anything else is a 501", arguments: Array(ClientRequestParser.knownMethods).sorted())
    func knownMethods(_ method: String) {
        let target = method == "CONNECT" ? "h:443" : "/m"
        let lines = Self.transcript("\(method) \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(lines.first?.hasPrefix("head ") == true)
        #expect(Self.transcript("\(method)X /m HTTP/1.1\r\nHost: x\r\n\r\n") == ["error 501: unknown method"])
    }

    // MARK: NIO's decoder as the reference

    /// What NIO's `HTTPRequestDecoder` makes of `wire`, in the same transcript form; `nil` when it fails.
    static func nioTranscript(_ wire: String) -> [String]? {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        do {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.writeInbound(ByteBuffer(string: wire))
        } catch { return nil }
        var lines: [String] = []
        var body = ""
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head):
                // llhttp keeps a value's trailing whitespace, which RFC 9110 §5.5 excludes from it.
                let fields = head.headers.map { "\($0.name)=\(UpstreamResponseParserTests.trimmingTrailingWhitespace($0.value))" }.joined(separator: ",")
                lines.append("head \(head.method.rawValue) \(head.uri) \(head.version.minor) [\(fields)]")
            case .body(var buffer): body += buffer.readString(length: buffer.readableBytes) ?? ""
            case .end(let trailers):
                if !body.isEmpty { lines.append("body \(body)"); body = "" }
                lines.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ",") } ?? ""))
            }
        }
        return lines
    }

    @Test("where NIO's decoder accepts a request, the parser reads it the same", arguments: accepted.filter(\.comparable))
    func sameAsNIO(_ c: Case) {
        guard let nio = Self.nioTranscript(c.wire) else {
            Issue.record("NIO refused \(c.name)")
            return
        }
        #expect(Self.transcript(c.wire) == nio)
    }

    /// Refused requests that NIO's decoder (llhttp as NIO configures it) accepts: where the parser is stricter.
    /// Never the other way round — that is what the `client-request` fuzz target checks.
    static let stricterThanNIO: Set<String> = [
        "two spaces after the method", "a Content-Length past 18 digits", "Transfer-Encoding in HTTP/1.0", "chunked not alone",
        "an upgrade request with a body", "absolute-form without an authority", "CONNECT to a path",
        "CONNECT without a port", "user info in an absolute-form target",
    ]


    @Test("refused requests: NIO refuses them too, except where the parser is deliberately stricter", arguments: refused)
    func refusedVersusNIO(_ c: Case) {
        #expect((Self.nioTranscript(c.wire) == nil) != Self.stricterThanNIO.contains(c.name))
    }
}

/// The head's end searched where the previous read's search stopped: the same answer as a search from the start at
/// every prefix, and each byte looked at about once (a trickled 60 KB head of short lines was rescanned per read).
@Suite("Head end search resumed between reads")
struct ResumedHeadScanTests {
    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "y", count: 300) + "\r\n\r\nrest",
        "GET / HTTP/1.1\r\n" + String(repeating: "a: b\r\n", count: 200) + "\r\n",
        "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",  // a bare LF: -1 wherever the search resumes
        "\r\nX: 1\r\n\r\n",  // an empty trailer block, read from a line start
    ])
    func sameAsAFreshSearchAtEveryPrefix(_ head: String) {
        let bytes = Array(head.utf8)
        for fromLineStart in [false, true] {
            var resume = 0
            for n in 1...bytes.count {
                let prefix = ByteBuffer(bytes: bytes[0..<n])
                let fresh = HTTPScan.lengthThroughEmptyLine(prefix, limit: 80 * 1024, fromLineStart: fromLineStart)
                let resumed = HTTPScan.lengthThroughEmptyLine(prefix, limit: 80 * 1024, fromLineStart: fromLineStart, resumeAt: &resume)
                #expect(resumed == fresh, "prefix \(n) of \(head.prefix(20).debugDescription)")
                #expect(resume <= n)
                if fresh != nil { break }
            }
        }
    }
}
