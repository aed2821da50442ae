import AuthJSToken
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every configuration problem found, reported together.
public struct ConfigIssues: Error, Sendable {
    public let issues: [ConfigIssue]
}

/// Where the listener or the upstream is.
public enum SocketAddressSpec: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let h, let p): return "\(h):\(p)"
        case .unix(let p): return "unix:\(p)"
        }
    }
}

public enum UpstreamSpec: Sendable, Equatable {
    /// The built-in echo upstream (a demo, and the default).
    case echo
    case http(address: SocketAddressSpec, hostHeader: String, basePath: String)
}

/// The configuration after validation: only this form reaches the server. Built once at start-up.
public struct SidecarConfig: Sendable {
    public var listen: SocketAddressSpec
    public var upstream: UpstreamSpec
    public var threads: Int
    public var authenticator: TokenAuthenticator
    public var routes: RoutePolicy
    public var identity: IdentityHeaderMapper
    public var healthPrefix: String
    public var shutdownTimeout: Double
    public var upstreamConnectTimeout: Double
    public var upstreamTimeout: Double
    public var upstreamMaxIdle: Int
    /// Seconds an idle pooled upstream connection is kept.
    public var upstreamIdleTimeout: Double
    public var maxBodyBytes: Int
    public var maxHeaderBytes: Int
    public var idleTimeout: Double
    /// Seconds a WebSocket tunnel may be silent both ways before it is closed.
    public var tunnelIdleTimeout: Double
    public var headerTimeout: Double
    public var clientBodyTimeout: Double
    public var clientSendTimeout: Double
    public var maxConnections: Int
    /// Empty: disabled.
    public var forwardAuthPath: String
    public var tokenCacheSize: Int
    public var stripCookie: Bool
    public var stripAuthorization: Bool
    public var realm: String
    public var cors: CORSPolicy
    public var metricsListen: SocketAddressSpec?
    public var logLevel: String
    public var logFormat: String
    public var accessLog: Bool
}

/// Raw values from the three sources, by file key. Flags beat env, env beats the file.
public struct RawConfig {
    public var values: [String: String] = [:]
    /// Where each value came from, for messages (`SIDECAR_LISTEN`, `--listen`, `sidecar.yaml: listen`).
    public var origins: [String: String] = [:]
    var routeNodes: [YAMLNode] = []
    var routesOrigin = ""

    public init() {}
}

public enum ConfigLoader {
    /// Loads and validates. Every problem is reported at once; secrets are never part of a message.
    public static func load(environment env: [String: String], flags: [String: String], configPath: String?, coreCount: Int) -> Result<SidecarConfig, ConfigIssues> {
        var file: (name: String, text: String?)?
        if let path = configPath ?? env[Settings.configFileVariable], !path.isEmpty {
            file = (path, readTextFile(path))
        }
        return load(environment: env, flags: flags, file: file, coreCount: coreCount)
    }

    /// The same, with the YAML file's bytes already in hand (`name` is what messages call it; invalid UTF-8 is
    /// reported like an unreadable file). The fuzz target uses this to skip the file system.
    public static func load(environment env: [String: String], flags: [String: String], yaml bytes: some Collection<UInt8>,
                            named name: String, coreCount: Int) -> Result<SidecarConfig, ConfigIssues> {
        load(environment: env, flags: flags, file: (name, String(validating: bytes, as: UTF8.self)), coreCount: coreCount)
    }

    static func load(environment env: [String: String], flags: [String: String], file: (name: String, text: String?)?,
                     coreCount: Int) -> Result<SidecarConfig, ConfigIssues> {
        var issues: [ConfigIssue] = []
        var raw = RawConfig()
        if let file {
            if let text = file.text {
                readYAML(text, path: file.name, into: &raw, issues: &issues)
            } else {
                issues.append(ConfigIssue(key: "SIDECAR_CONFIG", problem: "cannot read \(file.name)", hint: "check the path and permissions (and that the file is UTF-8)"))
            }
        }
        for s in Settings.all {
            if let v = env[s.env] { raw.values[s.file] = v; raw.origins[s.file] = s.env }
            if let f = s.flag, let v = flags[f] { raw.values[s.file] = v; raw.origins[s.file] = "--\(f)" }
        }
        let secrets: [String]
        switch SecretsFromEnvironment.load(env) {
        case .success(let s): secrets = s
        case .failure(let issue): issues.append(issue); secrets = []
        }
        return validate(raw, secrets: secrets, issues: issues, coreCount: coreCount)
    }

    static func readYAML(_ text: String, path: String, into raw: inout RawConfig, issues: inout [ConfigIssue]) {
        let node: YAMLNode?
        do { node = try YAMLReader.parse(text) } catch {
            issues.append(ConfigIssue(key: path, problem: "is not valid YAML (\(error.description.prefix(200)))", hint: "fix the syntax; the accepted YAML is described under Configuration in README.md"))
            return
        }
        guard let mapping = node?.mapping else {
            if node != nil { issues.append(ConfigIssue(key: path, problem: "is not a YAML mapping", hint: "use `key: value` lines")) }
            return
        }
        let known = Set(Settings.all.map(\.file) + ["routes", "cors"])
        for entry in mapping.entries {
            let key = entry.key, v = entry.value
            guard known.contains(key) else {
                issues.append(ConfigIssue(key: "\(path): \(key)", problem: "is not a known setting", hint: "see the configuration reference in README.md"))
                continue
            }
            if key == "routes" {
                raw.routeNodes = v.sequence ?? []
                raw.routesOrigin = "\(path): routes"
                if v.sequence == nil { issues.append(ConfigIssue(key: "\(path): routes", problem: "must be a list", hint: "- {path: /admin, mode: required}")) }
                continue
            }
            if key == "cors", v.mapping == nil {
                issues.append(ConfigIssue(key: "\(path): cors", problem: "must be a mapping", hint: "cors: {origins: [https://app.example.com]}"))
                continue
            }
            if key == "cors", let map = v.mapping {
                // `cors: {origins, methods, headers, expose_headers, credentials, max_age, …}` → `cors_*` keys.
                let aliases = ["methods": "allowed_methods", "headers": "allowed_headers", "credentials": "allow_credentials"]
                for entry in map.entries {
                    let sub = entry.key, cv = entry.value
                    let flat = "cors_" + (aliases[sub] ?? sub)
                    guard known.contains(flat) else {
                        issues.append(ConfigIssue(key: "\(path): cors.\(sub)", problem: "is not a known setting", hint: "see the configuration reference in README.md"))
                        continue
                    }
                    raw.values[flat] = cv.sequence.map { $0.compactMap(\.string).joined(separator: ",") } ?? cv.string ?? ""
                    raw.origins[flat] = "\(path): cors.\(sub)"
                }
                continue
            }
            if let seq = v.sequence {
                raw.values[key] = seq.compactMap(\.string).joined(separator: ",")
            } else if let map = v.mapping {
                raw.values[key] = map.entries.compactMap { e in e.value.string.map { "\(e.key)=\($0)" } }.joined(separator: ",")
            } else if let s = v.string {
                raw.values[key] = s
            }
            raw.origins[key] = "\(path): \(key)"
        }
    }

    static func validate(_ raw: RawConfig, secrets: [String], issues initial: [ConfigIssue], coreCount: Int) -> Result<SidecarConfig, ConfigIssues> {
        var issues = initial
        func value(_ key: String) -> String {
            raw.values[key] ?? Settings.all.first { $0.file == key }!.defaultValue
        }
        func origin(_ key: String) -> String {
            raw.origins[key] ?? Settings.all.first { $0.file == key }.map(\.env) ?? key
        }
        func number(_ key: String, min: Double, max: Double, hint: String) -> Double {
            let text = value(key)
            guard let d = Double(text), d >= min, d <= max else {
                issues.append(ConfigIssue(key: origin(key), problem: "\"\(text.prefix(40))\" is not a number from \(min.cleanText) to \(max.cleanText)", hint: hint))
                return Double(Settings.all.first { $0.file == key }!.defaultValue) ?? min
            }
            return d
        }
        func flag(_ key: String) -> Bool {
            switch value(key).lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off", "": return false
            default:
                issues.append(ConfigIssue(key: origin(key), problem: "\"\(value(key).prefix(40))\" is not a boolean", hint: "use true or false"))
                return false
            }
        }

        let listen = parseAddress(value("listen"), key: origin("listen"), issues: &issues) ?? .tcp(host: "0.0.0.0", port: 8080)
        let upstream = parseUpstream(value("upstream"), key: origin("upstream"), issues: &issues)
        let metricsListen = value("metrics_listen").isEmpty ? nil : parseAddress(value("metrics_listen"), key: origin("metrics_listen"), issues: &issues)
        var threads = coreCount
        if value("threads") != "cores" {
            threads = Int(number("threads", min: 1, max: 256, hint: "use a thread count such as 1 or 2, or `cores`"))
        }
        let tolerance = number("clock_tolerance", min: 0, max: 86400, hint: "Auth.js uses 15")
        let shutdown = number("shutdown_timeout", min: 0, max: 3600, hint: "keep it below Kubernetes' terminationGracePeriodSeconds")
        let connectTimeout = number("upstream_connect_timeout", min: 0.01, max: 600, hint: "seconds, e.g. 5")
        let upstreamTimeout = number("upstream_timeout", min: 0.01, max: 86400, hint: "seconds, e.g. 60")
        let upstreamIdleTimeout = number("upstream_idle_timeout", min: 0.05, max: 86400,
                                         hint: "seconds, e.g. 4; below the upstream's own keep-alive timeout (uvicorn 5, gunicorn 2)")
        let upstreamMaxIdle = number("upstream_max_idle", min: 0, max: 1_000_000, hint: "a count per event-loop thread, e.g. 1024; at least the expected concurrency")
        let maxBody = number("max_body_bytes", min: 0, max: 1e15, hint: "bytes; 0 disables the limit")
        let maxHeader = number("max_header_bytes", min: 1024, max: 1_048_576, hint: "bytes, e.g. 65536")
        let idle = number("idle_timeout", min: 0.1, max: 86400, hint: "seconds, e.g. 60")
        let tunnelIdle = number("tunnel_idle_timeout", min: 0.1, max: 86400,
                                hint: "seconds, e.g. 300; a WebSocket application keeps a quiet tunnel open with pings")
        let headerTimeout = number("header_timeout", min: 0.1, max: 3600, hint: "seconds, e.g. 10")
        let bodyTimeout = number("client_body_timeout", min: 0.1, max: 86400, hint: "seconds between two reads of a request body, e.g. 60")
        let sendTimeout = number("client_send_timeout", min: 0.1, max: 86400, hint: "seconds a client may leave a response unread, e.g. 60")
        let maxConnections = number("max_connections", min: 1, max: 1_000_000, hint: "e.g. 10000")
        let cacheSize = number("token_cache_size", min: 0, max: 10_000_000, hint: "entries per event loop; 0 disables")
        var forwardAuthPath = value("forward_auth_path")
        if !forwardAuthPath.isEmpty, !forwardAuthPath.hasPrefix("/") || forwardAuthPath.contains("?") {
            issues.append(ConfigIssue(key: origin("forward_auth_path"), problem: "\"\(forwardAuthPath.prefix(40))\" is not an absolute path", hint: "e.g. /_sidecar/auth, or empty to disable"))
            forwardAuthPath = ""
        }
        let maxIdentity = number("max_identity_header_bytes", min: 64, max: 1_048_576, hint: "bytes, e.g. 8192")

        var healthPrefix = value("health_prefix")
        if !healthPrefix.hasPrefix("/") || healthPrefix.contains("?") || healthPrefix.count < 2 {
            issues.append(ConfigIssue(key: origin("health_prefix"), problem: "\"\(healthPrefix.prefix(40))\" is not an absolute path", hint: "e.g. /_sidecar"))
            healthPrefix = "/_sidecar"
        }
        if healthPrefix.hasSuffix("/") { healthPrefix.removeLast() }

        // Cookies and formats.
        var cookies: [SessionCookie] = []
        for name in value("cookie_names").split(separator: ",").map({ $0.trimmingSpaces }) where !name.isEmpty {
            if !HeaderName.isValid(name) || name.utf8.count > 900 {
                issues.append(ConfigIssue(key: origin("cookie_names"), problem: "\"\(name.prefix(40))\" is not a valid cookie name", hint: "use the name your Auth.js app sets, e.g. authjs.session-token"))
            } else if !cookies.contains(where: { $0.name == name }) {
                cookies.append(SessionCookie(name: name))
            }
        }
        if cookies.isEmpty {
            issues.append(ConfigIssue(key: origin("cookie_names"), problem: "names no cookie", hint: "e.g. authjs.session-token"))
        }
        if cookies.count > KeyRing.maxSalts {
            issues.append(ConfigIssue(key: origin("cookie_names"), problem: "names more than \(KeyRing.maxSalts) cookies", hint: "list only the cookies your apps set"))
            cookies = Array(cookies.prefix(KeyRing.maxSalts))
        }
        var formats = Set<TokenFormat>()
        for f in value("token_formats").split(separator: ",").map({ $0.trimmingSpaces }) where !f.isEmpty {
            if let format = TokenFormat(rawValue: f) { formats.insert(format) } else {
                issues.append(ConfigIssue(key: origin("token_formats"), problem: "\"\(f.prefix(40))\" is not a token format", hint: "use authjs-v5, nextauth-v4 and/or jws"))
            }
        }
        if formats.isEmpty { issues.append(ConfigIssue(key: origin("token_formats"), problem: "accepts no format", hint: "e.g. authjs-v5")) }

        // Identity headers.
        var mappings: [IdentityHeaderMapper.Mapping] = []
        for pair in value("identity_headers").split(separator: ",").map({ $0.trimmingSpaces }) where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces }
            guard parts.count == 2, !parts[0].isEmpty, HeaderName.isValid(parts[1]) else {
                issues.append(ConfigIssue(key: origin("identity_headers"), problem: "\"\(pair.prefix(60))\" is not `claim=Header-Name`", hint: "e.g. sub=X-Auth-Sub,roles=X-Auth-Roles"))
                continue
            }
            mappings.append(.init(claimPath: parts[0], header: parts[1]))
        }
        let claimsHeaderText = value("claims_header").trimmingSpaces
        if !claimsHeaderText.isEmpty && !HeaderName.isValid(claimsHeaderText) {
            issues.append(ConfigIssue(key: origin("claims_header"), problem: "\"\(claimsHeaderText.prefix(40))\" is not a header name", hint: "e.g. X-Auth-Claims, or empty to disable"))
        }
        // One claim per header name: two mapped to one name went upstream as two fields, which FastAPI reads as the
        // first and Hummingbird as both joined (found in review).
        var seenNames: Set<String> = []
        for name in mappings.map(\.header) + [claimsHeaderText] where !name.isEmpty {
            if !seenNames.insert(HeaderName.normalized(name)).inserted {
                issues.append(ConfigIssue(key: origin("identity_headers"), problem: "\(name) is mapped more than once",
                                          hint: "one claim per header; X-Auth-Claims carries every claim"))
            }
        }
        for name in mappings.map(\.header) + [claimsHeaderText] where !name.isEmpty {
            // Fields with their own meaning to the proxy or the upstream: framing and hop-by-hop fields, the ones the
            // sidecar sets itself (forwarding, request id), and credentials (found in review: X-Forwarded-For was
            // accepted, and a claim became a second X-Forwarded-For line an upstream might trust for the client IP).
            if Self.reservedHeaderNames.contains(HeaderName.normalized(name)) {
                issues.append(ConfigIssue(key: origin("identity_headers"), problem: "\(name) cannot be an identity header", hint: "use an X-Auth-* name"))
            }
        }

        // Routes: public paths first, then the file's ordered rules.
        var rules: [RouteRule] = []
        for p in value("public_paths").split(separator: ",").map({ $0.trimmingSpaces }) where !p.isEmpty {
            guard let normalized = PathNormalizer.normalize(path: p[...]), p.hasPrefix("/") else {
                issues.append(ConfigIssue(key: origin("public_paths"), problem: "\"\(p.prefix(60))\" is not an absolute path", hint: "e.g. /docs,/openapi.json,/health"))
                continue
            }
            rules.append(RouteRule(match: .prefix(normalized), mode: .public))
        }
        for (i, node) in raw.routeNodes.enumerated() {
            if let rule = parseRoute(node, key: "\(raw.routesOrigin)[\(i)]", issues: &issues) { rules.append(rule) }
        }

        for level in [value("log_level")] where !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level) {
            issues.append(ConfigIssue(key: origin("log_level"), problem: "\"\(level.prefix(20))\" is not a log level", hint: "trace, debug, info, notice, warning, error or critical"))
        }
        if !["text", "json"].contains(value("log_format")) {
            issues.append(ConfigIssue(key: origin("log_format"), problem: "\"\(value("log_format").prefix(20))\" is not a log format", hint: "text or json"))
        }
        let realm = value("realm")
        if realm.contains("\"") || realm.contains("\\") || !realm.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            issues.append(ConfigIssue(key: origin("realm"), problem: "must be printable ASCII without quotes or backslashes", hint: "e.g. my-api"))
        }
        let stripCookie = flag("strip_cookie"), stripAuthorization = flag("strip_authorization"), accessLog = flag("access_log")

        func list(_ key: String) -> [String] { value(key).split(separator: ",").map { $0.trimmingSpaces }.filter { !$0.isEmpty } }
        let corsConfig = CORSConfig(
            origins: CORSPolicy.parseOrigins(value("cors_origins")), allowCredentials: flag("cors_allow_credentials"),
            allowedMethods: list("cors_allowed_methods"), allowedHeaders: list("cors_allowed_headers"),
            exposeHeaders: list("cors_expose_headers"),
            maxAge: Int(number("cors_max_age", min: 0, max: 86400, hint: "seconds, e.g. 600")),
            privateNetwork: flag("cors_private_network"), preflightPassthrough: flag("cors_preflight_passthrough"),
            replaceUpstreamHeaders: flag("cors_replace_upstream_headers"))
        var cors: CORSPolicy?
        switch CORSPolicy.validating(corsConfig, key: { origin($0) }) {
        case .success(let p): cors = p
        case .failure(let found): issues.append(contentsOf: found.issues)
        }

        var authenticator: TokenAuthenticator?
        if !secrets.isEmpty, !cookies.isEmpty, !formats.isEmpty {
            do {
                authenticator = try TokenAuthenticator(secrets: secrets, cookies: cookies, formats: formats,
                                                       options: VerifierOptions(clockTolerance: tolerance))
            } catch {
                issues.append(ConfigIssue(key: "AUTH_SECRET", problem: error.description, hint: "check the secrets and cookie names"))
            }
        }
        guard issues.isEmpty, let authenticator, let cors else { return .failure(ConfigIssues(issues: issues)) }
        return .success(SidecarConfig(
            listen: listen, upstream: upstream, threads: threads, authenticator: authenticator,
            routes: RoutePolicy(rules: rules),
            identity: IdentityHeaderMapper(mappings: mappings, claimsHeader: claimsHeaderText.isEmpty ? nil : claimsHeaderText, maxValueBytes: Int(maxIdentity)),
            healthPrefix: healthPrefix, shutdownTimeout: shutdown, upstreamConnectTimeout: connectTimeout,
            upstreamTimeout: upstreamTimeout, upstreamMaxIdle: Int(upstreamMaxIdle), upstreamIdleTimeout: upstreamIdleTimeout,
            maxBodyBytes: Int(maxBody), maxHeaderBytes: Int(maxHeader), idleTimeout: idle,
            tunnelIdleTimeout: tunnelIdle,
            headerTimeout: headerTimeout, clientBodyTimeout: bodyTimeout, clientSendTimeout: sendTimeout, maxConnections: Int(maxConnections), forwardAuthPath: forwardAuthPath, tokenCacheSize: Int(cacheSize),
            stripCookie: stripCookie, stripAuthorization: stripAuthorization, realm: realm, cors: cors, metricsListen: metricsListen,
            logLevel: value("log_level"), logFormat: value("log_format"), accessLog: accessLog))
    }

    static func parseAddress(_ text: String, key: String, issues: inout [ConfigIssue]) -> SocketAddressSpec? {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            if path.hasPrefix("/"), path.utf8.count < 100 { return .unix(path: path) }
            issues.append(ConfigIssue(key: key, problem: "\"\(text.prefix(60))\" is not unix:/absolute/path (under 100 bytes)", hint: "e.g. unix:/run/sidecar.sock"))
            return nil
        }
        var host = "", portText = ""
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            portText = rest.hasPrefix(":") ? String(rest.dropFirst()) : ""
            if !host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) { host = "" }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon]); portText = String(text[text.index(after: colon)...])
            // A host name or IPv4 address: letters, digits, `-`, `.` — never userinfo, spaces or fragments.
            if !host.unicodeScalars.allSatisfy({ ($0.properties.isASCIIHexDigit || ("g"..."z").contains($0) || ("G"..."Z").contains($0)) || $0 == "-" || $0 == "." }) { host = "" }
        }
        guard !host.isEmpty, portText.allSatisfy(\.isNumber), let port = Int(portText), (0...65535).contains(port) else {
            issues.append(ConfigIssue(key: key, problem: "\"\(text.prefix(60))\" is not host:port or unix:/path", hint: "e.g. 0.0.0.0:8080 or 127.0.0.1:8080"))
            return nil
        }
        return .tcp(host: host, port: port)
    }

    /// RFC 3986 `pchar` and `/`: unreserved, sub-delims, `:`, `@`, `%` (for escapes).
    static let pathBytes: [Bool] = (0..<256).map { i in
        let b = UInt8(i)
        return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-._~!$&'()*+,;=:@%/".utf8.contains(b)
    }

    /// Header names (normalised) no claim may be mapped to.
    static let reservedHeaderNames: Set<String> = [
        "host", "cookie", "authorization", "proxy-authorization", "proxy-authenticate", "content-length", "transfer-encoding",
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect", "forwarded", "x-forwarded-for",
        "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "x-request-id",
    ]

    static func parseUpstream(_ text: String, key: String, issues: inout [ConfigIssue]) -> UpstreamSpec {
        if text == "echo" { return .echo }
        if text.hasPrefix("unix:") {
            guard let address = parseAddress(text, key: key, issues: &issues) else { return .echo }
            return .http(address: address, hostHeader: "localhost", basePath: "")
        }
        guard text.hasPrefix("http://") else {
            issues.append(ConfigIssue(key: key, problem: "\"\(text.prefix(60))\" is not http://host:port[/base], unix:/path or echo",
                                      hint: text.hasPrefix("https://") ? "TLS to the upstream is not supported; keep the upstream on loopback or a unix socket" : "e.g. http://127.0.0.1:8000"))
            return .echo
        }
        let rest = text.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = String(rest[..<slash])
        var basePath = String(rest[slash...])
        if basePath.hasSuffix("/") { basePath.removeLast() }
        if !authority.contains(":") || authority.hasSuffix("]") { authority += ":80" }
        if basePath.contains("?") || basePath.contains("#") {
            issues.append(ConfigIssue(key: key, problem: "base path must not have a query or fragment", hint: "e.g. http://127.0.0.1:8000/api"))
        } else if let bad = basePath.utf8.first(where: { !Self.pathBytes[Int($0)] }) {
            // Prefixed to every upstream request line: a space or control byte would break each one (found in review).
            issues.append(ConfigIssue(key: key, problem: "base path holds byte 0x\(String(bad, radix: 16)), not allowed in a path",
                                      hint: "percent-encode it, e.g. /my%20api"))
        }
        guard let address = parseAddress(authority, key: key, issues: &issues) else { return .echo }
        return .http(address: address, hostHeader: authority.hasSuffix(":80") ? String(authority.dropLast(3)) : authority, basePath: basePath)
    }

    static func parseRoute(_ node: YAMLNode, key: String, issues: inout [ConfigIssue]) -> RouteRule? {
        guard let map = node.mapping else {
            issues.append(ConfigIssue(key: key, problem: "is not a mapping", hint: "{path: /admin, match: prefix, mode: required}"))
            return nil
        }
        let count = issues.count
        guard let path = map["path"]?.string, path.hasPrefix("/") else {
            issues.append(ConfigIssue(key: "\(key).path", problem: "is missing or not an absolute path", hint: "e.g. /admin"))
            return nil
        }
        let matchKind = map["match"]?.string ?? (path.contains("*") ? "glob" : "prefix")
        let match: PathMatch
        if matchKind != "glob", PathNormalizer.normalize(path: path[...]) == nil {
            issues.append(ConfigIssue(key: "\(key).path", problem: "\"\(path.prefix(60))\" cannot be normalised (encoded `/`, `\\` or NUL)", hint: "write the path as requests reach it, decoded"))
        }
        switch matchKind {
        case "prefix": match = .prefix(PathNormalizer.normalize(path: path[...]) ?? path)
        case "exact": match = .exact(PathNormalizer.normalize(path: path[...]) ?? path)
        case "glob": match = .glob(path)
        default:
            issues.append(ConfigIssue(key: "\(key).match", problem: "\"\(matchKind.prefix(20))\" is not prefix, exact or glob", hint: "e.g. match: prefix"))
            match = .prefix(path)
        }
        var mode = AuthMode.required
        if let m = map["mode"]?.string {
            if let parsed = AuthMode(rawValue: m) { mode = parsed } else {
                issues.append(ConfigIssue(key: "\(key).mode", problem: "\"\(m.prefix(20))\" is not required, optional or public", hint: "e.g. mode: required"))
            }
        }
        var methods: Set<String>?
        if let m = map["methods"] {
            let list = m.sequence.map { $0.compactMap(\.string) } ?? (m.string.map { $0.split(separator: ",").map { $0.trimmingSpaces } } ?? [])
            methods = Set(list.map { $0.uppercased() })
            if list.isEmpty { issues.append(ConfigIssue(key: "\(key).methods", problem: "is empty", hint: "e.g. methods: [GET, POST]")) }
        }
        var requirements: [ClaimRequirement] = []
        for (j, r) in (map["require"]?.sequence ?? []).enumerated() {
            let rkey = "\(key).require[\(j)]"
            guard let rm = r.mapping, let claim = rm["claim"]?.string, !claim.isEmpty else {
                issues.append(ConfigIssue(key: rkey, problem: "needs `claim:` and one of contains/equals/present", hint: "{claim: roles, contains: admin}"))
                continue
            }
            if let v = rm["contains"] { requirements.append(.contains(path: claim, value: jsonValue(v))) } else if let v = rm["equals"] { requirements.append(.equals(path: claim, value: jsonValue(v))) } else if rm["present"] != nil { requirements.append(.present(path: claim)) } else {
                issues.append(ConfigIssue(key: rkey, problem: "has no contains/equals/present", hint: "{claim: email_verified, equals: true}"))
            }
        }
        // Claim requirements are checked on a verified session only: on a public or optional route a request without
        // one goes through anonymously, so the requirement would be skipped by sending no token (found in review).
        if !requirements.isEmpty && mode != .required {
            issues.append(ConfigIssue(key: "\(key).require", problem: "cannot apply to a \(mode) route (a request without a token would skip it)",
                                      hint: "use mode: required"))
        }
        return issues.count == count ? RouteRule(match: match, methods: methods, mode: mode, requirements: requirements) : nil
    }

    /// A claim requirement's value: YAML 1.2 core-schema typing for plain scalars, quoted scalars stay strings.
    static func jsonValue(_ node: YAMLNode) -> JSONValue {
        switch node {
        case .sequence(let items): return .array(items.map(jsonValue))
        case .mapping(let map): return .object(JSONObject(map.entries.map { ($0.key, jsonValue($0.value)) }))
        case .scalar(let scalar):
            guard scalar.style == .plain else { return .string(scalar.text) }
            if let b = node.bool { return .bool(b) }
            if let i = node.int { return .integer(i) }
            if let d = node.float { return .number(d) }
            if node.isNull { return .null }
            return .string(scalar.text)
        }
    }

    /// A file's text, or nil when it cannot be read or is not UTF-8 (reported as `cannot read`).
    static func readTextFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return DescriptorInput.readToEnd(fd).flatMap { String(validating: $0, as: UTF8.self) }
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace (spaces, tabs, line breaks).
    public var trimmingSpaces: String {
        var text = self[...]
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}

extension Double {
    var cleanText: String { self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self) }
}

/// Reading a whole descriptor on the C library (the config file here; standard input for the CLI's `--token-stdin`).
public enum DescriptorInput {
    /// Everything readable until end of file, or nil on a read error (a directory, say); retries `EINTR`.
    public static func readToEnd(_ fd: Int32) -> [UInt8]? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { bytes.append(contentsOf: chunk[..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            return n < 0 ? nil : bytes
        }
    }
}
