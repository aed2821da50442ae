import AuthJSToken
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidecarCore
import Testing
@testable import SidecarServer

/// Shared fixtures for the SidecarServer tests: a validated config, a `ProxyContext` bound to an `EmbeddedEventLoop`,
/// and helpers that write request parts in and read response parts out. Nothing here ever reaches an upstream: the
/// pool points at a dummy address and no test sends a request that would be forwarded.
enum ServerFixtures {
    static let secret = "server-tests-secret-0123456789abcdef"
    static let allowedOrigin = "https://app.example.com"
    static let cookieName = "authjs.session-token"

    static let baseEnvironment: [String: String] = [
        "AUTH_SECRET": secret,
        "SIDECAR_UPSTREAM": "echo",
        "SIDECAR_PUBLIC_PATHS": "/docs",
        "SIDECAR_CORS_ORIGINS": allowedOrigin,
        "SIDECAR_ACCESS_LOG": "false",
        "SIDECAR_FORWARD_AUTH_PATH": "/_sidecar/auth",
    ]

    static func config(_ overrides: [String: String] = [:]) throws -> SidecarConfig {
        let env = baseEnvironment.merging(overrides) { _, new in new }
        switch ConfigLoader.load(environment: env, flags: [:], configPath: nil, coreCount: 1) {
        case .success(let config): return config
        case .failure(let issues):
            Issue.record("config did not load: \(issues.issues.map(\.description))")
            throw issues
        }
    }

    static let dummyUpstream: SocketAddress = try! SocketAddress(ipAddress: "127.0.0.1", port: 9)
    static let dummyClient: SocketAddress = try! SocketAddress(ipAddress: "192.0.2.10", port: 40000)

    static var nowSeconds: Int64 { Int64(Date().timeIntervalSince1970) }

    /// An Auth.js v5 session token for `sub`, issued at `issuedAt` and valid for `maxAge` seconds.
    static func token(sub: String = "user-42", email: String = "ada@example.com", issuedAt: Int64 = nowSeconds,
                      maxAge: Int64 = 3600) throws -> String {
        let claims = TokenMinter.stampClaims(JSONObject([("sub", .string(sub)), ("email", .string(email))]),
                                             now: issuedAt, maxAge: maxAge)
        return try TokenMinter.authjsV5(claims: claims, secret: secret, salt: cookieName)
    }

    static let silentLogger = Logger(label: "sidecar-server-tests") { _ in SwiftLogNoOpLogHandler() }
}

/// One decoded response read from the channel's outbound side.
struct CapturedResponse {
    var head: HTTPResponseHead
    var body: ByteBuffer
    var ended: Bool

    var status: HTTPResponseStatus { head.status }
    var headers: HTTPHeaders { head.headers }
    var bodyString: String { String(buffer: body) }

    /// The body parsed as a JSON object with Foundation (an independent parser).
    var json: [String: Any]? {
        guard let data = bodyString.data(using: .utf8) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    func header(_ name: String) -> String? { headers[name].first }
    var accessControlHeaderNames: [String] {
        headers.map(\.name).filter { $0.lowercased().hasPrefix("access-control-") }
    }
}

/// A `ProxyHandler` on an `EmbeddedChannel`; with `pipelining`, behind the real `ClientResponseEncoder` and
/// `PipeliningHandler` (the encoder reports each response's end to the pipelining handler), and responses are read
/// back from the wire bytes.
final class ProxyHarness {
    let loop: EmbeddedEventLoop
    let channel: EmbeddedChannel
    let watch: HeadWatch
    let state: LoopState
    let shared: ProxyContext
    let config: SidecarConfig
    /// Set when the encoder is in the pipeline: outbound data are wire bytes.
    private let wire: WireResponseReader?

    init(_ overrides: [String: String] = [:], pipelining: Bool = false) throws {
        let config = try ServerFixtures.config(overrides)
        self.config = config
        let loop = EmbeddedEventLoop()
        self.loop = loop
        let pool = UpstreamPool(eventLoop: loop, address: ServerFixtures.dummyUpstream, connectTimeout: .seconds(1))
        let state = LoopState(pool: pool, cacheCapacity: config.tokenCacheSize, metrics: SidecarMetrics())
        self.state = state
        self.shared = ProxyContext(config: config, loops: [ObjectIdentifier(loop): state], upstreamHost: "127.0.0.1:9",
                                   upstreamBasePath: "", logger: ServerFixtures.silentLogger)
        self.watch = HeadWatch()
        self.channel = EmbeddedChannel(loop: loop)
        let sync = channel.pipeline.syncOperations
        self.wire = pipelining ? WireResponseReader() : nil
        if pipelining {
            try sync.addHandler(ClientResponseEncoder(watch: watch))
            try sync.addHandler(PipeliningHandler(watch: watch, sendTimeout: shared.clientSendTimeout))
        }
        try sync.addHandler(ProxyHandler(shared: shared, watch: watch))
        try channel.connect(to: ServerFixtures.dummyClient).wait()
    }

    deinit {
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    func sendHead(_ method: HTTPMethod = .GET, _ uri: String, version: HTTPVersion = .http1_1,
                  headers: [(String, String)] = []) throws {
        var h = HTTPHeaders()
        if !headers.contains(where: { $0.0.lowercased() == "host" }) { h.add(name: "host", value: "sidecar.test") }
        for (n, v) in headers { h.add(name: n, value: v) }
        try channel.writeInbound(ClientRequestPart.head(ClientRequestHead(version: version, method: method, uri: uri, headers: h)))
    }

    func sendEnd() throws {
        try channel.writeInbound(ClientRequestPart.end(nil))
    }

    /// A complete request without a body.
    func send(_ method: HTTPMethod = .GET, _ uri: String, version: HTTPVersion = .http1_1, headers: [(String, String)] = []) throws {
        try sendHead(method, uri, version: version, headers: headers)
        try sendEnd()
    }

    /// Reads one response (head, bodies, end) from the outbound side; nil when nothing was written.
    func readResponse(sourceLocation: SourceLocation = #_sourceLocation) throws -> CapturedResponse? {
        if let wire {
            while var bytes = try channel.readOutbound(as: ByteBuffer.self) { wire.bytes.writeBuffer(&bytes) }
            return try wire.next(sourceLocation: sourceLocation)
        }
        guard let first = try channel.readOutbound(as: ClientResponsePart.self) else { return nil }
        let head: HTTPResponseHead
        switch first {
        case .head(let h): head = h
        case .relayedHead(let h): head = HTTPResponseHead(version: h.version, status: h.status, headers: HTTPHeaders(h.fields))
        case .relayedResponse(let h):
            // A whole response in one part.
            return CapturedResponse(head: HTTPResponseHead(version: h.version, status: h.status, headers: HTTPHeaders(h.fields)),
                                    body: h.body ?? ByteBuffer(), ended: true)
        default:
            Issue.record("first outbound part is not a head: \(first)", sourceLocation: sourceLocation)
            return nil
        }
        var response = CapturedResponse(head: head, body: ByteBuffer(), ended: false)
        while let part = try channel.readOutbound(as: ClientResponsePart.self) {
            switch part {
            case .head, .relayedHead, .relayedResponse:
                Issue.record("second head before end: \(part)", sourceLocation: sourceLocation)
                return response
            case .body(.byteBuffer(var b)): response.body.writeBuffer(&b)
            case .body(.fileRegion): Issue.record("unexpected file region", sourceLocation: sourceLocation)
            case .end:
                response.ended = true
                return response
            }
        }
        return response
    }

    /// Sends a complete request and returns the one response it produced.
    func exchange(_ method: HTTPMethod = .GET, _ uri: String, version: HTTPVersion = .http1_1, headers: [(String, String)] = [],
                  sourceLocation: SourceLocation = #_sourceLocation) throws -> CapturedResponse {
        try send(method, uri, version: version, headers: headers)
        let response = try #require(try readResponse(sourceLocation: sourceLocation), sourceLocation: sourceLocation)
        #expect(response.ended, "response did not end", sourceLocation: sourceLocation)
        return response
    }
}

extension String {
    /// 32 lower-case hex characters: a request id the sidecar made itself.
    var isGeneratedRequestID: Bool {
        utf8.count == 32 && utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// Splits HTTP/1.1 response bytes (as `ClientResponseEncoder` writes them) back into responses: a head, then a body
/// framed by `Content-Length` or chunked. Works on bytes (in a Swift string, CR LF is one Character). Enough for the
/// local answers the pipelining tests read.
final class WireResponseReader {
    var bytes = ByteBuffer()

    func next(sourceLocation: SourceLocation) throws -> CapturedResponse? {
        let all = Array(bytes.readableBytesView)
        guard !all.isEmpty else { return nil }
        let crlf: [UInt8] = [13, 10]
        func find(_ needle: [UInt8], from: Int) -> Int? {
            guard all.count >= needle.count else { return nil }
            var i = from
            while i + needle.count <= all.count {
                if Array(all[i..<i + needle.count]) == needle { return i }
                i += 1
            }
            return nil
        }
        guard let headEnd = find(crlf + crlf, from: 0) else {
            Issue.record("incomplete response head: \(String(decoding: all, as: UTF8.self))", sourceLocation: sourceLocation)
            return nil
        }
        let lines = String(decoding: all[..<headEnd], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let status = lines[0].split(separator: " ", maxSplits: 2)
        guard status.count >= 2, let code = Int(status[1]) else {
            Issue.record("bad status line: \(lines[0])", sourceLocation: sourceLocation)
            return nil
        }
        var headers = HTTPHeaders()
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.add(name: String(line[..<colon]), value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var at = headEnd + 4
        var body: [UInt8] = []
        var ended = false
        if let length = headers["content-length"].first.flatMap(Int.init) {
            if all.count - at >= length {
                body = Array(all[at..<at + length])
                at += length
                ended = true
            }
        } else if headers["transfer-encoding"].first == "chunked" {
            while let sizeEnd = find(crlf, from: at),
                  let size = Int(String(decoding: all[at..<sizeEnd], as: UTF8.self), radix: 16),
                  all.count - (sizeEnd + 2) >= size + 2 {
                body += all[(sizeEnd + 2)..<(sizeEnd + 2 + size)]
                at = sizeEnd + 2 + size + 2
                if size == 0 { ended = true; break }
            }
        } else {
            ended = true
        }
        bytes = ByteBuffer(bytes: all[at...])
        let version: HTTPVersion = status[0] == "HTTP/1.0" ? .http1_0 : .http1_1
        return CapturedResponse(head: HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: code), headers: headers),
                                body: ByteBuffer(bytes: body), ended: ended)
    }
}
