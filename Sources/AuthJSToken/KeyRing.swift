#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The token formats the verifier understands.
public enum TokenFormat: String, Sendable, CaseIterable, Hashable {
    /// Auth.js v5 (`@auth/core`, `next-auth@5`): JWE dir + A256CBC-HS512 (or A256GCM), HKDF salt = cookie name.
    case authjsV5 = "authjs-v5"
    /// NextAuth.js v4: JWE dir + A256GCM, HKDF with an empty salt.
    case nextauthV4 = "nextauth-v4"
    /// JWS HS256/384/512 keyed with the raw secret.
    case jws
}

/// A JWE content-encryption algorithm this verifier accepts.
enum ContentEncryption: Sendable {
    case a256cbcHS512
    case a256gcm
}

/// One derived content key: the bytes, where they came from, and the `kid` Auth.js would stamp on tokens made with it.
struct ContentKey: Sendable {
    let format: TokenFormat
    let encryption: ContentEncryption
    let bytes: [UInt8]
    let secretIndex: Int
    /// Index into ``KeyRing/v5Salts`` for v5 keys, nil for v4.
    let saltIndex: Int?
    let kid: String
    /// A256CBC-HS512: HMAC-SHA-512 prepared with MAC_KEY (bytes 0–31), once.
    let macKey: Crypto.HMACKey?
    /// The AES key: bytes 32–63 for A256CBC-HS512, all 32 bytes for A256GCM.
    let encKey: [UInt8]

    init(format: TokenFormat, encryption: ContentEncryption, bytes: [UInt8], secretIndex: Int, saltIndex: Int?, kid: String) {
        self.format = format
        self.encryption = encryption
        self.bytes = bytes
        self.secretIndex = secretIndex
        self.saltIndex = saltIndex
        self.kid = kid
        if encryption == .a256cbcHS512 {
            macKey = Crypto.HMACKey(.sha512, key: Array(bytes[0..<32]))
            encKey = Array(bytes[32..<64])
        } else {
            macKey = nil
            encKey = bytes
        }
    }
}

/// Where a token came from decides which keys may open it: Auth.js salts a v5 key with the cookie's name.
public struct KeyScope: Sendable, Hashable {
    /// Bit i set: v5 keys derived with `v5Salts[i]` are candidates.
    public var v5Salts: UInt64
    public var v4: Bool
    public var jws: Bool

    public init(v5Salts: UInt64, v4: Bool, jws: Bool) {
        self.v5Salts = v5Salts
        self.v4 = v4
        self.jws = jws
    }

    public static func v5(saltIndex: Int) -> KeyScope { KeyScope(v5Salts: 1 << UInt64(saltIndex), v4: false, jws: false) }
}

/// Problems in building a key ring; reported at start-up with the variable or flag named by the caller.
public struct KeyRingError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
}

/// Every key a verifier may use, derived once when the verifier is built — never per token.
public struct KeyRing: Sendable {
    /// Secrets in Auth.js order: index 0 is the newest, the one new tokens are made with.
    public let secretCount: Int
    public let v5Salts: [String]
    public let formats: Set<TokenFormat>
    let v5CBC: [[ContentKey]]      // [saltIndex][secretIndex]
    let v5GCM: [[ContentKey]]
    let v4GCM: [ContentKey]
    let kidIndex: [String: ContentKey]
    /// Per secret, HMAC keys for HS256, HS384 and HS512, prepared once.
    let hmacKeys: [[Crypto.HMACKey]]
    /// Protected headers exactly as Auth.js, NextAuth and jose write them, found by their base64url bytes: a token
    /// whose header is one of these skips base64 decoding and JSON parsing of the header (same result, parsed once
    /// here), and the key its `kid` selects comes with it.
    let knownHeaders: KnownHeaders
    /// The scope that accepts every key in the ring (a Bearer token may come from any configured cookie's issuer;
    /// `verify` without a scope). Stored: as a computed property it hashed the format set twice per verification.
    public let everything: KeyScope

    public static let maxSalts = 64

    public init(secrets: [String], v5Salts: [String], formats: Set<TokenFormat> = Set(TokenFormat.allCases)) throws(KeyRingError) {
        guard !secrets.isEmpty else { throw KeyRingError(description: "no secret configured") }
        for (i, s) in secrets.enumerated() where s.isEmpty {
            throw KeyRingError(description: "secret #\(i) is empty")
        }
        guard v5Salts.count <= KeyRing.maxSalts else { throw KeyRingError(description: "more than \(KeyRing.maxSalts) salts") }
        if formats.contains(.authjsV5), v5Salts.isEmpty { throw KeyRingError(description: "Auth.js v5 needs at least one salt (cookie name)") }
        self.secretCount = secrets.count
        self.v5Salts = v5Salts
        self.formats = formats
        var cbc: [[ContentKey]] = [], gcm: [[ContentKey]] = [], v4: [ContentKey] = []
        var index: [String: ContentKey] = [:]
        if formats.contains(.authjsV5) {
            for (si, salt) in v5Salts.enumerated() {
                let info = Array("Auth.js Generated Encryption Key (\(salt))".utf8)
                // @panva/hkdf refuses info over 1024 bytes, so Auth.js itself cannot use such a cookie name.
                guard info.count <= 1024 else { throw KeyRingError(description: "salt #\(si) is too long for HKDF (info over 1024 bytes)") }
                var cbcRow: [ContentKey] = [], gcmRow: [ContentKey] = []
                for (ki, secret) in secrets.enumerated() {
                    let ikm = Array(secret.utf8)
                    guard let k64 = Crypto.hkdfSHA256(ikm: ikm, salt: Array(salt.utf8), info: info, length: 64),
                          let k32 = Crypto.hkdfSHA256(ikm: ikm, salt: Array(salt.utf8), info: info, length: 32)
                    else { throw KeyRingError(description: "HKDF failed for secret #\(ki)") }
                    let a = ContentKey(format: .authjsV5, encryption: .a256cbcHS512, bytes: k64, secretIndex: ki, saltIndex: si, kid: KeyRing.thumbprint(k64))
                    let b = ContentKey(format: .authjsV5, encryption: .a256gcm, bytes: k32, secretIndex: ki, saltIndex: si, kid: KeyRing.thumbprint(k32))
                    cbcRow.append(a); gcmRow.append(b)
                    index[a.kid] = index[a.kid] ?? a
                    index[b.kid] = index[b.kid] ?? b
                    // Auth.js hashes the 64-byte key's thumbprint with SHA-512; Python JOSE tooling (joserfc,
                    // jwcrypto) defaults to SHA-256. Both name the same key, so both select it.
                    let alias = KeyRing.thumbprint(k64, hash: .sha256)
                    index[alias] = index[alias] ?? a
                }
                cbc.append(cbcRow); gcm.append(gcmRow)
            }
        }
        if formats.contains(.nextauthV4) {
            let info = Array("NextAuth.js Generated Encryption Key".utf8)
            for (ki, secret) in secrets.enumerated() {
                guard let k = Crypto.hkdfSHA256(ikm: Array(secret.utf8), salt: [], info: info, length: 32)
                else { throw KeyRingError(description: "HKDF failed for secret #\(ki)") }
                v4.append(ContentKey(format: .nextauthV4, encryption: .a256gcm, bytes: k, secretIndex: ki, saltIndex: nil, kid: KeyRing.thumbprint(k)))
            }
        }
        guard let prepared = formats.contains(.jws) ? KeyRing.prepareHMACKeys(secrets) : [] else {
            throw KeyRingError(description: "HMAC key setup failed")
        }
        self.v5CBC = cbc
        self.v5GCM = gcm
        self.v4GCM = v4
        self.kidIndex = index
        self.hmacKeys = prepared
        self.knownHeaders = KnownHeaders(KeyRing.canonicalHeaders(kids: index), kids: index)
        self.everything = KeyScope(v5Salts: v5Salts.isEmpty ? 0 : (v5Salts.count == 64 ? ~0 : (1 << UInt64(v5Salts.count)) - 1),
                                   v4: formats.contains(.nextauthV4), jws: formats.contains(.jws))
    }

    /// Per secret, HS256/HS384/HS512 keys; nil if OpenSSL refuses one.
    static func prepareHMACKeys(_ secrets: [String]) -> [[Crypto.HMACKey]]? {
        var prepared: [[Crypto.HMACKey]] = []
        for secret in secrets {
            let raw = Array(secret.utf8)
            guard let a = Crypto.HMACKey(.sha256, key: raw), let b = Crypto.HMACKey(.sha384, key: raw),
                  let c = Crypto.HMACKey(.sha512, key: raw) else { return nil }
            prepared.append([a, b, c])
        }
        return prepared
    }

    /// The protected headers Auth.js (`{"alg":"dir","enc":…,"kid":…}`), NextAuth v4 and jose write, by base64url text.
    static func canonicalHeaders(kids: [String: ContentKey]) -> [String: JSONObject] {
        var headers: [[(key: String, value: JSONValue)]] = []
        for enc in ["A256CBC-HS512", "A256GCM"] { headers.append([("alg", .string("dir")), ("enc", .string(enc))]) }
        for (kid, key) in kids {
            headers.append([("alg", .string("dir")), ("enc", .string(key.encryption == .a256cbcHS512 ? "A256CBC-HS512" : "A256GCM")), ("kid", .string(kid))])
        }
        for alg in ["HS256", "HS384", "HS512"] {
            headers.append([("alg", .string(alg))])
            headers.append([("alg", .string(alg)), ("typ", .string("JWT"))])
            headers.append([("typ", .string("JWT")), ("alg", .string(alg))])
        }
        var out: [String: JSONObject] = [:]
        for members in headers {
            let object = JSONObject(members)
            out[Base64URL.encode(JSONValue.object(object).serialized())] = object
        }
        return out
    }

    /// RFC 7638 thumbprint of the key as an `oct` JWK, with SHA-512 for 64-byte keys and SHA-256 otherwise (as Auth.js).
    static func thumbprint(_ key: [UInt8], hash: Crypto.Hash? = nil) -> String {
        let canonical = Array("{\"k\":\"\(Base64URL.encode(key))\",\"kty\":\"oct\"}".utf8)
        return Base64URL.encode(Crypto.digest(hash ?? (key.count == 64 ? .sha512 : .sha256), canonical))
    }

    /// The v5 key Auth.js's `encode()` would use for `salt` (the newest secret), for minting.
    func v5Key(saltIndex: Int, encryption: ContentEncryption) -> ContentKey {
        encryption == .a256cbcHS512 ? v5CBC[saltIndex][0] : v5GCM[saltIndex][0]
    }
}

/// The protected headers a verifier knows by heart, looked up by a token's header bytes.
///
/// Keyed by the segment's length and last eight bytes (a kid's tail, or what tells the kid-less headers apart) and
/// confirmed by comparing every byte, where a `String` of the segment was made to hash it (an allocation, UTF-8
/// validation and SipHash over ~120 bytes per token; then the kid was hashed again to find its key).
struct KnownHeaders: Sendable {
    struct Entry: Sendable {
        let segment: [UInt8]
        let header: JSONObject
        /// The key the header's `kid` selects; nil when it has no `kid`.
        let kidKey: ContentKey?
    }

    private let entries: [Entry]
    private let byFingerprint: [UInt64: [Int]]

    init(_ headers: [String: JSONObject], kids: [String: ContentKey]) {
        var entries: [Entry] = []
        var index: [UInt64: [Int]] = [:]
        for (text, header) in headers.sorted(by: { $0.key < $1.key }) {
            let segment = Array(text.utf8)
            let kidKey = header["kid"]?.stringValue.flatMap { kids[$0] }
            index[segment.withUnsafeBufferPointer { Self.fingerprint($0) }, default: []].append(entries.count)
            entries.append(Entry(segment: segment, header: header, kidKey: kidKey))
        }
        self.entries = entries
        self.byFingerprint = index
    }

    /// The entry whose segment is exactly `segment`, if any.
    func entry(for segment: UnsafeBufferPointer<UInt8>) -> Entry? {
        guard let candidates = byFingerprint[Self.fingerprint(segment)] else { return nil }
        for i in candidates where entries[i].segment.withUnsafeBufferPointer({ Self.same($0, segment) }) {
            return entries[i]
        }
        return nil
    }

    private static func same(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    private static func fingerprint(_ segment: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var tail: UInt64 = 0
        for b in segment.suffix(8) { tail = tail << 8 | UInt64(b) }
        return tail ^ UInt64(truncatingIfNeeded: segment.count) &* 0x9E37_79B9_7F4A_7C15
    }
}
