import AuthJSToken
import Foundation
import NIOCore
import NIOHTTP1
import Testing
@testable import SidecarServer

@Suite("RequestID")
struct RequestIDTests {
    @Test(arguments: ["a", "abc-123", "A.b_C-9", "0123456789abcdef0123456789abcdef", String(repeating: "z", count: 128)])
    func keepsShortPlainIDs(_ id: String) {
        var generator = RequestIDGenerator()
        #expect(RequestID.from(id, generator: &generator) == id)
    }

    @Test(arguments: [nil, "", " ", "a b", "a\tb", "a\r\nX-Injected: 1", "quote\"", "semi;colon", "slash/", "colon:", "é",
                      "a\u{0}b", "a\u{7F}b", "emoji😀", String(repeating: "z", count: 129)] as [String?])
    func replacesAnythingElse(_ id: String?) {
        var generator = RequestIDGenerator()
        let made = RequestID.from(id, generator: &generator)
        #expect(made != id)
        #expect(made.isGeneratedRequestID, "\(made)")
    }

    @Test func madeIDsAre32HexAndDistinct() {
        var seen = Set<String>()
        var generator = RequestIDGenerator()
        for _ in 0..<1000 {
            let id = generator.next()
            #expect(id.isGeneratedRequestID, "\(id)")
            seen.insert(id)
        }
        #expect(seen.count == 1000)
    }
}

/// `HeaderClass` replaced the `HopByHop` name set: the RFC 9110 §7.6.1 hop-by-hop fields (plus `proxy-connection` and
/// `keep-alive`) and every field the proxy rewrites, classified from the name in any ASCII case.
@Suite("HeaderClass (hop-by-hop and owned fields)")
struct HeaderClassTests {
    static let expected: [(String, HeaderClass)] = [
        ("connection", .hopByHop), ("keep-alive", .hopByHop), ("proxy-connection", .hopByHop), ("te", .hopByHop),
        ("trailer", .hopByHop), ("upgrade", .hopByHop), ("proxy-authenticate", .hopByHop), ("proxy-authorization", .hopByHop),
        ("transfer-encoding", .transferEncoding),
        ("host", .host), ("cookie", .cookie), ("authorization", .authorization), ("expect", .expect),
        ("x-request-id", .requestID),
        ("x-forwarded-for", .forwarding), ("x-forwarded-host", .forwarding), ("x-forwarded-proto", .forwarding), ("forwarded", .forwarding),
        ("x-auth-sub", .identity), ("x-auth-", .identity), ("x_auth_email", .identity), ("X_Auth-Claims", .identity),
        // Underscore spellings of the fields a client must not set (upstream frameworks may fold them).
        ("x_forwarded_for", .forwarding), ("x-forwarded_host", .forwarding), ("x_forwarded_proto", .forwarding),
        ("x_request_id", .requestID), ("x-request_id", .requestID),
        ("content-length", .other), ("content-type", .other), ("x-auth", .other), ("x-authz-role", .other), ("x-forwarded-port", .other),
        ("tee", .other), ("t", .other), ("", .other), ("hostname", .other), ("cookies", .other), ("proxy-connectiom", .other),
        ("x-request-idx", .other), ("upgrade-insecure-requests", .other), ("te-x", .other), ("keep_alive", .other),
    ]

    @Test func classifiesEveryKnownName() {
        for (name, kind) in Self.expected {
            #expect(HeaderClass.of(name) == kind, "\(name)")
        }
    }

    @Test func ignoresASCIICase() {
        for (name, kind) in Self.expected {
            #expect(HeaderClass.of(name.uppercased()) == kind, "\(name.uppercased())")
            let mixed = String(name.enumerated().map { $0.offset % 2 == 0 ? Character($0.element.uppercased()) : $0.element })
            #expect(HeaderClass.of(mixed) == kind, "\(mixed)")
        }
    }

    @Test func nonASCIILookalikesAreOther() {
        // U+212A KELVIN SIGN lower-cases to "k" under Unicode rules; the ASCII-only fold must not treat it as one.
        #expect(HeaderClass.of("\u{212A}eep-alive") == .other)
        #expect(HeaderClass.of("connectio\u{0301}n") == .other)
    }

    /// The proxy forwards an upgrade exactly when the parser stopped after the request — the same reading of the
    /// `Connection` tokens (trailing spaces trimmed, not tabs, as llhttp). They once differed on `upgrade<HTAB>`:
    /// the proxy sent an upgrade upstream while the parser read the next bytes as requests (found in review).
    @Test("upgrade: the proxy's decision is the parser's", arguments: [
        ("Upgrade", true), ("keep-alive, Upgrade", true), (" UPGRADE ", true), ("upgrade,", true), ("close, upgrade", true),
        ("upgrade\t", false), ("UPGRADE\t ", false), ("upgrades", false), ("keep-alive", false), ("up grade", false),
    ])
    func upgradeDetection(connection: String, upgrade: Bool) throws {
        for (method, hasUpgradeField) in [("GET", true), ("POST", true), ("GET", false)] {
            var parser = ClientRequestParser()
            var input = ByteBuffer(string: "\(method) /ws HTTP/1.1\r\nHost: x\r\n" + (hasUpgradeField ? "Upgrade: websocket\r\n" : "")
                                   + "Connection: \(connection)\r\n\r\n")
            guard case .head(let head)? = try parser.next(&input) else { Issue.record("no head"); return }
            _ = try parser.next(&input)  // the end
            let expected = upgrade && method == "GET" && hasUpgradeField
            #expect(parser.stopped == expected)
            #expect(ProxyHandler.isUpgrade(head, RequestHeadFields(head)) == expected, "\(method) \(connection.debugDescription)")
            // The tests' own head constructor decides the same way.
            var headers = HTTPHeaders([("Host", "x"), ("Connection", connection)])
            if hasUpgradeField { headers.add(name: "Upgrade", value: "websocket") }
            let made = ClientRequestHead(method: HTTPMethod(rawValue: method), uri: "/ws", headers: headers)
            #expect(ProxyHandler.isUpgrade(made, RequestHeadFields(made)) == expected)
        }
    }

    @Test("bytes sent after an upgrade request before its answer are bounded: past the cap, the request is refused")
    func bytesBeforeUpgradeAnswerAreBounded() throws {
        var parser = ClientRequestParser()
        var input = ByteBuffer(string: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
        guard case .head? = try parser.next(&input), case .end? = try parser.next(&input) else { Issue.record("no request"); return }
        let chunk = [UInt8](repeating: 0x41, count: 4096)
        var sent = 0
        var refused: ClientRequestError?
        while sent <= ClientRequestParser.maxBytesBeforeUpgrade + chunk.count {
            var more = ByteBuffer(bytes: chunk)
            do { _ = try parser.next(&more) } catch { refused = error; break }
            sent += chunk.count
            #expect(more.readableBytes == 0)
        }
        #expect(sent == ClientRequestParser.maxBytesBeforeUpgrade, "kept up to the cap, refused past it")
        #expect(refused?.status == .badRequest)
        #expect(parser.takeRemainder() == nil, "nothing kept after the refusal")
    }

    @Test("response trailers lose their hop-by-hop fields, in any case; nothing left is no trailer block")
    func relayedTrailersDropHopByHop() {
        let hop = Self.expected.filter { $0.1 == .hopByHop }.map { ($0.0.uppercased(), "1") }
        let kept = [("x-t", "1"), ("Server-Timing", "db;dur=53"), ("x-auth-sub", "upstream's")]
        let relayed = ProxyHandler.relayableTrailers(HTTPHeaders(hop + [kept[0]] + hop + Array(kept.dropFirst())))
        #expect(relayed.map { $0.map { ($0.name, $0.value) }.elementsEqual(kept, by: ==) } == true)
        #expect(ProxyHandler.relayableTrailers(HTTPHeaders(hop)) == nil)
    }

    static let sessionCookieCases: [(String, Bool)] = [
        ("authjs.session-token=abc", true),
        (" authjs.session-token=abc", true),
        ("\tauthjs.session-token \t=abc", true),
        ("authjs.session-token.0=abc", true),
        ("authjs.session-token.12=abc", true),
        ("__Secure-authjs.session-token.1=abc", true),
        ("authjs.session-token", true),
        ("authjs.session-token.x=abc", false),
        ("authjs.session-token.\u{663}=abc", false),  // ARABIC-INDIC DIGIT THREE: not a chunk index on bytes
        ("authjs.session-token\u{301}=abc", false),   // a combining mark makes another name, as for the extractor
        ("authjs.session-tokens=abc", false),
        ("theme=dark", false),
        ("", false),
    ]

    @Test("strip_cookie recognises the session cookie and its chunks on bytes, like the extractor", arguments: sessionCookieCases)
    func sessionCookieNames(pair: String, expected: Bool) {
        let names = ["authjs.session-token", "__Secure-authjs.session-token"]
        #expect(ProxyHandler.isSessionCookie(pair.utf8, names: names) == expected, "\(pair.debugDescription)")
    }
}

@Suite("LocalResponse")
struct LocalResponseTests {
    static func parse(_ body: String) throws -> [String: Any] {
        let data = try #require(body.data(using: .utf8))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test(arguments: [
        "plain",
        #"say "hi""#,
        #"back\slash \" \\"#,
        "new\nline\rcarriage\ttab",
        "bell\u{7}nul\u{0}unit\u{1F}esc\u{1B}",
        "form\u{C}feed\u{8}backspace",
        "del\u{7F}",
        "unicode é ß 😀 \u{2028}\u{2029}",
        "</script><script>alert(1)</script>",
        #"{"injected":true}"#,
        "",
    ])
    func errorBodyEscapesAndRoundTrips(_ reason: String) throws {
        let body = LocalResponse.errorBody(error: "bad_\"request", reason: reason, requestID: "id\n1")
        #expect(!body.utf8.contains { $0 < 0x20 }, "no raw control character in \(body.debugDescription)")
        let json = try Self.parse(body)
        #expect(json["error"] as? String == "bad_\"request")
        #expect(json["reason"] as? String == reason)
        #expect(json["request_id"] as? String == "id\n1")
        #expect(json.count == 3)
    }

    @Test func errorBodyHasStableFieldOrder() {
        #expect(LocalResponse.errorBody(error: "e", reason: "r", requestID: "i") == #"{"error":"e","reason":"r","request_id":"i"}"#)
    }

    @Test func jsonResponseHeaders() {
        let (head, body) = LocalResponse.json(status: .badGateway, body: #"{"a":"é"}"#, requestID: "rid",
                                              extraHeaders: [("x-extra", "1")], close: true)
        #expect(head.status == .badGateway)
        #expect(head.version == .http1_1)
        #expect(head.headers["content-type"] == ["application/json"])
        #expect(head.headers["content-length"] == [String(#"{"a":"é"}"#.utf8.count)], "content-length counts bytes, not characters")
        #expect(head.headers["content-length"].first == String(body.readableBytes))
        #expect(head.headers["x-request-id"] == ["rid"])
        #expect(head.headers["cache-control"] == ["no-store"])
        #expect(head.headers["x-extra"] == ["1"])
        #expect(head.headers["connection"] == ["close"])
        let (open, _) = LocalResponse.json(status: .ok, body: "{}", requestID: "r", close: false)
        #expect(!open.headers.contains(name: "connection"))
    }

    @Test(arguments: VerificationCode.allCases)
    func unauthorizedCarriesTheCodeInChallengeAndBody(_ code: VerificationCode) throws {
        let (head, body) = LocalResponse.unauthorized(VerificationFailure(code, "a \"quoted\" reason"), realm: "my-api",
                                                      requestID: "rid", close: false)
        #expect(head.status == .unauthorized)
        #expect(head.headers["www-authenticate"] ==
                [#"Bearer realm="my-api", error="invalid_token", error_description="\#(code.rawValue)""#])
        let json = try Self.parse(String(buffer: body))
        #expect(json["error"] as? String == "invalid_token")
        #expect(json["reason"] as? String == code.rawValue, "the human reason never reaches the client")
        #expect(json["request_id"] as? String == "rid")
    }
}

/// The C-library replacements for what Foundation did (the executable links no Foundation).
@Suite("SystemIO")
struct SystemIOTests {
    @Test("durations in milliseconds with three places, as String(format: \"%.3f\") printed them", arguments: [
        (Int64(0), "0.000"), (1_000_000, "1.000"), (400, "0.000"), (500, "0.001"), (12_345_600, "12.346"),
        (999_999_600, "1000.000"), (326_400, "0.326"), (86_400_000_000_000, "86400000.000"), (-5, "0.000"),
    ])
    func milliseconds(nanoseconds: Int64, text: String) {
        var out: [UInt8] = []
        LogDigits.appendMilliseconds(nanoseconds: nanoseconds, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == text)
        if nanoseconds >= 0 {
            #expect(String(format: "%.3f", Double(nanoseconds / 1000 + (nanoseconds % 1000 >= 500 ? 1 : 0)) / 1000) == text,
                    "matches the format it replaced")
        }
    }

    @Test("integers and thousandths", arguments: [Int64(0), 7, 10, 99, 100, 1_795_463_491_695, -42, Int64.max, Int64.min + 1])
    func integers(value: Int64) {
        var out: [UInt8] = []
        LogDigits.appendInteger(value, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == String(value))
        out = []
        LogDigits.appendThousandths(value, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == (value < 0 ? "-" : "") + "\(value.magnitude / 1000)."
            + String(String(value.magnitude % 1000 + 1000).dropFirst()))
    }

    @Test("the wall clock is Unix time in seconds and milliseconds")
    func wallClock() {
        let now = SystemIO.wallClock()
        #expect(abs(now - Date().timeIntervalSince1970) < 5)
        #expect(abs(Double(SystemIO.wallClockMilliseconds()) / 1000 - now) < 5)
    }

    @Test("the environment is the process's, as Foundation reads it")
    func environment() {
        #expect(SystemIO.environment() == ProcessInfo.processInfo.environment)
    }

    static let cookieLines: [(String, ProxyHandler.CookieLine)] = [
        ("theme=dark; lang=en", .unchanged),
        ("authjs.session-token=abc", .empty),
        ("authjs.session-token.0=a; authjs.session-token.1=b", .empty),
        ("theme=dark; authjs.session-token=abc; lang=en", .rewritten("theme=dark; lang=en")),
        ("authjs.session-token=abc;theme=dark", .rewritten("theme=dark")),
        ("a=1;;__Secure-authjs.session-token.3=x; b=2", .rewritten("a=1;; b=2")),
        ("", .unchanged),
    ]

    @Test("strip_cookie keeps a Cookie line without a session cookie as it came, and rewrites or drops the others",
          arguments: cookieLines)
    func cookieLineWithoutSessionCookies(line: String, expected: ProxyHandler.CookieLine) {
        let names = ["authjs.session-token", "__Secure-authjs.session-token"]
        let got = Array(line.utf8).withUnsafeBytes { ProxyHandler.withoutSessionCookies($0, names: names) }
        #expect(got == expected, "\(line.debugDescription)")
    }

    /// The sidecar's own paths are matched byte for byte: a combining mark after the prefix does not hide it (as
    /// `hasPrefix`, comparing Characters, would), and nothing but the exact bytes matches.
    @Test("hasBytePrefix compares bytes", arguments: [
        ("/_sidecar/healthz", "/_sidecar", true), ("/_sidecar", "/_sidecar", true), ("/_sidecaR/x", "/_sidecar", false),
        ("/", "/_sidecar", false), ("/x", "", true), ("", "", true), ("/_sidecar\u{301}/x", "/_sidecar", true),
        ("/_sid\u{E9}car", "/_sid", true), ("/auth/check", "/auth/check?", false),
    ])
    func hasBytePrefix(_ s: String, _ prefix: String, _ expected: Bool) {
        #expect(HTTPScan.hasBytePrefix(s, Array(prefix.utf8)) == expected)
        #expect(HTTPScan.hasBytePrefix(s, Array(prefix.utf8)) == Array(s.utf8).starts(with: Array(prefix.utf8)))
    }
}

