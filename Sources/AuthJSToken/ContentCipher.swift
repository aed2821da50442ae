/// JWE content encryption as RFC 7518 §5.2 (AES_CBC_HMAC_SHA2) and §5.3 (AES GCM) define it, on raw bytes.
///
/// `open` authenticates before it decrypts: no plaintext exists unless the tag verified.
enum ContentCipher {
    /// AL: the bit length of the AAD as a 64-bit big-endian integer.
    static func aadLengthBlock(_ aadCount: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 8) { out, initialized in
            writeAADLength(aadCount, into: out)
            initialized = 8
        }
    }

    /// AL into the first eight bytes of `out`.
    static func writeAADLength(_ aadCount: Int, into out: UnsafeMutableBufferPointer<UInt8>) {
        let bits = UInt64(aadCount) &* 8
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64(i))) }
    }

    static func openCBCHS512(key: [UInt8], aad: UnsafeBufferPointer<UInt8>, iv: [UInt8], ciphertext: [UInt8], tag: [UInt8]) -> [UInt8]? {
        guard key.count == 64, let macKey = Crypto.HMACKey(.sha512, key: Array(key[0..<32])) else { return nil }
        return iv.withUnsafeBufferPointer { i in ciphertext.withUnsafeBufferPointer { c in tag.withUnsafeBufferPointer {
            openCBCHS512(macKey: macKey, encKey: Array(key[32..<64]), aad: aad, iv: i, ciphertext: c, tag: $0)
        } } }
    }

    static func openCBCHS512(macKey: Crypto.HMACKey, encKey: [UInt8], aad: UnsafeBufferPointer<UInt8>, iv: UnsafeBufferPointer<UInt8>,
                             ciphertext: UnsafeBufferPointer<UInt8>, tag: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard tag.count == 32 else { return nil }
        // The MAC and AL on the stack (bytes 0–63 and 64–71): two arrays here were two allocations per token.
        let authentic = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 72) { scratch in
            writeAADLength(aad.count, into: UnsafeMutableBufferPointer(rebasing: scratch[64..<72]))
            let mac = UnsafeMutableBufferPointer(rebasing: scratch[0..<64])
            let al = UnsafeBufferPointer(rebasing: scratch[64..<72])
            return macKey.mac(aad, iv, ciphertext, al, into: mac)
                && Crypto.constantTimeEqual(UnsafeBufferPointer(rebasing: mac[0..<32]), tag)
        }
        guard authentic else { return nil }
        return Crypto.aesCBCDecrypt(key: encKey, iv: iv, ciphertext)
    }

    static func sealCBCHS512(key: [UInt8], aad: [UInt8], iv: [UInt8], plaintext: [UInt8]) -> (ciphertext: [UInt8], tag: [UInt8])? {
        guard key.count == 64, let ciphertext = Crypto.aesCBCEncrypt(key: Array(key[32..<64]), iv: iv, plaintext),
              let mac = Crypto.hmac(.sha512, key: Array(key[0..<32]), aad + iv + ciphertext + aadLengthBlock(aad.count))
        else { return nil }
        return (ciphertext, Array(mac.prefix(32)))
    }
}
