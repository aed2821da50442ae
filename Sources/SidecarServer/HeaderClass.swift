/// What the proxy does with a request or response header, decided from its name without allocating
/// (ASCII case-insensitive; `_` read as `-` for the names a client must not set — identity, forwarding, request id —
/// because some upstream frameworks fold it: Django's ASGI handler reads `X_Forwarded_For` as `X-Forwarded-For`
/// and joins it before the sidecar's own value).
enum HeaderClass: Equatable {
    case hopByHop, host, forwarding, requestID, expect, cookie, authorization, transferEncoding, identity, other

    /// `name` lower-cased equals `lower` (which is lower-case ASCII).
    @inline(__always)
    static func equalsLower(_ name: String, _ lower: StaticString) -> Bool {
        guard name.utf8.count == lower.utf8CodeUnitCount else { return false }
        return withBytes(name) { equalsLower($0, lower) }
    }

    /// The bytes of `name` lower-cased equal `lower` (which is lower-case ASCII).
    @inline(__always)
    static func equalsLower(_ n: UnsafeBufferPointer<UInt8>, _ lower: StaticString) -> Bool {
        guard n.count == lower.utf8CodeUnitCount else { return false }
        let p = lower.utf8Start
        for i in 0..<n.count {
            let b = n[i]
            let folded = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
            if folded != p[i] { return false }
        }
        return true
    }

    /// `body` over the string's UTF-8 bytes: in place for native strings (all header names here), else a copy.
    @inline(__always)
    static func withBytes<R>(_ s: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = s.utf8.withContiguousStorageIfAvailable(body) { return r }
        return Array(s.utf8).withUnsafeBufferPointer(body)
    }

    /// The bytes of `name` lower-cased, with `_` read as `-`, equal `lower` (lower-case ASCII).
    @inline(__always)
    static func equalsLowerDashed(_ n: UnsafeBufferPointer<UInt8>, _ lower: StaticString) -> Bool {
        guard n.count == lower.utf8CodeUnitCount else { return false }
        let p = lower.utf8Start
        for i in 0..<n.count {
            var folded = (n[i] >= 0x41 && n[i] <= 0x5A) ? n[i] | 0x20 : n[i]
            if folded == UInt8(ascii: "_") { folded = UInt8(ascii: "-") }
            if folded != p[i] { return false }
        }
        return true
    }

    /// True when the name, lower-cased with `_` → `-`, starts with `x-auth-`.
    @inline(__always)
    static func hasIdentityPrefix(_ n: UnsafeBufferPointer<UInt8>) -> Bool {
        let prefix: StaticString = "x-auth-"
        guard n.count >= 7 else { return false }
        let p = prefix.utf8Start
        for i in 0..<7 {
            var folded = (n[i] >= 0x41 && n[i] <= 0x5A) ? n[i] | 0x20 : n[i]
            if folded == UInt8(ascii: "_") { folded = UInt8(ascii: "-") }
            if folded != p[i] { return false }
        }
        return true
    }

    static func of(_ name: String) -> HeaderClass { withBytes(name) { of(bytes: $0) } }

    static func of(bytes name: UnsafeBufferPointer<UInt8>) -> HeaderClass {
        if hasIdentityPrefix(name) { return .identity }
        switch name.count {
        case 2: if equalsLower(name, "te") { return .hopByHop }
        case 4: if equalsLower(name, "host") { return .host }
        case 6:
            if equalsLower(name, "cookie") { return .cookie }
            if equalsLower(name, "expect") { return .expect }
        case 7:
            if equalsLower(name, "upgrade") || equalsLower(name, "trailer") { return .hopByHop }
        case 9: if equalsLower(name, "forwarded") { return .forwarding }
        case 10:
            if equalsLower(name, "connection") || equalsLower(name, "keep-alive") { return .hopByHop }
        case 12: if equalsLowerDashed(name, "x-request-id") { return .requestID }
        case 13: if equalsLower(name, "authorization") { return .authorization }
        case 15:
            if equalsLowerDashed(name, "x-forwarded-for") { return .forwarding }
        case 16:
            if equalsLowerDashed(name, "x-forwarded-host") { return .forwarding }
            if equalsLower(name, "proxy-connection") { return .hopByHop }
        case 17:
            if equalsLowerDashed(name, "x-forwarded-proto") { return .forwarding }
            if equalsLower(name, "transfer-encoding") { return .transferEncoding }
        case 18: if equalsLower(name, "proxy-authenticate") { return .hopByHop }
        case 19: if equalsLower(name, "proxy-authorization") { return .hopByHop }
        default: break
        }
        return .other
    }
}
