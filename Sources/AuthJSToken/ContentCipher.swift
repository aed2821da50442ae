/// JWE content encryption as RFC 7518 §5.2 (AES_CBC_HMAC_SHA2) and §5.3 (AES GCM) define it, on raw bytes.
///
/// `open` authenticates before it decrypts: no plaintext exists unless the tag verified.
enum ContentCipher {
    /// AL: the bit length of the AAD as a 64-bit big-endian integer.
    static func aadLengthBlock(_ aadCount: Int) -> [UInt8] {
        let bits = UInt64(aadCount) * 8
        return (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
    }

    static func openCBCHS512(key: [UInt8], aad: UnsafeBufferPointer<UInt8>, iv: [UInt8], ciphertext: [UInt8], tag: [UInt8]) -> [UInt8]? {
        guard key.count == 64, let macKey = Crypto.HMACKey(.sha512, key: Array(key[0..<32])) else { return nil }
        return openCBCHS512(macKey: macKey, encKey: Array(key[32..<64]), aad: aad, iv: iv, ciphertext: ciphertext, tag: tag)
    }

    static func openCBCHS512(macKey: Crypto.HMACKey, encKey: [UInt8], aad: UnsafeBufferPointer<UInt8>, iv: [UInt8], ciphertext: [UInt8], tag: [UInt8]) -> [UInt8]? {
        guard tag.count == 32 else { return nil }
        let al = aadLengthBlock(aad.count)
        var mac = [UInt8](repeating: 0, count: 64)
        let computed = iv.withUnsafeBufferPointer { ivp in ciphertext.withUnsafeBufferPointer { ctp in al.withUnsafeBufferPointer { alp in
            macKey.mac(aad, ivp, ctp, alp, into: &mac)
        } } }
        guard computed else { return nil }
        let ok = mac.withUnsafeBufferPointer { m in tag.withUnsafeBufferPointer { t in
            Crypto.constantTimeEqual(UnsafeBufferPointer(rebasing: m[0..<32]), t)
        } }
        guard ok else { return nil }
        return Crypto.aesCBCDecrypt(key: encKey, iv: iv, ciphertext)
    }

    static func sealCBCHS512(key: [UInt8], aad: [UInt8], iv: [UInt8], plaintext: [UInt8]) -> (ciphertext: [UInt8], tag: [UInt8])? {
        guard key.count == 64, let ciphertext = Crypto.aesCBCEncrypt(key: Array(key[32..<64]), iv: iv, plaintext),
              let mac = Crypto.hmac(.sha512, key: Array(key[0..<32]), aad + iv + ciphertext + aadLengthBlock(aad.count))
        else { return nil }
        return (ciphertext, Array(mac.prefix(32)))
    }
}
