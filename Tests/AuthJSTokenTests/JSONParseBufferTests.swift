import CJSONArena
import Foundation
import Testing
@testable import AuthJSToken
import VectorFixtures

/// Jansson's allocations during a parse come from a per-thread buffer (`CJSONArena`); these check that a parse gives
/// the same values whether it fits the buffer, runs past it into malloc, fails half-way, or runs on several threads
/// at once. (Under AddressSanitizer the buffer is compiled out and only the values are checked.)
@Suite("JSON parse buffer")
struct JSONParseBufferTests {
    /// A random object of `members` members: strings (escapes, multi-byte text, up to `maxString` bytes), numbers,
    /// literals, and nested arrays and objects.
    static func randomObject(members: Int, maxString: Int, depth: Int = 0, using rng: inout SplitMix64) -> JSONObject {
        var out: [(key: String, value: JSONValue)] = []
        for i in 0..<members {
            out.append(("k\(i)_\(UInt8.random(in: 0...255, using: &rng))", randomValue(maxString: maxString, depth: depth, using: &rng)))
        }
        return JSONObject(out)
    }

    static func randomValue(maxString: Int, depth: Int, using rng: inout SplitMix64) -> JSONValue {
        switch Int.random(in: 0..<(depth < 3 ? 8 : 6), using: &rng) {
        case 0, 1:
            let alphabet: [Character] = ["a", "Z", "0", " ", "\"", "\\", "\n", "é", "😀", "\u{0}", "/"]
            let n = Int.random(in: 0...maxString, using: &rng)
            return .string(String((0..<n).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }))
        case 2: return .integer(Int64.random(in: Int64.min...Int64.max, using: &rng))
        case 3: return .number(Double(Int.random(in: -1_000_000...1_000_000, using: &rng)) / 64)
        case 4: return .bool(Bool.random(using: &rng))
        case 5: return .null
        case 6: return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in randomValue(maxString: maxString / 2, depth: depth + 1, using: &rng) })
        default: return .object(randomObject(members: Int.random(in: 0...4, using: &rng), maxString: maxString / 2, depth: depth + 1, using: &rng))
        }
    }

    @Test("a token's claims fit the buffer: no malloc for Jansson's values")
    func claimsFit() throws {
        let claims = #"{"name":"Ada Lovelace","email":"ada@example.com","picture":"https://example.com/a.png","sub":"0f9c2d1e-1b2a-4c3d-8e9f-000000000001","iat":1764000000,"exp":1766592000,"jti":"2f1c6a0e-4f5b-4c1d-9a8e-7b6c5d4e3f21","roles":["admin","dev"]}"#
        let parsed = try JSONParser.parseObject(Array(claims.utf8)).get()
        #expect(parsed["roles"] == .array([.string("admin"), .string("dev")]))
        #expect(parsed["exp"] == .integer(1_766_592_000))
        if ja_enabled() == 1 {
            #expect(ja_used() > 0, "Jansson's allocations came from the buffer")
            #expect(ja_used() <= ja_capacity())
            #expect(ja_overflowed() == 0)
        }
    }

    @Test("values round-trip whether they fit the buffer, overflow it, or follow a failed parse", arguments: [0, 1, 2, 3])
    func roundTrips(seed: UInt64) throws {
        var rng = SplitMix64(seed: 0x4A53_4F4E + seed)
        var overflowed = 0, fitted = 0
        for round in 0..<150 {
            // Sizes from a few bytes to several times the buffer (strings up to 8 KiB).
            let maxString = [4, 40, 400, 4_000, 8_000][round % 5]
            let object = Self.randomObject(members: Int.random(in: 0...12, using: &rng), maxString: maxString, using: &rng)
            let text = JSONValue.object(object).serialized()
            #expect(try JSONParser.parseObject(text).get() == object, "round \(round), \(text.count) bytes")
            if ja_enabled() == 1 { if ja_overflowed() == 1 { overflowed += 1 } else { fitted += 1 } }
            // A parse that fails after building part of a value (a duplicate name at the end, trailing bytes)
            // leaves the next one unaffected.
            if round % 3 == 0, let last = object.members.last {
                var dup = text
                dup.removeLast()
                dup += Array(",\"\(last.key)\":1}".utf8)
                #expect(throws: VerificationFailure.self) { try JSONParser.parseObject(dup).get() }
                #expect(throws: VerificationFailure.self) { try JSONParser.parseObject(text + Array(" x".utf8)).get() }
            }
        }
        if ja_enabled() == 1 {
            #expect(overflowed > 0 && fitted > 0, "both paths taken: \(fitted) fitted, \(overflowed) overflowed")
        }
    }

    @Test("threads parse at once, each in its own buffer")
    func threads() async throws {
        let results = await withTaskGroup(of: Int.self) { group in
            for t in 0..<4 {
                group.addTask {
                    var rng = SplitMix64(seed: 900 + UInt64(t))
                    var bad = 0
                    for round in 0..<300 {
                        let object = Self.randomObject(members: Int.random(in: 1...10, using: &rng), maxString: [8, 80, 2_000][round % 3], using: &rng)
                        if (try? JSONParser.parseObject(JSONValue.object(object).serialized()).get()) != object { bad += 1 }
                    }
                    return bad
                }
            }
            var all: [Int] = []
            for await r in group { all.append(r) }
            return all
        }
        #expect(results == [0, 0, 0, 0])
    }
}
