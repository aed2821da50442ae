import AuthJSToken
import Foundation
@testable import SidecarCore
import Testing
import VectorFixtures

/// Pure request policy: path normalisation, route matching, claim requirements, identity headers and the combined
/// AccessPolicy decision. Every suite is nested in `PolicyTests` so `--filter PolicyTests` selects them all.
@Suite("Policy")
struct PolicyTests {}

// MARK: - PathNormalizer

extension PolicyTests {
    @Suite("PathNormalizer")
    struct PathNormalizerTests {
        /// (request target, expected normalised path; nil = refused with 400).
        static let cases: [(String, String?)] = [
            // Dot segments (RFC 3986 §5.2.4), never above the root.
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/.", "/"),
            ("/", "/"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            // Percent-encoded unreserved characters are decoded.
            ("/%61dmin", "/admin"),
            ("/%7E", "/~"),
            ("/%7euser", "/~user"),
            ("/%41%42%43", "/ABC"),
            ("/a%2Db%5F%30", "/a-b_0"),
            // Other escapes are kept, upper-cased.
            ("/%2a", "/%2A"),
            ("/a%3bb", "/a%3Bb"),
            ("/%c3%a9", "/%C3%A9"),
            ("/%25", "/%25"),
            ("/%3f", "/%3F"),
            // Structure-changing escapes and raw controls are refused.
            ("/a%2Fb", nil),
            ("/a%2fb", nil),
            ("/%2F", nil),
            ("/a%5Cb", nil),
            ("/a%5cb", nil),
            ("/a%00b", nil),
            ("/a%0A", nil),
            ("/a%0d", nil),
            ("/a%7F", nil),
            ("/a\\b", nil),
            ("/\\admin", nil),
            ("/a\u{01}b", nil),
            ("/a\tb", nil),
            ("/a\nb", nil),
            ("/a\rb", nil),
            ("/a b", nil),
            ("/a\u{7F}", nil),
            // Truncated or invalid escapes.
            ("/a%2", nil),
            ("/a%", nil),
            ("/a%zz", nil),
            ("/a%g1", nil),
            ("/%%41", nil),
            // Not origin-form.
            ("a/b", nil),
            ("", nil),
            ("*", nil),
            ("http://x/y", nil),
            ("?x=1", nil),
            // `;params` dropped per segment.
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/..;/admin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/public/..;x=1/admin", "/admin"),
            ("/admin;", "/admin"),
            ("/;x/admin", "/admin"),
            ("/a/.;/b", "/a/b"),
            // Empty segments collapse; a trailing slash is kept.
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/docs/", "/docs/"),
            ("/docs//", "/docs/"),
            // `%2e%2e` is resolved like `..`.
            ("/%2e%2e/admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/public/%2e./admin", "/admin"),
            ("/a/%2e/b", "/a/b"),
            ("/a/%2e%2e", "/"),
        ]

        @Test("normalise(target:)", arguments: cases)
        func normalize(target: String, expected: String?) {
            let result = PathNormalizer.normalize(target: target)
            #expect(result?.path == expected, "target \(target.debugDescription)")
            if let expected, let result {
                // Idempotent: normalising the output changes nothing.
                #expect(PathNormalizer.normalize(target: result.path)?.path == expected)
            }
        }

        /// (target, expected path, expected raw query).
        static let queryCases: [(String, String, String?)] = [
            ("/a", "/a", nil),
            ("/a?", "/a", ""),
            ("/a?x=1", "/a", "x=1"),
            ("/a/../b?x=%2F&y=../z", "/b", "x=%2F&y=../z"),
            ("/a??b", "/a", "?b"),
            ("/%61?%61", "/a", "%61"),
            ("/a?q=\\", "/a", "q=\\"),
            ("/a%3F?b", "/a%3F", "b"),
            ("/docs/?p=1", "/docs/", "p=1"),
        ]

        @Test("the query is split off and returned raw", arguments: queryCases)
        func query(target: String, path: String, query: String?) throws {
            let result = try #require(PathNormalizer.normalize(target: target))
            #expect(result.path == path)
            #expect(result.query.map(String.init) == query)
        }

        @Test("paths over maxPathBytes are refused")
        func tooLong() {
            let ok = "/" + String(repeating: "a", count: PathNormalizer.maxPathBytes - 1)
            #expect(PathNormalizer.normalize(target: ok)?.path == ok)
            #expect(PathNormalizer.normalize(target: ok + "a") == nil)
        }
    }
}

// MARK: - PathMatch / RoutePolicy

extension PolicyTests {
    @Suite("PathMatch and RoutePolicy")
    struct RouteTests {
        static let matchCases: [(PathMatch, String, Bool)] = [
            (.prefix("/docs"), "/docs", true),
            (.prefix("/docs"), "/docs/", true),
            (.prefix("/docs"), "/docs/a/b", true),
            (.prefix("/docs"), "/docsx", false),
            (.prefix("/docs"), "/doc", false),
            (.prefix("/docs"), "/", false),
            (.prefix("/docs"), "/x/docs", false),
            (.prefix("/docs/"), "/docs/x", true),
            (.prefix("/docs/"), "/docs", true),
            (.prefix("/docs/"), "/docsx", false),
            (.prefix("/"), "/", true),
            (.prefix("/"), "/anything/at/all", true),
            (.exact("/api/feed"), "/api/feed", true),
            (.exact("/api/feed"), "/api/feed/", false),
            (.exact("/api/feed"), "/api/feed/x", false),
            (.exact("/api/feed"), "/api/fee", false),
            (.glob("/api/*/x"), "/api/v1/x", true),
            (.glob("/api/*/x"), "/api/v1/v2/x", false),
            (.glob("/api/*/x"), "/api/x", false),
            (.glob("/files/*.png"), "/files/a.png", true),
            (.glob("/files/*.png"), "/files/a/b.png", false),
            (.glob("/files/*.png"), "/files/a.jpg", false),
            (.glob("/api/**"), "/api/a", true),
            (.glob("/api/**"), "/api/a/b/c", true),
            (.glob("/api/**"), "/api/", true),
            (.glob("/api/**"), "/api", false),
            (.glob("/api/**"), "/apix/a", false),
            (.glob("/**/secret"), "/a/b/secret", true),
            (.glob("/**/secret"), "/a/b/secretx", false),
            (.glob("/a*"), "/abc", true),
            (.glob("/a*"), "/abc/d", false),
            (.glob("/exact"), "/exact", true),
            (.glob("/exact"), "/exact/", false),
        ]

        @Test("PathMatch.matches", arguments: matchCases)
        func matches(match: PathMatch, path: String, expected: Bool) {
            #expect(match.matches(path) == expected, "\(match) vs \(path)")
        }

        /// The previous matcher, kept as the reference for what a glob means: plain backtracking (exponential in the
        /// number of stars on a long path).
        static func referenceGlob(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
            guard let c = p.first else { return s.isEmpty }
            if c == UInt8(ascii: "*") {
                let doubleStar = p.dropFirst().first == UInt8(ascii: "*")
                let rest = doubleStar ? p.dropFirst(2) : p.dropFirst()
                var i = s.startIndex
                while true {
                    if referenceGlob(rest, s[i...]) { return true }
                    if i == s.endIndex { return false }
                    if !doubleStar && s[i] == UInt8(ascii: "/") { return false }
                    i += 1
                }
            }
            guard let d = s.first, d == c else { return false }
            return referenceGlob(p.dropFirst(), s.dropFirst())
        }

        @Test("glob agrees with the backtracking reference on 20 000 random short patterns and paths")
        func globMatchesReference() {
            var rng = SplitMix64(seed: 0x5EED_61_0B)
            let patternBytes = Array("/ab*".utf8), pathBytes = Array("/ab".utf8)
            for _ in 0..<20_000 {
                let pattern = (0..<Int(rng.next() % 9)).map { _ in patternBytes[Int(rng.next() % UInt64(patternBytes.count))] }
                let path = (0..<Int(rng.next() % 9)).map { _ in pathBytes[Int(rng.next() % UInt64(pathBytes.count))] }
                let p = String(decoding: pattern, as: UTF8.self), s = String(decoding: path, as: UTF8.self)
                #expect(PathMatch.glob(p, s) == Self.referenceGlob(pattern[...], path[...]), "\(p) vs \(s)")
            }
        }

        /// Inputs on which the backtracking matcher never finished (the first is the config fuzz target's find,
        /// Tests/fuzz/crashes/config-1); they must simply be answered.
        @Test func globWithManyStarsOnLongPathsIsAnswered() {
            #expect(!PathMatch.glob("/a" + String(repeating: "*", count: 49) + ";EASNTdm", "/admin/users/1"))
            let long = "/api/" + String(repeating: "a/", count: 4_000)
            #expect(!PathMatch.glob("/api/**/x/**/y/**/z", long))
            #expect(PathMatch.glob("/api/**/a/**/a/**", long))
            #expect(!PathMatch.glob("/" + String(repeating: "*a", count: 30) + "b", "/" + String(repeating: "a", count: 5_000)))
        }

        static let policy = RoutePolicy(rules: [
            RouteRule(match: .prefix("/public"), mode: .public),
            RouteRule(match: .prefix("/api/admin"), methods: ["GET"], mode: .optional),
            RouteRule(match: .prefix("/api/admin"), mode: .required, requirements: [.present(path: "admin")]),
            RouteRule(match: .glob("/api/**"), mode: .optional),
            RouteRule(match: .prefix("/api"), mode: .public),  // shadowed by the glob for children
        ])

        @Test("first matching rule wins; methods filter; the fallback requires a token")
        func ruleSelection() {
            let p = Self.policy
            #expect(p.rule(method: "GET", path: "/public/x") == p.rules[0])
            #expect(p.rule(method: "GET", path: "/api/admin/users") == p.rules[1])
            #expect(p.rule(method: "POST", path: "/api/admin/users") == p.rules[2], "GET-only rule skipped for POST")
            #expect(p.rule(method: "DELETE", path: "/api/admin") == p.rules[2])
            #expect(p.rule(method: "POST", path: "/api/things") == p.rules[3])
            #expect(p.rule(method: "GET", path: "/api") == p.rules[4])
            #expect(p.rule(method: "GET", path: "/publicx") == RoutePolicy.fallback)
            #expect(p.rule(method: "GET", path: "/") == RoutePolicy.fallback)
            #expect(RoutePolicy.fallback.mode == .required)
            #expect(RoutePolicy.fallback.match == .prefix("/"))
            #expect(RoutePolicy.fallback.requirements.isEmpty)
            #expect(RoutePolicy(rules: []).rule(method: "GET", path: "/anything") == RoutePolicy.fallback)
        }

        /// An upstream runs its GET handler for HEAD: a GET rule must decide HEAD too, or a protected GET route
        /// followed by a public catch-all leaves HEAD of the same path public (found in review).
        @Test("a rule listing GET matches HEAD; an earlier HEAD rule still decides HEAD first")
        func headFollowsGet() {
            let protected = RoutePolicy(rules: [
                RouteRule(match: .prefix("/admin"), methods: ["GET", "POST"], mode: .required),
                RouteRule(match: .prefix("/"), mode: .public),
            ])
            #expect(protected.rule(method: "HEAD", path: "/admin/x") == protected.rules[0])
            #expect(protected.rule(method: "PUT", path: "/admin/x") == protected.rules[1], "only HEAD follows GET")
            let postOnly = RoutePolicy(rules: [RouteRule(match: .prefix("/admin"), methods: ["POST"], mode: .required),
                                               RouteRule(match: .prefix("/"), mode: .public)])
            #expect(postOnly.rule(method: "HEAD", path: "/admin/x") == postOnly.rules[1], "HEAD follows GET, not any method")
            let apart = RoutePolicy(rules: [RouteRule(match: .prefix("/feed"), methods: ["HEAD"], mode: .public),
                                            RouteRule(match: .prefix("/feed"), methods: ["GET"], mode: .required)])
            #expect(apart.rule(method: "HEAD", path: "/feed") == apart.rules[0])
            #expect(apart.rule(method: "GET", path: "/feed") == apart.rules[1])
        }

        @Test("a rule whose methods exclude the request never matches it, whatever its path")
        func methodsOnly() {
            let p = RoutePolicy(rules: [RouteRule(match: .prefix("/"), methods: ["GET", "HEAD"], mode: .public)])
            #expect(p.rule(method: "GET", path: "/x").mode == .public)
            #expect(p.rule(method: "HEAD", path: "/x").mode == .public)
            #expect(p.rule(method: "POST", path: "/x") == RoutePolicy.fallback)
            #expect(p.rule(method: "OPTIONS", path: "/x") == RoutePolicy.fallback)
        }
    }
}

// MARK: - ClaimRequirement

extension PolicyTests {
    @Suite("ClaimRequirement")
    struct ClaimRequirementTests {
        static let claims = JSONObject([
            ("sub", .string("user-1")),
            ("roles", .array([.string("admin"), .string("user"), .integer(7)])),
            ("scope", .string("read write admin")),
            ("csv", .string("editor,admin")),
            ("tabbed", .string("viewer\tadmin")),
            ("kelvin", .string("\u{212A}im")),
            ("single", .string("admin")),
            ("count", .integer(3)),
            ("ratio", .number(1.5)),
            ("email_verified", .bool(true)),
            ("disabled", .bool(false)),
            ("nothing", .null),
            ("empty", .string("")),
            ("org", .object(JSONObject([("id", .string("org-nested")), ("team", .object(JSONObject([("name", .string("blue"))])))]))),
            ("org.id", .string("org-direct")),
            ("address", .object(JSONObject([("country", .string("NZ"))]))),
        ])

        static let cases: [(ClaimRequirement, Bool)] = [
            // contains: arrays
            (.contains(path: "roles", value: .string("admin")), true),
            (.contains(path: "roles", value: .string("user")), true),
            (.contains(path: "roles", value: .string("root")), false),
            (.contains(path: "roles", value: .string("adm")), false),
            (.contains(path: "roles", value: .integer(7)), true),
            (.contains(path: "roles", value: .number(7.0)), true),
            (.contains(path: "roles", value: .string("7")), false),
            // contains: space-separated scope strings, and a plain string equal to the value
            (.contains(path: "scope", value: .string("write")), true),
            (.contains(path: "scope", value: .string("admin")), true),
            (.contains(path: "scope", value: .string("adm")), false),
            // comma-separated role strings too (as the upstream helpers read them), but no other separator
            (.contains(path: "csv", value: .string("admin")), true),
            (.contains(path: "csv", value: .string("editor")), true),
            (.contains(path: "tabbed", value: .string("admin")), false),
            // by bytes: U+212A KELVIN SIGN is not K (Swift's == says it is)
            (.equals(path: "kelvin", value: .string("Kim")), false),
            (.contains(path: "kelvin", value: .string("Kim")), false),
            (.equals(path: "kelvin", value: .string("\u{212A}im")), true),
            (.contains(path: "scope", value: .string("read write")), false),
            (.contains(path: "scope", value: .string("read write admin")), true),
            (.contains(path: "single", value: .string("admin")), true),
            (.contains(path: "scope", value: .integer(1)), false),
            (.contains(path: "scope", value: .bool(true)), false),
            // contains: non-array, non-string claims and missing claims
            (.contains(path: "count", value: .integer(3)), false),
            (.contains(path: "email_verified", value: .bool(true)), false),
            (.contains(path: "missing", value: .string("x")), false),
            (.contains(path: "nothing", value: .null), false),
            // equals
            (.equals(path: "email_verified", value: .bool(true)), true),
            (.equals(path: "email_verified", value: .bool(false)), false),
            (.equals(path: "email_verified", value: .string("true")), false),
            (.equals(path: "disabled", value: .bool(false)), true),
            (.equals(path: "sub", value: .string("user-1")), true),
            (.equals(path: "sub", value: .string("user-2")), false),
            (.equals(path: "count", value: .integer(3)), true),
            (.equals(path: "count", value: .number(3.0)), true),
            (.equals(path: "count", value: .number(3.5)), false),
            (.equals(path: "count", value: .string("3")), false),
            (.equals(path: "ratio", value: .number(1.5)), true),
            (.equals(path: "ratio", value: .integer(1)), false),
            (.equals(path: "missing", value: .string("x")), false),
            // present: null is not present; false and "" are
            (.present(path: "sub"), true),
            (.present(path: "disabled"), true),
            (.present(path: "empty"), true),
            (.present(path: "nothing"), false),
            (.present(path: "missing"), false),
            // dotted paths
            (.equals(path: "address.country", value: .string("NZ")), true),
            (.equals(path: "org.team.name", value: .string("blue")), true),
            (.present(path: "org.team"), true),
            (.present(path: "org.team.colour"), false),
            (.present(path: "sub.x"), false),
            (.present(path: "address.country.code"), false),
            (.present(path: "address."), false),
            // a key that itself contains a dot wins over the nested path
            (.equals(path: "org.id", value: .string("org-direct")), true),
            (.equals(path: "org.id", value: .string("org-nested")), false),
        ]

        @Test("isMet(by:)", arguments: cases)
        func isMet(requirement: ClaimRequirement, expected: Bool) {
            #expect(requirement.isMet(by: Self.claims) == expected, "\(requirement)")
        }

        @Test("ClaimPath.lookup: nested, direct-dotted and missing")
        func lookup() {
            #expect(ClaimPath.lookup("address.country", in: Self.claims) == .string("NZ"))
            #expect(ClaimPath.lookup("org.id", in: Self.claims) == .string("org-direct"))
            let nestedOnly = JSONObject([("org", .object(JSONObject([("id", .string("org-nested"))])))])
            #expect(ClaimPath.lookup("org.id", in: nestedOnly) == .string("org-nested"))
            #expect(ClaimPath.lookup("org.nope", in: nestedOnly) == nil)
            #expect(ClaimPath.lookup("", in: nestedOnly) == nil)
        }
    }
}

// MARK: - HeaderName and IdentityHeaderMapper

extension PolicyTests {
    @Suite("HeaderName")
    struct HeaderNameTests {
        static let normalizedCases: [(String, String)] = [
            ("X-Auth-Sub", "x-auth-sub"),
            ("X_AUTH_SUB", "x-auth-sub"),
            ("x_Auth-sub", "x-auth-sub"),
            ("Content-Type", "content-type"),
            ("already-lower", "already-lower"),
            ("ÄB", "Äb"),
            ("", ""),
        ]

        @Test("normalized: lower-case ASCII, `_` folded to `-`", arguments: normalizedCases)
        func normalized(name: String, expected: String) {
            #expect(HeaderName.normalized(name) == expected)
        }

        static let validityCases: [(String, Bool)] = [
            ("X-Auth-Sub", true),
            ("x_user_id", true),
            ("!#$%&'*+-.^_`|~09azAZ", true),
            ("", false),
            ("X Auth", false),
            ("X:Auth", false),
            ("X-Auth\r", false),
            ("X-Auth\n", false),
            ("X\u{0}", false),
            ("Ä", false),
            ("(x)", false),
            ("a/b", false),
            ("a\"b", false),
            ("a,b", false),
            ("a;b", false),
            ("a=b", false),
        ]

        @Test("isValid: RFC 9110 token characters only", arguments: validityCases)
        func isValid(name: String, expected: Bool) {
            #expect(HeaderName.isValid(name) == expected, "\(name.debugDescription)")
        }

        static let connectionCases: [([String], [String])] = [
            ([], []),
            (["keep-alive"], []),
            (["Keep-Alive"], []),
            (["close"], []),
            (["Upgrade"], ["upgrade"]),
            (["keep-alive, Upgrade"], ["upgrade"]),
            (["X-Secret ,\tTE"], ["x-secret", "te"]),
            (["a,,b", " , "], ["a", "b"]),
            (["x-auth-sub", "close, X-Other"], ["x-auth-sub", "x-other"]),
            ([",,"], []),
            (["\u{301}x"], ["\u{301}x"]),
            // Near misses of the framing tokens stay tokens (they name headers).
            (["keep-alivex", "closed", "clos", "keep alive", "CLOSE", " Keep-ALIVE "], ["keep-alivex", "closed", "clos", "keep alive"]),
            (["c\u{301}lose"], ["c\u{301}lose"]),
        ]

        @Test("connectionTokens: comma lists across field lines, OWS trimmed, lower-cased, without keep-alive/close",
              arguments: connectionCases)
        func connectionTokens(values: [String], expected: [String]) {
            #expect(HeaderName.connectionTokens(values) == expected)
        }

        @Test("isFramingOnly: one keep-alive or close (OWS allowed), which lists no field name",
              arguments: ["keep-alive", "Keep-Alive", " close\t", "CLOSE", "", "keep-alive, x-a", "close,", "keepalive", "x-secret", ","])
        func isFramingOnly(value: String) {
            // `,` and `close,` list nothing either, but are not the common single token: they take the full parse.
            let listsNothing = HeaderName.connectionTokens([value]).isEmpty
            if HeaderName.isFramingOnly(value) { #expect(listsNothing, "\(value)") }
            #expect(HeaderName.isFramingOnly(value) == ["keep-alive", "Keep-Alive", " close\t", "CLOSE"].contains(value))
        }

        static let caseCases: [(String, String, Bool)] = [
            ("X-Secret", "x-secret", true),
            ("x-secret", "X-SECRET", true),
            ("x-secret", "x-secre", false),
            ("x_secret", "x-secret", false),
            ("Ä", "ä", false),
            ("", "", true),
            ("[", "{", false),
        ]

        @Test("equalsIgnoringCase: ASCII letters only", arguments: caseCases)
        func equalsIgnoringCase(a: String, b: String, expected: Bool) {
            #expect(HeaderName.equalsIgnoringCase(a, b) == expected)
        }
    }

    @Suite("IdentityHeaderMapper")
    struct IdentityHeaderTests {
        static func token(_ members: [(String, JSONValue)]) -> VerifiedToken {
            let claims = JSONObject(members.map { (key: $0.0, value: $0.1) })
            return VerifiedToken(claims: claims, payload: JSONValue.object(claims).serialized(), format: .authjsV5, secretIndex: 0, salt: nil)
        }

        static func dict(_ headers: [(String, String)]) -> [String: String] {
            Dictionary(headers, uniquingKeysWith: { a, _ in a })
        }

        @Test("default mappings: sub, email, name, picture, then X-Auth-Claims")
        func defaults() {
            #expect(IdentityHeaderMapper.defaultMappings.map(\.header) == ["X-Auth-Sub", "X-Auth-Email", "X-Auth-Name", "X-Auth-Picture"])
            #expect(IdentityHeaderMapper.defaultMappings.map(\.claimPath) == ["sub", "email", "name", "picture"])
            let mapper = IdentityHeaderMapper()
            #expect(mapper.claimsHeader == "X-Auth-Claims")
            #expect(mapper.maxValueBytes == 8192)
            let t = Self.token([("sub", .string("u1")), ("email", .string("a@b.c")), ("name", .string("Ann")),
                                ("picture", .string("https://x/p.png")), ("other", .string("ignored"))])
            let (headers, dropped) = mapper.headers(for: t)
            #expect(dropped.isEmpty)
            #expect(headers.map(\.0) == ["X-Auth-Sub", "X-Auth-Email", "X-Auth-Name", "X-Auth-Picture", "X-Auth-Claims"])
            #expect(headers[0].1 == "u1")
            #expect(headers[1].1 == "a@b.c")
            #expect(headers[2].1 == "Ann")
            #expect(headers[3].1 == "https://x/p.png")
        }

        @Test("absent and null claims send no header")
        func absentAndNull() {
            let t = Self.token([("sub", .string("u1")), ("email", .null)])
            let (headers, dropped) = IdentityHeaderMapper(claimsHeader: nil).headers(for: t)
            #expect(headers.map(\.0) == ["X-Auth-Sub"])
            #expect(dropped.isEmpty)
        }

        /// (claim value, expected header value).
        static let renderCases: [(JSONValue, String?)] = [
            (.string("plain"), "plain"),
            (.string(""), ""),
            (.array([.string("admin"), .string("user")]), "admin,user"),
            (.array([]), ""),
            (.array([.string("a"), .null, .string("b")]), "a,b"),
            (.array([.integer(1), .integer(2)]), "1,2"),
            (.array([.bool(true), .string("x")]), "true,x"),
            // An element holding a comma is encoded on its own: a list of one is not a list of two (found in review).
            (.array([.string("user,admin")]), "utf-8''user%2Cadmin"),
            (.array([.string("user"), .string("admin")]), "user,admin"),
            (.array([.string("a b"), .string("é")]), "a b,utf-8''%C3%A9"),
            (.array([.array([.string("x"), .string("y")]), .string("z")]), #"utf-8''%5B%22x%22%2C%22y%22%5D,z"#),
            (.string("user,admin"), "user,admin"),
            (.integer(42), "42"),
            (.integer(-7), "-7"),
            (.number(1.5), "1.5"),
            (.number(2.0), "2"),
            (.bool(true), "true"),
            (.bool(false), "false"),
            (.null, nil),
            (.object(JSONObject([("id", .string("o1")), ("n", .integer(1)), ("tags", .array([.string("a")]))])), #"{"id":"o1","n":1,"tags":["a"]}"#),
            (.object(JSONObject()), "{}"),
        ]

        @Test("claim rendering", arguments: renderCases)
        func render(value: JSONValue, expected: String?) {
            let mapper = IdentityHeaderMapper(mappings: [.init(claimPath: "c", header: "X-Auth-C")], claimsHeader: nil)
            let (headers, dropped) = mapper.headers(for: Self.token([("c", value)]))
            #expect(dropped.isEmpty)
            #expect(Self.dict(headers)["X-Auth-C"] == expected)
        }

        @Test("dotted claim paths reach into objects")
        func dotted() {
            let mapper = IdentityHeaderMapper(mappings: [.init(claimPath: "org.id", header: "X-Auth-Org")], claimsHeader: nil)
            let t = Self.token([("org", .object(JSONObject([("id", .string("acme"))])))])
            #expect(mapper.headers(for: t).headers.first?.1 == "acme")
        }

        static let encodeCases: [(String, String)] = [
            ("plain ascii ~!", "plain ascii ~!"),
            ("100%", "100%"),
            ("a\r\nb", "utf-8''a%0D%0Ab"),
            ("a\nX-Auth-Sub: admin", "utf-8''a%0AX-Auth-Sub%3A%20admin"),
            ("nul\u{0}", "utf-8''nul%00"),
            ("tab\t", "utf-8''tab%09"),
            ("del\u{7F}", "utf-8''del%7F"),
            ("José", "utf-8''Jos%C3%A9"),
            ("😀", "utf-8''%F0%9F%98%80"),
            ("utf-8''x", "utf-8''utf-8%27%27x"),
            // Any text a generic RFC 8187 decoder would read as charset'lang'value is encoded too (found in review).
            ("UTF-8''x", "utf-8''UTF-8%27%27x"),
            ("utf-8'en'x", "utf-8''utf-8%27en%27x"),
            ("ISO-8859-1''%41dmin", "utf-8''ISO-8859-1%27%27%2541dmin"),
            ("O'Brien", "O'Brien"),
            ("it's 'quoted'", "it's 'quoted'"),
            ("'x'", "'x'"),
        ]

        @Test("encodeValue: printable ASCII as is, anything else as utf-8'' percent form", arguments: encodeCases)
        func encode(raw: String, expected: String) {
            let encoded = IdentityHeaderMapper.encodeValue(raw)
            #expect(encoded == expected)
            #expect(IdentityHeaderMapper.decodeValue(encoded) == raw)
        }

        @Test("encoded header values carry no control characters via headers(for:)")
        func injectedHeaderValue() throws {
            let mapper = IdentityHeaderMapper(claimsHeader: nil)
            let (headers, _) = mapper.headers(for: Self.token([("name", .string("Eve\r\nX-Auth-Sub: admin"))]))
            let value = try #require(headers.first { $0.0 == "X-Auth-Name" }?.1)
            #expect(value == "utf-8''Eve%0D%0AX-Auth-Sub%3A%20admin")
            #expect(value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F })
        }

        /// Random strings from a pool biased towards the characters that need encoding.
        static func randomString(_ rng: inout SplitMix64) -> String {
            let pools: [ClosedRange<UInt32>] = [
                0x20...0x7E,          // printable ASCII
                0x00...0x1F,          // C0 controls incl. CR, LF, NUL
                0x7F...0x7F,          // DEL
                0x80...0x7FF,         // Latin-1, Greek, Cyrillic…
                0x4E00...0x4E80,      // CJK
                0x1F600...0x1F64F,    // emoji
                0x1F3FB...0x1F3FF,    // skin-tone modifiers
                0x200D...0x200D,      // ZWJ
                0xFE0F...0xFE0F,      // variation selector
                0xE000...0xE010,      // private use
                0x10FFF0...0x10FFFF,  // top of the code space
            ]
            var s = ""
            if rng.next() % 8 == 0 { s += "utf-8''" }
            let length = Int(rng.next() % 40)
            for _ in 0..<length {
                let pool = pools[Int(rng.next() % UInt64(pools.count))]
                let v = pool.lowerBound + UInt32(rng.next() % UInt64(pool.upperBound - pool.lowerBound + 1))
                if let scalar = Unicode.Scalar(v) { s.unicodeScalars.append(scalar) }
            }
            if rng.next() % 10 == 0 { s += "%" }
            return s
        }

        @Test("decodeValue(encodeValue(s)) == s for 500 random strings (emoji, controls, utf-8'' prefixes)")
        func roundTrip() {
            var rng = SplitMix64(seed: 0x5EED_1DE7)
            var encodedCount = 0
            for i in 0..<500 {
                let s = Self.randomString(&rng)
                let encoded = IdentityHeaderMapper.encodeValue(s)
                #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "case \(i): \(s.debugDescription) → \(encoded)")
                let plain = s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } && !s.hasPrefix("utf-8''")
                if plain {
                    #expect(encoded == s, "case \(i)")
                } else {
                    encodedCount += 1
                    #expect(encoded.hasPrefix("utf-8''"), "case \(i)")
                    #expect(!encoded.dropFirst(7).contains(" "), "case \(i): no raw spaces in the encoded form")
                }
                let decoded = IdentityHeaderMapper.decodeValue(encoded)
                #expect(decoded.map { Array($0.utf8) } == Array(s.utf8), "case \(i): \(s.debugDescription) → \(encoded)")
            }
            #expect(encodedCount > 300, "the generator should mostly produce values that need encoding")
        }

        @Test("an oversize value is dropped and reported, never truncated")
        func oversize() {
            let mapper = IdentityHeaderMapper(mappings: [.init(claimPath: "name", header: "X-Auth-Name"), .init(claimPath: "sub", header: "X-Auth-Sub")],
                                              claimsHeader: "X-Auth-Claims", maxValueBytes: 64)
            let long = String(repeating: "n", count: 65)
            let (headers, dropped) = mapper.headers(for: Self.token([("sub", .string("u1")), ("name", .string(long))]))
            #expect(headers.map(\.0) == ["X-Auth-Sub"])
            #expect(dropped == ["X-Auth-Name", "X-Auth-Claims"])
            #expect(!headers.contains { $0.1.hasPrefix("nnnn") }, "never truncated")

            // Exactly at the limit is kept.
            let exact = String(repeating: "n", count: 64)
            let (h2, d2) = IdentityHeaderMapper(mappings: [.init(claimPath: "name", header: "X-Auth-Name")], claimsHeader: nil, maxValueBytes: 64)
                .headers(for: Self.token([("name", .string(exact))]))
            #expect(h2.first?.1 == exact)
            #expect(d2.isEmpty)

            // The limit applies to the encoded form: 20 × "é" is 40 bytes raw but 7 + 120 encoded.
            let (h3, d3) = IdentityHeaderMapper(mappings: [.init(claimPath: "name", header: "X-Auth-Name")], claimsHeader: nil, maxValueBytes: 64)
                .headers(for: Self.token([("name", .string(String(repeating: "é", count: 20)))]))
            #expect(h3.isEmpty)
            #expect(d3 == ["X-Auth-Name"])
        }

        @Test("X-Auth-Claims is base64url (no padding) of the claims' JSON")
        func claimsHeader() throws {
            let members: [(String, JSONValue)] = [
                ("sub", .string("u1")), ("roles", .array([.string("a"), .string("b")])),
                ("name", .string("Zoë \"q\" \n")), ("n", .integer(12)), ("ok", .bool(true)), ("nil", .null),
                ("org", .object(JSONObject([("id", .string("o"))]))),
            ]
            let t = Self.token(members)
            let (headers, _) = IdentityHeaderMapper().headers(for: t)
            let value = try #require(Self.dict(headers)["X-Auth-Claims"])
            #expect(!value.contains("=") && !value.contains("+") && !value.contains("/"))
            let bytes = try #require(Base64URL.decode(value))
            #expect(bytes == JSONValue.object(t.claims).serialized())
            guard case .success(let parsed) = JSONParser.parseObject(bytes) else {
                Issue.record("X-Auth-Claims is not a JSON object")
                return
            }
            #expect(parsed == t.claims)
        }

        @Test("a custom or disabled claims header")
        func customClaimsHeader() {
            let t = Self.token([("sub", .string("u1"))])
            #expect(IdentityHeaderMapper(claimsHeader: nil).headers(for: t).headers.map(\.0) == ["X-Auth-Sub"])
            #expect(IdentityHeaderMapper(claimsHeader: "X-Claims").headers(for: t).headers.map(\.0) == ["X-Auth-Sub", "X-Claims"])
        }

        static let ownedCases: [(String, Bool)] = [
            ("X-Auth-Sub", true),
            ("x-auth-sub", true),
            ("X_AUTH_SUB", true),
            ("x_auth_sub", true),
            ("x-Auth-Anything", true),
            ("X_Auth-Anything", true),
            ("X-Auth-Claims", true),
            ("X-User-Id", true),
            ("x_user_id", true),
            ("X_USER-ID", true),
            ("x-user-idx", false),
            ("x-authz", false),
            ("x-authorization", false),
            ("authorization", false),
            ("Authorization", false),
            ("cookie", false),
            ("x-forwarded-for", false),
            ("content-type", false),
        ]

        @Test("isOwned: x-auth-* and configured headers after normalisation", arguments: ownedCases)
        func isOwned(name: String, expected: Bool) {
            let mapper = IdentityHeaderMapper(mappings: IdentityHeaderMapper.defaultMappings + [.init(claimPath: "uid", header: "X-User-Id")])
            #expect(mapper.isOwned(name) == expected, "\(name)")
        }

        @Test("a custom claims header is owned")
        func customClaimsHeaderOwned() {
            let mapper = IdentityHeaderMapper(mappings: [], claimsHeader: "X-Identity-Claims")
            #expect(mapper.isOwned("x_identity_claims"))
            #expect(mapper.isOwned("X-IDENTITY-CLAIMS"))
            #expect(!IdentityHeaderMapper(mappings: [], claimsHeader: nil).isOwned("x-identity-claims"))
        }
    }
}

// MARK: - AccessPolicy

extension PolicyTests {
    @Suite("AccessPolicy.decide")
    struct AccessPolicyTests {
        static let secret = "policy-tests-secret-0123456789abcdef0123456789"
        static let now: Double = 1_750_000_000
        static let salt = "authjs.session-token"

        static let routes = RoutePolicy(rules: [
            RouteRule(match: .prefix("/public"), mode: .public),
            RouteRule(match: .prefix("/opt"), mode: .optional),
            RouteRule(match: .prefix("/admin"), mode: .required, requirements: [
                .contains(path: "roles", value: .string("admin")),
                .equals(path: "email_verified", value: .bool(true)),
            ]),
        ])

        static func policy() throws -> AccessPolicy {
            let auth = try TokenAuthenticator(secrets: [secret], cookies: SessionCookie.defaults)
            return AccessPolicy(routes: routes, authenticator: auth, identity: IdentityHeaderMapper())
        }

        static func mint(_ members: [(String, JSONValue)], secret: String = secret, issuedAt: Double = now) throws -> String {
            let claims = TokenMinter.stampClaims(JSONObject(members.map { (key: $0.0, value: $0.1) }), now: Int64(issuedAt))
            return try TokenMinter.authjsV5(claims: claims, secret: secret, salt: salt)
        }

        static func cookie(_ token: String) -> String { "\(salt)=\(token)" }

        static let admin: [(String, JSONValue)] = [
            ("sub", .string("user-42")), ("email", .string("ann@example.com")), ("name", .string("Ann")),
            ("roles", .array([.string("admin"), .string("user")])), ("email_verified", .bool(true)),
        ]
        static let plainUser: [(String, JSONValue)] = [
            ("sub", .string("user-7")), ("roles", .array([.string("user")])), ("email_verified", .bool(true)),
        ]

        struct Forwarded {
            let path: String
            let identity: [(String, String)]
            let dropped: [String]
            let outcome: String
            let subject: String?
        }

        static func forwarded(_ d: AccessDecision) -> Forwarded? {
            if case .forward(let path, let session, let outcome) = d {
                return Forwarded(path: path, identity: session?.headers ?? [], dropped: session?.dropped ?? [], outcome: outcome,
                                 subject: session?.token.registered.subject)
            }
            Issue.record("expected .forward, got \(d)")
            return nil
        }

        @Test("a required route without a token is unauthorized(missing_token)")
        func requiredMissing() throws {
            let d = try Self.policy().decide(method: "GET", target: "/private", cookie: nil, authorization: nil, now: Self.now)
            guard case .unauthorized(let f) = d else { Issue.record("expected unauthorized, got \(d)"); return }
            #expect(f.code == .missingToken)
        }

        @Test("a required route with an invalid token is unauthorized with that failure")
        func requiredInvalid() throws {
            let d = try Self.policy().decide(method: "GET", target: "/private", cookie: Self.cookie("not-a-token"), authorization: nil, now: Self.now)
            guard case .unauthorized(let f) = d else { Issue.record("expected unauthorized, got \(d)"); return }
            #expect(f.code == .malformed)
        }

        @Test("a required route with a valid token forwards with identity headers")
        func requiredValid() throws {
            let token = try Self.mint(Self.plainUser)
            let d = try Self.policy().decide(method: "GET", target: "/private/x", cookie: Self.cookie(token), authorization: nil, now: Self.now)
            let f = try #require(Self.forwarded(d))
            #expect(f.outcome == "ok")
            #expect(f.subject == "user-7")
            #expect(f.identity.first { $0.0 == "X-Auth-Sub" }?.1 == "user-7")
            #expect(f.path == "/private/x")
        }

        @Test("a valid Bearer token works like the cookie")
        func bearer() throws {
            let token = try Self.mint(Self.plainUser)
            let d = try Self.policy().decide(method: "GET", target: "/private", cookie: nil, authorization: "Bearer \(token)", now: Self.now)
            #expect(Self.forwarded(d)?.outcome == "ok")
        }

        @Test("a public route without a token forwards as anonymous with no identity")
        func publicAnonymous() throws {
            let d = try Self.policy().decide(method: "GET", target: "/public/x", cookie: nil, authorization: nil, now: Self.now)
            let f = try #require(Self.forwarded(d))
            #expect(f.outcome == "anonymous")
            #expect(f.identity.isEmpty)
            #expect(f.dropped.isEmpty)
            #expect(f.subject == nil)
            #expect(f.path == "/public/x")
        }

        static let invalidTokenKinds = ["garbage", "other-secret", "expired"]

        static func invalidCookie(_ kind: String) throws -> String {
            switch kind {
            case "garbage": return cookie("garbage")
            case "other-secret": return cookie(try mint(admin, secret: "a-completely-different-secret-value-0000"))
            default: return cookie(try mint(admin, issuedAt: now - 40 * 86400))
            }
        }

        @Test("public and optional routes with an invalid token forward with outcome = failure code",
              arguments: ["/public/x", "/opt/x"], invalidTokenKinds)
        func invalidTokenForwarded(target: String, kind: String) throws {
            let policy = try Self.policy()
            let cookie = try Self.invalidCookie(kind)
            guard case .failure(let failure) = policy.authenticator.authenticate(cookieHeader: cookie, authorization: nil, now: Self.now) else {
                Issue.record("the \(kind) token should not verify"); return
            }
            if kind == "garbage" { #expect(failure.code == .malformed) }
            if kind == "expired" { #expect(failure.code == .expired) }
            let d = policy.decide(method: "GET", target: target, cookie: cookie, authorization: nil, now: Self.now)
            let f = try #require(Self.forwarded(d))
            #expect(f.outcome == failure.code.rawValue)
            #expect(f.outcome != "ok" && f.outcome != "anonymous")
            #expect(f.identity.isEmpty)
            #expect(f.subject == nil)
        }

        @Test("an optional route without a token forwards as anonymous")
        func optionalAnonymous() throws {
            let d = try Self.policy().decide(method: "POST", target: "/opt", cookie: nil, authorization: nil, now: Self.now)
            let f = try #require(Self.forwarded(d))
            #expect(f.outcome == "anonymous")
            #expect(f.identity.isEmpty)
        }

        @Test("public and optional routes with a valid token inject its identity", arguments: ["/public/x", "/opt/x"])
        func validTokenOnOpenRoutes(target: String) throws {
            let token = try Self.mint(Self.admin)
            let d = try Self.policy().decide(method: "GET", target: target, cookie: Self.cookie(token), authorization: nil, now: Self.now)
            let f = try #require(Self.forwarded(d))
            #expect(f.outcome == "ok")
            #expect(f.subject == "user-42")
            #expect(f.identity.first { $0.0 == "X-Auth-Email" }?.1 == "ann@example.com")
        }

        @Test("unmet claim requirements are forbidden, naming the first unmet one")
        func forbidden() throws {
            let token = try Self.mint(Self.plainUser)
            let d = try Self.policy().decide(method: "GET", target: "/admin/users", cookie: Self.cookie(token), authorization: nil, now: Self.now)
            guard case .forbidden(let r) = d else { Issue.record("expected forbidden, got \(d)"); return }
            #expect(r == .contains(path: "roles", value: .string("admin")))

            var unverified = Self.admin
            unverified[4] = ("email_verified", .bool(false))
            let d2 = try Self.policy().decide(method: "GET", target: "/admin", cookie: Self.cookie(try Self.mint(unverified)), authorization: nil, now: Self.now)
            guard case .forbidden(let r2) = d2 else { Issue.record("expected forbidden, got \(d2)"); return }
            #expect(r2 == .equals(path: "email_verified", value: .bool(true)))
        }

        @Test("met claim requirements forward with identity headers")
        func allowed() throws {
            let token = try Self.mint(Self.admin)
            let d = try Self.policy().decide(method: "DELETE", target: "/admin/users/1", cookie: Self.cookie(token), authorization: nil, now: Self.now)
            let f = try #require(Self.forwarded(d))
            #expect(f.outcome == "ok")
            #expect(f.subject == "user-42")
            let names = f.identity.map(\.0)
            #expect(names == ["X-Auth-Sub", "X-Auth-Email", "X-Auth-Name", "X-Auth-Claims"])
            #expect(f.identity[0].1 == "user-42")
            #expect(f.identity[2].1 == "Ann")
            #expect(f.dropped.isEmpty)
        }

        @Test("traversal out of a public prefix is judged on the normalised path", arguments: [
            "/public/../admin", "/public/%2e%2e/admin", "/public/..;/admin", "/public/./../admin/x", "//public/../admin",
        ])
        func traversal(target: String) throws {
            let d = try Self.policy().decide(method: "GET", target: target, cookie: nil, authorization: nil, now: Self.now)
            guard case .unauthorized(let f) = d else { Issue.record("expected unauthorized for \(target), got \(d)"); return }
            #expect(f.code == .missingToken)
        }

        @Test("a target that cannot be normalised is a bad request, before any token check", arguments: [
            "/public/a%2Fb", "/public/%5c", "/public/a%00", "http://x/public", "*", "public", "/public/%zz", "/public/a\\b",
        ])
        func badTarget(target: String) throws {
            let token = try Self.mint(Self.admin)
            let d = try Self.policy().decide(method: "GET", target: target, cookie: Self.cookie(token), authorization: nil, now: Self.now)
            guard case .badRequest(let why) = d else { Issue.record("expected badRequest for \(target.debugDescription), got \(d)"); return }
            #expect(!why.isEmpty)
        }

        @Test("the forwarded path is normalised with the raw query appended", arguments: [
            ("/public/./a//b?x=%2F&y=1", "/public/a/b?x=%2F&y=1"),
            ("/public/%61?q=%61%20b", "/public/a?q=%61%20b"),
            ("/public/x/..?", "/public/?"),
            ("/public;s=1/x?a=../b#frag", "/public/x?a=../b#frag"),
            ("/public", "/public"),
        ])
        func forwardPath(target: String, expected: String) throws {
            let d = try Self.policy().decide(method: "GET", target: target, cookie: nil, authorization: nil, now: Self.now)
            #expect(Self.forwarded(d)?.path == expected)
        }
    }
}
