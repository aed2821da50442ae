import NIOCore
import NIOHTTP1
import SidecarCore

/// A request part on its way to the upstream. The head comes already serialised (``UpstreamRequestHead``): the proxy
/// handler picks the client's field lines to keep and its own to add, and
/// ``UpstreamRequestEncoder/serialize(method:uri:client:kept:added:connectionLines:forwardedHost:requestID:identityLines:chunked:into:)`` copies them, with no
/// `HTTPHeaders` and no `HTTPRequestHead` built in between.
enum UpstreamRequestPart {
    case head(UpstreamRequestHead)
    case body(IOData)
    case end(HTTPHeaders?)
}

/// A request head in wire form, with what its connection needs to know about it. A class: a `NIOAny` holds up to
/// three words inline, and as a struct this (41 bytes) made every request part on its way upstream a boxed existential.
final class UpstreamRequestHead {
    let bytes: ByteBuffer
    /// Recorded on the response parser: the answer to a HEAD has no body.
    let method: HTTPMethod
    /// The body goes out chunked (NIO's framing rules, see ``UpstreamRequestEncoder``).
    let chunked: Bool
    /// Asks for a protocol upgrade: only then may the response be a 101 that ends HTTP on the connection.
    var wantsUpgrade = false

    init(bytes: ByteBuffer, method: HTTPMethod, chunked: Bool) {
        self.bytes = bytes
        self.method = method
        self.chunked = chunked
    }
}

/// Writes request parts as HTTP/1.1 bytes from a handler's context: the head's serialised bytes, then the body chunked
/// or as is (the head decided, see ``UpstreamRequestHead/chunked``), then the end (last chunk and trailers).
struct UpstreamRequestFraming {
    private var isChunked = false

    mutating func write(_ part: UpstreamRequestPart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(let head):
            isChunked = head.chunked
            context.write(NIOAny(IOData.byteBuffer(head.bytes)), promise: promise)
        case .body(let chunk):
            HTTPWire.writeBody(chunk, chunked: isChunked, context: context, promise: promise)
        case .end(let trailers):
            HTTPWire.writeEnd(trailers, chunked: isChunked, context: context, promise: promise)
            isChunked = false
        }
    }
}

/// Serialises requests to the upstream: HTTP/1.1 wire format with NIO's framing rules, the head in one write.
///
/// The framing is NIO's `HTTPRequestEncoder`'s (tested byte for byte against it): a request that must not have a body
/// (TRACE) loses `Content-Length`/`Transfer-Encoding`; one that may (POST, PUT, PATCH) and has no `Content-Length` is
/// sent chunked; for the others `Content-Length` wins over `Transfer-Encoding`, and the body is chunked only when the
/// first `Transfer-Encoding` is `chunked`. What differs is the cost: NIO writes the start line and every header name,
/// separator, value and CRLF separately (four bounds-checked buffer writes per header); here the block is measured,
/// then copied into one buffer of that size. ``serialize(method:uri:version:fields:allocator:)`` is that, from string
/// fields (the tests' reference, held byte for byte to NIO's encoder); the proxy handler uses the client-bytes
/// variant, ``serialize(method:uri:client:kept:added:connectionLines:forwardedHost:requestID:identityLines:chunked:into:)``, which takes its framing decision.
///
/// The upstream pipeline does not carry this handler: ``UpstreamHandler`` frames its parts with the same
/// ``UpstreamRequestFraming`` from its own context (one handler context less per upstream connection, two hops less
/// per request). This handler is that framing as a pipeline stage, for the byte-for-byte tests against NIO's encoder.
final class UpstreamRequestEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = UpstreamRequestPart
    typealias OutboundOut = IOData

    private var framing = UpstreamRequestFraming()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        framing.write(unwrapOutboundIn(data), context: context, promise: promise)
    }

    /// `head` in wire form, from NIO's head type (the tests compare against NIO's encoder with it).
    static func serialize(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> UpstreamRequestHead {
        serialize(method: head.method, uri: head.uri, version: head.version, fields: head.headers.map { ($0.name, $0.value) },
                  allocator: allocator)
    }

    /// The head's wire bytes and whether its body is chunked.
    static func serialize(method httpMethod: HTTPMethod, uri: String, version httpVersion: HTTPVersion, fields: [(String, String)],
                          allocator: ByteBufferAllocator) -> UpstreamRequestHead {
        // One pass for the framing fields and the size of every field line; dropped framing lines are subtracted
        // afterwards.
        var hasLength = false
        var firstEncoding: String?
        var fieldsSize = 0, lengthLinesSize = 0, encodingLinesSize = 0
        for (name, value) in fields {
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
        let http11 = httpVersion.major == 1 && httpVersion.minor >= 1
        let keepLength: Bool, keepEncoding: Bool, addChunked: Bool, chunked: Bool
        switch httpMethod {
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
        let method = httpMethod.rawValue
        let version = httpVersion == .http1_1 ? "HTTP/1.1" : "HTTP/\(httpVersion.major).\(httpVersion.minor)"
        var size = method.utf8.count + 1 + uri.utf8.count + 1 + version.utf8.count + 2 + 2 + fieldsSize
        if !keepLength { size -= lengthLinesSize }
        if !keepEncoding { size -= encodingLinesSize }
        if addChunked { size += chunkedField.utf8.count }
        var buffer = allocator.buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var at = 0
            HTTPWire.copy(method, to: out, at: &at); out[at] = 0x20; at += 1
            HTTPWire.copy(uri, to: out, at: &at); out[at] = 0x20; at += 1
            HTTPWire.copy(version, to: out, at: &at); out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
            for (name, value) in fields where kept(name) {
                HTTPWire.copy(name, to: out, at: &at); out[at] = 0x3A; out[at + 1] = 0x20; at += 2
                HTTPWire.copy(value, to: out, at: &at); out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
            }
            if addChunked { HTTPWire.copy(chunkedField, to: out, at: &at) }
            out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
            assert(at == size)
            return at
        }
        return UpstreamRequestHead(bytes: buffer, method: httpMethod, chunked: chunked)
    }

    private static let chunkedField = "transfer-encoding: chunked\r\n"
    private static let forwardedHostName = Array("x-forwarded-host: ".utf8)
    private static let requestIDName = Array("x-request-id: ".utf8)

    /// A client head rewritten for the upstream, in wire form: the client's `kept` field lines copied from its bytes
    /// (name, `": "`, the OWS-trimmed value); the proxy's `added` ones; its `connectionLines` (already in wire form,
    /// made once per client connection); `X-Forwarded-Host` with the value of the client's field `forwardedHost`;
    /// `X-Request-Id`; then the identity header lines (in wire form, made once per verified token:
    /// ``VerifiedTokenCache/Entry/headerLines``). The caller has applied the framing rules (``ProxyHandler`` keeps one
    /// `Content-Length` or adds `Transfer-Encoding: chunked` as the string-fields path above would: the client parser
    /// lets through nothing else) and says whether the body goes out `chunked`. The client's lines are plain offsets
    /// and the other blocks plain bytes: nothing is reference-counted per line.
    static func serialize(method httpMethod: HTTPMethod, uri: String, client: ClientRequestHead, kept: [FieldRange],
                          added: [(String, String)], connectionLines: [UInt8] = [], forwardedHost: FieldRange? = nil,
                          requestID: String? = nil, identityLines: [UInt8] = [], chunked: Bool,
                          allocator: ByteBufferAllocator) -> UpstreamRequestHead {
        var buffer = allocator.buffer(capacity: 0)  // grown in place, from `allocator`
        return serialize(method: httpMethod, uri: uri, client: client, kept: kept, added: added, connectionLines: connectionLines,
                         forwardedHost: forwardedHost, requestID: requestID, identityLines: identityLines, chunked: chunked,
                         into: &buffer)
    }

    /// The same, written into `buffer`'s storage (emptied first; see ``HTTPScan/ReusedBuffer``).
    static func serialize(method httpMethod: HTTPMethod, uri: String, client: ClientRequestHead, kept: [FieldRange],
                          added: [(String, String)], connectionLines: [UInt8], forwardedHost: FieldRange?,
                          requestID: String?, identityLines: [UInt8], chunked: Bool,
                          into buffer: inout ByteBuffer) -> UpstreamRequestHead {
        let method = httpMethod.rawValue
        var size = method.utf8.count + 1 + uri.utf8.count + 1 + 8 + 2 + 2
        for range in kept { size += Int(range.nameCount) + 2 + Int(range.valueCount) + 2 }
        for (name, value) in added { size += name.utf8.count + 2 + value.utf8.count + 2 }
        size += connectionLines.count + identityLines.count
        if let forwardedHost { size += Self.forwardedHostName.count + Int(forwardedHost.valueCount) + 2 }
        if let requestID { size += Self.requestIDName.count + requestID.utf8.count + 2 }
        buffer.clear(minimumCapacity: size)
        _ = client.withBytes { source in
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
                let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                var at = 0
                HTTPWire.copy(method, to: out, at: &at); out[at] = 0x20; at += 1
                HTTPWire.copy(uri, to: out, at: &at); out[at] = 0x20; at += 1
                HTTPWire.copy("HTTP/1.1\r\n", to: out, at: &at)
                for range in kept {
                    HTTPWire.copy(range.name(in: source), to: out, at: &at)
                    out[at] = 0x3A; out[at + 1] = 0x20; at += 2
                    HTTPWire.copy(range.value(in: source), to: out, at: &at)
                    out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                }
                for (name, value) in added {
                    HTTPWire.copy(name, to: out, at: &at); out[at] = 0x3A; out[at + 1] = 0x20; at += 2
                    HTTPWire.copy(value, to: out, at: &at); out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                }
                connectionLines.withUnsafeBytes { HTTPWire.copy($0, to: out, at: &at) }
                if let forwardedHost {
                    Self.forwardedHostName.withUnsafeBytes { HTTPWire.copy($0, to: out, at: &at) }
                    HTTPWire.copy(forwardedHost.value(in: source), to: out, at: &at)
                    out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                }
                if let requestID {
                    Self.requestIDName.withUnsafeBytes { HTTPWire.copy($0, to: out, at: &at) }
                    HTTPWire.copy(requestID, to: out, at: &at)
                    out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                }
                identityLines.withUnsafeBytes { HTTPWire.copy($0, to: out, at: &at) }
                out[at] = 0x0D; out[at + 1] = 0x0A; at += 2
                precondition(at == size)
                return at
            }
        }
        return UpstreamRequestHead(bytes: buffer, method: httpMethod, chunked: chunked)
    }
}
