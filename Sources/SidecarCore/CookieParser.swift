/// Parses a Cookie header as Auth.js's vendored `cookie` package does: the first occurrence of a name wins, values
/// are trimmed, one pair of surrounding quotes is removed, and values containing `%` go through `decodeURIComponent`
/// (the raw value is kept when that fails).
public enum CookieParser {
    /// Calls `body(name, value)` for each pair in header order, duplicates included (callers keep the first).
    /// Stops early when `body` returns false.
    public static func forEachPair(_ header: String, _ body: (Substring, Substring) -> Bool) {
        let utf8 = header.utf8
        var index = utf8.startIndex
        while index < utf8.endIndex {
            guard let eq = utf8[index...].firstIndex(of: UInt8(ascii: "=")) else { return }
            var end = utf8[index...].firstIndex(of: UInt8(ascii: ";")) ?? utf8.endIndex
            if end < eq {
                // `a; b=c`: the segment before the `;` has no `=`; resume after the last `;` before the `=`.
                end = utf8[index..<eq].lastIndex(of: UInt8(ascii: ";"))!
                index = utf8.index(after: end)
                continue
            }
            let name = trim(header[index..<eq])
            var value = trim(header[utf8.index(after: eq)..<end])
            if value.utf8.first == UInt8(ascii: "\"") {
                // `cookie` does `val.slice(1, -1)` without checking the closing quote.
                value = value.utf8.count >= 2 ? value.dropFirst().dropLast() : ""
            }
            if !body(name, value) { return }
            index = end == utf8.endIndex ? end : utf8.index(after: end)
        }
    }

    /// The value of each name in `names`, first occurrence winning, percent-decoded as Auth.js does.
    public static func values(named names: Set<Substring>, in header: String) -> [Substring: String] {
        var out: [Substring: String] = [:]
        forEachPair(header) { name, value in
            if names.contains(name), out[name] == nil { out[name] = decodeValue(value) }
            return true
        }
        return out
    }

    static func decodeValue(_ value: Substring) -> String {
        guard value.utf8.contains(UInt8(ascii: "%")) else { return String(value) }
        return PercentDecoding.decodeURIComponent(value) ?? String(value)
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
