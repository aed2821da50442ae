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

    init(_ claims: JSONObject) {
        issuer = claims["iss"]?.stringValue
        subject = claims["sub"]?.stringValue
        switch claims["aud"] {
        case .string(let s)?: audience = [s]
        case .array(let items)?: audience = items.compactMap(\.stringValue)
        default: audience = []
        }
        expiresAt = claims["exp"]?.doubleValue
        notBefore = claims["nbf"]?.doubleValue
        issuedAt = claims["iat"]?.doubleValue
        jwtID = claims["jti"]?.stringValue
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
        self.claims = claims
        self.registered = RegisteredClaims(claims)
        self.payload = payload
        self.format = format
        self.secretIndex = secretIndex
        self.salt = salt
    }
}
