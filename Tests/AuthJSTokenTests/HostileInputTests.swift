import Testing
@testable import AuthJSToken
import VectorFixtures

/// Hostile tokens: every one must come back as a failure with a known code — never a crash, never a success.
@Suite("Hostile inputs")
struct HostileInputTests {
    static let secret = "hostile-test-secret"
    static let salt = "authjs.session-token"
    static let now = 1_800_000_000.0
    static let ring = try! KeyRing(secrets: [secret], v5Salts: [salt])
    static let verifier = TokenVerifier(keys: ring)
    /// Only the whole-token cap raised, so the 8 KiB header cap is what trips.
    static let bigToken = TokenVerifier(keys: ring, options: VerifierOptions(maxTokenBytes: 8 << 20))
    /// Token and header caps raised, so the JSON depth cap is what trips.
    static let roomy = TokenVerifier(keys: ring, options: VerifierOptions(maxTokenBytes: 8 << 20, maxHeaderBytes: 4 << 20))

    static let claims = TokenMinter.stampClaims(JSONObject([
        ("name", .string("Eve")), ("email", .string("eve@example.com")), ("picture", .null), ("sub", .string("eve")),
    ]), now: Int64(now))
    static let validToken = try! TokenMinter.authjsV5(claims: claims, secret: secret, salt: salt)

    static func b64(_ s: String) -> String { Base64URL.encode(Array(s.utf8)) }

    /// A correctly encrypted v5 token (CBC, with kid) over arbitrary header and plaintext bytes.
    static func sealed(header: [UInt8], plaintext: [UInt8]) -> String {
        let key = ring.v5Key(saltIndex: 0, encryption: .a256cbcHS512)
        let protected = Base64URL.encode(header)
        let iv = Crypto.randomBytes(16)
        let s = ContentCipher.sealCBCHS512(key: key.bytes, aad: Array(protected.utf8), iv: iv, plaintext: plaintext)!
        return "\(protected)..\(Base64URL.encode(iv)).\(Base64URL.encode(s.ciphertext)).\(Base64URL.encode(s.tag))"
    }

    static var kidHeader: String {
        #"{"alg":"dir","enc":"A256CBC-HS512","kid":"\#(ring.v5Key(saltIndex: 0, encryption: .a256cbcHS512).kid)"}"#
    }

    func expectFailure(_ r: Result<VerifiedToken, VerificationFailure>, _ expected: VerificationCode? = nil,
                       _ what: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        switch r {
        case .success: Issue.record("\(what()): verified", sourceLocation: sourceLocation)
        case .failure(let f):
            #expect(allCodes.contains(f.code.rawValue), sourceLocation: sourceLocation)
            if let expected { #expect(f.code == expected, "\(what()): \(f)", sourceLocation: sourceLocation) }
        }
    }

    @Test("the valid token itself verifies (sanity)")
    func sanity() throws {
        #expect(try Self.verifier.verify(Self.validToken, now: Self.now).get().claims == Self.claims)
        // A correctly sealed token built by the test helper verifies too.
        let t = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: JSONValue.object(Self.claims).serialized())
        #expect(try Self.verifier.verify(t, now: Self.now).get().claims == Self.claims)
    }

    @Test("1 MiB header segment: too_large (token cap by default, header cap when the token cap is raised)")
    func hugeHeader() {
        let segment = String(repeating: "A", count: 1 << 20)
        let token = segment + "..AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        expectFailure(Self.verifier.verify(token, now: Self.now), .tooLarge, "1 MiB header")
        expectFailure(Self.bigToken.verify(token, now: Self.now), .tooLarge, "1 MiB header, token cap raised")
        // A valid-JSON 1 MiB header, correctly sealed with the right key: still too_large, never decrypted.
        let pad = String(repeating: "A", count: 1 << 20)
        let header = #"{"alg":"dir","enc":"A256CBC-HS512","pad":"\#(pad)"}"#
        let t = Self.sealed(header: Array(header.utf8), plaintext: JSONValue.object(Self.claims).serialized())
        expectFailure(Self.verifier.verify(t, now: Self.now), .tooLarge, "sealed 1 MiB header")
        expectFailure(Self.bigToken.verify(t, now: Self.now), .tooLarge, "sealed 1 MiB header, token cap raised")
        // Just over the header cap with everything else small.
        let big = String(repeating: "A", count: 8 * 1024 + 4)
        expectFailure(Self.verifier.verify(big + "..A.A.A", now: Self.now), .tooLarge, "header over 8 KiB")
    }

    @Test("100 000-deep JSON array header (5 segments): too_large")
    func deepHeader() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let token = Self.b64(deep) + "..AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        #expect(token.split(separator: ".", omittingEmptySubsequences: false).count == 5)
        expectFailure(Self.verifier.verify(token, now: Self.now), .tooLarge, "deep header")
        expectFailure(Self.roomy.verify(token, now: Self.now), .tooLarge, "deep header, roomy")
        // Deep objects inside a real header object, within the byte cap: the depth cap alone trips.
        let nested = String(repeating: #"{"a":"#, count: 1000) + "1" + String(repeating: "}", count: 1000)
        let h = #"{"alg":"dir","enc":"A256CBC-HS512","x":\#(nested)}"#
        expectFailure(Self.verifier.verify(Self.b64(h) + "..A.A.A", now: Self.now), .tooLarge, "deep objects in header")
        // As a JWS too (3 segments).
        expectFailure(Self.roomy.verify(Self.b64(deep) + ".e30.AAAA", now: Self.now), .tooLarge, "deep JWS header")
    }

    @Test("50 000-deep payload, correctly encrypted: too_large after decryption")
    func deepPayload() {
        let deep = #"{"sub":"x","deep":"# + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000) + "}"
        let token = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: Array(deep.utf8))
        #expect(token.utf8.count < 256 * 1024)
        expectFailure(Self.verifier.verify(token, now: Self.now), .tooLarge, "deep payload")
        // Deep but still under the cap (32): accepted.
        let ok = #"{"sub":"x","deep":"# + String(repeating: "[", count: 31) + String(repeating: "]", count: 31) + "}"
        let t2 = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: Array(ok.utf8))
        #expect((try? Self.verifier.verify(t2, now: Self.now).get()) != nil)
        let over = #"{"sub":"x","deep":"# + String(repeating: "[", count: 32) + String(repeating: "]", count: 32) + "}"
        let t3 = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: Array(over.utf8))
        expectFailure(Self.verifier.verify(t3, now: Self.now), .tooLarge, "33 levels")
        // Brackets inside strings do not count.
        let inString = #"{"sub":"# + "\"" + String(repeating: "[", count: 5000) + "\"}"
        let t4 = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: Array(inString.utf8))
        #expect((try? Self.verifier.verify(t4, now: Self.now).get()) != nil)
    }

    @Test("payload over the 192 KiB JSON cap: too_large")
    func hugePayload() {
        let blob = String(repeating: "A", count: 200 * 1024)
        let t = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: Array(#"{"blob":"\#(blob)"}"#.utf8))
        expectFailure(Self.verifier.verify(t, now: Self.now), .tooLarge, "200 KiB payload")
    }

    @Test("sealed payloads that are not JSON objects: malformed")
    func nonObjectPayloads() {
        for p in ["[]", "\"x\"", "1", "null", "", "{", "{\"a\":1}x", "{\"a\":1,\"a\":2}", "\u{FEFF}{}"] {
            let t = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: Array(p.utf8))
            expectFailure(Self.verifier.verify(t, now: Self.now), .malformed, "payload \(p.debugDescription)")
        }
        // Invalid UTF-8 inside a string.
        let bad: [UInt8] = Array(#"{"sub":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)
        expectFailure(Self.verifier.verify(Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: bad), now: Self.now), .malformed, "bad UTF-8")
        // An overlong / surrogate encoding.
        let surrogate: [UInt8] = Array(#"{"sub":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)
        expectFailure(Self.verifier.verify(Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: surrogate), now: Self.now), .malformed, "surrogate")
    }

    @Test("random garbage bytes and random base64url-ish strings never verify")
    func garbage() {
        var rng = SplitMix64(seed: 0xA17_5EED)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.".utf8)
        for i in 0..<3000 {
            let n = Int.random(in: 0...700, using: &rng)
            let bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            }
            expectFailure(Self.verifier.verify(bytes, now: Self.now), nil, "garbage #\(i)")
        }
        // Structured garbage: right shape, random segments.
        for i in 0..<1000 {
            func seg(_ max: Int) -> String { Base64URL.encode((0..<Int.random(in: 0...max, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
            let t = i % 2 == 0 ? "\(Self.b64(Self.kidHeader))..\(seg(20)).\(seg(300)).\(seg(40))" : "\(seg(60))..\(seg(20)).\(seg(300)).\(seg(40))"
            expectFailure(Self.verifier.verify(t, now: Self.now), nil, "structured garbage #\(i)")
        }
        expectFailure(Self.verifier.verify("", now: Self.now), .malformed, "empty")
        expectFailure(Self.verifier.verify([UInt8](), now: Self.now), .malformed, "empty bytes")
        expectFailure(Self.verifier.verify("....", now: Self.now), .malformed, "only dots")
        expectFailure(Self.verifier.verify("..", now: Self.now), .malformed, "two dots")
    }

    @Test("every truncation of a valid v5 token fails")
    func truncations() {
        let t = Array(Self.validToken.utf8)
        for n in 0..<t.count {
            expectFailure(Self.verifier.verify(Array(t[0..<n]), now: Self.now), nil, "prefix \(n)")
            expectFailure(Self.verifier.verify(Array(t[n...].dropFirst()), now: Self.now), nil, "suffix from \(n + 1)")
        }
    }

    @Test("every single-character mutation of a valid v5 token fails", arguments: [TokenMinter.Encryption.a256cbcHS512, .a256gcm])
    func mutations(_ enc: TokenMinter.Encryption) throws {
        let token = try TokenMinter.authjsV5(claims: Self.claims, secret: Self.secret, salt: Self.salt, encryption: enc)
        let t = Array(token.utf8)
        let replacements = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/= ".utf8) + [0, 0xFF]
        var tried = 0
        for i in t.indices {
            for r in replacements where r != t[i] {
                var m = t
                m[i] = r
                tried += 1
                if case .success = Self.verifier.verify(m, now: Self.now) {
                    Issue.record("mutation at \(i) to \(UnicodeScalar(r)) verified")
                }
            }
            // Deletion and insertion at each position.
            var d = t; d.remove(at: i)
            expectFailure(Self.verifier.verify(d, now: Self.now), nil, "deletion at \(i)")
            var ins = t; ins.insert(UInt8(ascii: "A"), at: i)
            expectFailure(Self.verifier.verify(ins, now: Self.now), nil, "insertion at \(i)")
        }
        #expect(tried == t.count * (replacements.count - 1))
    }

    @Test("wrong segment counts: 1, 2, 4, 6 and 7 segments are malformed")
    func segmentCounts() {
        let parts = Self.validToken.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        #expect(parts.count == 5)
        expectFailure(Self.verifier.verify(parts[0], now: Self.now), .malformed, "1 segment")
        expectFailure(Self.verifier.verify(parts[0] + "." + parts[2], now: Self.now), .malformed, "2 segments")
        expectFailure(Self.verifier.verify(parts[0..<4].joined(separator: "."), now: Self.now), .malformed, "4 segments")
        expectFailure(Self.verifier.verify(Self.validToken + ".", now: Self.now), .malformed, "6 segments, trailing dot")
        expectFailure(Self.verifier.verify(Self.validToken + "." + parts[4], now: Self.now), .malformed, "6 segments")
        expectFailure(Self.verifier.verify(Self.validToken + ".a.b", now: Self.now), .malformed, "7 segments")
        expectFailure(Self.verifier.verify(String(repeating: ".", count: 10_000), now: Self.now), .malformed, "10 000 dots")
    }

    @Test("header shapes: alg/enc/kid/zip/crit/b64 handling")
    func headerShapes() {
        let tail = "..AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        let cases: [(String, VerificationCode)] = [
            (#"{"enc":"A256CBC-HS512"}"#, .malformed),
            (#"{"alg":1,"enc":"A256CBC-HS512"}"#, .malformed),
            (#"{"alg":"dir"}"#, .malformed),
            (#"{"alg":"dir","enc":7}"#, .malformed),
            (#"{"alg":"none","enc":"A256CBC-HS512"}"#, .unsupportedAlgorithm),
            (#"{"alg":"A256KW","enc":"A256CBC-HS512"}"#, .unsupportedAlgorithm),
            (#"{"alg":"dir","enc":"A128CBC-HS256"}"#, .unsupportedAlgorithm),
            (#"{"alg":"dir","enc":"A256CBC-HS512","zip":"DEF"}"#, .unsupportedHeader),
            (#"{"alg":"dir","enc":"A256CBC-HS512","crit":["exp"]}"#, .unsupportedHeader),
            (#"{"alg":"dir","enc":"A256CBC-HS512","kid":5}"#, .malformed),
            (#"{"alg":"dir","enc":"A256CBC-HS512","kid":"nope"}"#, .noMatchingKey),
            (#"{"alg":"dir","alg":"dir","enc":"A256CBC-HS512"}"#, .malformed),
            ("[]", .malformed),
            ("null", .malformed),
            (" {\"alg\":\"dir\"", .malformed),
        ]
        for (h, expected) in cases {
            expectFailure(Self.verifier.verify(Self.b64(h) + tail, now: Self.now), expected, h)
        }
        let jwsCases: [(String, VerificationCode)] = [
            (#"{"alg":"none"}"#, .unsupportedAlgorithm), (#"{"alg":"NONE"}"#, .unsupportedAlgorithm),
            (#"{"alg":"hs256"}"#, .unsupportedAlgorithm), (#"{"alg":"RS256"}"#, .unsupportedAlgorithm),
            (#"{"alg":"dir"}"#, .unsupportedAlgorithm),
            (#"{"alg":"HS256","b64":false}"#, .unsupportedHeader), (#"{"alg":"HS256","crit":["b64"]}"#, .unsupportedHeader),
        ]
        for (h, expected) in jwsCases {
            expectFailure(Self.verifier.verify(Self.b64(h) + ".e30.AAAA", now: Self.now), expected, h)
        }
    }

    @Test("claims checks on correctly sealed tokens")
    func claimChecks() {
        func t(_ payload: String, header: String? = nil) -> Result<VerifiedToken, VerificationFailure> {
            Self.verifier.verify(Self.sealed(header: Array((header ?? Self.kidHeader).utf8), plaintext: Array(payload.utf8)), now: Self.now)
        }
        let n = Int(Self.now)
        expectFailure(t(#"{"exp":"\#(n + 100)"}"#), .invalidClaim, "exp string")
        expectFailure(t(#"{"nbf":null}"#), .invalidClaim, "nbf null")
        expectFailure(t(#"{"iat":[1]}"#), .invalidClaim, "iat array")
        expectFailure(t(#"{"exp":\#(n - 15)}"#), .expired, "exp now-15")
        #expect((try? t(#"{"exp":\#(n - 14)}"#).get()) != nil)
        #expect((try? t(#"{"exp":\#(n - 15).5}"#).get()) != nil)
        expectFailure(t(#"{"nbf":\#(n + 16)}"#), .notYetValid, "nbf now+16")
        #expect((try? t(#"{"nbf":\#(n + 15)}"#).get()) != nil)
        #expect((try? t(#"{"iat":\#(n + 100000)}"#).get()) != nil, "future iat is accepted, as jose does")
        #expect((try? t(#"{}"#).get()) != nil, "no exp is accepted, as jose does")
        // Header replicas of iss/sub/aud.
        let kid = Self.ring.v5Key(saltIndex: 0, encryption: .a256cbcHS512).kid
        func h(_ extra: String) -> String { #"{"alg":"dir","enc":"A256CBC-HS512","kid":"\#(kid)",\#(extra)}"# }
        #expect((try? t(#"{"sub":"a"}"#, header: h(#""sub":"a""#)).get()) != nil)
        expectFailure(t(#"{"sub":"a"}"#, header: h(#""sub":"b""#)), .invalidClaim, "sub mismatch")
        expectFailure(t(#"{}"#, header: h(#""iss":"x""#)), .invalidClaim, "iss without claim")
        expectFailure(t(#"{"aud":["a"]}"#, header: h(#""aud":["a"]"#)), .invalidClaim, "aud array replica never matches")
        #expect((try? t(#"{"aud":1}"#, header: h(#""aud":1.0"#)).get()) != nil)
    }

    /// Failure reasons go to logs, to `decode`'s one-line stderr and to 401 bodies: attacker-chosen header bytes must
    /// not reach them raw (Jansson's error text quotes the input "near '…'", control characters included).
    @Test("reasons are one printable line even when the header or payload JSON is hostile")
    func reasonsArePrintable() {
        let headers: [[UInt8]] = [
            Array("{\"alg\":\"dir\",\"x\":\"a\r\nX-Injected: 1".utf8),
            Array("{\"alg\":\"dir\",\"x\":\"\u{1B}[31mred".utf8),
            Array("{\"alg\":\"dir\",\"x\":tru\n".utf8),
            Array("{\"alg\":\"dir\",\"x\":\"\u{7F}\u{0}".utf8),
            Array("{\"alg\":\"dir\"} \n\r\nX: y".utf8),
            Array("{\"alg\":\"dir\",\"x\":\"".utf8) + [0xC3, 0x28, 0x0A],
        ]
        for h in headers {
            let token = Base64URL.encode(h) + "..AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            guard case .failure(let f) = Self.verifier.verify(token, now: Self.now) else { Issue.record("verified"); continue }
            #expect(f.code == .malformed)
            #expect(!f.reason.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "\(f.reason.debugDescription)")
        }
        // The same for a sealed (authenticated) payload that is not valid JSON.
        let payload = Array("{\"sub\":\"x\r\nSet-Cookie: a=b".utf8)
        let t = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: payload)
        if case .failure(let f) = Self.verifier.verify(t, now: Self.now) {
            #expect(f.code == .malformed)
            #expect(!f.reason.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "\(f.reason.debugDescription)")
        } else { Issue.record("verified") }
    }

    /// Jansson's error text quotes up to 20 bytes of the input "near '…'"; copied into `reason`, that puts
    /// attacker-chosen header text and *decrypted* payload text into logs and 401 bodies.
    @Test("reasons do not quote header or decrypted payload text")
    func reasonsDoNotQuoteInput() {
        let header = Array("{\"alg\":\"dir\",\"x\":\"EVIL\u{202E}\u{2028}\u{0}".utf8)
        let token = Base64URL.encode(header) + "..AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        if case .failure(let f) = Self.verifier.verify(token, now: Self.now) {
            #expect(!f.reason.contains("EVIL"), "\(f.reason.debugDescription)")
            #expect(!f.reason.unicodeScalars.contains { $0 == "\u{202E}" || $0 == "\u{2028}" }, "\(f.reason.debugDescription)")
        } else { Issue.record("verified") }
        // A correctly sealed payload (so: the issuer's plaintext) that fails to parse.
        let payload = Array("{\"email\":\"victim@example.com\u{0}\"}".utf8)
        let t = Self.sealed(header: Array(Self.kidHeader.utf8), plaintext: payload)
        if case .failure(let f) = Self.verifier.verify(t, now: Self.now) {
            #expect(f.code == .malformed)
            #expect(!f.reason.contains("victim@example.com"), "\(f.reason.debugDescription)")
        } else { Issue.record("verified") }
    }

    @Test("the reason never contains the token or key material")
    func reasonsDoNotLeak() throws {
        let key = Self.ring.v5Key(saltIndex: 0, encryption: .a256cbcHS512)
        let parts = Self.validToken.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var tampered = parts; tampered[4] = String(tampered[4].reversed())
        let samples = [
            tampered.joined(separator: "."),
            Self.validToken + ".x",
            Self.b64(#"{"alg":"dir","enc":"A256CBC-HS512","kid":"\#(String(repeating: "Z", count: 200))"}"#) + "..A.A.A",
            Self.b64(#"{"alg":"\#(String(repeating: "q", count: 500))\n"}"#) + ".e30.AAAA",
        ]
        for s in samples {
            guard case .failure(let f) = Self.verifier.verify(s, now: Self.now) else { Issue.record("verified"); continue }
            #expect(!f.reason.contains(parts[3]) && !f.reason.contains(parts[4]) && !f.reason.contains(Self.secret))
            #expect(!f.reason.contains(Hex.encode(key.bytes)) && !f.reason.contains(Base64URL.encode(key.bytes)))
            #expect(f.reason.utf8.count < 300, "\(f.reason)")
            #expect(!f.reason.contains("\n"))
            #expect(f.description == "\(f.code.rawValue): \(f.reason)")
        }
    }
}
