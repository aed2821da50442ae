#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Normalises a request path before any route decision, so `/public/../admin` cannot skip authentication.
///
/// RFC 3986 §6.2.2: percent-encoded unreserved characters are decoded and other escapes upper-cased, `;parameters`
/// are dropped from each segment, empty segments collapse, and dot segments are resolved (never above the root).
/// `%2E%2E` is resolved like `..` (RFC 3986 decodes unreserved characters first). Raw non-ASCII bytes are refused,
/// so a normalised path is ASCII and every later comparison is byte-exact. Escapes that would change the
/// path's structure — `%2F`, `%5C`, `%00` — and raw control characters or backslashes are refused (nil → 400),
/// because upstreams disagree on what they mean.
public enum PathNormalizer {
    public static let maxPathBytes = 8192

    /// Splits an origin-form request target into (normalised path, raw query or nil). nil: refuse with 400.
    public static func normalize(target: String) -> (path: String, query: Substring?)? {
        guard target.utf8.first == UInt8(ascii: "/"), target.utf8.count <= maxPathBytes else { return nil }
        // Bytes, not Characters: a combining mark after `?` or `/` would otherwise fuse into one grapheme and hide it.
        // The common case — a path already normal — is found in one pass over contiguous bytes, and a target without
        // a query is its own path (no string made).
        var contiguous = target
        let (split, normal) = contiguous.withUTF8 { bytes -> (Int?, Bool) in
            let q = memchr(bytes.baseAddress!, Int32(UInt8(ascii: "?")), bytes.count).map { bytes.baseAddress!.distance(to: $0.assumingMemoryBound(to: UInt8.self)) }
            return (q, isAlreadyNormal(UnsafeBufferPointer(rebasing: bytes[..<(q ?? bytes.count)])))
        }
        let utf8 = contiguous.utf8
        let q = split.map { utf8.index(utf8.startIndex, offsetBy: $0) }
        let query = q.map { contiguous[utf8.index(after: $0)...] }
        if normal { return (q.map { String(contiguous[..<$0]) } ?? contiguous, query) }
        guard let path = normalize(path: q.map { contiguous[..<$0] } ?? contiguous[...]) else { return nil }
        return (path, query)
    }

    public static func normalize(path: Substring) -> String? {
        // Fast path: most request paths are already normal (no `%`, `;`, `\\`, control bytes, empty or dot segments).
        if isAlreadyNormal(path) { return String(path) }
        var segments: [String] = []
        var endsWithSlash = false
        for raw in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            // Matrix parameters: `/admin;x=1` is `/admin` to Tomcat/Jetty-style upstreams.
            let bytes = raw.prefix(while: { $0 != UInt8(ascii: ";") })
            guard let segment = decodeSegment(bytes) else { return nil }
            endsWithSlash = false
            switch segment {
            case "": endsWithSlash = true
            case ".": endsWithSlash = true
            case "..":
                if !segments.isEmpty { segments.removeLast() }
                endsWithSlash = true
            default: segments.append(segment)
            }
        }
        var out = "/" + segments.joined(separator: "/")
        if endsWithSlash && !segments.isEmpty { out += "/" }
        return out
    }

    static func isAlreadyNormal(_ path: Substring) -> Bool {
        var path = path
        return path.withUTF8 { isAlreadyNormal($0) }
    }

    static func isAlreadyNormal(_ path: UnsafeBufferPointer<UInt8>) -> Bool {
        var previous: UInt8 = 0
        var segmentStart = true
        var dots = 0
        for b in path {
            if b < 0x21 || b >= 0x7F || b == UInt8(ascii: "%") || b == UInt8(ascii: ";") || b == UInt8(ascii: "\\") { return false }
            if b == UInt8(ascii: "/") {
                if previous == UInt8(ascii: "/") || (segmentStart && dots > 0 && dots <= 2) { return false }
                segmentStart = true
                dots = 0
            } else if segmentStart && b == UInt8(ascii: ".") {
                dots += 1
            } else {
                segmentStart = false
                dots = 0
            }
            previous = b
        }
        return path.first == UInt8(ascii: "/") && !(segmentStart && dots > 0 && dots <= 2)
    }

    static func isUnreserved(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
    }

    static func decodeSegment(_ raw: Substring.UTF8View.SubSequence) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let b = raw[i]
            // Raw non-ASCII is not a valid request-target byte (RFC 3986); clients percent-encode it.
            if b < 0x21 || b >= 0x7F || b == UInt8(ascii: "\\") { return nil }
            if b == UInt8(ascii: "%") {
                let h1 = raw.index(after: i)
                guard h1 < raw.endIndex, raw.index(after: h1) < raw.endIndex,
                      let hi = PercentDecoding.hexValue(raw[h1]), let lo = PercentDecoding.hexValue(raw[raw.index(after: h1)]) else { return nil }
                let v = hi << 4 | lo
                if v == 0x2F || v == 0x5C || v < 0x20 || v == 0x7F { return nil }
                if isUnreserved(v) {
                    out.append(v)
                } else {
                    out.append(UInt8(ascii: "%"))
                    out.append(hexUpper[Int(v >> 4)]); out.append(hexUpper[Int(v & 15)])
                }
                i = raw.index(i, offsetBy: 3)
                continue
            }
            out.append(b)
            i = raw.index(after: i)
        }
        return String(decoding: out, as: UTF8.self)
    }

    static let hexUpper: [UInt8] = Array("0123456789ABCDEF".utf8)
}
