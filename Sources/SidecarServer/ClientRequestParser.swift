import NIOCore
import NIOHTTP1

/// Why a client's bytes were refused: the proxy answers with `status` (JSON body, `error` = `code`) when it can,
/// then closes — the byte stream cannot be trusted past that point.
public struct ClientRequestError: Error, Equatable, CustomStringConvertible {
    public let status: HTTPResponseStatus
    public let reason: String
    public var description: String { "client request: \(reason) (\(status.code))" }

    /// The stable error code for the JSON body, the access log and metrics.
    public var code: String {
        switch status {
        case .requestHeaderFieldsTooLarge: return "request_header_fields_too_large"
        case .notImplemented: return "not_implemented"
        case .httpVersionNotSupported: return "http_version_not_supported"
        default: return "bad_request"
        }
    }

    static func bad(_ reason: String) -> Self { Self(status: .badRequest, reason: reason) }
}

/// Parses HTTP/1.x requests from a client connection, byte for byte, as a pure state machine: the sidecar's trust
/// boundary, where request smuggling is decided.
///
/// In place of NIO's `HTTPRequestDecoder` (llhttp) behind a `ByteToMessageHandler`, which cost ~14.5 k instructions
/// per request (measured, twelfth session: llhttp's run and callbacks, the handler's buffer management, a `NIOAny`
/// hop). ``ClientRequestDecoder`` calls ``next(_:)`` on each read; body bytes are slices of the read, never copied.
///
/// The rules are RFC 9112's with nginx's strictness, never more lenient than llhttp (a differential fuzz target
/// holds it to that): a request line of a method llhttp knows, one SP, a target of visible ASCII, one SP,
/// `HTTP/1.0` or `HTTP/1.1` (another version is a 505); fields as the upstream side reads them (token names with
/// the colon at once, no obs-fold, no bare CR or LF, no control bytes in values); `Content-Length` digits and only
/// once; `Transfer-Encoding` only `chunked` (another coding is a 501), never with `Content-Length`, never in
/// HTTP/1.0; the head at most ``maxHeadBytes`` (a 431). Empty lines before a request line are skipped (RFC 9112
/// §2.2). After an upgrade request (`GET` with `Upgrade` and `Connection: upgrade`) or a `CONNECT`, the parser
/// stops: the bytes after it belong to another protocol (``stopped``), and the proxy ends the connection unless it
/// splices it. After a request that ends the connection (`Connection: close`, HTTP/1.0 without keep-alive) the
/// rest is ignored: no request behind it is read, let alone forwarded.
public struct ClientRequestParser: Sendable {
    public init() {}

    /// Longest request head (request line, fields, final empty line), head and trailers together; NIO's default limit.
    public static let maxHeadBytes = 80 * 1024
    /// What a client may send after an upgrade request (or a CONNECT) before it is answered; more is refused.
    public static let maxBytesBeforeUpgrade = 64 * 1024

    private enum State {
        /// Waiting for a request line (between requests, or before the first).
        case head
        case fixedBody(remaining: Int)
        case chunked
        /// The body is complete (or there is none): `.end` comes next.
        case bodyEnded
        /// After an upgrade request or CONNECT: the rest is not HTTP; kept for whoever takes the connection over.
        case stopped
        /// After a request that ends the connection, or an error: later bytes are dropped.
        case done
    }

    private var state = State.head
    private var chunked = ChunkedBodyReader()
    /// Bytes of an incomplete line-based element (head, chunk-size line, trailers) kept for the next read; after an
    /// upgrade request, the bytes that followed it.
    private var pending: ByteBuffer?
    /// The current request's head size: its trailers get what is left of ``maxHeadBytes`` (llhttp counts both
    /// against one limit).
    private var headBytes = 0
    /// What follows the current request's `.end`: the next request, a stop, or nothing.
    private var afterEnd = State.head
    /// The field-range array of the previous head, refilled by the next (``HTTPScan/ReusedRanges``).
    private var reusedRanges = HTTPScan.ReusedRanges()
    /// Where the search for the current head's end resumes on the next read (``HTTPScan/lengthThroughEmptyLine``).
    private var headScan = 0

    /// True after an upgrade request or CONNECT was read to its end: the bytes after it (``takeRemainder()``) are
    /// not HTTP requests.
    public var stopped: Bool {
        if case .stopped = state { return true }
        return false
    }

    /// True once the request being read is known to be the connection's last: the parser reads no request after it
    /// (an upgrade request or CONNECT, `Connection: close` in its head or trailers, HTTP/1.0 without keep-alive).
    public var stopsAfterRequest: Bool {
        switch afterEnd {
        case .stopped, .done: return true
        default: return false
        }
    }

    /// True while a request is partly read (a head begun, a body unfinished): a close now cuts it.
    public var inMessage: Bool {
        switch state {
        case .head: return pending != nil
        case .fixedBody, .chunked, .bodyEnded: return true
        case .stopped, .done: return false
        }
    }

    /// The bytes kept after a stop (an upgraded protocol's first bytes), handed over once.
    public mutating func takeRemainder() -> ByteBuffer? {
        defer { pending = nil }
        return pending
    }

    /// The next event from `input` (consuming what it used), or `nil` when more bytes are needed. Bytes of an
    /// incomplete element are moved into the parser; `input` is then empty.
    public mutating func next(_ input: inout ByteBuffer) throws(ClientRequestError) -> ClientRequestPart? {
        if var kept = pending, !stopped {
            pending = nil
            kept.writeBuffer(&input)
            input = kept
        }
        while true {
            switch state {
            case .head:
                // Empty lines before a request line are skipped (RFC 9112 §2.2), as llhttp does.
                while input.readableBytes >= 2, input.getInteger(at: input.readerIndex, as: UInt16.self) == 0x0D0A {
                    input.moveReaderIndex(forwardBy: 2)
                }
                guard input.readableBytes > 0 else { return nil }
                if input.readableBytes == 1, input.getInteger(at: input.readerIndex, as: UInt8.self) == 0x0D { return keep(&input) }
                return try parseHead(&input)
            case .fixedBody(let remaining):
                guard input.readableBytes > 0 else { return nil }
                let count = min(remaining, input.readableBytes)
                state = count == remaining ? .bodyEnded : .fixedBody(remaining: remaining - count)
                return .body(input.readSlice(length: count)!)
            case .chunked:
                let step: ChunkedBodyReader.Step
                do { step = try chunked.next(&input, maxTrailerBytes: Self.maxHeadBytes - headBytes) } catch { throw fail(.bad(error.reason)) }
                switch step {
                case .body(let data): return .body(data)
                case .end(let trailers, let connectionClose):
                    if connectionClose { afterEnd = .done }
                    return end(trailers)
                case .needMore: return keep(&input)
                }
            case .bodyEnded:
                return end(nil)
            case .stopped:
                if input.readableBytes > 0 {
                    if pending == nil { pending = input } else { pending!.writeBuffer(&input) }
                    input.moveReaderIndex(to: input.writerIndex)
                    // Kept until the upstream answers the upgrade — bounded: a client must wait for the answer before
                    // it sends more (RFC 6455 §4.1), and these bytes were held without limit (found in review).
                    if pending!.readableBytes > Self.maxBytesBeforeUpgrade {
                        throw fail(.bad("over \(Self.maxBytesBeforeUpgrade) bytes sent before the upgrade was answered"))
                    }
                }
                return nil
            case .done:
                input.moveReaderIndex(to: input.writerIndex)
                return nil
            }
        }
    }

    private mutating func end(_ trailers: HTTPHeaders?) -> ClientRequestPart {
        state = afterEnd
        return .end(trailers)
    }

    /// Keeps an incomplete element's bytes for the next read.
    private mutating func keep(_ input: inout ByteBuffer) -> ClientRequestPart? {
        if input.readableBytes > 0 {
            pending = input
            input.moveReaderIndex(to: input.writerIndex)
        }
        return nil
    }

    private mutating func fail(_ error: ClientRequestError) -> ClientRequestError {
        state = .done
        pending = nil
        return error
    }

    // MARK: heads

    private mutating func parseHead(_ input: inout ByteBuffer) throws(ClientRequestError) -> ClientRequestPart? {
        guard let headLength = HTTPScan.lengthThroughEmptyLine(input, limit: Self.maxHeadBytes, resumeAt: &headScan) else {
            if input.readableBytes > Self.maxHeadBytes {
                throw fail(ClientRequestError(status: .requestHeaderFieldsTooLarge, reason: "request head over \(Self.maxHeadBytes) bytes"))
            }
            return keep(&input)
        }
        headScan = 0
        guard headLength > 0 else { throw fail(.bad("bare LF in the request head")) }
        let parsed: ParsedRequest
        var ranges = reusedRanges.take()
        do {
            parsed = try input.withUnsafeReadableBytes { bytes throws(ClientRequestError) in
                try Self.parseHeadBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<headLength]), reusing: &ranges)
            }
        } catch {
            throw fail(error)
        }
        headBytes = headLength
        let fields = parsed.fields
        reusedRanges.keep(fields.ranges)
        // Framing (RFC 9112 §6.3), refused where two readers could disagree on where the body ends.
        if fields.contentLengthConflict { throw fail(.bad("invalid or repeated Content-Length")) }
        var bodyState = State.bodyEnded
        if fields.transferEncodings > 0 {
            guard parsed.version.minor == 1 else { throw fail(.bad("Transfer-Encoding in an HTTP/1.0 request")) }
            guard fields.contentLength == nil else { throw fail(.bad("both Transfer-Encoding and Content-Length")) }
            // Chunked to RFC 9110, not to llhttp (nor to upstreams built on it): ambiguous, so refused as malformed.
            guard !fields.transferEncodingHasTab else { throw fail(.bad("tab in Transfer-Encoding")) }
            guard fields.transferEncodings == 1, fields.transferEncodingIsChunked else {
                throw fail(ClientRequestError(status: .notImplemented, reason: "Transfer-Encoding other than chunked"))
            }
            bodyState = .chunked
        } else if let length = fields.contentLength, length > 0 {
            bodyState = .fixedBody(remaining: length)
        }
        let isUpgrade = parsed.method.isGET && fields.hasUpgrade && fields.connectionUpgrade
        if parsed.method.isCONNECT {
            // Never tunnelled (the proxy refuses it): whatever follows is not read as requests.
            bodyState = .bodyEnded
            afterEnd = .stopped
        } else if isUpgrade {
            // The upgraded protocol starts right after the head; a body in between would be read by nobody.
            guard case .bodyEnded = bodyState else { throw fail(.bad("upgrade request with a body")) }
            afterEnd = .stopped
        } else {
            let keepAlive = parsed.version.minor == 1 ? !fields.connectionClose : (fields.connectionKeepAlive && !fields.connectionClose)
            afterEnd = keepAlive ? .head : .done
        }
        state = bodyState
        let isWhole: Bool
        if case .bodyEnded = bodyState { isWhole = true } else { isWhole = false }
        return .head(ClientRequestHead(method: parsed.method, version: parsed.version, uri: parsed.uri,
                                       block: input.readSlice(length: headLength)!, fields: fields.ranges, isLast: stopsAfterRequest,
                                       isWhole: isWhole, isUpgrade: isUpgrade))
    }

    struct ParsedRequest {
        var version: HTTPVersion
        var method: HTTPMethod
        var uri: String
        var fields: HTTPScan.FieldBlock
    }

    /// Parses a whole head (request line through the empty line); its field ranges go into `ranges`' storage (an empty
    /// array, moved into the result).
    static func parseHeadBytes(_ bytes: UnsafeRawBufferPointer, reusing ranges: inout [FieldRange]) throws(ClientRequestError) -> ParsedRequest {
        // Method: a token llhttp knows, then one SP.
        var index = 0
        while index < bytes.count, bytes[index] != 0x20, bytes[index] != 0x0D { index += 1 }
        guard index < bytes.count, bytes[index] == 0x20, index > 0 else { throw .bad("malformed request line") }
        guard let method = method(UnsafeRawBufferPointer(rebasing: bytes[0..<index])) else {
            throw ClientRequestError(status: .notImplemented, reason: "unknown method")
        }
        index += 1
        // Target: visible ASCII (RFC 3986 has no other bytes; llhttp refuses them too), then one SP.
        let targetStart = index
        while index < bytes.count, bytes[index] > 0x20, bytes[index] < 0x7F { index += 1 }
        guard index > targetStart, index < bytes.count, bytes[index] == 0x20,
              isTargetForm(UnsafeRawBufferPointer(rebasing: bytes[targetStart..<index]), isCONNECT: method.isCONNECT) else {
            throw .bad("malformed request target")
        }
        let targetEnd = index
        index += 1
        // Version: "HTTP/d.d" then CRLF; 1.0 and 1.1 are served.
        guard index + 9 < bytes.count, bytes[index] == 0x48, bytes[index + 1] == 0x54, bytes[index + 2] == 0x54, bytes[index + 3] == 0x50,
              bytes[index + 4] == 0x2F, bytes[index + 6] == 0x2E, bytes[index + 8] == 0x0D, bytes[index + 9] == 0x0A,
              isDigit(bytes[index + 5]), isDigit(bytes[index + 7]) else {
            throw .bad("malformed request line")
        }
        let major = bytes[index + 5] - 0x30, minor = bytes[index + 7] - 0x30
        guard major == 1, minor <= 1 else {
            throw ClientRequestError(status: .httpVersionNotSupported, reason: "HTTP version other than 1.0 and 1.1")
        }
        let version: HTTPVersion = minor == 1 ? .http1_1 : .http1_0
        index += 10
        var fields = HTTPScan.FieldBlock()
        swap(&fields.ranges, &ranges)
        if let error = HTTPScan.parseFields(bytes, from: &index, into: &fields) { throw .bad(error) }
        let uri = string(bytes, targetStart, targetEnd - targetStart)
        return ParsedRequest(version: version, method: method, uri: uri, fields: fields)
    }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    @inline(__always)
    private static func isAlpha(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A }

    /// The length of `host[:port]` at the start of `bytes` (0 if there is none): a host of letters, digits and
    /// `-._~`, or an IP literal in brackets; no user info, no percent-encoding — narrower than RFC 3986's authority, and
    /// so never wider than llhttp's (`CONNECT @@` was accepted until the `client-request` target found llhttp refusing it).
    static func hostAndPortLength(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        if index < bytes.count, bytes[index] == UInt8(ascii: "[") {
            index += 1
            while index < bytes.count, isHexDigit(bytes[index]) || bytes[index] == UInt8(ascii: ":") || bytes[index] == UInt8(ascii: ".") { index += 1 }
            guard index < bytes.count, bytes[index] == UInt8(ascii: "]"), index > start + 1 else { return 0 }
            index += 1
        } else {
            while index < bytes.count, isAlpha(bytes[index]) || isDigit(bytes[index]) || bytes[index] == UInt8(ascii: "-")
                    || bytes[index] == UInt8(ascii: ".") || bytes[index] == UInt8(ascii: "_") || bytes[index] == UInt8(ascii: "~") { index += 1 }
            guard index > start else { return 0 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ":") {
            let portStart = index + 1
            index = portStart
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            guard index > portStart, index - portStart <= 5 else { return 0 }
        }
        return index - start
    }

    @inline(__always)
    private static func isHexDigit(_ byte: UInt8) -> Bool { isDigit(byte) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x66) }

    /// The target's form (RFC 9112 §3.2), its bytes already known visible ASCII: origin-form (`/…`), asterisk-form
    /// (`*`), absolute-form (`scheme://host[:port][/…|?…]`, scheme letters only), or, for CONNECT only, `host:port`.
    /// Anything else is refused, as llhttp refuses it (a target like `'` was accepted here until the `client-request`
    /// fuzz target showed llhttp refusing it: Tests/fuzz/crashes/client-request-1).
    static func isTargetForm(_ target: UnsafeRawBufferPointer, isCONNECT: Bool) -> Bool {
        if isCONNECT {
            let length = hostAndPortLength(target, from: 0)
            return length == target.count && target.contains(UInt8(ascii: ":"))
        }
        if target[0] == UInt8(ascii: "/") { return true }
        if target.count == 1 { return target[0] == UInt8(ascii: "*") }
        var index = 0
        while index < target.count, isAlpha(target[index]) { index += 1 }
        guard index > 0, index + 3 < target.count, target[index] == UInt8(ascii: ":"), target[index + 1] == UInt8(ascii: "/"),
              target[index + 2] == UInt8(ascii: "/") else { return false }
        index += 3
        let length = hostAndPortLength(target, from: index)
        guard length > 0 else { return false }
        index += length
        return index == target.count || target[index] == UInt8(ascii: "/") || target[index] == UInt8(ascii: "?")
    }

    /// A string of bytes the parser validated (obs-text that is not UTF-8 is repaired, as NIO's decoder did).
    @inline(__always)
    private static func string(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ count: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)]), as: UTF8.self)
    }

    /// The method, if llhttp's HTTP method table has it (anything else is refused, as it was refused before).
    static func method(_ name: UnsafeRawBufferPointer) -> HTTPMethod? {
        // The common ones without a string.
        switch name.count {
        case 3 where name[0] == 0x47 && name[1] == 0x45 && name[2] == 0x54: return .GET
        case 4 where name[0] == 0x50 && name[1] == 0x4F && name[2] == 0x53 && name[3] == 0x54: return .POST
        default: break
        }
        let text = String(decoding: name, as: UTF8.self)
        guard knownMethods.contains(text) else { return nil }
        return text == "M-SEARCH" ? .MSEARCH : HTTPMethod(rawValue: text)  // NIO's name for it
    }

    /// llhttp's `HTTP_METHOD_MAP` (9.3).
    static let knownMethods: Set<String> = [
        "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND",
        "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE",
        "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", "QUERY",
    ]
}
