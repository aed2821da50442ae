import CJansson
import CJSONArena
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parses JSON with Jansson under explicit size and nesting caps.
///
/// Strict where JavaScript is lenient in ways that matter for a security boundary: duplicate member names and invalid
/// UTF-8 are rejected. NUL inside strings is allowed (real claims contain it; the header mapper encodes it). A lone
/// UTF-16 surrogate escape, which `JSON.stringify` writes and `JSON.parse` reads, is read as U+FFFD.
public struct JSONLimits: Sendable, Equatable {
    public var maxBytes: Int
    public var maxDepth: Int
    public init(maxBytes: Int = 192 * 1024, maxDepth: Int = 32) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
    }
}

public enum JSONParser {
    /// Parses `bytes` as a top-level JSON object.
    public static func parseObject(_ bytes: UnsafeBufferPointer<UInt8>, limits: JSONLimits, what: String) -> Result<JSONObject, VerificationFailure> {
        if bytes.count > limits.maxBytes {
            return .failure(.init(.tooLarge, "\(what) is \(bytes.count) bytes, over the \(limits.maxBytes)-byte cap"))
        }
        // Depth is checked before Jansson sees the text, so hostile nesting costs one linear scan.
        if exceedsDepth(bytes, limits.maxDepth) {
            return .failure(.init(.tooLarge, "\(what) nests JSON deeper than \(limits.maxDepth) levels"))
        }
        // Skip leading whitespace: the first significant byte must open an object.
        var i = 0
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else {
            return .failure(.init(.malformed, "\(what) is not a JSON object"))
        }
        guard let base = bytes.baseAddress else { return .failure(.init(.malformed, "\(what) is empty")) }
        // Lone UTF-16 surrogate escapes (`"\ud83d"` unpaired): `JSON.stringify` writes them for a string cut in the
        // middle of a pair (an emoji in a truncated name), `JSON.parse` accepts them, Jansson refuses them. Read as
        // U+FFFD — what JavaScript's UTF-8 encoders (`TextEncoder`, `Buffer`) make of a lone surrogate — by rewriting
        // the four hex digits in a copy; the copy is made only when one is there (found in review: such a session
        // was refused as malformed).
        let lone = Self.loneSurrogateEscapes(bytes)
        if !lone.isEmpty {
            var patched = Array(bytes)
            for at in lone { patched.replaceSubrange(at..<(at + 4), with: "fffd".utf8) }
            return patched.withUnsafeBufferPointer { parseObject($0, limits: limits, what: what) }
        }
        // Jansson allocates from this thread's parse buffer until `ja_end`, after every value of the parse is
        // released (the deferred `cj_decref` below runs first).
        ja_begin()
        defer { ja_end() }
        var error = json_error_t()
        let strict = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL
        var root = base.withMemoryRebound(to: CChar.self, capacity: bytes.count) { json_loadb($0, bytes.count, Int(strict), &error) }
        if root == nil, errorCode(error) == json_error_numeric_overflow {
            // An integer beyond Int64 is still a JSON number to JavaScript: read every number as a double, as JSON.parse does.
            root = base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                json_loadb($0, bytes.count, Int(strict | JSON_DECODE_INT_AS_REAL), &error)
            }
        }
        guard let root else {
            return .failure(.init(.malformed, "\(what) is not valid JSON (\(describe(error)))"))
        }
        defer { cj_decref(root) }
        guard case .object(let object) = convert(root) else {
            return .failure(.init(.malformed, "\(what) is not a JSON object"))
        }
        return .success(object)
    }

    public static func parseObject(_ bytes: [UInt8], limits: JSONLimits = JSONLimits(), what: String = "JSON") -> Result<JSONObject, VerificationFailure> {
        bytes.withUnsafeBufferPointer { parseObject($0, limits: limits, what: what) }
    }

    /// Parses any JSON value (used for config and CLI input, never for tokens).
    public static func parseValue(_ text: String, limits: JSONLimits = JSONLimits()) -> Result<JSONValue, VerificationFailure> {
        let wrapped = Array("{\"v\":".utf8) + Array(text.utf8) + Array("}".utf8)
        return parseObject(wrapped, limits: JSONLimits(maxBytes: limits.maxBytes + 6, maxDepth: limits.maxDepth + 1), what: "JSON")
            .map { $0["v"] ?? .null }
    }

    /// Where the hex digits of each `\uD800`–`\uDFFF` escape that is not half of a high–low pair begin. Escapes are
    /// read in order from each backslash, so `\\ud800` (an escaped backslash, then text) is none; outside strings a
    /// backslash is invalid JSON whatever follows, and Jansson refuses it.
    static func loneSurrogateEscapes(_ bytes: UnsafeBufferPointer<UInt8>) -> [Int] {
        guard let base = bytes.baseAddress, memchr(base, 0x5C, bytes.count) != nil else { return [] }
        func unit(_ at: Int) -> Int? {  // four hex digits at `at`
            guard at + 4 <= bytes.count else { return nil }
            var value = 0
            for i in at..<(at + 4) {
                let b = bytes[i]
                let digit: Int
                switch b {
                case 0x30...0x39: digit = Int(b - 0x30)
                case 0x41...0x46: digit = Int(b - 0x37)
                case 0x61...0x66: digit = Int(b - 0x57)
                default: return nil
                }
                value = value << 4 | digit
            }
            return value
        }
        var found: [Int] = []
        var i = 0
        while i + 1 < bytes.count {
            guard bytes[i] == 0x5C else { i += 1; continue }
            guard bytes[i + 1] == UInt8(ascii: "u"), let first = unit(i + 2) else { i += 2; continue }
            if (0xD800...0xDBFF).contains(first), i + 11 < bytes.count, bytes[i + 6] == 0x5C, bytes[i + 7] == UInt8(ascii: "u"),
               let second = unit(i + 8), (0xDC00...0xDFFF).contains(second) {
                i += 12  // a pair
                continue
            }
            if (0xD800...0xDFFF).contains(first) { found.append(i + 2) }
            i += 6
        }
        return found
    }

    static func errorCode(_ error: json_error_t) -> json_error_code {
        var e = error
        return withUnsafeBytes(of: &e.text) { raw in json_error_code(rawValue: UInt32(raw[Int(JSON_ERROR_TEXT_LENGTH) - 1])) }
    }

    /// A fixed description per Jansson error code plus the byte position: never Jansson's text, which quotes input
    /// ("near '…'") and so could carry decrypted claims or control characters into logs.
    static func describe(_ error: json_error_t) -> String {
        let what: String
        switch errorCode(error) {
        case json_error_invalid_syntax: what = "invalid syntax"
        case json_error_invalid_utf8: what = "invalid UTF-8"
        case json_error_premature_end_of_input: what = "premature end of input"
        case json_error_end_of_input_expected: what = "trailing data"
        case json_error_invalid_format: what = "invalid format"
        case json_error_wrong_type: what = "wrong type"
        case json_error_null_character: what = "NUL character"
        case json_error_null_value: what = "null value"
        case json_error_null_byte_in_key: what = "NUL in a member name"
        case json_error_duplicate_key: what = "duplicate member name"
        case json_error_numeric_overflow: what = "number out of range"
        case json_error_item_not_found: what = "item not found"
        case json_error_index_out_of_range: what = "index out of range"
        default: what = "error"
        }
        return "\(what) at byte \(error.position)"
    }

    static func exceedsDepth(_ bytes: UnsafeBufferPointer<UInt8>, _ maxDepth: Int) -> Bool {
        // Nesting never exceeds the number of `{` and `[` bytes (those inside strings only overcount): a count the
        // compiler vectorises settles the common case (claims nest 1–3 deep) without the string-aware scan below.
        // `{` and `[` are the only bytes that are 0x7B with bit 5 set. Counted in 16-bit lanes, a block at a time
        // so they cannot wrap: ~1.4 instructions per byte. The form matters (callgrind): `Int` or 8-bit counters,
        // and `block &+= cond ? 1 : 0`, compiled to a branch per byte (~7 instructions).
        var openers = 0
        var start = 0
        while start < bytes.count {
            let end = min(start + Int(UInt16.max), bytes.count)
            var block: UInt16 = 0
            for b in UnsafeBufferPointer(rebasing: bytes[start..<end]) { block &+= UInt16((b | 0x20) == 0x7B ? 1 : 0) }
            openers += Int(block)
            start = end
        }
        if openers <= maxDepth { return false }
        var depth = 0
        var inString = false
        var escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth > maxDepth { return true }
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            default: break
            }
        }
        return false
    }

    static func convert(_ j: UnsafeMutablePointer<json_t>) -> JSONValue {
        switch json_type(rawValue: UInt32(cj_typeof(j))) {
        case JSON_OBJECT:
            var members: [(key: String, value: JSONValue)] = []
            members.reserveCapacity(json_object_size(j))
            var iter = json_object_iter(j)
            while let it = iter {
                let keyLen = json_object_iter_key_len(it)
                let key = json_object_iter_key(it).map { p in
                    p.withMemoryRebound(to: UInt8.self, capacity: keyLen) { String(decoding: UnsafeBufferPointer(start: $0, count: keyLen), as: UTF8.self) }
                } ?? ""
                if let v = json_object_iter_value(it) { members.append((key, convert(v))) }
                iter = json_object_iter_next(j, it)
            }
            return .object(JSONObject(members))
        case JSON_ARRAY:
            let n = json_array_size(j)
            var items: [JSONValue] = []
            items.reserveCapacity(n)
            for i in 0..<n { if let v = json_array_get(j, i) { items.append(convert(v)) } }
            return .array(items)
        case JSON_STRING:
            let n = json_string_length(j)
            guard let p = json_string_value(j) else { return .string("") }
            return .string(p.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) })
        case JSON_INTEGER: return .integer(Int64(json_integer_value(j)))
        case JSON_REAL: return .number(json_real_value(j))
        case JSON_TRUE: return .bool(true)
        case JSON_FALSE: return .bool(false)
        default: return .null
        }
    }
}
