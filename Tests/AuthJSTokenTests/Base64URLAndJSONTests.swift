import Foundation
import Testing
@testable import AuthJSToken
import VectorFixtures

@Suite("Base64URL")
struct Base64URLTests {
    @Test("round trips for every length 0...300 and random content")
    func roundTrips() {
        var rng = SplitMix64(seed: 42)
        for n in 0...300 {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let s = Base64URL.encode(bytes)
            #expect(s.utf8.count == (n * 4 + 2) / 3)
            #expect(!s.contains("=") && !s.contains("+") && !s.contains("/"))
            #expect(Base64URL.decode(s) == bytes, "length \(n)")
            #expect(Base64URL.encodeBytes(bytes) == Array(s.utf8))
            // Agrees with Foundation's base64 after the alphabet swap.
            let foundation = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(foundation == s)
        }
        #expect(Base64URL.encode([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(Base64URL.decode("-_-_") == [0xFB, 0xFF, 0xBF])
        #expect(Base64URL.decode("") == [])
    }

    @Test("every byte value at every position of a group: decoded as Foundation does, or refused")
    func everyByteEveryPosition() {
        let alphabet = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8))
        for length in [8, 11, 10] {  // whole groups, and tails of three and two characters
            for position in 0..<length {
                for byte in 0...255 {
                    var text = Array("QUJDRGVm".utf8) + Array("QUI".utf8)
                    text = Array(text.prefix(length))
                    text[position] = UInt8(byte)
                    let decoded = text.withUnsafeBufferPointer { Base64URL.decode($0) }
                    // Foundation's reading after the alphabet swap, padded; nil where a tail has non-zero spare bits.
                    var standard = String(decoding: text, as: UTF8.self).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                    standard += String(repeating: "=", count: (4 - length % 4) % 4)
                    let reference = alphabet.contains(UInt8(byte)) ? Data(base64Encoded: standard).map { [UInt8]($0) } : nil
                    let canonical = reference.map { Base64URL.encode($0) == String(decoding: text, as: UTF8.self) } ?? false
                    #expect(decoded == (canonical ? reference : nil), "length \(length), byte \(byte) at \(position)")
                }
            }
        }
    }

    @Test("rejects + / = whitespace, non-zero trailing bits and length % 4 == 1")
    func rejections() {
        for bad in ["+_-_", "-/-_", "-_-+", "AA==", "AAA=", "AA=", "QQ==", "A", "AAAAA", "AAAAAAAAA",
                    "AB", "AAB", "AAAAAB", "AAAAAAB", "QR", "QUJ", "QUJDRB",
                    " AAAA", "AAAA ", "AA AA", "AA\nAA", "AAAA\0", "AAÀA", "A.AA", "\u{212A}AAA", "%41AA"] {
            #expect(Base64URL.decode(bad) == nil, "\(bad.debugDescription)")
        }
        // The canonical spellings of the same bytes are accepted.
        #expect(Base64URL.decode("QQ") == Array("A".utf8))
        #expect(Base64URL.decode("QUI") == Array("AB".utf8))
        #expect(Base64URL.decode("QUJDRA") == Array("ABCD".utf8))
        // Every non-alphabet byte is rejected in every position of a quad.
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        for b in UInt8(0)...UInt8(255) where !alphabet.contains(b) {
            for pos in 0..<4 {
                var q = Array("AAAA".utf8); q[pos] = b
                #expect(q.withUnsafeBufferPointer { Base64URL.decode($0) } == nil, "byte \(b) at \(pos)")
            }
        }
        // Exactly one of the 16 last characters of a 2-char group (and 4 of a 3-char group) is canonical.
        let chars = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        #expect(chars.filter { Base64URL.decode("Q" + String($0)) != nil }.count == 4)
        #expect(chars.filter { Base64URL.decode("QU" + String($0)) != nil }.count == 16)
    }
}

@Suite("JSONParser and JSONValue")
struct JSONTests {
    func obj(_ s: String, _ limits: JSONLimits = JSONLimits()) -> Result<JSONObject, VerificationFailure> {
        JSONParser.parseObject(Array(s.utf8), limits: limits)
    }
    func failCode(_ r: Result<JSONObject, VerificationFailure>) -> VerificationCode? {
        if case .failure(let f) = r { return f.code }
        return nil
    }

    @Test("duplicate member names are rejected, at any depth")
    func duplicates() {
        #expect(failCode(obj(#"{"a":1,"a":1}"#)) == .malformed)
        #expect(failCode(obj(#"{"a":{"b":1,"b":2}}"#)) == .malformed)
        #expect(failCode(obj(#"{"a":[{"b":1,"b":2}]}"#)) == .malformed)
        #expect(failCode(obj(#"{"a":1,"\u0061":2}"#)) == .malformed, "escaped spelling of the same name")
        #expect(failCode(obj(#"{"a":1,"A":2}"#)) == nil)
    }

    @Test("NUL inside strings (escaped) is kept; raw control characters are rejected")
    func nul() throws {
        let o = try obj(#"{"a":"x\u0000y","b":["\u0000"]}"#).get()
        #expect(o["a"] == .string("x\u{0}y"))
        #expect(o["a"]?.stringValue?.utf8.count == 3)
        #expect(o["b"] == .array([.string("\u{0}")]))
        #expect(JSONValue.object(o).description == #"{"a":"x\u0000y","b":["\u0000"]}"#)
        #expect(failCode(obj("{\"a\":\"x\u{0}y\"}")) == .malformed, "raw NUL byte")
        #expect(failCode(obj("{\"a\":\"x\ny\"}")) == .malformed, "raw newline")
    }

    @Test("invalid UTF-8 is rejected, valid multi-byte text kept")
    func utf8() throws {
        for bad: [UInt8] in [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x80]] {
            let bytes = Array(#"{"a":""#.utf8) + bad + Array(#""}"#.utf8)
            #expect(failCode(JSONParser.parseObject(bytes)) == .malformed, "\(bad)")
            let key = Array(#"{""#.utf8) + bad + Array(#"":1}"#.utf8)
            #expect(failCode(JSONParser.parseObject(key)) == .malformed, "key \(bad)")
        }
        let o = try obj(#"{"a":"é😀\u00e9\ud83d\ude00"}"#).get()
        #expect(o["a"] == .string("é😀é😀"))
        // A lone surrogate *escape* is JSON that `JSON.stringify` writes and `JSON.parse` reads: U+FFFD here (see
        // JSONTextSemanticsTests); its UTF-8 encoding as raw bytes (0xED 0xA0 0x80 above) is still refused.
        #expect(try obj(#"{"a":"\ud800"}"#).get()["a"] == .string("\u{FFFD}"), "lone surrogate escape")
    }

    @Test("depth cap: 32 levels accepted, 33 refused as too_large; byte cap")
    func depth() {
        func nested(_ n: Int) -> String { "{\"a\":" + String(repeating: "[", count: n - 1) + String(repeating: "]", count: n - 1) + "}" }
        #expect(failCode(obj(nested(32))) == nil)
        #expect(failCode(obj(nested(33))) == .tooLarge)
        #expect(failCode(obj(nested(100_000))) == .tooLarge)
        #expect(failCode(obj(nested(5), JSONLimits(maxBytes: 1000, maxDepth: 4))) == .tooLarge)
        #expect(failCode(obj(nested(4), JSONLimits(maxBytes: 1000, maxDepth: 4))) == nil)
        // Brackets in strings and escaped quotes do not confuse the pre-scan.
        let tricky = #"{"a":"[[[[\"[[[[","b":"\\","c":[1]}"#
        #expect(failCode(obj(tricky, JSONLimits(maxBytes: 1000, maxDepth: 2))) == nil)
        #expect(failCode(obj(String(repeating: " ", count: 10) + "{}", JSONLimits(maxBytes: 11, maxDepth: 2))) == .tooLarge)
        #expect(failCode(obj("{}", JSONLimits(maxBytes: 2, maxDepth: 1))) == nil)
        // More openers than the cap but shallow (siblings, not nesting): the opener count alone cannot decide.
        let siblings = "{\"a\":[" + Array(repeating: "{\"b\":[]}", count: 40).joined(separator: ",") + "]}"
        #expect(failCode(obj(siblings)) == nil)
        #expect(failCode(obj(siblings, JSONLimits(maxBytes: 10_000, maxDepth: 4))) == nil)
        #expect(failCode(obj(siblings, JSONLimits(maxBytes: 10_000, maxDepth: 3))) == .tooLarge)
        // A closing bracket first cannot buy depth credit.
        #expect(failCode(obj("]]]]" + nested(40))) != nil)
    }

    @Test("top level must be an object; numbers, literals and whitespace")
    func topLevel() throws {
        for bad in ["[]", "1", "\"s\"", "null", "", " ", "{} {}", "{}x", "{'a':1}", "{a:1}", "{\"a\":01}", "{\"a\":NaN}", "{\"a\":1,}"] {
            #expect(failCode(obj(bad)) == .malformed, "\(bad.debugDescription)")
        }
        let o = try obj(" \t\r\n{\"i\":-12,\"d\":1.5,\"e\":1e3,\"t\":true,\"f\":false,\"n\":null,\"max\":9223372036854775807} \n").get()
        #expect(o["i"] == .integer(-12))
        #expect(o["d"] == .number(1.5))
        #expect(o["e"] == .integer(1000))
        #expect(o["t"] == .bool(true) && o["f"] == .bool(false) && o["n"] == .null)
        #expect(o["max"] == .integer(Int64.max))
        #expect(o.members.map(\.key) == ["i", "d", "e", "t", "f", "n", "max"], "member order is kept")
    }

    /// JavaScript parses every JSON number (as a double), so Auth.js accepts integer literals beyond Int64; the
    /// verifier must not refuse a token for a claim like that.
    @Test("integer literals beyond Int64 parse as numbers (JSON.parse accepts them)")
    func bigIntegers() throws {
        let o = try obj(#"{"big":18446744073709551616,"neg":-9223372036854775809,"js":10000000000000000000}"#).get()
        #expect(o["big"]?.doubleValue == 18446744073709551616.0)
        #expect(o["neg"]?.doubleValue == -9223372036854775809.0)
        #expect(o["js"]?.doubleValue == 1e19)
    }

    @Test("JSONValue equality is semantic: member order ignored, 1 == 1.0")
    func equality() throws {
        let a = try #require(try? JSONParser.parseValue(#"{"a":1,"b":[1,2,{"c":null}]}"#).get())
        let b = try #require(try? JSONParser.parseValue(#"{"b":[1.0,2,{"c":null}],"a":1.0}"#).get())
        #expect(a == b)
        #expect(try JSONParser.parseValue(#"{"b":[2,1,{"c":null}],"a":1}"#).get() != a, "array order matters")
        #expect(try JSONParser.parseValue(#"{"a":1}"#).get() != a)
        #expect(try JSONParser.parseValue(#"[1,"x",true]"#).get() == .array([.integer(1), .string("x"), .bool(true)]))
        #expect(try JSONParser.parseValue("null").get() == .null)
    }

    @Test("serialization escapes like JSON.stringify")
    func serialization() throws {
        var s = ""
        for b in 0..<0x20 { s.unicodeScalars.append(UnicodeScalar(UInt8(b))) }
        s += "\"\\/\u{7F}é😀\u{2028}<>&'"
        let expected = #""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#
            + #"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"#
            + "\\\"\\\\/\u{7F}é😀\u{2028}<>&'\""
        #expect(JSONValue.string(s).description == expected)
        // Round trip through the parser.
        #expect(try JSONParser.parseValue(JSONValue.string(s).description).get() == .string(s))

        let v = JSONValue.object(JSONObject([
            ("name", .string("Mallory\r\nX-Forwarded-User: admin")), ("n", .null), ("t", .bool(true)),
            ("a", .array([.integer(-1), .number(1.5), .object(JSONObject())])), ("e", .array([])),
        ]))
        #expect(v.description == #"{"name":"Mallory\r\nX-Forwarded-User: admin","n":null,"t":true,"a":[-1,1.5,{}],"e":[]}"#)
        #expect(v.serialized() == Array(v.description.utf8))
    }

    @Test("number serialization matches JSON.stringify")
    func numbers() {
        let cases: [(Double, String)] = [
            (0, "0"), (-0.0, "0"), (1, "1"), (-1.5, "-1.5"), (0.1, "0.1"), (1e21, "1e+21"), (1.5e300, "1.5e+300"),
            (123456789012, "123456789012"), (0.000001, "0.000001"), (.nan, "null"), (.infinity, "null"),
            // JavaScript switches to exponent notation only below 1e-6 and from 1e21 on.
            (0.00001, "0.00001"), (1e-7, "1e-7"), (2.5e-7, "2.5e-7"), (1e19, "10000000000000000000"),
        ]
        for (d, js) in cases {
            #expect(JSONValue.number(d).description == js, "\(d)")
        }
    }
}
