import AuthJSToken
import SidecarCore
import Testing
import VectorFixtures

@Suite("CookieParser")
struct CookieParserTests {
    func values(_ header: String, _ names: Set<Substring>) -> [Substring: String] { CookieParser.values(named: names, in: header) }

    func pairs(_ header: String) -> [String] {
        var out: [String] = []
        CookieParser.forEachPair(header) { n, v in out.append("\(n)=\(v)"); return true }
        return out
    }

    @Test("the first occurrence of a name wins")
    func firstWins() {
        #expect(values("a=1; a=2", ["a"]) == ["a": "1"])
        #expect(values("b=0; a=1; b=9; a=2", ["a", "b"]) == ["a": "1", "b": "0"])
        #expect(pairs("a=1; a=2") == ["a=1", "a=2"], "forEachPair reports duplicates; callers keep the first")
        // An empty first occurrence still wins (as `cookie` does).
        #expect(values("a=; a=2", ["a"]) == ["a": ""])
    }

    @Test("one pair of surrounding quotes is removed (slice(1, -1), closing quote unchecked)")
    func quotes() {
        #expect(values(#"a="x y""#, ["a"]) == ["a": "x y"])
        #expect(values(#"a="""#, ["a"]) == ["a": ""])
        #expect(values(#"a=""#, ["a"]) == ["a": ""])
        #expect(values(#"a="abc"#, ["a"]) == ["a": "ab"])
        #expect(values(#"a=""x"""#, ["a"]) == ["a": #""x""#])
        #expect(values(#"a=x"y""#, ["a"]) == ["a": #"x"y""#])
        #expect(values(#"a= "q" "#, ["a"]) == ["a": "q"], "trim happens before unquoting")
    }

    @Test("percent-decoding of values containing %, raw value kept when decoding fails")
    func percent() {
        #expect(values("a=%41%20b%2e", ["a"]) == ["a": "A b."])
        #expect(values("a=%E2%9C%93", ["a"]) == ["a": "✓"])
        #expect(values("a=%ZZ", ["a"]) == ["a": "%ZZ"])
        #expect(values("a=%", ["a"]) == ["a": "%"])
        #expect(values("a=%4", ["a"]) == ["a": "%4"])
        #expect(values("a=%E2%9C", ["a"]) == ["a": "%E2%9C"], "truncated UTF-8 is kept raw")
        #expect(values("a=%FF", ["a"]) == ["a": "%FF"], "invalid UTF-8 is kept raw")
        #expect(values("a=x+y", ["a"]) == ["a": "x+y"], "+ is not a space")
        #expect(values(#"a="%41""#, ["a"]) == ["a": "A"], "quotes removed, then decoded")
        // Names are not decoded.
        #expect(values("%61=1; a=2", ["a"]) == ["a": "2"])
        #expect(PercentDecoding.decodeURIComponent("%00") == "\u{0}")
        #expect(PercentDecoding.decodeURIComponent("%C0%80") == nil, "overlong encoding")
        #expect(PercentDecoding.decodeURIComponent("%ED%A0%80") == nil, "surrogate")
        #expect(PercentDecoding.decodeURIComponent("abc") == "abc")
        #expect(PercentDecoding.decodeURIComponent("%2") == nil)
        #expect(PercentDecoding.decodeURIComponent("%g0") == nil)
    }

    @Test("`a; b=c`: a segment without = is skipped; leading, trailing and doubled separators")
    func segmentsWithoutEquals() {
        #expect(values("a; b=c", ["a", "b"]) == ["b": "c"])
        #expect(values("a; x; b=c; d", ["b", "d"]) == ["b": "c"])
        #expect(values(";;b=c;;", ["b"]) == ["b": "c"])
        #expect(values("b", ["b"]) == [:])
        #expect(values("", ["b"]) == [:])
        #expect(values("=x; b=c", ["b", ""]) == ["": "x", "b": "c"])
        #expect(values("b==c", ["b"]) == ["b": "=c"], "the value keeps later '='")
        #expect(values("b=c=d; e=f", ["b", "e"]) == ["b": "c=d", "e": "f"])
        #expect(pairs("a; b=c") == ["b=c"])
    }

    @Test("whitespace around names and values is trimmed (spaces, tabs); inner spaces kept")
    func whitespace() {
        #expect(values("  a  =  1  ;\tb\t=\t2\t", ["a", "b"]) == ["a": "1", "b": "2"])
        #expect(values("a=x y", ["a"]) == ["a": "x y"])
        #expect(values("a b=1", ["a b"]) == ["a b": "1"])
        #expect(values("a=1;b=2", ["b"]) == ["b": "2"])
        #expect(pairs(" a = 1 ; b = 2 ") == ["a=1", "b=2"])
    }

    @Test("early stop from the callback")
    func earlyStop() {
        var seen = 0
        CookieParser.forEachPair("a=1; b=2; c=3") { _, _ in seen += 1; return seen < 2 }
        #expect(seen == 2)
    }
}

@Suite("SessionTokenExtractor")
struct SessionTokenExtractorTests {
    static let name = "authjs.session-token"

    func extractor(_ names: [String] = [name], formats: Set<TokenFormat> = Set(TokenFormat.allCases)) throws -> SessionTokenExtractor {
        try TokenAuthenticator(secrets: ["s"], cookies: names.map { SessionCookie(name: $0) }, formats: formats).extractor
    }

    func values(_ e: SessionTokenExtractor, cookie: String?, auth: String? = nil) -> [String]? {
        switch e.extract(cookieHeader: cookie, authorization: auth) {
        case .success(let t): return t.map(\.value)
        case .failure: return nil
        }
    }

    @Test("exact name only")
    func exact() throws {
        let e = try extractor()
        #expect(values(e, cookie: "authjs.session-token=tok") == ["tok"])
        #expect(values(e, cookie: "x=1; authjs.session-token=tok; y=2") == ["tok"])
        #expect(values(e, cookie: "authjs.session-token=") == [])
        #expect(values(e, cookie: "Authjs.session-token=tok") == [], "names are case-sensitive")
        #expect(values(e, cookie: "__Secure-authjs.session-token=tok") == [], "not configured")
        #expect(values(e, cookie: nil) == [])
        #expect(values(e, cookie: "") == [])
        let t = try #require(try? e.extract(cookieHeader: "authjs.session-token=tok", authorization: nil).get().first)
        #expect(t.source == .cookie(0))
    }

    @Test("chunks are reassembled by numeric suffix, whatever the header order")
    func chunks() throws {
        let e = try extractor()
        let n = Self.name
        #expect(values(e, cookie: "\(n).2=c; \(n).0=a; \(n).1=b") == ["abc"])
        #expect(values(e, cookie: "\(n).10=k; \(n).2=c; \(n).1=b; \(n).0=a") == ["abck"], "10 sorts after 2")
        #expect(values(e, cookie: "\(n).1=b; theme=dark; \(n).0=a") == ["ab"])
        #expect(values(e, cookie: "\(n).0=a") == ["a"])
        #expect(values(e, cookie: "\(n).0=a; \(n).0=z; \(n).1=b") == ["ab"], "first occurrence of a chunk wins")
        #expect(values(e, cookie: "\(n).0=%61; \(n).1=%62") == ["ab"], "each chunk percent-decoded")
    }

    @Test("empty chunks and an empty exact cookie are ignored")
    func emptyChunks() throws {
        let e = try extractor()
        let n = Self.name
        #expect(values(e, cookie: "\(n).0=a; \(n).1=; \(n).2=c") == ["ac"])
        #expect(values(e, cookie: "\(n)=; \(n).0=a; \(n).1=b") == ["ab"])
        #expect(values(e, cookie: "\(n).0=; \(n).1=") == [])
    }

    @Test("`name-legacy`, `name.x`, `name.1a`, `name.`, `name.-1`, `namex` never match")
    func neverPrefix() throws {
        let e = try extractor()
        let n = Self.name
        for bad in ["\(n)-legacy", "\(n).x", "\(n).1a", "\(n).", "\(n).-1", "\(n)x", "\(n).0.1", "\(n). 1", "\(n).+1", "\(n).１"] {
            #expect(values(e, cookie: "\(bad)=junk") == [], "\(bad)")
            #expect(values(e, cookie: "\(bad)=junk; \(n)=tok") == ["tok"], "\(bad) glued")
            #expect(values(e, cookie: "\(bad)=junk; \(n).0=a; \(n).1=b") == ["ab"], "\(bad) among chunks")
        }
    }

    /// Node compares cookie names code unit by code unit; Swift's String `==` uses canonical equivalence, under
    /// which U+212A KELVIN SIGN equals "K". A configured name containing K must not match a header name spelt
    /// with U+212A.
    @Test("names compare by code units, not Unicode canonical equivalence")
    func canonicalEquivalence() throws {
        let e = try extractor(["SessionK"])
        #expect(values(e, cookie: "Session\u{212A}=forged") == [], "KELVIN SIGN must not match K")
        #expect(values(e, cookie: "Session\u{212A}=forged; SessionK=real") == ["real"], "the real cookie must not be shadowed")
        #expect(values(e, cookie: "Session\u{212A}.0=forged") == [], "nor as a chunk")
        #expect(CookieParser.values(named: ["SessionK"], in: "Session\u{212A}=forged") == [:])
    }

    @Test("a cookie wins over Bearer; Bearer only when no configured cookie has a value")
    func cookieBeatsBearer() throws {
        let e = try extractor()
        #expect(values(e, cookie: "authjs.session-token=c", auth: "Bearer b") == ["c"])
        #expect(values(e, cookie: "other=1", auth: "Bearer b") == ["b"])
        #expect(values(e, cookie: "authjs.session-token=", auth: "Bearer b") == ["b"])
        #expect(values(e, cookie: nil, auth: "Bearer b") == ["b"])
        let t = try #require(try? e.extract(cookieHeader: nil, authorization: "Bearer b").get().first)
        #expect(t.source == .bearer)
    }

    @Test("`Bearer` is case-sensitive with exactly one space; value percent-decoded")
    func bearer() throws {
        let e = try extractor()
        #expect(values(e, cookie: nil, auth: "bearer b") == [])
        #expect(values(e, cookie: nil, auth: "BEARER b") == [])
        #expect(values(e, cookie: nil, auth: "Basic dXNlcjpwYXNz") == [])
        #expect(values(e, cookie: nil, auth: "Bearer") == [])
        #expect(values(e, cookie: nil, auth: "Bearer ") == [])
        #expect(values(e, cookie: nil, auth: "Bearer  b") == [], "split(' ')[1] is empty")
        #expect(values(e, cookie: nil, auth: "Bearer\tb") == [])
        #expect(values(e, cookie: nil, auth: " Bearer b") == [])
        #expect(values(e, cookie: nil, auth: "Bearer a b") == ["a"], "split(' ')[1]")
        #expect(values(e, cookie: nil, auth: "Bearer a%2Eb%5F") == ["a.b_"])
        #expect(values(e, cookie: nil, auth: "Bearer %E2%9C%93") == ["✓"])
        for bad in ["Bearer a%ZZ", "Bearer a%", "Bearer %E2%9C", "Bearer %FF"] {
            switch e.extract(cookieHeader: nil, authorization: bad) {
            case .failure(let f): #expect(f.code == .malformed, "\(bad)")
            case .success(let t): Issue.record("\(bad) gave \(t)")
            }
        }
        // Broken percent-encoding in a Bearer is irrelevant when a cookie is present.
        #expect(values(e, cookie: "authjs.session-token=c", auth: "Bearer %ZZ") == ["c"])
    }

    @Test("several configured names: one candidate per cookie with a value, in configuration order")
    func severalNames() throws {
        let names = ["__Secure-authjs.session-token", "authjs.session-token", "__Secure-next-auth.session-token", "next-auth.session-token"]
        let e = try extractor(names)
        #expect(values(e, cookie: "next-auth.session-token=v4; authjs.session-token=v5") == ["v5", "v4"])
        #expect(values(e, cookie: "authjs.session-token.1=b; __Secure-authjs.session-token=s; authjs.session-token.0=a") == ["s", "ab"])
        let found = try e.extract(cookieHeader: "next-auth.session-token=v4; authjs.session-token=v5", authorization: "Bearer x").get()
        #expect(found.map(\.source) == [.cookie(1), .cookie(3)])
        // Scopes: the v5 cookie's token may only use its own salt; the next-auth cookie accepts v4.
        #expect(found[0].scope.v5Salts == 1 << 1)
        #expect(found[0].scope.v4 == false)
        #expect(found[1].scope.v4 == true)
        // Bearer: every salt.
        let bearer = try e.extract(cookieHeader: nil, authorization: "Bearer x").get()
        #expect(bearer.first?.scope.v5Salts == 0b1111)
        #expect(SessionCookie.defaults.map(\.name) == names)
    }

    @Test("a cookie's custom salt selects the key scope")
    func customSalt() throws {
        let a = try TokenAuthenticator(secrets: ["s"], cookies: [SessionCookie(name: "sess", salt: "my-salt"), SessionCookie(name: "other")])
        #expect(a.verifier.keys.v5Salts == ["my-salt", "other"])
        let t = try a.extractor.extract(cookieHeader: "other=1; sess=2", authorization: nil).get()
        #expect(t.map(\.value) == ["2", "1"])
        #expect(t.map(\.scope.v5Salts) == [1, 2])
        // Two cookies sharing one salt share one key row.
        let b = try TokenAuthenticator(secrets: ["s"], cookies: [SessionCookie(name: "a", salt: "x"), SessionCookie(name: "b", salt: "x")])
        #expect(b.verifier.keys.v5Salts == ["x"])
        #expect(try b.extractor.extract(cookieHeader: "b=1", authorization: nil).get().first?.scope.v5Salts == 1)
    }

    /// Auth.js `getToken()` cookie semantics written plainly (Substring pairs, a list of names already taken), as the
    /// reference for the one-pass byte scan the extractor uses.
    static func reference(_ header: String, names: [String]) -> [String] {
        var exact = [String?](repeating: nil, count: names.count)
        var chunks = [[(Int, String)]](repeating: [], count: names.count)
        var taken: [[UInt8]] = []
        func decode(_ v: Substring) -> String { v.contains("%") ? PercentDecoding.decodeURIComponent(v) ?? String(v) : String(v) }
        CookieParser.forEachPair(header) { name, value in
            let nameBytes = Array(name.utf8)
            for (i, cookie) in names.enumerated() {
                let c = Array(cookie.utf8)
                guard nameBytes.starts(with: c) else { continue }
                if nameBytes.count == c.count {
                    if !taken.contains(nameBytes) { taken.append(nameBytes); exact[i] = decode(value) }
                    return true
                }
                let suffix = nameBytes[c.count...]
                guard suffix.first == UInt8(ascii: "."), (2...5).contains(suffix.count),
                      suffix.dropFirst().allSatisfy({ (0x30...0x39).contains($0) }),
                      chunks[i].count < SessionTokenExtractor.maxChunks else { continue }
                if !taken.contains(nameBytes) {
                    taken.append(nameBytes)
                    chunks[i].append((Int(String(decoding: suffix.dropFirst(), as: UTF8.self))!, decode(value)))
                }
                return true
            }
            return true
        }
        return names.indices.compactMap { i in
            var v = exact[i] ?? ""
            if v.isEmpty { v = chunks[i].sorted { $0.0 < $1.0 }.map(\.1).joined() }
            return v.isEmpty ? nil : v
        }
    }

    @Test("random Cookie headers: the byte scan agrees with the plain reference (first wins, chunks, spellings, prefixes)")
    func randomAgainstReference() throws {
        let names = ["__Secure-a.b", "a.b", "a"]  // `a` is a prefix of the others; `a.b` is also a chunk-like `a.` name
        let e = try extractor(names)
        let nameParts = ["a.b", "a", "__Secure-a.b", "a.b.0", "a.b.1", "a.b.01", "a.b.10", "a.0", "a.1", "a.b.x", "a.", "x",
                         "__Secure-a.b.2", "a.b.123456", " a.b ", "a.B"]
        let valueParts = ["", "v", "w1", "%41", "%zz", "\"q\"", " sp ", "=", "é"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let pairs = (0..<Int.random(in: 0...7, using: &rng)).map { _ in
                "\(nameParts.randomElement(using: &rng)!)=\(valueParts.randomElement(using: &rng)!)"
            }
            let header = pairs.joined(separator: Bool.random(using: &rng) ? "; " : ";")
            #expect(values(e, cookie: header) == Self.reference(header, names: names), "\(header)")
        }
    }

    @Test("chunk count is bounded")
    func chunkBound() throws {
        let e = try extractor()
        let header = (0..<1000).map { "authjs.session-token.\($0)=x" }.joined(separator: "; ")
        let v = try #require(values(e, cookie: header)?.first)
        #expect(v.utf8.count <= SessionTokenExtractor.maxChunks)
    }
}

@Suite("SecretsFromEnvironment")
struct SecretsTests {
    @Test("order: AUTH_SECRET_3, AUTH_SECRET_2, AUTH_SECRET_1, AUTH_SECRET (newest first)")
    func order() throws {
        #expect(try SecretsFromEnvironment.load(["AUTH_SECRET": "0"]).get() == ["0"])
        #expect(try SecretsFromEnvironment.load(["AUTH_SECRET": "0", "AUTH_SECRET_1": "1"]).get() == ["1", "0"])
        #expect(try SecretsFromEnvironment.load(["AUTH_SECRET": "0", "AUTH_SECRET_1": "1", "AUTH_SECRET_2": "2", "AUTH_SECRET_3": "3"]).get()
                == ["3", "2", "1", "0"])
        #expect(try SecretsFromEnvironment.load(["AUTH_SECRET_2": "2", "AUTH_SECRET": "0"]).get() == ["2", "0"])
        #expect(try SecretsFromEnvironment.load(["AUTH_SECRET_1": "1"]).get() == ["1"])
        #expect(try SecretsFromEnvironment.load(["AUTH_SECRET_4": "4", "AUTH_SECRET": "0"]).get() == ["0"], "only _1.._3")
    }

    @Test("NEXTAUTH_SECRET is the fallback only when no AUTH_SECRET* is set")
    func fallback() throws {
        #expect(try SecretsFromEnvironment.load(["NEXTAUTH_SECRET": "n"]).get() == ["n"])
        #expect(try SecretsFromEnvironment.load(["NEXTAUTH_SECRET": "n", "AUTH_SECRET": "a"]).get() == ["a"])
        #expect(try SecretsFromEnvironment.load(["NEXTAUTH_SECRET": "n", "AUTH_SECRET_1": "a1"]).get() == ["a1"])
    }

    @Test("an empty variable is an issue naming it; none at all names AUTH_SECRET")
    func issues() {
        for name in ["AUTH_SECRET", "AUTH_SECRET_1", "AUTH_SECRET_2", "AUTH_SECRET_3"] {
            var env = ["AUTH_SECRET": "ok"]
            env[name] = ""
            guard case .failure(let issue) = SecretsFromEnvironment.load(env) else { Issue.record("\(name) empty accepted"); continue }
            #expect(issue.key == name)
            #expect(issue.description.hasPrefix(name))
        }
        guard case .failure(let n) = SecretsFromEnvironment.load(["NEXTAUTH_SECRET": ""]) else { Issue.record("empty NEXTAUTH_SECRET accepted"); return }
        #expect(n.key == "NEXTAUTH_SECRET")
        guard case .failure(let missing) = SecretsFromEnvironment.load(["PATH": "/bin"]) else { Issue.record("no secret accepted"); return }
        #expect(missing.key == "AUTH_SECRET")
        #expect(missing.description.contains("AUTH_SECRET"))
        // Issues never echo a secret value.
        guard case .failure(let e) = SecretsFromEnvironment.load(["AUTH_SECRET": "super-secret-value", "AUTH_SECRET_1": ""]) else { return }
        #expect(!e.description.contains("super-secret-value"))
    }
}
