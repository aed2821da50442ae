import Testing
@testable import SidecarCore
import VectorFixtures

@Suite("CORS policy")
struct CORSPolicyTests {
    static func policy(_ config: CORSConfig) -> CORSPolicy {
        switch CORSPolicy.validating(config) {
        case .success(let p): return p
        case .failure(let e): fatalError("config refused: \(e.issues)")
        }
    }

    static let origins = ["https://app.example.com", "https://*.example.com", "http://localhost:3000", "https://*.example.net:8443"]
    static let standard = policy(CORSConfig(origins: origins))

    static func preflight(_ p: CORSPolicy = standard, origin: String?, method: String = "PUT", headers: String? = nil,
                          pna: Bool = false) -> CORSDecision {
        p.evaluate(method: "OPTIONS", origin: origin, requestMethod: method, requestHeaders: headers, requestPrivateNetwork: pna)
    }

    static func actual(_ p: CORSPolicy = standard, method: String = "GET", origin: String?) -> CORSDecision {
        p.evaluate(method: method, origin: origin, requestMethod: nil, requestHeaders: nil, requestPrivateNetwork: false)
    }

    static func header(_ name: String, in decision: CORSDecision) -> String? {
        switch decision {
        case .preflight(let h), .actual(let h): return h.first { $0.0 == name }?.1
        default: return nil
        }
    }

    static func isReject(_ d: CORSDecision) -> Bool {
        if case .rejectPreflight = d { return true }
        return false
    }

    // MARK: Origin matching

    @Test("origin matching", arguments: [
        ("https://app.example.com", true),
        ("https://a.example.com", true),                 // one label under the wildcard
        ("https://xn--bcher-kva.example.com", true),     // punycode label
        ("http://localhost:3000", true),
        ("https://a.example.net:8443", true),            // pattern with its port
        // The tricky ones.
        ("https://example.com", false),                  // zero labels
        ("https://.example.com", false),                 // empty label
        ("https://a.b.example.com", false),              // two labels
        ("http://a.example.com", false),                 // scheme differs
        ("https://a.example.com:8443", false),           // port the pattern does not have
        ("https://a.example.com:443", false),            // browsers never send a default port
        ("https://evil-example.com", false),
        ("https://a.example.com.evil.com", false),
        ("https://evilexample.com", false),
        ("https://a.example.comx", false),
        ("https://user@a.example.com", false),
        ("https://a.example.com/", false),
        ("https://a.example.net", false),                // pattern needs :8443
        ("https://a.example.net:8444", false),
        ("http://localhost:3001", false),
        ("http://localhost", false),
        ("https://App.Example.com", false),              // not a browser serialisation: case-sensitive
        ("https://A.example.com", false),
        ("HTTPS://app.example.com", false),
        ("null", false),                                 // only when listed
        ("", false),
        ("https://app.example.com, https://evil.com", false),
    ])
    func originMatching(origin: String, allowed: Bool) {
        let d = Self.actual(origin: origin)
        if allowed {
            #expect(Self.header("Access-Control-Allow-Origin", in: d) == origin)
        } else {
            #expect(d == .disallowedOrigin)
            #expect(Self.isReject(Self.preflight(origin: origin)))
        }
    }

    @Test func nullOnlyWhenListed() {
        let p = Self.policy(CORSConfig(origins: ["null"]))
        #expect(Self.header("Access-Control-Allow-Origin", in: Self.actual(p, origin: "null")) == "null")
        #expect(Self.actual(p, origin: "https://app.example.com") == .disallowedOrigin)
    }

    @Test func configuredOriginsAreNormalised() {
        let p = Self.policy(CORSConfig(origins: ["HTTPS://App.Example.COM:443", "http://Local.Test:80", "http://[::1]:3000"]))
        #expect(p.exactOrigins == ["https://app.example.com", "http://local.test", "http://[::1]:3000"])
        #expect(Self.header("Access-Control-Allow-Origin", in: Self.actual(p, origin: "https://app.example.com")) == "https://app.example.com")
        #expect(Self.header("Access-Control-Allow-Origin", in: Self.actual(p, origin: "http://[::1]:3000")) == "http://[::1]:3000")
    }

    // MARK: Not CORS

    @Test("no Origin or CORS disabled is notCORS", arguments: [
        ("GET", nil as String?, nil as String?, true),
        ("OPTIONS", nil, "PUT", true),
        ("GET", "https://app.example.com", nil, false),
        ("OPTIONS", "https://app.example.com", "PUT", false),
    ])
    func notCORS(method: String, origin: String?, acrm: String?, enabled: Bool) {
        let p = enabled ? Self.standard : Self.policy(CORSConfig())
        #expect(p.isEnabled == enabled)
        #expect(p.evaluate(method: method, origin: origin, requestMethod: acrm, requestHeaders: nil, requestPrivateNetwork: false) == .notCORS)
        if !enabled { #expect(p.cacheVary == nil) }
    }

    // MARK: Actual requests

    @Test func actualRequestHeaders() {
        let d = Self.actual(method: "POST", origin: "https://app.example.com")
        #expect(d == .actual(responseHeaders: [
            ("Access-Control-Allow-Origin", "https://app.example.com"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", "X-Request-Id"),
        ]))
        #expect(Self.standard.cacheVary! == ("Vary", "Origin"))
    }

    @Test func actualWithoutCredentialsOrExposedHeaders() {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], allowCredentials: false, exposeHeaders: []))
        #expect(Self.actual(p, origin: "https://app.example.com") == .actual(responseHeaders: [
            ("Access-Control-Allow-Origin", "https://app.example.com"),
            ("Vary", "Origin"),
        ]))
    }

    @Test("OPTIONS without Access-Control-Request-Method is an actual request", arguments: [
        ("https://app.example.com", true), ("https://evil.com", false),
    ])
    func optionsWithoutACRM(origin: String, allowed: Bool) {
        let d = Self.standard.evaluate(method: "OPTIONS", origin: origin, requestMethod: nil, requestHeaders: "authorization",
                                       requestPrivateNetwork: true)
        if allowed {
            #expect(Self.header("Access-Control-Allow-Origin", in: d) == origin)
            #expect(Self.header("Access-Control-Allow-Methods", in: d) == nil)
        } else {
            #expect(d == .disallowedOrigin)
        }
    }

    @Test func anyOriginWithoutCredentials() {
        let p = Self.policy(CORSConfig(origins: ["*"], allowCredentials: false))
        #expect(Self.actual(p, origin: "https://anything.test") == .actual(responseHeaders: [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", "X-Request-Id"),
        ]))
        #expect(Self.header("Access-Control-Allow-Origin", in: Self.actual(p, origin: "null")) == "*")
        #expect(p.cacheVary == nil)
        let pf = Self.preflight(p, origin: "https://anything.test", method: "PATCH")
        #expect(Self.header("Access-Control-Allow-Origin", in: pf) == "*")
        #expect(Self.header("Access-Control-Allow-Credentials", in: pf) == nil)
    }

    // MARK: Preflights

    @Test func preflightHeaders() {
        let d = Self.preflight(origin: "https://a.example.com", method: "DELETE", headers: "authorization,content-type")
        #expect(d == .preflight(headers: [
            ("Access-Control-Allow-Origin", "https://a.example.com"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", "authorization,content-type"),
            ("Access-Control-Max-Age", "600"),
            ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]))
    }

    @Test func preflightWithoutRequestedHeadersOmitsAllowHeaders() {
        let d = Self.preflight(origin: "https://app.example.com", method: "PUT", headers: nil)
        #expect(Self.header("Access-Control-Allow-Headers", in: d) == nil)
        #expect(Self.header("Access-Control-Allow-Methods", in: d) != nil)
        #expect(Self.header("Access-Control-Allow-Headers", in: Self.preflight(origin: "https://app.example.com", headers: " , ")) == nil)
    }

    @Test("preflight methods", arguments: [
        ("PUT", true), ("DELETE", true), ("PATCH", true), ("OPTIONS", true),
        ("GET", true), ("HEAD", true), ("POST", true),
        ("PROPFIND", false), ("TRACE", false),
        ("patch", false),                 // methods are case-sensitive; browsers upper-case only the standard ones
        ("PU T", false), ("", false),     // malformed
    ])
    func preflightMethods(method: String, allowed: Bool) {
        let d = Self.preflight(origin: "https://app.example.com", method: method)
        #expect(Self.isReject(d) == !allowed)
        if !allowed { #expect(Self.header("Access-Control-Allow-Origin", in: d) == nil) }
    }

    @Test("safelisted methods are acceptable even when not configured", arguments: ["GET", "HEAD", "POST"])
    func safelistedMethods(method: String) {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], allowedMethods: ["PUT"]))
        #expect(!Self.isReject(Self.preflight(p, origin: "https://app.example.com", method: method)))
        #expect(Self.isReject(Self.preflight(p, origin: "https://app.example.com", method: "DELETE")))
        #expect(Self.header("Access-Control-Allow-Methods", in: Self.preflight(p, origin: "https://app.example.com")) == "PUT")
    }

    @Test("preflight request headers", arguments: [
        ("authorization", "authorization" as String?),
        ("Authorization", "authorization"),                               // case-insensitive, echoed lower-case
        ("AUTHORIZATION, Content-Type", "authorization,content-type"),
        ("content-type,authorization", "content-type,authorization"),    // canonical: echoed as sent
        ("accept,accept-language,content-language", "accept,accept-language,content-language"), // safelisted
        (" authorization ,, content-type ", "authorization,content-type"),
        ("x-custom", nil),                                                // not allowed
        ("authorization,x-custom", nil),
        ("cookie", nil),
        ("bad header", nil),                                              // malformed
        ("autho\u{0}rization", nil),
    ])
    func preflightHeaders(requested: String, echoed: String?) {
        let d = Self.preflight(origin: "https://app.example.com", headers: requested)
        if let echoed {
            #expect(Self.header("Access-Control-Allow-Headers", in: d) == echoed)
        } else {
            #expect(Self.isReject(d))
        }
    }

    @Test func configuredHeadersAreCaseInsensitive() {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], allowedHeaders: ["X-CSRF-Token", "x-requested-with"]))
        #expect(Self.header("Access-Control-Allow-Headers", in: Self.preflight(p, origin: "https://app.example.com", headers: "x-csrf-token,X-Requested-With"))
                == "x-csrf-token,x-requested-with")
        #expect(Self.isReject(Self.preflight(p, origin: "https://app.example.com", headers: "authorization")))
    }

    @Test func wildcardHeadersAndMethodsWithoutCredentials() {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], allowCredentials: false, allowedMethods: ["*"], allowedHeaders: ["*"]))
        let d = Self.preflight(p, origin: "https://app.example.com", method: "PROPFIND", headers: "x-anything,authorization")
        // `*` in Access-Control-Allow-Headers would not cover Authorization, so the request is echoed instead.
        #expect(Self.header("Access-Control-Allow-Headers", in: d) == "x-anything,authorization")
        #expect(Self.header("Access-Control-Allow-Methods", in: d) == "PROPFIND")
        #expect(Self.header("Access-Control-Allow-Origin", in: d) == "https://app.example.com")
    }

    @Test func maxAgeIsConfigurable() {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], maxAge: 0))
        #expect(Self.header("Access-Control-Max-Age", in: Self.preflight(p, origin: "https://app.example.com")) == "0")
    }

    // MARK: Private Network Access

    @Test("private network access", arguments: [
        (false, false, "none"), (true, false, "reject"),
        (false, true, "none"), (true, true, "allow"),
    ])
    func privateNetwork(requested: Bool, enabled: Bool, outcome: String) {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], privateNetwork: enabled))
        let d = Self.preflight(p, origin: "https://app.example.com", pna: requested)
        switch outcome {
        case "reject": #expect(Self.isReject(d))
        case "allow": #expect(Self.header("Access-Control-Allow-Private-Network", in: d) == "true")
        default:
            #expect(!Self.isReject(d))
            #expect(Self.header("Access-Control-Allow-Private-Network", in: d) == nil)
        }
        if enabled {
            #expect(Self.header("Vary", in: d) == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network")
        }
    }

    // MARK: Passthrough

    @Test("passthrough forwards only allowed origins' preflights", arguments: [
        ("https://app.example.com", "PROPFIND", CORSDecision.preflightPassthrough),  // the upstream judges the method
        ("https://evil.com", "PUT", CORSDecision.rejectPreflight(reason: "origin not allowed")),
    ])
    func passthrough(origin: String, method: String, expected: CORSDecision) {
        let p = Self.policy(CORSConfig(origins: ["https://app.example.com"], preflightPassthrough: true))
        #expect(Self.preflight(p, origin: origin, method: method, headers: "x-custom") == expected)
        // Actual requests are unaffected.
        #expect(Self.header("Access-Control-Allow-Origin", in: Self.actual(p, origin: "https://app.example.com")) == "https://app.example.com")
    }

    // MARK: Helpers

    @Test("owned response headers", arguments: [
        ("Access-Control-Allow-Origin", true), ("access-control-allow-credentials", true),
        ("ACCESS-CONTROL-EXPOSE-HEADERS", true), ("Access-Control-", true),
        ("Access-Control", false), ("Vary", false), ("X-Access-Control-Allow-Origin", false), ("", false),
    ])
    func ownedResponseHeader(name: String, owned: Bool) {
        #expect(CORSPolicy.isOwnedResponseHeader(name) == owned)
    }

    @Test("parseOrigins", arguments: [
        ("", [String]()),
        ("https://a.com", ["https://a.com"]),
        (" https://a.com , ,https://*.b.com,\tnull ,", ["https://a.com", "https://*.b.com", "null"]),
        (",,,", []),
    ])
    func parseOrigins(text: String, expected: [String]) {
        #expect(CORSPolicy.parseOrigins(text) == expected)
    }

    // MARK: Configuration validation

    static func problems(_ config: CORSConfig) -> [ConfigIssue] {
        switch CORSPolicy.validating(config) {
        case .success: return []
        case .failure(let e): return e.issues
        }
    }

    @Test("bad origins are refused", arguments: [
        "https://app.example.com/",             // trailing slash
        "https://app.example.com/api",          // path
        "app.example.com",                      // no scheme
        "//app.example.com",
        "https://",                             // no host
        "https://app.example.com?x=1",
        "https://app.example.com#x",
        "https://user@app.example.com",
        "https://app.example.com:0",
        "https://app.example.com:65536",
        "https://app.example.com:abc",
        "https://app.example.com:",
        "https://app.example.com:*",
        "https://a.*.example.com",              // wildcard not leftmost
        "https://app.example.*",
        "https://*app.example.com",             // wildcard not a whole label
        "https://a*.example.com",
        "https://*.*.example.com",
        "https://*",
        "https://*.com",                        // a whole TLD
        "https://app..example.com",
        "https://app.example.com.",
        "https://app example.com",
        "https://bücher.example",
        "1http://app.example.com",
        "https://[::1",
        "https://[zz]",
    ])
    func badOrigins(entry: String) {
        let issues = Self.problems(CORSConfig(origins: [entry]))
        #expect(issues.count == 1)
        #expect(issues.first?.key == "SIDECAR_CORS_ORIGINS")
    }

    @Test("good origins are accepted", arguments: [
        "https://app.example.com", "http://localhost:3000", "https://*.example.com", "https://*.example.com:8443",
        "http://*.localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000", "null", "capacitor://localhost",
        "chrome-extension://abcdefghijklmnop", "  https://padded.example.com  ",
    ])
    func goodOrigins(entry: String) {
        #expect(Self.problems(CORSConfig(origins: [entry])).isEmpty)
    }

    @Test("`*` with credentials is refused", arguments: [
        (CORSConfig(origins: ["*"]), "SIDECAR_CORS_ORIGINS"),
        (CORSConfig(origins: ["https://a.com"], allowedHeaders: ["*"]), "SIDECAR_CORS_ALLOWED_HEADERS"),
        (CORSConfig(origins: ["https://a.com"], allowedMethods: ["*"]), "SIDECAR_CORS_ALLOWED_METHODS"),
        (CORSConfig(origins: ["https://a.com"], exposeHeaders: ["*"]), "SIDECAR_CORS_EXPOSE_HEADERS"),
    ])
    func starWithCredentials(config: CORSConfig, key: String) {
        #expect(Self.problems(config).map(\.key) == [key])
        var relaxed = config
        relaxed.allowCredentials = false
        #expect(Self.problems(relaxed).isEmpty)
    }

    @Test("max-age range", arguments: [(-1, false), (0, true), (86400, true), (86401, false)])
    func maxAge(value: Int, ok: Bool) {
        let issues = Self.problems(CORSConfig(origins: ["https://a.com"], maxAge: value))
        #expect(issues.isEmpty == ok)
        if !ok { #expect(issues.map(\.key) == ["SIDECAR_CORS_MAX_AGE"]) }
    }

    @Test func badHeaderAndMethodNames() {
        let issues = Self.problems(CORSConfig(origins: ["https://a.com"], allowedMethods: ["GET", "BAD METHOD"],
                                              allowedHeaders: ["X-Ok", "Bad:Header"], exposeHeaders: [""]))
        #expect(issues.map(\.key) == ["SIDECAR_CORS_ALLOWED_METHODS", "SIDECAR_CORS_ALLOWED_HEADERS", "SIDECAR_CORS_EXPOSE_HEADERS"])
    }

    @Test func everyProblemIsReportedAtOnce() {
        let config = CORSConfig(origins: ["*", "https://ok.example.com", "https://bad.example.com/", "https://a.*.example.com", "ftp//x"],
                                allowCredentials: true, allowedHeaders: ["*"], maxAge: 100_000)
        let issues = Self.problems(config)
        #expect(issues.map(\.key) == ["SIDECAR_CORS_ORIGINS", "SIDECAR_CORS_ORIGINS", "SIDECAR_CORS_ORIGINS", "SIDECAR_CORS_ORIGINS",
                                      "SIDECAR_CORS_ALLOWED_HEADERS", "SIDECAR_CORS_MAX_AGE"])
        #expect(issues[1].problem.contains("https://bad.example.com/"))
        #expect(issues[1].problem.contains("slash"))
        #expect(issues[2].problem.contains("leftmost"))
    }

    @Test func messageKeysFollowTheLoader() {
        let issues: [ConfigIssue]
        switch CORSPolicy.validating(CORSConfig(origins: ["*"]), key: { "sidecar.yaml: \($0)" }) {
        case .success: issues = []
        case .failure(let e): issues = e.issues
        }
        #expect(issues.map(\.key) == ["sidecar.yaml: cors_origins"])
        #expect(issues[0].hint.contains("sidecar.yaml: cors_allow_credentials=false"))
    }
}
