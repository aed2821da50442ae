import NIOCore
import NIOHTTP1
import SidecarCore

/// Serialises requests to the upstream: HTTP/1.1 wire format with NIO's framing rules, the head in one write.
///
/// Takes the place of NIO's `HTTPRequestEncoder` (same input type, so the response decoder behind it still sees each
/// request head and knows which responses answer a HEAD). The framing is NIO's: a request that must not have a body
/// (TRACE) loses `Content-Length`/`Transfer-Encoding`; one that may (POST, PUT, PATCH) and has no `Content-Length` is
/// sent chunked; for the others `Content-Length` wins over `Transfer-Encoding`, and the body is chunked only when the
/// first `Transfer-Encoding` is `chunked`. What differs is the cost: NIO writes the start line and every header name,
/// separator, value and CRLF separately (four bounds-checked buffer writes per header); here the block is measured,
/// then copied into one buffer of that size.
final class UpstreamRequestEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = IOData

    private var isChunked = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            let (buffer, chunked) = Self.serialize(head, allocator: context.channel.allocator)
            isChunked = chunked
            context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
        case .body(let chunk):
            HTTPWire.writeBody(chunk, chunked: isChunked, context: context, promise: promise)
        case .end(let trailers):
            HTTPWire.writeEnd(trailers, chunked: isChunked, context: context, promise: promise)
            isChunked = false
        }
    }

    /// The head's wire bytes and whether its body is chunked.
    static func serialize(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> (ByteBuffer, chunked: Bool) {
        // One pass for the framing fields and the size of every field line (each visit of an `HTTPHeaders` element
        // retains and releases two strings): dropped framing lines are subtracted afterwards.
        var hasLength = false
        var firstEncoding: String?
        var fieldsSize = 0, lengthLinesSize = 0, encodingLinesSize = 0
        for (name, value) in head.headers {
            let line = name.utf8.count + 2 + value.utf8.count + 2
            fieldsSize += line
            switch name.utf8.count {
            case 14:
                if HeaderName.equalsIgnoringCase(name, "content-length") { hasLength = true; lengthLinesSize += line }
            case 17:
                if HeaderName.equalsIgnoringCase(name, "transfer-encoding") {
                    if firstEncoding == nil { firstEncoding = value }
                    encodingLinesSize += line
                }
            default: break
            }
        }
        let http11 = head.version.major == 1 && head.version.minor >= 1
        let keepLength: Bool, keepEncoding: Bool, addChunked: Bool, chunked: Bool
        switch head.method {
        case .TRACE:
            (keepLength, keepEncoding, addChunked, chunked) = (false, false, false, false)
        case .POST, .PUT, .PATCH:
            if hasLength {
                (keepLength, keepEncoding, addChunked, chunked) = (true, false, false, false)
            } else {
                (keepLength, keepEncoding, addChunked, chunked) = (true, !http11, http11, http11)
            }
        default:
            if hasLength {
                (keepLength, keepEncoding, addChunked, chunked) = (true, false, false, false)
            } else {
                (keepLength, keepEncoding, addChunked, chunked) = (true, true, false, http11 && firstEncoding == "chunked")
            }
        }
        func kept(_ name: String) -> Bool {
            switch name.utf8.count {
            case 14: return keepLength || !HeaderName.equalsIgnoringCase(name, "content-length")
            case 17: return keepEncoding || !HeaderName.equalsIgnoringCase(name, "transfer-encoding")
            default: return true
            }
        }
        let method = head.method.rawValue
        let version = head.version == .http1_1 ? "HTTP/1.1" : "HTTP/\(head.version.major).\(head.version.minor)"
        var size = method.utf8.count + 1 + head.uri.utf8.count + 1 + version.utf8.count + 2 + 2 + fieldsSize
        if !keepLength { size -= lengthLinesSize }
        if !keepEncoding { size -= encodingLinesSize }
        if addChunked { size += chunkedField.utf8.count }
        var buffer = allocator.buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var at = 0
            HTTPWire.copy(method, to: out, at: &at); out[at] = 0x20; at += 1
            HTTPWire.copy(head.uri, to: out, at: &at); out[at] = 0x20; at += 1
            HTTPWire.copy(version, to: out, at: &at); out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
            for (name, value) in head.headers where kept(name) {
                HTTPWire.copy(name, to: out, at: &at); out[at] = 0x3A; out[at + 1] = 0x20; at += 2
                HTTPWire.copy(value, to: out, at: &at); out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
            }
            if addChunked { HTTPWire.copy(chunkedField, to: out, at: &at) }
            out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
            assert(at == size)
            return at
        }
        return (buffer, chunked)
    }

    private static let chunkedField = "transfer-encoding: chunked\r\n"
}
