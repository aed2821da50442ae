import Testing
@testable import AuthJSToken

/// The verifier's shortcuts, each held to the plain definition it replaces: the one-pass registered-claims reader to
/// named lookups, the `memchr` dot scan to a count of dots, the known-header index to byte equality, the blocked
/// opener count to nesting.
@Suite("Verifier internals")
struct VerifierInternalsTests {
    static let now = 1_800_000_000.0
    static let secret = "internals-test-secret"
    static let ring = try! KeyRing(secrets: [secret], v5Salts: ["authjs.session-token", "__Secure-authjs.session-token"])
    static let verifier = TokenVerifier(keys: ring)

    /// What `RegisteredClaims.read` must equal: the first member of each name, looked up one by one.
    static func byLookup(_ o: JSONObject) -> RegisteredClaims.Reading {
        var r = RegisteredClaims.Reading()
        r.claims.issuer = o["iss"]?.stringValue
        r.claims.subject = o["sub"]?.stringValue
        switch o["aud"] {
        case .string(let s)?: r.claims.audience = [s]
        case .array(let items)?: r.claims.audience = items.compactMap(\.stringValue)
        default: break
        }
        r.claims.expiresAt = o["exp"]?.doubleValue
        r.claims.notBefore = o["nbf"]?.doubleValue
        r.claims.issuedAt = o["iat"]?.doubleValue
        r.claims.jwtID = o["jti"]?.stringValue
        r.nonNumericTime = ["exp", "nbf", "iat"].first { o[$0].map { !$0.isNumber } ?? false }
        return r
    }

    static let claimObjects: [JSONObject] = {
        let names = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "name", "is", "isss", "ISS", "ïs", "e\u{0}p", "exq", ""]
        let values: [JSONValue] = [.string("a"), .integer(7), .number(1.5), .null, .bool(true), .array([.string("x"), .integer(1), .string("y")]),
                                   .object(JSONObject([("exp", .integer(1))]))]
        var out: [JSONObject] = [JSONObject()]
        var state: UInt64 = 0x5EED
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        // Every name with every value alone, then 400 mixed objects, duplicate names included (the first must win).
        for n in names { for v in values { out.append(JSONObject([(n, v)])) } }
        for _ in 0..<400 {
            out.append(JSONObject((0..<(1 + next(9))).map { _ in (names[next(names.count)], values[next(values.count)]) }))
        }
        return out
    }()

    @Test("the one-pass reader agrees with named lookups", arguments: claimObjects)
    func readerMatchesLookups(_ object: JSONObject) {
        let read = RegisteredClaims.read(object), expected = Self.byLookup(object)
        #expect(read.claims == expected.claims)
        #expect(read.nonNumericTime == expected.nonNumericTime)
        #expect(RegisteredClaims(object) == expected.claims)
    }

    @Test("a non-numeric time claim is refused by name, exp before nbf before iat whatever the member order")
    func nonNumericTimeOrder() {
        let cases: [(String, String)] = [
            (#"{"iat":"x","nbf":"y","exp":"z"}"#, "exp"), (#"{"iat":"x","nbf":"y","exp":1}"#, "nbf"),
            (#"{"iat":"x","exp":9999999999}"#, "iat"), (#"{"exp":null}"#, "exp"), (#"{"nbf":[1]}"#, "nbf"),
        ]
        for (json, name) in cases {
            let token = TokenMinter.jws(claims: try! JSONParser.parseObject(Array(json.utf8)).get(), secret: Self.secret)
            switch Self.verifier.verify(token, now: Self.now) {
            case .success: Issue.record("\(json): verified")
            case .failure(let f):
                #expect(f.code == .invalidClaim)
                #expect(f.reason == "\"\(name)\" claim must be a number", "\(json)")
            }
        }
    }

    /// Segment-count errors over dots at every offset of a token longer than one 32-byte vector of `memchr`.
    @Test("the dot scan finds every dot at every offset", arguments: 0...4)
    func dotScan(_ dotCount: Int) {
        let length = 34
        var checked = 0
        func positions(_ k: Int, from start: Int) -> [[Int]] {
            if k == 0 { return [[]] }
            guard start < length else { return [] }
            return (start..<length).flatMap { p in positions(k - 1, from: p + 1).map { [p] + $0 } }
        }
        for dots in positions(dotCount, from: 0) {
            var bytes = [UInt8](repeating: UInt8(ascii: "A"), count: length)
            for p in dots { bytes[p] = UInt8(ascii: ".") }
            guard case .failure(let f) = Self.verifier.verify(bytes, now: Self.now) else {
                Issue.record("\(dots): verified"); continue
            }
            let segmentError = f.reason.contains("segments; a compact JWS has 3 and a JWE 5")
            if dotCount == 2 || dotCount == 4 {
                #expect(!segmentError, "\(dots): \(f.reason)")
            } else {
                #expect(f.code == .malformed && f.reason.hasPrefix("\(dotCount + 1) segments"), "\(dots): \(f.reason)")
            }
            checked += 1
        }
        #expect(checked == positions(dotCount, from: 0).count)
    }

    @Test("five or more dots are refused wherever the fifth falls", arguments: 0..<20)
    func fifthDot(_ offset: Int) {
        var bytes = [UInt8](repeating: UInt8(ascii: "A"), count: 40)
        for p in [offset, offset + 3, offset + 8, offset + 9, offset + 17] { bytes[p] = UInt8(ascii: ".") }
        guard case .failure(let f) = Self.verifier.verify(bytes, now: Self.now) else { Issue.record("verified"); return }
        #expect(f.reason == "more than 5 dot-separated segments")
    }

    @Test("known headers are found only by their exact bytes, with the key their kid selects")
    func knownHeaders() throws {
        var found = 0
        for salt in 0..<2 {
            for encryption in [ContentEncryption.a256cbcHS512, .a256gcm] {
                let key = Self.ring.v5Key(saltIndex: salt, encryption: encryption)
                let enc = encryption == .a256cbcHS512 ? "A256CBC-HS512" : "A256GCM"
                let segment = Array(Base64URL.encode(Array(#"{"alg":"dir","enc":"\#(enc)","kid":"\#(key.kid)"}"#.utf8)).utf8)
                let entry = try #require(segment.withUnsafeBufferPointer { Self.ring.knownHeaders.entry(for: $0) })
                #expect(entry.kidKey?.kid == key.kid)
                #expect(entry.header["enc"] == .string(enc))
                found += 1
                // Same length and last eight bytes (the lookup's fingerprint), another byte in the middle: unknown.
                for i in stride(from: 0, to: segment.count - 8, by: 7) {
                    var other = segment
                    other[i] = other[i] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
                    #expect(other.withUnsafeBufferPointer { Self.ring.knownHeaders.entry(for: $0) } == nil, "byte \(i)")
                }
                #expect(Array(segment.dropLast()).withUnsafeBufferPointer { Self.ring.knownHeaders.entry(for: $0) } == nil)
            }
        }
        #expect(found == 4)
        // Without a kid, and jose's JWS headers, no key comes with them.
        for header in [#"{"alg":"dir","enc":"A256GCM"}"#, #"{"alg":"HS256","typ":"JWT"}"#, #"{"typ":"JWT","alg":"HS512"}"#] {
            let segment = Array(Base64URL.encode(Array(header.utf8)).utf8)
            let entry = try #require(segment.withUnsafeBufferPointer { Self.ring.knownHeaders.entry(for: $0) }, "\(header)")
            #expect(entry.kidKey == nil)
        }
    }

    @Test("nesting past the cap is found after a 65 535-byte counting block, and openers inside strings only overcount")
    func openersAcrossBlocks() {
        let limits = JSONLimits(maxBytes: 1 << 20, maxDepth: 32)
        for filler in [65_000, 65_535, 65_536, 70_000] {
            let pad = String(repeating: "x", count: filler)
            // Inside the outer object: 32 arrays nest 33 deep, one past the cap; 31 reach it exactly.
            let deep = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
            let shallow = String(repeating: "[", count: 31) + String(repeating: "]", count: 31)
            let quoted = String(repeating: "[{", count: 40)
            func parse(_ s: String) -> Result<JSONObject, VerificationFailure> { JSONParser.parseObject(Array(s.utf8), limits: limits) }
            guard case .failure(let f) = parse(#"{"p":"\#(pad)","d":\#(deep)}"#) else { Issue.record("\(filler): 33 deep parsed"); continue }
            #expect(f.code == .tooLarge && f.reason.contains("deeper than 32"), "\(filler): \(f.reason)")
            #expect((try? parse(#"{"p":"\#(pad)","d":\#(shallow)}"#).get()) != nil, "\(filler): 32 deep")
            #expect((try? parse(#"{"p":"\#(pad)\#(quoted)","d":\#(shallow)}"#).get()) != nil, "\(filler): quoted openers")
        }
    }
}
