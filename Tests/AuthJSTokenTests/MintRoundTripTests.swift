import Testing
@testable import AuthJSToken
import VectorFixtures

@Suite("Mint → verify round trips")
struct MintRoundTripTests {
    static let now: Int64 = 1_800_000_000
    static let claims = JSONObject([
        ("name", .string("Ada Lovelace")), ("email", .string("ada@example.com")), ("picture", .null), ("sub", .string("user-1")),
        ("roles", .array([.string("admin"), .string("reader")])), ("org", .object(JSONObject([("id", .integer(7))]))),
    ])
    static let salt = "authjs.session-token"
    static let secureSalt = "__Secure-authjs.session-token"

    static func stamped() -> JSONObject { TokenMinter.stampClaims(claims, now: now) }

    @Test("stampClaims sets iat, exp = iat + maxAge and a v4 UUID jti, overwriting existing values")
    func stamp() throws {
        var input = Self.claims
        input["iat"] = .integer(1); input["exp"] = .string("x"); input["jti"] = .integer(3)
        let c = TokenMinter.stampClaims(input, now: 1000, maxAge: 60)
        #expect(c["iat"] == .integer(1000))
        #expect(c["exp"] == .integer(1060))
        let jti = try #require(c["jti"]?.stringValue)
        let parts = jti.split(separator: "-").map(\.count)
        #expect(parts == [8, 4, 4, 4, 12])
        #expect(jti == jti.lowercased())
        #expect(Array(jti.utf8)[14] == UInt8(ascii: "4"))
        #expect("89ab".utf8.contains(Array(jti.utf8)[19]))
        #expect(c["sub"] == .string("user-1"))
        #expect(TokenMinter.stampClaims(input, now: 1000)["exp"] == .integer(1000 + 2_592_000))
        #expect(TokenMinter.stampClaims(input, now: 1000)["jti"] != c["jti"])
        // Member count: the 6 claims plus iat/exp/jti exactly once each.
        #expect(c.count == 9)
    }

    @Test("Auth.js v5 round trip", arguments: TokenMinter.Encryption.allCases, [true, false])
    func v5(_ enc: TokenMinter.Encryption, _ kid: Bool) throws {
        let claims = Self.stamped()
        let token = try TokenMinter.authjsV5(claims: claims, secret: "s3cret", salt: Self.salt, encryption: enc, includeKid: kid)
        let header = try #require(protectedHeader(of: token))
        #expect(header["alg"] == .string("dir"))
        #expect(header["enc"] == .string(enc.rawValue))
        #expect((header["kid"] != nil) == kid)
        if kid { #expect(header["kid"]?.stringValue?.utf8.count == (enc == .a256cbcHS512 ? 86 : 43)) }
        if enc == .a256cbcHS512 && kid {
            #expect(token.hasPrefix("eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoi"))
        }
        #expect(token.split(separator: ".", omittingEmptySubsequences: false).map(\.count)[1] == 0)

        let ring = try KeyRing(secrets: ["s3cret"], v5Salts: [Self.salt], formats: [.authjsV5])
        let v = try TokenVerifier(keys: ring).verify(token, now: Double(Self.now)).get()
        #expect(v.claims == claims)
        #expect(v.format == .authjsV5)
        #expect(v.secretIndex == 0)
        #expect(v.salt == Self.salt)
        #expect(v.registered.subject == "user-1")
        #expect(v.registered.expiresAt == Double(Self.now + TokenMinter.defaultMaxAge))
        #expect(v.payload == JSONValue.object(claims).serialized())

        // Expiry boundary with the 15 s tolerance: exp <= now - 15 is expired.
        let exp = Double(Self.now + TokenMinter.defaultMaxAge)
        #expect((try? TokenVerifier(keys: ring).verify(token, now: exp + 14.999).get()) != nil)
        #expect(code(TokenVerifier(keys: ring).verify(token, now: exp + 15)) == .expired)
    }

    @Test("rotation: a token minted with the old secret verifies against [new, old] with secretIndex 1",
          arguments: TokenMinter.Encryption.allCases, [true, false])
    func v5Rotation(_ enc: TokenMinter.Encryption, _ kid: Bool) throws {
        let token = try TokenMinter.authjsV5(claims: Self.stamped(), secret: "old-secret", salt: Self.salt, encryption: enc, includeKid: kid)
        let ring = try KeyRing(secrets: ["new-secret", "old-secret"], v5Salts: [Self.secureSalt, Self.salt])
        let v = try TokenVerifier(keys: ring).verify(token, now: Double(Self.now)).get()
        #expect(v.secretIndex == 1)
        #expect(v.salt == Self.salt)
        // Rotated out: only the new secret configured.
        let rotated = try KeyRing(secrets: ["new-secret"], v5Salts: [Self.salt])
        #expect(code(TokenVerifier(keys: rotated).verify(token, now: Double(Self.now))) == (kid ? .noMatchingKey : .decryptionFailed))
    }

    @Test("salt A token under salt B: no_matching_key with a kid, decryption_failed without")
    func wrongSalt() throws {
        for enc in TokenMinter.Encryption.allCases {
            let withKid = try TokenMinter.authjsV5(claims: Self.stamped(), secret: "s", salt: "salt-A", encryption: enc)
            let noKid = try TokenMinter.authjsV5(claims: Self.stamped(), secret: "s", salt: "salt-A", encryption: enc, includeKid: false)
            let ringB = try KeyRing(secrets: ["s"], v5Salts: ["salt-B"], formats: [.authjsV5])
            #expect(code(TokenVerifier(keys: ringB).verify(withKid, now: Double(Self.now))) == .noMatchingKey)
            #expect(code(TokenVerifier(keys: ringB).verify(noKid, now: Double(Self.now))) == .decryptionFailed)
            // Both salts configured, but the scope only allows salt B (a token from B's cookie).
            let ringAB = try KeyRing(secrets: ["s"], v5Salts: ["salt-A", "salt-B"], formats: [.authjsV5])
            let scopeB = KeyScope.v5(saltIndex: 1)
            #expect(code(TokenVerifier(keys: ringAB).verify(withKid, scope: scopeB, now: Double(Self.now))) == .noMatchingKey)
            #expect(code(TokenVerifier(keys: ringAB).verify(noKid, scope: scopeB, now: Double(Self.now))) == .decryptionFailed)
            let v = try TokenVerifier(keys: ringAB).verify(withKid, scope: KeyScope.v5(saltIndex: 0), now: Double(Self.now)).get()
            #expect(v.salt == "salt-A")
        }
    }

    @Test("NextAuth v4 round trip and rotation")
    func v4() throws {
        let claims = Self.stamped()
        let token = try TokenMinter.nextauthV4(claims: claims, secret: "v4-secret")
        #expect(token.hasPrefix("eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0.."))
        let ring = try KeyRing(secrets: ["v4-secret"], v5Salts: [], formats: [.nextauthV4])
        let v = try TokenVerifier(keys: ring).verify(token, now: Double(Self.now)).get()
        #expect(v.claims == claims && v.format == .nextauthV4 && v.salt == nil && v.secretIndex == 0)
        let rotated = try KeyRing(secrets: ["newer", "v4-secret"], v5Salts: [], formats: [.nextauthV4])
        #expect(try TokenVerifier(keys: rotated).verify(token, now: Double(Self.now)).get().secretIndex == 1)
        // A v5-only ring never opens a v4 token, and a v4 token is not accepted from a v5-only scope.
        let v5Only = try KeyRing(secrets: ["v4-secret"], v5Salts: [Self.salt], formats: [.authjsV5])
        #expect(code(TokenVerifier(keys: v5Only).verify(token, now: Double(Self.now))) == .decryptionFailed)
        let all = try KeyRing(secrets: ["v4-secret"], v5Salts: [Self.salt])
        #expect(code(TokenVerifier(keys: all).verify(token, scope: .v5(saltIndex: 0), now: Double(Self.now))) == .decryptionFailed)
        #expect(try TokenVerifier(keys: all).verify(token, now: Double(Self.now)).get().format == .nextauthV4)
    }

    @Test("JWS round trip", arguments: [Crypto.Hash.sha256, .sha384, .sha512])
    func jws(_ hash: Crypto.Hash) throws {
        let claims = Self.stamped()
        let token = TokenMinter.jws(claims: claims, secret: "jws-secret", hash: hash)
        #expect(protectedHeader(of: token)?["alg"] == .string("HS\(hash.rawValue)"))
        let ring = try KeyRing(secrets: ["jws-secret"], v5Salts: [], formats: [.jws])
        let v = try TokenVerifier(keys: ring).verify(token, now: Double(Self.now)).get()
        #expect(v.claims == claims && v.format == .jws && v.salt == nil && v.secretIndex == 0)
        let rotated = try KeyRing(secrets: ["newer", "jws-secret"], v5Salts: [], formats: [.jws])
        #expect(try TokenVerifier(keys: rotated).verify(token, now: Double(Self.now)).get().secretIndex == 1)
        let wrong = try KeyRing(secrets: ["other"], v5Salts: [], formats: [.jws])
        #expect(code(TokenVerifier(keys: wrong).verify(token, now: Double(Self.now))) == .badSignature)
        // A JWE-only ring refuses JWS outright.
        let jweOnly = try KeyRing(secrets: ["jws-secret"], v5Salts: [Self.salt], formats: [.authjsV5, .nextauthV4])
        #expect(code(TokenVerifier(keys: jweOnly).verify(token, now: Double(Self.now))) == .unsupportedAlgorithm)
    }

    @Test("KeyRing configuration errors")
    func keyRingErrors() {
        #expect(throws: KeyRingError.self) { try KeyRing(secrets: [], v5Salts: ["a"]) }
        #expect(throws: KeyRingError.self) { try KeyRing(secrets: ["a", ""], v5Salts: ["a"]) }
        #expect(throws: KeyRingError.self) { try KeyRing(secrets: ["a"], v5Salts: [], formats: [.authjsV5]) }
        #expect(throws: KeyRingError.self) { try KeyRing(secrets: ["a"], v5Salts: (0...64).map { "s\($0)" }) }
        #expect(throws: KeyRingError.self) { try KeyRing(secrets: ["a"], v5Salts: [String(repeating: "x", count: 1000)]) }
        #expect(throws: Never.self) { try KeyRing(secrets: ["a"], v5Salts: (0..<64).map { "s\($0)" }) }
    }

    @Test("64 salts: the last salt's bit is usable and everything covers all 64")
    func sixtyFourSalts() throws {
        let salts = (0..<64).map { "cookie-\($0)" }
        let ring = try KeyRing(secrets: ["s"], v5Salts: salts, formats: [.authjsV5])
        #expect(ring.everything.v5Salts == ~0)
        let token = try TokenMinter.authjsV5(claims: Self.stamped(), secret: "s", salt: "cookie-63", includeKid: false)
        let v = try TokenVerifier(keys: ring).verify(token, now: Double(Self.now)).get()
        #expect(v.salt == "cookie-63")
        #expect(try TokenVerifier(keys: ring).verify(token, scope: .v5(saltIndex: 63), now: Double(Self.now)).get().salt == "cookie-63")
        #expect(code(TokenVerifier(keys: ring).verify(token, scope: .v5(saltIndex: 62), now: Double(Self.now))) == .decryptionFailed)
    }
}

func code(_ r: Result<VerifiedToken, VerificationFailure>) -> VerificationCode? {
    if case .failure(let f) = r { return f.code }
    return nil
}
