import AuthJSToken

/// Extraction plus verification: the request-level answer to "who is this?", with no I/O and `now` passed in.
public struct TokenAuthenticator: Sendable {
    public let verifier: TokenVerifier
    public let extractor: SessionTokenExtractor

    /// Derives every key once: one v5 salt per distinct cookie salt, v4 and JWS as `formats` says.
    public init(secrets: [String], cookies: [SessionCookie], formats: Set<TokenFormat> = Set(TokenFormat.allCases),
                options: VerifierOptions = VerifierOptions()) throws(KeyRingError) {
        var salts: [String] = []
        for c in cookies where !salts.contains(c.salt) { salts.append(c.salt) }
        let ring = try KeyRing(secrets: secrets, v5Salts: formats.contains(.authjsV5) ? salts : [], formats: formats)
        self.verifier = TokenVerifier(keys: ring, options: options)
        self.extractor = SessionTokenExtractor(cookies: cookies, ring: ring)
    }

    /// Tries each candidate token in priority order; the first that verifies wins, else the first failure is reported.
    public func authenticate(cookieHeader: String?, authorization: String?, now: Double) -> Result<VerifiedToken, VerificationFailure> {
        var none = VerifiedTokenCache(capacity: 0)
        return authenticate(cookieHeader: cookieHeader, authorization: authorization, now: now, cache: &none, identity: Self.noIdentityHeaders)
            .map(\.token)
    }

    /// A mapper that makes no header, for callers that want only the token.
    static let noIdentityHeaders = IdentityHeaderMapper(mappings: [], claimsHeader: nil)

    /// As above, consulting and filling `cache`; the cached entry carries the identity headers `identity` makes.
    /// (Not optional: wrapping the caller's mapper in an `Optional` copied it per request — a retain and release of
    /// each of its fields.)
    public func authenticate(cookieHeader: String?, authorization: String?, now: Double, cache: inout VerifiedTokenCache,
                             identity: IdentityHeaderMapper) -> Result<VerifiedTokenCache.Entry, VerificationFailure> {
        let candidates: [ExtractedToken]
        switch extractor.extract(cookieHeader: cookieHeader, authorization: authorization) {
        case .failure(let f): return .failure(f)
        case .success(let c): candidates = c
        }
        guard !candidates.isEmpty else {
            return .failure(VerificationFailure(.missingToken, "no session cookie and no Bearer token"))
        }
        var firstFailure: VerificationFailure?
        for candidate in candidates {
            if let hit = cache.lookup(candidate.value, scope: candidate.scope, now: now) { return .success(hit) }
            switch verifier.verify(candidate.value, scope: candidate.scope, now: now) {
            case .success(let token):
                let (headers, dropped) = identity.headers(for: token)
                cache.insert(candidate.value, scope: candidate.scope, verified: token, headers: headers, dropped: dropped,
                             leeway: verifier.options.clockTolerance, now: now)
                return .success(VerifiedTokenCache.Entry(token: token, headers: headers, dropped: dropped, validUntil: now))
            case .failure(let f): firstFailure = firstFailure ?? f
            }
        }
        return .failure(firstFailure!)
    }
}
