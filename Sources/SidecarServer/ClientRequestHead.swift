import NIOCore
import NIOHTTP1

/// A client's request part: ``ClientRequestHead`` in place of NIO's `HTTPRequestHead`, bodies and trailers as NIO has them.
/// After ``ClientRequestDecoder``, a head that is the whole request (``ClientRequestHead/isWhole``) comes alone: no
/// `.end` follows it.
///
/// Its own enum rather than NIO's generic `HTTPPart<ClientRequestHead, ByteBuffer>` (the same cases): each handler
/// takes its part out of a `NIOAny` by a run-time cast, and a cast to a generic type instance looked up its metadata
/// each time (~460 instructions, against ~240 for a plain enum; two such casts per request).
public enum ClientRequestPart: Sendable, Equatable {
    case head(ClientRequestHead)
    case body(ByteBuffer)
    case end(HTTPHeaders?)
}

/// A request head as the client sent it: its bytes (a slice of the read, not copied) and where each field line's
/// name and value lie in them, with the request line read.
///
/// NIO's `HTTPRequestHead` holds every name and value as a `String` in an `HTTPHeaders` array: building it cost one or
/// two allocations per field and a UTF-8 check of each (the session cookie is most of a head), and the proxy then read
/// the strings again to classify, sanitise and copy them upstream. Here the proxy reads the fields it decides on
/// (``RequestHeadFields``) and copies the ones it forwards straight from these bytes. A class: a `NIOAny` holds three
/// words inline, so as a struct every head would be boxed anyway; immutable, so `Sendable`.
public final class ClientRequestHead: Sendable, Equatable, CustomStringConvertible {
    public let method: HTTPMethod
    public let version: HTTPVersion
    public let uri: String
    /// The request line through the empty line; ``fields`` index it from its reader index.
    public let block: ByteBuffer
    /// Each field line's name and value (OWS trimmed), in order.
    public let fields: [FieldRange]
    /// The connection carries no request after this one — `Connection: close`, HTTP/1.0 without keep-alive (as llhttp
    /// reads them), an upgrade request or a CONNECT: the parser reads no further, so its answer (any but a `101`) says
    /// `Connection: close` and is the connection's last.
    public let isLast: Bool
    /// The head is the whole request: no body follows, and the parser's next part is its `.end`.
    /// ``ClientRequestDecoder`` folds that `.end` into the head, so the handlers after it get one part per such
    /// request instead of two (each part costs a pass through the pipeline and a run-time cast per handler).
    public let isWhole: Bool
    /// An upgrade request as the parser read it (`GET` with `Upgrade` and an `upgrade` token in `Connection`, read as
    /// llhttp reads them): the parser stopped after it. The proxy forwards an upgrade on this decision only — it
    /// once read the tokens again with tabs trimmed, so `Connection: upgrade<HTAB>` went upstream as an upgrade
    /// while the parser went on reading the bytes after it as requests (found in review).
    public let isUpgrade: Bool

    public var isKeepAlive: Bool { !isLast }

    init(method: HTTPMethod, version: HTTPVersion, uri: String, block: ByteBuffer, fields: [FieldRange], isLast: Bool, isWhole: Bool = false,
         isUpgrade: Bool = false) {
        self.method = method
        self.version = version
        self.uri = uri
        self.block = block
        self.fields = fields
        self.isLast = isLast
        self.isWhole = isWhole
        self.isUpgrade = isUpgrade
    }

    /// A head from its parts (tests and tools; the proxy gets its heads from ``ClientRequestParser``). Names and values
    /// are taken as given, unchecked, so tests can hand the handlers what the parser would refuse; `isLast` defaults
    /// to what NIO reads in the fields. `isWhole` is false: a test sends the `.end` itself.
    public convenience init(version: HTTPVersion = .http1_1, method: HTTPMethod, uri: String, headers: HTTPHeaders = [:], isLast: Bool? = nil,
                            isWhole: Bool = false) {
        var bytes = Array("\(method.rawValue) \(uri) HTTP/\(version.major).\(version.minor)\r\n".utf8)
        var fields: [FieldRange] = []
        for (name, value) in headers {
            let nameStart = bytes.count
            bytes += Array(name.utf8) + Array(": ".utf8)
            let valueStart = bytes.count
            bytes += Array(value.utf8) + [0x0D, 0x0A]
            fields.append(FieldRange(nameStart: Int32(nameStart), nameCount: Int32(name.utf8.count),
                                     valueStart: Int32(valueStart), valueCount: Int32(value.utf8.count)))
        }
        bytes += [0x0D, 0x0A]
        let keepAlive = HTTPRequestHead(version: version, method: method, uri: uri, headers: headers).isKeepAlive
        // Upgrade as the parser decides it, from the same reading of the fields.
        var framing = HTTPScan.FieldBlock()
        bytes.withUnsafeBytes { raw in
            for range in fields { HTTPScan.noteFraming(name: range.name(in: raw), value: range.value(in: raw), in: &framing) }
        }
        self.init(method: method, version: version, uri: uri, block: ByteBuffer(bytes: bytes), fields: fields, isLast: isLast ?? !keepAlive,
                  isWhole: isWhole, isUpgrade: method.isGET && framing.hasUpgrade && framing.connectionUpgrade)
    }

    /// `body` over the head's bytes; ``fields`` index them.
    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try block.withUnsafeReadableBytes(body)
    }

    /// The first value of the field named `lowercaseName` (compared ASCII case-insensitively), if any.
    func firstValue(_ lowercaseName: StaticString) -> String? {
        withBytes { bytes in
            for range in fields where HTTPScan.equalsLowercase(range.name(in: bytes), lowercaseName) {
                return String(decoding: range.value(in: bytes), as: UTF8.self)
            }
            return nil
        }
    }

    /// Every value of the field named `lowercaseName` (compared ASCII case-insensitively), in order.
    func values(_ lowercaseName: StaticString) -> [String] {
        withBytes { bytes in
            fields.filter { HTTPScan.equalsLowercase($0.name(in: bytes), lowercaseName) }
                .map { String(decoding: $0.value(in: bytes), as: UTF8.self) }
        }
    }

    /// The fields as NIO's `HTTPHeaders` (tests, the fuzz targets' comparison with NIO's decoder; not the proxy path).
    public var headers: HTTPHeaders {
        HTTPHeaders(fields.map { ($0.name(in: block), $0.value(in: block)) })
    }

    /// NIO's head for the same request.
    public var nioHead: HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: headers)
    }

    /// The same request line, the same field names and values in order (not the same bytes: OWS may differ), the
    /// same `isLast`.
    public static func == (a: ClientRequestHead, b: ClientRequestHead) -> Bool {
        guard a.method == b.method, a.version == b.version, a.uri == b.uri, a.isLast == b.isLast, a.fields.count == b.fields.count else {
            return false
        }
        return a.withBytes { x in
            b.withBytes { y in
                zip(a.fields, b.fields).allSatisfy { f, g in
                    f.name(in: x).elementsEqual(g.name(in: y)) && f.value(in: x).elementsEqual(g.value(in: y))
                }
            }
        }
    }

    public var description: String { "\(method.rawValue) \(uri) HTTP/\(version.major).\(version.minor) (\(fields.count) fields)" }
}

extension ClientRequestPart {
    /// The same part with NIO's head type (tests and the fuzz targets compare with NIO's decoder through it).
    public var nio: HTTPServerRequestPart {
        switch self {
        case .head(let head): return .head(head.nioHead)
        case .body(let buffer): return .body(buffer)
        case .end(let trailers): return .end(trailers)
        }
    }
}

extension FieldRange {
    /// The name's bytes in a head's `bytes` (as given by ``ClientRequestHead/withBytes(_:)``).
    @inline(__always)
    func name(in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[Int(nameStart)..<Int(nameStart + nameCount)])
    }

    @inline(__always)
    func value(in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[Int(valueStart)..<Int(valueStart + valueCount)])
    }
}

extension HTTPMethod {
    /// Case tests by pattern, not `==`: NIO's `HTTPMethod` is `RawRepresentable`, so `==` builds and compares both
    /// sides' `rawValue` strings (23 such calls per proxied request before these).
    var isGET: Bool { if case .GET = self { true } else { false } }
    var isHEAD: Bool { if case .HEAD = self { true } else { false } }
    var isCONNECT: Bool { if case .CONNECT = self { true } else { false } }
    var isTRACE: Bool { if case .TRACE = self { true } else { false } }
}
