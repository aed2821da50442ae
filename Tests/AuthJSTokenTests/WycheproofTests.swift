import Testing
@testable import AuthJSToken
import VectorFixtures

/// C2SP/wycheproof testvectors_v1 against the Crypto wrappers: every vector, valid and invalid.
/// Counts (asserted below): aes_cbc_pkcs5 216, aes_gcm 316, hmac_sha256/384/512 174 each, hkdf_sha256 86,
/// json_web_signature 401, json_web_encryption 139, json_web_key 26.
@Suite("Wycheproof")
struct WycheproofTests {
    static let dir = "fixtures/vectors/external/wycheproof/"

    struct Vector {
        let group: JSONObject
        let test: JSONObject
        var tcId: Int { test["tcId"]?.intValue ?? -1 }
        var result: String { test["result"]?.stringValue ?? "?" }
        func hex(_ k: String) -> [UInt8] { Hex.decode(test[k]?.stringValue ?? "") }
    }

    static func vectors(_ name: String) -> (declared: Int, vectors: [Vector]) {
        guard let file = Fixtures.load(dir + name) else {
            Issue.record("\(name) missing")
            return (0, [])
        }
        var out: [Vector] = []
        for g in file["testGroups"]?.arrayValue ?? [] {
            guard let group = g.objectValue else { continue }
            for t in group["tests"]?.arrayValue ?? [] {
                if let test = t.objectValue { out.append(Vector(group: group, test: test)) }
            }
        }
        return (file["numberOfTests"]?.intValue ?? -1, out)
    }

    @Test("AES-CBC-PKCS5: all 216 vectors (72 valid, 144 invalid padding)")
    func aesCBC() {
        let (declared, vs) = Self.vectors("aes_cbc_pkcs5_test.json")
        #expect(vs.count == declared && declared == 216)
        var valid = 0, invalid = 0
        for v in vs {
            let key = v.hex("key"), iv = v.hex("iv"), msg = v.hex("msg"), ct = v.hex("ct")
            let dec = Crypto.aesCBCDecrypt(key: key, iv: iv, ct)
            switch v.result {
            case "valid":
                valid += 1
                #expect(dec == msg, "tcId \(v.tcId): decrypt")
                #expect(Crypto.aesCBCEncrypt(key: key, iv: iv, msg) == ct, "tcId \(v.tcId): encrypt")
            case "invalid":
                invalid += 1
                #expect(dec == nil, "tcId \(v.tcId): invalid ciphertext decrypted")
            default: _ = dec
            }
        }
        #expect(valid == 72 && invalid == 144)
    }

    @Test("AES-GCM: all 316 vectors (229 valid, 87 invalid; 3 valid 257-byte IVs refused by OpenSSL's 128-byte IV cap)")
    func aesGCM() {
        let (declared, vs) = Self.vectors("aes_gcm_test.json")
        #expect(vs.count == declared && declared == 316)
        var valid = 0, invalid = 0, longIV = 0
        for v in vs {
            let key = v.hex("key"), iv = v.hex("iv"), aad = v.hex("aad"), msg = v.hex("msg"), ct = v.hex("ct"), tag = v.hex("tag")
            let dec = Crypto.aesGCMDecrypt(key: key, iv: iv, aad: aad, ct, tag: tag)
            let enc = Crypto.aesGCMEncrypt(key: key, iv: iv, aad: aad, msg, tagLength: max(1, min(16, tag.count)))
            switch v.result {
            case "valid" where iv.count > 128:
                // OpenSSL 3's GCM provider caps the IV at 128 bytes (GCM_IV_MAX_SIZE); the wrapper must refuse such
                // IVs cleanly (JWE only ever uses 96-bit IVs, which the verifier enforces).
                valid += 1
                longIV += 1
                #expect(dec == nil || dec == msg, "tcId \(v.tcId): long IV")
                #expect(enc == nil || (enc?.ciphertext == ct && enc?.tag == tag), "tcId \(v.tcId): long IV")
            case "valid":
                valid += 1
                #expect(dec == msg, "tcId \(v.tcId): decrypt")
                #expect(enc?.ciphertext == ct && enc?.tag == tag, "tcId \(v.tcId): encrypt")
            case "invalid":
                invalid += 1
                #expect(dec == nil, "tcId \(v.tcId): invalid vector decrypted (\(v.test["flags"].map(\.description) ?? ""))")
                if iv.isEmpty { #expect(enc == nil, "tcId \(v.tcId): zero-length IV accepted for encryption") }
            default: break
            }
        }
        #expect(valid == 229 && invalid == 87)
        #expect(longIV == 3, "the 2056-bit-IV vectors (tcId 268, 272, 276)")
    }

    @Test("HMAC-SHA-256/384/512: all 174 vectors each, tags truncated to tagSize", arguments: [
        ("hmac_sha256_test.json", Crypto.Hash.sha256), ("hmac_sha384_test.json", .sha384), ("hmac_sha512_test.json", .sha512),
    ])
    func hmac(_ file: String, _ hash: Crypto.Hash) {
        let (declared, vs) = Self.vectors(file)
        #expect(vs.count == declared && declared == 174)
        var valid = 0, invalid = 0
        for v in vs {
            let tagBytes = (v.group["tagSize"]?.intValue ?? hash.byteCount * 8) / 8
            let mac = Crypto.hmac(hash, key: v.hex("key"), v.hex("msg"))
            #expect(mac?.count == hash.byteCount, "tcId \(v.tcId)")
            let truncated = mac.map { Array($0.prefix(tagBytes)) }
            let expected = v.hex("tag")
            switch v.result {
            case "valid":
                valid += 1
                #expect(truncated == expected, "tcId \(v.tcId)")
            case "invalid":
                invalid += 1
                #expect(truncated.map { Crypto.constantTimeEqual($0, expected) } != true, "tcId \(v.tcId): modified tag matched")
            default: break
            }
        }
        #expect(valid == 66 && invalid == 108)
    }

    @Test("HKDF-SHA-256: all 86 vectors (83 valid, 3 invalid output sizes)")
    func hkdf() {
        let (declared, vs) = Self.vectors("hkdf_sha256_test.json")
        #expect(vs.count == declared && declared == 86)
        var valid = 0, invalid = 0
        for v in vs {
            let size = v.test["size"]?.intValue ?? 0
            let out = Crypto.hkdfSHA256(ikm: v.hex("ikm"), salt: v.hex("salt"), info: v.hex("info"), length: size)
            switch v.result {
            case "valid":
                valid += 1
                #expect(out == v.hex("okm"), "tcId \(v.tcId)")
            case "invalid":
                invalid += 1
                #expect(out == nil, "tcId \(v.tcId): size \(size) accepted")
            default: break
            }
        }
        #expect(valid == 83 && invalid == 3)
    }

    /// Every compact token in the JOSE files: none may verify (wrong secret, foreign algorithms, non-object
    /// payloads), the call must return, and the code must be one of ours.
    @Test("Wycheproof JWS/JWE/JWK tokens: none verifies, every failure code is known", arguments: [
        ("json_web_signature_test.json", "jws", 401), ("json_web_encryption_test.json", "jwe", 139), ("json_web_key_test.json", "jws", 26),
    ])
    func jose(_ file: String, _ field: String, _ count: Int) throws {
        let (declared, vs) = Self.vectors(file)
        #expect(vs.count == declared && declared == count)
        let ring = try KeyRing(secrets: ["wycheproof-is-not-our-secret", "second"], v5Salts: ["authjs.session-token", "__Secure-authjs.session-token"])
        let verifier = TokenVerifier(keys: ring)
        var codes: [VerificationCode: Int] = [:]
        for v in vs {
            guard let token = v.test[field]?.stringValue else {
                Issue.record("tcId \(v.tcId): no \(field) string")
                continue
            }
            switch verifier.verify(token, now: 1_800_000_000) {
            case .success: Issue.record("tcId \(v.tcId) verified")
            case .failure(let f): codes[f.code, default: 0] += 1
            }
        }
        #expect(codes.values.reduce(0, +) == count)
        for code in codes.keys { #expect(allCodes.contains(code.rawValue)) }
    }

    /// The HS256 Wycheproof JWS group with its real key: the MAC verifies for the "valid" ones, but the payload is
    /// not a JSON object ("foo"), so the verifier still refuses them, with `malformed`.
    @Test("Wycheproof HS256 JWS with the group key: MAC checks, verifier still refuses non-object payloads")
    func joseHS256WithKey() throws {
        let (_, vs) = Self.vectors("json_web_signature_test.json")
        var checked = 0
        for v in vs where v.group["comment"]?.stringValue == "hs256" {
            guard let k = v.group["private"]?["k"]?.stringValue, let key = Base64URL.decode(k),
                  let token = v.test["jws"]?.stringValue else { continue }
            let parts = token.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, let sig = Base64URL.decode(parts[2]) else { continue }
            let mac = Crypto.hmac(.sha256, key: key, Array((parts[0] + "." + parts[1]).utf8))
            if v.result == "valid" { #expect(mac == sig, "tcId \(v.tcId)"); checked += 1 }
        }
        #expect(checked > 0)
    }
}
