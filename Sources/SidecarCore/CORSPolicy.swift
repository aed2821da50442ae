/// CORS settings as the operator wrote them. `CORSPolicy.validating(_:)` checks them and precomputes everything the
/// per-request path needs; only a validated `CORSPolicy` reaches the server.
public struct CORSConfig: Sendable, Equatable {
    /// Allowed origins. Empty disables CORS entirely (every request is `.notCORS`). Each entry is one of:
    /// - an exact origin, `scheme://host[:port]` (no path, no trailing slash); the scheme and host are lower-cased and
    ///   a default port (`:443` for https, `:80` for http) dropped, because that is how browsers serialise `Origin`;
    /// - a pattern `scheme://*.example.com[:port]`, where `*` is the whole leftmost label and matches exactly one
    ///   DNS label (not zero, not two);
    /// - `null`, matched only when listed (sandboxed iframes, `file:` pages and some redirects all send it, so it
    ///   identifies nobody);
    /// - `*`, any origin, answered with `Access-Control-Allow-Origin: *`; refused together with credentials.
    public var origins: [String]
    /// Send `Access-Control-Allow-Credentials: true`, which the browser needs before it sends the session cookie
    /// cross-origin (or lets script read a response to a request that carried it).
    public var allowCredentials: Bool
    /// Methods a preflight may ask for (upper-cased; HTTP methods are case-sensitive but a lower-case `patch` in a
    /// config is a typo, not a distinct method). `*` = any, only without credentials. GET, HEAD and POST are always
    /// acceptable because browsers send them without asking.
    public var allowedMethods: [String]
    /// Request headers a preflight may ask for, compared case-insensitively. `*` = any, only without credentials.
    public var allowedHeaders: [String]
    /// Response headers script may read (`Access-Control-Expose-Headers`); empty sends none.
    public var exposeHeaders: [String]
    /// `Access-Control-Max-Age`, seconds (browsers cap it: Chromium at 7200, Firefox at 86400).
    public var maxAge: Int
    /// Answer Private Network Access preflights (`Access-Control-Request-Private-Network: true`) with
    /// `Access-Control-Allow-Private-Network: true`; when off they are refused.
    public var privateNetwork: Bool
    /// Forward preflights from allowed origins to the upstream instead of answering them here.
    public var preflightPassthrough: Bool
    /// Drop the upstream's own `Access-Control-*` response headers (see `CORSPolicy.isOwnedResponseHeader`) so the
    /// policy here is the only one the browser sees.
    public var replaceUpstreamHeaders: Bool

    public static let defaultMethods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    public static let defaultHeaders = ["Authorization", "Content-Type"]
    public static let defaultExposeHeaders = ["X-Request-Id"]

    public init(origins: [String] = [], allowCredentials: Bool = true, allowedMethods: [String] = defaultMethods,
                allowedHeaders: [String] = defaultHeaders, exposeHeaders: [String] = defaultExposeHeaders,
                maxAge: Int = 600, privateNetwork: Bool = false, preflightPassthrough: Bool = false,
                replaceUpstreamHeaders: Bool = true) {
        self.origins = origins
        self.allowCredentials = allowCredentials
        self.allowedMethods = allowedMethods
        self.allowedHeaders = allowedHeaders
        self.exposeHeaders = exposeHeaders
        self.maxAge = maxAge
        self.privateNetwork = privateNetwork
        self.preflightPassthrough = preflightPassthrough
        self.replaceUpstreamHeaders = replaceUpstreamHeaders
    }
}

/// What the server does with one request, CORS-wise. Decided from the request head before authentication.
public enum CORSDecision: Sendable, Equatable {
    /// No `Origin` header, or CORS disabled (no origins configured): do nothing.
    case notCORS
    /// Answer 204 locally with exactly these headers: not authenticated (browsers never send credentials on a
    /// preflight) and not forwarded.
    case preflight(headers: [(String, String)])
    /// A preflight from an allowed origin, forwarded because passthrough is configured; the upstream answers it.
    case preflightPassthrough
    /// Answer 403 without any CORS header, so the browser blocks the real request.
    case rejectPreflight(reason: String)
    /// Add these to every response to this request: the upstream's and the sidecar's own 401/403/502/504 (a
    /// browser hides a 401 without them from the page, which then cannot tell "log in again" from a network error).
    case actual(responseHeaders: [(String, String)])
    /// An actual request from an origin not allowed: forward normally, add no CORS headers. (The browser then hides
    /// the response from the page; refusing here would add nothing, since non-browser clients ignore CORS anyway.)
    case disallowedOrigin

    public static func == (lhs: CORSDecision, rhs: CORSDecision) -> Bool {
        switch (lhs, rhs) {
        case (.notCORS, .notCORS), (.preflightPassthrough, .preflightPassthrough), (.disallowedOrigin, .disallowedOrigin):
            return true
        case let (.preflight(a), .preflight(b)), let (.actual(a), .actual(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.rejectPreflight(a), .rejectPreflight(b)):
            return a == b
        default:
            return false
        }
    }
}

/// The validated CORS policy: pure, built once, `evaluate` runs per request.
///
/// Origin matching is byte-exact against the normalised entries: browsers always send the RFC 6454 serialisation
/// (lower-case scheme and host, no default port), so an `Origin` with upper-case letters did not come from a browser
/// and does not match. Not folding it costs browsers nothing and keeps a second spelling of "the same" origin from
/// ever being echoed back.
public struct CORSPolicy: Sendable {
    /// The configuration this policy was built from, as given.
    public let config: CORSConfig
    /// False when no origins are configured: every request is `.notCORS`.
    public var isEnabled: Bool { !exactOrigins.isEmpty || !patterns.isEmpty || anyOrigin }
    /// A `Vary` the server should put on every response while the policy is enabled — including `.notCORS` and
    /// `.disallowedOrigin` ones — so a shared cache never serves a response without `Access-Control-Allow-Origin`
    /// to an allowed origin (or one with it to another origin). Nil when it is not needed (disabled, or `*`).
    public let cacheVary: (String, String)?

    /// Normalised exact origins (and `null` when listed).
    let exactOrigins: Set<String>
    let patterns: [WildcardOrigin]
    let anyOrigin: Bool
    /// Lower-case header names a preflight may ask for.
    let allowedHeaderNames: Set<String>
    let anyHeader: Bool
    let allowedMethodNames: Set<String>
    let anyMethod: Bool
    /// Precomputed values and header tails.
    let allowMethodsValue: String
    let maxAgeValue: String
    let actualTail: [(String, String)]
    let preflightVary: String

    /// Matches `scheme://<one label>.<suffix>[:port]`: `prefix` is `scheme://`, `suffix` is `.example.com[:port]`.
    struct WildcardOrigin: Sendable, Equatable {
        let prefix: String
        let suffix: String

        func matches(_ origin: String) -> Bool {
            let o = origin.utf8, p = prefix.utf8, s = suffix.utf8
            guard o.count > p.count + s.count, o.starts(with: p), o.reversed().starts(with: s.reversed()) else { return false }
            // Exactly one label between: DNS label characters only, so no `.`, `:`, `/`, `@` or upper case.
            return o.dropFirst(p.count).dropLast(s.count).allSatisfy(CORSPolicy.isLowerLabelByte)
        }
    }

    /// CORS-safelisted request headers: a browser may list them in `Access-Control-Request-Headers` (for a
    /// non-safelisted value, e.g. `Content-Type: application/json`), and they are always acceptable.
    public static let safelistedHeaders: Set<String> = ["accept", "accept-language", "content-language", "content-type"]
    /// CORS-safelisted methods: browsers send them cross-origin without asking, so refusing them in a preflight
    /// would protect nothing.
    public static let safelistedMethods: Set<String> = ["GET", "HEAD", "POST"]

    /// Builds the policy, or reports every problem in the configuration at once.
    ///
    /// - Parameter key: maps a setting's file key (`cors_origins`, `cors_allow_credentials`, `cors_allowed_methods`,
    ///   `cors_allowed_headers`, `cors_expose_headers`, `cors_max_age`) to the name shown in messages; by default
    ///   the environment variable (`SIDECAR_CORS_ORIGINS`, …). The config loader passes where each value came from.
    public static func validating(_ config: CORSConfig, key: (String) -> String = { "SIDECAR_" + $0.uppercased() }) -> Result<CORSPolicy, ConfigIssues> {
        var issues: [ConfigIssue] = []
        let credentials = config.allowCredentials
        let credentialsHint = "set \(key("cors_allow_credentials"))=false, or list the exact values instead of `*`"

        var exact = Set<String>()
        var patterns: [WildcardOrigin] = []
        var anyOrigin = false
        for entry in config.origins {
            switch parseOriginEntry(entry) {
            case .any:
                if credentials {
                    issues.append(ConfigIssue(key: key("cors_origins"), problem: "`*` cannot be combined with credentials (browsers refuse `Access-Control-Allow-Origin: *` on credentialed requests)",
                                              hint: "list the exact origins, e.g. https://app.example.com, or set \(key("cors_allow_credentials"))=false"))
                }
                anyOrigin = true
            case .exact(let origin):
                exact.insert(origin)
            case .wildcard(let pattern):
                if !patterns.contains(pattern) { patterns.append(pattern) }
            case .invalid(let problem):
                issues.append(ConfigIssue(key: key("cors_origins"), problem: "\"\(entry.prefix(80))\" \(problem)",
                                          hint: "use scheme://host[:port] with no path or trailing slash, e.g. https://app.example.com or https://*.example.com"))
            }
        }

        func names(_ list: [String], fileKey: String, what: String, example: String, upperCase: Bool) -> (Set<String>, any: Bool) {
            var set = Set<String>()
            var any = false
            for raw in list {
                let name = raw.corsTrimmed()
                if name == "*" {
                    if credentials {
                        issues.append(ConfigIssue(key: key(fileKey), problem: "`*` cannot be combined with credentials (browsers read it as a literal name then)", hint: credentialsHint))
                    }
                    any = true
                } else if HeaderName.isValid(name) {
                    set.insert(upperCase ? name.uppercased() : name.lowercased())
                } else {
                    issues.append(ConfigIssue(key: key(fileKey), problem: "\"\(raw.prefix(60))\" is not a valid \(what)", hint: "e.g. \(example)"))
                }
            }
            return (set, any)
        }
        let (methods, anyMethod) = names(config.allowedMethods, fileKey: "cors_allowed_methods", what: "method", example: "GET,POST,PUT,DELETE", upperCase: true)
        let (headers, anyHeader) = names(config.allowedHeaders, fileKey: "cors_allowed_headers", what: "header name", example: "Authorization,Content-Type", upperCase: false)
        let (_, anyExposed) = names(config.exposeHeaders, fileKey: "cors_expose_headers", what: "header name", example: "X-Request-Id", upperCase: false)

        if !(0...86400).contains(config.maxAge) {
            issues.append(ConfigIssue(key: key("cors_max_age"), problem: "\(config.maxAge) is not a number of seconds from 0 to 86400", hint: "e.g. 600; browsers cap it anyway (Chromium at 7200)"))
        }
        guard issues.isEmpty else { return .failure(ConfigIssues(issues: issues)) }
        return .success(CORSPolicy(config: config, exact: exact, patterns: patterns, anyOrigin: anyOrigin,
                                   methods: methods, anyMethod: anyMethod, headers: headers, anyHeader: anyHeader,
                                   anyExposed: anyExposed))
    }

    private init(config: CORSConfig, exact: Set<String>, patterns: [WildcardOrigin], anyOrigin: Bool,
                 methods: Set<String>, anyMethod: Bool, headers: Set<String>, anyHeader: Bool, anyExposed: Bool) {
        self.config = config
        self.exactOrigins = exact
        self.patterns = patterns
        self.anyOrigin = anyOrigin
        self.allowedMethodNames = methods
        self.anyMethod = anyMethod
        self.allowedHeaderNames = headers
        self.anyHeader = anyHeader

        // Keep the operator's order for the list headers; drop duplicates.
        func joined(_ list: [String], upperCase: Bool) -> String {
            var seen = Set<String>()
            var out: [String] = []
            for raw in list {
                let name = raw.corsTrimmed()
                let canonical = upperCase ? name.uppercased() : name
                if seen.insert(canonical.lowercased()).inserted { out.append(canonical) }
            }
            return out.joined(separator: ", ")
        }
        allowMethodsValue = anyMethod ? "" : joined(config.allowedMethods, upperCase: true)
        maxAgeValue = String(config.maxAge)

        var tail: [(String, String)] = []
        if config.allowCredentials { tail.append(("Access-Control-Allow-Credentials", "true")) }
        // Answered with `*`, the response does not depend on Origin, so it needs no Vary.
        let alwaysStar = anyOrigin && !config.allowCredentials
        if !alwaysStar { tail.append(("Vary", "Origin")) }
        let exposed = anyExposed ? "*" : joined(config.exposeHeaders, upperCase: false)
        if !exposed.isEmpty { tail.append(("Access-Control-Expose-Headers", exposed)) }
        actualTail = tail
        preflightVary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
            + (config.privateNetwork ? ", Access-Control-Request-Private-Network" : "")
        let enabled = anyOrigin || !exact.isEmpty || !patterns.isEmpty
        cacheVary = enabled && !alwaysStar ? ("Vary", "Origin") : nil
    }

    /// Decides one request from its head. `requestMethod` and `requestHeaders` are the raw
    /// `Access-Control-Request-Method` / `Access-Control-Request-Headers` values (nil when absent);
    /// `requestPrivateNetwork` is true when `Access-Control-Request-Private-Network: true` was sent.
    ///
    /// A preflight is `OPTIONS` with both `Origin` and `Access-Control-Request-Method`; an `OPTIONS` without the
    /// latter is an ordinary request and goes through authentication like any other.
    public func evaluate(method: String, origin: String?, requestMethod: String?, requestHeaders: String?,
                         requestPrivateNetwork: Bool) -> CORSDecision {
        guard let origin, isEnabled else { return .notCORS }
        let allowed = isAllowed(origin)
        guard method == "OPTIONS", let requestMethod else {
            return allowed ? .actual(responseHeaders: actualHeaders(origin)) : .disallowedOrigin
        }
        guard allowed else { return .rejectPreflight(reason: "origin not allowed") }
        // The upstream answers the preflight in full (methods, headers, private network): only the origin is ours.
        if config.preflightPassthrough { return .preflightPassthrough }

        guard HeaderName.isValid(requestMethod) else { return .rejectPreflight(reason: "malformed Access-Control-Request-Method") }
        guard anyMethod || Self.safelistedMethods.contains(requestMethod) || allowedMethodNames.contains(requestMethod) else {
            return .rejectPreflight(reason: "method \(requestMethod.prefix(32)) not allowed")
        }
        if requestPrivateNetwork && !config.privateNetwork {
            return .rejectPreflight(reason: "private network access not allowed")
        }
        let allowHeaders: String
        switch checkRequestedHeaders(requestHeaders ?? "") {
        case .success(let value): allowHeaders = value
        case .failure(let rejection): return .rejectPreflight(reason: rejection.reason)
        }

        var headers: [(String, String)] = []
        headers.reserveCapacity(8)
        headers.append(("Access-Control-Allow-Origin", allowOriginValue(origin)))
        if config.allowCredentials { headers.append(("Access-Control-Allow-Credentials", "true")) }
        headers.append(("Access-Control-Allow-Methods", anyMethod ? requestMethod : allowMethodsValue))
        if !allowHeaders.isEmpty { headers.append(("Access-Control-Allow-Headers", allowHeaders)) }
        if requestPrivateNetwork { headers.append(("Access-Control-Allow-Private-Network", "true")) }
        headers.append(("Access-Control-Max-Age", maxAgeValue))
        headers.append(("Vary", preflightVary))
        return .preflight(headers: headers)
    }

    /// True for response headers this policy owns (`Access-Control-*`, any case): with `replaceUpstreamHeaders` the
    /// server drops the upstream's, so a permissive upstream default cannot widen the policy configured here.
    /// ``isOwnedResponseHeader(_:)`` on a name's bytes.
    public static func isOwnedResponseHeader(bytes name: UnsafeBufferPointer<UInt8>) -> Bool {
        let prefix: StaticString = "access-control-"
        guard name.count >= prefix.utf8CodeUnitCount else { return false }
        let p = prefix.utf8Start
        for i in 0..<prefix.utf8CodeUnitCount where (name[i] >= 0x41 && name[i] <= 0x5A ? name[i] + 32 : name[i]) != p[i] { return false }
        return true
    }

    public static func isOwnedResponseHeader(_ name: String) -> Bool {
        let prefix = "access-control-".utf8
        let n = name.utf8
        guard n.count >= prefix.count else { return false }
        return zip(n, prefix).allSatisfy { a, b in (a >= 0x41 && a <= 0x5A ? a + 32 : a) == b }
    }

    /// Splits `SIDECAR_CORS_ORIGINS` (or any comma list): entries trimmed, empty ones dropped.
    public static func parseOrigins(_ commaList: String) -> [String] {
        commaList.split(separator: ",", omittingEmptySubsequences: true).compactMap { part in
            let trimmed = String(part).corsTrimmed()
            return trimmed.isEmpty ? nil : trimmed
        }
    }

    // MARK: - Per request

    func isAllowed(_ origin: String) -> Bool {
        if anyOrigin || exactOrigins.contains(origin) { return true }
        for pattern in patterns where pattern.matches(origin) { return true }
        return false
    }

    /// `*` only when any origin is allowed without credentials; otherwise the exact origin, never `*`.
    func allowOriginValue(_ origin: String) -> String {
        anyOrigin && !config.allowCredentials ? "*" : origin
    }

    func actualHeaders(_ origin: String) -> [(String, String)] {
        var headers: [(String, String)] = []
        headers.reserveCapacity(1 + actualTail.count)
        headers.append(("Access-Control-Allow-Origin", allowOriginValue(origin)))
        headers.append(contentsOf: actualTail)
        return headers
    }

    struct Rejection: Error { let reason: String }

    /// Checks every requested header and returns the `Access-Control-Allow-Headers` value: the requested names,
    /// lower-cased, in the client's order. Browsers already send them lower-case and comma-separated without
    /// spaces, in which case the client's own string is echoed without building a new one.
    func checkRequestedHeaders(_ list: String) -> Result<String, Rejection> {
        var canonical = true
        var names: [Substring] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.corsTrimmedSlice()
            if name.count != part.count { canonical = false }
            if name.isEmpty { canonical = false; continue }
            guard HeaderName.isValid(String(name)) else { return .failure(Rejection(reason: "malformed Access-Control-Request-Headers")) }
            if name.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { canonical = false }
            let lower = name.lowercased()
            guard anyHeader || allowedHeaderNames.contains(lower) || Self.safelistedHeaders.contains(lower) else {
                return .failure(Rejection(reason: "header \(lower.prefix(64)) not allowed"))
            }
            names.append(name)
        }
        if names.isEmpty { return .success("") }
        if canonical { return .success(list) }
        return .success(names.map { $0.lowercased() }.joined(separator: ","))
    }

    // MARK: - Configuration parsing

    enum OriginEntry: Equatable {
        case any
        case exact(String)
        case wildcard(WildcardOrigin)
        case invalid(String)
    }

    /// Parses one configured origin into its RFC 6454 serialisation (or a pattern), or says what is wrong with it.
    static func parseOriginEntry(_ raw: String) -> OriginEntry {
        let entry = raw.corsTrimmed()
        if entry == "*" { return .any }
        if entry == "null" { return .exact("null") }
        if entry.isEmpty { return .invalid("is empty") }
        if entry.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) { return .invalid("contains whitespace or a control character") }
        if entry.utf8.contains(where: { $0 >= 0x80 }) { return .invalid("is not ASCII (write an internationalised host in its xn-- form)") }
        guard let sep = entry.firstRange(of: "://") else { return .invalid("is not scheme://host[:port]") }
        let scheme = entry[..<sep.lowerBound].lowercased()
        guard let first = scheme.utf8.first, isAlpha(first),
              scheme.utf8.allSatisfy({ isAlpha($0) || isDigit($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }) else {
            return .invalid("does not start with a valid scheme (e.g. https://)")
        }
        var rest = entry[sep.upperBound...]
        if rest.contains("@") { return .invalid("has user info (an origin is scheme://host[:port])") }
        if rest.contains("?") || rest.contains("#") { return .invalid("has a query or fragment") }
        if let slash = rest.firstIndex(of: "/") {
            return rest.index(after: slash) == rest.endIndex ? .invalid("ends with a slash (browsers send origins without one)") : .invalid("has a path")
        }
        if rest.isEmpty { return .invalid("has no host") }

        // Host and port.
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return .invalid("has an unclosed IPv6 literal") }
            host = rest[...close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .invalid("has junk after the IPv6 literal") }
                portText = after.dropFirst()
            }
            let inner = host.dropFirst().dropLast()
            guard !inner.isEmpty, inner.utf8.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else {
                return .invalid("has a malformed IPv6 literal")
            }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return .invalid("has more than one `:` after the host") }
            host = parts[0]
            if parts.count == 2 { portText = parts[1] }
        }
        rest = host
        var port: Int?
        if let portText {
            if portText == "*" { return .invalid("has a wildcard port (list each port)") }
            guard (1...5).contains(portText.count), portText.utf8.allSatisfy(isDigit), let p = Int(portText), (1...65535).contains(p) else {
                return .invalid("has a port that is not 1-65535")
            }
            port = p
        }
        if (scheme == "https" || scheme == "wss") && port == 443 || (scheme == "http" || scheme == "ws") && port == 80 { port = nil }
        let portSuffix = port.map { ":\($0)" } ?? ""

        if host.hasPrefix("[") {
            if host.contains("*") { return .invalid("has a wildcard in an IPv6 literal") }
            return .exact("\(scheme)://\(host.lowercased())\(portSuffix)")
        }
        let labels = host.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        guard host.utf8.count <= 253 else { return .invalid("has a host longer than 253 characters") }
        for (i, label) in labels.enumerated() {
            if label.isEmpty { return .invalid(host.isEmpty ? "has no host" : "has an empty DNS label (a leading, trailing or doubled dot)") }
            if label == "*" {
                if i != 0 { return .invalid("has a wildcard that is not the leftmost label (only https://*.example.com form is allowed)") }
                continue
            }
            if label.contains("*") { return .invalid("has a wildcard that is not a whole label (write https://*.example.com)") }
            guard label.utf8.count <= 63 else { return .invalid("has a DNS label longer than 63 characters") }
            guard label.utf8.allSatisfy(isLowerLabelByte) else { return .invalid("has a character not allowed in a host name") }
        }
        if labels[0] == "*" {
            let suffix = labels.dropFirst()
            if suffix.isEmpty { return .invalid("is only a wildcard host (use `*` for any origin)") }
            if suffix.count == 1 && suffix[1] != "localhost" {
                return .invalid("has a wildcard over a whole top-level domain")
            }
            return .wildcard(WildcardOrigin(prefix: "\(scheme)://", suffix: "." + suffix.joined(separator: ".") + portSuffix))
        }
        return .exact("\(scheme)://\(labels.joined(separator: "."))\(portSuffix)")
    }

    static func isAlpha(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    static func isHex(_ b: UInt8) -> Bool { isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66) }
    /// Lower-case letters, digits, `-` and `_` (seen in internal host names): what one label of a serialised
    /// origin's host may contain.
    static func isLowerLabelByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || isDigit(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
    }
}

extension StringProtocol {
    fileprivate func corsTrimmedSlice() -> SubSequence {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let end = lastIndex(where: { !isSpace($0) })!
        return self[start...end]
    }

    fileprivate func corsTrimmed() -> String { String(corsTrimmedSlice()) }
}
