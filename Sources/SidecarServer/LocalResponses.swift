import AuthJSToken
import NIOCore
import NIOHTTP1
import SidecarCore

/// The sidecar's own answers: JSON errors with stable codes, health, and the 401 challenge.
enum LocalResponse {
    static func json(status: HTTPResponseStatus, body: String, requestID: String, extraHeaders: [(String, String)] = [],
                     close: Bool) -> (HTTPResponseHead, ByteBuffer) {
        var headers = HTTPHeaders()
        headers.reserveCapacity(6 + extraHeaders.count)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "x-request-id", value: requestID)
        headers.add(name: "cache-control", value: "no-store")
        for (n, v) in extraHeaders { headers.add(name: n, value: v) }
        if close { headers.add(name: "connection", value: "close") }
        return (HTTPResponseHead(version: .http1_1, status: status, headers: headers), ByteBuffer(string: body))
    }

    static func errorBody(error: String, reason: String, requestID: String) -> String {
        var out = [UInt8]()
        out.append(contentsOf: #"{"error":"#.utf8)
        JSONValue.writeString(error, to: &out)
        out.append(contentsOf: #","reason":"#.utf8)
        JSONValue.writeString(reason, to: &out)
        out.append(contentsOf: #","request_id":"#.utf8)
        JSONValue.writeString(requestID, to: &out)
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    static func unauthorized(_ failure: VerificationFailure, realm: String, requestID: String, close: Bool) -> (HTTPResponseHead, ByteBuffer) {
        let challenge = #"Bearer realm="\#(realm)", error="invalid_token", error_description="\#(failure.code.rawValue)""#
        return json(status: .unauthorized, body: errorBody(error: "invalid_token", reason: failure.code.rawValue, requestID: requestID),
                    requestID: requestID, extraHeaders: [("www-authenticate", challenge)], close: close)
    }
}
