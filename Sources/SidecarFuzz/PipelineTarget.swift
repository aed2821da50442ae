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

/// The `pipeline` target: a client's raw bytes through the server's real connection pipeline (timeouts, response
/// encoder, NIO's HTTP/1 decoder, pipelining, proxy handler) on an `EmbeddedChannel`.
///
/// Input: byte 0 picks the size of the pieces the rest arrives in (1–64 bytes, or all at once), as TCP may split it.
/// Each `@W` in the rest is a pause of 61 s (past the idle, header, body and upstream deadlines of 60 s or less), so
/// the deadlines run out in the middle of the stream too. After the last piece the clock jumps past every timeout. No input carries a valid session (no corpus holds a token
/// for this target's secret, and the fuzzer cannot forge one), no path is public and preflights are answered here, so nothing may reach the
/// upstream: its connect fails on this loop, so a forwarded request would come back as 502 — an auth bypass.
/// Invariants on the bytes written back:
/// - a sequence of complete HTTP/1.x responses: status line, token-named header fields without CR/LF in values, a
///   `Content-Length` on every final response but a 204 (which has none, RFC 9110 §8.6) and exactly that many body
///   bytes (none after a HEAD), nothing else;
/// - every final response carries one `X-Request-Id`, and a body, when there is one, is a JSON object;
/// - no 502/504/408 and no 2xx besides the health answers (200) and preflights (204): nothing was forwarded (a 408
///   answers only a stalled body of a forwarded request);
/// - no identity header (`X-Auth-*`) in a response;
/// - no more responses than the input could hold requests (one per 16 bytes).
enum PipelineTarget {
    static let origin = "https://app.example.com"

    static let config: SidecarConfig = {
        // A secret no corpus mints tokens for (make-corpus.py uses `Fixed.secrets`): no input can hold a valid session.
        let environment = ["AUTH_SECRET": "pipeline-fuzz-secret-that-mints-nothing", "SIDECAR_UPSTREAM": "http://127.0.0.1:9",
                           "SIDECAR_CORS_ORIGINS": origin, "SIDECAR_ACCESS_LOG": "false", "SIDECAR_LOG_LEVEL": "critical",
                           "SIDECAR_MAX_HEADER_BYTES": "4096", "SIDECAR_MAX_BODY_BYTES": "1024"]
        switch ConfigLoader.load(environment: environment, flags: [:], configPath: nil, coreCount: 1) {
        case .success(let config): return config
        case .failure(let issues):
            printErr("SidecarFuzz: pipeline config: \(issues.issues.map(\.description))\n")
            _exit(2)
        }
    }()

    /// One loop for the whole process (libFuzzer is single-threaded); its clock only moves forward.
    static let loop = EmbeddedEventLoop()
    static let pipeline = SidecarServer.ClientPipeline(
        config: config, eventLoop: loop, upstream: try! SocketAddress(ipAddress: "127.0.0.1", port: 9), upstreamHost: "127.0.0.1:9",
        logger: Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() })
    static let client = try! SocketAddress(ipAddress: "192.0.2.10", port: 40000)
    /// The target the invariants report for (libFuzzer is single-threaded).
    nonisolated(unsafe) static var current = FuzzTarget.pipeline

    static func prepare() { _ = pipeline }

    static func run(_ bytes: UnsafeBufferPointer<UInt8>) { run(bytes, through: pipeline, forwarding: false) }

    /// Feeds one input through `pipeline`; `forwarding`: the upstream answers (``Forward``), "@T" in the input stands
    /// for a valid session token, and what reaches the upstream is checked too.
    static func run(_ bytes: UnsafeBufferPointer<UInt8>, through pipeline: SidecarServer.ClientPipeline, forwarding: Bool) {
        current = forwarding ? .forward : .pipeline
        guard let first = bytes.first else { return }
        let stream = forwarding ? Forward.expand(Array(bytes[1...])) : Array(bytes[1...])
        let piece = first == 0 ? max(stream.count, 1) : Int(first % 64) + 1
        let channel = EmbeddedChannel(loop: loop)
        channel.remoteAddress = client  // known when the handlers are added, as on an accepted socket
        var output: [UInt8] = []
        func drain() {
            if forwarding { Forward.pump(output: &output, client: channel) }
            while let buffer = try? channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        }
        do {
            try pipeline.install(on: channel)
            try channel.connect(to: client).wait()
        } catch {
            FuzzTargets.fail(current, "the pipeline could not be set up: \(error)")
        }
        for (index, segment) in pauses(splitting: stream).enumerated() where channel.isActive {
            if index > 0 {
                loop.advanceTime(by: pause)
                drain()
            }
            var offset = segment.startIndex
            while offset < segment.endIndex, channel.isActive {
                let end = min(offset + piece, segment.endIndex)
                // A parse error reaches the tail of the pipeline after the proxy handler answered it: expected.
                try? feed(channel, ByteBuffer(bytes: segment[offset..<end]))
                drain()
                offset = end
            }
        }
        loop.advanceTime(by: .seconds(3600))
        drain()
        FuzzTargets.note(channel.isActive ? "left-open" : "closed-by-server")
        if Fixed.verbose { printErr("pipeline output:\n\(String(decoding: output, as: UTF8.self))\n") }
        _ = try? channel.finish(acceptAlreadyClosed: true)
        drain()
        // A forwarded request whose body never ended was never answered by the upstream: when the clock jumps, the
        // client's body deadline runs out (408). The upstream's never does: it answers every whole request at once.
        let unanswered = forwarding && Forward.upstreams.contains { !$0.heads.isEmpty }
        if forwarding { Forward.closeUpstreams() }
        check(output, inputBytes: stream.count, forwarding: forwarding, unansweredUpstream: unanswered)
    }

    /// What an `@W` in the input stands for: longer than the config's 60 s deadlines.
    static let pause = TimeAmount.seconds(61)

    /// The input's stretches between `@W` markers (a token, base64url, never contains `@`).
    static func pauses(splitting stream: [UInt8]) -> [ArraySlice<UInt8>] {
        var segments: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while i + 1 < stream.count {
            if stream[i] == UInt8(ascii: "@"), stream[i + 1] == UInt8(ascii: "W") {
                segments.append(stream[start..<i])
                start = i + 2
                i += 2
            } else {
                i += 1
            }
        }
        segments.append(stream[start...])
        return segments
    }

    /// `EmbeddedChannel.writeInbound` without its result. In `-O` builds with the sanitizers (Swift 6.3.1), the unused
    /// array of what is left inbound that `writeInbound` returns was freed before it was filled: ASan reported a
    /// heap-use-after-free inside the inlined `writeInbound` for the `forward` target's request decoder, whose inbound
    /// side holds the decoded parts (`FUZZ_BUILD=release`, first seconds; debug builds are fine). Firing the read
    /// directly, as `writeInbound` does, makes no array.
    static func feed(_ channel: EmbeddedChannel, _ buffer: ByteBuffer) throws {
        channel.pipeline.syncOperations.fireChannelRead(NIOAny(buffer))
        channel.pipeline.syncOperations.fireChannelReadComplete()
        try channel.throwIfErrorCaught()
    }

    // MARK: - the response stream

    static func check(_ out: [UInt8], inputBytes: Int, forwarding: Bool, unansweredUpstream: Bool = false) {
        var at = 0
        var responses = 0
        while at < out.count {
            guard let headEnd = find(out, [0x0D, 0x0A, 0x0D, 0x0A], from: at) else {
                FuzzTargets.fail(current, "response head without its blank line: \(FuzzTargets.excerpt(out[at...]))")
            }
            let lines = split(out[at..<headEnd])
            let status = statusCode(lines[0])
            FuzzTargets.check(status != nil, current, "bad status line: \(FuzzTargets.excerpt(lines[0]))")
            let code = status!
            var length: Int?
            var requestIDs = 0
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                      line[..<colon].allSatisfy(isTokenByte) else {
                    FuzzTargets.fail(current, "bad header line: \(FuzzTargets.excerpt(line))")
                }
                let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
                let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces
                FuzzTargets.check(!name.hasPrefix("x-auth-"), current, "identity header \(name) in a response")
                if name == "content-length" {
                    FuzzTargets.check(length == nil && Int(value) != nil, current, "bad or repeated Content-Length \(value)")
                    length = Int(value)
                }
                if name == "x-request-id" { requestIDs += 1 }
                FuzzTargets.check(name != "transfer-encoding", current, "a local answer is chunked")
            }
            at = headEnd + 4
            responses += 1
            FuzzTargets.note("status-\(code)")
            if code < 200 {
                FuzzTargets.check(code == 100, current, "interim response \(code)")
                continue
            }
            FuzzTargets.check(code == 200 || code == 204 || code >= 400, current, "status \(code): was the request forwarded?")
            FuzzTargets.check(code != 502 && code != 504 && (code != 408 || unansweredUpstream), current,
                              forwarding ? "status \(code) although the upstream answers every request" : "status \(code): a request was forwarded without a session")
            FuzzTargets.check(requestIDs == 1, current, "\(requestIDs) X-Request-Id fields in a \(code) response")
            if code == 204 {  // no Content-Length and no body (RFC 9110 §8.6)
                FuzzTargets.check(length == nil, current, "204 response with Content-Length")
                continue
            }
            guard let length else { FuzzTargets.fail(current, "\(code) response without Content-Length") }
            // After a HEAD the body is left out; a local body is JSON, so it never starts a status line.
            let bodyFollows = length > 0 && at < out.count && !out[at...].starts(with: Array("HTTP/1.".utf8))
            if bodyFollows {
                FuzzTargets.check(at + length <= out.count, current, "body shorter than its Content-Length \(length)")
                let body = Array(out[at..<(at + length)])
                let parsed = body.withUnsafeBufferPointer { JSONParser.parseObject($0, limits: JSONLimits(), what: "body") }
                if case .failure(let f) = parsed {
                    FuzzTargets.fail(current, "\(code) body is not a JSON object (\(f.reason)): \(FuzzTargets.excerpt(body))")
                }
                at += length
            }
        }
        FuzzTargets.check(responses <= inputBytes / 16 + 1, current, "\(responses) responses to \(inputBytes) bytes")
    }

    static func find(_ bytes: [UInt8], _ needle: [UInt8], from: Int) -> Int? {
        var i = from
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0], bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// The CRLF-separated lines of a head; a bare CR or LF inside a line is an error.
    static func split(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        var i = head.startIndex
        while i < head.endIndex {
            if head[i] == 0x0D, i + 1 < head.endIndex, head[i + 1] == 0x0A {
                lines.append(head[start..<i])
                i += 2
                start = i
                continue
            }
            FuzzTargets.check(head[i] != 0x0D && head[i] != 0x0A, current, "bare CR or LF in a response head: \(FuzzTargets.excerpt(head))")
            i += 1
        }
        lines.append(head[start..<head.endIndex])
        return lines
    }

    /// `HTTP/1.x NNN reason` → NNN.
    static func statusCode(_ line: ArraySlice<UInt8>) -> Int? {
        let bytes = Array(line)
        guard bytes.count >= 12, bytes.starts(with: Array("HTTP/1.".utf8)), bytes[7] == 0x30 || bytes[7] == 0x31,
              bytes[8] == 0x20, bytes[12...].first.map({ $0 == 0x20 }) ?? true,
              bytes[9...11].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(String(decoding: bytes[9...11], as: UTF8.self))
    }

    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
