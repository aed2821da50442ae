/// The registered JWT claims (RFC 7519 §4.1), typed. Absent or wrongly-typed optional strings are nil.
public struct RegisteredClaims: Sendable, Equatable {
    public var issuer: String?
    public var subject: String?
    /// `aud` as a list whether the token carried a string or an array of strings.
    public var audience: [String]
    public var expiresAt: Double?
    public var notBefore: Double?
    public var issuedAt: Double?
    public var jwtID: String?

    init(_ claims: JSONObject) { self = Self.read(claims).claims }

    private init() { audience = [] }

    /// What one pass over a claims object finds: the registered claims, and the first of `exp`, `nbf`, `iat` (in that
    /// order) that is present but not a number, which verification refuses.
    struct Reading {
        var claims = RegisteredClaims()
        var nonNumericTime: String?
    }

    /// Reads the registered claims in one pass, each name's first member as a lookup would take it. Registered names
    /// are three bytes long, so other members are passed over by their length: seven linear lookups with string
    /// comparisons, and again in the claim checks, cost ~4.5 k instructions per token.
    static func read(_ object: JSONObject) -> Reading {
        var out = Reading()
        var seen: UInt8 = 0
        var nonNumeric: UInt8 = 0    // bits: exp, nbf, iat
        for member in object.members {
            guard let name = Name(member.key) else { continue }
            let bit: UInt8 = 1 << name.rawValue
            if seen & bit != 0 { continue }
            seen |= bit
            let value = member.value
            switch name {
            case .iss: out.claims.issuer = value.stringValue
            case .sub: out.claims.subject = value.stringValue
            case .aud:
                switch value {
                case .string(let s): out.claims.audience = [s]
                case .array(let items): out.claims.audience = items.compactMap(\.stringValue)
                default: break
                }
            case .exp: out.claims.expiresAt = value.doubleValue; if value.doubleValue == nil { nonNumeric |= 1 }
            case .nbf: out.claims.notBefore = value.doubleValue; if value.doubleValue == nil { nonNumeric |= 2 }
            case .iat: out.claims.issuedAt = value.doubleValue; if value.doubleValue == nil { nonNumeric |= 4 }
            case .jti: out.claims.jwtID = value.stringValue
            }
        }
        out.nonNumericTime = nonNumeric & 1 != 0 ? "exp" : nonNumeric & 2 != 0 ? "nbf" : nonNumeric & 4 != 0 ? "iat" : nil
        return out
    }

    private enum Name: UInt8 {
        case iss, sub, aud, exp, nbf, iat, jti

        init?(_ key: String) {
            guard key.utf8.count == 3 else { return nil }
            var key = key    // a copy, for `withUTF8` (claim names are small strings: no allocation)
            let (a, b, c) = key.withUTF8 { ($0[0], $0[1], $0[2]) }
            switch (a, b, c) {
            case (0x69, 0x73, 0x73): self = .iss    // "iss"
            case (0x73, 0x75, 0x62): self = .sub    // "sub"
            case (0x61, 0x75, 0x64): self = .aud    // "aud"
            case (0x65, 0x78, 0x70): self = .exp    // "exp"
            case (0x6E, 0x62, 0x66): self = .nbf    // "nbf"
            case (0x69, 0x61, 0x74): self = .iat    // "iat"
            case (0x6A, 0x74, 0x69): self = .jti    // "jti"
            default: return nil
            }
        }
    }
}

/// A token that passed every check: its claims, and which key opened it.
public struct VerifiedToken: Sendable {
    public let claims: JSONObject
    public let registered: RegisteredClaims
    /// The verified plaintext exactly as the issuer serialised it (what `X-Auth-Claims` carries, re-encoded).
    public let payload: [UInt8]
    public let format: TokenFormat
    /// Index into the configured secrets (0 = newest).
    public let secretIndex: Int
    /// The v5 HKDF salt that opened it; nil for v4 and JWS.
    public let salt: String?

    public init(claims: JSONObject, payload: [UInt8], format: TokenFormat, secretIndex: Int, salt: String?) {
        self.init(claims: claims, registered: RegisteredClaims(claims), payload: payload, format: format, secretIndex: secretIndex, salt: salt)
    }

    /// With the registered claims verification has already read.
    init(claims: JSONObject, registered: RegisteredClaims, payload: [UInt8], format: TokenFormat, secretIndex: Int, salt: String?) {
        self.claims = claims
        self.registered = registered
        self.payload = payload
        self.format = format
        self.secretIndex = secretIndex
        self.salt = salt
    }
}
