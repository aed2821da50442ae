import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidecarServer

/// The `upstream-response` target: bytes an upstream might send on a pooled connection, read by the sidecar's own
/// response parser (``UpstreamResponseParser``). The first input byte picks the requests outstanding (bit 0: the
/// first is a HEAD; bits 1–2: 1–4 requests) and the read size (bits 3–7: 1–31 bytes, 0 = one read). Checked:
/// - the parser never crashes or loops, and reads split anywhere give the same events and the same verdict as one read;
/// - it accepts nothing NIO's `HTTPResponseDecoder` (llhttp) refuses, and where it accepts, NIO reads the same
///   responses: statuses, fields, body bytes, trailers and ends. A framing disagreement here is how a pooled
///   connection would hand one client the tail of another's response.
enum UpstreamResponseTarget {
    struct Transcript: Equatable {
        var lines: [String] = []
        var body: [UInt8] = []
        var error: String?

        mutating func record(_ event: UpstreamResponseEvent) {
            switch event {
            case .head(let head):
                flushBody()
                let fields = head.fields.map { "\($0.0)=\($0.1)" }.joined(separator: "\u{1}")
                lines.append("head \(head.version.minor) \(head.status.code) [\(fields)]")
            case .body(let buffer):
                body += buffer.readableBytesView
            case .end(let trailers):
                flushBody()
                lines.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\($0.value)" }.joined(separator: "\u{1}") } ?? ""))
            }
        }

        mutating func flushBody() {
            if !body.isEmpty { lines.append("body \(FuzzTargets.excerpt(body, Int.max))"); body = [] }
        }
    }

    static func parse(_ wire: UnsafeBufferPointer<UInt8>, firstIsHEAD: Bool, requests: Int, split: Int) -> Transcript {
        var parser = UpstreamResponseParser()
        for index in 0..<requests { parser.requestSent(isHEAD: index == 0 && firstIsHEAD, wantsUpgrade: false) }
        var transcript = Transcript()
        let step = split == 0 ? max(wire.count, 1) : split
        do {
            var offset = 0
            while offset < wire.count {
                var input = ByteBuffer(bytes: UnsafeBufferPointer(rebasing: wire[offset..<min(offset + step, wire.count)]))
                offset += step
                var events = 0
                while let event = try parser.next(&input) {
                    transcript.record(event)
                    events += 1
                    if events > 100_000 { FuzzTargets.fail(.upstreamResponse, "more than 100 000 events from one read") }
                }
                if input.readableBytes > 0 { FuzzTargets.fail(.upstreamResponse, "bytes left unconsumed without an upgrade") }
            }
            if let event = try parser.endOfInput() { transcript.record(event) }
        } catch let error as UpstreamResponseError {
            transcript.error = error.reason
        } catch {
            FuzzTargets.fail(.upstreamResponse, "unexpected error type \(error)")
        }
        transcript.flushBody()
        return transcript
    }

    /// NIO's reading of the same bytes (one read, then the close), or `nil` if it refuses them.
    static func nio(_ wire: UnsafeBufferPointer<UInt8>, firstIsHEAD: Bool, requests: Int) -> Transcript? {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .fireError)
        for index in 0..<requests {
            decoder.write(data: .head(HTTPRequestHead(version: .http1_1, method: index == 0 && firstIsHEAD ? .HEAD : .GET, uri: "/")))
        }
        var transcript = Transcript()
        do {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
            try channel.writeInbound(ByteBuffer(bytes: wire))
            try channel.close().wait()
        } catch {
            return nil
        }
        while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head(let head):
                transcript.flushBody()
                // llhttp keeps a value's trailing whitespace, which RFC 9110 §5.5 excludes (the parser drops it).
                let fields = head.headers.map { "\($0.name)=\(FuzzTargets.trimmed($0.value))" }.joined(separator: "\u{1}")
                transcript.lines.append("head \(head.version.minor) \(head.status.code) [\(fields)]")
            case .body(let buffer): transcript.body += buffer.readableBytesView
            case .end(let trailers):
                transcript.flushBody()
                transcript.lines.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\(FuzzTargets.trimmed($0.value))" }.joined(separator: "\u{1}") } ?? ""))
            }
        }
        transcript.flushBody()
        return transcript
    }

    static func run(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let control = bytes.first else { return }
        let wire = UnsafeBufferPointer(rebasing: bytes[1...])
        let firstIsHEAD = control & 1 == 1
        let requests = Int((control >> 1) & 3) + 1
        let split = Int(control >> 3)
        let whole = parse(wire, firstIsHEAD: firstIsHEAD, requests: requests, split: 0)
        if split > 0 {
            let pieces = parse(wire, firstIsHEAD: firstIsHEAD, requests: requests, split: split)
            FuzzTargets.check(pieces == whole, .upstreamResponse,
                              "reads of \(split) bytes differ from one read:\n  one:    \(whole)\n  pieces: \(pieces)")
        }
        FuzzTargets.note(whole.error.map { "refused:" + $0 } ?? "accepted")
        if Fixed.verbose { printErr("upstream-response: \(whole)\n") }
        guard whole.error == nil else { return }
        guard let reference = nio(wire, firstIsHEAD: firstIsHEAD, requests: requests) else {
            FuzzTargets.check("nio-refuses", false, .upstreamResponse,
                              "accepted what NIO's decoder refuses: \(FuzzTargets.excerpt(wire, 400))\n  ours: \(whole)")
            return
        }
        FuzzTargets.check("nio-differs", reference.lines == whole.lines, .upstreamResponse,
                          "read differently from NIO's decoder: \(FuzzTargets.excerpt(wire, 400))\n  ours: \(whole.lines)\n  nio:  \(reference.lines)")
    }
}
