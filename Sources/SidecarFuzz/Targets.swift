import AuthJSToken
import SidecarCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum FuzzTarget: String, CaseIterable, Sendable {
    case tokenV5 = "token-v5"
    case tokenV4 = "token-v4"
    case tokenJWS = "token-jws"
    case tokenAuto = "token-auto"
    case cookie
    case headers
    case path
    case config
    case json
    case pipeline
    case forward
    case upstreamResponse = "upstream-response"
    case clientRequest = "client-request"
}

/// Fixed inputs shared by every target: the key ring is derived once per process, never per input.
enum Fixed {
    static let secrets = ["fuzz-secret-1", "fuzz-secret-0"]
    static let salts = SessionCookie.defaults.map(\.salt)
    /// 2027-01-15; tokens minted by make-corpus.py carry iat 2026-01-01 and exp 2099-01-01.
    static let now: Double = 1_800_000_000
    static let clockTolerance: Double = 15

    static let ring: KeyRing = {
        do { return try KeyRing(secrets: secrets, v5Salts: salts) } catch {
            printErr("SidecarFuzz: cannot build the key ring: \(error)\n")
            _exit(2)
        }
    }()
    static let verifier = TokenVerifier(keys: ring, options: VerifierOptions(clockTolerance: clockTolerance))

    static let authenticator: TokenAuthenticator = {
        do { return try TokenAuthenticator(secrets: secrets, cookies: SessionCookie.defaults,
                                           options: VerifierOptions(clockTolerance: clockTolerance)) } catch {
            printErr("SidecarFuzz: cannot build the authenticator: \(error)\n")
            _exit(2)
        }
    }()

    /// The default identity headers plus mappings that reach arrays, numbers, booleans, objects and dotted paths.
    static let mapper = IdentityHeaderMapper(
        mappings: IdentityHeaderMapper.defaultMappings + [
            .init(claimPath: "roles", header: "X-Auth-Roles"),
            .init(claimPath: "groups", header: "X-Auth-Groups"),
            .init(claimPath: "email_verified", header: "X-Auth-Email-Verified"),
            .init(claimPath: "exp", header: "X-Auth-Exp"),
            .init(claimPath: "address", header: "X-Auth-Address"),
            .init(claimPath: "address.country", header: "X-Auth-Country"),
            .init(claimPath: "a.b.c", header: "X-Auth-Deep"),
            .init(claimPath: "", header: "X-Auth-Empty"),
            .init(claimPath: "user", header: "X-Auth-User"),
        ],
        claimsHeader: "X-Auth-Claims", maxValueBytes: 8192)

    static let mapperHeaderNames = Set(mapper.mappings.map(\.header) + [mapper.claimsHeader!])

    static let configEnvironment: [String: String] = ["AUTH_SECRET": "x"]

    /// Failure reasons must be single printable lines (they reach logs and `decode`'s one-line stderr contract, and
    /// JSONParser promises never to quote input). `FUZZ_STRICT=0` turns this check off.
    /// `FUZZ_VERBOSE=1`: print what each input turned into (for reading reproducers; slow).
    static let verbose: Bool = getenv("FUZZ_VERBOSE").map { String(cString: $0) == "1" } ?? false
    /// A typical small policy, only for `FUZZ_VERBOSE` output of the `path` target.
    static let demoPolicy = RoutePolicy(rules: [
        RouteRule(match: .prefix("/admin"), mode: .required),
        RouteRule(match: .glob("/**/*.css"), mode: .public),
        RouteRule(match: .prefix("/"), mode: .public),
    ])
    static let ignored: Set<String> = Set((getenv("FUZZ_IGNORE").map { String(cString: $0) } ?? "").split(separator: ",").map(String.init))
    static let strict: Bool = getenv("FUZZ_STRICT").map { String(cString: $0) != "0" } ?? true
}

enum FuzzTargets {
    /// Outcome counts (`FUZZ_OUTCOMES=1` under libFuzzer, always in replay mode); libFuzzer is single-threaded.
    nonisolated(unsafe) static var collectOutcomes = false
    nonisolated(unsafe) static var outcomes: [String: Int] = [:]

    static func note(_ outcome: @autoclosure () -> String) {
        if collectOutcomes { outcomes[outcome(), default: 0] += 1 }
    }

    /// Builds whatever `target` needs before the first input, so set-up cost is not charged to one input.
    static func prepare(_ target: FuzzTarget) {
        if getenv("FUZZ_OUTCOMES").map({ String(cString: $0) == "1" }) ?? false {
            collectOutcomes = true
            atexit {
                let line = FuzzTargets.outcomes.sorted { $0.value > $1.value }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                printErr("SidecarFuzz outcomes: \(line)\n")
            }
        }
        switch target {
        case .tokenV5, .tokenV4, .tokenJWS, .tokenAuto: _ = Fixed.verifier
        case .cookie: _ = Fixed.authenticator
        case .headers: _ = Fixed.mapper
        case .path, .json, .config: break
        case .pipeline: PipelineTarget.prepare()
        case .forward: Forward.prepare()
        case .upstreamResponse, .clientRequest: break
        }
    }

    static func run(_ target: FuzzTarget, _ bytes: UnsafeBufferPointer<UInt8>) {
        switch target {
        case .tokenV5: token(bytes, target, scope: KeyScope(v5Salts: (1 << UInt64(Fixed.salts.count)) - 1, v4: false, jws: false))
        case .tokenV4: token(bytes, target, scope: KeyScope(v5Salts: 0, v4: true, jws: false))
        case .tokenJWS: token(bytes, target, scope: KeyScope(v5Salts: 0, v4: false, jws: true))
        case .tokenAuto: token(bytes, target, scope: Fixed.ring.everything)
        case .cookie: cookie(bytes)
        case .headers: headers(bytes)
        case .path: path(bytes)
        case .config: config(bytes)
        case .json: json(bytes)
        case .pipeline: PipelineTarget.run(bytes)
        case .forward: Forward.run(bytes)
        case .upstreamResponse: UpstreamResponseTarget.run(bytes)
        case .clientRequest: ClientRequestTarget.run(bytes)
        }
    }

    // MARK: - invariants

    static func fail(_ target: FuzzTarget, _ message: String) -> Never {
        printErr("INVARIANT \(target.rawValue): \(message)\n")
        abort()
    }

    static func check(_ condition: Bool, _ target: FuzzTarget, _ message: @autoclosure () -> String) {
        if !condition { fail(target, message()) }
    }

    /// A check with a name that `FUZZ_IGNORE=name,…` turns into a counted outcome (`ignored-<name>`), so a long run
    /// can keep looking for other problems once one is known.
    static func check(_ name: String, _ condition: Bool, _ target: FuzzTarget, _ message: @autoclosure () -> String) {
        if condition { return }
        if Fixed.ignored.contains(name) {
            note("ignored-\(name)")
            return
        }
        fail(target, "[\(name)] " + message())
    }

    /// A field value without trailing whitespace: llhttp keeps it, RFC 9110 §5.5 (and the sidecar's parsers) do not.
    static func trimmed(_ value: String) -> String {
        var bytes = Array(value.utf8)
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A JSON value as a short, printable excerpt for invariant messages.
    static func excerpt(_ bytes: some Collection<UInt8>, _ limit: Int = 200) -> String {
        var out = ""
        for b in bytes.prefix(limit) {
            if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\\") { out.append(Character(Unicode.Scalar(b))) } else {
                out += "\\x" + String(b, radix: 16).leftPad(2)
            }
        }
        return bytes.count > limit ? out + "…(\(bytes.count) bytes)" : out
    }

    /// Serialising parsed claims and parsing them back gives the same object (JSON-semantic equality).
    static func checkRoundTrip(_ object: JSONObject, _ target: FuzzTarget, _ what: String) {
        let text = JSONValue.object(object).serialized()
        switch JSONParser.parseObject(text, limits: JSONLimits(maxBytes: Int.max, maxDepth: 1 << 20), what: what) {
        case .success(let again):
            check(again == object, target, "\(what) changed after serialise/parse: \(excerpt(text))")
        case .failure(let f):
            fail(target, "\(what) serialised to text that does not parse (\(f)): \(excerpt(text))")
        }
    }

    static func checkFailure(_ f: VerificationFailure, _ target: FuzzTarget) {
        for secret in Fixed.secrets {
            check(!f.reason.contains(secret), target, "failure reason contains a secret: \(f)")
        }
        if Fixed.strict {
            check(f.reason.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }, target,
                  "failure reason is not a single printable line: \(excerpt(Array(f.reason.utf8)))")
        }
    }

    static func checkVerified(_ token: VerifiedToken, dotCount: Int?, scope: KeyScope, _ target: FuzzTarget) {
        if let dotCount {
            check(dotCount == 2 || dotCount == 4, target, "accepted a token with \(dotCount + 1) segments")
            check((dotCount == 2) == (token.format == .jws), target, "format \(token.format) from a token with \(dotCount + 1) segments")
        }
        switch token.format {
        case .jws:
            check(scope.jws, target, "accepted a JWS outside its scope")
            check(token.salt == nil, target, "JWS with a salt")
        case .nextauthV4:
            check(scope.v4, target, "accepted a v4 token outside its scope")
            check(token.salt == nil, target, "v4 token with a salt")
        case .authjsV5:
            guard let salt = token.salt, let si = Fixed.salts.firstIndex(of: salt) else { fail(target, "v5 token without a known salt") }
            check(scope.v5Salts & (1 << UInt64(si)) != 0, target, "v5 token opened with salt \(salt) outside its scope")
        }
        check(token.secretIndex >= 0 && token.secretIndex < Fixed.secrets.count, target, "secretIndex \(token.secretIndex)")
        // The claims are an object, and the verified payload is exactly that object.
        checkRoundTrip(token.claims, target, "claims")
        switch JSONParser.parseObject(token.payload) {
        case .success(let reparsed): check(reparsed == token.claims, target, "payload and claims differ")
        case .failure(let f): fail(target, "verified payload does not parse: \(f)")
        }
        for name in ["exp", "nbf", "iat"] {
            if let v = token.claims[name] { check(v.isNumber, target, "accepted a non-numeric \(name)") }
        }
        if let exp = token.claims["exp"]?.doubleValue {
            check(exp > Fixed.now - Fixed.clockTolerance, target, "accepted exp \(exp) at now \(Fixed.now)")
        }
        if let nbf = token.claims["nbf"]?.doubleValue {
            check(nbf <= Fixed.now + Fixed.clockTolerance, target, "accepted nbf \(nbf) at now \(Fixed.now)")
        }
        check(token.registered.subject == token.claims["sub"]?.stringValue, target, "registered.subject differs from sub")
    }

    // MARK: - targets

    static func token(_ bytes: UnsafeBufferPointer<UInt8>, _ target: FuzzTarget, scope: KeyScope) {
        switch Fixed.verifier.verify(bytes: bytes, scope: scope, now: Fixed.now) {
        case .success(let token):
            note("valid-\(token.format.rawValue)")
            checkVerified(token, dotCount: bytes.reduce(0) { $0 + ($1 == UInt8(ascii: ".") ? 1 : 0) }, scope: scope, target)
        case .failure(let f):
            note(f.code.rawValue)
            checkFailure(f, target)
        }
    }

    static func cookie(_ bytes: UnsafeBufferPointer<UInt8>) {
        let nul = bytes.firstIndex(of: 0)
        let cookieHeader = String(decoding: UnsafeBufferPointer(rebasing: bytes[0..<(nul ?? bytes.count)]), as: UTF8.self)
        let authorization = nul.map { String(decoding: UnsafeBufferPointer(rebasing: bytes[($0 + 1)...]), as: UTF8.self) }
        let uncached = Fixed.authenticator.authenticate(cookieHeader: cookieHeader, authorization: authorization, now: Fixed.now)
        switch uncached {
        case .success(let token):
            note("valid-\(token.format.rawValue)")
            checkVerified(token, dotCount: nil, scope: Fixed.ring.everything, .cookie)
        case .failure(let f):
            note(f.code.rawValue)
            checkFailure(f, .cookie)
        }
        // The proxy's path: the cookie's raw bytes (not repaired into a string), through a cache, twice — a miss that
        // fills it, then a hit — with the same answer both times, and the string path's answer when the bytes are
        // valid UTF-8 (the same input then). Bytes that are not can differ: unquoting a value drops its last byte, as
        // JavaScript drops the last unit of a header string (one per byte: Fetch's byte strings), where a repaired
        // string has a three-byte U+FFFD in its place (found by this target).
        let raw = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[0..<(nul ?? bytes.count)]))
        let isUTF8 = String(validating: raw, as: UTF8.self) != nil
        var cache = VerifiedTokenCache(capacity: 8)
        var first: Result<VerifiedTokenCache.Entry, VerificationFailure>?
        for round in 0..<2 {
            let proxied = Fixed.authenticator.authenticate(cookie: raw.isEmpty ? nil : raw, authorization: authorization, now: Fixed.now,
                                                           cache: &cache, identity: Fixed.mapper)
            if case .success(let b) = proxied {
                checkVerified(b.token, dotCount: nil, scope: Fixed.ring.everything, .cookie)
                let lines = b.headers.map { "\($0.0): \($0.1)\r\n" }.joined()
                check(b.headerLines == Array(lines.utf8), .cookie, "round \(round): header lines are not the headers' wire form")
            }
            if isUTF8 { sameAnswer(uncached.map { $0 }, proxied.map(\.token), "round \(round): raw bytes against the string path") }
            if let first { sameAnswer(first.map(\.token), proxied.map(\.token), "the cache's hit against its miss") }
            first = proxied
        }
    }

    /// Two authentications gave the same answer: the same verified token, or a failure with the same code.
    static func sameAnswer(_ a: Result<VerifiedToken, VerificationFailure>, _ b: Result<VerifiedToken, VerificationFailure>, _ what: String) {
        switch (a, b) {
        case (.success(let x), .success(let y)):
            let same: Bool = x.claims == y.claims && x.format == y.format && x.secretIndex == y.secretIndex
            check(same, .cookie, "\(what): another token verified")
        case (.failure(let x), .failure(let y)):
            check(x.code == y.code, .cookie, "\(what): failed with \(y.code), not \(x.code)")
        default:
            fail(.cookie, "\(what): they disagree on whether the token verifies")
        }
    }

    static func headers(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard case .success(let claims) = JSONParser.parseObject(bytes, limits: JSONLimits(), what: "claims") else {
            note("not-an-object")
            return
        }
        note("object")
        let token = VerifiedToken(claims: claims, payload: Array(bytes), format: .jws, secretIndex: 0, salt: nil)
        let (headers, dropped) = Fixed.mapper.headers(for: token)
        let names = Fixed.mapperHeaderNames
        for (name, value) in headers {
            check(names.contains(name), .headers, "unexpected header \(name)")
            check(value.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }, .headers,
                  "\(name) value has a control byte: \(excerpt(Array(value.utf8)))")
            check(value.utf8.allSatisfy { $0 < 0x80 }, .headers, "\(name) value is not ASCII: \(excerpt(Array(value.utf8)))")
            check(value.utf8.count <= Fixed.mapper.maxValueBytes, .headers, "\(name) value over maxValueBytes")
            if name == Fixed.mapper.claimsHeader {
                guard let json = Base64URL.decode(value) else { fail(.headers, "claims header is not base64url") }
                switch JSONParser.parseObject(json, limits: JSONLimits(maxBytes: Int.max, maxDepth: 1 << 20)) {
                case .success(let again): check(again == claims, .headers, "claims header does not decode to the claims")
                case .failure(let f): fail(.headers, "claims header JSON does not parse: \(f)")
                }
            } else if let m = Fixed.mapper.mappings.first(where: { $0.header == name }),
                      case .string(let s)? = ClaimPath.lookup(m.claimPath, in: claims) {
                // What the upstream decodes is byte-for-byte the claim.
                guard let decoded = IdentityHeaderMapper.decodeValue(value) else { fail(.headers, "\(name) does not decode") }
                check(Array(decoded.utf8) == Array(s.utf8), .headers,
                      "\(name): decode(\(excerpt(Array(value.utf8)))) != claim \(excerpt(Array(s.utf8)))")
            }
        }
        for name in dropped { check(names.contains(name), .headers, "unexpected dropped header \(name)") }
        // decodeValue(encodeValue(x)) == x for every string anywhere in the claims (member names included).
        func walk(_ v: JSONValue) {
            switch v {
            case .string(let s): roundTrip(s)
            case .array(let items): items.forEach(walk)
            case .object(let o): for m in o.members { roundTrip(m.key); walk(m.value) }
            default: break
            }
        }
        func roundTrip(_ s: String) {
            let encoded = IdentityHeaderMapper.encodeValue(s)
            check(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, .headers, "encodeValue left a non-printable byte: \(excerpt(Array(encoded.utf8)))")
            guard let decoded = IdentityHeaderMapper.decodeValue(encoded) else {
                fail(.headers, "decodeValue(encodeValue(\(excerpt(Array(s.utf8))))) is nil")
            }
            check(Array(decoded.utf8) == Array(s.utf8), .headers,
                  "decodeValue(encodeValue(x)) != x for x = \(excerpt(Array(s.utf8))) (encoded \(excerpt(Array(encoded.utf8))))")
        }
        walk(.object(claims))
    }

    static func path(_ bytes: UnsafeBufferPointer<UInt8>) {
        let target = "/" + String(decoding: bytes, as: UTF8.self)
        guard let (path, query) = PathNormalizer.normalize(target: target) else {
            if Fixed.verbose { print("path: \(excerpt(Array(target.utf8))) -> refused (400)") }
            note("refused")
            return
        }
        if Fixed.verbose {
            let upstreamPath = path.utf8.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false).first.map(Array.init) ?? []
            print("path: \(excerpt(Array(target.utf8))) -> path \(excerpt(Array(path.utf8))) query \(query.map { excerpt(Array($0.utf8)) } ?? "nil")"
                  + "; demo policy (/admin required, /**/*.css public, / public) picks mode \(Fixed.demoPolicy.rule(method: "GET", path: path).mode)"
                  + " for it; an upstream splitting the forwarded path at the first '?' byte sees path \(excerpt(upstreamPath))")
        }
        note("normalised")
        // Byte-level checks on purpose: String.contains/hasPrefix compare grapheme clusters, so "?\u{301}" is not "?".
        let u = Array(path.utf8)
        func show() -> String { excerpt(Array(target.utf8)) }
        let slash = UInt8(ascii: "/")
        func has(_ needle: StaticString) -> Bool {
            let n = UnsafeBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount)
            var i = 0
            while i + n.count <= u.count {
                if u[i] == n[0], u[i..<(i + n.count)].elementsEqual(n) { return true }
                i += 1
            }
            return false
        }
        func ends(_ suffix: StaticString) -> Bool {
            let n = UnsafeBufferPointer(start: suffix.utf8Start, count: suffix.utf8CodeUnitCount)
            return u.count >= n.count && u[(u.count - n.count)...].elementsEqual(n)
        }
        check(u.first == slash, .path, "result does not start with '/': \(show())")
        check(!has("//"), .path, "result contains '//': \(show()) -> \(excerpt(u))")
        check(!has("/./") && !ends("/."), .path, "result has a '.' segment: \(show()) -> \(excerpt(u))")
        check(!has("/../") && !ends("/.."), .path, "result has a '..' segment: \(show()) -> \(excerpt(u))")
        check("path-query", !u.contains(UInt8(ascii: "?")), .path, "result contains a '?' byte (the query was not split off): \(show()) -> \(excerpt(u))")
        check(u.allSatisfy { $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: ";") }, .path,
              "result has a control, space, backslash or ';': \(show()) -> \(excerpt(u))")
        // The query is the target's bytes after its first '?' byte.
        let t = Array(target.utf8)
        let qByte = t.firstIndex(of: UInt8(ascii: "?"))
        check("path-query", (query == nil) == (qByte == nil), .path, "query \(query == nil ? "missing" : "present") but the target has \(qByte == nil ? "no" : "a") '?' byte: \(show())")
        if let q = query, let qb = qByte { check("path-query", Array(q.utf8) == Array(t[(qb + 1)...]), .path, "query is not the bytes after the first '?': \(show())") }
        // Route prefixes must match the bytes the upstream will see (PathMatch.prefix documents `/docs` covering `/docs/…`).
        for base in ["/admin", "/api/v1"] {
            let b = Array(base.utf8)
            let bytewise = u == b || (u.count > b.count && u[0..<b.count].elementsEqual(b) && u[b.count] == slash)
            check("path-prefix", PathMatch.prefix(base).matches(path) == bytewise, .path,
                  "prefix rule \(base) \(bytewise ? "misses" : "matches") \(excerpt(u)) although its bytes \(bytewise ? "are" : "are not") under \(base)/ (from \(show()))")
        }
        guard let (again, againQuery) = PathNormalizer.normalize(target: path) else {
            fail(.path, "normalised path is refused when normalised again: \(show()) -> \(excerpt(u))")
        }
        check(Array(again.utf8) == u, .path, "not idempotent: \(show()) -> \(excerpt(u)) -> \(excerpt(Array(again.utf8)))")
        check(againQuery == nil, .path, "normalised path grew a query")
    }

    static func config(_ bytes: UnsafeBufferPointer<UInt8>) {
        switch ConfigLoader.load(environment: Fixed.configEnvironment, flags: [:], yaml: bytes, named: "fuzz.yaml", coreCount: 1) {
        case .success(let config):
            note("valid")
            check(config.threads >= 1 && config.threads <= 256, .config, "threads \(config.threads)")
            check(config.healthPrefix.hasPrefix("/") && !config.healthPrefix.hasSuffix("/"), .config, "health prefix \(config.healthPrefix)")
            check(config.realm.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") },
                  .config, "realm \(excerpt(Array(config.realm.utf8)))")
            for (name, _) in config.identity.mappings.map({ ($0.header, $0.claimPath) }) {
                check(HeaderName.isValid(name), .config, "identity header name \(excerpt(Array(name.utf8)))")
            }
            // Route decisions over a few short fixed paths: a rule set must always answer.
            for p in ["/", "/admin", "/admin/users/1", "/docs/a/b.json", "/api/v1/x"] {
                _ = config.routes.rule(method: "GET", path: p)
            }
            for cookie in config.authenticator.extractor.cookies {
                check(HeaderName.isValid(cookie.name), .config, "cookie name \(excerpt(Array(cookie.name.utf8)))")
            }
        case .failure(let issues):
            note("issues")
            check(!issues.issues.isEmpty, .config, "failure without issues")
            for issue in issues.issues {
                check(!issue.problem.contains("fuzz-secret"), .config, "issue mentions a secret")
            }
        }
    }

    static func json(_ bytes: UnsafeBufferPointer<UInt8>) {
        switch JSONParser.parseObject(bytes, limits: JSONLimits(), what: "JSON") {
        case .success(let object):
            note("object")
            checkRoundTrip(object, .json, "object")
        case .failure(let f):
            note(f.code.rawValue)
            check(f.code == .malformed || f.code == .tooLarge, .json, "unexpected code \(f.code)")
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Writes to fd 2 directly (Swift 6 refuses the C `stderr` global).
func printErr(_ s: String) {
    var s = s
    s.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(2, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { return }
            off += n
        }
    }
}
