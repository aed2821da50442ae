/// What the proxy does with a request or response header, decided from its name without allocating
/// (ASCII case-insensitive, `_` read as `-` only for the identity check that upstream frameworks fold).
enum HeaderClass: Equatable {
    case hopByHop, host, forwarding, requestID, expect, cookie, authorization, transferEncoding, identity, other

    /// `name` lower-cased equals `lower` (which is lower-case ASCII).
    @inline(__always)
    static func equalsLower(_ name: String, _ lower: StaticString) -> Bool {
        let n = name.utf8
        guard n.count == lower.utf8CodeUnitCount else { return false }
        var p = lower.utf8Start
        for b in n {
            let folded = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
            if folded != p.pointee { return false }
            p += 1
        }
        return true
    }

    /// True when the name, lower-cased with `_` → `-`, starts with `x-auth-`.
    @inline(__always)
    static func hasIdentityPrefix(_ name: String) -> Bool {
        let prefix: StaticString = "x-auth-"
        var p = prefix.utf8Start
        var i = 0
        for b in name.utf8 {
            if i == 7 { return true }
            var folded = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
            if folded == UInt8(ascii: "_") { folded = UInt8(ascii: "-") }
            if folded != p.pointee { return false }
            p += 1
            i += 1
        }
        return i == 7
    }

    static func of(_ name: String) -> HeaderClass {
        if hasIdentityPrefix(name) { return .identity }
        switch name.utf8.count {
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
        case 12: if equalsLower(name, "x-request-id") { return .requestID }
        case 13: if equalsLower(name, "authorization") { return .authorization }
        case 15:
            if equalsLower(name, "x-forwarded-for") { return .forwarding }
        case 16:
            if equalsLower(name, "x-forwarded-host") || equalsLower(name, "proxy-connection") { return name.utf8.first! | 0x20 == UInt8(ascii: "x") ? .forwarding : .hopByHop }
        case 17:
            if equalsLower(name, "x-forwarded-proto") { return .forwarding }
            if equalsLower(name, "transfer-encoding") { return .transferEncoding }
        case 18: if equalsLower(name, "proxy-authenticate") { return .hopByHop }
        case 19: if equalsLower(name, "proxy-authorization") { return .hopByHop }
        default: break
        }
        return .other
    }
}
