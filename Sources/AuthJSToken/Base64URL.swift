/// Strict base64url (RFC 4648 §5) without padding, as JOSE compact serialisation uses it.
///
/// Strict on purpose: `+`, `/`, `=`, whitespace and non-zero trailing bits are rejected, so one token has exactly one
/// spelling (which keeps cache keys and logs unambiguous).
public enum Base64URL {
    /// Four 256-entry tables, one per position in a group of four characters, holding each character's six bits
    /// already shifted into a 24-bit group (an invalid character sets bits 24–31): a group decodes with four loads
    /// and three ORs (~5 instructions per character, where shifting each value after the load took ~9.5); a 2- or
    /// 3-character tail is the start of a group whose spare low bits must be zero.
    static let shiftedDecodeTables: [UInt32] = {
        var t = [UInt32](repeating: 0xFF00_0000, count: 1024)
        for (i, c) in encodeAlphabet.enumerated() {
            t[Int(c)] = UInt32(i) << 18
            t[256 + Int(c)] = UInt32(i) << 12
            t[512 + Int(c)] = UInt32(i) << 6
            t[768 + Int(c)] = UInt32(i)
        }
        return t
    }()
    static let encodeAlphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Decodes `input`; nil when it is not canonical unpadded base64url.
    public static func decode(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        // Never an uninitialised array of capacity 0: the standard library backs it with the shared empty-array
        // storage and stores the count (0) there, a write ThreadSanitizer reports as a race with any thread reading
        // an empty array at the same moment.
        if input.isEmpty { return [] }
        guard let count = decodedCount(input.count) else { return nil }
        var valid = false
        let out = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            valid = decode(input, into: out)
            initialized = valid ? count : 0
        }
        return valid ? out : nil
    }

    /// The decoded size of `length` base64url characters; nil for a length no canonical encoding has.
    static func decodedCount(_ length: Int) -> Int? {
        length % 4 == 1 ? nil : length / 4 * 3 + (length % 4 == 0 ? 0 : length % 4 - 1)
    }

    /// Decodes `input` into the first `decodedCount(input.count)` bytes of `out`; false when it is not canonical
    /// unpadded base64url (or `out` is too small).
    ///
    /// Writes in place: appending byte by byte cost ~15 instructions per input character (a capacity check per
    /// byte), a quarter of an uncached token verification; and the verifier decodes a token's IV, ciphertext and tag
    /// onto the stack with this, where each array cost an allocation and a run-time metadata lookup.
    static func decode(_ input: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>) -> Bool {
        let n = input.count
        guard let count = decodedCount(n), out.count >= count else { return false }
        return shiftedDecodeTables.withUnsafeBufferPointer { shifted in
            var i = 0, o = 0
            while i + 4 <= n {
                let group = shifted[Int(input[i])] | shifted[256 &+ Int(input[i + 1])] | shifted[512 &+ Int(input[i + 2])]
                    | shifted[768 &+ Int(input[i + 3])]
                if group > 0xFF_FFFF { return false }
                out[o] = UInt8(truncatingIfNeeded: group >> 16)
                out[o + 1] = UInt8(truncatingIfNeeded: group >> 8)
                out[o + 2] = UInt8(truncatingIfNeeded: group)
                i += 4
                o += 3
            }
            switch n - i {
            case 2:
                // One byte: the second character's low four bits (group bits 12–15) are spare.
                let group = shifted[Int(input[i])] | shifted[256 &+ Int(input[i + 1])]
                if group > 0xFF_FFFF || group & 0xF000 != 0 { return false }
                out[o] = UInt8(truncatingIfNeeded: group >> 16)
            case 3:
                // Two bytes: the third character's low two bits (group bits 6–7) are spare.
                let group = shifted[Int(input[i])] | shifted[256 &+ Int(input[i + 1])] | shifted[512 &+ Int(input[i + 2])]
                if group > 0xFF_FFFF || group & 0xC0 != 0 { return false }
                out[o] = UInt8(truncatingIfNeeded: group >> 16)
                out[o + 1] = UInt8(truncatingIfNeeded: group >> 8)
            default: break
            }
            return true
        }
    }

    public static func decode(_ input: some StringProtocol) -> [UInt8]? {
        var s = String(input)
        return s.withUTF8 { decode($0) }
    }

    /// Encodes without padding.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: encodeBytes(bytes), as: UTF8.self)
    }

    public static func encodeBytes(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let input = Array(bytes)
        var out = [UInt8]()
        out.reserveCapacity((input.count * 4 + 2) / 3)
        let alphabet = encodeAlphabet
        var i = 0
        while i + 3 <= input.count {
            let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(alphabet[Int(v & 63)])
            i += 3
        }
        switch input.count - i {
        case 1:
            let v = UInt32(input[i]) << 16
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
        case 2:
            let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)]); out.append(alphabet[Int(v >> 6 & 63)])
        default: break
        }
        return out
    }
}
