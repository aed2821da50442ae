import NIOCore
import NIOHTTP1

/// A response head read from an upstream: what the proxy handler relays and decides on, nothing more. Its fields stay
/// bytes — ranges in the head's own bytes, validated by the parser — so relaying one makes no `String`s: the proxy
/// classifies names in place and the client encoder copies the kept lines as they came.
public final class UpstreamResponseHead: Sendable {
    public let version: HTTPVersion
    public let status: HTTPResponseStatus
    /// The head's bytes (a slice of the read, not a copy) and where each field's name and value lie in them.
    public let block: ByteBuffer
    public let fieldRanges: [FieldRange]
    /// Whether the connection may carry another exchange after this response (version, `Connection`, framing).
    public let keepAlive: Bool
    public let hasContentLength: Bool

    /// A class: as a struct in ``UpstreamResponseEvent`` (a status with a possible reason string, a buffer, an
    /// array), every event was copied and destroyed through generic value witnesses (~200 instructions each).
    init(version: HTTPVersion, status: HTTPResponseStatus, block: ByteBuffer, fieldRanges: [FieldRange], keepAlive: Bool, hasContentLength: Bool) {
        self.version = version
        self.status = status
        self.block = block
        self.fieldRanges = fieldRanges
        self.keepAlive = keepAlive
        self.hasContentLength = hasContentLength
    }

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
    public static let maxChunkLineBytes = ChunkedBodyReader.maxLineBytes

    private enum State {
        /// Waiting for a status line (between responses, or before the first).
        case head
        case fixedBody(remaining: Int)
        /// The body is complete (or there is none): `.end` comes next.
        case bodyEnded
        case chunked
        case untilClose
        /// After a 101 to an upgrade request, a response that closes the connection, or an error: no more HTTP here.
        case done
    }

    private var state = State.head
    private var chunked = ChunkedBodyReader()
    /// Bytes of an incomplete line-based element (head, chunk-size line, trailers) kept for the next read.
    private var pending: ByteBuffer?
    /// The field-range array of the previous head, refilled by the next (``HTTPScan/ReusedRanges``).
    private var reusedRanges = HTTPScan.ReusedRanges()
    /// Where the search for the current head's end resumes on the next read (``HTTPScan/lengthThroughEmptyLine``).
    private var headScan = 0
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

    /// Whether the connection may carry another exchange: false after a response that ends it (its head, or
    /// `Connection: close` in its trailers), an upgrade, or an error.
    public var connectionReusable: Bool {
        if case .done = state { return false }
        return true
    }

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
            case .chunked:
                let step: ChunkedBodyReader.Step
                do { step = try chunked.next(&input, maxTrailerBytes: Self.maxHeadBytes) } catch { throw fail(error.reason) }
                switch step {
                case .body(let data): return .body(data)
                case .end(let trailers, let connectionClose):
                    if connectionClose { keepAlive = false }
                    return finishResponse(trailers: trailers)
                case .needMore: return keep(&input)
                }
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
        guard let headLength = HTTPScan.lengthThroughEmptyLine(input, limit: Self.maxHeadBytes, resumeAt: &headScan) else {
            if input.readableBytes > Self.maxHeadBytes { throw fail("response head over \(Self.maxHeadBytes) bytes") }
            return keep(&input)
        }
        headScan = 0
        guard headLength > 0 else { throw fail("bare LF in the response head") }
        var ranges = reusedRanges.take()
        var parsed: ParsedHead = try input.withUnsafeReadableBytes { bytes in
            try Self.parseHeadBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<headLength]), reusing: &ranges)
        }
        reusedRanges.keep(parsed.ranges)
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
            state = .chunked
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

    // MARK: byte-level scanning

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

    /// Parses a whole head (status line through the empty line); its field ranges go into `ranges`' storage (an empty
    /// array, moved into the result).
    static func parseHeadBytes(_ bytes: UnsafeRawBufferPointer, reusing ranges: inout [FieldRange]) throws -> ParsedHead {
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
        var block = HTTPScan.FieldBlock()
        swap(&block.ranges, &ranges)
        if let error = HTTPScan.parseFields(bytes, from: &index, into: &block) { parsed.error = error; return parsed }
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


}
