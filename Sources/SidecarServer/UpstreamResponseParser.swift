import NIOCore
import NIOHTTP1

/// A response head read from an upstream: what the proxy handler relays and decides on, nothing more. Its fields stay
/// bytes — ranges in the head's own bytes, validated by the parser — so relaying one makes no `String`s: the proxy
/// classifies names in place and the client encoder copies the kept lines as they came.
public struct UpstreamResponseHead: Sendable {
    public var version: HTTPVersion
    public var status: HTTPResponseStatus
    /// The head's bytes (a slice of the read, not a copy) and where each field's name and value lie in them.
    public var block: ByteBuffer
    public var fieldRanges: [FieldRange]
    /// Whether the connection may carry another exchange after this response (version, `Connection`, framing).
    public var keepAlive: Bool
    public var hasContentLength: Bool

    /// Every field as strings (tests and the rare paths that need them).
    public var fields: [(String, String)] {
        fieldRanges.map { ($0.name(in: block), $0.value(in: block)) }
    }
}

/// Where a field's name and value lie in a block of bytes (the value without surrounding whitespace).
public struct FieldRange: Sendable {
    public let nameStart: Int32, nameCount: Int32, valueStart: Int32, valueCount: Int32

    public func name(in block: ByteBuffer) -> String {
        block.getString(at: block.readerIndex + Int(nameStart), length: Int(nameCount)) ?? ""
    }

    public func value(in block: ByteBuffer) -> String {
        block.getString(at: block.readerIndex + Int(valueStart), length: Int(valueCount)) ?? ""
    }
}

/// One step of an upstream response, in wire order.
public enum UpstreamResponseEvent: Sendable {
    case head(UpstreamResponseHead)
    case body(ByteBuffer)
    /// The response ended; chunked trailers if it had any.
    case end(HTTPHeaders?)
}

/// Why an upstream's bytes were refused: the connection is closed and the exchange fails with a 502 (or is cut).
public struct UpstreamResponseError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { "upstream response: \(reason)" }
    static func bad(_ reason: String) -> Self { Self(reason: reason) }
}

/// Parses HTTP/1.x responses from an upstream connection, byte for byte, as a pure state machine.
///
/// In place of NIO's `HTTPResponseDecoder` behind a `ByteToMessageHandler`: that pair made every head a
/// `HTTPHeaders` of `String`s, passed each part as a `NIOAny` through a handler hop with run-time casts in unspecialised
/// generic code, and cost ~15 k instructions per response (measured, ninth session). Here the upstream handler calls
/// ``next(_:)`` on each read and hands the events straight to the proxy handler; body bytes are slices of the read
/// buffer, never copied.
///
/// The framing rules are RFC 9112 §6.3 with nginx's strictness towards upstreams: a response to HEAD, a 1xx, 204 or
/// 304 has no body; `Transfer-Encoding` must be exactly `chunked` and must not come with `Content-Length`;
/// `Content-Length` must be digits, and only once; otherwise the body runs to the connection's close (and
/// the connection is not reused). Interim 1xx responses are consumed (a 101 only ends the parse when the request
/// asked for an upgrade); bytes nobody asked for, obsolete line folding, bare CR or LF line ends, control characters in
/// a value, a name that is not a token, a head over ``maxHeadBytes`` all fail the connection — a response mix-up on
/// a pooled connection would hand one client another client's answer.
public struct UpstreamResponseParser: Sendable {
    public init() {}

    /// Longest response head (status line, fields, final empty line), and longest trailer block; NIO's default limit.
    public static let maxHeadBytes = 80 * 1024
    /// Longest chunk-size line, extensions included.
    public static let maxChunkLineBytes = 4 * 1024

    private enum State {
        /// Waiting for a status line (between responses, or before the first).
        case head
        case fixedBody(remaining: Int)
        /// The body is complete (or there is none): `.end` comes next.
        case bodyEnded
        case chunkSize
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        case trailers
        case untilClose
        /// After a 101 to an upgrade request, a response that closes the connection, or an error: no more HTTP here.
        case done
    }

    private var state = State.head
    /// Bytes of an incomplete line-based element (head, chunk-size line, trailers) kept for the next read.
    private var pending: ByteBuffer?
    /// Requests written and not yet answered, oldest first, as bits (bit 0 is the oldest): whether each was a HEAD
    /// and whether it asked for an upgrade. The proxy sends one request at a time; the queue keeps the framing right
    /// even if that changes.
    private var outstanding = 0
    private var headBits: UInt64 = 0
    private var upgradeBits: UInt64 = 0
    private var requestWasHEAD: Bool { headBits & 1 == 1 }
    private var requestWantsUpgrade: Bool { upgradeBits & 1 == 1 }
    /// Whether the response being read leaves the connection reusable.
    private var keepAlive = true
    /// Set after a 101 to an upgrade request: the rest of the connection's bytes are the upgraded protocol's, and
    /// ``next(_:)`` leaves them in its input.
    public private(set) var upgraded = false

    /// Records the request just written: a response to it is now expected.
    public mutating func requestSent(isHEAD: Bool, wantsUpgrade: Bool) {
        guard outstanding < 64 else { return }  // more is no proxy's pattern; the 65th response then fails
        if isHEAD { headBits |= 1 << UInt64(outstanding) }
        if wantsUpgrade { upgradeBits |= 1 << UInt64(outstanding) }
        outstanding += 1
    }

    /// The next event from `input` (consuming what it used), or `nil` when more bytes are needed. Bytes of an
    /// incomplete head or line are moved into the parser; `input` is then empty.
    public mutating func next(_ input: inout ByteBuffer) throws -> UpstreamResponseEvent? {
        if var kept = pending {
            pending = nil
            kept.writeBuffer(&input)
            input = kept
        }
        // A loop, not recursion, past elements that make no event (interim responses, chunk-size lines): an upstream
        // may send thousands of them in one read.
        while true {
            switch state {
            case .head:
                guard input.readableBytes > 0 else { return nil }
                guard outstanding > 0 else { throw fail("bytes with no request outstanding") }
                if let event = try parseHead(&input) { return event }
                if pending != nil { return nil }
            case .fixedBody(let remaining):
                guard input.readableBytes > 0 else { return nil }
                let count = min(remaining, input.readableBytes)
                state = count == remaining ? .bodyEnded : .fixedBody(remaining: remaining - count)
                return .body(input.readSlice(length: count)!)
            case .bodyEnded:
                return finishResponse(trailers: nil)
            case .chunkSize:
                guard let lineLength = try line(&input, limit: Self.maxChunkLineBytes, what: "chunk-size line") else { return nil }
                let size: Int? = input.withUnsafeReadableBytes { bytes in
                    Self.chunkSize(UnsafeRawBufferPointer(rebasing: bytes[0..<(lineLength - 2)]))
                }
                guard let size else { throw fail("invalid chunk-size line") }
                input.moveReaderIndex(forwardBy: lineLength)
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard input.readableBytes > 0 else { return nil }
                let count = min(remaining, input.readableBytes)
                state = count == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - count)
                return .body(input.readSlice(length: count)!)
            case .chunkDataEnd:
                guard input.readableBytes >= 2 else { return keep(&input) }
                guard input.readInteger(as: UInt16.self) == 0x0D0A else { throw fail("chunk data not followed by CRLF") }
                state = .chunkSize
            case .trailers:
                return try parseTrailers(&input)
            case .untilClose:
                guard input.readableBytes > 0 else { return nil }
                return .body(input.readSlice(length: input.readableBytes)!)
            case .done:
                if upgraded || input.readableBytes == 0 { return nil }  // an upgraded protocol's bytes stay in `input`
                throw fail("bytes after the connection's last response")
            }
        }
    }

    /// The connection closed. Returns the `.end` of a response delimited by the close; throws if a response was cut.
    public mutating func endOfInput() throws -> UpstreamResponseEvent? {
        switch state {
        case .untilClose:
            return finishResponse(trailers: nil)
        case .head where pending == nil, .done:
            return nil
        default:
            throw fail("connection closed in the middle of a response")
        }
    }

    // MARK: heads

    private mutating func parseHead(_ input: inout ByteBuffer) throws -> UpstreamResponseEvent? {
        guard let headLength = Self.lengthThroughEmptyLine(input, limit: Self.maxHeadBytes) else {
            if input.readableBytes > Self.maxHeadBytes { throw fail("response head over \(Self.maxHeadBytes) bytes") }
            return keep(&input)
        }
        guard headLength > 0 else { throw fail("bare LF in the response head") }
        var parsed: ParsedHead = try input.withUnsafeReadableBytes { bytes in
            try Self.parseHeadBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<headLength]))
        }
        parsed.block = input.readSlice(length: headLength)!
        if let error = parsed.error { throw fail(error) }
        // Refused in every head, bodiless ones included (as llhttp does): the two disagree on where the message ends.
        if parsed.hasTransferEncoding && parsed.contentLength != nil { throw fail("both Transfer-Encoding and Content-Length") }
        let code = parsed.status
        if code >= 100 && code < 200 {
            if code == 101 && requestWantsUpgrade {
                // Its `.end` next; then the parser stops and leaves the upgraded protocol's bytes in the input.
                state = .bodyEnded
                keepAlive = false
                upgraded = true
                return .head(head(parsed, keepAlive: false))
            }
            if code == 101 { throw fail("101 to a request that asked for no upgrade") }
            // Interim (100, 103): consumed, the final response follows — on HTTP/1.1 only (HTTP/1.0 has no 1xx), and
            // not after one that said the connection closes (llhttp refuses the bytes after it too).
            guard parsed.version.minor == 1, !parsed.connectionClose else { throw fail("interim response that ends the connection") }
            return nil
        }
        var keepAlive = parsed.version.minor == 1 ? !parsed.connectionClose : (parsed.connectionKeepAlive && !parsed.connectionClose)
        if requestWasHEAD || code == 204 || code == 304 {
            state = .bodyEnded
        } else if parsed.hasTransferEncoding {
            guard parsed.transferEncodingIsChunked else { throw fail("Transfer-Encoding other than chunked") }
            guard parsed.version.minor == 1 else { throw fail("Transfer-Encoding in an HTTP/1.0 response") }
            state = .chunkSize
        } else if let length = parsed.contentLength {
            state = length == 0 ? .bodyEnded : .fixedBody(remaining: length)
        } else {
            state = .untilClose
            keepAlive = false
        }
        self.keepAlive = keepAlive
        return .head(head(parsed, keepAlive: keepAlive))
    }

    private func head(_ parsed: ParsedHead, keepAlive: Bool) -> UpstreamResponseHead {
        UpstreamResponseHead(version: parsed.version, status: HTTPResponseStatus(statusCode: parsed.status), block: parsed.block,
                             fieldRanges: parsed.ranges, keepAlive: keepAlive, hasContentLength: parsed.contentLength != nil)
    }

    private mutating func finishResponse(trailers: HTTPHeaders?) -> UpstreamResponseEvent {
        outstanding -= 1
        headBits >>= 1
        upgradeBits >>= 1
        state = keepAlive ? .head : .done
        return .end(trailers)
    }

    /// Keeps an incomplete element's bytes for the next read.
    private mutating func keep(_ input: inout ByteBuffer) -> UpstreamResponseEvent? {
        if input.readableBytes > 0 {
            pending = input
            input.moveReaderIndex(to: input.writerIndex)
        }
        return nil
    }

    private mutating func fail(_ reason: String) -> UpstreamResponseError {
        state = .done
        upgraded = false
        pending = nil
        return .bad(reason)
    }

    // MARK: chunked framing

    /// The length of the CRLF-terminated line at the start of `input`, or `nil` (bytes kept) if it has not all come.
    private mutating func line(_ input: inout ByteBuffer, limit: Int, what: String) throws -> Int? {
        let length: Int? = input.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count {
                if bytes[index] == 0x0A { return index + 1 }
                index += 1
            }
            return nil
        }
        guard let length else {
            if input.readableBytes > limit { throw fail("\(what) over \(limit) bytes") }
            _ = keep(&input)
            return nil
        }
        guard length <= limit else { throw fail("\(what) over \(limit) bytes") }
        guard length >= 2, input.getInteger(at: input.readerIndex + length - 2, as: UInt8.self) == 0x0D else {
            throw fail("bare LF in a \(what)")
        }
        return length
    }

    /// A chunk-size line without its CRLF: hex digits, then optional extensions `;name[=token|"quoted"]` (ignored)
    /// with no whitespace anywhere — the RFC's BWS is refused, as llhttp refuses it, so both read the same lines.
    static func chunkSize(_ line: UnsafeRawBufferPointer) -> Int? {
        var size = 0
        var index = 0
        while index < line.count, let digit = hexValue(line[index]) {
            guard size <= (Int.max >> 4) else { return nil }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0, index <= 16 else { return nil }
        while index < line.count {
            guard line[index] == UInt8(ascii: ";") else { return nil }
            index += 1
            guard skipToken(line, &index) else { return nil }
            guard index < line.count, line[index] == UInt8(ascii: "=") else { continue }
            index += 1
            if index < line.count, line[index] == UInt8(ascii: "\"") {
                guard skipQuotedString(line, &index) else { return nil }
            } else {
                guard skipToken(line, &index) else { return nil }
            }
        }
        return size
    }

    /// Moves past one or more token characters; false if there is none.
    private static func skipToken(_ line: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
        let start = index
        while index < line.count, ClientResponseEncoder.byteClasses[Int(line[index])] & ClientResponseEncoder.notInName == 0 { index += 1 }
        return index > start
    }

    /// Moves past a quoted-string (RFC 9110 §5.6.4) starting at its opening quote; false if it is malformed or open.
    private static func skipQuotedString(_ line: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
        index += 1
        while index < line.count {
            let byte = line[index]
            if byte == UInt8(ascii: "\"") { index += 1; return true }
            if byte == UInt8(ascii: "\\") {
                index += 1
                guard index < line.count else { return false }
            }
            guard ClientResponseEncoder.isValueByte(line[index]) else { return false }
            index += 1
        }
        return false
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    private mutating func parseTrailers(_ input: inout ByteBuffer) throws -> UpstreamResponseEvent? {
        // The common case: no trailers, the last chunk's CRLF at once.
        if input.readableBytes >= 2, input.getInteger(at: input.readerIndex, as: UInt16.self) == 0x0D0A {
            input.moveReaderIndex(forwardBy: 2)
            return finishResponse(trailers: nil)
        }
        guard let length = Self.lengthThroughEmptyLine(input, limit: Self.maxHeadBytes, fromLineStart: true) else {
            if input.readableBytes > Self.maxHeadBytes { throw fail("trailers over \(Self.maxHeadBytes) bytes") }
            return keep(&input)
        }
        guard length > 0 else { throw fail("bare LF in the trailers") }
        var fields = FieldBlock()
        let error: String? = input.withUnsafeReadableBytes { bytes in
            let block = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
            var index = 0
            return Self.parseFields(block, from: &index, into: &fields)
        }
        if let error { throw fail(error) }
        // Framing fields have no place in trailers (RFC 9110 §6.5.1); llhttp refuses them too.
        if fields.contentLength != nil || fields.contentLengthConflict || fields.transferEncodings > 0 {
            throw fail("framing field in trailers")
        }
        let block = input.readSlice(length: length)!
        return finishResponse(trailers: fields.ranges.isEmpty ? nil : HTTPHeaders(fields.ranges.map { ($0.name(in: block), $0.value(in: block)) }))
    }

    // MARK: byte-level scanning

    /// The length of the bytes up to and including the first CRLF CRLF (or, with `fromLineStart`, a leading CRLF
    /// ends an empty block); `nil` if it is not within `limit` bytes; -1 at a bare LF, so a head that will never have
    /// its CRLF CRLF fails at once instead of waiting for the upstream timeout.
    static func lengthThroughEmptyLine(_ buffer: ByteBuffer, limit: Int, fromLineStart: Bool = false) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            let end = min(bytes.count, limit)
            if fromLineStart, end >= 2, bytes[0] == 0x0D, bytes[1] == 0x0A { return 2 }
            var index = 0
            while index < end {
                if bytes[index] == 0x0A {
                    guard index >= 1, bytes[index - 1] == 0x0D else { return -1 }
                    if index >= 3, bytes[index - 2] == 0x0A, bytes[index - 3] == 0x0D { return index + 1 }
                }
                index += 1
            }
            return nil
        }
    }

    struct ParsedHead {
        var version = HTTPVersion.http1_1
        var status = 0
        var ranges: [FieldRange] = []
        var block = ByteBuffer()
        var contentLength: Int?
        var hasTransferEncoding = false
        var transferEncodingIsChunked = false
        var connectionClose = false
        var connectionKeepAlive = false
        var error: String?
    }

    struct FieldBlock {
        var ranges: [FieldRange] = []
        var contentLength: Int?
        var contentLengthConflict = false
        var transferEncodings = 0
        var transferEncodingIsChunked = false
        var connectionClose = false
        var connectionKeepAlive = false
    }

    /// Parses a whole head (status line through the empty line).
    static func parseHeadBytes(_ bytes: UnsafeRawBufferPointer) throws -> ParsedHead {
        var parsed = ParsedHead()
        // "HTTP/1.x SP ddd" then SP reason, or the line's end.
        guard bytes.count >= 14, bytes[0] == 0x48, bytes[1] == 0x54, bytes[2] == 0x54, bytes[3] == 0x50, bytes[4] == 0x2F,
              bytes[5] == 0x31, bytes[6] == 0x2E, bytes[7] == 0x30 || bytes[7] == 0x31, bytes[8] == 0x20 else {
            parsed.error = "not an HTTP/1.0 or HTTP/1.1 status line"
            return parsed
        }
        parsed.version = bytes[7] == 0x31 ? .http1_1 : .http1_0
        var status = 0
        for index in 9..<12 {
            let byte = bytes[index]
            guard byte >= 0x30 && byte <= 0x39 else { parsed.error = "invalid status code"; return parsed }
            status = status * 10 + Int(byte - 0x30)
        }
        guard status >= 100 else { parsed.error = "invalid status code"; return parsed }
        parsed.status = status
        var index = 12
        if bytes[index] == 0x20 {
            index += 1
            // Reason phrase: HTAB, SP, VCHAR, obs-text.
            while index < bytes.count, bytes[index] != 0x0D {
                let byte = bytes[index]
                guard byte >= 0x20 && byte != 0x7F || byte == 0x09 else { parsed.error = "control byte in the reason phrase"; return parsed }
                index += 1
            }
        }
        guard index + 1 < bytes.count, bytes[index] == 0x0D, bytes[index + 1] == 0x0A else {
            parsed.error = "malformed status line"
            return parsed
        }
        index += 2
        var block = FieldBlock()
        block.ranges.reserveCapacity(16)  // one allocation for a typical head, not four growths
        if let error = parseFields(bytes, from: &index, into: &block) { parsed.error = error; return parsed }
        guard !block.contentLengthConflict else { parsed.error = "conflicting or invalid Content-Length"; return parsed }
        parsed.ranges = block.ranges
        parsed.contentLength = block.contentLength
        if block.transferEncodings > 0 {
            parsed.hasTransferEncoding = true
            parsed.transferEncodingIsChunked = block.transferEncodings == 1 && block.transferEncodingIsChunked
        }
        parsed.connectionClose = block.connectionClose
        parsed.connectionKeepAlive = block.connectionKeepAlive
        return parsed
    }

    /// Parses field lines from `index` through the empty line that ends the block; returns an error text or `nil`.
    static func parseFields(_ bytes: UnsafeRawBufferPointer, from index: inout Int, into block: inout FieldBlock) -> String? {
        // The byte-class table read once (a lazy global: each access would check its initialisation).
        let classes = ClientResponseEncoder.byteClasses
        let notInName = ClientResponseEncoder.notInName, notInValue = ClientResponseEncoder.notInValue
        while true {
            guard index + 1 < bytes.count else { return "field block without its empty line" }
            if bytes[index] == 0x0D {
                guard bytes[index + 1] == 0x0A else { return "bare CR" }
                index += 2
                return nil
            }
            // Name: one or more token characters, then ':' at once (no whitespace before it, RFC 9112 §5.1).
            let nameStart = index
            while index < bytes.count, classes[Int(bytes[index])] & notInName == 0 { index += 1 }
            guard index > nameStart else {
                return bytes[index] == 0x20 || bytes[index] == 0x09 ? "obsolete line folding" : "invalid field name"
            }
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return "invalid field name" }
            let nameEnd = index
            index += 1
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
            let valueStart = index
            // Value bytes up to the CR: HTAB, SP, VCHAR, obs-text (one table load each); then trailing whitespace off.
            while index < bytes.count {
                let byte = bytes[index]
                if classes[Int(byte)] & notInValue != 0 {
                    if byte == 0x0D { break }
                    return byte == 0x0A ? "bare LF" : "control byte in a field value"
                }
                index += 1
            }
            guard index + 1 < bytes.count, bytes[index + 1] == 0x0A else { return "bare CR" }
            var valueEnd = index
            while valueEnd > valueStart, bytes[valueEnd - 1] == 0x20 || bytes[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            index += 2
            let name = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<nameEnd])
            let value = UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd])
            noteFraming(name: name, value: value, in: &block)
            block.ranges.append(FieldRange(nameStart: Int32(nameStart), nameCount: Int32(nameEnd - nameStart),
                                           valueStart: Int32(valueStart), valueCount: Int32(valueEnd - valueStart)))
        }
    }

    /// Records what the framing depends on: `Content-Length`, `Transfer-Encoding`, `Connection`.
    private static func noteFraming(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, in block: inout FieldBlock) {
        switch name.count {
        case 14 where equalsLowercase(name, "content-length"):
            var length = 0
            guard value.count > 0, value.count <= 18 else { block.contentLengthConflict = true; return }
            for byte in value {
                guard byte >= 0x30 && byte <= 0x39 else { block.contentLengthConflict = true; return }
                length = length * 10 + Int(byte - 0x30)
            }
            // A second copy is refused even when equal, as nginx and llhttp refuse it.
            if block.contentLength != nil { block.contentLengthConflict = true }
            block.contentLength = length
        case 17 where equalsLowercase(name, "transfer-encoding"):
            block.transferEncodings += 1
            block.transferEncodingIsChunked = equalsLowercase(value, "chunked")
        case 10 where equalsLowercase(name, "connection"):
            forEachToken(value) { token in
                if equalsLowercase(token, "close") { block.connectionClose = true }
                if equalsLowercase(token, "keep-alive") { block.connectionKeepAlive = true }
            }
        default:
            break
        }
    }

    /// `HeaderClass.equalsLower` (ASCII case-insensitive against a lower-case literal) on raw bytes.
    @inline(__always)
    static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        HeaderClass.equalsLower(UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count),
                                lowercase)
    }

    /// Calls `body` with each comma-separated token of a list value, whitespace trimmed.
    private static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        for index in 0...value.count where index == value.count || value[index] == UInt8(ascii: ",") {
            var lower = start, upper = index
            while lower < upper, value[lower] == 0x20 || value[lower] == 0x09 { lower += 1 }
            while upper > lower, value[upper - 1] == 0x20 || value[upper - 1] == 0x09 { upper -= 1 }
            if upper > lower { body(UnsafeRawBufferPointer(rebasing: value[lower..<upper])) }
            start = index + 1
        }
    }
}
