import NIOCore
import NIOHTTP1
import SidecarCore

/// A response part on its way to the client. A response relayed from the upstream comes as its status and sanitised
/// field list (``RelayedResponseHead``), serialised from that array: no `HTTPHeaders` and no `HTTPResponseHead` built
/// per response. The sidecar's own answers come as `HTTPResponseHead`s.
enum ClientResponsePart {
    case head(HTTPResponseHead)
    case relayedHead(RelayedResponseHead)
    case body(IOData)
    case end(HTTPHeaders?)
    /// A whole relayed response — the head with its one body part and trailers (``RelayedResponseHead/body``,
    /// ``RelayedResponseHead/trailers``) — written as one buffer: what `.relayedHead`, `.body` and `.end` write, in
    /// one pass through the pipeline instead of three (the proxy handler sends it when a small response came in one
    /// upstream read, as most API answers do).
    case relayedResponse(RelayedResponseHead)
}

/// The head of a relayed upstream response, after the proxy handler sanitised its fields. A class: a `NIOAny` holds up
/// to three words inline, and as a struct this made every response part a boxed existential (measured: the change
/// saved nothing until then).
final class RelayedResponseHead {
    let version: HTTPVersion
    let status: HTTPResponseStatus
    /// The upstream head's bytes and the fields kept from it, copied to the client as they came (the upstream
    /// response parser validated every name and value byte).
    let block: ByteBuffer
    let kept: [FieldRange]
    /// `X-Request-Id`, when the upstream sent none: written after the kept fields, validated as it is serialised. Apart
    /// from `added`, so that the common response makes no array.
    let requestID: String?
    /// Fields the proxy adds after it (`Connection`, CORS), validated as they are serialised.
    let added: [(String, String)]
    /// For `.relayedResponse` (the whole response in one part): its body, if any, and trailers. Here rather than in
    /// the enum case: a `NIOAny` holds three words inline, and the part stays one reference.
    var body: ByteBuffer?
    var trailers: HTTPHeaders?

    init(version: HTTPVersion, status: HTTPResponseStatus, block: ByteBuffer, kept: [FieldRange], requestID: String? = nil,
         added: [(String, String)]) {
        self.version = version
        self.status = status
        self.block = block
        self.kept = kept
        self.requestID = requestID
        self.added = added
    }

    /// A head of fields given as strings only.
    convenience init(version: HTTPVersion, status: HTTPResponseStatus, fields: [(String, String)]) {
        self.init(version: version, status: status, block: ByteBuffer(), kept: [], added: fields)
    }

    /// Every field, kept then added, as strings (tests).
    var fields: [(String, String)] { kept.map { ($0.name(in: block), $0.value(in: block)) } + added }
}

/// Serialises responses to the client: HTTP/1.1 wire format with NIO's framing rules, the head in one write, and no
/// body bytes after an answer to HEAD.
///
/// The proxy handler records in the connection's ``HeadWatch`` whether the request being answered is a HEAD (requests
/// reach it one at a time; the pipelining handler holds the next until this answer's `.end`). NIO's
/// `HTTPResponseEncoder` learns that only when `configureHTTPServerPipeline` wires it to its decoder; added by hand, it
/// framed a HEAD response from its status alone, and an upstream's HEAD answer with `Transfer-Encoding: chunked` got a
/// `0\r\n\r\n` after it — bytes the client reads as the start of the next response. Framing otherwise as NIO (except
/// that an HTTP/1.0 response loses `Transfer-Encoding`, as it is never chunked): 1xx,
/// 204 and 304 lose `Content-Length`/`Transfer-Encoding`; a response with `Content-Length` loses `Transfer-Encoding`;
/// an HTTP/1.1 response with neither is sent chunked. A HEAD response keeps its framing headers (they describe what a
/// GET would return) and never carries a body. Outbound only: observing request heads here would cost a handler hop
/// and a dynamic cast per request part.
///
/// It also validates what it writes, in the same pass over the bytes (in place of NIO's
/// `NIOHTTPResponseHeadersValidator`, one handler hop less): header names are RFC 9110 tokens, values and the reason
/// phrase have no control bytes but HTAB (so never CR, LF or NUL). A response that fails is not written — its promise
/// fails and the connection closes, as nothing after a refused head could be framed.
///
/// Seeing every response's end, it tells the connection's ``PipeliningHandler`` (through the ``HeadWatch``), which
/// then delivers the next pipelined request; while shutting down it adds `Connection: close` to final responses and
/// closes after the last one.
final class ClientResponseEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ClientResponsePart
    typealias OutboundOut = IOData

    private let watch: HeadWatch
    private var isChunked = false
    private var suppressBody = false

    init(watch: HeadWatch) {
        self.watch = watch
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            writeHead(version: head.version, status: head.status, fields: head.headers.map { ($0.name, $0.value) }, context: context,
                      promise: promise)
        case .relayedHead(let head):
            writeHead(version: head.version, status: head.status, block: head.block, kept: head.kept, requestID: head.requestID,
                      fields: head.added, context: context, promise: promise)
        case .relayedResponse(let response):
            writeResponse(response, body: response.body, trailers: response.trailers, context: context, promise: promise)
        case .body(let chunk):
            if refused {
                promise?.fail(InvalidResponseHead())
                return
            }
            if suppressBody {
                promise?.fail(BodyAfterHEAD())
                return
            }
            HTTPWire.writeBody(chunk, chunked: isChunked, context: context, promise: promise)
        case .end(let trailers):
            if refused || !(trailers.map(Self.isValid) ?? true) {
                refuse(context: context, promise: promise)
                return
            }
            let isChunked = isChunked
            endResponse(context: context, promise: promise) { promise in
                HTTPWire.writeEnd(trailers, chunked: isChunked, context: context, promise: promise)
            }
        }
    }

    /// The end of a response: tells the pipelining handler, calls `write` with the promise to write the last bytes
    /// with, then lets the next pipelined request through.
    private func endResponse(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?,
                             write: (EventLoopPromise<Void>?) -> Void) {
        let pipelining = watch.pipelining
        var promise = promise
        if pipelining?.responseEnded() == true {
            // Shutting down and nothing else in flight: close once this last response has actually been written
            // (after the caller's flush).
            let written = promise ?? context.eventLoop.makePromise()
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            promise = written
        }
        write(promise)
        isChunked = false
        suppressBody = false
        // Until the proxy handler sees the next request head (an answer to a request it never saw, such as a
        // parse error's 400, is not a HEAD answer).
        watch.answeringHead = false
        // The next pipelined request, if one waits (it may be answered synchronously, re-entering this method).
        pipelining?.deliverQueued()
    }

    /// `.relayedHead`, `.body` (if any) and `.end` as one buffer: the head serialised with room for the rest, the body
    /// copied after it (as one chunk when chunked), then the last chunk and trailers.
    private func writeResponse(_ head: RelayedResponseHead, body: ByteBuffer?, trailers: HTTPHeaders?, context: ChannelHandlerContext,
                               promise: EventLoopPromise<Void>?) {
        if refused || !(trailers.map(Self.isValid) ?? true) {
            refuse(context: context, promise: promise)
            return
        }
        let bodyBytes = body?.readableBytes ?? 0
        // Chunk framing: a size line (at most 16 hex digits and CRLF) and CRLF around the data, `0` CRLF CRLF at the end.
        let room = bodyBytes + 18 + 2 + 5
        guard var buffer = headBytes(version: head.version, status: head.status, block: head.block, kept: head.kept,
                                     requestID: head.requestID, fields: head.added, reserving: room, context: context,
                                     promise: promise) else { return }
        if var body, bodyBytes > 0, !suppressBody {
            if isChunked {
                buffer.writeString(String(bodyBytes, radix: 16))
                buffer.writeStaticString("\r\n")
                buffer.writeBuffer(&body)
                buffer.writeStaticString("\r\n")
            } else {
                buffer.writeBuffer(&body)
            }
        }
        if isChunked { HTTPWire.writeLastChunk(trailers, to: &buffer) }
        endResponse(context: context, promise: promise) { promise in
            context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
        }
        headBuffer.keep(buffer)
    }

    private func writeHead(version: HTTPVersion, status: HTTPResponseStatus, block: ByteBuffer = ByteBuffer(), kept: [FieldRange] = [],
                           requestID: String? = nil, fields: [(String, String)], context: ChannelHandlerContext,
                           promise: EventLoopPromise<Void>?) {
        guard let buffer = headBytes(version: version, status: status, block: block, kept: kept, requestID: requestID, fields: fields,
                                     reserving: 0, context: context, promise: promise) else { return }
        context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
        headBuffer.keep(buffer)
    }

    /// A head's bytes, with `reserving` bytes of room after them; sets the body's framing. Nil when it was refused
    /// (the promise failed, the connection closing).
    private func headBytes(version: HTTPVersion, status: HTTPResponseStatus, block: ByteBuffer, kept: [FieldRange], requestID: String?,
                           fields: [(String, String)], reserving: Int, context: ChannelHandlerContext,
                           promise: EventLoopPromise<Void>?) -> ByteBuffer? {
        var fields = fields
        let code = status.code
        // A non-final 1xx (100 Continue, 103 Early Hints) is followed by the real answer to the same request.
        if !(code >= 100 && code < 200 && code != 101) {
            suppressBody = watch.answeringHead
        }
        let lastResponse = watch.quiescing && code >= 200
        if lastResponse {
            // Shutting down: tell the client this is the connection's last response, so it does not send another.
            fields.removeAll { $0.0.utf8.count == 10 && HeaderName.equalsIgnoringCase($0.0, "connection") }
            fields.append(("connection", "close"))
        }
        var buffer = headBuffer.take()
        guard !refused, let chunked = Self.serialize(version: version, status: status, block: block, kept: kept, dropKeptConnection: lastResponse,
                                                     requestID: requestID, fields: fields, reserving: reserving, into: &buffer)
        else {
            refuse(context: context, promise: promise)
            return nil
        }
        isChunked = chunked && !suppressBody
        return buffer
    }

    /// A body part written for a response to HEAD: dropped, and its promise fails with this.
    struct BodyAfterHEAD: Error {}

    /// A response head or trailer block with a byte that must not be sent (see the type's doc comment).
    struct InvalidResponseHead: Error {}

    /// Set once a response was refused: nothing more is written on this connection.
    private var refused = false
    /// The response heads' buffer (with a whole small response's body), reused once NIO has written the last one.
    private var headBuffer = HTTPScan.ReusedBuffer()

    private func refuse(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        refused = true
        promise?.fail(InvalidResponseHead())
        context.close(promise: nil)
    }

    private static let chunkedField = "transfer-encoding: chunked\r\n"
    private static let requestIDName = Array("x-request-id: ".utf8)

    /// RFC 9110 `tchar` as a bitmap of the bytes 0–127 (low word 0–63, high word 64–127).
    private static let tokenMask: (UInt64, UInt64) = {
        var lo: UInt64 = 0, hi: UInt64 = 0
        for b in UInt8(0)..<128 where (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || "!#$%&'*+-.^_`|~".utf8.contains(b) {
            if b < 64 { lo |= 1 << UInt64(b) } else { hi |= 1 << UInt64(b - 64) }
        }
        return (lo, hi)
    }()

    static let notInName: UInt8 = 1
    static let notInValue: UInt8 = 2
    /// Per byte: ``notInName`` unless it is a `tchar`, ``notInValue`` for a control byte but HTAB, and DEL. Built once
    /// and never freed: the serialiser reads it through a raw pointer, one load per byte of every response head.
    /// `nonisolated(unsafe)`: written once inside the lazy initialiser (thread-safe), only read afterwards.
    nonisolated(unsafe) static let byteClasses: UnsafePointer<UInt8> = {
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        for i in 0..<256 {
            let b = UInt8(i)
            table[i] = (isTokenByte(b, tokenMask) ? 0 : notInName) | (isValueByte(b) ? 0 : notInValue)
        }
        return UnsafePointer(table)
    }()

    @inline(__always)
    static func isTokenByte(_ b: UInt8, _ mask: (UInt64, UInt64)) -> Bool {
        b < 64 ? (mask.0 >> UInt64(b)) & 1 == 1 : b < 128 && (mask.1 >> UInt64(b - 64)) & 1 == 1
    }

    /// Field-value bytes (VCHAR, obs-text, SP, HTAB): no control byte but HTAB, no DEL.
    @inline(__always)
    static func isValueByte(_ b: UInt8) -> Bool { b == 0x09 || (b >= 0x20 && b != 0x7F) }

    static func isValidName(_ name: String) -> Bool {
        let mask = tokenMask
        return !name.isEmpty && name.utf8.allSatisfy { isTokenByte($0, mask) }
    }

    static func isValidValue(_ value: String) -> Bool { value.utf8.allSatisfy(isValueByte) }

    static func isValid(_ fields: HTTPHeaders) -> Bool {
        fields.allSatisfy { isValidName($0.name) && isValidValue($0.value) }
    }

    /// `head` in wire form (see below), from NIO's head type (for the tests).
    static func serialize(_ head: HTTPResponseHead, allocator: ByteBufferAllocator) -> (ByteBuffer, chunked: Bool)? {
        serialize(version: head.version, status: head.status, fields: head.headers.map { ($0.name, $0.value) }, allocator: allocator)
    }

    /// The head's wire bytes and whether a body after it is chunked; nil when a name, value or the reason phrase has a
    /// byte that must not be sent. The fields are `kept` (ranges in `block`, already validated, copied as they are;
    /// without `Connection` when `dropKeptConnection`) followed by `fields` (validated while copied).
    static func serialize(version: HTTPVersion, status: HTTPResponseStatus, block: ByteBuffer = ByteBuffer(), kept: [FieldRange] = [],
                          dropKeptConnection: Bool = false, requestID: String? = nil, fields: [(String, String)], reserving: Int = 0,
                          allocator: ByteBufferAllocator) -> (ByteBuffer, chunked: Bool)? {
        var buffer = allocator.buffer(capacity: 0)  // grown in place, from `allocator`
        guard let chunked = serialize(version: version, status: status, block: block, kept: kept, dropKeptConnection: dropKeptConnection,
                                      requestID: requestID, fields: fields, reserving: reserving, into: &buffer) else { return nil }
        return (buffer, chunked)
    }

    /// The same, written into `buffer`'s storage (emptied first, with `reserving` bytes of room after the head; see
    /// ``HTTPScan/ReusedBuffer``); returns whether a body is chunked, nil when refused (`buffer` is then to be dropped).
    static func serialize(version: HTTPVersion, status: HTTPResponseStatus, block: ByteBuffer, kept: [FieldRange],
                          dropKeptConnection: Bool, requestID: String?, fields: [(String, String)], reserving: Int,
                          into buffer: inout ByteBuffer) -> Bool? {
        let code = status.code
        let mayHaveBody = !(code >= 100 && code < 200) && code != 204 && code != 304
        let http11 = version.major == 1 && version.minor >= 1
        // Which framing fields pass, and whether `transfer-encoding: chunked` is appended.
        let keepLength = mayHaveBody
        func keeps(_ name: String) -> Bool {
            switch name.utf8.count {
            case 14: return keepLength || !HeaderName.equalsIgnoringCase(name, "content-length")
            // Always rewritten: dropped, then `chunked` appended when the body is chunked. (NIO keeps an HTTP/1.0
            // response's own; the sidecar never chunks one — RFC 9112 §6.1 — so it would misdescribe the body.)
            case 17: return !HeaderName.equalsIgnoringCase(name, "transfer-encoding")
            default: return true
            }
        }
        func keeps(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
            switch name.count {
            case 10: return !dropKeptConnection || !HeaderClass.equalsLower(name, "connection")
            case 14: return keepLength || !HeaderClass.equalsLower(name, "content-length")
            case 17: return !HeaderClass.equalsLower(name, "transfer-encoding")
            default: return true
            }
        }
        return block.withUnsafeReadableBytes { raw -> Bool? in
            let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            func name(_ r: FieldRange) -> UnsafeBufferPointer<UInt8> {
                UnsafeBufferPointer(start: base.map { $0 + Int(r.nameStart) }, count: Int(r.nameCount))
            }
            // One pass for the framing fields and the size of every field line that is kept.
            var hasLength = false
            var fieldsSize = 0
            for r in kept where keeps(name(r)) {
                fieldsSize += Int(r.nameCount) + 2 + Int(r.valueCount) + 2
                if r.nameCount == 14, HeaderClass.equalsLower(name(r), "content-length") { hasLength = true }
            }
            if let requestID { fieldsSize += Self.requestIDName.count + requestID.utf8.count + 2 }
            for (name, value) in fields where keeps(name) {
                fieldsSize += name.utf8.count + 2 + value.utf8.count + 2
                if name.utf8.count == 14, HeaderName.equalsIgnoringCase(name, "content-length") { hasLength = true }
            }
            let chunked = mayHaveBody && !hasLength && http11
            let statusLine: String
            if version == .http1_1, case .ok = status {
                statusLine = "HTTP/1.1 200 OK"
            } else {
                let reason = status.reasonPhrase
                guard isValidValue(reason) else { return nil }
                statusLine = "HTTP/\(version.major).\(version.minor) \(code) \(reason)"
            }
            var size = statusLine.utf8.count + 2 + 2 + fieldsSize
            if chunked { size += chunkedField.utf8.count }
            let classes = Self.byteClasses
            var valid = true
            buffer.clear(minimumCapacity: size + reserving)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
                let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                var at = 0
                HTTPWire.copy(statusLine, to: out, at: &at); out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                for r in kept where keeps(name(r)) {
                    let line = base! + Int(r.nameStart)
                    (out + at).update(from: line, count: Int(r.nameCount)); at += Int(r.nameCount)
                    out[at] = 0x3A; out[at + 1] = 0x20; at += 2
                    (out + at).update(from: base! + Int(r.valueStart), count: Int(r.valueCount)); at += Int(r.valueCount)
                    out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                }
                // Validated while copied: one pass over each byte.
                if let requestID {
                    Self.requestIDName.withUnsafeBytes { HTTPWire.copy($0, to: out, at: &at) }
                    let valueStart = at
                    HTTPWire.copy(requestID, to: out, at: &at)
                    var bad: UInt8 = 0
                    for i in valueStart..<at { bad |= classes[Int(out[i])] & Self.notInValue }
                    out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                    if bad != 0 {
                        valid = false
                        return 0
                    }
                }
                for (name, value) in fields where keeps(name) {
                    let nameStart = at
                    HTTPWire.copy(name, to: out, at: &at)
                    // Branch-free accumulation over a byte-class table: a set bit in `bad` marks a byte that must not be sent.
                    var bad: UInt8 = at > nameStart ? 0 : Self.notInName
                    for i in nameStart..<at { bad |= classes[Int(out[i])] & Self.notInName }
                    out[at] = 0x3A; out[at + 1] = 0x20; at += 2
                    let valueStart = at
                    HTTPWire.copy(value, to: out, at: &at)
                    for i in valueStart..<at { bad |= classes[Int(out[i])] & Self.notInValue }
                    out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                    if bad != 0 {
                        valid = false
                        return 0
                    }
                }
                if chunked { HTTPWire.copy(chunkedField, to: out, at: &at) }
                out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                assert(at == size)
                return at
            }
            return valid ? chunked : nil
        }
    }
}

/// Body framing and byte copying shared by the two HTTP/1 encoders (``UpstreamRequestEncoder``,
/// ``ClientResponseEncoder``), as NIO's encoders frame them.
enum HTTPWire {
    private static let crlf = ByteBuffer(staticString: "\r\n")

    /// A body part: as is, or as one chunk (size line, data, CRLF — three writes, the data not copied). An empty part
    /// would end a chunked body, so it is written as nothing, only to keep promises in order.
    static func writeBody(_ chunk: IOData, chunked: Bool, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        let size = chunk.readableBytes
        guard chunked, size > 0 else {
            context.write(NIOAny(chunk), promise: promise)
            return
        }
        var prefix = context.channel.allocator.buffer(capacity: 18)
        prefix.writeString(String(size, radix: 16))
        prefix.writeStaticString("\r\n")
        context.write(NIOAny(IOData.byteBuffer(prefix)), promise: nil)
        context.write(NIOAny(chunk), promise: nil)
        context.write(NIOAny(IOData.byteBuffer(crlf)), promise: promise)
    }

    /// The last chunk (`0`), the trailer fields and the empty line that end a chunked body.
    static func writeLastChunk(_ trailers: HTTPHeaders?, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n")
        for (name, value) in trailers ?? HTTPHeaders() {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// The end of a body: the last chunk and the trailer block when chunked; otherwise nothing (an empty write only
    /// when someone waits on the promise).
    static func writeEnd(_ trailers: HTTPHeaders?, chunked: Bool, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if chunked {
            var buffer = context.channel.allocator.buffer(capacity: 64)
            writeLastChunk(trailers, to: &buffer)
            context.write(NIOAny(IOData.byteBuffer(buffer)), promise: promise)
        } else if let promise {
            context.write(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: promise)
        }
    }

    /// Copies `bytes` to `out + at` and advances `at` (an `inout` index, not a captured variable: a closure's
    /// captured `var` is checked for exclusive access at run time on every use).
    @inline(__always)
    static func copy(_ bytes: UnsafeRawBufferPointer, to out: UnsafeMutablePointer<UInt8>, at: inout Int) {
        if let base = bytes.baseAddress { UnsafeMutableRawPointer(out + at).copyMemory(from: base, byteCount: bytes.count) }
        at += bytes.count
    }

    /// Copies `s`'s UTF-8 bytes the same way.
    @inline(__always)
    static func copy(_ s: String, to out: UnsafeMutablePointer<UInt8>, at: inout Int) {
        let done: Void? = s.utf8.withContiguousStorageIfAvailable { bytes in
            if let base = bytes.baseAddress { (out + at).update(from: base, count: bytes.count) }
            at += bytes.count
        }
        if done == nil {
            for b in s.utf8 {
                out[at] = b
                at += 1
            }
        }
    }
}
