import AuthJSToken

/// Extraction plus verification: the request-level answer to "who is this?", with no I/O and `now` passed in.
/// A class: as a struct it was copied into the closures that walk a request's cookie (a retain and release of each of
/// its fields, several times per request).
public final class TokenAuthenticator: Sendable {
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
        if let cookie, cookie.count > 0 {
            // The cookies' tokens in priority order up to the first one the cache knows; those before it need
            // verifying, in order (the first that verifies wins over the remembered one). The closure only looks up:
            // what it captures is copied per request, and verifying needs much more.
            var remembered: VerifiedTokenCache.Entry?
            var unknown: [(String, KeyScope)] = []
            let any = extractor.forEachCookieCandidate(cookie) { text, _, scope in
                switch text {
                case .bytes(let raw):
                    if let hit = cache.lookup(raw, scope: scope, now: now) { remembered = hit; return false }
                    unknown.append((String(decoding: raw, as: UTF8.self), scope))
                case .decoded(let token):
                    if let hit = cache.lookup(token, scope: scope, now: now) { remembered = hit; return false }
                    unknown.append((token, scope))
                }
                return true
            }
            var firstFailure: VerificationFailure?
            for (token, scope) in unknown {
                switch verify(token, scope: scope, now: now, cache: &cache, identity: identity) {
                case .success(let entry): return .success(entry)
                case .failure(let f): firstFailure = firstFailure ?? f
                }
            }
            if let remembered { return .success(remembered) }
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
            return verify(candidate.value, scope: candidate.scope, now: now, cache: &cache, identity: identity)
        }
    }

    /// Verifies one candidate; a success is remembered in `cache` with the identity headers made from it.
    private func verify(_ token: String, scope: KeyScope, now: Double, cache: inout VerifiedTokenCache,
                        identity: IdentityHeaderMapper) -> Result<VerifiedTokenCache.Entry, VerificationFailure> {
        switch verifier.verify(token, scope: scope, now: now) {
        case .success(let verified):
            let (headers, dropped) = identity.headers(for: verified)
            return .success(cache.insert(token, scope: scope, verified: verified, headers: headers, dropped: dropped,
                                         leeway: verifier.options.clockTolerance, now: now))
        case .failure(let f):
            return .failure(f)
        }
    }
}
