import Foundation
import Testing
@testable import AuthJSToken
import VectorFixtures

/// Token-level verification of the shared vectors (fixtures/vectors: real @auth/core, next-auth v4 and jose output,
/// plus tokens captured from public deployments).
@Suite("Shared vectors (token level)")
struct VectorTests {
    static let real = VectorCase.load("fixtures/vectors/authjs-real.json")
    static let captured = VectorCase.load("fixtures/vectors/captured-nextauth.json")
    static let tokenCases = (real + captured).filter(\.hasToken)

    @Test("vector files load with the expected case counts")
    func counts() {
        #expect(Self.real.count == 18)
        #expect(Self.captured.count == 11)
        #expect(Self.tokenCases.count >= 24)
    }

    /// The stable code an informative `reason` implies, where it is unambiguous.
    static func expectedCode(_ c: VectorCase, token: String) -> VerificationCode? {
        let hasKid = protectedHeader(of: token)?["kid"] != nil
        switch c.reason {
        case "expired": return .expired
        case "wrong_secret", "wrong_salt":
            if c.mode == "authjs-v5" { return hasKid ? .noMatchingKey : .decryptionFailed }
            if c.mode == "nextauth-v4" { return .decryptionFailed }
            if c.mode == "jws" { return .badSignature }
            return nil
        case "bad_tag": return .decryptionFailed
        case "alg_none": return .unsupportedAlgorithm
        case "malformed": return .malformed
        default: return nil
        }
    }

    @Test("every token case verifies as expected", arguments: tokenCases)
    func tokenLevel(_ c: VectorCase) throws {
        let token = try #require(c.resolvedToken())
        let ring = try KeyRing(secrets: c.secrets, v5Salts: c.formats.contains(.authjsV5) ? [c.v5Salt] : [], formats: c.formats)
        let verifier = TokenVerifier(keys: ring)
        let result = verifier.verify(token, scope: ring.everything, now: c.now ?? currentTime())
        switch (c.isValid, result) {
        case (true, .success(let verified)):
            let expected = try #require(c.expectedClaims, "valid case without expected_claims")
            #expect(JSONValue.object(verified.claims) == expected)
            #expect(verified.format == c.formats.first)
            if c.formats.contains(.authjsV5) { #expect(verified.salt == c.v5Salt) } else { #expect(verified.salt == nil) }
            #expect(verified.secretIndex >= 0 && verified.secretIndex < c.secrets.count)
            // The payload bytes are what the issuer serialised and parse back to the same claims.
            #expect(JSONParser.parseObject(verified.payload).map { JSONValue.object($0) } == .success(expected))
        case (true, .failure(let f)):
            Issue.record("expected valid, got \(f)")
        case (false, .success(let v)):
            Issue.record("expected invalid (\(c.reason ?? "?")), but it verified: \(JSONValue.object(v.claims))")
        case (false, .failure(let f)):
            if let code = Self.expectedCode(c, token: token) {
                #expect(f.code == code, "reason \(c.reason ?? "?") → \(f)")
            }
            #expect(!f.reason.isEmpty)
        }
    }

    @Test("rotation vectors report the old secret's index")
    func rotationIndex() throws {
        for c in Self.tokenCases where c.secrets.count > 1 && c.isValid {
            let ring = try KeyRing(secrets: c.secrets, v5Salts: [c.v5Salt], formats: c.formats)
            let r = TokenVerifier(keys: ring).verify(try #require(c.resolvedToken()), now: c.now ?? currentTime())
            let v = try r.get()
            #expect(v.secretIndex == 1, "\(c.id): minted with the older secret")
        }
    }

    @Test("a vector's token never verifies under another vector's secret set")
    func crossSecrets() throws {
        let valid = Self.tokenCases.filter(\.isValid)
        for a in valid {
            let token = try #require(a.resolvedToken())
            for b in valid where Set(b.secrets).isDisjoint(with: a.secrets) {
                let ring = try KeyRing(secrets: b.secrets, v5Salts: ["authjs.session-token", "__Secure-authjs.session-token"])
                if case .success = TokenVerifier(keys: ring).verify(token, now: a.now ?? currentTime()) {
                    Issue.record("\(a.id) verified under \(b.id)'s secrets")
                }
            }
        }
    }
}
