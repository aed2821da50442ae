#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parses a Cookie header as Auth.js's vendored `cookie` package does: the first occurrence of a name wins, values
/// are trimmed, one pair of surrounding quotes is removed, and values containing `%` go through `decodeURIComponent`
/// (the raw value is kept when that fails).
public enum CookieParser {
    /// Calls `body(name, value)` for each pair in header order, duplicates included (callers keep the first).
    /// Stops early when `body` returns false.
    public static func forEachPair(_ header: String, _ body: (Substring, Substring) -> Bool) {
        var header = header
        header.makeContiguousUTF8()
        let utf8 = header.utf8
        func substring(_ r: Range<Int>) -> Substring {
            header[utf8.index(utf8.startIndex, offsetBy: r.lowerBound)..<utf8.index(utf8.startIndex, offsetBy: r.upperBound)]
        }
        _ = utf8.withContiguousStorageIfAvailable { bytes in
            forEachPair(bytes) { name, value in body(substring(name), substring(value)) }
        }
    }

    /// The same scan over the header's bytes: `body` gets the byte ranges of each name and (trimmed, unquoted) value.
    /// No copies are made; the extractor looks at names in place and copies only the values it keeps.
    static func forEachPair(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>, Range<Int>) -> Bool) {
        guard let base = bytes.baseAddress else { return }
        let n = bytes.count
        func find(_ c: UInt8, from: Int) -> Int? {
            guard from < n, let hit = memchr(base + from, Int32(c), n - from) else { return nil }
            return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
        }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0B || b == 0x0C || b == 0x0D }
        var index = 0
        while index < n {
            guard let eq = find(UInt8(ascii: "="), from: index) else { return }
            let end = find(UInt8(ascii: ";"), from: index) ?? n
            if end < eq {
                // `a; b=c`: the segment before the `;` has no `=`; resume after the last `;` before the `=`.
                var last = eq - 1
                while bytes[last] != UInt8(ascii: ";") { last -= 1 }
                index = last + 1
                continue
            }
            var ns = index, ne = eq
            while ns < ne, isSpace(bytes[ns]) { ns += 1 }
            while ne > ns, isSpace(bytes[ne - 1]) { ne -= 1 }
            var vs = eq + 1, ve = end
            while vs < ve, isSpace(bytes[vs]) { vs += 1 }
            while ve > vs, isSpace(bytes[ve - 1]) { ve -= 1 }
            if vs < ve, bytes[vs] == UInt8(ascii: "\"") {
                // `cookie` does `val.slice(1, -1)` without checking the closing quote.
                if ve - vs >= 2 { vs += 1; ve -= 1 } else { ve = vs }
            }
            if !body(ns..<ne, vs..<ve) { return }
            index = end + 1
        }
    }

    /// A value's bytes as Auth.js sees them: percent-decoded when they contain `%` and decode, else as they are.
    static func decodeValue(_ value: UnsafeBufferPointer<UInt8>) -> String {
        guard let base = value.baseAddress, memchr(base, Int32(UInt8(ascii: "%")), value.count) != nil else {
            return String(decoding: value, as: UTF8.self)
        }
        let raw = String(decoding: value, as: UTF8.self)
        return PercentDecoding.decodeURIComponent(raw[...]) ?? raw
    }

    /// The value of each name in `names`, first occurrence winning, percent-decoded as Auth.js does.
    /// Names compare by code units, as in JavaScript (Swift's `==` would also match canonically equivalent names).
    public static func values(named names: Set<Substring>, in header: String) -> [Substring: String] {
        var out: [Substring: String] = [:]
        forEachPair(header) { name, value in
            guard let wanted = names.first(where: { $0.utf8.elementsEqual(name.utf8) }) else { return true }
            if out.keys.contains(where: { $0.utf8.elementsEqual(wanted.utf8) }) { return true }
            out[wanted] = decodeValue(value)
            return true
        }
        return out
    }

    static func decodeValue(_ value: Substring) -> String {
        guard containsPercent(value) else { return String(value) }
        return PercentDecoding.decodeURIComponent(value) ?? String(value)
    }

    /// `value.utf8.contains("%")` over contiguous bytes (the generic form walks a token byte by byte through index
    /// arithmetic, and it was the largest cost of a cached request).
    @inline(__always)
    static func containsPercent(_ value: Substring) -> Bool {
        value.utf8.withContiguousStorageIfAvailable { bytes in
            guard let base = bytes.baseAddress else { return false }
            return memchr(base, Int32(UInt8(ascii: "%")), bytes.count) != nil
        } ?? value.utf8.contains(UInt8(ascii: "%"))
    }

    /// JavaScript's `String.prototype.trim` for the characters a Cookie header can carry.
    static func trim(_ s: Substring) -> Substring {
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0B || b == 0x0C || b == 0x0D }
        var start = s.utf8.startIndex, end = s.utf8.endIndex
        while start < end, isSpace(s.utf8[start]) { start = s.utf8.index(after: start) }
        while end > start, isSpace(s.utf8[s.utf8.index(before: end)]) { end = s.utf8.index(before: end) }
        return s[start..<end]
    }
}

/// `decodeURIComponent`: every `%XX` becomes a byte; the result must be valid UTF-8, else nil (JS throws URIError).
public enum PercentDecoding {
    public static func decodeURIComponent(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            if b != UInt8(ascii: "%") { bytes.append(b); continue }
            guard let h = it.next().flatMap(hexValue), let l = it.next().flatMap(hexValue) else { return nil }
            bytes.append(h << 4 | l)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    public static func decodeURIComponent(_ s: String) -> String? { decodeURIComponent(s[...]) }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
