import Testing
@testable import AuthJSToken
import VectorFixtures

/// fixtures/vectors/external/rfc_vectors.json: RFC 7518 B.3, RFC 7520 compact examples, Auth.js HKDF/kid vectors.
@Suite("RFC 7518 / RFC 7520 / Auth.js KDF vectors")
struct RFCVectorTests {
    static let file = Fixtures.load("fixtures/vectors/external/rfc_vectors.json")

    @Test("RFC 7518 B.3 AES_256_CBC_HMAC_SHA_512: seal reproduces E and T, open returns P")
    func rfc7518B3() throws {
        let b3 = try #require(Self.file?["rfc7518_B3"])
        let k = Hex.decode(try #require(b3["K_hex"]?.stringValue))
        let p = Hex.decode(try #require(b3["P_hex"]?.stringValue))
        let iv = Hex.decode(try #require(b3["IV_hex"]?.stringValue))
        let a = Hex.decode(try #require(b3["A_hex"]?.stringValue))
        let al = Hex.decode(try #require(b3["AL_hex"]?.stringValue))
        let e = Hex.decode(try #require(b3["E_hex"]?.stringValue))
        let t = Hex.decode(try #require(b3["T_hex"]?.stringValue))
        #expect(k.count == 64 && iv.count == 16 && t.count == 32)
        #expect(Hex.decode(b3["MAC_KEY_hex"]?.stringValue ?? "") == Array(k[0..<32]))
        #expect(Hex.decode(b3["ENC_KEY_hex"]?.stringValue ?? "") == Array(k[32..<64]))
        #expect(ContentCipher.aadLengthBlock(a.count) == al)

        let sealed = try #require(ContentCipher.sealCBCHS512(key: k, aad: a, iv: iv, plaintext: p))
        #expect(Hex.encode(sealed.ciphertext) == Hex.encode(e))
        #expect(Hex.encode(sealed.tag) == Hex.encode(t))

        let opened = a.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: k, aad: $0, iv: iv, ciphertext: e, tag: t) }
        #expect(opened == p)
        #expect(String(decoding: opened ?? [], as: UTF8.self) == b3["P_text"]?.stringValue)

        // Any change to A, IV, E or T must make open fail (authenticate before decrypt).
        var badTag = t; badTag[31] ^= 1
        var badE = e; badE[0] ^= 0x80
        var badIV = iv; badIV[15] ^= 1
        var badA = a; badA[0] ^= 1
        #expect(a.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: k, aad: $0, iv: iv, ciphertext: e, tag: badTag) } == nil)
        #expect(a.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: k, aad: $0, iv: iv, ciphertext: badE, tag: t) } == nil)
        #expect(a.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: k, aad: $0, iv: badIV, ciphertext: e, tag: t) } == nil)
        #expect(badA.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: k, aad: $0, iv: iv, ciphertext: e, tag: t) } == nil)
        // Wrong key or tag sizes are refused, never trapped on.
        #expect(a.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: Array(k[0..<32]), aad: $0, iv: iv, ciphertext: e, tag: t) } == nil)
        #expect(a.withUnsafeBufferPointer { ContentCipher.openCBCHS512(key: k, aad: $0, iv: iv, ciphertext: e, tag: Array(t[0..<16])) } == nil)
    }

    @Test("RFC 7520 §4.4 HS256 compact JWS: HMAC over the signing input with the JWK's k")
    func rfc7520HS256() throws {
        let entries = try #require(Self.file?["rfc7520"]?.arrayValue)
        let jws = entries.filter { $0["kind"]?.stringValue == "jws" && $0["output"]?["compact"]?.stringValue != nil }
        #expect(jws.count == 1)
        for entry in jws {
            let compact = try #require(entry["output"]?["compact"]?.stringValue)
            let k = try #require(entry["key_jwk"]?["k"]?.stringValue)
            let key = try #require(Base64URL.decode(k))
            let parts = compact.split(separator: ".", omittingEmptySubsequences: false)
            try #require(parts.count == 3)
            let signingInput = Array((parts[0] + "." + parts[1]).utf8)
            let mac = try #require(Crypto.hmac(.sha256, key: key, signingInput))
            #expect(Base64URL.encode(mac) == String(parts[2]))
            #expect(String(decoding: Base64URL.decode(parts[1]) ?? [], as: UTF8.self) == entry["payload_text"]?.stringValue)
            // The payload is not a JSON object, so even a verifier keyed with the right bytes must refuse it: k is not
            // valid UTF-8, so use a secret; the HMAC fails first and the code is bad_signature.
            let ring = try KeyRing(secrets: ["not-the-key"], v5Salts: [], formats: [.jws])
            let r = TokenVerifier(keys: ring).verify(compact, now: 0)
            #expect((try? r.get()) == nil)
            if case .failure(let f) = r { #expect(f.code == .badSignature) }
        }
    }

    @Test("RFC 7520 §5.6 dir + A128GCM compact JWE decrypts with the 16-byte key")
    func rfc7520DirGCM() throws {
        let entries = try #require(Self.file?["rfc7520"]?.arrayValue)
        let dir = entries.filter { $0["alg"]?.stringValue == "dir" && $0["output"]?["compact"]?.stringValue != nil }
        #expect(dir.count == 1)
        for entry in dir {
            let compact = try #require(entry["output"]?["compact"]?.stringValue)
            let k = try #require(entry["key_jwk"]?["k"]?.stringValue)
            let key = try #require(Base64URL.decode(k))
            #expect(key.count == 16)
            let parts = compact.split(separator: ".", omittingEmptySubsequences: false)
            try #require(parts.count == 5)
            #expect(parts[1].isEmpty)
            let iv = try #require(Base64URL.decode(parts[2]))
            let ct = try #require(Base64URL.decode(parts[3]))
            let tag = try #require(Base64URL.decode(parts[4]))
            let aad = Array(parts[0].utf8)
            let plain = try #require(Crypto.aesGCMDecrypt(key: key, iv: iv, aad: aad, ct, tag: tag))
            #expect(String(decoding: plain, as: UTF8.self) == entry["plaintext"]?.stringValue)
            // Re-encrypting reproduces ciphertext and tag.
            let again = try #require(Crypto.aesGCMEncrypt(key: key, iv: iv, aad: aad, plain))
            #expect(again.ciphertext == ct && again.tag == tag)
            var badTag = tag; badTag[0] ^= 1
            #expect(Crypto.aesGCMDecrypt(key: key, iv: iv, aad: aad, ct, tag: badTag) == nil)
            // Our verifier only accepts A256GCM / A256CBC-HS512: A128GCM is unsupported_algorithm, never a crash.
            let ring = try KeyRing(secrets: ["x"], v5Salts: ["authjs.session-token"])
            if case .failure(let f) = TokenVerifier(keys: ring).verify(compact, now: 0) {
                #expect(f.code == .unsupportedAlgorithm)
            } else { Issue.record("A128GCM token verified") }
        }
    }

    @Test("every RFC 7520 compact output fails cleanly in our verifier")
    func rfc7520AllCompactRefused() throws {
        let entries = try #require(Self.file?["rfc7520"]?.arrayValue)
        let ring = try KeyRing(secrets: ["x"], v5Salts: ["authjs.session-token"])
        var n = 0
        for entry in entries {
            guard let compact = entry["output"]?["compact"]?.stringValue else { continue }
            n += 1
            switch TokenVerifier(keys: ring).verify(compact, now: 0) {
            case .success: Issue.record("\(entry["title"]?.stringValue ?? "?") verified")
            case .failure(let f): #expect(allCodes.contains(f.code.rawValue))
            }
        }
        #expect(n == 6)
    }

    @Test("Auth.js KDF vectors: HKDF output and RFC 7638 kid")
    func authjsKDF() throws {
        let entries = try #require(Self.file?["authjs_kdf"]?.arrayValue)
        #expect(entries.count == 7)
        for e in entries {
            let secret = try #require(e["secret"]?.stringValue)
            let salt = try #require(e["salt"]?.stringValue)
            let info = try #require(e["info"]?.stringValue)
            let length = try #require(e["length"]?.intValue)
            let keyHex = try #require(e["key_hex"]?.stringValue)
            let key = try #require(Crypto.hkdfSHA256(ikm: Array(secret.utf8), salt: Array(salt.utf8), info: Array(info.utf8), length: length))
            #expect(Hex.encode(key) == keyHex, "\(secret)/\(salt)/\(length)")
            if let kid = e["kid"]?.stringValue {
                #expect(KeyRing.thumbprint(key) == kid)
                // The ring derives the same key and indexes it under that kid.
                let ring = try KeyRing(secrets: [secret], v5Salts: [salt], formats: [.authjsV5])
                let derived = ring.v5Key(saltIndex: 0, encryption: length == 64 ? .a256cbcHS512 : .a256gcm)
                #expect(derived.bytes == key)
                #expect(derived.kid == kid)
                #expect(ring.kidIndex[kid]?.bytes == key)
            } else {
                let ring = try KeyRing(secrets: [secret], v5Salts: [], formats: [.nextauthV4])
                #expect(ring.v4GCM.first?.bytes == key)
            }
        }
    }

    @Test("v4 HKDF matches the independent fastapi-nextauth-jwt vector")
    func v4IndependentKey() throws {
        let ring = try KeyRing(secrets: ["aUblGYhT507qxin/mQ+UlvyUjuR5dI9I8yKm5ZeVWDQ="], v5Salts: [], formats: [.nextauthV4])
        #expect(Hex.encode(ring.v4GCM[0].bytes) == "8000d1072a3da07daa18ebee9c95bc587a72c317989fbcd9bf55ba7930cf6801")
    }
}
