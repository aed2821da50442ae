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

    /// The line of one finished request, newline included; nil when access lines are off.
    func line(requestID: String, method: String, path: String, status: UInt, outcome: String, start: NIODeadline, upstreamStart: NIODeadline?,
              trace: Trace? = nil) -> [UInt8]? {
        guard enabled else { return nil }
        let now = NIODeadline.now()
        let totalMs = Double((now - start).nanoseconds) / 1e6
        let upstreamMs = upstreamStart.map { Double((now - $0).nanoseconds) / 1e6 }
        // The path is logged without its query string: queries can carry secrets.
        let bare = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        if json {
            var bytes = Array("{\"ts\":\(SystemIO.threeDecimals(SystemIO.wallClock())),\"request_id\":\"\(requestID)\",\"method\":".utf8)
            JSONValue.writeString(method, to: &bytes)
            bytes.append(contentsOf: ",\"path\":".utf8)
            JSONValue.writeString(bare, to: &bytes)
            var o = ",\"status\":\(status),\"outcome\":\"\(outcome)\",\"ms\":\(SystemIO.threeDecimals(totalMs))"
            if let upstreamMs { o += ",\"upstream_ms\":\(SystemIO.threeDecimals(upstreamMs))" }
            if let trace {
                o += ",\"traceparent\":\"\(trace.traceparent)\""
                if let state = trace.tracestate { o += ",\"tracestate\":\"\(state)\"" }
            }
            o += "}\n"
            bytes.append(contentsOf: o.utf8)
            return bytes
        }
        var fields: [(String, String)] = [
            ("request_id", requestID), ("method", method), ("path", bare), ("status", String(status)), ("outcome", outcome),
            ("ms", SystemIO.threeDecimals(totalMs)), ("upstream_ms", upstreamMs.map { SystemIO.threeDecimals($0) } ?? "-"),
        ]
        if let trace {
            fields.append(("traceparent", trace.traceparent))
            if let state = trace.tracestate { fields.append(("tracestate", state)) }
        }
        return TextLogLine.make(level: .info, label: "authjs-sidecar", message: "access", metadata: fields)
    }
}
