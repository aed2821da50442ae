import Foundation
import Testing
@testable import AuthJSToken

/// JSON text as JavaScript reads it, where Swift's or Jansson's reading differs: lone UTF-16 surrogate escapes
/// (which `JSON.stringify` writes and `JSON.parse` accepts, and Jansson refuses), and string equality by code units
/// (where Swift's `==` uses canonical equivalence). Both found in an adversarial review of the verifier.
@Suite("JSON text semantics")
struct JSONTextSemanticsTests {
    static func parse(_ text: String) -> JSONObject? { try? JSONParser.parseObject(Array(text.utf8)).get() }

    @Test("lone surrogate escapes read as U+FFFD; pairs, escaped backslashes and other escapes unchanged", arguments: [
        (#"{"n":"\ud83d"}"#, "\u{FFFD}"),
        (#"{"n":"Ada \uD83D"}"#, "Ada \u{FFFD}"),
        (#"{"n":"\ude00x"}"#, "\u{FFFD}x"),
        (#"{"n":"\ude00\ud83d"}"#, "\u{FFFD}\u{FFFD}"),
        (#"{"n":"\ud83d\u0041"}"#, "\u{FFFD}A"),
        (#"{"n":"\ud83d\ud83d\ude00"}"#, "\u{FFFD}😀"),
        (#"{"n":"\ud83d\ude00"}"#, "😀"),
        (#"{"n":"\\ud83d"}"#, #"\ud83d"#),
        (#"{"n":"\\\ud83d"}"#, "\\\u{FFFD}"),
        (#"{"n":"\u00e9\n"}"#, "é\n"),
    ])
    func loneSurrogates(json: String, expected: String) throws {
        let object = try #require(Self.parse(json), "\(json)")
        #expect(object["n"]?.stringValue.map { Array($0.utf8) } == Array(expected.utf8), "\(json)")
    }

    @Test("a lone surrogate in a member name, and invalid escapes still refused")
    func surrogateNamesAndInvalidEscapes() throws {
        let object = try #require(Self.parse(#"{"a\udc00":1,"b":2}"#))
        #expect(object.members.map { Array($0.key.utf8) } == [Array("a\u{FFFD}".utf8), Array("b".utf8)])
        for bad in [#"{"n":"\ud83"}"#, #"{"n":"\ud83g"}"#, #"{"n":"\u"}"#, #"{"n":\ud83d}"#, #"{"n":"\ud83d"#] {
            #expect(Self.parse(bad) == nil, "\(bad)")
        }
        // Two names that differ only in their lone surrogates become the same name: refused as a duplicate (fails
        // closed where JavaScript would keep both).
        #expect(Self.parse(#"{"a\ud800":1,"a\udc00":2}"#) == nil)
    }

    @Test("the escapes found are exactly the unpaired ones, at their hex digits")
    func escapeOffsets() {
        func offsets(_ s: String) -> [Int] { Array(s.utf8).withUnsafeBufferPointer { JSONParser.loneSurrogateEscapes($0) } }
        #expect(offsets(#"{"n":"plain"}"#) == [])
        #expect(offsets(#""\ud800""#) == [3])
        #expect(offsets(#""\ud800\udc00\udc00""#) == [15])
        #expect(offsets(#""\\\\ud800""#) == [])
        #expect(offsets(#"\ud800"#) == [2])  // at the very end of the input
        #expect(offsets(#"\ud80"#) == [])
    }

    /// A session whose claims carry a lone surrogate (as Auth.js writes one) verifies, in every format.
    @Test func aTokenWithALoneSurrogateVerifies() throws {
        let payload = Array(#"{"sub":"u1","name":"Ada \ud83d","exp":4070908800,"iat":1700000000}"#.utf8)
        let ring = try KeyRing(secrets: ["s3cret"], v5Salts: ["authjs.session-token"], formats: [.authjsV5, .nextauthV4, .jws])
        let key = ring.v5Key(saltIndex: 0, encryption: .a256cbcHS512)
        let header = JSONObject([("alg", .string("dir")), ("enc", .string("A256CBC-HS512")), ("kid", .string(key.kid))])
        let v5 = TokenMinter.seal(header: header, key: key.bytes, encryption: .a256cbcHS512, plaintext: payload)
        let v4 = TokenMinter.seal(header: JSONObject([("alg", .string("dir")), ("enc", .string("A256GCM"))]), key: ring.v4GCM[0].bytes,
                                  encryption: .a256gcm, plaintext: payload)
        let signingInput = Base64URL.encode(Array(#"{"alg":"HS256"}"#.utf8)) + "." + Base64URL.encode(payload)
        let jws = signingInput + "." + Base64URL.encode(Crypto.hmac(.sha256, key: Array("s3cret".utf8), Array(signingInput.utf8)) ?? [])
        for token in [v5, v4, jws] {
            let verified = try TokenVerifier(keys: ring).verify(token, now: 1_700_000_100).get()
            #expect(verified.claims["name"] == .string("Ada \u{FFFD}"))
            #expect(verified.payload == payload, "the payload is kept as it came")
        }
    }

    @Test("strings and member names compare by code units, never by canonical equivalence")
    func equalityIsByBytes() {
        #expect("\u{212A}im" == "Kim", "Swift's == (the reason for this test)")
        #expect(JSONValue.string("\u{212A}im") != .string("Kim"))
        #expect(JSONValue.string("e\u{301}") != .string("\u{E9}"))
        #expect(JSONValue.string("Kim") == .string("Kim"))
        #expect(JSONValue.array([.string("\u{212A}")]) != .array([.string("K")]))
        let claims = JSONObject([("\u{212A}ey", .integer(1))])
        #expect(claims["Key"] == nil)
        #expect(claims["\u{212A}ey"] == .integer(1))
        #expect(JSONObject([("n", .string("\u{E9}"))]) != JSONObject([("n", .string("e\u{301}"))]))
    }
}
