import AuthJSToken

/// Header names are compared the way upstream frameworks see them: lower-case, `_` folded to `-`
/// (Starlette/FastAPI, Django and PHP-FPM treat `X_Auth_Sub` as `X-Auth-Sub`; CVE-2025-64484).
public enum HeaderName {
    public static func normalized(_ name: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(name.utf8.count)
        for b in name.utf8 {
            if b >= 0x41 && b <= 0x5A { out.append(b + 32) } else if b == UInt8(ascii: "_") { out.append(UInt8(ascii: "-")) } else { out.append(b) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 9110 token characters only.
    public static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// `name` with ASCII upper-case letters lowered (no other folding): the form ``connectionTokens(_:)`` returns.
    public static func lowercased(_ name: String) -> String {
        var name = name
        return name.withUTF8 { bytes in
            String(unsafeUninitializedCapacity: bytes.count) { out in
                for i in 0..<bytes.count {
                    let b = bytes[i]
                    out[i] = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
                }
                return bytes.count
            }
        }
    }

    /// `Content-Length` or `Transfer-Encoding` (a lower-cased token): the fields a message is framed by, which a
    /// `Connection` list must not remove — the proxy still frames the body by them (RFC 9110 §7.6.1: a sender must
    /// not list a field meant for every recipient).
    public static func isFraming(_ lowercasedName: String) -> Bool {
        lowercasedName == "content-length" || lowercasedName == "transfer-encoding"
    }

    /// ASCII case-insensitive equality (header names and `Connection` tokens; no other folding).
    public static func equalsIgnoringCase(_ a: String, _ b: String) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        // Contiguous bytes for native strings (all of them here); index walking otherwise.
        if let result = x.withContiguousStorageIfAvailable({ p in
            y.withContiguousStorageIfAvailable { q in
                for i in 0..<p.count where p[i] != q[i] {
                    let fp = (p[i] >= 0x41 && p[i] <= 0x5A) ? p[i] | 0x20 : p[i]
                    let fq = (q[i] >= 0x41 && q[i] <= 0x5A) ? q[i] | 0x20 : q[i]
                    if fp != fq { return false }
                }
                return true
            }
        }), let equal = result {
            return equal
        }
        for (p, q) in zip(x, y) where p != q {
            let fp = (p >= 0x41 && p <= 0x5A) ? p | 0x20 : p
            let fq = (q >= 0x41 && q <= 0x5A) ? q | 0x20 : q
            if fp != fq { return false }
        }
        return true
    }

    /// The tokens of `Connection` field values (RFC 9110 §7.6.1: comma-separated, optional whitespace), lower-cased,
    /// without `keep-alive` and `close` (hop-by-hop framing, handled on their own) and empty list elements. Each
    /// remaining token names a hop-by-hop header, or is `upgrade`. On bytes: this runs for every request and response.
    public static func connectionTokens(_ values: [String]) -> [String] {
        var tokens: [String] = []
        for value in values {
            var utf8 = value
            utf8.withUTF8 { bytes in
                var start = 0
                while start <= bytes.count {
                    var end = start
                    while end < bytes.count, bytes[end] != UInt8(ascii: ",") { end += 1 }
                    var lo = start, hi = end
                    while lo < hi, bytes[lo] == 0x20 || bytes[lo] == 0x09 { lo += 1 }
                    while hi > lo, bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0x09 { hi -= 1 }
                    // `keep-alive` and `close` (nearly every value) are recognised in place, without making a string.
                    if hi > lo, !isFramingToken(UnsafeBufferPointer(rebasing: bytes[lo..<hi])) {
                        tokens.append(String(unsafeUninitializedCapacity: hi - lo) { out in
                            for i in lo..<hi {
                                let b = bytes[i]
                                out[i - lo] = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
                            }
                            return hi - lo
                        })
                    }
                    start = end + 1
                }
            }
        }
        return tokens
    }

    /// The whole value is one `keep-alive` or `close` (OWS around it allowed): it lists no field name. The common
    /// `Connection` value, recognised without splitting it.
    public static func isFramingOnly(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { isFramingOnly(bytes: $0) }
    }

    /// The same on a value's bytes (the proxy reads upstream fields in place).
    public static func isFramingOnly(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var lo = 0, hi = bytes.count
        while lo < hi, bytes[lo] == 0x20 || bytes[lo] == 0x09 { lo += 1 }
        while hi > lo, bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0x09 { hi -= 1 }
        return hi > lo && isFramingToken(UnsafeBufferPointer(rebasing: bytes[lo..<hi]))
    }

    /// `keep-alive` or `close`, ASCII case-insensitively.
    static func isFramingToken(_ token: UnsafeBufferPointer<UInt8>) -> Bool {
        func equals(_ lower: StaticString) -> Bool {
            guard token.count == lower.utf8CodeUnitCount else { return false }
            let l = lower.utf8Start
            for i in 0..<token.count where (token[i] >= 0x41 && token[i] <= 0x5A ? token[i] | 0x20 : token[i]) != l[i] { return false }
            return true
        }
        return equals("keep-alive") || equals("close")
    }
}

/// Turns verified claims into upstream headers, and decides which incoming headers are identity spoofs.
///
/// Values that are printable ASCII are sent as is. Anything else — non-ASCII, CR, LF, NUL, other controls — or a
/// value that itself starts with `utf-8''`, is sent as `utf-8''` + RFC 3986 percent-encoding of its UTF-8 bytes
/// (the RFC 8187 ext-value form): lossless, and never a raw control character. Arrays are joined with `,`; objects
/// are sent as compact JSON. A value over `maxValueBytes` is dropped (and reported), never truncated.
public struct IdentityHeaderMapper: Sendable {
    public struct Mapping: Sendable, Equatable {
        public var claimPath: String
        public var header: String
        public init(claimPath: String, header: String) {
            self.claimPath = claimPath
            self.header = header
        }
    }

    public static let defaultMappings: [Mapping] = [
        Mapping(claimPath: "sub", header: "X-Auth-Sub"),
        Mapping(claimPath: "email", header: "X-Auth-Email"),
        Mapping(claimPath: "name", header: "X-Auth-Name"),
        Mapping(claimPath: "picture", header: "X-Auth-Picture"),
    ]
    public static let encodedPrefix = "utf-8''"

    public let mappings: [Mapping]
    /// Header carrying base64url(JSON of all claims); nil disables it.
    public let claimsHeader: String?
    public let maxValueBytes: Int
    /// Normalised names that are removed from every incoming request (besides any `x-auth-*`).
    public let ownedNames: Set<String>

    public init(mappings: [Mapping] = defaultMappings, claimsHeader: String? = "X-Auth-Claims", maxValueBytes: Int = 8192) {
        self.mappings = mappings
        self.claimsHeader = claimsHeader
        self.maxValueBytes = maxValueBytes
        self.ownedNames = Set((mappings.map(\.header) + (claimsHeader.map { [$0] } ?? [])).map(HeaderName.normalized))
    }

    /// True for a header the client must never be able to set: `x-auth-*` or a configured identity header,
    /// compared after normalisation.
    public func isOwned(_ name: String) -> Bool {
        let n = HeaderName.normalized(name)
        return n.hasPrefix("x-auth-") || ownedNames.contains(n)
    }

    /// The headers to inject, and the names of headers dropped because they were too large.
    public func headers(for token: VerifiedToken) -> (headers: [(String, String)], dropped: [String]) {
        var out: [(String, String)] = []
        var dropped: [String] = []
        for m in mappings {
            guard let value = ClaimPath.lookup(m.claimPath, in: token.claims), let encoded = Self.headerValue(value) else { continue }
            if encoded.utf8.count > maxValueBytes { dropped.append(m.header); continue }
            out.append((m.header, encoded))
        }
        if let claimsHeader {
            let encoded = Base64URL.encode(JSONValue.object(token.claims).serialized())
            if encoded.utf8.count > maxValueBytes { dropped.append(claimsHeader) } else { out.append((claimsHeader, encoded)) }
        }
        return (out, dropped)
    }

    /// A claim as a header value: a string as is (encoded where ``encodeValue(_:separator:)`` must), numbers and bools
    /// as JSON, null omitted; an array's elements each so, joined with `,` — an element holding a `,` encoded on its
    /// own, so `["user,admin"]` (`utf-8''user%2Cadmin`) is not `["user","admin"]` (`user,admin`) to an upstream that
    /// splits on commas (found in review); a nested array or object element as JSON text; null elements omitted.
    static func headerValue(_ value: JSONValue) -> String? {
        switch value {
        case .null: return nil
        case .string(let s): return encodeValue(s)
        case .array(let items):
            return items.compactMap { item -> String? in
                switch item {
                case .null: return nil
                case .string(let s): return encodeValue(s, separator: true)
                default: return encodeValue(item.description, separator: true)
                }
            }.joined(separator: ",")
        default: return encodeValue(value.description)
        }
    }

    /// `value` as is when it is printable ASCII without edge spaces and cannot be read as RFC 8187 `charset'lang'…`
    /// text (in any case: a generic decoder reads `UTF-8''%41` as `A`); else `utf-8''` and percent-encoded UTF-8.
    /// `separator`: a `,` needs encoding too (an element of a list).
    public static func encodeValue(_ value: String, separator: Bool = false) -> String {
        // HTTP parsers trim leading/trailing whitespace, so a value with it is encoded too (lossless in transit).
        let edges = value.utf8.first.map { $0 != 0x20 } ?? true && value.utf8.last.map { $0 != 0x20 } ?? true
        let plain = edges && value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && !(separator && $0 == UInt8(ascii: ",")) }
            && !looksExtended(value)
        if plain { return value }
        var out = Array(encodedPrefix.utf8)
        for b in value.utf8 {
            if PathNormalizer.isUnreserved(b) { out.append(b) } else {
                out.append(UInt8(ascii: "%"))
                out.append(PathNormalizer.hexUpper[Int(b >> 4)]); out.append(PathNormalizer.hexUpper[Int(b & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Starts like an RFC 8187 ext-value: a charset token, `'`, a language tag (letters, digits, `-`), `'`.
    static func looksExtended(_ value: String) -> Bool {
        var bytes = value.utf8.makeIterator()
        var charset = 0
        while let b = bytes.next() {
            if b == UInt8(ascii: "'") {
                guard charset > 0 else { return false }
                while let l = bytes.next() {
                    if l == UInt8(ascii: "'") { return true }
                    guard (l >= 0x30 && l <= 0x39) || (l | 0x20 >= 0x61 && l | 0x20 <= 0x7A) || l == UInt8(ascii: "-") else { return false }
                }
                return false
            }
            guard (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || "!#$&+^_`{}~-".utf8.contains(b) else { return false }
            charset += 1
        }
        return false
    }

    /// The inverse of ``encodeValue(_:)`` (what an upstream does).
    public static func decodeValue(_ value: String) -> String? {
        guard value.hasPrefix(encodedPrefix) else { return value }
        return PercentDecoding.decodeURIComponent(value.dropFirst(encodedPrefix.utf8.count))
    }
}
