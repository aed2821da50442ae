import AuthJSToken
import Foundation
@testable import SidecarCore
import Testing
import VectorFixtures

/// ConfigLoader: defaults, precedence, validation (every problem at once), YAML routes, addresses.
/// Every suite is nested in `ConfigTests` so `--filter ConfigTests` selects them all.
@Suite("Config")
struct ConfigTests {
    static let secret = "config-tests-secret-value-7f3a9c2e41d8b6"
    static let baseEnv = ["AUTH_SECRET": secret]

    static func load(env: [String: String] = baseEnv, flags: [String: String] = [:], yaml: String? = nil, coreCount: Int = 2)
        -> Result<SidecarConfig, ConfigIssues> {
        guard let yaml else { return ConfigLoader.load(environment: env, flags: flags, configPath: nil, coreCount: coreCount) }
        let file = TempYAML(yaml)
        defer { file.remove() }
        return ConfigLoader.load(environment: env, flags: flags, configPath: file.path, coreCount: coreCount)
    }

    /// The config, or a recorded issue listing every problem.
    static func config(env: [String: String] = baseEnv, flags: [String: String] = [:], yaml: String? = nil, coreCount: Int = 2,
                       sourceLocation: SourceLocation = #_sourceLocation) -> SidecarConfig? {
        switch load(env: env, flags: flags, yaml: yaml, coreCount: coreCount) {
        case .success(let c): return c
        case .failure(let f):
            Issue.record("config did not load: \(f.issues.map(\.description).joined(separator: "; "))", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// The issues, or a recorded issue when the config loaded.
    static func issues(env: [String: String] = baseEnv, flags: [String: String] = [:], yaml: String? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) -> [ConfigIssue] {
        switch load(env: env, flags: flags, yaml: yaml) {
        case .success:
            Issue.record("config loaded but should not have", sourceLocation: sourceLocation)
            return []
        case .failure(let f): return f.issues
        }
    }
}

/// A YAML file in the temporary directory, unique per use.
struct TempYAML {
    let path: String
    init(_ text: String) {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("config-tests-\(UUID().uuidString).yaml").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

// MARK: - Defaults and precedence

extension ConfigTests {
    @Suite("Defaults and precedence")
    struct DefaultsTests {
        @Test("defaults with only AUTH_SECRET")
        func defaults() throws {
            let c = try #require(ConfigTests.config(coreCount: 3))
            #expect(c.listen == .tcp(host: "0.0.0.0", port: 8080))
            #expect(c.upstream == .echo)
            #expect(c.threads == 3)
            #expect(c.healthPrefix == "/_sidecar")
            #expect(c.authenticator.extractor.cookies == SessionCookie.defaults)
            #expect(c.authenticator.extractor.cookies.map(\.name) == [
                "__Secure-authjs.session-token", "authjs.session-token", "__Secure-next-auth.session-token", "next-auth.session-token",
            ])
            #expect(c.authenticator.verifier.keys.formats == Set(TokenFormat.allCases))
            #expect(c.authenticator.verifier.options.clockTolerance == 15)
            #expect(c.routes.rules.isEmpty)
            #expect(c.routes.rule(method: "GET", path: "/x") == RoutePolicy.fallback)
            #expect(c.identity.mappings == IdentityHeaderMapper.defaultMappings)
            #expect(c.identity.claimsHeader == "X-Auth-Claims")
            #expect(c.identity.maxValueBytes == 8192)
            #expect(c.logLevel == "info")
            #expect(c.logFormat == "text")
            #expect(c.accessLog)
            #expect(!c.stripCookie)
            #expect(!c.stripAuthorization)
            #expect(c.realm == "authjs-sidecar")
            #expect(c.shutdownTimeout == 25)
            #expect(c.upstreamConnectTimeout == 5)
            #expect(c.upstreamTimeout == 60)
            #expect(c.upstreamMaxIdle == 1024)
            #expect(c.upstreamIdleTimeout == 4)
            #expect(c.maxBodyBytes == 1_073_741_824)
            #expect(c.maxHeaderBytes == 65536)
            #expect(c.idleTimeout == 60)
            #expect(c.tunnelIdleTimeout == 300)
        }

        @Test("every Settings default loads (one row per setting, unique keys)")
        func settingsTable() {
            let all = Settings.all
            #expect(Set(all.map(\.file)).count == all.count)
            #expect(Set(all.map(\.env)).count == all.count)
            #expect(Set(all.compactMap(\.flag)).count == all.compactMap(\.flag).count)
            for s in all {
                #expect(s.env.hasPrefix("SIDECAR_"), "\(s.file)")
                #expect(!s.meaning.isEmpty, "\(s.file)")
            }
        }

        @Test("env beats the file, a flag beats env")
        func precedence() throws {
            let yaml = """
            listen: 127.0.0.1:1111
            upstream: http://127.0.0.1:9000
            log_level: debug
            realm: from-file
            clock_tolerance: 30
            """
            let env = ConfigTests.baseEnv.merging([
                "SIDECAR_LISTEN": "127.0.0.1:2222",
                "SIDECAR_REALM": "from-env",
                "SIDECAR_LOG_LEVEL": "warning",
            ]) { a, _ in a }
            let flags = ["listen": "127.0.0.1:3333", "log-level": "error"]
            let c = try #require(ConfigTests.config(env: env, flags: flags, yaml: yaml))
            #expect(c.listen == .tcp(host: "127.0.0.1", port: 3333), "flag beats env and file")
            #expect(c.logLevel == "error", "flag beats env and file")
            #expect(c.realm == "from-env", "env beats file")
            #expect(c.upstream == .http(address: .tcp(host: "127.0.0.1", port: 9000), hostHeader: "127.0.0.1:9000", basePath: ""), "file beats default")
            #expect(c.authenticator.verifier.options.clockTolerance == 30)
        }

        @Test("SIDECAR_CONFIG names the file when no path is passed")
        func configFromEnv() throws {
            let file = TempYAML("listen: 127.0.0.1:4444\n")
            defer { file.remove() }
            let env = ConfigTests.baseEnv.merging([Settings.configFileVariable: file.path]) { a, _ in a }
            let c = try #require(ConfigTests.config(env: env))
            #expect(c.listen == .tcp(host: "127.0.0.1", port: 4444))
        }

        @Test("an unreadable config file is an issue keyed SIDECAR_CONFIG")
        func missingFile() {
            let r = ConfigLoader.load(environment: ConfigTests.baseEnv, flags: [:], configPath: "/nonexistent/dir/sidecar.yaml", coreCount: 1)
            guard case .failure(let f) = r else { Issue.record("loaded"); return }
            #expect(f.issues.map(\.key) == ["SIDECAR_CONFIG"])
        }

        @Test("a directory or a file that is not UTF-8 cannot be read either")
        func unreadableKinds() throws {
            let notUTF8 = FileManager.default.temporaryDirectory.appendingPathComponent("config-tests-\(UUID().uuidString).yaml")
            try Data([0x6C, 0x69, 0x73, 0x74, 0x65, 0x6E, 0x3A, 0x20, 0xFF, 0xFE, 0x0A]).write(to: notUTF8)
            defer { try? FileManager.default.removeItem(at: notUTF8) }
            for path in [FileManager.default.temporaryDirectory.path, notUTF8.path] {
                let r = ConfigLoader.load(environment: ConfigTests.baseEnv, flags: [:], configPath: path, coreCount: 1)
                guard case .failure(let f) = r else { Issue.record("\(path) loaded"); continue }
                #expect(f.issues.map(\.key) == ["SIDECAR_CONFIG"] && f.issues[0].problem.hasPrefix("cannot read"), "\(f.issues)")
            }
        }

        @Test("a config file larger than a read chunk is read whole")
        func largeFile() throws {
            let filler = String(repeating: "# a comment line to make the file longer than one 64 KiB read\n", count: 2_000)
            let file = TempYAML(filler + "listen: 127.0.0.1:4445\n")
            defer { file.remove() }
            let env = ConfigTests.baseEnv.merging([Settings.configFileVariable: file.path]) { a, _ in a }
            let c = try #require(ConfigTests.config(env: env))
            #expect(c.listen == .tcp(host: "127.0.0.1", port: 4445))
        }

        @Test("YAML lists and mappings become comma lists")
        func yamlLists() throws {
            let yaml = """
            cookie_names:
              - my.session
              - authjs.session-token
            identity_headers:
              sub: X-Auth-Sub
              org.id: X-Auth-Org
            token_formats: [authjs-v5, jws]
            public_paths: [/docs, /health/]
            strip_cookie: true
            health_prefix: /internal/
            """
            let c = try #require(ConfigTests.config(yaml: yaml))
            #expect(c.authenticator.extractor.cookies.map(\.name) == ["my.session", "authjs.session-token"])
            #expect(c.identity.mappings == [.init(claimPath: "sub", header: "X-Auth-Sub"), .init(claimPath: "org.id", header: "X-Auth-Org")])
            #expect(c.authenticator.verifier.keys.formats == [.authjsV5, .jws])
            #expect(c.routes.rules == [RouteRule(match: .prefix("/docs"), mode: .public), RouteRule(match: .prefix("/health/"), mode: .public)])
            #expect(c.stripCookie)
            #expect(c.healthPrefix == "/internal")
        }

        @Test("threads: `cores` uses coreCount; a number is taken as is", arguments: [1, 2, 16])
        func threads(cores: Int) throws {
            #expect(ConfigTests.config(coreCount: cores)?.threads == cores)
            #expect(ConfigTests.config(flags: ["threads": "cores"], coreCount: cores)?.threads == cores)
            #expect(ConfigTests.config(env: ConfigTests.baseEnv.merging(["SIDECAR_THREADS": "4"]) { a, _ in a }, coreCount: cores)?.threads == 4)
            #expect(ConfigTests.config(yaml: "threads: 3\n", coreCount: cores)?.threads == 3)
        }

        @Test("bad thread counts are issues", arguments: ["0", "-1", "257", "many", ""])
        func badThreads(text: String) {
            let issues = ConfigTests.issues(flags: ["threads": text])
            #expect(issues.map(\.key) == ["--threads"])
        }
    }
}

// MARK: - Validation

extension ConfigTests {
    @Suite("Validation")
    struct ValidationTests {
        @Test("every problem is reported at once, each with its key and a hint")
        func everything() throws {
            let file = TempYAML("""
            frobnicate: 1
            routes:
              - path: /a
                mode: sometimes
              - path: /b
                match: fuzzy
              - path: /c
                mode: public
                require:
                  - claim: roles
                    contains: admin
              - path: relative
              - path: /d
                require:
                  - claim: roles
              - path: /e
                mode: optional
                require:
                  - claim: roles
                    contains: admin
            """)
            defer { file.remove() }
            let env = [
                "AUTH_SECRET": "",
                "SIDECAR_LISTEN": "nowhere",
                "SIDECAR_UPSTREAM": "https://api.example.com",
                "SIDECAR_CLOCK_TOLERANCE": "-5",
                "SIDECAR_LOG_LEVEL": "chatty",
                "SIDECAR_COOKIE_NAMES": "bad name,authjs.session-token",
                "SIDECAR_IDENTITY_HEADERS": "sub=X-Auth-Sub,nonsense,email=Bad Header",
            ]
            let r = ConfigLoader.load(environment: env, flags: [:], configPath: file.path, coreCount: 2)
            guard case .failure(let f) = r else { Issue.record("loaded"); return }
            let p = file.path
            let expected: [(String, String?)] = [
                ("AUTH_SECRET", nil),
                ("SIDECAR_LISTEN", nil),
                ("SIDECAR_UPSTREAM", "TLS"),
                ("SIDECAR_CLOCK_TOLERANCE", nil),
                ("SIDECAR_LOG_LEVEL", nil),
                ("SIDECAR_COOKIE_NAMES", nil),
                ("SIDECAR_IDENTITY_HEADERS", nil),
                ("\(p): frobnicate", nil),
                ("\(p): routes[0].mode", nil),
                ("\(p): routes[1].match", nil),
                ("\(p): routes[2].require", nil),
                ("\(p): routes[3].path", nil),
                ("\(p): routes[4].require[0]", nil),
                ("\(p): routes[5].require", "required"),
            ]
            let keys = f.issues.map(\.key)
            for (key, hintWord) in expected {
                let matching = f.issues.filter { $0.key == key }
                #expect(!matching.isEmpty, "no issue keyed \(key); got \(keys)")
                if let hintWord {
                    #expect(matching.contains { $0.hint.contains(hintWord) }, "\(key) hint should mention \(hintWord)")
                }
            }
            #expect(f.issues.filter { $0.key == "SIDECAR_IDENTITY_HEADERS" }.count == 2, "both bad pairs reported")
            for issue in f.issues {
                #expect(!issue.key.isEmpty)
                #expect(!issue.problem.isEmpty, "\(issue.key)")
                #expect(!issue.hint.isEmpty, "\(issue.key) has no hint")
            }
            #expect(Set(keys).count >= expected.count)
        }

        /// (env overrides, expected issue key).
        static let singleProblems: [([String: String], String)] = [
            (["SIDECAR_LISTEN": "8080"], "SIDECAR_LISTEN"),
            (["SIDECAR_LISTEN": "host:70000"], "SIDECAR_LISTEN"),
            (["SIDECAR_LISTEN": "unix:relative.sock"], "SIDECAR_LISTEN"),
            (["SIDECAR_UPSTREAM": "ftp://x"], "SIDECAR_UPSTREAM"),
            (["SIDECAR_UPSTREAM": "http://host:port"], "SIDECAR_UPSTREAM"),
            (["SIDECAR_UPSTREAM": "http://host/a?b=1"], "SIDECAR_UPSTREAM"),
            (["SIDECAR_UPSTREAM": "http://"], "SIDECAR_UPSTREAM"),
            (["SIDECAR_CLOCK_TOLERANCE": "-1"], "SIDECAR_CLOCK_TOLERANCE"),
            (["SIDECAR_CLOCK_TOLERANCE": "soon"], "SIDECAR_CLOCK_TOLERANCE"),
            (["SIDECAR_LOG_LEVEL": "verbose"], "SIDECAR_LOG_LEVEL"),
            (["SIDECAR_LOG_FORMAT": "xml"], "SIDECAR_LOG_FORMAT"),
            (["SIDECAR_COOKIE_NAMES": "a;b"], "SIDECAR_COOKIE_NAMES"),
            (["SIDECAR_COOKIE_NAMES": ""], "SIDECAR_COOKIE_NAMES"),
            (["SIDECAR_TOKEN_FORMATS": "jwe"], "SIDECAR_TOKEN_FORMATS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "=X-Auth-Sub"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub=Bad:Header"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub=Authorization"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub=X-Forwarded-For"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "upn=X-Auth-Email,email=x_auth_email"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub=X-Auth-Claims"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub=x_request_id"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_IDENTITY_HEADERS": "sub=Upgrade"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_CLAIMS_HEADER": "Forwarded"], "SIDECAR_IDENTITY_HEADERS"),
            (["SIDECAR_UPSTREAM": "http://127.0.0.1:8000/a b"], "SIDECAR_UPSTREAM"),
            (["SIDECAR_UPSTREAM": "http://127.0.0.1:8000/a\u{7F}"], "SIDECAR_UPSTREAM"),
            (["SIDECAR_CLAIMS_HEADER": "Bad Header"], "SIDECAR_CLAIMS_HEADER"),
            (["SIDECAR_HEALTH_PREFIX": "health"], "SIDECAR_HEALTH_PREFIX"),
            (["SIDECAR_PUBLIC_PATHS": "docs"], "SIDECAR_PUBLIC_PATHS"),
            (["SIDECAR_PUBLIC_PATHS": "/a%2Fb"], "SIDECAR_PUBLIC_PATHS"),
            (["SIDECAR_REALM": "a\"b"], "SIDECAR_REALM"),
            (["SIDECAR_STRIP_COOKIE": "maybe"], "SIDECAR_STRIP_COOKIE"),
            (["SIDECAR_MAX_HEADER_BYTES": "10"], "SIDECAR_MAX_HEADER_BYTES"),
            (["SIDECAR_TUNNEL_IDLE_TIMEOUT": "0"], "SIDECAR_TUNNEL_IDLE_TIMEOUT"),
            (["SIDECAR_TUNNEL_IDLE_TIMEOUT": "forever"], "SIDECAR_TUNNEL_IDLE_TIMEOUT"),
            (["SIDECAR_UPSTREAM_IDLE_TIMEOUT": "0"], "SIDECAR_UPSTREAM_IDLE_TIMEOUT"),
            (["SIDECAR_UPSTREAM_IDLE_TIMEOUT": "-1"], "SIDECAR_UPSTREAM_IDLE_TIMEOUT"),
            (["AUTH_SECRET_1": ""], "AUTH_SECRET_1"),
        ]

        @Test("one bad setting → one issue with its key and a hint", arguments: singleProblems)
        func single(overrides: [String: String], key: String) {
            let env = ConfigTests.baseEnv.merging(overrides) { _, b in b }
            let issues = ConfigTests.issues(env: env)
            #expect(issues.contains { $0.key == key }, "got \(issues.map(\.description))")
            #expect(issues.allSatisfy { !$0.hint.isEmpty })
        }

        @Test("https upstream: the hint explains that TLS is not supported")
        func httpsHint() throws {
            let issues = ConfigTests.issues(flags: ["upstream": "https://api.example.com:443/v1"])
            let issue = try #require(issues.first { $0.key == "--upstream" })
            #expect(issue.hint.contains("TLS"))
        }

        @Test("an empty AUTH_SECRET is an issue keyed AUTH_SECRET")
        func emptySecret() {
            let issues = ConfigTests.issues(env: ["AUTH_SECRET": ""])
            #expect(issues.map(\.key) == ["AUTH_SECRET"])
            #expect(issues.allSatisfy { !$0.hint.isEmpty })
        }

        @Test("a missing secret is an issue keyed AUTH_SECRET")
        func missingSecret() {
            let issues = ConfigTests.issues(env: [:])
            #expect(issues.map(\.key) == ["AUTH_SECRET"])
            #expect(issues.allSatisfy { !$0.hint.isEmpty })
        }

        @Test("NEXTAUTH_SECRET is accepted when no AUTH_SECRET is set; rotation secrets come first")
        func secretSources() throws {
            let legacy = try #require(ConfigTests.config(env: ["NEXTAUTH_SECRET": "legacy-secret"]))
            #expect(legacy.authenticator.verifier.keys.secretCount == 1)
            let rotated = try #require(ConfigTests.config(env: ["AUTH_SECRET": "old", "AUTH_SECRET_1": "new"]))
            #expect(rotated.authenticator.verifier.keys.secretCount == 2)
            let emptyLegacy = ConfigTests.issues(env: ["NEXTAUTH_SECRET": ""])
            #expect(emptyLegacy.map(\.key) == ["NEXTAUTH_SECRET"])
        }

        @Test("no secret value appears in any issue")
        func noSecretInIssues() {
            let secrets = ["AUTH_SECRET": "SECRET-zero-\(UUID().uuidString)", "AUTH_SECRET_1": "SECRET-one-\(UUID().uuidString)",
                           "AUTH_SECRET_2": "", "NEXTAUTH_SECRET": "SECRET-legacy-\(UUID().uuidString)"]
            var env = secrets
            env["SIDECAR_LISTEN"] = "bad"
            env["SIDECAR_UPSTREAM"] = "https://x"
            env["SIDECAR_CLOCK_TOLERANCE"] = "-1"
            env["SIDECAR_COOKIE_NAMES"] = "bad name"
            env["SIDECAR_LOG_LEVEL"] = "x"
            env["SIDECAR_REALM"] = "\u{1}"
            var all = ConfigTests.issues(env: env)
            // And with valid secrets but everything else wrong.
            env["AUTH_SECRET_2"] = nil
            all += ConfigTests.issues(env: env)
            #expect(!all.isEmpty)
            for issue in all {
                for (_, value) in secrets where !value.isEmpty {
                    #expect(!issue.description.contains(value), "\(issue.key) leaks a secret")
                    #expect(!issue.description.contains(value.prefix(12)), "\(issue.key) leaks part of a secret")
                }
            }
        }

        @Test("a known YAML key is either applied or reported, never silently ignored (`cookies:`)")
        func cookiesKey() {
            let yaml = "cookies: [my.custom-session]\n"
            switch ConfigTests.load(yaml: yaml) {
            case .failure(let f):
                #expect(f.issues.contains { $0.key.hasSuffix("cookies") })
            case .success(let c):
                #expect(c.authenticator.extractor.cookies.map(\.name).contains("my.custom-session"),
                        "`cookies:` is accepted as a known key but has no effect")
            }
        }
    }
}

// MARK: - Routes

extension ConfigTests {
    @Suite("YAML routes")
    struct RouteConfigTests {
        static let yaml = """
        public_paths: [/docs, /health/]
        routes:
          - path: /api/admin/
            match: prefix
            methods: [get, Post]
            mode: required
            require:
              - claim: roles
                contains: admin
              - claim: email_verified
                equals: true
              - claim: org.id
                present: true
              - claim: level
                equals: 3
              - claim: code
                equals: "3"
              - claim: ratio
                equals: 1.5
              - claim: scope
                contains: "write"
          - path: /api/public/**
            mode: public
          - path: /api/feed
            match: exact
            methods: GET, head
            mode: optional
          - path: /files/*.png
            match: glob
          - path: /api/./v2//
            match: prefix
          - path: /api/
        """

        @Test("routes parse into RouteRules in order, after the public paths")
        func parsed() throws {
            let c = try #require(ConfigTests.config(yaml: Self.yaml))
            let expected: [RouteRule] = [
                RouteRule(match: .prefix("/docs"), mode: .public),
                RouteRule(match: .prefix("/health/"), mode: .public),
                RouteRule(match: .prefix("/api/admin/"), methods: ["GET", "POST"], mode: .required, requirements: [
                    .contains(path: "roles", value: .string("admin")),
                    .equals(path: "email_verified", value: .bool(true)),
                    .present(path: "org.id"),
                    .equals(path: "level", value: .integer(3)),
                    .equals(path: "code", value: .string("3")),
                    .equals(path: "ratio", value: .number(1.5)),
                    .contains(path: "scope", value: .string("write")),
                ]),
                RouteRule(match: .glob("/api/public/**"), mode: .public),
                RouteRule(match: .exact("/api/feed"), methods: ["GET", "HEAD"], mode: .optional),
                RouteRule(match: .glob("/files/*.png"), mode: .required),
                RouteRule(match: .prefix("/api/v2/"), mode: .required),
                RouteRule(match: .prefix("/api/"), mode: .required),
            ]
            #expect(c.routes.rules.count == expected.count)
            for (i, (got, want)) in zip(c.routes.rules, expected).enumerated() {
                #expect(got == want, "rule \(i)")
            }
            // Type-sensitive: `equals: 3` is a number, `equals: "3"` a string.
            if c.routes.rules.count > 2 {
                let reqs = c.routes.rules[2].requirements
                if reqs.count > 4 {
                    guard case .equals(_, .integer) = reqs[3] else { Issue.record("equals: 3 is not an integer: \(reqs[3])"); return }
                    guard case .equals(_, .string) = reqs[4] else { Issue.record("equals: \"3\" is not a string: \(reqs[4])"); return }
                }
            }
        }

        @Test("the loaded policy routes requests as configured")
        func behaviour() throws {
            let c = try #require(ConfigTests.config(yaml: Self.yaml))
            #expect(c.routes.rule(method: "GET", path: "/docs/x").mode == .public)
            #expect(c.routes.rule(method: "DELETE", path: "/api/admin/users").mode == .required)
            #expect(c.routes.rule(method: "DELETE", path: "/api/admin/users").requirements.isEmpty, "DELETE skips the GET/POST admin rule")
            #expect(c.routes.rule(method: "GET", path: "/api/admin/users").requirements.count == 7)
            #expect(c.routes.rule(method: "GET", path: "/api/public/a/b").mode == .public)
            #expect(c.routes.rule(method: "HEAD", path: "/api/feed").mode == .optional)
            #expect(c.routes.rule(method: "POST", path: "/api/feed").mode == .required)
            #expect(c.routes.rule(method: "GET", path: "/elsewhere") == RoutePolicy.fallback)
        }

        @Test("a structured `equals:` value is either parsed or reported, never silently turned into null")
        func objectEquals() {
            let yaml = """
            routes:
              - path: /x
                require:
                  - claim: org
                    equals: {id: acme}
            """
            switch ConfigTests.load(yaml: yaml) {
            case .failure(let f):
                #expect(f.issues.contains { $0.key.contains("routes[0]") })
            case .success(let c):
                let reqs = c.routes.rules.first?.requirements ?? []
                #expect(reqs == [.equals(path: "org", value: .object(JSONObject([("id", .string("acme"))])))],
                        "got \(reqs.map(\.description))")
            }
        }

        @Test("routes: must be a list")
        func routesNotAList() {
            let issues = ConfigTests.issues(yaml: "routes: /admin\n")
            #expect(issues.contains { $0.key.hasSuffix(": routes") })
        }

        /// The file's YAML is read by this project's strict reader: what it refuses is one issue on the file, with
        /// the line, column and problem, next to every other configuration problem.
        @Test("refused YAML is one issue naming the line and the problem", arguments: [
            ("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", "line 2", "duplicate key"),
            ("cors:\n  origins: [*.example.com]\n", "line 2", "alias"),
            ("upstream: &u http://a\n", "line 1", "anchor"),
            ("routes:\n  - path: |\n      /x\n", "line 2", "block scalar"),
            ("upstream: http://a\n\tlisten: x\n", "line 2", "tab"),
        ])
        func refusedYAML(yaml: String, line: String, problem: String) {
            let issues = ConfigTests.issues(env: ConfigTests.baseEnv.merging(["SIDECAR_THREADS": "zero"]) { $1 }, yaml: yaml)
            let yamlIssue = issues.first { $0.problem.contains("is not valid YAML") }
            #expect(yamlIssue?.problem.contains(line) == true, "\(issues.map(\.description))")
            #expect(yamlIssue?.problem.contains(problem) == true, "\(issues.map(\.description))")
            #expect(issues.contains { $0.key == "SIDECAR_THREADS" }, "the other problems are still reported")
        }

        /// YAML 1.2 core schema: only `true`/`false` are booleans, and a quoted value is always a string — so
        /// `equals: yes` compares with the string "yes" (YAML 1.1 readers made it `true`).
        @Test("claim values: YAML 1.2 typing, quoted values stay strings")
        func claimValueTyping() throws {
            let yaml = """
            routes:
              - {path: /a, require: [{claim: c, equals: yes}, {claim: d, equals: "true"}, {claim: e, equals: true},
                                     {claim: f, equals: 0x10}, {claim: g, equals: ~}, {claim: h, equals: '1.5'}]}
            """
            let c = try #require(ConfigTests.config(yaml: yaml))
            #expect(c.routes.rules.first?.requirements == [
                .equals(path: "c", value: .string("yes")), .equals(path: "d", value: .string("true")),
                .equals(path: "e", value: .bool(true)), .equals(path: "f", value: .integer(16)),
                .equals(path: "g", value: .null), .equals(path: "h", value: .string("1.5")),
            ])
        }
    }
}

// MARK: - Addresses

extension ConfigTests {
    @Suite("Addresses")
    struct AddressTests {
        static let upstreams: [(String, UpstreamSpec)] = [
            ("echo", .echo),
            ("http://127.0.0.1:8000/api/", .http(address: .tcp(host: "127.0.0.1", port: 8000), hostHeader: "127.0.0.1:8000", basePath: "/api")),
            ("http://127.0.0.1:8000/api", .http(address: .tcp(host: "127.0.0.1", port: 8000), hostHeader: "127.0.0.1:8000", basePath: "/api")),
            ("http://127.0.0.1:8000", .http(address: .tcp(host: "127.0.0.1", port: 8000), hostHeader: "127.0.0.1:8000", basePath: "")),
            ("http://host", .http(address: .tcp(host: "host", port: 80), hostHeader: "host", basePath: "")),
            ("http://host/", .http(address: .tcp(host: "host", port: 80), hostHeader: "host", basePath: "")),
            ("http://host:80/v1/x", .http(address: .tcp(host: "host", port: 80), hostHeader: "host", basePath: "/v1/x")),
            ("http://app.internal:180", .http(address: .tcp(host: "app.internal", port: 180), hostHeader: "app.internal:180", basePath: "")),
            ("http://[::1]:9000", .http(address: .tcp(host: "::1", port: 9000), hostHeader: "[::1]:9000", basePath: "")),
            ("http://[::1]", .http(address: .tcp(host: "::1", port: 80), hostHeader: "[::1]", basePath: "")),
            ("unix:/tmp/x.sock", .http(address: .unix(path: "/tmp/x.sock"), hostHeader: "localhost", basePath: "")),
        ]

        @Test("upstream parsing", arguments: upstreams)
        func upstream(text: String, expected: UpstreamSpec) throws {
            let c = try #require(ConfigTests.config(flags: ["upstream": text]))
            #expect(c.upstream == expected)
        }

        /// Upstream URLs whose authority is not host[:port]: userinfo (would end up in the Host header and logs),
        /// fragments, spaces.
        static let badUpstreamAuthorities = [
            "http://user:pw@127.0.0.1:8000", "http://user@127.0.0.1", "http://127.0.0.1#frag", "http://ho st:80",
        ]

        @Test("upstream authorities other than host[:port] are issues", arguments: badUpstreamAuthorities)
        func badUpstreamAuthority(text: String) {
            switch ConfigTests.load(flags: ["upstream": text]) {
            case .failure(let f):
                #expect(f.issues.map(\.key) == ["--upstream"])
            case .success(let c):
                Issue.record("\(text) was accepted as \(c.upstream)")
            }
        }

        static let listens: [(String, SocketAddressSpec)] = [
            ("0.0.0.0:8080", .tcp(host: "0.0.0.0", port: 8080)),
            ("127.0.0.1:0", .tcp(host: "127.0.0.1", port: 0)),
            ("localhost:65535", .tcp(host: "localhost", port: 65535)),
            ("[::1]:8080", .tcp(host: "::1", port: 8080)),
            ("[::]:80", .tcp(host: "::", port: 80)),
            ("unix:/path", .unix(path: "/path")),
            ("unix:/run/authjs-sidecar/sidecar.sock", .unix(path: "/run/authjs-sidecar/sidecar.sock")),
        ]

        @Test("listen parsing", arguments: listens)
        func listen(text: String, expected: SocketAddressSpec) throws {
            let c = try #require(ConfigTests.config(env: ConfigTests.baseEnv.merging(["SIDECAR_LISTEN": text]) { a, _ in a }))
            #expect(c.listen == expected)
        }

        static let badListens = [
            "8080", ":8080", "host:", "host:65536", "host:-1", "host:http", "[::1]", "[::1]:", "[]:80",
            "unix:", "unix:relative", "unix:/" + String(repeating: "p", count: 120),
            "[::1]8080", "[::1]x8080", "[::1]:80:80",
        ]

        @Test("bad listen addresses are issues keyed by their source", arguments: badListens)
        func badListen(text: String) {
            switch ConfigTests.load(flags: ["listen": text]) {
            case .failure(let f):
                #expect(f.issues.map(\.key) == ["--listen"], "\(text) → \(f.issues.map(\.description))")
            case .success(let c):
                Issue.record("listen \(text) was accepted as \(c.listen)")
            }
        }

        @Test("SocketAddressSpec.description")
        func descriptions() {
            #expect(SocketAddressSpec.tcp(host: "0.0.0.0", port: 8080).description == "0.0.0.0:8080")
            #expect(SocketAddressSpec.unix(path: "/run/s.sock").description == "unix:/run/s.sock")
        }
    }
}

// MARK: - The example deploy file

extension ConfigTests {
    @Suite("deploy/sidecar.yaml")
    struct DeployExampleTests {
        @Test("the example deploy/sidecar.yaml loads without issues (with AUTH_SECRET set)")
        func exampleLoads() throws {
            let path = Fixtures.url("deploy/sidecar.yaml").path
            try #require(FileManager.default.fileExists(atPath: path))
            let r = ConfigLoader.load(environment: ConfigTests.baseEnv, flags: [:], configPath: path, coreCount: 2)
            switch r {
            case .failure(let f):
                // Diagnostic: would it load with `headers:` spelled `identity_headers:`?
                let text = try String(contentsOfFile: path, encoding: .utf8)
                let renamed = TempYAML(text.replacingOccurrences(of: "\nheaders:", with: "\nidentity_headers:"))
                defer { renamed.remove() }
                let retry: String
                switch ConfigLoader.load(environment: ConfigTests.baseEnv, flags: [:], configPath: renamed.path, coreCount: 2) {
                case .success: retry = "loads once `headers:` is renamed `identity_headers:`"
                case .failure(let g): retry = "still fails when renamed: \(g.issues.map(\.description).joined(separator: " | "))"
                }
                Issue.record("deploy/sidecar.yaml does not load: \(f.issues.map(\.description).joined(separator: " | ")) [\(retry)]")
            case .success(let c):
                #expect(c.listen == .tcp(host: "0.0.0.0", port: 8080))
                #expect(c.upstream == .http(address: .tcp(host: "127.0.0.1", port: 8000), hostHeader: "127.0.0.1:8000", basePath: ""))
                #expect(c.routes.rules.count == 3 + 4)
                #expect(c.authenticator.verifier.options.clockTolerance == 30)
                #expect(c.routes.rule(method: "GET", path: "/api/admin/x").requirements.count == 2)
            }
        }
    }
}
