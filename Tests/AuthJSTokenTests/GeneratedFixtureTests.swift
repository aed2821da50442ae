import Testing
@testable import AuthJSToken
import VectorFixtures

/// fixtures/generated.json (fixtures/generate.py): every case with a token (stored or rebuilt from its recipe),
/// asserting the stable failure code exactly. Request-level cases run in SidecarCoreTests.
@Suite("Generated fixtures (token level)")
struct GeneratedFixtureTests {
    static let cases = Fixtures.generatedExists ? VectorCase.load(Fixtures.generatedPath) : []
    static let tokenCases = cases.filter(\.hasToken)

    @Test(.enabled(if: Fixtures.generatedExists, "fixtures/generated.json is absent (fixtures/generate.py not run)"))
    func loads() {
        #expect(Self.cases.count >= 100)
        #expect(Self.cases.allSatisfy { $0.hasExpectCode && $0.now != nil })
        for c in Self.cases {
            if let code = c.expectCode { #expect(allCodes.contains(code), "\(c.id): unknown code \(code)") }
            #expect(c.isValid == (c.expectCode == nil), "\(c.id)")
            #expect(c.hasToken || c.hasRequest, "\(c.id): neither token nor request")
        }
    }

    @Test("every token case gives exactly expect_code",
          .enabled(if: Fixtures.generatedExists, "fixtures/generated.json is absent (fixtures/generate.py not run)"),
          arguments: tokenCases)
    func tokenLevel(_ c: VectorCase) throws {
        let token = try #require(c.resolvedToken())
        let ring = try KeyRing(secrets: c.secrets, v5Salts: c.formats.contains(.authjsV5) ? [c.v5Salt] : [], formats: c.formats)
        let result = TokenVerifier(keys: ring).verify(token, scope: ring.everything, now: try #require(c.now))
        switch result {
        case .success(let v):
            #expect(c.expectCode == nil, "expected \(c.expectCode ?? "?"), but it verified")
            if let expected = c.expectedClaims {
                #expect(JSONValue.object(v.claims) == expected)
            } else if c.expectCode == nil {
                Issue.record("valid case without expected_claims")
            }
        case .failure(let f):
            #expect(f.code.rawValue == c.expectCode, "\(f)")
        }
    }
}
