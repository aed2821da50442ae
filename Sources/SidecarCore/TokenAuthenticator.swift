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
            switch verifier.verify(candidate.value, scope: candidate.scope, now: now) {
            case .success(let token): return .success(token)
            case .failure(let f): firstFailure = firstFailure ?? f
            }
        }
        return .failure(firstFailure!)
    }
}
