import AuthJSToken
import Foundation
import Logging
import NIOCore

/// One line per request: request id, method, path, status, auth outcome code, durations. Never a token or cookie.
struct AccessLog: Sendable {
    let logger: Logger
    let json: Bool
    let enabled: Bool

    init(logger: Logger, format: String, enabled: Bool) {
        self.logger = logger
        self.json = format == "json"
        self.enabled = enabled
    }

    func record(requestID: String, method: String, path: String, status: UInt, outcome: String, start: NIODeadline, upstreamStart: NIODeadline?) {
        guard enabled else { return }
        let now = NIODeadline.now()
        let totalMs = Double((now - start).nanoseconds) / 1e6
        let upstreamMs = upstreamStart.map { Double((now - $0).nanoseconds) / 1e6 }
        // The path is logged without its query string: queries can carry secrets.
        let bare = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        if json {
            var o = "{\"ts\":\(String(format: "%.3f", Date().timeIntervalSince1970)),\"request_id\":\"\(requestID)\",\"method\":\"\(method)\",\"path\":"
            var bytes = [UInt8]()
            JSONValue.writeString(bare, to: &bytes)
            o += String(decoding: bytes, as: UTF8.self)
            o += ",\"status\":\(status),\"outcome\":\"\(outcome)\",\"ms\":\(String(format: "%.3f", totalMs))"
            if let upstreamMs { o += ",\"upstream_ms\":\(String(format: "%.3f", upstreamMs))" }
            o += "}\n"
            FileHandle.standardOutput.write(Data(o.utf8))
        } else {
            logger.info("access", metadata: [
                "request_id": "\(requestID)", "method": "\(method)", "path": "\(bare)", "status": "\(status)",
                "outcome": "\(outcome)", "ms": "\(String(format: "%.3f", totalMs))",
                "upstream_ms": "\(upstreamMs.map { String(format: "%.3f", $0) } ?? "-")",
            ])
        }
    }
}

