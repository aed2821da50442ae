import AuthJSToken
import SidecarCore
import Testing
import VectorFixtures

/// Request-level cases (`request` present) through TokenAuthenticator, as the sidecar runs them.
@Suite("Request-level vectors")
struct RequestVectorTests {
    static let vectorCases = (VectorCase.load("fixtures/vectors/authjs-real.json")
        + VectorCase.load("fixtures/vectors/captured-nextauth.json"))
    static let vectorRequests = vectorCases.filter(\.hasRequest)
    static let vectorChunked = vectorCases.filter { !$0.cookies.isEmpty }
    static let generated = Fixtures.generatedExists ? VectorCase.load(Fixtures.generatedPath) : []
    static let generatedRequests = generated.filter(\.hasRequest)

    static func authenticator(_ c: VectorCase) throws -> TokenAuthenticator {
        let isV4 = c.mode == "nextauth-v4"
        let name = c.cookieName ?? (isV4 ? "next-auth.session-token" : "authjs.session-token")
        let salt = (c.salt?.isEmpty ?? true) ? nil : c.salt
        return try TokenAuthenticator(secrets: c.secrets, cookies: [SessionCookie(name: name, salt: salt, acceptsV4: isV4)], formats: c.formats)
    }

    static func check(_ c: VectorCase, _ r: Result<VerifiedToken, VerificationFailure>, expectedCode: String?) {
        switch r {
        case .success(let v):
            if c.isValid {
                if let expected = c.expectedClaims { #expect(JSONValue.object(v.claims) == expected) }
                else { Issue.record("valid case without expected_claims") }
            } else {
                Issue.record("expected \(expectedCode ?? c.reason ?? "invalid"), but it verified")
            }
        case .failure(let f):
            #expect(!c.isValid, "expected valid, got \(f)")
            if let expectedCode { #expect(f.code.rawValue == expectedCode, "\(f)") }
        }
    }

    @Test("vector request cases exist")
    func counts() {
        #expect(Self.vectorRequests.count == 7)
    }

    @Test("shared vectors with a request", arguments: vectorRequests)
    func vectorRequest(_ c: VectorCase) throws {
        let a = try Self.authenticator(c)
        let r = a.authenticate(cookieHeader: c.cookieHeader, authorization: c.authorization, now: c.now ?? currentTime())
        Self.check(c, r, expectedCode: c.reason == "malformed" ? "malformed" : (c.reason == "expired" ? "expired" : nil))
    }

    @Test("shared vectors' chunk cookies, as Auth.js set them, reassemble to the token", arguments: vectorChunked)
    func vectorCookies(_ c: VectorCase) throws {
        let a = try Self.authenticator(c)
        let header = c.cookies.map { "\($0.name)=\($0.value)" }.joined(separator: "; ")
        let reversed = c.cookies.reversed().map { "\($0.name)=\($0.value)" }.joined(separator: "; ")
        for h in [header, reversed, "theme=dark; " + reversed + "; other=1"] {
            let extracted = try a.extractor.extract(cookieHeader: h, authorization: nil).get()
            if let token = c.token { #expect(extracted.first?.value == token) }
            Self.check(c, a.authenticate(cookieHeader: h, authorization: nil, now: c.now ?? currentTime()), expectedCode: nil)
        }
    }

    @Test("valid vector tokens as a cookie and as a Bearer token",
          arguments: vectorCases.filter { $0.isValid && $0.token != nil })
    func vectorTokenAsRequest(_ c: VectorCase) throws {
        let a = try Self.authenticator(c)
        let token = try #require(c.token)
        let name = a.extractor.cookies[0].name
        let now = c.now ?? currentTime()
        Self.check(c, a.authenticate(cookieHeader: "\(name)=\(token)", authorization: nil, now: now), expectedCode: nil)
        Self.check(c, a.authenticate(cookieHeader: nil, authorization: "Bearer \(token)", now: now), expectedCode: nil)
        // Under the wrong cookie name: not found at all.
        if case .failure(let f) = a.authenticate(cookieHeader: "\(name)-legacy=\(token)", authorization: nil, now: now) {
            #expect(f.code == .missingToken)
        } else { Issue.record("found under name-legacy") }
    }

    @Test("generated request cases give exactly expect_code",
          .enabled(if: Fixtures.generatedExists, "fixtures/generated.json is absent (fixtures/generate.py not run)"),
          arguments: generatedRequests)
    func generatedRequest(_ c: VectorCase) throws {
        #expect(c.hasExpectCode)
        let a = try Self.authenticator(c)
        let r = a.authenticate(cookieHeader: c.cookieHeader, authorization: c.authorization, now: try #require(c.now))
        Self.check(c, r, expectedCode: c.expectCode)
        if case .success = r { #expect(c.expectCode == nil) }
    }

    @Test("generated token cases also hold as a cookie through TokenAuthenticator",
          .enabled(if: Fixtures.generatedExists, "fixtures/generated.json is absent (fixtures/generate.py not run)"),
          arguments: generated.filter { $0.token != nil })
    func generatedTokenAsCookie(_ c: VectorCase) throws {
        let a = try Self.authenticator(c)
        let token = try #require(c.token)
        // Only tokens a cookie carries unchanged (no %, quotes, separators or whitespace to decode or trim).
        let plain = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/=".utf8)
        guard !token.isEmpty, token.utf8.allSatisfy(plain.contains) else { return }
        let r = a.authenticate(cookieHeader: "\(a.extractor.cookies[0].name)=\(token)", authorization: nil, now: try #require(c.now))
        Self.check(c, r, expectedCode: c.expectCode)
    }

    @Test("missing_token when nothing is sent")
    func missing() throws {
        let a = try TokenAuthenticator(secrets: ["s"], cookies: SessionCookie.defaults)
        for (cookie, auth) in [(nil, nil), ("", nil), ("a=b", nil), (nil, "Basic x"), ("authjs.session-token=", "bearer x")] as [(String?, String?)] {
            if case .failure(let f) = a.authenticate(cookieHeader: cookie, authorization: auth, now: 0) {
                #expect(f.code == .missingToken)
            } else { Issue.record("verified nothing") }
        }
    }

    @Test("first valid candidate wins; otherwise the first failure is reported")
    func candidatesOrder() throws {
        let now: Int64 = 1_800_000_000
        let claims = TokenMinter.stampClaims(JSONObject([("sub", .string("u"))]), now: now)
        let v5 = try TokenMinter.authjsV5(claims: claims, secret: "s", salt: "authjs.session-token")
        let v4 = try TokenMinter.nextauthV4(claims: claims, secret: "s")
        let a = try TokenAuthenticator(secrets: ["s"], cookies: SessionCookie.defaults)
        // The v5 cookie holds garbage, the v4 cookie a good token: the v4 one wins.
        let ok = try a.authenticate(cookieHeader: "authjs.session-token=garbage; next-auth.session-token=\(v4)", authorization: nil, now: Double(now)).get()
        #expect(ok.format == .nextauthV4)
        // Both bad: the first configured cookie's failure.
        if case .failure(let f) = a.authenticate(cookieHeader: "next-auth.session-token=x.y; authjs.session-token=\(v5)x", authorization: nil, now: Double(now)) {
            #expect(f.code == .malformed || f.code == .decryptionFailed)
            #expect(f.code != .missingToken)
        } else { Issue.record("verified") }
        // A v5 token in the v4 cookie: that cookie's scope has no v5 salt of its own... but defaults give each cookie its
        // own salt, so a v5 token minted for authjs.session-token fails under next-auth.session-token.
        if case .failure(let f) = a.authenticate(cookieHeader: "next-auth.session-token=\(v5)", authorization: nil, now: Double(now)) {
            #expect(f.code == .noMatchingKey)
        } else { Issue.record("v5 token accepted from the wrong cookie") }
        // A v4 token in a v5-only cookie is refused.
        if case .failure(let f) = a.authenticate(cookieHeader: "authjs.session-token=\(v4)", authorization: nil, now: Double(now)) {
            #expect(f.code == .decryptionFailed)
        } else { Issue.record("v4 token accepted from the v5 cookie") }
        // Bearer: any configured salt, v4 too.
        #expect(try a.authenticate(cookieHeader: nil, authorization: "Bearer \(v5)", now: Double(now)).get().salt == "authjs.session-token")
        #expect(try a.authenticate(cookieHeader: nil, authorization: "Bearer \(v4)", now: Double(now)).get().format == .nextauthV4)
    }
}
