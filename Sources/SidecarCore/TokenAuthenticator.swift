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

    /// As above, consulting and filling `cache`; the entry carries the identity headers `identity` makes.
    /// (Not optional: wrapping the caller's mapper in an `Optional` copied it per request — a retain and release of
    /// each of its fields.)
    public func authenticate(cookieHeader: String?, authorization: String?, now: Double, cache: inout VerifiedTokenCache,
                             identity: IdentityHeaderMapper) -> Result<VerifiedTokenCache.Entry, VerificationFailure> {
        guard var cookieHeader else {
            return authenticate(cookie: nil, authorization: authorization, now: now, cache: &cache, identity: identity)
        }
        return cookieHeader.withUTF8 {
            authenticate(cookie: UnsafeRawBufferPointer($0), authorization: authorization, now: now, cache: &cache, identity: identity)
        }
    }

    /// The same from the `Cookie` value's bytes as they arrived: a token that needs no decoding is looked up in
    /// `cache` by its bytes, so a repeated session makes no string of its cookie or its token.
    public func authenticate(cookie: UnsafeRawBufferPointer?, authorization: String?, now: Double, cache: inout VerifiedTokenCache,
                             identity: IdentityHeaderMapper) -> Result<VerifiedTokenCache.Entry, VerificationFailure> {
        var found: VerifiedTokenCache.Entry?
        var firstFailure: VerificationFailure?
        /// Tries one candidate; true when it settled the request.
        func attempt(_ token: String, scope: KeyScope) -> Bool {
            switch verifier.verify(token, scope: scope, now: now) {
            case .success(let verified):
                let (headers, dropped) = identity.headers(for: verified)
                found = cache.insert(token, scope: scope, verified: verified, headers: headers, dropped: dropped,
                                     leeway: verifier.options.clockTolerance, now: now)
                return true
            case .failure(let f):
                firstFailure = firstFailure ?? f
                return false
            }
        }
        if let cookie, cookie.count > 0 {
            let any = extractor.forEachCookieCandidate(cookie) { text, index in
                let scope = extractor.scope(ofCookie: index)
                switch text {
                case .bytes(let raw):
                    if let hit = cache.lookup(raw, scope: scope, now: now) { found = hit; return false }
                    return !attempt(String(decoding: raw, as: UTF8.self), scope: scope)
                case .decoded(let token):
                    if let hit = cache.lookup(token, scope: scope, now: now) { found = hit; return false }
                    return !attempt(token, scope: scope)
                }
            }
            if let found { return .success(found) }
            if any { return .failure(firstFailure!) }
        }
        // Only when no configured cookie has a value: the Bearer token.
        switch extractor.extract(cookieHeader: nil, authorization: authorization) {
        case .failure(let f): return .failure(f)
        case .success(let candidates):
            guard let candidate = candidates.first else {
                return .failure(VerificationFailure(.missingToken, "no session cookie and no Bearer token"))
            }
            if let hit = cache.lookup(candidate.value, scope: candidate.scope, now: now) { return .success(hit) }
            return attempt(candidate.value, scope: candidate.scope) ? .success(found!) : .failure(firstFailure!)
        }
    }
}
