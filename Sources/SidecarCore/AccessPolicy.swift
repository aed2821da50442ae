import AuthJSToken

/// What to do with one request, decided synchronously from its head.
public enum AccessDecision: Sendable {
    /// Forward, with the verified session's identity headers (`nil`: anonymous); `outcome` is `ok` (verified),
    /// `anonymous` or the failure code on a public/optional route.
    case forward(path: String, session: VerifiedTokenCache.Entry?, outcome: String)
    case unauthorized(VerificationFailure)
    case forbidden(ClaimRequirement)
    case badRequest(String)
}

/// The whole per-request policy after CORS and health: path normalisation → route rule → token → claims → headers.
/// Pure and built once from the validated config. A class: as a struct, each call through the server's shared context
/// copied it (a retain and release of every field, ~800 instructions per request).
public final class AccessPolicy: Sendable {
    public let routes: RoutePolicy
    public let authenticator: TokenAuthenticator
    public let identity: IdentityHeaderMapper

    public init(routes: RoutePolicy, authenticator: TokenAuthenticator, identity: IdentityHeaderMapper) {
        self.routes = routes
        self.authenticator = authenticator
        self.identity = identity
    }

    public convenience init(_ config: SidecarConfig) {
        self.init(routes: config.routes, authenticator: config.authenticator, identity: config.identity)
    }

    public func decide(method: String, target: String, cookie: String?, authorization: String?, now: Double) -> AccessDecision {
        var none = VerifiedTokenCache(capacity: 0)
        return decide(method: method, target: target, cookie: cookie, authorization: authorization, now: now, cache: &none)
    }

    public func decide(method: String, target: String, cookie: String?, authorization: String?, now: Double,
                       cache: inout VerifiedTokenCache) -> AccessDecision {
        guard var cookie else { return decide(method: method, target: target, cookie: nil as UnsafeRawBufferPointer?, authorization: authorization, now: now, cache: &cache) }
        return cookie.withUTF8 { decide(method: method, target: target, cookie: UnsafeRawBufferPointer($0), authorization: authorization, now: now, cache: &cache) }
    }

    /// The same with the `Cookie` value as the bytes that arrived (see ``TokenAuthenticator``).
    public func decide(method: String, target: String, cookie: UnsafeRawBufferPointer?, authorization: String?, now: Double,
                       cache: inout VerifiedTokenCache) -> AccessDecision {
        guard let (path, query) = PathNormalizer.normalize(target: target) else {
            return .badRequest("request target is not a normalisable origin-form path")
        }
        let rule = routes.rule(method: method, path: path)
        let forwardPath = query.map { path + "?" + $0 } ?? path
        let result = authenticator.authenticate(cookie: cookie, authorization: authorization, now: now, cache: &cache, identity: identity)
        switch result {
        case .success(let entry):
            for requirement in rule.requirements where !requirement.isMet(by: entry.token.claims) {
                return .forbidden(requirement)
            }
            return .forward(path: forwardPath, session: entry, outcome: "ok")
        case .failure(let failure):
            if rule.mode == .required { return .unauthorized(failure) }
            let outcome = failure.code == .missingToken ? "anonymous" : failure.code.rawValue
            return .forward(path: forwardPath, session: nil, outcome: outcome)
        }
    }
}
