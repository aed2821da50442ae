import AuthJSToken
import Logging
import NIOCore
import NIOHTTP1
import SidecarCore

/// Everything a connection's handler shares with its siblings on the same event loop; built once at start-up.
final class ProxyContext: @unchecked Sendable {
    let config: SidecarConfig
    let policy: AccessPolicy
    let loops: [ObjectIdentifier: LoopState]
    let upstreamHost: String
    let upstreamBasePath: String
    let logger: Logger
    let accessLog: AccessLog
    /// Normalised identity header names that do not start with `x-auth-` (those are always stripped); usually empty.
    let customOwnedNames: Set<String>
    let upstreamTimeout: TimeAmount
    let clientBodyTimeout: TimeAmount
    let clientSendTimeout: TimeAmount
    let tunnelIdleTimeout: TimeAmount
    let corsEnabled: Bool
    /// Read per response; a stored Bool because reaching it through `config.cors` copies the whole policy struct.
    let replaceUpstreamCORS: Bool
    /// The session cookie names (chunks are `name.N`), for `strip_cookie`.
    let sessionCookieNames: [String]
    /// The config values read per request, held here: reading one through `config` copied the whole struct (a retain
    /// and release of every reference it holds, ~700 instructions per request).
    let maxHeaderBytes: Int
    let maxBodyBytes: Int
    let healthPrefix: String
    let forwardAuthPath: String
    /// The two as bytes, for the per-request prefix test.
    let healthPrefixBytes: [UInt8]
    let forwardAuthPathBytes: [UInt8]
    let stripCookie: Bool
    let stripAuthorization: Bool
    let cors: CORSPolicy

    init(config: SidecarConfig, loops: [ObjectIdentifier: LoopState], upstreamHost: String, upstreamBasePath: String, logger: Logger) {
        self.config = config
        self.policy = AccessPolicy(config)
        self.loops = loops
        self.upstreamHost = upstreamHost
        self.upstreamBasePath = upstreamBasePath
        self.logger = logger
        self.accessLog = AccessLog(logger: logger, format: config.logFormat, enabled: config.accessLog)
        self.customOwnedNames = config.identity.ownedNames.filter { !$0.hasPrefix("x-auth-") }
        self.upstreamTimeout = .milliseconds(Int64(config.upstreamTimeout * 1000))
        self.clientBodyTimeout = .milliseconds(Int64(config.clientBodyTimeout * 1000))
        self.clientSendTimeout = .milliseconds(Int64(config.clientSendTimeout * 1000))
        self.tunnelIdleTimeout = .milliseconds(Int64(config.tunnelIdleTimeout * 1000))
        self.sessionCookieNames = config.authenticator.extractor.cookies.map(\.name)
        self.corsEnabled = config.cors.isEnabled
        self.replaceUpstreamCORS = config.cors.config.replaceUpstreamHeaders
        self.maxHeaderBytes = config.maxHeaderBytes
        self.maxBodyBytes = config.maxBodyBytes
        self.healthPrefix = config.healthPrefix
        self.forwardAuthPath = config.forwardAuthPath
        self.healthPrefixBytes = Array(config.healthPrefix.utf8)
        self.forwardAuthPathBytes = Array(config.forwardAuthPath.utf8)
        self.stripCookie = config.stripCookie
        self.stripAuthorization = config.stripAuthorization
        self.cors = config.cors
    }

    func loopState(for loop: EventLoop) -> LoopState { loops[ObjectIdentifier(loop)]! }
}

/// Authenticates each request and relays it to the upstream: strips spoofable identity headers, decides
/// synchronously on the event loop, injects claims, and streams both bodies with backpressure.
///
/// **`@exclusivity(unchecked)`** marks the per-request state of the client and upstream handlers (here, in
/// ``Exchange``, ``UpstreamHandler``, ``PipeliningHandler``, ``ClientRequestDecoder``, ``UpstreamPool`` and
/// ``LoopState``): each such property is touched only on its event loop, and every access to it is a plain load or
/// store, or a mutating call on a value type whose code calls nothing outside itself (a parser, an array, the token
/// cache) — so no access can begin while another is under way, and the run-time check (one `swift_beginAccess`, ~60
/// instructions, ~2 k per request over these properties) could never fire. A property whose mutating access reaches
/// the pipeline (a write, a flush, a `fire…`), where a handler could call back, keeps the check (`UpstreamHandler`'s
/// request framing). Every other property in the project keeps it too.
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamDelegate {
    typealias InboundIn = ClientRequestPart
    typealias OutboundIn = ClientResponsePart
    typealias OutboundOut = ClientResponsePart

    /// One request/response exchange.
    final class Exchange {
        let requestID: String
        let method: HTTPMethod
        let path: String
        let start: NIODeadline
        @exclusivity(unchecked) var upstream: UpstreamConnection?
        @exclusivity(unchecked) var buffered: [UpstreamRequestPart] = []
        @exclusivity(unchecked) var requestEnded = false
        @exclusivity(unchecked) var responseStarted = false
        @exclusivity(unchecked) var bodyBytes = 0
        @exclusivity(unchecked) var outcome: String
        @exclusivity(unchecked) var status: UInt = 0
        @exclusivity(unchecked) var upstreamStart: NIODeadline?
        @exclusivity(unchecked) var keepUpstream = true
        @exclusivity(unchecked) var clientKeepAlive = true
        /// The client spoke HTTP/1.0: its response is HTTP/1.0, never chunked (RFC 9112 §6.1), and ends with a close
        /// when nothing else delimits the body.
        @exclusivity(unchecked) var clientHTTP10 = false
        @exclusivity(unchecked) var isUpgrade = false
        /// The upstream head, kept for one retry while the request is idempotent and has no body.
        @exclusivity(unchecked) var replayHead: UpstreamRequestHead?
        /// The upstream connection came from the idle pool (and so may have been closed by the upstream meanwhile).
        @exclusivity(unchecked) var reusedConnection = false
        /// The request has no body and its upstream head is not chunked (``UpstreamRequestFraming``), so
        /// its `.end` puts no byte on the wire and is not sent through the upstream pipeline at all.
        @exclusivity(unchecked) var upstreamEndIsEmpty = false
        /// Upstream reads are paused because the client is not taking the response: the exchange's deadline is then
        /// the client's (`client_send_timeout`), not the upstream's.
        @exclusivity(unchecked) var relayPaused = false
        /// The relayed response head, and its first body part if small, not yet written: if the response's `.end`
        /// comes in the same upstream read, the whole response goes to the client as one part (one pass through the
        /// pipeline, one buffer); otherwise they are written at the read's end.
        @exclusivity(unchecked) var heldHead: RelayedResponseHead?
        @exclusivity(unchecked) var heldBody: ByteBuffer?
        var isHead: Bool { method.isHEAD }

        init(requestID: String, method: HTTPMethod, path: String, outcome: String) {
            self.requestID = requestID
            self.method = method
            self.path = path
            self.start = .now()
            self.outcome = outcome
        }
    }

    enum State {
        case idle
        /// Answered locally; the rest of the request body is dropped.
        case discarding(closeAfter: Bool)
        case proxying(Exchange)
    }

    private let shared: ProxyContext
    private let watch: HeadWatch
    @exclusivity(unchecked) private var loop: LoopState!
    @exclusivity(unchecked) private var state: State = .idle
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var readPaused = false
    /// Output shut after a final answer; remaining input is dropped until the close.
    @exclusivity(unchecked) private var lingering = false
    /// The connection's last answer is being written: a request pipelined behind it (which the pipelining handler
    /// may deliver while that answer is written) is not served — it was forwarded upstream and its answer lost, and
    /// a client told `Connection: close` sends it again (found in review).
    @exclusivity(unchecked) private var lastAnswerWritten = false
    /// A parse error was answered and the connection is closing: the decoder may report more errors for the bytes
    /// after it (at end of input it decodes what is left), and they get no second answer.
    @exclusivity(unchecked) private var parseErrorAnswered = false
    @exclusivity(unchecked) private var pendingRead = false
    private var remoteIP = "unknown"
    /// The upstream head's lines that are the same for every request on this connection — `Host` (the upstream's),
    /// `X-Forwarded-For` (this client) and `X-Forwarded-Proto` — in wire form, made once.
    @exclusivity(unchecked) private var connectionLines: [UInt8] = []
    /// The field ranges of the client's head forwarded upstream, and of the upstream's head relayed to the client:
    /// arrays reused from one request to the next (``HTTPScan/ReusedRanges``).
    @exclusivity(unchecked) private var keptRequestRanges = HTTPScan.ReusedRanges()
    @exclusivity(unchecked) private var keptResponseRanges = HTTPScan.ReusedRanges()
    /// The upstream request heads' buffer, reused once the previous head is written and its exchange over.
    @exclusivity(unchecked) private var requestHeadBuffer = HTTPScan.ReusedBuffer()
    /// CORS fields for every response to the current request (the upstream's and the sidecar's own).
    @exclusivity(unchecked) private var corsHeaders: [(String, String)] = []
    /// The current request's W3C trace context, for its access-log line (the headers themselves pass through).
    @exclusivity(unchecked) private var trace: AccessLog.Trace?
    /// The current exchange's one deadline, per connection: the upstream's (`upstream_timeout`: for its response head
    /// once it has the whole request or while it takes no more of the body, then between reads of a response that
    /// continues) or, while the client is not taking the response, the client's (`client_send_timeout`). While the
    /// client is still sending the body (``HeadWatch/readingBody``), its own body deadline runs instead, so a stalled
    /// client is a 408, never an upstream's 504.
    /// Holds this handler strongly (a weak reference would move every retain of the handler to the slow side-table
    /// path); `handlerRemoved` breaks the cycle.
    @exclusivity(unchecked) private var upstreamTimer: DeadlineTimer?
    /// Response parts relayed from the upstream and not yet flushed to the client.
    @exclusivity(unchecked) private var responseUnflushed = false

    init(shared: ProxyContext, watch: HeadWatch) {
        self.shared = shared
        self.watch = watch
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        upstreamTimer = DeadlineTimer(eventLoop: context.eventLoop) { self.upstreamTimerExpired() }
        self.loop = shared.loopState(for: context.eventLoop)
        if let ip = context.channel.remoteAddress?.ipAddress { remoteIP = ip }
        connectionLines = Array("host: \(shared.upstreamHost)\r\nx-forwarded-for: \(remoteIP)\r\nx-forwarded-proto: http\r\n".utf8)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        upstreamTimer?.cancel()
        upstreamTimer = nil
    }

    /// The exchange made no progress in time: no response head (504), a response that stopped coming, or a client
    /// that stopped reading it (both cut: the client must see an aborted response, never a short one).
    private func upstreamTimerExpired() {
        guard case .proxying(let exchange) = state, exchange.upstream != nil else { return }
        if exchange.relayPaused {
            failExchange(exchange, status: nil, code: "client_send_timeout")  // it is not reading: no answer reaches it
        } else {
            failExchange(exchange, status: .gatewayTimeout, code: "upstream_timeout")
        }
    }

    /// Stops or restarts reading the upstream's response as the client's side fills and drains; the exchange's
    /// deadline follows whose turn it is.
    private func setRelayPaused(_ paused: Bool, _ exchange: Exchange) {
        guard paused != exchange.relayPaused, let upstream = exchange.upstream else { return }
        exchange.relayPaused = paused
        upstream.handler.setPaused(paused)
        upstreamTimer?.arm(in: paused ? shared.clientSendTimeout : shared.upstreamTimeout)
    }

    // MARK: inbound from the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if lingering || lastAnswerWritten { return }  // the last answer is out (or going): input is only drained
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiveHead(head, context: context)
            // A whole request's `.end` is folded into its head (``ClientRequestDecoder``); an answer that started
            // lingering meanwhile drops it, as it would have dropped the part.
            if head.isWhole, !lingering, !lastAnswerWritten { receiveEnd(nil, context: context) }
        case .body(let buffer): receiveBody(buffer, context: context)
        case .end(let trailers): receiveEnd(trailers, context: context)
        }
    }

    private func receiveHead(_ head: ClientRequestHead, context: ChannelHandlerContext) {
        watch.headArrived()
        watch.answeringHead = head.method.isHEAD
        corsHeaders = []
        let fields = RequestHeadFields.read(head)
        trace = shared.accessLog.enabled && fields.traceparent != nil
            ? AccessLog.Trace(traceparent: fields.traceparent, tracestate: fields.tracestate) : nil
        let requestID = RequestID.from(fields.requestID, generator: &loop.requestIDs)

        // Header block size (431) before any other work.
        let headerBytes = head.uri.utf8.count + fields.headerBytes
        let hasBody = fields.hasBody
        if hasBody { watch.bodyStarted(timeout: shared.clientBodyTimeout) }
        if headerBytes > shared.maxHeaderBytes {
            respondLocally(LocalResponse.json(status: .requestHeaderFieldsTooLarge,
                                              body: LocalResponse.errorBody(error: "request_header_fields_too_large", reason: "header block over \(shared.maxHeaderBytes) bytes", requestID: requestID),
                                              requestID: requestID, close: true), head: head, outcome: "header_too_large", requestID: requestID, hasBody: true, drainBody: false)
            return
        }
        if !Self.hasValidHost(fields, version: head.version) {
            respondLocally(LocalResponse.json(status: .badRequest, body: LocalResponse.errorBody(error: "bad_request", reason: "an HTTP/1.1 request needs exactly one valid Host header", requestID: requestID),
                                              requestID: requestID, close: true), head: head, outcome: "bad_request", requestID: requestID, hasBody: hasBody)
            return
        }
        // A reverse proxy never tunnels (CONNECT: the bytes after it would be a second, unchecked stream) and never
        // reflects requests (TRACE would echo cookies and Authorization back to a script).
        if head.method.isCONNECT || head.method.isTRACE {
            var response = LocalResponse.json(status: .methodNotAllowed,
                                              body: LocalResponse.errorBody(error: "method_not_allowed", reason: "\(head.method.rawValue) is not proxied", requestID: requestID),
                                              requestID: requestID, close: true)
            response.0.headers.add(name: "allow", value: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
            respondLocally(response, head: head, outcome: "method_not_allowed", requestID: requestID, hasBody: true, drainBody: false)
            return
        }
        if let declared = fields.contentLength.flatMap(Int.init), shared.maxBodyBytes > 0, declared > shared.maxBodyBytes {
            respondLocally(payloadTooLarge(requestID, close: true), head: head, outcome: "body_too_large", requestID: requestID, hasBody: true, drainBody: false)
            return
        }

        // Health endpoints, without auth.
        // The sidecar's own paths, compared on bytes (never Characters: a combining mark could fuse with `/` or `?`).
        let uri = head.uri.utf8
        let ownPath = HTTPScan.hasBytePrefix(head.uri, shared.healthPrefixBytes)
            || (!shared.forwardAuthPathBytes.isEmpty && HTTPScan.hasBytePrefix(head.uri, shared.forwardAuthPathBytes))
        let pathOnly = ownPath ? String(head.uri[..<(uri.firstIndex(of: UInt8(ascii: "?")) ?? uri.endIndex)]) : ""
        if ownPath, pathOnly.utf8.starts(with: (shared.healthPrefix + "/").utf8), head.method.isGET || head.method.isHEAD {
            let tail = String(decoding: pathOnly.utf8.dropFirst(shared.healthPrefix.utf8.count), as: UTF8.self)
            if tail.utf8.elementsEqual("/healthz".utf8) {
                respondLocally(LocalResponse.json(status: .ok, body: #"{"status":"ok"}"#, requestID: requestID, close: false),
                               head: head, outcome: "health", requestID: requestID, hasBody: hasBody)
                return
            }
            if tail.utf8.elementsEqual("/readyz".utf8) {
                readiness(head: head, requestID: requestID, hasBody: hasBody, context: context)
                return
            }
        }

        if ownPath, !shared.forwardAuthPath.isEmpty, pathOnly.utf8.elementsEqual(shared.forwardAuthPath.utf8) {
            forwardAuth(head: head, fields: fields, requestID: requestID, hasBody: hasBody)
            return
        }

        // CORS before authentication: browsers send preflights without credentials.
        var originAllowedByCORS = false
        if shared.corsEnabled {
            switch shared.cors.evaluate(method: head.method.rawValue, origin: fields.origin, requestMethod: fields.corsRequestMethod,
                                 requestHeaders: fields.corsRequestHeaders,
                                 requestPrivateNetwork: fields.corsRequestPrivateNetwork?.lowercased() == "true") {
            case .preflight(let headers):
                var h = HTTPHeaders(headers)
                h.add(name: "content-length", value: "0")
                h.add(name: "x-request-id", value: requestID)
                respondLocally((HTTPResponseHead(version: .http1_1, status: .noContent, headers: h), ByteBuffer()), head: head,
                               outcome: "preflight", requestID: requestID, hasBody: hasBody)
                return
            case .rejectPreflight(let reason):
                respondLocally(LocalResponse.json(status: .forbidden, body: LocalResponse.errorBody(error: "cors_rejected", reason: reason, requestID: requestID),
                                                  requestID: requestID, close: hasBody), head: head, outcome: "cors_rejected", requestID: requestID, hasBody: hasBody)
                return
            case .preflightPassthrough:
                // Anonymous (a preflight carries no credentials), but the same normalised origin-form path as every
                // forwarded request: the raw target went up as sent — `*`, absolute-form, `%2F` (found in review).
                guard let (path, query) = PathNormalizer.normalize(target: head.uri) else {
                    deny(.badRequest("request target is not a normalisable origin-form path"), head: head, requestID: requestID, hasBody: hasBody)
                    return
                }
                forward(head, fields, path: query.map { path + "?" + $0 } ?? path, session: nil, outcome: "preflight", requestID: requestID,
                        context: context)
                return
            case .actual(let headers):
                corsHeaders = headers
                originAllowedByCORS = true
            case .notCORS, .disallowedOrigin:
                if let vary = shared.cors.cacheVary { corsHeaders = [vary] }
            }
        }

        // Browsers apply no CORS to WebSockets and send the session cookie with an upgrade from any same-site page:
        // an upgrade from an origin that is neither this host nor an allowed CORS origin would get an authenticated
        // channel (cross-site WebSocket hijacking; found in review). Refused, as gorilla/websocket's default
        // `CheckOrigin` and Django Channels' `AllowedHostsOriginValidator` refuse it.
        if head.isUpgrade, let origin = fields.origin, !originAllowedByCORS, !Self.origin(origin, isHost: fields.host) {
            respondLocally(LocalResponse.json(status: .forbidden,
                                              body: LocalResponse.errorBody(error: "origin_rejected", reason: "WebSocket upgrade from an origin that is neither this host nor an allowed CORS origin", requestID: requestID),
                                              requestID: requestID, close: true),
                           head: head, outcome: "origin_rejected", requestID: requestID, hasBody: hasBody)
            return
        }

        let authorization = fields.authorization  // read out: the closure capturing `fields` copied it
        let decision = fields.withCookie(in: head) { cookie in
            shared.policy.decide(method: head.method.rawValue, target: head.uri, cookie: cookie, authorization: authorization,
                                 now: SystemIO.wallClock(), cache: &loop.cache)
        }
        switch decision {
        case .forward(let path, let session, let outcome):
            forward(head, fields, path: path, session: session, outcome: outcome, requestID: requestID, context: context)
        case .unauthorized, .forbidden, .badRequest:
            deny(decision, head: head, requestID: requestID, hasBody: hasBody)
        }
    }

    private func forward(_ head: ClientRequestHead, _ fields: RequestHeadFields, path: String, session: VerifiedTokenCache.Entry?,
                         outcome: String, requestID: String, context: ChannelHandlerContext) {
        if let session {
            for name in session.dropped {
                shared.logger.warning("identity header dropped: value over the size cap", metadata: ["header": "\(name)", "request_id": "\(requestID)"])
            }
        }
        let upstreamHead = forwardedHead(head, fields, path: path, identityLines: session?.headerLines ?? [], requestID: requestID)
        let exchange = Exchange(requestID: requestID, method: head.method, path: path, outcome: outcome)
        exchange.clientKeepAlive = head.isKeepAlive
        exchange.clientHTTP10 = head.version == .http1_0
        exchange.isUpgrade = Self.isUpgrade(head, fields)
        upstreamHead.wantsUpgrade = exchange.isUpgrade
        // An upstream connection that was asked to upgrade and answered otherwise is not reused: a server may read the
        // bytes after such a request as the other protocol's (llhttp-based ones mark the connection upgraded).
        if exchange.isUpgrade { exchange.keepUpstream = false }
        exchange.upstreamEndIsEmpty = Self.upstreamEndIsEmpty(head.method, fields)
        if !exchange.isUpgrade, Self.isRetryable(head.method, fields) { exchange.replayHead = upstreamHead }
        state = .proxying(exchange)
        // HTTP/1.1 only: an HTTP/1.0 client knows no 100 (RFC 9110 §10.1.1: the expectation is ignored).
        if fields.expectsContinue, head.version.minor >= 1 {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        connectUpstream(exchange, head: upstreamHead, context: context)
    }

    /// Accounting for one finished exchange: the access-log line and this loop's metrics.
    private func finish(requestID: String, method: String, path: String, status: UInt, outcome: String, start: NIODeadline, upstreamStart: NIODeadline?) {
        let now = NIODeadline.now()
        loop.metrics.record(status: status, outcome: outcome, nanoseconds: (now - start).nanoseconds,
                            upstreamNanoseconds: upstreamStart.map { (now - $0).nanoseconds })
        if shared.accessLog.enabled {
            let log = shared.accessLog, trace = self.trace
            loop.accessLines.append { out in
                log.write(requestID: requestID, method: method, path: path, status: status, outcome: outcome, start: start,
                          upstreamStart: upstreamStart, trace: trace, into: &out)
            }
        }
    }

    /// Idempotent (RFC 9110 §9.2.2) and without a body: safe to send again when a reused connection fails before
    /// any response byte.
    static func isRetryable(_ method: HTTPMethod, _ fields: RequestHeadFields) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .DELETE, .PUT: break
        default: return false
        }
        if fields.hasTransferEncoding { return false }
        return fields.contentLengthCount == 0 || (fields.contentLengthCount == 1 && fields.contentLength == "0")
    }

    /// No body (no `Transfer-Encoding`, `Content-Length` absent or 0), and not a POST/PUT/PATCH without a length —
    /// those get `Transfer-Encoding: chunked` upstream and so need their terminating chunk.
    static func upstreamEndIsEmpty(_ method: HTTPMethod, _ fields: RequestHeadFields) -> Bool {
        guard !fields.hasBody, !fields.hasTransferEncoding else { return false }
        switch method {
        case .POST, .PUT, .PATCH: return fields.contentLengthCount > 0
        default: return true
        }
    }

    static func isUpgrade(_ head: ClientRequestHead, _ fields: RequestHeadFields) -> Bool {
        head.isUpgrade && fields.upgrade != nil
    }

    /// `GET <forward_auth_path>` for nginx `auth_request`, Traefik ForwardAuth and Caddy `forward_auth`: the original
    /// method and URI come from `X-Forwarded-Method`/`X-Forwarded-Uri` (or nginx's `X-Original-*`); 200 carries the
    /// identity headers, 401/403 the usual JSON.
    ///
    /// Refused (400) where the decision could be about another request than the one the proxy forwards (found in
    /// review): differing copies of those fields — nginx's `auth_request` passes the client's own fields along, so a
    /// client could add `X-Forwarded-Uri: /docs` beside the `X-Original-URI` nginx set; and a path not in normal form —
    /// here nothing rewrites the request, so the upstream gets `/secret/..;/docs` as sent while the policy would
    /// decide on `/docs`.
    private func forwardAuth(head: ClientRequestHead, fields: RequestHeadFields, requestID: String, hasBody: Bool) {
        let methods = head.values("x-forwarded-method") + head.values("x-original-method")
        let uris = head.values("x-forwarded-uri") + head.values("x-original-uri")
        func agree(_ values: [String]) -> Bool { values.allSatisfy { $0.utf8.elementsEqual(values[0].utf8) } }
        guard agree(methods), agree(uris) else {
            deny(.badRequest("X-Forwarded-Method/X-Original-Method or X-Forwarded-Uri/X-Original-URI copies differ"), head: head,
                 requestID: requestID, hasBody: hasBody)
            return
        }
        let method = methods.first ?? "GET"
        let uri = uris.first ?? "/"
        let rawPath = uri.utf8.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false).first ?? Substring(uri).utf8
        guard let normal = PathNormalizer.normalize(target: uri), normal.path.utf8.elementsEqual(rawPath) else {
            deny(.badRequest("the original URI's path is not in normal form (the upstream would get it as sent)"), head: head,
                 requestID: requestID, hasBody: hasBody)
            return
        }
        let decision = fields.withCookie(in: head) { cookie in
            shared.policy.decide(method: method, target: uri, cookie: cookie, authorization: fields.authorization,
                                 now: SystemIO.wallClock(), cache: &loop.cache)
        }
        switch decision {
        case .forward(_, let session, let outcome):
            let identity = session?.headers ?? []
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "0")
            headers.add(name: "x-request-id", value: requestID)
            headers.add(name: "cache-control", value: "no-store")
            for (n, v) in identity { headers.add(name: n, value: v) }
            respondLocally((HTTPResponseHead(version: .http1_1, status: .ok, headers: headers), ByteBuffer()), head: head,
                           outcome: outcome, requestID: requestID, hasBody: hasBody)
        case .unauthorized, .forbidden, .badRequest:
            deny(decision, head: head, requestID: requestID, hasBody: hasBody)
        }
    }

    /// The 401/403/400 answers of a decision, with their stable codes as the logged outcome.
    private func deny(_ decision: AccessDecision, head: ClientRequestHead, requestID: String, hasBody: Bool) {
        let response: (HTTPResponseHead, ByteBuffer)
        let outcome: String
        switch decision {
        case .unauthorized(let failure):
            response = LocalResponse.unauthorized(failure, realm: shared.config.realm, requestID: requestID, close: hasBody)
            outcome = failure.code.rawValue
        case .forbidden(let requirement):
            response = LocalResponse.json(status: .forbidden, body: LocalResponse.errorBody(error: "insufficient_claims", reason: requirement.description, requestID: requestID),
                                          requestID: requestID, close: hasBody)
            outcome = "insufficient_claims"
        case .badRequest(let reason):
            response = LocalResponse.json(status: .badRequest, body: LocalResponse.errorBody(error: "bad_request", reason: reason, requestID: requestID),
                                          requestID: requestID, close: hasBody)
            outcome = "bad_request"
        case .forward:
            return
        }
        respondLocally(response, head: head, outcome: outcome, requestID: requestID, hasBody: hasBody)
    }

    /// After `101 Switching Protocols`: both pipelines drop their HTTP handlers and a glued pair relays raw bytes,
    /// until either side closes or no byte has crossed for `tunnel_idle_timeout`.
    /// Decoders go last so bytes already read past the 101 flow into the glue — and each only once the other side's
    /// HTTP handlers are gone.
    private func spliceUpgraded(_ exchange: Exchange, upstream: UpstreamConnection, context: ChannelHandlerContext) {
        let (client, server) = GlueHandler.matchedPair(idleTimeout: shared.tunnelIdleTimeout)
        do {
            let down = context.pipeline.syncOperations
            let up = upstream.channel.pipeline.syncOperations
            try down.addHandler(client)
            try up.addHandler(server)
            upstream.handler.delegate = nil
            func remove<H: ChannelHandler>(_ ops: ChannelPipeline.SynchronousOperations, _ type: H.Type) throws {
                ops.removeHandler(context: try ops.context(handlerType: type), promise: nil)
            }
            // Each side's HTTP handlers go before the other side's decoder, whose removal hands its leftover bytes
            // to the glue: the upstream's first frames read with the 101 were relayed into the client's response
            // encoder, still in place, which trapped on them — the process crashed (found in review).
            try remove(down, ClientTimeoutsHandler.self)
            try remove(down, PipeliningHandler.self)
            try remove(down, ClientResponseEncoder.self)
            try remove(up, UpstreamHandler.self)
            down.removeHandler(context: context, promise: nil)
            try remove(down, ClientRequestDecoder.self)
        } catch {
            shared.logger.warning("websocket splice failed", metadata: ["request_id": "\(exchange.requestID)", "error": "\(error)"])
            upstream.channel.close(promise: nil)
            context.close(promise: nil)
        }
    }

    /// How long a refused request's remaining input is read and dropped after the answer (see `writeEndAndClose`).
    static let lingerTime = TimeAmount.milliseconds(500)

    /// Writes `.end`, then closes. While the client may still be sending (a body the sidecar refused or stopped
    /// reading), the close lingers as nginx's `lingering_close` does: output is shut first, and input is read and
    /// dropped until the client closes or `lingerTime` passes. Closing with unread input sends a RST, which can
    /// destroy the answer in the client's receive buffer before it is read.
    private func writeEndAndClose(_ context: ChannelHandlerContext, last: ClientResponsePart = .end(nil), linger: Bool) {
        lastAnswerWritten = true
        context.writeAndFlush(wrapOutboundOut(last)).assumeIsolated().whenComplete { result in
            guard let context = self.context else { return }
            guard linger, case .success = result else {
                context.close(promise: nil)
                return
            }
            self.lingering = true
            self.resumeReads(if: true)
            let halfClosed = context.eventLoop.makePromise(of: Void.self)
            context.close(mode: .output, promise: halfClosed)
            halfClosed.futureResult.assumeIsolated().whenComplete { result in
                guard case .success = result else { self.context?.close(promise: nil); return }
                context.eventLoop.assumeIsolated().scheduleTask(in: Self.lingerTime) { self.context?.close(promise: nil) }
            }
        }
    }

    /// The origin (`scheme://host[:port]`, as browsers serialise it) names the request's own `Host`, ASCII
    /// case-insensitively; a `Host` with the scheme's default port written out matches the origin without it.
    static func origin(_ origin: String, isHost host: String?) -> Bool {
        guard let host, !host.isEmpty else { return false }
        func lowered(_ text: String) -> [UInt8] { text.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 } }
        let o = lowered(origin)
        let https = Array("https://".utf8), http = Array("http://".utf8)
        let authority: ArraySlice<UInt8>, defaultPort: [UInt8]
        if o.starts(with: https) {
            (authority, defaultPort) = (o[https.count...], Array(":443".utf8))
        } else if o.starts(with: http) {
            (authority, defaultPort) = (o[http.count...], Array(":80".utf8))
        } else {
            return false
        }
        var target = lowered(host)[...]
        if target.count > defaultPort.count, target.suffix(defaultPort.count).elementsEqual(defaultPort),
           !authority.suffix(defaultPort.count).elementsEqual(defaultPort) {
            target = target.dropLast(defaultPort.count)
        }
        return !authority.isEmpty && authority.elementsEqual(target)
    }

    /// A `close` token in the fields' `Connection` values, split as the parser splits them.
    static func endsConnection(_ fields: HTTPHeaders) -> Bool {
        fields["connection"].contains { value in
            var close = false
            var value = value
            value.withUTF8 { HTTPScan.forEachToken(UnsafeRawBufferPointer($0)) { if HTTPScan.equalsLowercase($0, "close") { close = true } } }
            return close
        }
    }

    /// Request trailers pass through only when they cannot carry identity or routing: the same names the head loses
    /// (identity, forwarding, request id, hop-by-hop, framing) are dropped here too, so a chunked trailer is never a
    /// back door for `X-Auth-*`.
    private func sanitizedTrailers(_ trailers: HTTPHeaders) -> HTTPHeaders? {
        var kept = HTTPHeaders()
        for (name, value) in trailers {
            switch HeaderClass.of(name) {
            case .other:
                if shared.customOwnedNames.isEmpty || !shared.customOwnedNames.contains(HeaderName.normalized(name)) {
                    kept.add(name: name, value: value)
                }
            default: continue
            }
        }
        return kept.isEmpty ? nil : kept
    }

    /// Response trailers reach the client without the hop-by-hop fields RFC 9110 §7.6.1 names (`Connection`, `Keep-Alive`,
    /// `TE`, `Upgrade`, …); unlike the relayed head, not also without the names its `Connection` field lists. Framing
    /// fields never get this far (the parser refuses them).
    static func relayableTrailers(_ trailers: HTTPHeaders) -> HTTPHeaders? {
        var kept = HTTPHeaders()
        for (name, value) in trailers where HeaderClass.of(name) != .hopByHop { kept.add(name: name, value: value) }
        return kept.isEmpty ? nil : kept
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host, and a valid one.
    static func hasValidHost(_ fields: RequestHeadFields, version: HTTPVersion) -> Bool {
        if version.major == 1 && version.minor == 0 && fields.hostCount == 0 { return true }
        guard fields.hostCount == 1, var host = fields.host else { return false }
        return hostBytes.withUnsafeBufferPointer { table in host.withUTF8 { $0.allSatisfy { table[Int($0)] } } }
    }

    /// The bytes of RFC 3986 `host [":" port]`: unreserved, sub-delims, `:`, `[`, `]` and `%` (a table: this runs
    /// for every request).
    private static let hostBytes: [Bool] = (0..<256).map { i in
        let b = UInt8(i)
        return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-._~:[]%!$&'()*+,;=".utf8.contains(b)
    }

    private func payloadTooLarge(_ requestID: String, close: Bool) -> (HTTPResponseHead, ByteBuffer) {
        LocalResponse.json(status: .payloadTooLarge,
                           body: LocalResponse.errorBody(error: "payload_too_large", reason: "request body over \(shared.maxBodyBytes) bytes", requestID: requestID),
                           requestID: requestID, close: close)
    }

    /// Rewrites the client's head for the upstream in one pass over its field lines, copying the ones it keeps from
    /// the client's bytes (no string per field).
    private func forwardedHead(_ head: ClientRequestHead, _ fields: RequestHeadFields, path: String, identityLines: [UInt8],
                               requestID: String) -> UpstreamRequestHead {
        // Names listed in `Connection` are hop-by-hop too (rare: most clients send none or `keep-alive`) — but never
        // the framing the sidecar forwards the body by: `Connection: content-length` dropped the length while the body
        // still went upstream unframed, where the upstream read it as the next request (smuggling; found in review).
        // A set: one look-up per field, however many tokens the client lists.
        let connectionTokens: Set<String> = fields.connection.isEmpty ? []
            : Set(HeaderName.connectionTokens(fields.connection).lazy.filter { $0 != "upgrade" && !HeaderName.isFraming($0) })
        let customOwned = shared.customOwnedNames
        let stripCookie = shared.stripCookie, stripAuthorization = shared.stripAuthorization
        let cookieNames = shared.sessionCookieNames
        // TRACE is answered locally; were it forwarded, it would go without framing fields, as NIO's encoder sends it.
        let dropLength = head.method.isTRACE
        var kept = keptRequestRanges.take()
        // The proxy's own lines that vary (rare: a rewritten cookie, chunked framing, an upgrade); no array is made
        // unless one is added.
        var added: [(String, String)] = []
        var host: FieldRange?
        // Once a `Cookie` line is rewritten (it goes out among the added lines), later ones follow it there: the
        // cookies keep their order.
        var cookieRewritten = false
        head.withBytes { bytes in
            for range in head.fields {
                let rawName = range.name(in: bytes)
                let name = UnsafeBufferPointer(start: rawName.baseAddress?.assumingMemoryBound(to: UInt8.self), count: rawName.count)
                switch HeaderClass.of(bytes: name) {
                case .hopByHop, .forwarding, .requestID, .expect, .identity, .transferEncoding: continue
                case .host:
                    // The client's Host goes on as `X-Forwarded-Host`, copied from its bytes (`hasValidHost` checked them).
                    if host == nil { host = range }
                    continue
                case .cookie where stripCookie:
                    switch Self.withoutSessionCookies(range.value(in: bytes), names: cookieNames) {
                    case .unchanged where cookieRewritten: added.append(("cookie", String(decoding: range.value(in: bytes), as: UTF8.self)))
                    case .unchanged: kept.append(range)
                    case .rewritten(let others): added.append(("cookie", others)); cookieRewritten = true
                    case .empty: break
                    }
                    continue
                case .authorization where stripAuthorization && range.value(in: bytes).starts(with: "Bearer ".utf8): continue
                default:
                    if dropLength, HTTPScan.equalsLowercase(rawName, "content-length") { continue }
                    if !customOwned.isEmpty || !connectionTokens.isEmpty {
                        let text = String(decoding: rawName, as: UTF8.self)
                        if !customOwned.isEmpty, customOwned.contains(HeaderName.normalized(text)) { continue }
                        if !connectionTokens.isEmpty, connectionTokens.contains(HeaderName.lowercased(text)) { continue }
                    }
                    kept.append(range)
                }
            }
        }
        let chunked = Self.upstreamIsChunked(head.method, fields)
        if chunked { added.append(("transfer-encoding", "chunked")) }
        if Self.isUpgrade(head, fields), let upgrade = fields.upgrade {
            added.append(("connection", "upgrade"))
            added.append(("upgrade", upgrade))
        }
        var buffer = requestHeadBuffer.take()
        let upstreamHead = UpstreamRequestEncoder.serialize(method: head.method, uri: shared.upstreamBasePath + path, client: head, kept: kept,
                                                            added: added, connectionLines: connectionLines, forwardedHost: host,
                                                            requestID: requestID, identityLines: identityLines, chunked: chunked,
                                                            into: &buffer)
        keptRequestRanges.keep(kept)
        requestHeadBuffer.keep(buffer)
        return upstreamHead
    }

    /// The body goes upstream chunked, as NIO's request encoder frames the client's fields (the parser lets through at
    /// most one `Content-Length`, or `Transfer-Encoding: chunked`, never both): a POST, PUT or PATCH without a length
    /// goes chunked; any other method only when the client's body was.
    static func upstreamIsChunked(_ method: HTTPMethod, _ fields: RequestHeadFields) -> Bool {
        switch method {
        case .TRACE: return false
        case .POST, .PUT, .PATCH: return fields.contentLengthCount == 0
        default: return fields.contentLengthCount == 0 && fields.hasTransferEncoding
        }
    }

    enum CookieLine: Equatable {
        /// No session cookie in it: forwarded as it came.
        case unchanged
        /// The other cookies, joined with `;` as they were.
        case rewritten(String)
        /// Nothing but session cookies.
        case empty
    }

    /// A `Cookie` value without the session cookie and its chunks (`name`, `name.N`), split and compared on bytes
    /// like ``SessionTokenExtractor`` (never Characters: `;` followed by a combining mark is one Character).
    static func withoutSessionCookies(_ value: UnsafeRawBufferPointer, names: [String]) -> CookieLine {
        var kept: [Range<Int>] = []
        var removed = false
        var start = 0
        while true {
            let end = value[start...].firstIndex(of: UInt8(ascii: ";")) ?? value.count
            if isSessionCookie(value[start..<end], names: names) { removed = true } else { kept.append(start..<end) }
            if end == value.count { break }
            start = end + 1
        }
        guard removed else { return .unchanged }
        guard !kept.isEmpty else { return .empty }
        var joined: [UInt8] = []
        joined.reserveCapacity(value.count)
        for (i, range) in kept.enumerated() {
            if i > 0 { joined.append(UInt8(ascii: ";")) }
            joined.append(contentsOf: value[range])
        }
        return .rewritten(String(decoding: joined, as: UTF8.self))
    }

    /// The pair's name (before `=`, OWS trimmed) is one of `names` or one of their chunks `name.<digits>`.
    static func isSessionCookie<Pair: BidirectionalCollection<UInt8>>(_ pair: Pair, names: [String]) -> Bool {
        var name = pair[...]
        if let eq = name.firstIndex(of: UInt8(ascii: "=")) { name = name[..<eq] }
        while let b = name.first, b == 0x20 || b == 0x09 { name = name.dropFirst() }
        while let b = name.last, b == 0x20 || b == 0x09 { name = name.dropLast() }
        for cookie in names {
            let c = cookie.utf8
            guard name.starts(with: c) else { continue }
            let rest = name.dropFirst(c.count)
            if rest.isEmpty { return true }
            if rest.first == UInt8(ascii: "."), rest.dropFirst().allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return true }
        }
        return false
    }

    /// Takes an idle keep-alive connection synchronously when there is one (no read pause, no epoll change);
    /// otherwise pauses client reads until a new connection is up.
    private func connectUpstream(_ exchange: Exchange, head: UpstreamRequestHead, context: ChannelHandlerContext) {
        exchange.upstreamStart = .now()
        if let connection = loop.pool.takeIdle() {
            // The common case sends the head at once: nothing is buffered (no array per request).
            exchange.reusedConnection = true
            attach(connection, to: exchange, sending: head)
            return
        }
        exchange.buffered.append(.head(head))
        connectFresh(exchange, context: context)
    }

    /// A new upstream connection for `exchange`; client reads wait until it is up.
    private func connectFresh(_ exchange: Exchange, context: ChannelHandlerContext) {
        let pool = loop.pool
        pauseReads()
        pool.connect().assumeIsolated().whenComplete { result in
            guard case .proxying(let current) = self.state, current === exchange else {
                if case .success(let c) = result { pool.release(c) }
                return
            }
            switch result {
            case .failure(let error):
                let timedOut = (error as? ChannelError) == .connectTimeout(pool.connectTimeout)
                self.failExchange(exchange, status: timedOut ? .gatewayTimeout : .badGateway,
                                  code: timedOut ? "upstream_connect_timeout" : "upstream_unreachable")
            case .success(let connection):
                self.attach(connection, to: exchange)
                self.resumeReads(if: connection.channel.isWritable)
            }
        }
    }

    /// Sends `head` (when given) and whatever was buffered while connecting, then flushes once.
    private func attach(_ connection: UpstreamConnection, to exchange: Exchange, sending head: UpstreamRequestHead? = nil) {
        exchange.upstream = connection
        connection.handler.delegate = self
        if let head { connection.handler.send(.head(head)) }
        if !exchange.buffered.isEmpty {
            for part in exchange.buffered { connection.handler.send(part) }
            exchange.buffered.removeAll()
        }
        connection.handler.flush()
        // The upstream's turn once it has the whole request; while the client still sends the body, the client's.
        if !watch.readingBody { upstreamTimer?.arm(in: shared.upstreamTimeout) }
    }

    private func receiveBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        switch state {
        case .idle, .discarding: return
        case .proxying(let exchange):
            exchange.bodyBytes += buffer.readableBytes
            let limit = shared.maxBodyBytes
            if limit > 0, exchange.bodyBytes > limit {
                exchange.keepUpstream = false
                if !exchange.responseStarted {
                    exchange.upstream?.handler.delegate = nil
                    exchange.upstream?.channel.close(promise: nil)
                    exchange.upstream = nil
                    let (head, body) = payloadTooLarge(exchange.requestID, close: true)
                    exchange.status = 413
                    exchange.outcome = "body_too_large"
                    finishLocally(exchange, head: head, body: body, close: true)
                } else {
                    context.close(promise: nil)
                }
                return
            }
            let part = UpstreamRequestPart.body(.byteBuffer(buffer))
            if let upstream = exchange.upstream {
                upstream.handler.send(part)
                if !upstream.channel.isWritable {
                    // The upstream takes no more of the body: its turn (and not the client's) until it does.
                    pauseReads()
                    if !exchange.responseStarted { upstreamTimer?.arm(in: shared.upstreamTimeout) }
                }
            } else {
                exchange.buffered.append(part)
            }
        }
    }

    private func receiveEnd(_ trailers: HTTPHeaders?, context: ChannelHandlerContext) {
        let bodyWasPending = watch.readingBody
        watch.bodyEnded()
        // `Connection: close` in the trailers ends the connection too (the parser reads nothing after it, as llhttp):
        // the answer says so, rather than leaving the connection to idle until its timeout.
        let trailersClose = trailers.map(Self.endsConnection) ?? false
        switch state {
        case .idle: return
        case .discarding(let closeAfter):
            state = .idle
            watch.exchangeFinished()
            if closeAfter || trailersClose {
                lastAnswerWritten = true  // a request read after this one in the same read is not served
                context.close(promise: nil)
            }
        case .proxying(let exchange):
            exchange.requestEnded = true
            if trailersClose { exchange.clientKeepAlive = false }
            if bodyWasPending, exchange.upstream != nil, !exchange.responseStarted {
                // The request is whole: the upstream's turn, counted from here (a slow upload is not a 504).
                upstreamTimer?.arm(in: shared.upstreamTimeout)
            }
            if exchange.upstreamEndIsEmpty, trailers == nil { return }
            let end = UpstreamRequestPart.end(trailers.flatMap(sanitizedTrailers))
            if let upstream = exchange.upstream {
                upstream.handler.send(end)
            } else {
                exchange.buffered.append(end)
            }
        }
    }

    // MARK: local answers

    /// Answers from the sidecar itself. With a request body still to come, the exchange ends at the request's `.end`
    /// (the body is drained, then the connection closes if asked): closing with unread bytes would make the kernel
    /// reset the connection and the client could lose the answer. Size-limit answers (`drainBody: false`) close at once.
    private func respondLocally(_ response: (HTTPResponseHead, ByteBuffer), head: ClientRequestHead, outcome: String, requestID: String,
                                hasBody: Bool, drainBody: Bool = true) {
        guard let context else { return }
        var responseHead = response.0
        for (n, v) in corsHeaders { responseHead.headers.add(name: n, value: v) }
        if !head.isKeepAlive, !responseHead.headers.contains(name: "connection") { responseHead.headers.add(name: "connection", value: "close") }
        let client = ExchangeEnding.afterLocalAnswer(bodyPending: hasBody, closeRequested: responseHead.headers["connection"].contains("close"),
                                                     sizeLimit: !drainBody)
        finish(requestID: requestID, method: head.method.rawValue, path: head.uri, status: responseHead.status.code,
               outcome: outcome, start: .now(), upstreamStart: nil)
        // State first: writing `.end` lets the pipeline handler deliver the next pipelined request synchronously.
        switch client {
        case .keepAlive, .close: state = .idle; watch.exchangeFinished()
        case .drainThenKeepAlive: state = .discarding(closeAfter: false)
        case .drainThenClose: state = .discarding(closeAfter: true)
        }
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if !head.method.isHEAD { context.write(wrapOutboundOut(.body(.byteBuffer(response.1))), promise: nil) }
        if client == .close {
            writeEndAndClose(context, linger: hasBody)
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func readiness(head: ClientRequestHead, requestID: String, hasBody: Bool, context: ChannelHandlerContext) {
        pauseReads()
        let pool = loop.pool
        // A new connection, not a pooled idle one: an idle connection said nothing about an upstream that has
        // stopped listening since (found in review: ready three times, then a 504). It joins the pool after.
        pool.connect().assumeIsolated().whenComplete { result in
            self.resumeReads(if: true)
            let ready: Bool
            if case .success(let connection) = result { pool.release(connection); ready = true } else { ready = false }
            self.respondLocally(LocalResponse.json(status: ready ? .ok : .serviceUnavailable,
                                                   body: ready ? #"{"status":"ready"}"# : #"{"status":"upstream_unreachable"}"#,
                                                   requestID: requestID, close: false),
                                head: head, outcome: "health", requestID: requestID, hasBody: hasBody)
        }
    }

    /// Ends an exchange with a sidecar error (502/504, 408 for a stalled body), or closes the connection if the
    /// response already started or no answer can reach the client (`status` nil).
    private func failExchange(_ exchange: Exchange, status: HTTPResponseStatus?, code: String) {
        upstreamTimer?.disarm()
        if exchange.heldHead != nil {
            // The failure came in the same upstream read as the response head, which was held back and never
            // written: nothing reached the client, so it still gets a whole answer (the 502), not a cut.
            exchange.heldHead = nil
            exchange.heldBody = nil
            exchange.responseStarted = false
        }
        exchange.upstream?.handler.delegate = nil
        exchange.upstream?.channel.close(promise: nil)
        exchange.upstream = nil
        exchange.outcome = code
        guard let status, !exchange.responseStarted else {
            // Mid-response: the client must see an aborted response, never a silently short one.
            exchange.status = 0
            finish(requestID: exchange.requestID, method: exchange.method.rawValue, path: exchange.path, status: 0,
                                    outcome: code, start: exchange.start, upstreamStart: exchange.upstreamStart)
            state = .idle
            context?.close(promise: nil)
            return
        }
        let error = switch status {
        case .gatewayTimeout: "gateway_timeout"
        case .requestTimeout: "request_timeout"
        default: "bad_gateway"
        }
        let (head, body) = LocalResponse.json(status: status, body: LocalResponse.errorBody(error: error, reason: code, requestID: exchange.requestID),
                                              requestID: exchange.requestID, close: !exchange.requestEnded)
        exchange.status = status.code
        finishLocally(exchange, head: head, body: body, close: !exchange.requestEnded)
    }

    private func finishLocally(_ exchange: Exchange, head: HTTPResponseHead, body: ByteBuffer, close: Bool) {
        guard let context else { return }
        upstreamTimer?.disarm()
        var head = head
        for (n, v) in corsHeaders { head.headers.add(name: n, value: v) }
        let close = close || !exchange.clientKeepAlive
        if close, !head.headers.contains(name: "connection") { head.headers.add(name: "connection", value: "close") }
        finish(requestID: exchange.requestID, method: exchange.method.rawValue, path: exchange.path, status: head.status.code,
                                outcome: exchange.outcome, start: exchange.start, upstreamStart: exchange.upstreamStart)
        state = exchange.requestEnded || close ? .idle : .discarding(closeAfter: false)
        if exchange.requestEnded { watch.exchangeFinished() }
        resumeReads(if: true)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !exchange.isHead { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        if close {
            writeEndAndClose(context, linger: !exchange.requestEnded)
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    // MARK: UpstreamDelegate

    func upstreamRead(_ event: UpstreamResponseEvent) {
        guard case .proxying(let exchange) = state, let context else { return }
        switch event {
        case .head(let head):
            // Interim 1xx responses (103 Early Hints) never come here: the parser consumes them; a 101 only answers an
            // upgrade request.
            // The upstream answered; a client that is not reading keeps its send deadline.
            if !exchange.relayPaused { upstreamTimer?.disarm() }
            exchange.responseStarted = true
            exchange.status = head.status.code
            if !head.keepAlive { exchange.keepUpstream = false }
            // The upstream's fields stay bytes: each name is classified in place and the kept ones are copied to the
            // client as they came (no `String` per field; the parser validated every byte).
            let switching = exchange.isUpgrade && head.status == .switchingProtocols
            let replaceCORS = !corsHeaders.isEmpty && shared.replaceUpstreamCORS
            var kept = keptResponseRanges.take()
            var hasRequestID = false
            // `Connection` values, collected in the same pass: the names they list are hop-by-hop too, and are
            // removed afterwards (rare: upstreams send none, `keep-alive` or `close` — recognised in place), which
            // spares every response a look-up by name.
            var connectionValues: [String] = []
            head.block.withUnsafeReadableBytes { raw in
                guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
                for range in head.fieldRanges {
                    let name = UnsafeBufferPointer(start: base + Int(range.nameStart), count: Int(range.nameCount))
                    if replaceCORS && CORSPolicy.isOwnedResponseHeader(bytes: name) { continue }
                    let kind = HeaderClass.of(bytes: name)
                    if kind == .hopByHop {
                        if name.count == 10, HeaderClass.equalsLower(name, "connection") {
                            let value = UnsafeBufferPointer(start: base + Int(range.valueStart), count: Int(range.valueCount))
                            if !HeaderName.isFramingOnly(bytes: value) { connectionValues.append(String(decoding: value, as: UTF8.self)) }
                        }
                        if switching { kept.append(range) }
                        continue
                    }
                    // The upstream's own id, by its exact name (`X_Request_Id` is relayed, but is no id: the
                    // sidecar's is added).
                    if kind == .requestID, HeaderClass.equalsLower(name, "x-request-id") { hasRequestID = true }
                    kept.append(range)
                }
            }
            if !connectionValues.isEmpty {
                // Never the framing the response is relayed by (`Connection: content-length` would leave the client a
                // body without its length); a set, so a long list costs one look-up per field.
                let listed = Set(HeaderName.connectionTokens(connectionValues).lazy.filter { !HeaderName.isFraming($0) })
                if !listed.isEmpty {
                    kept.removeAll { range in
                        let name = range.name(in: head.block)
                        return HeaderClass.of(name) != .hopByHop && listed.contains(HeaderName.lowercased(name))
                    }
                    hasRequestID = kept.contains { HeaderClass.of($0.name(in: head.block)) == .requestID
                        && HeaderName.equalsIgnoringCase($0.name(in: head.block), "x-request-id") }
                }
            }
            // Nothing added but the request id is the common case: no array is made for it.
            var added: [(String, String)] = []
            var version = HTTPVersion.http1_1
            if exchange.clientHTTP10 {
                // No chunked coding for an HTTP/1.0 client: without a Content-Length the body ends with the
                // connection; with one, keep-alive must be said explicitly.
                version = .http1_0
                let code = head.status.code
                let bodiless = exchange.isHead || (code >= 100 && code < 200) || code == 204 || code == 304
                if !bodiless && !head.hasContentLength { exchange.clientKeepAlive = false }
                if exchange.clientKeepAlive { added.append(("connection", "keep-alive")) }
            }
            // (A 101 keeps the upstream's `Connection: upgrade`; the upgrade request's head said close only for the
            // answers that end it.)
            if !exchange.clientKeepAlive && !switching { added.append(("connection", "close")) }
            if !corsHeaders.isEmpty { added.append(contentsOf: corsHeaders) }
            let relayed = RelayedResponseHead(version: version, status: head.status, block: head.block, kept: kept,
                                              requestID: hasRequestID ? nil : exchange.requestID, added: added)
            keptResponseRanges.keep(kept)
            if switching {
                context.write(wrapOutboundOut(.relayedHead(relayed)), promise: nil)
            } else {
                exchange.heldHead = relayed
            }
            responseUnflushed = true
        case .body(let buffer):
            responseUnflushed = true
            if exchange.heldHead != nil, exchange.heldBody == nil, buffer.readableBytes <= Self.maxHeldBody {
                exchange.heldBody = buffer
                return
            }
            writeHeld(exchange, context: context)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable { setRelayPaused(true, exchange) }
        case .end(let upstreamTrailers):
            upstreamTimer?.disarm()
            responseUnflushed = false  // flushed with the `.end` below
            let trailers = upstreamTrailers.flatMap(Self.relayableTrailers)
            if exchange.isUpgrade, exchange.status == 101, let upstream = exchange.upstream {
                writeHeld(exchange, context: context)
                exchange.upstream = nil
                finish(requestID: exchange.requestID, method: exchange.method.rawValue, path: exchange.path, status: 101,
                                        outcome: exchange.outcome, start: exchange.start, upstreamStart: exchange.upstreamStart)
                state = .idle
                // 101 is informational to NIO's encoder: no `.end` follows it; the raw relay takes over.
                context.flush()
                spliceUpgraded(exchange, upstream: upstream, context: context)
                return
            }
            if let upstream = exchange.upstream, !upstream.handler.connectionReusable { exchange.keepUpstream = false }
            let ending = ExchangeEnding.afterUpstreamResponse(requestEnded: exchange.requestEnded, clientKeepAlive: exchange.clientKeepAlive,
                                                              upstreamKeepAlive: exchange.keepUpstream)
            if let upstream = exchange.upstream {
                exchange.upstream = nil
                upstream.handler.setPaused(false)
                if ending.reuseUpstream {
                    loop.pool.release(upstream)
                } else {
                    upstream.handler.delegate = nil
                    upstream.channel.close(promise: nil)
                }
            }
            finish(requestID: exchange.requestID, method: exchange.method.rawValue, path: exchange.path, status: exchange.status,
                                    outcome: exchange.outcome, start: exchange.start, upstreamStart: exchange.upstreamStart)
            // State first: writing `.end` lets the pipeline handler deliver the next pipelined request synchronously.
            state = exchange.requestEnded ? .idle : .discarding(closeAfter: true)
            if exchange.requestEnded { watch.exchangeFinished() }
            resumeReads(if: true)
            let last: ClientResponsePart
            if let head = exchange.heldHead {
                // The whole response came in this read: one part.
                head.body = exchange.heldBody
                head.trailers = trailers
                last = .relayedResponse(head)
                exchange.heldHead = nil
                exchange.heldBody = nil
            } else {
                last = .end(trailers)
            }
            if ending.client == .close {
                writeEndAndClose(context, last: last, linger: !exchange.requestEnded)
            } else {
                context.writeAndFlush(wrapOutboundOut(last), promise: nil)
            }
        }
    }

    /// One flush per upstream read burst, not per body part.
    /// Skipped when the burst ended the response (its `.end` is written and flushed at once): an empty flush still
    /// walks the outbound pipeline to the socket.
    func upstreamReadComplete() {
        guard responseUnflushed, let context else { return }
        responseUnflushed = false
        // The response continues in a later read (a response read whole has disarmed the deadline at its `.end`).
        if case .proxying(let exchange) = state {
            writeHeld(exchange, context: context)
            if !exchange.relayPaused {
                if !context.channel.isWritable {
                    setRelayPaused(true, exchange)
                } else {
                    upstreamTimer?.arm(in: shared.upstreamTimeout)
                }
            }
        }
        context.flush()
    }

    /// A held response head fits its first body part in the same buffer up to this size; a larger part is written
    /// on its own (not copied).
    static let maxHeldBody = 16 * 1024

    /// Writes the held response head and body part, if any (not flushed).
    private func writeHeld(_ exchange: Exchange, context: ChannelHandlerContext) {
        guard let head = exchange.heldHead else { return }
        exchange.heldHead = nil
        context.write(wrapOutboundOut(.relayedHead(head)), promise: nil)
        if let body = exchange.heldBody {
            exchange.heldBody = nil
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
    }

    func upstreamClosed() {
        guard case .proxying(let exchange) = state, exchange.upstream != nil else { return }
        if retryOnFreshConnection(exchange) { return }
        failExchange(exchange, status: .badGateway, code: "upstream_closed")
    }

    func upstreamError(_ error: Error) {
        guard case .proxying(let exchange) = state, exchange.upstream != nil else { return }
        if error is IOError, retryOnFreshConnection(exchange) { return }
        failExchange(exchange, status: .badGateway, code: "upstream_protocol_error")
    }

    /// A pooled connection can be closed by the upstream just as it is reused (keep-alive timeouts race: uvicorn
    /// closes idle connections after 5 s), failing before any response byte. Like nginx's `proxy_next_upstream
    /// error`, an idempotent bodiless request is then sent once more, on a new connection; anything else gets the 502.
    private func retryOnFreshConnection(_ exchange: Exchange) -> Bool {
        guard exchange.reusedConnection, !exchange.responseStarted, let head = exchange.replayHead, let context else { return false }
        exchange.replayHead = nil
        exchange.reusedConnection = false
        upstreamTimer?.disarm()
        exchange.upstream?.handler.delegate = nil
        exchange.upstream?.channel.close(promise: nil)
        exchange.upstream = nil
        exchange.buffered = [.head(head)]
        if exchange.requestEnded { exchange.buffered.append(.end(nil)) }
        loop.upstreamRetries += 1
        connectFresh(exchange, context: context)
        return true
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        guard writable else { return }
        resumeReads(if: true)
        // Taking the body again: back to the client's turn.
        if case .proxying(let exchange) = state, watch.readingBody, !exchange.responseStarted { upstreamTimer?.disarm() }
    }

    // MARK: backpressure and lifecycle

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state { setRelayPaused(!context.channel.isWritable, exchange) }
        context.fireChannelWritabilityChanged()
    }

    /// One flush to the upstream per client read burst: head, body parts and end leave in one write.
    func channelReadComplete(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state, let upstream = exchange.upstream { upstream.handler.flush() }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if readPaused { pendingRead = true } else { context.read() }
    }

    private func pauseReads() {
        readPaused = true
        watch.bodyReadsPaused()
    }

    private func resumeReads(if condition: Bool) {
        guard condition, readPaused else { return }
        readPaused = false
        watch.bodyProgressed()
        if pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }

    /// The client paused in the middle of a request body for longer than `client_body_timeout`. Forwarded: the
    /// upstream connection (which holds half a request) is closed and the client gets 408, or an aborted response if
    /// the upstream already answered. Answered locally and draining: the answer is out, the connection closes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ClientBodyTimeoutEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        watch.bodyEnded()
        if case .proxying(let exchange) = state, !exchange.requestEnded {
            exchange.clientKeepAlive = false
            failExchange(exchange, status: .requestTimeout, code: "client_body_timeout")
        } else {
            state = .idle
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state {
            upstreamTimer?.disarm()
            if let upstream = exchange.upstream {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
            // Counted and logged either way: before the answer as nginx's 499; during it with the status sent and the
            // outcome `client_closed` (a download the client abandoned went uncounted; found in review).
            let answered = exchange.responseStarted && exchange.status != 0
            finish(requestID: exchange.requestID, method: exchange.method.rawValue, path: exchange.path, status: answered ? exchange.status : 499,
                   outcome: "client_closed", start: exchange.start, upstreamStart: exchange.upstreamStart)
        }
        state = .idle
        context.fireChannelInactive()
    }

    /// An unparsable request (``ClientRequestDecoder`` refused the bytes): answered with JSON — the refusal's status
    /// (400; 431 for a head past the parser's limit; 501, 505) — when no response is under way, then the connection
    /// ends, because the byte stream cannot be trusted past that point. Answered once: later errors only close.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Input that was only being drained did not parse, or the last answer is already out: nothing more to say (a
        // second answer after one that said `Connection: close` — a bad chunk in a refused body — was written).
        var afterLastAnswer = lingering || parseErrorAnswered || lastAnswerWritten
        if case .discarding(closeAfter: true) = state { afterLastAnswer = true }
        if afterLastAnswer {
            context.close(promise: nil)
            return
        }
        var answerable = true
        if case .proxying(let exchange) = state {
            answerable = !exchange.responseStarted
            upstreamTimer?.disarm()
            if let upstream = exchange.upstream {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
        }
        state = .idle
        // A closed connection (header timeout, or the client's EOF in mid-request) has nobody to answer: no 400 is
        // written or counted for it.
        guard answerable, context.channel.isActive, let refusal = error as? ClientRequestError else {
            context.close(promise: nil)
            return
        }
        parseErrorAnswered = true
        let requestID = loop.requestIDs.next()
        let tooLarge = refusal.status == .requestHeaderFieldsTooLarge
        let reason = tooLarge ? "header block over \(min(shared.config.maxHeaderBytes, ClientRequestParser.maxHeadBytes)) bytes" : refusal.reason
        let (head, body) = LocalResponse.json(status: refusal.status, body: LocalResponse.errorBody(error: refusal.code, reason: reason, requestID: requestID),
                                              requestID: requestID, close: true)
        finish(requestID: requestID, method: "-", path: "-", status: head.status.code, outcome: tooLarge ? "header_too_large" : "bad_request",
               start: .now(), upstreamStart: nil)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

/// Request ids: a client's is kept when it is short and plain; otherwise one is made.
enum RequestID {
    static func from(_ value: String?, generator: inout RequestIDGenerator) -> String {
        if let value, !value.isEmpty, value.utf8.count <= 128,
           value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }) {
            return value
        }
        return generator.next()
    }
}

/// 128-bit random-looking request ids from xoshiro256**, seeded once per event loop from the system CSPRNG:
/// unique and unguessable enough for correlation, without a `getrandom` syscall per request. Not for secrets.
struct RequestIDGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    init() {
        var g = SystemRandomNumberGenerator()
        s = (g.next(), g.next(), g.next(), g.next() | 1)
    }

    private mutating func nextWord() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    mutating func next() -> String {
        let a = nextWord(), b = nextWord()
        // Hex digits by arithmetic: a table read through a static array checked its bounds and its initialisation
        // per digit.
        @inline(__always) func hex(_ word: UInt64, _ i: Int) -> UInt8 {
            let digit = UInt8(truncatingIfNeeded: word >> UInt64(60 - 4 * i)) & 15
            return digit < 10 ? 0x30 &+ digit : 0x57 &+ digit
        }
        return String(unsafeUninitializedCapacity: 32) { buffer in
            for i in 0..<16 {
                buffer[i] = hex(a, i)
                buffer[16 + i] = hex(b, i)
            }
            return 32
        }
    }
}
