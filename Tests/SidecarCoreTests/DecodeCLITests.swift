import AuthJSToken
import Foundation
import Testing
import VectorFixtures

/// The `authjs-sidecar decode` contract (fixtures/vectors/README.md), driven through the built binary:
/// exit 0 + claims JSON on stdout, exit 1 + `code: reason` on stderr, exit 2 on usage errors.
///
/// The binary is found, in order, at $AUTHJS_SIDECAR_BIN, <root>/.build/debug/authjs-sidecar,
/// <root>/.build-helper/debug/authjs-sidecar. Build it first (`swift build --product authjs-sidecar`).
@Suite("decode / mint CLI contract", .serialized)
struct DecodeCLITests {
    static let binary: String? = {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["AUTHJS_SIDECAR_BIN"], !env.isEmpty { candidates.append(env) }
        candidates.append(Fixtures.url(".build/debug/authjs-sidecar").path)
        candidates.append(Fixtures.url(".build-helper/debug/authjs-sidecar").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
        let reason: Process.TerminationReason
    }

    /// Runs the binary with stdin/stdout/stderr through temporary files (no pipe deadlocks, no SIGPIPE), a clean
    /// environment (no AUTH_SECRET leaking in from the test runner) and a timeout.
    static func run(_ args: [String], stdin: [UInt8] = [], env: [String: String] = [:], timeout: TimeInterval = 30) throws -> Run {
        let bin = try #require(binary, "authjs-sidecar binary not found: build it or set AUTHJS_SIDECAR_BIN")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("authjs-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inURL = dir.appendingPathComponent("in"), outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
        try Data(stdin).write(to: inURL)
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = args
        var environment = ["PATH": "/usr/bin:/bin", "HOME": dir.path]
        environment.merge(env) { $1 }
        p.environment = environment
        let inH = try FileHandle(forReadingFrom: inURL), outH = try FileHandle(forWritingTo: outURL), errH = try FileHandle(forWritingTo: errURL)
        p.standardInput = inH
        p.standardOutput = outH
        p.standardError = errH
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            Issue.record("authjs-sidecar \(args.prefix(3).joined(separator: " ")) … hung for \(timeout)s")
        }
        p.waitUntilExit()
        try? inH.close(); try? outH.close(); try? errH.close()
        let out = String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self)
        let err = String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self)
        return Run(status: p.terminationStatus, stdout: out, stderr: err, reason: p.terminationReason)
    }

    static let vectorCases = VectorCase.load("fixtures/vectors/authjs-real.json") + VectorCase.load("fixtures/vectors/captured-nextauth.json")
    static let generated = Fixtures.generatedExists ? VectorCase.load(Fixtures.generatedPath) : []

    /// `decode` flags for a case: mode, secrets (newest first), salt, cookie name, clock override.
    static func baseArgs(_ c: VectorCase) -> [String] {
        var a = ["decode", "--mode", c.mode]
        for s in c.secrets { a.append("--secret=\(s)") }
        if c.mode == "authjs-v5", let salt = c.salt, !salt.isEmpty { a.append("--salt=\(salt)") }
        if c.mode != "jws", let name = c.cookieName { a.append("--cookie-name=\(name)") }
        if let now = c.now { a.append("--now=\(JSONValue.number(now).description)") }
        return a
    }

    /// Checks one outcome against a case: exit code, claims JSON on stdout, `code: ` on stderr.
    static func check(_ c: VectorCase, _ r: Run, expectedCode: String?, _ how: String) {
        #expect(r.reason == .exit, "\(how): killed by a signal")
        if c.isValid {
            #expect(r.status == 0, "\(how): exit \(r.status), stderr \(r.stderr)")
            #expect(r.stdout.hasSuffix("\n"))
            let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == 2, "\(how): one JSON line")
            switch JSONParser.parseValue(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) {
            case .success(let v):
                if let expected = c.expectedClaims { #expect(v == expected, "\(how): claims") }
            case .failure(let f): Issue.record("\(how): stdout is not JSON (\(f)): \(r.stdout.prefix(200))")
            }
            #expect(r.stderr.isEmpty, "\(how): stderr \(r.stderr)")
        } else {
            #expect(r.status == 1, "\(how): exit \(r.status), stderr \(r.stderr.prefix(300))")
            #expect(r.stdout.isEmpty, "\(how): stdout must be empty, got \(r.stdout.prefix(200))")
            let firstLine = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
            let code = firstLine.split(separator: ":").first.map(String.init) ?? ""
            #expect(allCodes.contains(code) && firstLine.hasPrefix(code + ": "), "\(how): stderr \(firstLine)")
            if let expectedCode { #expect(code == expectedCode, "\(how): \(firstLine)") }
        }
    }

    static func vectorCode(_ c: VectorCase) -> String? {
        switch c.reason {
        case "expired": return "expired"
        case "bad_tag": return "decryption_failed"
        case "alg_none": return "unsupported_algorithm"
        case "malformed": return "malformed"
        case "wrong_secret", "wrong_salt":
            if c.mode == "nextauth-v4" { return "decryption_failed" }
            if c.mode == "jws" { return "bad_signature" }
            guard let t = c.token, let first = t.split(separator: ".").first, let h = Base64URL.decode(first),
                  case .success(let o) = JSONParser.parseObject(h) else { return nil }
            return o["kid"] != nil ? "no_matching_key" : "decryption_failed"
        default: return nil
        }
    }

    @Test("the binary exists")
    func binaryExists() {
        if Self.binary == nil {
            Issue.record("authjs-sidecar not found at $AUTHJS_SIDECAR_BIN, .build/debug or .build-helper/debug: the CLI contract is untested")
        }
    }

    @Test("shared vectors via --token-stdin", .enabled(if: binary != nil), arguments: vectorCases.filter { $0.token != nil })
    func vectorStdin(_ c: VectorCase) throws {
        let token = try #require(c.token)
        let r = try Self.run(Self.baseArgs(c) + ["--token-stdin"], stdin: Array((token + "\n").utf8))
        Self.check(c, r, expectedCode: Self.vectorCode(c), "stdin")
    }

    @Test("shared vectors as a TOKEN argument", .enabled(if: binary != nil), arguments: vectorCases.filter { $0.token != nil })
    func vectorArgument(_ c: VectorCase) throws {
        let token = try #require(c.token)
        let r = try Self.run(Self.baseArgs(c) + ["--", token])
        Self.check(c, r, expectedCode: Self.vectorCode(c), "argument")
    }

    @Test("shared vectors' requests via --cookie-header / --authorization", .enabled(if: binary != nil),
          arguments: vectorCases.filter(\.hasRequest))
    func vectorRequest(_ c: VectorCase) throws {
        var args = Self.baseArgs(c)
        if let h = c.cookieHeader { args.append("--cookie-header=\(h)") }
        if let a = c.authorization { args.append("--authorization=\(a)") }
        let r = try Self.run(args)
        Self.check(c, r, expectedCode: c.reason == "malformed" ? "malformed" : nil, "request")
    }

    @Test("generated cases via --token-stdin / request flags (exact code)", .enabled(if: binary != nil),
          .enabled(if: Fixtures.generatedExists, "fixtures/generated.json is absent (fixtures/generate.py not run)"),
          arguments: generated)
    func generatedCase(_ c: VectorCase) throws {
        if c.hasToken {
            let token = try #require(c.resolvedToken())
            let r = try Self.run(Self.baseArgs(c) + ["--token-stdin"], stdin: Array(token.utf8))
            Self.check(c, r, expectedCode: c.expectCode, "stdin")
        }
        if c.hasRequest {
            var args = Self.baseArgs(c)
            if let h = c.cookieHeader { args.append("--cookie-header=\(h)") }
            if let a = c.authorization { args.append("--authorization=\(a)") }
            if c.cookieHeader == nil && c.authorization == nil { args.append("--cookie-header=") }
            let r = try Self.run(args)
            Self.check(c, r, expectedCode: c.expectCode, "request")
        }
    }

    @Test("usage errors exit 2", .enabled(if: binary != nil))
    func usageErrors() throws {
        let tok = "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"
        let cases: [[String]] = [
            ["decode"],
            ["decode", "--secret", "s"],
            ["decode", "--secret", "s", "--no-such-flag", tok],
            ["decode", "--secret", "s", "--token-stdin", tok],
            ["decode", "--secret", "s", "--cookie-header", "a=b", tok],
            ["decode", "--secret", "s", "--clock-tolerance=-1", tok],
            ["decode", "--secret", "s", "--clock-tolerance", "abc", tok],
            ["decode", "--secret", "s", "--clock-tolerance=nan", tok],
            ["decode", "--secret", "s", "--mode", "authjs-v6", tok],
            ["decode", "--secret", "s", "--mode", "", tok],
            ["decode", "--secret", "s", "--now", "yesterday", tok],
            ["decode", "--secret", "", tok],
            ["decode", tok],
            ["decode", "--secret", "s", "--salt=\(String(repeating: "x", count: 2000))", tok],
            ["mint", "--mode", "auto", "--secret", "s"],
            ["mint", "--secret", "s", "--max-age", "0"],
            ["mint", "--secret", "s", "--mode", "jws", "--alg", "RS256"],
            ["mint", "--secret", "s", "[1,2]"],
            ["mint", "--secret", "s", "{not json"],
        ]
        for args in cases {
            let r = try Self.run(args)
            #expect(r.reason == .exit)
            #expect(r.status == 2, "\(args.map { $0.prefix(40) }): exit \(r.status) stderr \(r.stderr.prefix(200))")
            #expect(!r.stderr.isEmpty, "\(args): a usage message")
            #expect(r.stdout.isEmpty, "\(args): stdout \(r.stdout.prefix(100))")
        }
        // With no secret flag the environment is read: AUTH_SECRET works, AUTH_SECRET="" is a usage error naming it.
        let claims = #"{"sub":"env"}"#
        let minted = try Self.run(["mint", claims], env: ["AUTH_SECRET": "from-env"])
        #expect(minted.status == 0)
        let token = minted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Self.run(["decode", "--mode", "authjs-v5", token], env: ["AUTH_SECRET": "from-env"]).status == 0)
        #expect(try Self.run(["decode", "--mode", "authjs-v5", token], env: ["AUTH_SECRET_1": "newer", "AUTH_SECRET": "from-env"]).status == 0)
        let empty = try Self.run(["decode", token], env: ["AUTH_SECRET": ""])
        #expect(empty.status == 2 && empty.stderr.contains("AUTH_SECRET"))
    }

    /// A secret or a token pasted as a stray argument is not echoed back in the usage error (found in review).
    @Test("stray arguments are not echoed", .enabled(if: binary != nil))
    func strayArgumentsAreNotEchoed() throws {
        for args in [["serve", "AUTH_SECRET=hunter2-secret"], ["mint", "--secret", "s", #"{"sub":"1"}"#, "hunter2-secret"],
                     ["decode", "--secret", "s", "tok", "hunter2-secret"], ["hunter2-secret"]] {
            let r = try Self.run(args)
            #expect(r.status == 2, "\(args.count) args: exit \(r.status)")
            #expect(!r.stderr.contains("hunter2"), "stderr: \(r.stderr.prefix(200))")
            #expect(r.stderr.contains("characters, not shown") || r.stderr.lowercased().contains("error"), "\(r.stderr.prefix(200))")
        }
    }

    @Test("a 300 KiB token on stdin exits 1 with too_large", .enabled(if: binary != nil))
    func hugeToken() throws {
        let token = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0.." + String(repeating: "A", count: 300 * 1024)
        let r = try Self.run(["decode", "--secret", "s", "--token-stdin"], stdin: Array(token.utf8))
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("too_large: "), "\(r.stderr.prefix(200))")
        #expect(r.stdout.isEmpty)
        // As an argument too (under ARG_MAX's per-string limit of 128 KiB it still passes the shell).
        let mid = String(repeating: "A", count: 100 * 1024) + "..A.A.A"
        let r2 = try Self.run(["decode", "--secret", "s", mid])
        #expect(r2.status == 1 && r2.stderr.hasPrefix("too_large: "), "\(r2.stderr.prefix(200))")
    }

    @Test("garbage on stdin exits 1 with a known code", .enabled(if: binary != nil))
    func garbage() throws {
        var rng = SplitMix64(seed: 7)
        var inputs: [[UInt8]] = [[], Array("\n".utf8), Array("   \t\n".utf8), [0, 0, 0], Array("....".utf8), [0xFF, 0xFE, 0x2E, 0x2E]]
        for n in [1, 17, 300, 5000, 70_000] { inputs.append((0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        for bytes in inputs {
            let r = try Self.run(["decode", "--secret", "s", "--token-stdin"], stdin: bytes)
            #expect(r.reason == .exit && r.status == 1, "\(bytes.count) bytes: exit \(r.status) \(r.stderr.prefix(200))")
            let code = r.stderr.split(separator: ":").first.map(String.init) ?? ""
            #expect(allCodes.contains(code), "\(r.stderr.prefix(200))")
            #expect(!r.stderr.dropLast().contains("\n"), "one line")
        }
    }

    @Test("mint → decode round trips through the binary", .enabled(if: binary != nil))
    func mintDecode() throws {
        let claims = #"{"sub":"u-1","email":"a@b.c","roles":["x"],"n":null}"#
        let variants: [(mint: [String], decode: [String])] = [
            (["--mode", "authjs-v5"], ["--mode", "authjs-v5"]),
            (["--mode", "authjs-v5", "--enc", "A256GCM"], ["--mode", "authjs-v5"]),
            (["--mode", "authjs-v5", "--cookie-name", "__Secure-authjs.session-token"], ["--mode", "authjs-v5", "--cookie-name", "__Secure-authjs.session-token"]),
            (["--mode", "authjs-v5", "--salt", "custom"], ["--mode", "authjs-v5", "--salt", "custom"]),
            (["--mode", "authjs-v5"], ["--mode", "auto"]),
            (["--mode", "nextauth-v4"], ["--mode", "nextauth-v4"]),
            (["--mode", "nextauth-v4"], ["--mode", "auto"]),
            (["--mode", "jws"], ["--mode", "jws"]),
            (["--mode", "jws", "--alg", "HS384"], ["--mode", "jws"]),
            (["--mode", "jws", "--alg", "HS512"], ["--mode", "auto"]),
        ]
        for v in variants {
            let m = try Self.run(["mint", "--secret", "rt-secret", "--now", "1800000000", "--max-age", "3600"] + v.mint + [claims])
            #expect(m.status == 0, "mint \(v.mint): \(m.stderr)")
            let token = m.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!token.isEmpty && !token.contains(" "))
            let d = try Self.run(["decode", "--secret", "rt-secret", "--now", "1800000100"] + v.decode + [token])
            #expect(d.status == 0, "decode \(v.decode): \(d.stderr)")
            guard case .success(let out) = JSONParser.parseValue(d.stdout) else { Issue.record("stdout \(d.stdout)"); continue }
            #expect(out["sub"] == .string("u-1") && out["email"] == .string("a@b.c") && out["n"] == .null)
            #expect(out["iat"] == .integer(1_800_000_000) && out["exp"] == .integer(1_800_003_600))
            #expect(out["jti"]?.stringValue?.count == 36)
            // Rotation: the minting secret as the older one.
            let rot = try Self.run(["decode", "--secret", "newer", "--secret", "rt-secret", "--now", "1800000100"] + v.decode + [token])
            #expect(rot.status == 0, "rotation \(v.decode): \(rot.stderr)")
            // Wrong secret, expired (beyond the 15 s tolerance), within tolerance, custom tolerance.
            let wrong = try Self.run(["decode", "--secret", "other", "--now", "1800000100"] + v.decode + [token])
            #expect(wrong.status == 1)
            let expired = try Self.run(["decode", "--secret", "rt-secret", "--now", "1800003615"] + v.decode + [token])
            #expect(expired.status == 1 && expired.stderr.hasPrefix("expired: "), "\(expired.stderr)")
            let within = try Self.run(["decode", "--secret", "rt-secret", "--now", "1800003614"] + v.decode + [token])
            #expect(within.status == 0)
            let strict = try Self.run(["decode", "--secret", "rt-secret", "--now", "1800003600", "--clock-tolerance", "0"] + v.decode + [token])
            #expect(strict.status == 1 && strict.stderr.hasPrefix("expired: "))
            // Through --token-stdin and as a cookie.
            let viaStdin = try Self.run(["decode", "--secret", "rt-secret", "--now", "1800000100", "--token-stdin"] + v.decode, stdin: Array((token + "\n").utf8))
            #expect(viaStdin.status == 0 && viaStdin.stdout == d.stdout)
        }
        // Mint with claims on stdin.
        let m = try Self.run(["mint", "--secret", "s", "--claims-stdin"], stdin: Array(#"{"sub":"stdin"}"#.utf8))
        #expect(m.status == 0)
        let d = try Self.run(["decode", "--secret", "s", m.stdout.trimmingCharacters(in: .whitespacesAndNewlines)])
        #expect(d.status == 0 && d.stdout.contains(#""sub":"stdin""#))
    }

    @Test("decode reads chunked cookies and Bearer through the binary", .enabled(if: binary != nil))
    func requestFlags() throws {
        let m = try Self.run(["mint", "--secret", "s", "--now", "1800000000", #"{"sub":"c"}"#])
        let token = m.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let half = token.index(token.startIndex, offsetBy: token.count / 2)
        let chunked = "authjs.session-token.1=\(token[half...]); x=1; authjs.session-token.0=\(token[..<half])"
        let base = ["decode", "--secret", "s", "--now", "1800000000", "--mode", "authjs-v5", "--cookie-name", "authjs.session-token"]
        #expect(try Self.run(base + ["--cookie-header=\(chunked)"]).status == 0)
        #expect(try Self.run(base + ["--authorization=Bearer \(token)"]).status == 0)
        #expect(try Self.run(base + ["--cookie-header=x=1", "--authorization=Bearer \(token)"]).status == 0)
        let lower = try Self.run(base + ["--authorization=bearer \(token)"])
        #expect(lower.status == 1 && lower.stderr.hasPrefix("missing_token: "))
        let bad = try Self.run(base + ["--authorization=Bearer %ZZ"])
        #expect(bad.status == 1 && bad.stderr.hasPrefix("malformed: "))
        let legacy = try Self.run(base + ["--cookie-header=authjs.session-token-legacy=\(token)"])
        #expect(legacy.status == 1 && legacy.stderr.hasPrefix("missing_token: "))
    }
}
