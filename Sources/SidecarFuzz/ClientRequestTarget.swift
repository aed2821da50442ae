import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidecarServer

/// The `client-request` target: the bytes a client sends, read by the sidecar's own request parser
/// (``ClientRequestParser``), the trust boundary where request smuggling is decided. The first input byte picks the
/// read size (bits 0–4: 1–31 bytes, 0 = one read; bits 5–7 unused). Checked:
/// - the parser never crashes or loops; reads split anywhere give the same events, the same verdict (error or not,
///   same status), the same state at the end and, after an upgrade request or CONNECT, the same remainder as one
///   read; no read is left unconsumed, at most 100 000 events per read; the remainder is the input's tail, right
///   after an empty line (`remainder`);
/// - it accepts nothing NIO's `HTTPRequestDecoder` (llhttp) refuses (`nio-refuses`), and where both accept, NIO reads
///   the same requests: method, target, version, fields in order, body bytes, trailers, ends (`nio-differs`).
///
/// What is compared: the events (heads, each body byte, ends) both produced, which must be the same; beyond them,
/// what one read and the other did not. The parser may stop reading first — at an error (it is stricter on purpose:
/// counted as `stricter:<reason>`), after an upgrade request or CONNECT (the rest is another protocol), after a
/// request that ends the connection (the rest is ignored; llhttp refuses such bytes, "Data after `Connection:
/// close`", which is no disagreement). NIO may stop first after a request llhttp reads as an upgrade (any method with
/// `Upgrade` and `Connection: upgrade`; the parser upgrades only a GET and the proxy drops `Upgrade` from other
/// requests, so it reads on): found with a probe request, counted as `nio-stopped-first`. An incomplete element at
/// the end (a head, a chunk-size line) that NIO already refused is no failure: the parser has not judged those bytes
/// yet. At the close NIO (llhttp's finish) reports a message cut off; the parser's decoder does the same when
/// ``ClientRequestParser/inMessage``: NIO's error at the close while the parser sits between requests is a
/// `nio-refuses`. One class of `nio-refuses` can be counted instead of failing with
/// `FUZZ_IGNORE=nio-refuses:<NIO's error>` (see ``refuses(_:_:)``).
enum ClientRequestTarget {
    /// One event as compared: a head or an end (rendered), or one body byte — so that where a read stops in the middle
    /// of a body, "the same so far" is a plain prefix.
    enum Token: Equatable {
        case line(String)
        case byte(UInt8)
    }

    struct Transcript: Equatable {
        var tokens: [Token] = []
        /// Status code and reason of the parser's refusal.
        var error: (code: UInt, reason: String)?
        /// Where the parser ended: `clean` (between requests), `partial` (in a message), `stopped`, `done`, `error`.
        var final = "clean"
        /// After a stop: the bytes kept for the next protocol.
        var rest: [UInt8]?

        static func == (a: Self, b: Self) -> Bool {
            a.tokens == b.tokens && a.error?.code == b.error?.code && a.final == b.final && a.rest == b.rest
        }

        mutating func record(_ part: HTTPServerRequestPart, trim: Bool) {
            func fields(_ headers: HTTPHeaders) -> String {
                headers.map { "\($0.name)=\(trim ? FuzzTargets.trimmed($0.value) : $0.value)" }.joined(separator: "\u{1}")
            }
            switch part {
            case .head(let head):
                tokens.append(.line("head \(head.method.rawValue) \(head.uri) \(head.version.major).\(head.version.minor) [\(fields(head.headers))]"))
            case .body(let buffer):
                for byte in buffer.readableBytesView { tokens.append(.byte(byte)) }
            case .end(let trailers):
                tokens.append(.line("end" + (trailers.map { " " + fields($0) } ?? "")))
            }
        }

        /// The tokens as lines, body bytes joined.
        static func lines(_ tokens: some Collection<Token>) -> [String] {
            var lines: [String] = []
            var body: [UInt8] = []
            for token in tokens {
                switch token {
                case .byte(let byte): body.append(byte)
                case .line(let line):
                    if !body.isEmpty { lines.append("body \(FuzzTargets.excerpt(body, Int.max))"); body = [] }
                    lines.append(line)
                }
            }
            if !body.isEmpty { lines.append("body \(FuzzTargets.excerpt(body, Int.max))") }
            return lines
        }

        var summary: String {
            var out = "\(Self.lines(tokens))"
            if let error { out += " error \(error.code) \(error.reason)" }
            out += " " + final
            if let rest { out += " rest \(FuzzTargets.excerpt(rest, 80))" }
            return out
        }
    }

    static func parse(_ wire: UnsafeBufferPointer<UInt8>, split: Int) -> Transcript {
        var parser = ClientRequestParser()
        var transcript = Transcript()
        let step = split == 0 ? max(wire.count, 1) : split
        var offset = 0
        do {
            while offset < wire.count {
                var input = ByteBuffer(bytes: UnsafeBufferPointer(rebasing: wire[offset..<min(offset + step, wire.count)]))
                offset += step
                var events = 0
                while let part = try parser.next(&input) {
                    transcript.record(part.nio, trim: false)
                    events += 1
                    if events > 100_000 { FuzzTargets.fail(.clientRequest, "more than 100 000 events from one read") }
                }
                if input.readableBytes > 0 { FuzzTargets.fail(.clientRequest, "bytes left unconsumed after next() returned nil") }
            }
        } catch {
            transcript.error = (error.status.code, error.reason)
        }
        if transcript.error != nil {
            transcript.final = "error"
            FuzzTargets.check(!parser.inMessage && !parser.stopped, .clientRequest, "in a message or stopped after an error")
        } else if parser.stopped {
            transcript.final = "stopped"
            transcript.rest = parser.takeRemainder().map { Array($0.readableBytesView) } ?? []
        } else if parser.inMessage {
            transcript.final = "partial"
        } else {
            // Between requests, or done after a request that ends the connection: a probe on a copy tells which.
            var probe = parser
            var byte = ByteBuffer(bytes: [UInt8(ascii: "G")])
            let event = try? probe.next(&byte)
            FuzzTargets.check(event == nil, .clientRequest, "one byte of a head gave an event")
            transcript.final = probe.inMessage ? "clean" : "done"
        }
        return transcript
    }

    struct Reference {
        var transcript = Transcript()
        /// NIO's error while reading the bytes (its events before it are in `transcript`).
        var error: String?
        /// NIO's error at the close (llhttp's finish: a message cut off), when there was none before.
        var closeError: String?
        /// NIO stopped parsing (after an upgrade): found with a probe request, only when asked for.
        var stopped = false
    }

    /// NIO's reading of the same bytes in one read; then either the close (`probeStop` false) or a whole request as a
    /// probe: NIO stopped parsing (after what llhttp reads as an upgrade) iff the probe gives neither an event nor an
    /// error.
    static func nio(_ wire: UnsafeBufferPointer<UInt8>, probeStop: Bool) -> Reference {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        var reference = Reference()
        do {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        } catch {
            FuzzTargets.fail(.clientRequest, "cannot add NIO's decoder: \(error)")
        }
        do {
            try channel.writeInbound(ByteBuffer(bytes: wire))
        } catch {
            reference.error = "\(error)"
        }
        func drain(into transcript: inout Transcript) -> Int {
            var count = 0
            while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
                count += 1
                transcript.record(part, trim: true)
            }
            return count
        }
        _ = drain(into: &reference.transcript)
        guard reference.error == nil else { return reference }
        if probeStop {
            var probe = Transcript()
            do {
                try channel.writeInbound(ByteBuffer(string: "GET /probe HTTP/1.1\r\nHost: p\r\n\r\n"))
                reference.stopped = drain(into: &probe) == 0
            } catch {
                reference.stopped = false
            }
        } else {
            do {
                _ = try channel.finish(acceptAlreadyClosed: true)
            } catch {
                reference.closeError = "\(error)"
            }
            var late = Transcript()
            FuzzTargets.check(drain(into: &late) == 0, .clientRequest, "harness: NIO gave events at the close: \(late.summary)")
        }
        return reference
    }

    /// A `nio-refuses` failure. `FUZZ_IGNORE=nio-refuses:<NIO's error, spaces as dashes>` (e.g.
    /// `nio-refuses:invalid-URL`) counts one known class of them instead, so a long run looks for the others.
    static func refuses(_ nioError: String, _ message: @autoclosure () -> String) {
        let key = "nio-refuses:" + String(nioError.map { $0 == " " ? "-" : $0 })
        if Fixed.ignored.contains(key) {
            FuzzTargets.note("ignored-\(key)")
            return
        }
        FuzzTargets.check("nio-refuses", false, .clientRequest, message())
    }

    static func run(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let control = bytes.first else { return }
        let wire = UnsafeBufferPointer(rebasing: bytes[1...])
        let split = Int(control & 31)
        let whole = parse(wire, split: 0)
        if split > 0 {
            let pieces = parse(wire, split: split)
            FuzzTargets.check(pieces == whole, .clientRequest,
                              "reads of \(split) bytes differ from one read:\n  one:    \(whole.summary)\n  pieces: \(pieces.summary)")
        }
        if let rest = whole.rest, !rest.isEmpty {
            let head = wire.count - rest.count
            FuzzTargets.check("remainder", head >= 4 && wire[head...].elementsEqual(rest) && wire[(head - 4)..<head].elementsEqual([13, 10, 13, 10]),
                              .clientRequest, "the remainder after a stop is not the input's tail after an empty line: \(whole.summary)")
        }
        if Fixed.verbose { printErr("client-request: \(FuzzTargets.excerpt(wire, 400))\n  ours: \(whole.summary)\n") }
        compare(wire, whole)
    }

    static func compare(_ wire: UnsafeBufferPointer<UInt8>, _ whole: Transcript) {
        let reference = nio(wire, probeStop: false)
        if Fixed.verbose {
            printErr("  nio:  \(Transcript.lines(reference.transcript.tokens)) error \(reference.error ?? "-") close \(reference.closeError ?? "-")\n")
        }
        let ours = whole.tokens, theirs = reference.transcript.tokens
        func show() -> String {
            "\(FuzzTargets.excerpt(wire, 600))\n  ours: \(whole.summary)\n  nio:  \(Transcript.lines(theirs))"
                + (reference.error.map { " error \($0)" } ?? "") + (reference.closeError.map { " close-error \($0)" } ?? "")
        }
        // Whatever both read must be the same.
        let common = min(ours.count, theirs.count)
        FuzzTargets.check("nio-differs", ours[..<common] == theirs[..<common], .clientRequest, "read differently from NIO's decoder: \(show())")
        if let nioError = reference.error {
            if ours.count > theirs.count {
                refuses(nioError, "accepted a request (or part) NIO's decoder refuses (\(nioError)): \(show())")
                return
            }
            // NIO refused bytes after all the parser's events: fine where the parser stopped reading, refused them too,
            // or has not judged them yet (an incomplete element at the end); not when it took them all as valid.
            switch whole.final {
            case "clean": refuses(nioError, "accepted bytes NIO's decoder refuses (\(nioError)): \(show())")
            case "error": FuzzTargets.note("both-refuse")
            default: FuzzTargets.note("nio-refused-after-\(whole.final)")
            }
            return
        }
        if let error = whole.error { FuzzTargets.note("stricter:\(error.reason)") } else { FuzzTargets.note("agree-\(whole.final)") }
        if ours.count > theirs.count, case .line(let last)? = theirs.last, last.hasPrefix("end") {
            // NIO has no more events, no error: did it stop after what llhttp reads as an upgrade?
            if nio(wire, probeStop: true).stopped {
                FuzzTargets.note("nio-stopped-first")
                return
            }
        }
        switch whole.final {
        case "clean", "partial":
            FuzzTargets.check("nio-differs", ours.count == theirs.count, .clientRequest, "read differently from NIO's decoder: \(show())")
            if whole.final == "clean", let closeError = reference.closeError {
                refuses(closeError, "between requests, where NIO's decoder has a message cut by the close (\(closeError)): \(show())")
            }
        default:  // error, stopped, done: NIO may have read on
            FuzzTargets.check("nio-differs", ours.count <= theirs.count, .clientRequest, "read differently from NIO's decoder: \(show())")
        }
    }
}
