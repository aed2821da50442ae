import NIOHTTP1
import SidecarCore

/// The request-head fields the proxy handler decides on, gathered in one pass over the head's bytes.
///
/// Names are matched on bytes, by length first, then ASCII case-insensitively (never with Unicode folding); only the
/// values kept become strings. Values keep the semantics of `HTTPHeaders` lookups: the first value, or all of them in
/// order where a field may repeat.
struct RequestHeadFields {
    /// The first `Host` value, and how many there are (exactly one is valid in HTTP/1.1). Counts, not arrays: an
    /// array per request cost an allocation for what is nearly always one value.
    var host: String?
    var hostCount = 0
    /// The first `Content-Length` value, and how many there are (the parser refuses a second one).
    var contentLength: String?
    var contentLengthCount = 0
    var hasTransferEncoding = false
    /// Where the `Cookie` value lies in the head's bytes (no string made: the token is looked up by its bytes), or,
    /// when the client sent several `Cookie` fields (RFC 9110 §5.3 allows a user agent only one; some send several),
    /// all of them joined with `"; "`. See ``withCookie(in:_:)``.
    private var cookieRange: FieldRange?
    private var joinedCookie: String?
    var authorization: String?
    var requestID: String?
    var expectsContinue = false
    /// Every `Connection` value (usually none or one).
    var connection: [String] = []
    var upgrade: String?
    var traceparent: String?
    var tracestate: String?
    var origin: String?
    var corsRequestMethod: String?
    /// All `Access-Control-Request-Headers` values joined with `,`.
    var corsRequestHeaders: String?
    var corsRequestPrivateNetwork: String?
    /// Size of the header block as the 431 check counts it: each name and value plus 4 bytes (`: ` and CRLF).
    var headerBytes = 0

    init(_ head: ClientRequestHead) {
        self = Self.read(head)
    }

    /// The fields of `head` (the proxy's entry: the initialiser first fills `self` with its defaults and then
    /// destroys them when `self` is assigned — 13 optional strings released for nothing, per request).
    static func read(_ head: ClientRequestHead) -> RequestHeadFields {
        // Filled as a local inside the closure and returned: mutating `self` from the closure copied the whole struct
        // in and out (a retain and a release of each of its strings).
        head.withBytes { bytes in
            var fields = RequestHeadFields()
            for range in head.fields {
                let name = range.name(in: bytes)
                fields.headerBytes += name.count + Int(range.valueCount) + 4
                fields.record(UnsafeBufferPointer(start: name.baseAddress?.assumingMemoryBound(to: UInt8.self), count: name.count),
                              range.value(in: bytes), range, bytes)
            }
            return fields
        }
    }

    private init() {}

    /// Records the field if the handler decides on it; `raw` becomes a string only then.
    private mutating func record(_ name: UnsafeBufferPointer<UInt8>, _ raw: UnsafeRawBufferPointer, _ range: FieldRange,
                                 _ head: UnsafeRawBufferPointer) {
        var value: String { String(decoding: raw, as: UTF8.self) }
        switch name.count {
        case 4:
            if HeaderClass.equalsLower(name, "host") {
                if hostCount == 0 { host = value }
                hostCount += 1
            }
        case 6:
            if HeaderClass.equalsLower(name, "cookie") {
                // Appended in place: `joined + "; " + value` copied the whole join per line, quadratic in a head of
                // thousands of `Cookie` lines (found in review).
                if joinedCookie != nil {
                    joinedCookie!.append("; ")
                    joinedCookie!.append(value)
                } else if let first = cookieRange {
                    joinedCookie = String(decoding: first.value(in: head), as: UTF8.self) + "; " + value
                } else {
                    cookieRange = range
                }
            } else if HeaderClass.equalsLower(name, "origin") {
                if origin == nil { origin = value }
            } else if HeaderClass.equalsLower(name, "expect") {
                if HTTPScan.equalsLowercase(raw, "100-continue") { expectsContinue = true }
            }
        case 7:
            if upgrade == nil, HeaderClass.equalsLower(name, "upgrade") { upgrade = value }
        case 10:
            if HeaderClass.equalsLower(name, "connection") {
                connection.append(value)
            } else if tracestate == nil, HeaderClass.equalsLower(name, "tracestate") {
                tracestate = value
            }
        case 11:
            if traceparent == nil, HeaderClass.equalsLower(name, "traceparent") { traceparent = value }
        case 12:
            if requestID == nil, HeaderClass.equalsLower(name, "x-request-id") { requestID = value }
        case 13:
            if authorization == nil, HeaderClass.equalsLower(name, "authorization") { authorization = value }
        case 14:
            if HeaderClass.equalsLower(name, "content-length") {
                if contentLengthCount == 0 { contentLength = value }
                contentLengthCount += 1
            }
        case 17:
            if HeaderClass.equalsLower(name, "transfer-encoding") { hasTransferEncoding = true }
        case 29:
            if corsRequestMethod == nil, HeaderClass.equalsLower(name, "access-control-request-method") { corsRequestMethod = value }
        case 30:
            if HeaderClass.equalsLower(name, "access-control-request-headers") {
                if corsRequestHeaders != nil {
                    corsRequestHeaders!.append(",")
                    corsRequestHeaders!.append(value)
                } else {
                    corsRequestHeaders = value
                }
            }
        case 38:
            if corsRequestPrivateNetwork == nil, HeaderClass.equalsLower(name, "access-control-request-private-network") {
                corsRequestPrivateNetwork = value
            }
        default:
            break
        }
    }

    /// Calls `body` with the `Cookie` value's bytes (nil without one); `head` is the head these fields came from.
    func withCookie<R>(in head: ClientRequestHead, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        if var joined = joinedCookie { return joined.withUTF8 { body(UnsafeRawBufferPointer($0)) } }
        guard let range = cookieRange else { return body(nil) }
        return head.withBytes { body(range.value(in: $0)) }
    }

    /// The `Cookie` value as a string (tests).
    func cookie(in head: ClientRequestHead) -> String? {
        withCookie(in: head) { $0.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// The request declares a body: a non-zero (or unreadable) `Content-Length`, or any `Transfer-Encoding`.
    var hasBody: Bool {
        if let contentLength { return (Int(contentLength) ?? 1) > 0 }
        return hasTransferEncoding
    }
}
