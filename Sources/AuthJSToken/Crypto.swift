import CAuthCrypto

/// Thin Swift wrappers over CAuthCrypto. Internal to the token library except where tests need the primitives.
public enum Crypto {
    public enum Hash: Int32, Sendable {
        case sha256 = 256, sha384 = 384, sha512 = 512
        public var byteCount: Int { Int(rawValue) / 8 }
    }

    public static func hkdfSHA256(ikm: [UInt8], salt: [UInt8], info: [UInt8], length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: max(length, 0))
        let ok = out.withUnsafeMutableBufferPointer { o in
            ac_hkdf_sha256(ikm, ikm.count, salt, salt.count, info, info.count, o.baseAddress, length)
        }
        return ok == 1 ? out : nil
    }

    public static func hmac(_ hash: Hash, key: [UInt8], _ data: [UInt8]) -> [UInt8]? {
        data.withUnsafeBufferPointer { d in hmac(hash, key: key, d, UnsafeBufferPointer(start: nil, count: 0)) }
    }

    /// HMAC over the concatenation of two parts, without copying them together.
    static func hmac(_ hash: Hash, key: [UInt8], _ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>,
                     _ c: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0),
                     _ d: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0)) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 64)
        var n = 0
        let ok = out.withUnsafeMutableBufferPointer { o in
            ac_hmac(hash.rawValue, key, key.count, a.baseAddress, a.count, b.baseAddress, b.count,
                    c.baseAddress, c.count, d.baseAddress, d.count, o.baseAddress, &n)
        }
        guard ok == 1 else { return nil }
        out.removeLast(64 - n)
        return out
    }

    /// An HMAC key with its hash, ready for repeated MACs from any thread. Each MAC runs a fresh OpenSSL context:
    /// OpenSSL does not document duplicating one prepared context from several threads at once as safe.
    public final class HMACKey: Sendable {
        let key: [UInt8]
        public let hash: Hash

        public init?(_ hash: Hash, key: [UInt8]) {
            self.key = key
            self.hash = hash
        }

        func mac(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0),
                 _ c: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0),
                 _ d: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0), into out: inout [UInt8]) -> Bool {
            out.withUnsafeMutableBufferPointer { mac(a, b, c, d, into: $0) }
        }

        /// Into `out`, which has room for 64 bytes.
        func mac(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0),
                 _ c: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0),
                 _ d: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0), into out: UnsafeMutableBufferPointer<UInt8>) -> Bool {
            guard out.count >= 64 else { return false }
            var n = 0
            let ok = ac_hmac(hash.rawValue, key, key.count, a.baseAddress, a.count, b.baseAddress, b.count, c.baseAddress, c.count,
                             d.baseAddress, d.count, out.baseAddress, &n)
            return ok == 1 && n == hash.byteCount
        }
    }

    public static func digest(_ hash: Hash, _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var n = 0
        _ = out.withUnsafeMutableBufferPointer { ac_digest(hash.rawValue, data, data.count, $0.baseAddress, &n) }
        return Array(out.prefix(n))
    }

    public static func aesCBCDecrypt(key: [UInt8], iv: [UInt8], _ input: [UInt8]) -> [UInt8]? {
        iv.withUnsafeBufferPointer { i in input.withUnsafeBufferPointer { aesCBCDecrypt(key: key, iv: i, $0) } }
    }

    /// Into one array of the plaintext's size, written in place (no zero fill, no trim).
    static func aesCBCDecrypt(key: [UInt8], iv: UnsafeBufferPointer<UInt8>, _ input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard iv.count == 16 else { return nil }
        var ok: Int32 = 0
        // PKCS#7 output is at most the input's length; the C function may write one more block. Never of capacity 0.
        let out = [UInt8](unsafeUninitializedCapacity: input.count + 16) { buffer, initialized in
            var n = 0
            ok = ac_aes_cbc_decrypt(key, key.count, iv.baseAddress, input.baseAddress, input.count, buffer.baseAddress, &n)
            initialized = ok == 1 ? n : 0
        }
        return ok == 1 ? out : nil
    }

    public static func aesCBCEncrypt(key: [UInt8], iv: [UInt8], _ input: [UInt8]) -> [UInt8]? {
        guard iv.count == 16 else { return nil }
        var out = [UInt8](repeating: 0, count: input.count + 16)
        var n = 0
        let ok = out.withUnsafeMutableBufferPointer { ac_aes_cbc_encrypt(key, key.count, iv, input, input.count, $0.baseAddress, &n) }
        guard ok == 1 else { return nil }
        out.removeLast(out.count - n)
        return out
    }

    public static func aesGCMDecrypt(key: [UInt8], iv: [UInt8], aad: [UInt8], _ input: [UInt8], tag: [UInt8]) -> [UInt8]? {
        aad.withUnsafeBufferPointer { a in iv.withUnsafeBufferPointer { i in input.withUnsafeBufferPointer { c in
            tag.withUnsafeBufferPointer { aesGCMDecrypt(key: key, iv: i, aad: a, c, tag: $0) }
        } } }
    }

    /// Into one array of the plaintext's size (this made a second one, and the caller a copy of the AAD, per token);
    /// the IV, ciphertext and tag where the caller decoded them.
    static func aesGCMDecrypt(key: [UInt8], iv: UnsafeBufferPointer<UInt8>, aad: UnsafeBufferPointer<UInt8>, _ input: UnsafeBufferPointer<UInt8>,
                              tag: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var ok: Int32 = 0
        // A buffer of at least one byte, so its address is never nil; the count set is the plaintext's (0 on failure).
        let out = [UInt8](unsafeUninitializedCapacity: max(input.count, 1)) { buffer, initialized in
            ok = ac_aes_gcm_decrypt(key, key.count, iv.baseAddress, iv.count, aad.baseAddress, aad.count, input.baseAddress, input.count,
                                    tag.baseAddress, tag.count, buffer.baseAddress)
            initialized = ok == 1 ? input.count : 0
        }
        return ok == 1 ? out : nil
    }

    public static func aesGCMEncrypt(key: [UInt8], iv: [UInt8], aad: [UInt8], _ input: [UInt8], tagLength: Int = 16) -> (ciphertext: [UInt8], tag: [UInt8])? {
        var out = [UInt8](repeating: 0, count: max(input.count, 1))
        var tag = [UInt8](repeating: 0, count: tagLength)
        let ok = out.withUnsafeMutableBufferPointer { o in
            tag.withUnsafeMutableBufferPointer { t in
                ac_aes_gcm_encrypt(key, key.count, iv, iv.count, aad, aad.count, input, input.count, o.baseAddress, t.baseAddress, tagLength)
            }
        }
        guard ok == 1 else { return nil }
        return (Array(out.prefix(input.count)), tag)
    }

    /// Constant-time comparison; unequal lengths are unequal (the length is not secret).
    public static func constantTimeEqual(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return ac_equal(a.baseAddress, b.baseAddress, a.count) == 1
    }

    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in constantTimeEqual(x, y) } }
    }

    public static func randomBytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        let ok = out.withUnsafeMutableBufferPointer { ac_random($0.baseAddress, n) }
        precondition(ok == 1, "the system CSPRNG failed")
        return out
    }
}
