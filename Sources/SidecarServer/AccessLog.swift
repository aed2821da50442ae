import AuthJSToken
import Logging
import NIOCore

/// One line per request: request id, method, path, status, auth outcome code, durations. Never a token or cookie.
struct AccessLog: Sendable {
    let json: Bool
    /// Whether lines are made at all: `access_log` on, and in text format only at log level `info` or below (text
    /// access lines are `info` lines).
    let enabled: Bool

    init(logger: Logger, format: String, enabled: Bool) {
        self.json = format == "json"
        self.enabled = enabled && (json || logger.logLevel <= .info)
    }

    /// Where the lines go: JSON lines to stdout (one object per line, for log shippers), text lines to stderr with the
    /// other text logs.
    static func sink(forFormat format: String) -> LogSink {
        format == "json" ? .standardOutput : .standardError
    }

    /// W3C trace context of a request, logged (and forwarded untouched) so access lines join traces.
    struct Trace {
        let traceparent: String
        let tracestate: String?

        /// Only well-formed values are logged: `traceparent` is `version-traceid-parentid-flags` in lower-case hex,
        /// `tracestate` printable ASCII without quotes or backslashes (≤ 512 bytes).
        init?(traceparent: String?, tracestate: String?) {
            guard let traceparent, traceparent.utf8.count == 55,
                  traceparent.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || $0 == 0x2D }) else { return nil }
            self.traceparent = traceparent
            if let tracestate, tracestate.utf8.count <= 512,
               tracestate.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
                self.tracestate = tracestate
            } else {
                self.tracestate = nil
            }
        }
    }

    /// The line of one finished request, newline included; nil when access lines are off (tests; the proxy appends
    /// in place with ``write(requestID:method:path:status:outcome:start:upstreamStart:trace:into:)``).
    func line(requestID: String, method: String, path: String, status: UInt, outcome: String, start: NIODeadline, upstreamStart: NIODeadline?,
              trace: Trace? = nil) -> [UInt8]? {
        guard enabled else { return nil }
        var out: [UInt8] = []
        write(requestID: requestID, method: method, path: path, status: status, outcome: outcome, start: start,
              upstreamStart: upstreamStart, trace: trace, into: &out)
        return out
    }

    /// Appends the line of one finished request (newline included) to `out`, byte by byte: built with string
    /// interpolation and `Double` formatting it cost ~18 000 instructions per request, most of the access log's price.
    func write(requestID: String, method: String, path: String, status: UInt, outcome: String, start: NIODeadline,
               upstreamStart: NIODeadline?, trace: Trace?, into out: inout [UInt8]) {
        let now = NIODeadline.now()
        let total = (now - start).nanoseconds
        let upstream = upstreamStart.map { (now - $0).nanoseconds }
        // The path is logged without its query string: queries can carry secrets.
        let bare = path.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(path[..<$0]) } ?? path
        if json {
            out.append(contentsOf: #"{"ts":"#.utf8)
            LogDigits.appendThousandths(SystemIO.wallClockMilliseconds(), to: &out)
            out.append(contentsOf: #","request_id":""#.utf8)
            out.append(contentsOf: requestID.utf8)
            out.append(contentsOf: #"","method":"#.utf8)
            JSONValue.writeString(method, to: &out)
            out.append(contentsOf: #","path":"#.utf8)
            JSONValue.writeString(bare, to: &out)
            out.append(contentsOf: #","status":"#.utf8)
            LogDigits.appendInteger(Int64(status), to: &out)
            out.append(contentsOf: #","outcome":""#.utf8)
            out.append(contentsOf: outcome.utf8)
            out.append(contentsOf: #"","ms":"#.utf8)
            LogDigits.appendMilliseconds(nanoseconds: total, to: &out)
            if let upstream {
                out.append(contentsOf: #","upstream_ms":"#.utf8)
                LogDigits.appendMilliseconds(nanoseconds: upstream, to: &out)
            }
            if let trace {
                out.append(contentsOf: #","traceparent":""#.utf8)
                out.append(contentsOf: trace.traceparent.utf8)
                if let state = trace.tracestate {
                    out.append(contentsOf: #"","tracestate":""#.utf8)
                    out.append(contentsOf: state.utf8)
                }
                out.append(UInt8(ascii: "\""))
            }
            out.append(contentsOf: "}\n".utf8)
            return
        }
        TextLogLine.appendPrefix(level: .info, label: "authjs-sidecar", message: "access", to: &out)
        TextLogLine.appendField("request_id", requestID, to: &out)
        TextLogLine.appendField("method", method, to: &out)
        TextLogLine.appendField("path", bare, to: &out)
        out.append(contentsOf: " status=".utf8)
        LogDigits.appendInteger(Int64(status), to: &out)
        TextLogLine.appendField("outcome", outcome, to: &out)
        out.append(contentsOf: " ms=".utf8)
        LogDigits.appendMilliseconds(nanoseconds: total, to: &out)
        out.append(contentsOf: " upstream_ms=".utf8)
        if let upstream { LogDigits.appendMilliseconds(nanoseconds: upstream, to: &out) } else { out.append(UInt8(ascii: "-")) }
        if let trace {
            TextLogLine.appendField("traceparent", trace.traceparent, to: &out)
            if let state = trace.tracestate { TextLogLine.appendField("tracestate", state, to: &out) }
        }
        out.append(0x0A)
    }
}

/// Decimal numbers written straight into a log line.
enum LogDigits {
    static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for i in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[i]) }
        }
    }

    /// `value` thousandths as a decimal with exactly three places: 1795603167754 → `1795603167.754`.
    static func appendThousandths(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        let magnitude = value.magnitude
        appendInteger(Int64(magnitude / 1000), to: &out)
        let fraction = Int(magnitude % 1000)
        out.append(UInt8(ascii: "."))
        out.append(UInt8(ascii: "0") + UInt8(fraction / 100))
        out.append(UInt8(ascii: "0") + UInt8(fraction / 10 % 10))
        out.append(UInt8(ascii: "0") + UInt8(fraction % 10))
    }

    /// A duration in milliseconds with three places (microseconds, rounded): 326_400 ns → `0.326`.
    static func appendMilliseconds(nanoseconds: Int64, to out: inout [UInt8]) {
        appendThousandths(max(0, nanoseconds) / 1000 + (max(0, nanoseconds) % 1000 >= 500 ? 1 : 0), to: &out)
    }
}
