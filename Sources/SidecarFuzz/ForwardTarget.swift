import AuthJSToken
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidecarCore
import SidecarServer

#if canImport(Glibc)
import Glibc
#endif

/// The `forward` target: the `pipeline` target's client stream (``PipelineTarget``), but every `@T` in it is a valid
/// session token, so requests reach the upstream — an `EmbeddedChannel` per connection that answers each request
/// with `200 {"ok":true}`. What the sidecar sends there is decoded with NIO's request decoder, and checked:
/// - it parses (no error: the upstream sees well-framed HTTP/1.1, whatever the client sent);
/// - every request head carries each identity header exactly once with the token's value, and no other `X-Auth-*`
///   field: identity headers come from the verified token only, never from the client (the product's promise,
///   fuzzed at the byte level: case, whitespace, repeats, folding, chunked bodies and pipelining included);
/// - no `X-Auth-*` field in request trailers either;
/// - one `Host` (the upstream's) and one `X-Forwarded-For` (the client's address).
/// The client's side is checked as in the `pipeline` target (whole responses, one per request, no 502 and no 504,
/// since the upstream answers every whole request at once; a 408 only when a request's body never ended: the
/// client's body deadline ran out when the clock jumped — never the upstream's, which waits for the rest).
enum Forward {
    static let secret = "forward-fuzz-secret-0123456789"
    static let upstreamHost = "127.0.0.1:9"

    static let config: SidecarConfig = {
        let environment = ["AUTH_SECRET": secret, "SIDECAR_UPSTREAM": "http://\(upstreamHost)",
                           "SIDECAR_CORS_ORIGINS": PipelineTarget.origin, "SIDECAR_ACCESS_LOG": "false",
                           "SIDECAR_LOG_LEVEL": "critical", "SIDECAR_MAX_HEADER_BYTES": "8192", "SIDECAR_MAX_BODY_BYTES": "1024",
                           "SIDECAR_FORWARD_AUTH_PATH": ""]
        switch ConfigLoader.load(environment: environment, flags: [:], configPath: nil, coreCount: 1) {
        case .success(let config): return config
        case .failure(let issues):
            printErr("SidecarFuzz: forward config: \(issues.issues.map(\.description))\n")
            _exit(2)
        }
    }()

    /// Upstream channels made for the current input, each with the decoder that reads what the sidecar sent it.
    nonisolated(unsafe) static var upstreams: [(channel: EmbeddedChannel, decoder: EmbeddedChannel, heads: [HTTPMethod])] = []

    static let pipeline = SidecarServer.ClientPipeline(
        config: config, eventLoop: PipelineTarget.loop, upstream: try! SocketAddress(ipAddress: "127.0.0.1", port: 9),
        upstreamHost: upstreamHost, logger: Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() },
        upstreamChannel: {
            let loop = PipelineTarget.loop
            let channel = EmbeddedChannel(loop: loop)
            let decoder = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()), loop: loop)
            do {
                try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
            } catch {
                FuzzTargets.fail(.forward, "the upstream channel could not connect: \(error)")
            }
            upstreams.append((channel, decoder, []))
            return loop.makeSucceededFuture(channel)
        })

    static let token: [UInt8] = {
        let claims = JSONObject([("sub", .string("fuzz-user-7")), ("email", .string("fuzz@example.com")),
                                 ("name", .string("Fuzz Tester")), ("iat", .integer(1_767_225_600)), ("exp", .integer(4_070_908_800))])
        do { return Array(try TokenMinter.authjsV5(claims: claims, secret: secret, salt: "authjs.session-token").utf8) } catch {
            printErr("SidecarFuzz: cannot mint the forward token: \(error)\n")
            _exit(2)
        }
    }()

    /// The identity fields every forwarded request must carry (lower-cased names), from the token itself.
    static let expectedIdentity: [(String, String)] = {
        let cookie = "authjs.session-token=" + String(decoding: token, as: UTF8.self)
        switch config.authenticator.authenticate(cookieHeader: cookie, authorization: nil, now: SystemIO.wallClock()) {
        case .success(let verified): return config.identity.headers(for: verified).headers.map { ($0.0.lowercased(), $0.1) }
        case .failure(let f):
            printErr("SidecarFuzz: the forward token does not verify: \(f)\n")
            _exit(2)
        }
    }()

    static let response = ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")
    static let headResponse = ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n")

    static func prepare() {
        _ = pipeline
        _ = expectedIdentity
    }

    static func run(_ bytes: UnsafeBufferPointer<UInt8>) { PipelineTarget.run(bytes, through: pipeline, forwarding: true) }

    /// The input with each `@T` replaced by the token.
    static func expand(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "@"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "T") {
                out += token
                i += 2
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    /// Moves what the sidecar sent upstream into the decoders, checks each head and answers each request, until
    /// nothing moves (an answer can release the next pipelined request).
    static func pump(output: inout [UInt8], client: EmbeddedChannel) {
        var moved = true
        while moved {
            moved = false
            for index in upstreams.indices {
                let upstream = upstreams[index]
                while let data = try? upstream.channel.readOutbound(as: IOData.self) {
                    moved = true
                    guard case .byteBuffer(let buffer) = data else { FuzzTargets.fail(.forward, "a file region was sent upstream") }
                    do { try PipelineTarget.feed(upstream.decoder, buffer) } catch {
                        FuzzTargets.fail(.forward, "what the sidecar sent upstream does not parse (\(error)): \(FuzzTargets.excerpt(buffer.readableBytesView))")
                    }
                    while let part = try? upstream.decoder.readInbound(as: HTTPServerRequestPart.self) {
                        switch part {
                        case .head(let head):
                            checkForwarded(head)
                            upstreams[index].heads.append(head.method)
                        case .body: break
                        case .end(let trailers):
                            for (name, value) in trailers ?? [:] where name.lowercased().hasPrefix("x-auth-") {
                                FuzzTargets.fail(.forward, "trailer \(name): \(FuzzTargets.excerpt(Array(value.utf8))) reached the upstream")
                            }
                            let method = upstreams[index].heads.isEmpty ? .GET : upstreams[index].heads.removeFirst()
                            FuzzTargets.note("forwarded")
                            if upstream.channel.isActive {
                                try? PipelineTarget.feed(upstream.channel, method == .HEAD ? headResponse : response)
                            }
                        }
                    }
                }
            }
            while let buffer = try? client.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        }
    }

    static func checkForwarded(_ head: HTTPRequestHead) {
        for (name, value) in expectedIdentity {
            let values = head.headers[name]
            FuzzTargets.check(values == [value], .forward, "\(name) upstream is \(values.map { FuzzTargets.excerpt(Array($0.utf8)) }), not the token's")
        }
        for (name, value) in head.headers where name.lowercased().hasPrefix("x-auth-") {
            FuzzTargets.check(expectedIdentity.contains { $0.0 == name.lowercased() }, .forward,
                              "\(name): \(FuzzTargets.excerpt(Array(value.utf8))) reached the upstream")
        }
        FuzzTargets.check(head.headers["host"] == [upstreamHost], .forward, "Host upstream is \(head.headers["host"])")
        FuzzTargets.check(head.headers["x-forwarded-for"] == ["192.0.2.10"], .forward,
                          "X-Forwarded-For upstream is \(head.headers["x-forwarded-for"])")
    }

    /// After an input: no upstream connection outlives it (the pool would hand it to the next input).
    static func closeUpstreams() {
        for upstream in upstreams {
            _ = try? upstream.channel.finish(acceptAlreadyClosed: true)
            _ = try? upstream.decoder.finish(acceptAlreadyClosed: true)
        }
        upstreams.removeAll()
    }
}
