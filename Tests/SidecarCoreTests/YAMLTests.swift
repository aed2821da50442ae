import Testing
import SidecarCore

// MARK: - Helpers (expected values carry line 0; parsed trees are compared after `stripLines`)

private func s(_ t: String) -> YAMLNode { .scalar(YAMLScalar(text: t, style: .plain, line: 0)) }
private func q(_ t: String) -> YAMLNode { .scalar(YAMLScalar(text: t, style: .doubleQuoted, line: 0)) }
private func sq(_ t: String) -> YAMLNode { .scalar(YAMLScalar(text: t, style: .singleQuoted, line: 0)) }
private func seq(_ items: [YAMLNode]) -> YAMLNode { .sequence(items) }
private func m(_ pairs: KeyValuePairs<String, YAMLNode>) -> YAMLNode {
    .mapping(YAMLMapping(entries: pairs.map { YAMLEntry(key: $0.key, value: $0.value) }))
}

private func stripLines(_ node: YAMLNode) -> YAMLNode {
    switch node {
    case .scalar(var sc): sc.line = 0; return .scalar(sc)
    case .sequence(let items): return .sequence(items.map(stripLines))
    case .mapping(let map):
        return .mapping(YAMLMapping(entries: map.entries.map { YAMLEntry(key: $0.key, value: stripLines($0.value)) }))
    }
}

/// Parses, returning either the (line-stripped) tree or the error.
private func run(_ yaml: String, maxDepth: Int = 64, maxBytes: Int = 1 << 20) -> Result<YAMLNode?, YAMLError> {
    do throws(YAMLError) {
        return .success(try YAMLReader.parse(yaml, maxDepth: maxDepth, maxBytes: maxBytes).map(stripLines))
    } catch {
        return .failure(error)
    }
}

private let exampleDocument = """
# comment
upstream: http://127.0.0.1:8000          # trailing comment
public_paths: [/docs, /openapi.json]
cookie_name: "authjs.session-token"
timeout: 30
cors:
  origins: [https://app.example.com, "https://*.preview.example.com"]
  credentials: true
routes:
  - {path: /health, match: exact, mode: public}
  - {path: /admin, mode: required, require: [{claim: roles, contains: admin}, {claim: email_verified, equals: true}]}
  - {path: "/api/*/preview", match: glob, methods: [GET], mode: optional}
  - path: /x
    mode: optional
    methods:
      - GET
      - POST
routes2:
- at the same indentation as the parent key (valid YAML)
- 'it''s'
- "tab\\tand \\u00e9 and \\"q\\""
empty:
url: http://host:8080/a#frag     # `#` not preceded by space is part of the scalar; `:` not followed by space is too

"""

private let exampleExpected: YAMLNode = m([
    "upstream": s("http://127.0.0.1:8000"),
    "public_paths": seq([s("/docs"), s("/openapi.json")]),
    "cookie_name": q("authjs.session-token"),
    "timeout": s("30"),
    "cors": m([
        "origins": seq([s("https://app.example.com"), q("https://*.preview.example.com")]),
        "credentials": s("true"),
    ]),
    "routes": seq([
        m(["path": s("/health"), "match": s("exact"), "mode": s("public")]),
        m(["path": s("/admin"), "mode": s("required"), "require": seq([
            m(["claim": s("roles"), "contains": s("admin")]),
            m(["claim": s("email_verified"), "equals": s("true")]),
        ])]),
        m(["path": q("/api/*/preview"), "match": s("glob"), "methods": seq([s("GET")]), "mode": s("optional")]),
        m(["path": s("/x"), "mode": s("optional"), "methods": seq([s("GET"), s("POST")])]),
    ]),
    "routes2": seq([
        s("at the same indentation as the parent key (valid YAML)"),
        sq("it's"),
        q("tab\tand \u{e9} and \"q\""),
    ]),
    "empty": s(""),
    "url": s("http://host:8080/a#frag"),
])

// MARK: - Accepted documents

private struct AcceptCase: Sendable, CustomTestStringConvertible {
    let name: String, yaml: String, expected: YAMLNode?
    init(_ name: String, _ yaml: String, _ expected: YAMLNode?) { self.name = name; self.yaml = yaml; self.expected = expected }
    var testDescription: String { name }
}

private let acceptCases: [AcceptCase] = [
    AcceptCase("full example", exampleDocument, exampleExpected),
    AcceptCase("simple mapping", "a: 1\nb: two words\n", m(["a": s("1"), "b": s("two words")])),
    AcceptCase("nested mappings", "a:\n  b:\n    c: 1\n  d: 2\ne: 3", m(["a": m(["b": m(["c": s("1")]), "d": s("2")]), "e": s("3")])),
    AcceptCase("indented sequence", "a:\n  - x\n  - y\nb: 1", m(["a": seq([s("x"), s("y")]), "b": s("1")])),
    AcceptCase("same-indent sequence", "a:\n- x\n- y\nb: 1", m(["a": seq([s("x"), s("y")]), "b": s("1")])),
    AcceptCase("same-indent sequence nested", "a:\n  b:\n  - x\n  c: 2", m(["a": m(["b": seq([s("x")]), "c": s("2")])])),
    AcceptCase("compact mapping", "- a: 1\n  b: 2\n- c: 3", seq([m(["a": s("1"), "b": s("2")]), m(["c": s("3")])])),
    AcceptCase("compact mapping with nested values", "- a:\n    x: 1\n  b:\n  - y\n  c: [z]",
               seq([m(["a": m(["x": s("1")]), "b": seq([s("y")]), "c": seq([s("z")])])])),
    AcceptCase("compact nested sequences", "- - a\n  - b\n- c", seq([seq([s("a"), s("b")]), s("c")])),
    AcceptCase("item on next line", "-\n  a: 1\n- # c\n  - x", seq([m(["a": s("1")]), seq([s("x")])])),
    AcceptCase("empty items", "- \n-\n- a", seq([s(""), s(""), s("a")])),
    AcceptCase("empty value", "key:", m(["key": s("")])),
    AcceptCase("empty values then more", "a:\nb:   # c\nc: 1", m(["a": s(""), "b": s(""), "c": s("1")])),
    AcceptCase("value on next line", "a:\n  hello there\nb: 1", m(["a": s("hello there"), "b": s("1")])),
    AcceptCase("top-level plain scalar", "hello world", s("hello world")),
    AcceptCase("top-level quoted scalar", "'x' # c", sq("x")),
    AcceptCase("top-level sequence", "- a\n- b", seq([s("a"), s("b")])),
    AcceptCase("top-level flow", "[a, b]  # c", seq([s("a"), s("b")])),
    AcceptCase("indented root", "  a: 1\n  b: 2\n", m(["a": s("1"), "b": s("2")])),
    AcceptCase("flow sequence", "a: [1, two words, 'x', \"y\"]", m(["a": seq([s("1"), s("two words"), sq("x"), q("y")])])),
    AcceptCase("flow mapping", "a: {b: 1, c: d e}", m(["a": m(["b": s("1"), "c": s("d e")])])),
    AcceptCase("empty flow collections", "a: []\nb: {}\nc: [ ]", m(["a": seq([]), "b": m([:]), "c": seq([])])),
    AcceptCase("nested flow", "{a: [1, {b: [c, []]}], d: {}}", m(["a": seq([s("1"), m(["b": seq([s("c"), seq([])])])]), "d": m([:])])),
    AcceptCase("trailing commas", "a: [1, 2,]\nb: {c: 1,}", m(["a": seq([s("1"), s("2")]), "b": m(["c": s("1")])])),
    AcceptCase("multi-line flow", "a: [\n  1,\n  2\n]\nb: {\n  c: 1,\n\n  d:\n    2,\n}\n",
               m(["a": seq([s("1"), s("2")]), "b": m(["c": s("1"), "d": s("2")])])),
    AcceptCase("comments inside flow", "a: [ # c\n  1, # c\n  # c\n  2 # c\n] # c", m(["a": seq([s("1"), s("2")])])),
    AcceptCase("flow empty value", "{a: , b: 1, c:}", m(["a": s(""), "b": s("1"), "c": s("")])),
    AcceptCase("flow JSON-style keys", "{\"a\":1, 'b':[2]}", m(["a": s("1"), "b": seq([s("2")])])),
    AcceptCase("flow plain with colons", "[http://x:80/p, a:b]", seq([s("http://x:80/p"), s("a:b")])),
    AcceptCase("flow tabs and CRLF", "[a,\t b,\r\n\tc]", seq([s("a"), s("b"), s("c")])),
    AcceptCase("comments everywhere", "# top\n\n---  # start\n# c\na: 1 # c\n  # indented comment\nb: # c\n  # c\n  - x # c\n\n  - y#not a comment\n# end\n...\n# after",
               m(["a": s("1"), "b": seq([s("x"), s("y#not a comment")])])),
    AcceptCase("plain scalar punctuation", "a: b:c d#e, f] g}  \nb: -1\nc: -x\nd: ?x\ne: :x\nf: x-y\n",
               m(["a": s("b:c d#e, f] g}"), "b": s("-1"), "c": s("-x"), "d": s("?x"), "e": s(":x"), "f": s("x-y")])),
    AcceptCase("tabs inside values", "a:\tb\tc\t# c\nb: 'x\ty'", m(["a": s("b\tc"), "b": sq("x\ty")])),
    AcceptCase("single quotes", "a: 'it''s'\nb: ''\nc: 'a # b: c'", m(["a": sq("it's"), "b": sq(""), "c": sq("a # b: c")])),
    AcceptCase("double-quote escapes", #"a: "\\ \" \/ \b \f \n \r \t \0 \a \v \e \  \x41 \u00e9 \U0001F600 \N \_ \L \P""#,
               m(["a": q("\\ \" / \u{8} \u{C} \n \r \t \u{0} \u{7} \u{B} \u{1B}   A \u{e9} \u{1F600} \u{85} \u{A0} \u{2028} \u{2029}")])),
    AcceptCase("quoted keys", "\"a b\": 1\n'c': 2\n\"\": 3", m(["a b": s("1"), "c": s("2"), "": s("3")])),
    AcceptCase("key spacing", "a   : 1\n'b'\t: 2", m(["a": s("1"), "b": s("2")])),
    AcceptCase("unicode", "name: caf\u{e9} \u{1F600}\n\u{fc}: x", m(["name": s("caf\u{e9} \u{1F600}"), "\u{fc}": s("x")])),
    AcceptCase("CRLF", "a: 1\r\nb:\r\n  - x\r\n  - 'y'\r\nc: \"z\"\r\n", m(["a": s("1"), "b": seq([s("x"), sq("y")]), "c": q("z")])),
    AcceptCase("BOM", "\u{FEFF}a: 1", m(["a": s("1")])),
    AcceptCase("BOM and marker", "\u{FEFF}---\na: 1", m(["a": s("1")])),
    AcceptCase("marker then content", "---\n- a\n...\n", seq([s("a")])),
    AcceptCase("empty document", "", nil),
    AcceptCase("blank lines only", "\n  \n\t\n", nil),
    AcceptCase("comments only", "# a\n  # b\n", nil),
    AcceptCase("marker only", "---\n", nil),
    AcceptCase("start and end markers", "--- # c\n...\n# c", nil),
    AcceptCase("end marker only", "...", nil),
    AcceptCase("quoted hash and colon", "a: \"x # y: z\"", m(["a": q("x # y: z")])),
    AcceptCase("dashes in scalars", "a: ---x\nb: --- y", m(["a": s("---x"), "b": s("--- y")])),
    AcceptCase("flow value after key on lines", "a: {\n  b: [1,\n2]}\nc: 3", m(["a": m(["b": seq([s("1"), s("2")])]), "c": s("3")])),
]

@Test(arguments: acceptCases)
private func accepts(_ c: AcceptCase) {
    switch run(c.yaml) {
    case .success(let node): #expect(node == c.expected)
    case .failure(let e): Issue.record("unexpected error: \(e)")
    }
}

// MARK: - Rejected documents

private struct RejectCase: Sendable, CustomTestStringConvertible {
    let yaml: String, line: Int, problem: String
    init(_ yaml: String, _ line: Int, _ problem: String) { self.yaml = yaml; self.line = line; self.problem = problem }
    var testDescription: String { "\(yaml.debugDescription) -> \(problem)" }
}

private let rejectCases: [RejectCase] = [
    RejectCase("\ta: 1", 1, "tab character used for indentation"),
    RejectCase("a:\n\tb: 1", 2, "tab character used for indentation"),
    RejectCase("a:\n  \tb: 1", 2, "tab"),
    RejectCase("-\t- x", 1, "tab"),
    RejectCase("a: &x 1", 1, "anchors"),
    RejectCase("&x a: 1", 1, "anchors"),
    RejectCase("a: *x", 1, "aliases"),
    RejectCase("hosts: [*.example.com]", 1, "quote the value"),
    RejectCase("- *.example.com", 1, "\"*.example.com\""),
    RejectCase("a: !!str 1", 1, "tags"),
    RejectCase("a: !x 1", 1, "tags"),
    RejectCase("a: |\n  text", 1, "block scalars"),
    RejectCase("a: >-\n  text", 1, "block scalars"),
    RejectCase("? a\n: b", 1, "complex mapping keys"),
    RejectCase("a: 1\n? b", 2, "complex mapping keys"),
    RejectCase("%YAML 1.2\n---\na: 1", 1, "directives"),
    RejectCase("a: %x", 1, "directives"),
    RejectCase("a: 1\n---\nb: 2", 2, "second document"),
    RejectCase("---\n---", 2, "second document"),
    RejectCase("a: 1\n...\nb: 2", 3, "multiple documents"),
    RejectCase("--- a: 1", 1, "'---'"),
    RejectCase("a: @x", 1, "reserved"),
    RejectCase("a: `x`", 1, "reserved"),
    RejectCase("a: 1\nb: 2\na: 3", 3, "duplicate key 'a'"),
    RejectCase("a: 1\n'a': 2", 2, "duplicate key 'a'"),
    RejectCase("x:\n  - {k: 1, k: 2}", 2, "duplicate key 'k'"),
    RejectCase("a:\n    b: 1\n  c: 2", 3, "inconsistent indentation"),
    RejectCase("a: 1\n  b: 2", 2, "inconsistent indentation"),
    RejectCase("- a\n - b", 2, "inconsistent indentation"),
    RejectCase("  a: 1\nb: 2", 2, "inconsistent indentation"),
    RejectCase("- a: 1\n   b: 2", 2, "inconsistent indentation"),
    RejectCase("a: hello\n  world", 2, "multi-line plain scalars are not supported; put the value on one line or quote it"),
    RejectCase("- hello\n  world", 2, "multi-line plain scalars"),
    RejectCase("hello\nworld", 2, "multi-line plain scalars"),
    RejectCase("a: [hello\n  world]", 2, "multi-line plain scalars"),
    RejectCase("a: 'x", 1, "unterminated single-quoted"),
    RejectCase("a: 'x\n  y'", 1, "unterminated single-quoted"),
    RejectCase("a: \"x\n  y\"", 1, "unterminated double-quoted"),
    RejectCase("a: \"x\\\n  y\"", 1, "line continuation"),
    RejectCase("a: [1, 2", 1, "unterminated flow sequence"),
    RejectCase("a: {b: 1,\n  c: 2\n", 1, "unterminated flow mapping"),
    RejectCase("a: [1,\n---\n]", 1, "unterminated flow sequence"),
    RejectCase("a: ]", 1, "unexpected ']'"),
    RejectCase("a: [1]]", 1, "unexpected content after the flow collection"),
    RejectCase("a: {b: 1}}", 1, "unexpected content after the flow collection"),
    RejectCase("[a}", 1, "expected ',' or ']'"),
    RejectCase("[\"a\" b]", 1, "expected ',' or ']'"),
    RejectCase("['a''' b]", 1, "expected ',' or ']'"),
    RejectCase("[[a] [b]]", 1, "expected ',' or ']'"),
    RejectCase("{a: 1 b: 2}", 1, "expected ',' or '}'"),
    RejectCase("[a, , b]", 1, "unexpected ','"),
    RejectCase("[,]", 1, "unexpected ','"),
    RejectCase("{a, b: 1}", 1, "expected ':' after key 'a'"),
    RejectCase("{[a]: 1}", 1, "flow collections as mapping keys"),
    RejectCase("[a: b]", 1, "inside a flow sequence"),
    RejectCase("[- a]", 1, "block sequence items"),
    RejectCase("a: 1\nfoo\nb: 2", 2, "expected ':' after 'foo'"),
    RejectCase("a:\n  b: 1\n  foo", 3, "every line of a mapping must be 'key: value'"),
    RejectCase("a: 1\n- b", 2, "found a sequence item"),
    RejectCase("foo\na: 1", 1, "expected ':' after 'foo'"),
    RejectCase("- a\nb: 1", 2, "expected a sequence item"),
    RejectCase("}", 1, "unexpected '}'"),
    RejectCase("a: 1\n]", 2, "unexpected ']'"),
    RejectCase("a: [1] x", 1, "unexpected content after the flow collection"),
    RejectCase("a: [1]#c", 1, "unexpected content after the flow collection"),
    RejectCase("a: 'x' y", 1, "after the quoted scalar"),
    RejectCase("a: - b", 1, "block sequence cannot start on the same line"),
    RejectCase("a: b: c", 1, "mapping cannot start on the same line"),
    RejectCase("- a: b: c", 1, "mapping cannot start on the same line"),
    RejectCase("- 'a' : b: c", 1, "mapping cannot start on the same line"),
    RejectCase("[a]: 1", 1, "unexpected content after the flow collection"),
    RejectCase("a: \"\\q\"", 1, "invalid escape sequence '\\q'"),
    RejectCase("a: \"\\x4\"", 1, "hexadecimal digits"),
    RejectCase("a: \"\\uD800\"", 1, "not a valid Unicode scalar"),
    RejectCase("a: \"\\U00110000\"", 1, "not a valid Unicode scalar"),
    RejectCase("a: 1\nb: \u{0}", 2, "control character U+0000"),
    RejectCase("a: x\u{1}y", 1, "control character U+0001"),
    RejectCase("a: x\u{1B}", 1, "control character U+001B"),
    RejectCase("a: x\u{7F}", 1, "control character U+007F"),
    RejectCase("a: 1\rb: 2", 1, "control character U+000D"),
    RejectCase(String(repeating: "[", count: 65) + String(repeating: "]", count: 65), 1, "nesting is deeper than the limit of 64"),
    RejectCase(": x", 1, "empty mapping keys"),
    RejectCase("[#a]", 1, "'#' cannot start"),
    RejectCase("a: ,x", 1, "unexpected ','"),
]

@Test(arguments: rejectCases)
private func rejects(_ c: RejectCase) {
    switch run(c.yaml) {
    case .success(let node): Issue.record("expected an error, got \(String(describing: node))")
    case .failure(let e):
        #expect(e.line == c.line, "\(e)")
        #expect(e.problem.contains(c.problem), "\(e)")
        #expect(e.column >= 1)
    }
}

@Test func errorPositionAndDescription() {
    guard case .failure(let e) = run("a: 1\nb: *x") else { Issue.record("expected an error"); return }
    #expect(e.line == 2 && e.column == 4)
    #expect(e.description.hasPrefix("line 2, column 4: aliases"))
    guard case .failure(let t) = run("a:\n  \tb: 1") else { Issue.record("expected an error"); return }
    #expect(t.line == 2 && t.column == 3)
    guard case .failure(let u) = run("\u{e9}\u{e9}: \"\\q\"") else { Issue.record("expected an error"); return }
    #expect(u.column == 6)   // columns count characters, not UTF-8 bytes
    guard case .failure(let d) = run("a: 1\r\nb: 2\r\na: 3") else { Issue.record("expected an error"); return }
    #expect(d.line == 3 && d.column == 1)
}

@Test func limits() {
    guard case .failure(let big) = run("a: 1234", maxBytes: 4) else { Issue.record("expected an error"); return }
    #expect(big.problem.contains("limit of 4 bytes"))
    #expect(run("a: 1234", maxBytes: 7) == .success(m(["a": s("1234")])))
    let deep64 = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
    if case .failure(let e) = run(deep64) { Issue.record("64 levels should parse: \(e)") }
    if case .success = run("a:\n  b:\n    c: 1", maxDepth: 2) { Issue.record("expected a depth error") }
    #expect((try? YAMLReader.parse("a:\n  b: 1", maxDepth: 2)) != nil)
}

// MARK: - API

@Test func mappingAPIAndLines() throws {
    let root = try #require(try YAMLReader.parse(exampleDocument))
    let map = try #require(root.mapping)
    #expect(map.count == 9)
    #expect(map.keys == ["upstream", "public_paths", "cookie_name", "timeout", "cors", "routes", "routes2", "empty", "url"])
    var seen: [String] = []
    for (key, value) in map { seen.append(key); #expect(value == map[key]) }
    #expect(seen == map.keys)
    #expect(map["missing"] == nil)
    #expect(map["timeout"]?.int == 30)
    #expect(map["timeout"]?.scalar?.line == 5)
    #expect(map["cors"]?.mapping?["credentials"]?.bool == true)
    #expect(map["cors"]?.mapping?["credentials"]?.scalar?.line == 8)
    #expect(map["routes2"]?.sequence?.map { $0.scalar?.line } == [19, 20, 21])
    #expect(map["routes2"]?.sequence?[1].string == "it's")
    #expect(map["empty"]?.isNull == true)
    #expect(map["empty"]?.scalar?.line == 22)
    #expect(map["routes"]?.sequence?[3].mapping?["methods"]?.sequence?[1].scalar?.line == 17)
    #expect(map["routes"]?.string == nil)
    #expect(map["url"]?.sequence == nil && map["url"]?.mapping == nil)
    #expect(map["cookie_name"]?.scalar?.style == .doubleQuoted)
}

// MARK: - Scalar resolution

private struct ScalarCase: Sendable, CustomTestStringConvertible {
    let text: String, isNull: Bool, bool: Bool?, int: Int64?, float: Double?, isNaN: Bool
    init(_ text: String, null: Bool = false, bool: Bool? = nil, int: Int64? = nil, float: Double? = nil, nan: Bool = false) {
        self.text = text; isNull = null; self.bool = bool; self.int = int; self.float = float; isNaN = nan
    }
    var testDescription: String { text.isEmpty ? "(empty)" : text }
}

private let scalarCases: [ScalarCase] = [
    ScalarCase("", null: true), ScalarCase("~", null: true), ScalarCase("null", null: true),
    ScalarCase("Null", null: true), ScalarCase("NULL", null: true), ScalarCase("nULL"),
    ScalarCase("'null'"), ScalarCase("\"~\""), ScalarCase("''"),
    ScalarCase("true", bool: true), ScalarCase("True", bool: true), ScalarCase("TRUE", bool: true),
    ScalarCase("false", bool: false), ScalarCase("False", bool: false), ScalarCase("FALSE", bool: false),
    ScalarCase("tRUE"), ScalarCase("\"true\""), ScalarCase("'false'"),
    ScalarCase("yes"), ScalarCase("no"), ScalarCase("on"), ScalarCase("off"), ScalarCase("y"),
    ScalarCase("0", int: 0, float: 0), ScalarCase("-17", int: -17, float: -17), ScalarCase("+17", int: 17, float: 17),
    ScalarCase("007", int: 7, float: 7), ScalarCase("0o17", int: 15), ScalarCase("0x1F", int: 31), ScalarCase("0xff", int: 255),
    ScalarCase("0x"), ScalarCase("0o8"), ScalarCase("0xG"), ScalarCase("-0x1"), ScalarCase("1_000"), ScalarCase("12:30"),
    ScalarCase("9223372036854775807", int: .max, float: 9223372036854775808),
    ScalarCase("9223372036854775808", int: nil, float: 9223372036854775808),
    ScalarCase("-9223372036854775808", int: .min, float: -9223372036854775808),
    ScalarCase("-9223372036854775809", int: nil, float: -9223372036854775808),
    ScalarCase("0x8000000000000000"), ScalarCase("0x7FFFFFFFFFFFFFFF", int: .max),
    ScalarCase("100000000000000000000000", float: 1e23), ScalarCase("1e400", float: .infinity),
    ScalarCase("'1'"), ScalarCase("\"1.5\""),
    ScalarCase("1e3", float: 1000), ScalarCase("1.5", float: 1.5), ScalarCase(".5", float: 0.5),
    ScalarCase("-.5", float: -0.5), ScalarCase("1.", float: 1), ScalarCase("+1.5e-3", float: 0.0015),
    ScalarCase("2E+2", float: 200), ScalarCase("1e"), ScalarCase("e3"), ScalarCase("."), ScalarCase("+"), ScalarCase("-x"),
    ScalarCase("1.2.3"), ScalarCase("0x1p3"), ScalarCase("inf"), ScalarCase("nan"),
    ScalarCase(".inf", float: .infinity), ScalarCase("+.Inf", float: .infinity), ScalarCase("-.INF", float: -.infinity),
    ScalarCase(".nan", nan: true), ScalarCase(".NaN", nan: true), ScalarCase(".NAN", nan: true), ScalarCase("-.nan"),
    ScalarCase("'.inf'"),
]

@Test(arguments: scalarCases)
private func resolvesScalars(_ c: ScalarCase) throws {
    let node = try #require(try YAMLReader.parse("v: \(c.text)")?.mapping?["v"])
    #expect(node.isNull == c.isNull)
    #expect(node.bool == c.bool)
    #expect(node.int == c.int)
    if c.isNaN {
        #expect(node.float?.isNaN == true)
    } else {
        #expect(node.float == c.float)
    }
    #expect(node.string != nil)
}

@Test func collectionsDoNotResolve() throws {
    let node = try #require(try YAMLReader.parse("[1]"))
    #expect(!node.isNull && node.bool == nil && node.int == nil && node.float == nil && node.string == nil)
}

// MARK: - Robustness

/// Deterministic xorshift64* generator (no Foundation).
private struct XorShift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 2685821657736338717
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Parses and checks that an error, if any, points inside the input.
private func parseSafely(_ text: String) -> Bool {
    switch run(text) {
    case .success: return true
    case .failure(let e):
        let lines = text.utf8.split(separator: 10, omittingEmptySubsequences: false).count
        #expect(e.line >= 1 && e.line <= max(lines, 1), "\(e)")
        #expect(e.column >= 1, "\(e)")
        #expect(!e.problem.isEmpty)
        return false
    }
}

@Test(arguments: ["[", "{a: ", "- ", "{a: [", "[{a: "])
private func deepNestingIsAnError(_ unit: String) {
    let text = String(repeating: unit, count: 10_000) + "x"
    guard case .failure(let e) = run(text) else { Issue.record("expected an error"); return }
    #expect(e.problem.contains("nesting"))
}

@Test func deepBlockIndentationIsAnError() {
    var text = ""
    for i in 0..<1_000 { text += String(repeating: " ", count: i) + "a:\n" }
    guard case .failure(let e) = run(text) else { Issue.record("expected an error"); return }
    #expect(e.problem.contains("nesting"))
}

@Test func everyPrefixParsesOrThrows() {
    let bytes = Array(exampleDocument.utf8)
    var parsed = 0
    for i in 0...bytes.count where parseSafely(String(decoding: bytes[..<i], as: UTF8.self)) { parsed += 1 }
    #expect(parsed > 0)
}

@Test func randomInputsNeverCrash() {
    let alphabet = Array("-:#[]{},'\"\\ \t\n\r&*!|>?%@`.~0aZx\u{0}\u{1}/e".utf8) + [0xC3, 0xA9, 0xFF]
    var rng = XorShift(state: 0x9E37_79B9_7F4A_7C15)
    var parsed = 0
    for _ in 0..<10_000 {
        let length = rng.below(64)
        var bytes: [UInt8] = []
        for _ in 0..<length { bytes.append(alphabet[rng.below(alphabet.count)]) }
        if parseSafely(String(decoding: bytes, as: UTF8.self)) { parsed += 1 }
    }
    #expect(parsed > 0)
}

@Test func mutatedExampleNeverCrashes() {
    let original = Array(exampleDocument.utf8)
    let pieces = Array("-:#[]{},'\" \t\n&*".utf8)
    var rng = XorShift(state: 42)
    for _ in 0..<3_000 {
        var bytes = original
        for _ in 0..<(1 + rng.below(4)) {
            let i = rng.below(bytes.count)
            switch rng.below(3) {
            case 0: bytes[i] = pieces[rng.below(pieces.count)]
            case 1: bytes.remove(at: i)
            default: bytes.insert(pieces[rng.below(pieces.count)], at: i)
            }
        }
        _ = parseSafely(String(decoding: bytes, as: UTF8.self))
    }
}
