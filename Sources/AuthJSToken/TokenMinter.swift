/// Makes tokens the way Auth.js `encode()`, NextAuth v4 `encode()` and jose `SignJWT` do, for tests and for upstream
/// teams who need a session without a running Next.js app.
public enum TokenMinter {
    /// Auth.js's default session lifetime: 30 days.
    public static let defaultMaxAge: Int64 = 30 * 24 * 60 * 60

    public enum Encryption: String, Sendable, CaseIterable { case a256cbcHS512 = "A256CBC-HS512", a256gcm = "A256GCM" }

    /// Sets `iat` = now, `exp` = now + maxAge and a random UUID `jti`, overwriting any present, as `encode()` does.
    public static func stampClaims(_ claims: JSONObject, now: Int64, maxAge: Int64 = defaultMaxAge) -> JSONObject {
        var c = claims
        c["iat"] = .integer(now)
        c["exp"] = .integer(now + maxAge)
        c["jti"] = .string(randomUUID())
        return c
    }

    /// An Auth.js v5 session token: dir + A256CBC-HS512 (or A256GCM) with the thumbprint `kid`.
    public static func authjsV5(claims: JSONObject, secret: String, salt: String, encryption: Encryption = .a256cbcHS512,
                                includeKid: Bool = true) throws(KeyRingError) -> String {
        let ring = try KeyRing(secrets: [secret], v5Salts: [salt], formats: [.authjsV5])
        let key = ring.v5Key(saltIndex: 0, encryption: encryption == .a256cbcHS512 ? .a256cbcHS512 : .a256gcm)
        var header = JSONObject([("alg", .string("dir")), ("enc", .string(encryption.rawValue))])
        if includeKid { header["kid"] = .string(key.kid) }
        return seal(header: header, key: key.bytes, encryption: encryption, plaintext: JSONValue.object(claims).serialized())
    }

    /// A NextAuth v4 session token: dir + A256GCM, key from HKDF with an empty salt.
    public static func nextauthV4(claims: JSONObject, secret: String) throws(KeyRingError) -> String {
        let ring = try KeyRing(secrets: [secret], v5Salts: [], formats: [.nextauthV4])
        let header = JSONObject([("alg", .string("dir")), ("enc", .string("A256GCM"))])
        return seal(header: header, key: ring.v4GCM[0].bytes, encryption: .a256gcm, plaintext: JSONValue.object(claims).serialized())
    }

    /// A JWS signed with the raw secret (HS256 by default).
    public static func jws(claims: JSONObject, secret: String, hash: Crypto.Hash = .sha256) -> String {
        let alg = "HS\(hash.rawValue)"
        let header = JSONValue.object(JSONObject([("alg", .string(alg)), ("typ", .string("JWT"))]))
        let signingInput = Base64URL.encode(header.serialized()) + "." + Base64URL.encode(JSONValue.object(claims).serialized())
        let mac = Crypto.hmac(hash, key: Array(secret.utf8), Array(signingInput.utf8)) ?? []
        return signingInput + "." + Base64URL.encode(mac)
    }

    static func seal(header: JSONObject, key: [UInt8], encryption: Encryption, plaintext: [UInt8]) -> String {
        let protected = Base64URL.encode(JSONValue.object(header).serialized())
        let aad = Array(protected.utf8)
        switch encryption {
        case .a256cbcHS512:
            let iv = Crypto.randomBytes(16)
            let sealed = ContentCipher.sealCBCHS512(key: key, aad: aad, iv: iv, plaintext: plaintext)!
            return "\(protected)..\(Base64URL.encode(iv)).\(Base64URL.encode(sealed.ciphertext)).\(Base64URL.encode(sealed.tag))"
        case .a256gcm:
            let iv = Crypto.randomBytes(12)
            let sealed = Crypto.aesGCMEncrypt(key: key, iv: iv, aad: aad, plaintext)!
            return "\(protected)..\(Base64URL.encode(iv)).\(Base64URL.encode(sealed.ciphertext)).\(Base64URL.encode(sealed.tag))"
        }
    }

    /// A random RFC 4122 version-4 UUID in lower case, like `crypto.randomUUID()`.
    public static func randomUUID() -> String {
        var b = Crypto.randomBytes(16)
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        let hex = b.map { String($0, radix: 16).leftPad(2) }
        return hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-" + hex[8..<10].joined() + "-" + hex[10..<16].joined()
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
