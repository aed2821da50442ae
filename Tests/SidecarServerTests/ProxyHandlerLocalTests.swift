import AuthJSToken
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidecarCore
import Testing
@testable import SidecarServer

/// Answers `ProxyHandler` gives on its own, without an upstream: health, 401/400/403/413/431, CORS preflights,
/// forward auth, keep-alive and request ids. Every request here is decided before any upstream connection.
@Suite("ProxyHandler local answers")
struct ProxyHandlerLocalTests {
    // MARK: health

    @Test func healthzAnswers200JSON() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/healthz")
        #expect(r.status == .ok)
        #expect(r.header("content-type") == "application/json")
        #expect(r.header("content-length") == String(r.body.readableBytes))
        #expect(r.json?["status"] as? String == "ok")
        #expect(r.header("x-request-id")?.isGeneratedRequestID == true)
        #expect(r.header("connection") == nil)
        #expect(h.channel.isActive, "a keep-alive health check leaves the connection open")
    }

    @Test func healthzHeadHasNoBody() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.HEAD, "/_sidecar/healthz")
        #expect(r.status == .ok)
        #expect(r.body.readableBytes == 0)
        #expect(r.header("content-length") == String(#"{"status":"ok"}"#.utf8.count))
    }

    @Test func healthzWithQueryStringStillAnswers() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/healthz?probe=1")
        #expect(r.status == .ok)
    }

    // MARK: authentication

    @Test func missingTokenIs401WithChallengeAndJSON() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/api/orders")
        #expect(r.status == .unauthorized)
        let challenge = try #require(r.header("www-authenticate"))
        #expect(challenge.hasPrefix("Bearer "))
        #expect(challenge.contains(#"realm="authjs-sidecar""#))
        #expect(challenge.contains(#"error="invalid_token""#))
        #expect(challenge.contains(#"error_description="missing_token""#))
        #expect(r.header("content-type") == "application/json")
        #expect(r.header("cache-control") == "no-store")
        let json = try #require(r.json)
        #expect(json["error"] as? String == "invalid_token")
        #expect(json["reason"] as? String == "missing_token")
        let requestID = try #require(r.header("x-request-id"))
        #expect(requestID.isGeneratedRequestID)
        #expect(json["request_id"] as? String == requestID)
        #expect(h.channel.isActive, "a bodiless 401 keeps the connection")
    }

    @Test func expiredTokenIs401Expired() throws {
        let h = try ProxyHarness()
        let issued = ServerFixtures.nowSeconds - 7200
        let token = try ServerFixtures.token(issuedAt: issued, maxAge: 60)
        let r = try h.exchange(.GET, "/api/orders", headers: [("cookie", "\(ServerFixtures.cookieName)=\(token)")])
        #expect(r.status == .unauthorized)
        #expect(r.json?["reason"] as? String == "expired")
        #expect(r.header("www-authenticate")?.contains(#"error_description="expired""#) == true)
    }

    @Test func expiredBearerTokenIs401Expired() throws {
        let h = try ProxyHarness()
        let token = try ServerFixtures.token(issuedAt: ServerFixtures.nowSeconds - 7200, maxAge: 60)
        let r = try h.exchange(.GET, "/api/orders", headers: [("authorization", "Bearer \(token)")])
        #expect(r.status == .unauthorized)
        #expect(r.json?["reason"] as? String == "expired")
    }

    @Test func garbageTokenIs401Malformed() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/api/orders", headers: [("cookie", "\(ServerFixtures.cookieName)=not-a-jwt")])
        #expect(r.status == .unauthorized)
        #expect(r.json?["reason"] as? String == "malformed")
    }

    @Test func dotDotOutOfAPublicPrefixIs401() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/docs/../admin")
        #expect(r.status == .unauthorized)
        #expect(r.json?["reason"] as? String == "missing_token")
    }

    @Test func encodedDotDotOutOfAPublicPrefixIs401() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/docs/%2e%2e/admin")
        #expect(r.status == .unauthorized)
    }

    @Test(arguments: ["/docs%2fx", "/docs%2Fx", "/docs%5cx", "/docs/a%00b", "/docs\\..\\admin", "*", "http://evil.example/docs"])
    func unnormalisablePathIs400(_ target: String) throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, target)
        #expect(r.status == .badRequest)
        #expect(r.json?["error"] as? String == "bad_request")
        #expect(r.json?["request_id"] as? String == r.header("x-request-id"))
    }

    // MARK: size limits

    @Test func oversizedHeaderBlockIs431AndCloses() throws {
        let h = try ProxyHarness(["SIDECAR_MAX_HEADER_BYTES": "2048"])
        try h.sendHead(.GET, "/_sidecar/healthz", headers: [("x-filler", String(repeating: "a", count: 3000))])
        let r = try #require(try h.readResponse())
        #expect(r.ended)
        #expect(r.status == .requestHeaderFieldsTooLarge)
        #expect(r.header("connection") == "close")
        #expect(r.json?["error"] as? String == "request_header_fields_too_large")
        #expect(!h.channel.isActive, "the connection is closed after a 431")
    }

    @Test func headerBlockJustUnderTheLimitIsAccepted() throws {
        let h = try ProxyHarness(["SIDECAR_MAX_HEADER_BYTES": "2048"])
        let r = try h.exchange(.GET, "/_sidecar/healthz", headers: [("x-filler", String(repeating: "a", count: 1500))])
        #expect(r.status == .ok)
    }

    @Test func declaredBodyOverTheLimitIs413AndCloses() throws {
        let h = try ProxyHarness(["SIDECAR_MAX_BODY_BYTES": "1000"])
        let token = try ServerFixtures.token()
        try h.sendHead(.POST, "/api/upload", headers: [("content-length", "5000"), ("authorization", "Bearer \(token)")])
        let r = try #require(try h.readResponse())
        #expect(r.ended)
        #expect(r.status == .payloadTooLarge)
        #expect(r.header("connection") == "close")
        #expect(r.json?["error"] as? String == "payload_too_large")
        #expect(!h.channel.isActive, "the connection is closed after a 413")
    }

    // MARK: CORS

    @Test func preflightFromAllowedOriginIs204WithCORSHeaders() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.OPTIONS, "/api/orders", headers: [
            ("origin", ServerFixtures.allowedOrigin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization,content-type"),
        ])
        #expect(r.status == .noContent)
        #expect(r.body.readableBytes == 0)
        #expect(r.header("access-control-allow-origin") == ServerFixtures.allowedOrigin)
        #expect(r.header("access-control-allow-credentials") == "true")
        let methods = try #require(r.header("access-control-allow-methods"))
        #expect(methods.contains("POST"))
        let allowHeaders = try #require(r.header("access-control-allow-headers")).lowercased()
        #expect(allowHeaders.contains("authorization"))
        #expect(allowHeaders.contains("content-type"))
        #expect(r.header("access-control-max-age") == "600")
        #expect(r.header("x-request-id") != nil)
        #expect(r.headers.contains(name: "www-authenticate") == false, "preflights are answered before authentication")
    }

    @Test func preflightFromAnotherOriginIs403WithoutCORSHeaders() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.OPTIONS, "/api/orders", headers: [
            ("origin", "https://evil.example.com"),
            ("access-control-request-method", "POST"),
        ])
        #expect(r.status == .forbidden)
        #expect(r.accessControlHeaderNames.isEmpty, "got \(r.accessControlHeaderNames)")
        #expect(r.json?["error"] as? String == "cors_rejected")
    }

    @Test func actualRequestFromAllowedOriginGetsCORSHeadersOnThe401() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/api/orders", headers: [("origin", ServerFixtures.allowedOrigin)])
        #expect(r.status == .unauthorized)
        #expect(r.header("access-control-allow-origin") == ServerFixtures.allowedOrigin)
    }

    @Test func requestFromAnotherOriginGets401WithoutAllowOrigin() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/api/orders", headers: [("origin", "https://evil.example.com")])
        #expect(r.status == .unauthorized)
        #expect(r.header("access-control-allow-origin") == nil)
        #expect(r.headers["vary"].contains { $0.lowercased().contains("origin") })
    }

    /// CORS headers belong to one request: a later request on the same keep-alive connection (here a health check
    /// and a forward-auth check, which never set the field) must not inherit the previous request's
    /// `Access-Control-Allow-Origin`.
    @Test func corsHeadersDoNotLeakIntoTheNextLocalAnswerOnTheConnection() throws {
        let h = try ProxyHarness()
        let first = try h.exchange(.GET, "/api/orders", headers: [("origin", ServerFixtures.allowedOrigin)])
        #expect(first.header("access-control-allow-origin") == ServerFixtures.allowedOrigin)
        let health = try h.exchange(.GET, "/_sidecar/healthz")
        #expect(health.status == .ok)
        #expect(health.accessControlHeaderNames.isEmpty,
                "health answer without Origin inherited the previous request's CORS headers: \(health.accessControlHeaderNames)")
        let auth = try h.exchange(.GET, "/_sidecar/auth", headers: [("x-forwarded-uri", "/api/orders")])
        #expect(auth.status == .unauthorized)
        #expect(auth.accessControlHeaderNames.isEmpty,
                "forward-auth answer without Origin inherited the previous request's CORS headers: \(auth.accessControlHeaderNames)")
    }

    // MARK: forward auth

    @Test func forwardAuthWithValidBearerIs200WithIdentity() throws {
        let h = try ProxyHarness()
        let token = try ServerFixtures.token(sub: "user-42", email: "ada@example.com")
        let r = try h.exchange(.GET, "/_sidecar/auth", headers: [
            ("authorization", "Bearer \(token)"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/api/orders?page=2"),
        ])
        #expect(r.status == .ok)
        #expect(r.header("x-auth-sub") == "user-42")
        #expect(r.header("x-auth-email") == "ada@example.com")
        #expect(r.header("content-length") == "0")
        #expect(r.header("cache-control") == "no-store")
        #expect(r.body.readableBytes == 0)
        #expect(r.header("x-request-id") != nil)
    }

    @Test func forwardAuthWithValidCookieIs200() throws {
        let h = try ProxyHarness()
        let token = try ServerFixtures.token(sub: "cookie-user")
        let r = try h.exchange(.GET, "/_sidecar/auth", headers: [
            ("cookie", "theme=dark; \(ServerFixtures.cookieName)=\(token)"),
            ("x-original-uri", "/api/orders"),
        ])
        #expect(r.status == .ok)
        #expect(r.header("x-auth-sub") == "cookie-user")
    }

    @Test func forwardAuthWithoutTokenIs401() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/auth", headers: [("x-forwarded-uri", "/api/orders")])
        #expect(r.status == .unauthorized)
        #expect(r.header("www-authenticate") != nil)
        #expect(r.json?["reason"] as? String == "missing_token")
        #expect(r.header("x-auth-sub") == nil)
    }

    @Test func forwardAuthForAPublicURIIs200WithoutIdentity() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/auth", headers: [("x-forwarded-uri", "/docs/intro"), ("x-auth-sub", "spoofed")])
        #expect(r.status == .ok)
        #expect(r.header("x-auth-sub") == nil, "a client's own X-Auth-Sub is never echoed as identity")
    }

    @Test func forwardAuthWithBadForwardedURIIs400() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/auth", headers: [("x-forwarded-uri", "/docs%2f..%2fadmin")])
        #expect(r.status == .badRequest)
    }

    /// The decision must be about the request the proxy forwards as sent (found in review): a path the policy would
    /// read as another (`/secret/..;/docs` is `/docs` to the normaliser, but reaches the upstream as sent), or copies
    /// of the original URI or method that differ (a client's own `X-Forwarded-Uri` beside nginx's `X-Original-URI`),
    /// are refused — even on a public path.
    @Test(arguments: [
        [("x-forwarded-uri", "/secret/..;/docs")], [("x-forwarded-uri", "/secret/%2e%2e/docs")], [("x-original-uri", "/secret/.%2e/docs")],
        [("x-forwarded-uri", "/docs//x")], [("x-forwarded-uri", "/docs/./x?q=1")],
        [("x-original-uri", "/secret"), ("x-forwarded-uri", "/docs")], [("x-forwarded-uri", "/docs"), ("x-forwarded-uri", "/secret")],
        [("x-forwarded-uri", "/docs"), ("x-original-method", "GET"), ("x-forwarded-method", "DELETE")],
    ])
    func forwardAuthRefusesWhatTheProxyWouldForwardDifferently(_ headers: [(String, String)]) throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/auth", headers: headers)
        #expect(r.status == .badRequest, "\(headers)")
        #expect(r.header("x-auth-sub") == nil)
    }

    @Test func forwardAuthAcceptsAgreeingCopiesAndNormalPaths() throws {
        let h = try ProxyHarness()
        for headers in [[("x-original-uri", "/docs/a?x=../y"), ("x-forwarded-uri", "/docs/a?x=../y")], [("x-forwarded-uri", "/docs/a%20b")]] {
            #expect(try h.exchange(.GET, "/_sidecar/auth", headers: headers).status == .ok, "\(headers)")
        }
    }

    /// Off by default: without `forward_auth_path` the path is an ordinary (protected) one, never the endpoint whose
    /// 200 carries the decrypted claims.
    @Test func forwardAuthIsOffByDefault() throws {
        #expect(try ServerFixtures.config(["SIDECAR_FORWARD_AUTH_PATH": ""]).forwardAuthPath == "")
        let env = ServerFixtures.baseEnvironment.filter { $0.key != "SIDECAR_FORWARD_AUTH_PATH" }
        guard case .success(let config) = ConfigLoader.load(environment: env, flags: [:], configPath: nil, coreCount: 1) else {
            Issue.record("config did not load"); return
        }
        #expect(config.forwardAuthPath == "")
    }

    // MARK: keep-alive

    @Test func http10RequestGetsConnectionCloseAndIsClosed() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/healthz", version: .http1_0)
        #expect(r.status == .ok)
        #expect(r.header("connection") == "close")
        #expect(!h.channel.isActive)
    }

    @Test func connectionCloseRequestGetsConnectionClose() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/api/orders", headers: [("connection", "close")])
        #expect(r.status == .unauthorized)
        #expect(r.header("connection") == "close")
        #expect(r.headers["connection"].count == 1)
        #expect(!h.channel.isActive)
    }

    @Test func http10KeepAliveRequestIsNotClosed() throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/healthz", version: .http1_0, headers: [("connection", "keep-alive")])
        #expect(r.status == .ok)
        #expect(r.header("connection") != "close")
        #expect(h.channel.isActive)
    }

    @Test func localAnswerToARequestWithABodyAsksToClose() throws {
        let h = try ProxyHarness()
        try h.sendHead(.POST, "/api/orders", headers: [("content-length", "5")])
        let r = try #require(try h.readResponse())
        #expect(r.status == .unauthorized)
        #expect(r.header("connection") == "close", "the unread body makes the connection unusable for another request")
    }

    @Test func localAnswerToAZeroLengthBodyKeepsTheConnection() throws {
        let h = try ProxyHarness()
        try h.sendHead(.POST, "/api/orders", headers: [("content-length", "0")])
        try h.sendEnd()
        let r = try #require(try h.readResponse())
        #expect(r.status == .unauthorized)
        #expect(r.header("connection") == nil)
        #expect(h.channel.isActive)
    }

    // MARK: request ids

    @Test(arguments: ["abc-123", "A.b_C-9", String(repeating: "x", count: 128)])
    func wellFormedRequestIDIsKept(_ id: String) throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/api/orders", headers: [("x-request-id", id)])
        #expect(r.header("x-request-id") == id)
        #expect(r.json?["request_id"] as? String == id)
    }

    @Test(arguments: ["", "bad id", "quote\"d", "semi;colon", "ümlaut", String(repeating: "x", count: 129), "a\u{7F}b"])
    func malformedRequestIDIsReplaced(_ id: String) throws {
        let h = try ProxyHarness()
        let r = try h.exchange(.GET, "/_sidecar/healthz", headers: [("x-request-id", id)])
        let got = try #require(r.header("x-request-id"))
        #expect(got != id)
        #expect(got.isGeneratedRequestID)
    }

    // MARK: pipelining

    @Test func pipelinedLocalAnswersComeOutInOrder() throws {
        let h = try ProxyHarness(pipelining: true)
        // All three requests arrive before any answer is read.
        try h.send(.GET, "/_sidecar/healthz", headers: [("x-request-id", "req-1")])
        try h.send(.GET, "/api/orders", headers: [("x-request-id", "req-2")])
        try h.send(.GET, "/docs%2fx", headers: [("x-request-id", "req-3")])
        try h.send(.OPTIONS, "/api/orders", headers: [("x-request-id", "req-4"), ("origin", ServerFixtures.allowedOrigin),
                                                       ("access-control-request-method", "PUT")])
        var seen: [(String?, UInt)] = []
        while let r = try h.readResponse() {
            #expect(r.ended)
            seen.append((r.header("x-request-id"), r.status.code))
        }
        #expect(seen.map(\.0) == ["req-1", "req-2", "req-3", "req-4"])
        #expect(seen.map(\.1) == [200, 401, 400, 204])
        #expect(h.channel.isActive)
    }

    @Test func pipelinedConnectionCloseRequestIsAnsweredThenClosed() throws {
        let h = try ProxyHarness(pipelining: true)
        try h.send(.GET, "/_sidecar/healthz", headers: [("x-request-id", "first"), ("connection", "close")])
        let first = try #require(try h.readResponse())
        #expect(first.ended)
        #expect(first.header("x-request-id") == "first")
        #expect(first.header("connection") == "close")
        #expect(!h.channel.isActive)
        // (What happens to requests written after this point is not observable here: an EmbeddedChannel keeps
        // its handlers until its loop runs and accepts writes on a closed channel, unlike a socket channel.)
    }

    // MARK: metrics and head watch bookkeeping

    @Test func localAnswersAreCountedInTheLoopMetrics() throws {
        let h = try ProxyHarness()
        _ = try h.exchange(.GET, "/_sidecar/healthz")
        _ = try h.exchange(.GET, "/api/orders")
        _ = try h.exchange(.GET, "/api/orders")
        _ = try h.exchange(.GET, "/docs%2fx")
        let m = h.state.metrics
        #expect(m.requestCount("health", "2xx") == 1)
        #expect(m.requestCount("missing_token", "4xx") == 2)
        #expect(m.requestCount("bad_request", "4xx") == 1)
        #expect(m.histogramCount("authjs_sidecar_request_duration_seconds") == 4)
        #expect(m.histogramCount("authjs_sidecar_upstream_duration_seconds") == 0)
    }

    @Test func headWatchIsArmedAgainAfterALocalAnswer() throws {
        let h = try ProxyHarness()
        #expect(h.watch.awaitingHead)
        try h.sendHead(.GET, "/_sidecar/healthz")
        // The answer is written synchronously from the head, so the exchange is already finished.
        #expect(h.watch.awaitingHead)
        try h.sendEnd()
        _ = try h.readResponse()
        #expect(h.watch.awaitingHead)
    }
}
