/// A strict reader for the subset of YAML that configuration files actually use,
/// written against the Swift standard library only (no Foundation, no C).
///
/// Supported: one document (optional leading `---`, optional trailing `...`);
/// `#` comments; block mappings and block sequences indented with spaces
/// (including `- key: value` compact mappings and a sequence at the same
/// indentation as its parent key); flow sequences `[...]` and flow mappings
/// `{...}` that may nest, span lines, hold comments and end with a trailing
/// comma; single-line plain, 'single-quoted' and "double-quoted" scalars.
///
/// Rejected with a `YAMLError` naming the line, column and problem: anchors,
/// aliases, tags, block scalars (`|`, `>`), complex keys (`? `), directives,
/// multiple documents, multi-line scalars, duplicate keys, tabs used for
/// indentation, control characters, nesting deeper than `maxDepth` and input
/// larger than `maxBytes`. A configuration file needs none of those features,
/// and refusing them (rather than guessing) means no surprises: there is no
/// YAML 1.1 `no` → `false`, and a value such as `*.example.com` must be quoted
/// instead of silently becoming an alias. Scalars resolve with the YAML 1.2
/// core schema, and only when plain (see `YAMLNode.isNull`, `bool`, `int`, `float`).

// MARK: - Document model

/// A scalar's quoting; only plain scalars resolve to null/bool/int/float.
public enum YAMLScalarStyle: Sendable, Equatable { case plain, singleQuoted, doubleQuoted }

/// A scalar: its text (escapes already decoded), its quoting and the 1-based line it starts on.
/// Note that `line` takes part in `==`.
public struct YAMLScalar: Sendable, Equatable {
    public var text: String
    public var style: YAMLScalarStyle
    public var line: Int
    public init(text: String, style: YAMLScalarStyle = .plain, line: Int = 0) {
        self.text = text; self.style = style; self.line = line
    }
}

/// One `key: value` pair of a mapping.
public struct YAMLEntry: Sendable, Equatable {
    public var key: String
    public var value: YAMLNode
    public init(key: String, value: YAMLNode) { self.key = key; self.value = value }
}

/// An ordered mapping with unique keys (the reader rejects duplicates).
/// Iterating yields `(key: String, value: YAMLNode)` tuples in document order.
public struct YAMLMapping: Sendable, Equatable, Sequence {
    public var entries: [YAMLEntry]
    public init(entries: [YAMLEntry] = []) { self.entries = entries }
    /// The value for `key`, or nil when absent.
    public subscript(key: String) -> YAMLNode? { entries.first { $0.key == key }?.value }
    public var count: Int { entries.count }
    /// The keys in document order.
    public var keys: [String] { entries.map(\.key) }

    public struct Iterator: IteratorProtocol {
        var base: IndexingIterator<[YAMLEntry]>
        public mutating func next() -> (key: String, value: YAMLNode)? {
            base.next().map { (key: $0.key, value: $0.value) }
        }
    }
    public func makeIterator() -> Iterator { Iterator(base: entries.makeIterator()) }
}

/// A node. Not `indirect`: the arrays already break the recursion, and an indirect case's box is referenced by a
/// pointer carrying the case tag in its spare bits, which LeakSanitizer does not recognise (trees held by globals
/// were reported as leaks).
public enum YAMLNode: Sendable, Equatable {
    case scalar(YAMLScalar)
    case sequence([YAMLNode])
    case mapping(YAMLMapping)

    public var mapping: YAMLMapping? { if case .mapping(let m) = self { return m }; return nil }
    public var sequence: [YAMLNode]? { if case .sequence(let s) = self { return s }; return nil }
    public var scalar: YAMLScalar? { if case .scalar(let s) = self { return s }; return nil }
    /// A scalar's text whatever its style; nil for collections.
    public var string: String? { scalar?.text }

    /// The text of a plain scalar; quoted scalars never resolve to non-strings.
    private var plainText: String? {
        if case .scalar(let s) = self, s.style == .plain { return s.text }
        return nil
    }
    /// Plain `""`, `~`, `null`, `Null` or `NULL`.
    public var isNull: Bool {
        guard let t = plainText else { return false }
        return t.isEmpty || t == "~" || t == "null" || t == "Null" || t == "NULL"
    }
    /// Plain `true`/`True`/`TRUE`/`false`/`False`/`FALSE` (not `yes`, `no`, `on`, `off`).
    public var bool: Bool? {
        switch plainText {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default: return nil
        }
    }
    /// Plain `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`; nil if it does not fit in Int64.
    public var int: Int64? {
        guard let t = plainText else { return nil }
        let u = Array(t.utf8)
        if u.count > 2, u[0] == UInt8(ascii: "0"), u[1] == UInt8(ascii: "o") || u[1] == UInt8(ascii: "x") {
            let radix: UInt64 = u[1] == UInt8(ascii: "o") ? 8 : 16
            guard let v = YAMLNode.digitsValue(u[2...], radix: radix), v <= UInt64(Int64.max) else { return nil }
            return Int64(v)
        }
        let negative = u.first == UInt8(ascii: "-")
        let digits = (negative || u.first == UInt8(ascii: "+")) ? u.dropFirst() : u[...]
        guard !digits.isEmpty, let v = YAMLNode.digitsValue(digits, radix: 10) else { return nil }
        if negative { return v <= UInt64(1) << 63 ? Int64(truncatingIfNeeded: 0 &- v) : nil }
        return v <= UInt64(Int64.max) ? Int64(v) : nil
    }
    /// Plain `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (so integers too),
    /// `[-+]?.inf` (any of `.inf .Inf .INF`) or `.nan .NaN .NAN`.
    public var float: Double? {
        guard let t = plainText else { return nil }
        switch t {
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .infinity
        case "-.inf", "-.Inf", "-.INF": return -.infinity
        case ".nan", ".NaN", ".NAN": return .nan
        default: break
        }
        let u = Array(t.utf8), n = u.count
        func isDigit(_ i: Int) -> Bool { i < n && u[i] >= UInt8(ascii: "0") && u[i] <= UInt8(ascii: "9") }
        var i = 0
        if i < n, u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-") { i += 1 }
        var mantissaDigits = 0
        while isDigit(i) { i += 1; mantissaDigits += 1 }
        if i < n, u[i] == UInt8(ascii: ".") {
            i += 1
            while isDigit(i) { i += 1; mantissaDigits += 1 }
        }
        guard mantissaDigits > 0 else { return nil }
        if i < n, u[i] == UInt8(ascii: "e") || u[i] == UInt8(ascii: "E") {
            i += 1
            if i < n, u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-") { i += 1 }
            guard isDigit(i) else { return nil }
            while isDigit(i) { i += 1 }
        }
        return i == n ? Double(t) : nil
    }

    /// The value of a run of digits in `radix` (8, 10 or 16); nil on a bad digit or overflow.
    private static func digitsValue(_ digits: ArraySlice<UInt8>, radix: UInt64) -> UInt64? {
        var v: UInt64 = 0
        for c in digits {
            guard let d = YAMLCursor.hexValue(c).map(UInt64.init), d < radix else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: radix)
            let (s, o2) = m.addingReportingOverflow(d)
            if o1 || o2 { return nil }
            v = s
        }
        return v
    }
}

/// Why a document was rejected. `line` and `column` are 1-based; columns count
/// Unicode scalars (a tab counts as one).
public struct YAMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var problem: String
    public init(line: Int, column: Int, problem: String) {
        self.line = line; self.column = column; self.problem = problem
    }
    public var description: String { "line \(line), column \(column): \(problem)" }
}

public enum YAMLReader {
    /// Parses one document. Returns nil for an empty document (only blank lines / comments / `---`).
    /// Collections nested deeper than `maxDepth` and input longer than `maxBytes` UTF-8 bytes are rejected.
    public static func parse(_ text: String, maxDepth: Int = 64, maxBytes: Int = 1 << 20) throws(YAMLError) -> YAMLNode? {
        let count = text.utf8.count
        if count > maxBytes {
            throw YAMLError(line: 1, column: 1, problem: "input is \(count) bytes, more than the limit of \(maxBytes) bytes")
        }
        var cursor = YAMLCursor(bytes: Array(text.utf8), maxDepth: maxDepth)
        return try cursor.parseDocument()
    }
}

// MARK: - Parser

/// Recursive-descent parser over UTF-8 bytes. Block structure is handled line by line:
/// after each value the cursor moves to the first content byte of the next non-blank,
/// non-comment line and records its indentation in `indent` (-1 at the end of the document),
/// and each block collection keeps consuming lines while they sit at its own indentation.
private struct YAMLCursor {
    let b: [UInt8]
    let maxDepth: Int
    var pos = 0
    var indent = -1           // indentation of the line at `pos`; -1 = end of input or a `---`/`...` marker
    var bodyStart = 0         // 3 when a byte order mark was skipped
    var lineStarts: [Int] = [0]

    init(bytes: [UInt8], maxDepth: Int) {
        b = bytes
        self.maxDepth = maxDepth
        for (i, c) in bytes.enumerated() where c == 0x0A { lineStarts.append(i + 1) }
    }

    // Byte classes. `at` returns 0 past the end; NUL bytes are rejected up front, so 0 means end of input.
    func at(_ i: Int) -> UInt8 { i < b.count ? b[i] : 0 }
    static func isBreak(_ c: UInt8) -> Bool { c == 0x0A || c == 0x0D || c == 0 }
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }
    static func isBlank(_ c: UInt8) -> Bool { isSpace(c) || isBreak(c) }
    static func isFlowIndicator(_ c: UInt8) -> Bool {
        c == UInt8(ascii: ",") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]")
            || c == UInt8(ascii: "{") || c == UInt8(ascii: "}")
    }
    func isSequenceItem(_ p: Int) -> Bool { at(p) == UInt8(ascii: "-") && Self.isBlank(at(p + 1)) }
    /// `---` or `...` followed by a blank, at `pos` (callers ensure `pos` is at a line start).
    func isMarker(_ c: UInt8) -> Bool { at(pos) == c && at(pos + 1) == c && at(pos + 2) == c && Self.isBlank(at(pos + 3)) }
    func atDocumentMarker() -> Bool { isMarker(UInt8(ascii: "-")) || isMarker(UInt8(ascii: ".")) }

    func line(of offset: Int) -> Int {
        var lo = 0, hi = lineStarts.count - 1           // last line start <= offset
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return lo + 1
    }
    func error(_ offset: Int, _ problem: String) -> YAMLError {
        let l = line(of: offset)
        var column = 1, i = max(lineStarts[l - 1], bodyStart)
        while i < min(offset, b.count) {
            if b[i] & 0xC0 != 0x80 { column += 1 }      // count scalars, not continuation bytes
            i += 1
        }
        return YAMLError(line: l, column: column, problem: problem)
    }
    func text(_ r: Range<Int>) -> String { String(decoding: b[r], as: UTF8.self) }
    func shown(_ s: String) -> String { s.count > 40 ? String(s.prefix(40)) + "…" : s }
    func checkDepth(_ depth: Int) throws(YAMLError) {
        if depth > maxDepth { throw error(pos, "nesting is deeper than the limit of \(maxDepth) levels") }
    }

    // MARK: Document and lines

    mutating func parseDocument() throws(YAMLError) -> YAMLNode? {
        if b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { pos = 3; bodyStart = 3 }
        try checkCharacters()
        try skipBlankLines()
        if indent == 0, at(pos) == UInt8(ascii: "%") {
            throw error(pos, "directives ('%YAML', '%TAG') are not supported; remove the line")
        }
        if indent < 0, isMarker(UInt8(ascii: "-")) {
            pos += 3
            try advanceLine("content on the same line as '---' is not supported; start the document on the next line")
        }
        var root: YAMLNode? = nil
        if indent >= 0 {
            let rootPos = pos, rootIndent = indent
            let node = try parseBlockNode(depth: 1)
            if indent >= 0 {
                // A leftover line at the root's own indentation: name the likelier mistake.
                if indent == rootIndent, case .scalar(let s) = node, lineHasMappingKey(pos) {
                    throw error(rootPos, "expected ':' after '\(shown(s.text))'; every line of a mapping must be 'key: value'")
                }
                if indent == rootIndent, case .sequence = node {
                    throw error(pos, "expected a sequence item '- '; a sequence and a mapping cannot share an indentation level here")
                }
                throw misplacedLine(after: node)
            }
            root = node
        }
        if pos < b.count {                              // stopped at a `---` or `...` line
            if isMarker(UInt8(ascii: "-")) {
                throw error(pos, "a second document ('---') is not supported; use one document per file")
            }
            pos += 3
            try advanceLine("content after the document end marker '...' is not supported")
            if pos < b.count {
                throw error(pos, "content after the document end marker '...' (multiple documents are not supported)")
            }
        }
        return root
    }

    /// Rejects C0 control characters other than tab/LF/CR-before-LF, and DEL.
    func checkCharacters() throws(YAMLError) {
        var i = pos
        while i < b.count {
            let c = b[i]
            if c == 0x0D, at(i + 1) == 0x0A { i += 2; continue }
            if (c < 0x20 && c != 0x09 && c != 0x0A) || c == 0x7F {
                let hex = String(c, radix: 16, uppercase: true)
                let detail = c == 0x0D ? " (a carriage return must be followed by a line feed)" : ""
                throw error(i, "control character U+\(c < 0x10 ? "000" : "00")\(hex) is not allowed\(detail)")
            }
            i += 1
        }
    }

    mutating func consumeNewline() {
        if at(pos) == 0x0D { pos += 1 }
        if at(pos) == 0x0A { pos += 1 }
    }

    /// After a value: allows trailing spaces and a comment, then moves past the line break.
    mutating func finishLine(_ problem: @autoclosure () -> String) throws(YAMLError) {
        while Self.isSpace(at(pos)) { pos += 1 }
        if at(pos) == UInt8(ascii: "#"), pos > 0, Self.isSpace(b[pos - 1]) {
            while !Self.isBreak(at(pos)) { pos += 1 }
        }
        if !Self.isBreak(at(pos)) { throw error(pos, problem()) }
        consumeNewline()
    }

    /// From a line start: skips blank and comment-only lines, then sets `pos` to the first
    /// content byte and `indent` to its column (or -1 at the end / at a document marker).
    mutating func skipBlankLines() throws(YAMLError) {
        while pos < b.count {
            var p = pos
            while at(p) == 0x20 { p += 1 }
            var q = p, tab = -1
            while Self.isSpace(at(q)) {
                if at(q) == 0x09, tab < 0 { tab = q }
                q += 1
            }
            if at(q) == UInt8(ascii: "#") || Self.isBreak(at(q)) {
                pos = q
                while !Self.isBreak(at(pos)) { pos += 1 }
                consumeNewline()
                continue
            }
            if tab >= 0 { throw error(tab, "tab character used for indentation; indent with spaces only") }
            indent = p - pos
            pos = p
            if indent == 0, atDocumentMarker() { indent = -1 }
            return
        }
        indent = -1
    }

    mutating func advanceLine(_ problem: @autoclosure () -> String) throws(YAMLError) {
        try finishLine(problem())
        try skipBlankLines()
    }

    /// The error for a content line that does not fit where it appears.
    func misplacedLine(after previous: YAMLNode) -> YAMLError {
        if case .scalar(let s) = previous, s.style == .plain, !isSequenceItem(pos), !lineHasMappingKey(pos) {
            return error(pos, "multi-line plain scalars are not supported; put the value on one line or quote it")
        }
        return error(pos, "inconsistent indentation: this line does not line up with the block it follows")
    }

    // MARK: Block context

    /// A node whose first byte is at `pos`, on a line indented by `indent`.
    mutating func parseBlockNode(depth: Int) throws(YAMLError) -> YAMLNode {
        let n = indent
        if isSequenceItem(pos) { return .sequence(try parseBlockSequence(indent: n, depth: depth)) }
        if lineHasMappingKey(pos) { return .mapping(try parseBlockMapping(indent: n, depth: depth)) }
        return try parseLineValue(depth: depth)
    }

    /// Whether the line from `p` starts with `key:` followed by a blank (a block mapping entry).
    func lineHasMappingKey(_ p: Int) -> Bool {
        var q: Int
        let c = at(p)
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            guard let end = quotedEnd(p) else { return false }
            q = end
        } else if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
            return false
        } else {
            q = plainEnd(p, flow: false)
        }
        while Self.isSpace(at(q)) { q += 1 }
        return at(q) == UInt8(ascii: ":") && Self.isBlank(at(q + 1))
    }

    /// A scalar or flow collection that must be the last thing on its line; advances to the next line.
    mutating func parseLineValue(depth: Int) throws(YAMLError) -> YAMLNode {
        let c = at(pos)
        if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
            let node = try parseFlow(depth: depth)
            try advanceLine("unexpected content after the flow collection; only a comment may follow on the same line (quote the value if it is a string starting with '[' or '{')")
            return node
        }
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            let node = YAMLNode.scalar(try parseQuoted())
            try advanceLine("unexpected content after the quoted scalar; only a comment may follow on the same line")
            return node
        }
        let node = YAMLNode.scalar(try parsePlain(flow: false))
        try advanceLine("unexpected ': ' in a plain value (a mapping cannot start on the same line); quote the value")
        return node
    }

    mutating func parseBlockMapping(indent n: Int, depth: Int) throws(YAMLError) -> YAMLMapping {
        try checkDepth(depth)
        var entries: [YAMLEntry] = []
        var seen = Set<String>()
        while true {
            let keyPos = pos, c = at(pos)
            if isSequenceItem(pos) {
                throw error(pos, "expected a mapping key but found a sequence item '- ' at the same indentation")
            }
            if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
                throw error(pos, "flow collections as mapping keys are not supported")
            }
            let key = c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") ? try parseQuoted() : try parsePlain(flow: false)
            while Self.isSpace(at(pos)) { pos += 1 }
            guard at(pos) == UInt8(ascii: ":"), Self.isBlank(at(pos + 1)) else {
                throw error(pos, "expected ':' after '\(shown(key.text))'; every line of a mapping must be 'key: value'")
            }
            pos += 1
            if !seen.insert(key.text).inserted { throw error(keyPos, "duplicate key '\(shown(key.text))' in mapping") }
            while Self.isSpace(at(pos)) { pos += 1 }
            let value: YAMLNode
            if at(pos) == UInt8(ascii: "#") || Self.isBreak(at(pos)) {
                // Nothing after `key:` — the value is on the following lines, or empty.
                try advanceLine("unexpected content after ':'")
                if indent > n {
                    value = try parseBlockNode(depth: depth + 1)
                } else if indent == n, isSequenceItem(pos) {
                    value = .sequence(try parseBlockSequence(indent: n, depth: depth + 1))
                } else {
                    value = .scalar(YAMLScalar(text: "", style: .plain, line: key.line))
                }
            } else {
                if isSequenceItem(pos) {
                    throw error(pos, "a block sequence cannot start on the same line as its key; put each '- item' on its own line")
                }
                if lineHasMappingKey(pos) {
                    throw error(pos, "a mapping cannot start on the same line as its key; indent it on the next line, or quote the value if it contains ': '")
                }
                value = try parseLineValue(depth: depth + 1)
            }
            entries.append(YAMLEntry(key: key.text, value: value))
            if indent == n { continue }
            if indent < n { return YAMLMapping(entries: entries) }
            throw misplacedLine(after: value)
        }
    }

    mutating func parseBlockSequence(indent n: Int, depth: Int) throws(YAMLError) -> [YAMLNode] {
        try checkDepth(depth)
        var items: [YAMLNode] = []
        while true {
            let dash = pos
            pos += 1
            var sawTab = false
            while Self.isSpace(at(pos)) {
                if at(pos) == 0x09 { sawTab = true }
                pos += 1
            }
            let item: YAMLNode
            if at(pos) == UInt8(ascii: "#") || Self.isBreak(at(pos)) {
                try advanceLine("unexpected content after '-'")
                if indent > n {
                    item = try parseBlockNode(depth: depth + 1)
                } else {
                    item = .scalar(YAMLScalar(text: "", style: .plain, line: line(of: dash)))
                }
            } else {
                // Compact form `- - x` / `- key: v`: the nested collection's indentation is this column.
                let column = n + (pos - dash)
                let nestedSequence = isSequenceItem(pos), nestedMapping = !nestedSequence && lineHasMappingKey(pos)
                if sawTab, nestedSequence || nestedMapping {
                    throw error(pos - 1, "tab character used for indentation; indent with spaces only")
                }
                if nestedSequence {
                    item = .sequence(try parseBlockSequence(indent: column, depth: depth + 1))
                } else if nestedMapping {
                    item = .mapping(try parseBlockMapping(indent: column, depth: depth + 1))
                } else {
                    item = try parseLineValue(depth: depth + 1)
                }
            }
            items.append(item)
            if indent == n, isSequenceItem(pos) { continue }
            if indent <= n { return items }         // at == n the parent mapping takes over
            throw misplacedLine(after: item)
        }
    }

    // MARK: Flow context

    /// Skips spaces, tabs, line breaks and comments inside a flow collection; returns whether a
    /// line break was crossed. Throws if the input (or the document) ends first.
    mutating func skipFlowSpace(open: Int, close: UInt8) throws(YAMLError) -> Bool {
        var crossed = false
        while true {
            let c = at(pos)
            if Self.isSpace(c) {
                pos += 1
            } else if c == UInt8(ascii: "#"), Self.isSpace(b[pos - 1]) || b[pos - 1] == 0x0A {
                while !Self.isBreak(at(pos)) { pos += 1 }
            } else if c == 0x0A || c == 0x0D {
                consumeNewline()
                crossed = true
                if atDocumentMarker() { break }
            } else if pos >= b.count {
                break
            } else {
                return crossed
            }
        }
        let what = close == UInt8(ascii: "]") ? "flow sequence" : "flow mapping"
        throw error(open, "unterminated \(what): missing '\(Character(Unicode.Scalar(close)))'")
    }

    mutating func parseFlow(depth: Int) throws(YAMLError) -> YAMLNode {
        try checkDepth(depth)
        let open = pos
        let isSequence = at(pos) == UInt8(ascii: "[")
        let close = isSequence ? UInt8(ascii: "]") : UInt8(ascii: "}")
        pos += 1
        var items: [YAMLNode] = []
        var entries: [YAMLEntry] = []
        var seen = Set<String>()
        while true {
            _ = try skipFlowSpace(open: open, close: close)
            if at(pos) == close { pos += 1; break }
            let last: YAMLNode
            if isSequence {
                last = try parseFlowItem(depth: depth + 1)
                items.append(last)
            } else {
                let keyPos = pos, c = at(pos)
                if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
                    throw error(pos, "flow collections as mapping keys are not supported")
                }
                let key = c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") ? try parseQuoted() : try parsePlain(flow: true)
                while Self.isSpace(at(pos)) { pos += 1 }
                guard at(pos) == UInt8(ascii: ":") else {
                    throw error(pos, "expected ':' after key '\(shown(key.text))' in flow mapping")
                }
                pos += 1
                if !seen.insert(key.text).inserted { throw error(keyPos, "duplicate key '\(shown(key.text))' in mapping") }
                _ = try skipFlowSpace(open: open, close: close)
                if at(pos) == UInt8(ascii: ",") || at(pos) == close {
                    last = .scalar(YAMLScalar(text: "", style: .plain, line: key.line))
                } else {
                    last = try parseFlowItem(depth: depth + 1)
                }
                entries.append(YAMLEntry(key: key.text, value: last))
            }
            let crossed = try skipFlowSpace(open: open, close: close)
            let c = at(pos)
            if c == UInt8(ascii: ",") { pos += 1; continue }
            if c == close { pos += 1; break }
            if isSequence, c == UInt8(ascii: ":"), Self.isBlank(at(pos + 1)) || Self.isFlowIndicator(at(pos + 1)) {
                throw error(pos, "'key: value' pairs inside a flow sequence are not supported; wrap them in braces: [{key: value}]")
            }
            var problem = "expected ',' or '\(Character(Unicode.Scalar(close)))' in flow \(isSequence ? "sequence" : "mapping")"
            if crossed, case .scalar(let s) = last, s.style == .plain {
                problem += " (multi-line plain scalars are not supported; put the value on one line or quote it)"
            }
            throw error(pos, problem)
        }
        return isSequence ? .sequence(items) : .mapping(YAMLMapping(entries: entries))
    }

    mutating func parseFlowItem(depth: Int) throws(YAMLError) -> YAMLNode {
        let c = at(pos)
        if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { return try parseFlow(depth: depth) }
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") { return .scalar(try parseQuoted()) }
        return .scalar(try parsePlain(flow: true))
    }

    // MARK: Scalars

    /// Where a plain scalar starting at `start` stops (before trimming trailing spaces): at a line
    /// break, at `: ` (`:` + blank), at ` #`, and in flow context also at `,[]{}` and `:` + one of them.
    func plainEnd(_ start: Int, flow: Bool) -> Int {
        var i = start
        while true {
            let c = at(i)
            if Self.isBreak(c) { return i }
            if c == UInt8(ascii: ":") {
                let d = at(i + 1)
                if Self.isBlank(d) || (flow && Self.isFlowIndicator(d)) { return i }
            }
            if c == UInt8(ascii: "#"), i > start, Self.isSpace(at(i - 1)) { return i }
            if flow, Self.isFlowIndicator(c) { return i }
            i += 1
        }
    }

    /// Rejects characters that cannot start a plain scalar, naming the YAML feature they belong to.
    func checkPlainStart(flow: Bool) throws(YAMLError) {
        let c = at(pos), next = at(pos + 1)
        let problem: String
        switch c {
        case UInt8(ascii: "&"):
            problem = "anchors ('&name') are not supported; quote the value if it is a string"
        case UInt8(ascii: "*"):
            problem = "aliases ('*name') are not supported; quote the value if it is a string, e.g. \"*.example.com\""
        case UInt8(ascii: "!"):
            problem = "tags ('!tag', '!!str') are not supported; quote the value if it is a string"
        case UInt8(ascii: "|"), UInt8(ascii: ">"):
            problem = "block scalars ('|' and '>') are not supported; put the value on one line and quote it"
        case UInt8(ascii: "%"):
            problem = "'%' cannot start a plain value (directives are not supported); quote the value"
        case UInt8(ascii: "@"), UInt8(ascii: "`"):
            problem = "'@' and '`' are reserved and cannot start a plain value; quote the value"
        case UInt8(ascii: "#"):
            problem = "'#' cannot start a value (a comment needs a space before it); quote the value"
        case UInt8(ascii: "]"), UInt8(ascii: "}"):
            problem = "unexpected '\(Character(Unicode.Scalar(c)))' without a matching opening bracket"
        case UInt8(ascii: ","):
            problem = flow ? "unexpected ',' (empty entries are not allowed)" : "unexpected ','; quote the value"
        case UInt8(ascii: "?") where Self.isBlank(next):
            problem = "complex mapping keys ('? ') are not supported"
        case UInt8(ascii: ":") where Self.isBlank(next) || (flow && Self.isFlowIndicator(next)):
            problem = "unexpected ':' (empty mapping keys are not supported)"
        case UInt8(ascii: "-") where Self.isBlank(next):
            problem = "block sequence items ('- ') are not allowed here"
        default:
            if Self.isBreak(c) { problem = "expected a value" } else { return }
        }
        throw error(pos, problem)
    }

    mutating func parsePlain(flow: Bool) throws(YAMLError) -> YAMLScalar {
        try checkPlainStart(flow: flow)
        let start = pos
        var end = plainEnd(start, flow: flow)
        while end > start, Self.isSpace(at(end - 1)) { end -= 1 }
        if end == start { throw error(pos, "expected a value") }   // defensive: always consume something
        pos = end
        return YAMLScalar(text: text(start..<end), style: .plain, line: line(of: start))
    }

    /// The offset just after the closing quote of the quoted scalar at `p`, or nil if it does not close on its line.
    func quotedEnd(_ p: Int) -> Int? {
        let quote = at(p)
        var i = p + 1
        while true {
            let c = at(i)
            if Self.isBreak(c) { return nil }
            if c == quote {
                if quote == UInt8(ascii: "'"), at(i + 1) == quote { i += 2; continue }
                return i + 1
            }
            if quote == UInt8(ascii: "\""), c == UInt8(ascii: "\\") {
                if Self.isBreak(at(i + 1)) { return nil }
                i += 2
                continue
            }
            i += 1
        }
    }

    mutating func parseQuoted() throws(YAMLError) -> YAMLScalar {
        let open = pos, quote = at(pos)
        let single = quote == UInt8(ascii: "'")
        pos += 1
        var out: [UInt8] = []
        while true {
            let c = at(pos)
            if Self.isBreak(c) {
                throw error(open, "unterminated \(single ? "single" : "double")-quoted scalar; quoted scalars must end on the same line")
            }
            if c == quote {
                if single, at(pos + 1) == quote { out.append(quote); pos += 2; continue }   // '' → '
                pos += 1
                break
            }
            if single || c != UInt8(ascii: "\\") { out.append(c); pos += 1; continue }
            let escape = pos, e = at(pos + 1)
            pos += 2
            if let replacement = Self.escapes[e] { out.append(contentsOf: replacement); continue }
            let digits = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : e == UInt8(ascii: "U") ? 8 : 0
            if digits > 0 { try appendHexEscape(digits: digits, escape: escape, into: &out); continue }
            if Self.isBreak(e) {
                throw error(escape, "unterminated double-quoted scalar; a '\\' at the end of a line (line continuation) is not supported")
            }
            let shownEscape = e < 0x80 ? String(Character(Unicode.Scalar(e))) : "…"
            throw error(escape, "invalid escape sequence '\\\(shownEscape)' in double-quoted scalar")
        }
        return YAMLScalar(text: String(decoding: out, as: UTF8.self), style: single ? .singleQuoted : .doubleQuoted, line: line(of: open))
    }

    /// Single-character escapes of double-quoted scalars and the UTF-8 bytes they stand for
    /// (YAML 1.2's list, including `\N` U+0085, `\_` U+00A0, `\L` U+2028, `\P` U+2029 and backslash-tab).
    static let escapes: [UInt8: [UInt8]] = [
        0x5C: [0x5C], 0x22: [0x22], 0x2F: [0x2F], 0x20: [0x20], 0x09: [0x09], // \\ \" \/ space tab
        0x62: [0x08], 0x66: [0x0C], 0x6E: [0x0A], 0x72: [0x0D], 0x74: [0x09], // \b \f \n \r \t
        0x30: [0x00], 0x61: [0x07], 0x76: [0x0B], 0x65: [0x1B],               // \0 \a \v \e
        0x4E: [0xC2, 0x85], 0x5F: [0xC2, 0xA0], 0x4C: [0xE2, 0x80, 0xA8], 0x50: [0xE2, 0x80, 0xA9], // \N \_ \L \P
    ]

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30         // 0-9
        case 0x61...0x66: return c - 0x61 + 10    // a-f
        case 0x41...0x46: return c - 0x41 + 10    // A-F
        default: return nil
        }
    }

    mutating func appendHexEscape(digits: Int, escape: Int, into out: inout [UInt8]) throws(YAMLError) {
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let d = Self.hexValue(at(pos)) else {
                throw error(escape, "invalid escape sequence: '\\\(Character(Unicode.Scalar(b[escape + 1])))' needs \(digits) hexadecimal digits")
            }
            value = value << 4 | UInt32(d)
            pos += 1
        }
        guard let scalar = Unicode.Scalar(value) else {
            throw error(escape, "invalid escape sequence: U+\(String(value, radix: 16, uppercase: true)) is not a valid Unicode scalar (surrogate or too large)")
        }
        out.append(contentsOf: scalar.utf8)
    }
}
