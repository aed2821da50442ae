import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SidecarServer

/// The upstream connection's pipeline as ``UpstreamPool`` builds it: request heads reach the response parser through
/// ``UpstreamHandler/send(_:)`` (no write-observing hop), so a HEAD response's `Content-Length` announces no body.
@Suite("Upstream pipeline")
struct UpstreamPipelineTests {
    /// Records what the upstream handler delivers, as short strings.
    final class Recorder: UpstreamDelegate {
        var parts: [String] = []
        func upstreamRead(_ event: UpstreamResponseEvent) {
            switch event {
            case .head(let head): parts.append("head \(head.status.code)")
            case .body(let buffer): parts.append("body \(String(buffer: buffer))")
            case .end: parts.append("end")
            }
        }
        func upstreamReadComplete() {}
        func upstreamClosed() { parts.append("closed") }
        func upstreamError(_ error: Error) { parts.append("error") }
        func upstreamWritabilityChanged(_ writable: Bool) {}
    }

    static func pipeline() throws -> (EmbeddedChannel, UpstreamHandler, Recorder) {
        let channel = EmbeddedChannel()
        let handler = UpstreamHandler()
        try UpstreamPool.addHandlers(handler, to: channel.pipeline.syncOperations)
        let recorder = Recorder()
        handler.delegate = recorder
        return (channel, handler, recorder)
    }

    /// Sends one head per method and flushes them.
    static func send(_ methods: HTTPMethod..., through handler: UpstreamHandler) {
        for method in methods {
            handler.send(.head(UpstreamRequestEncoder.serialize(HTTPRequestHead(version: .http1_1, method: method, uri: "/r", headers: ["host": "up"]),
                                                                allocator: ByteBufferAllocator())))
        }
        handler.flush()
    }

    /// Two responses announcing a 5-byte body, only the second one carrying it.
    static let twoResponses = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                                                 + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    @Test("a HEAD response's Content-Length is not read as a body; the next response on the connection parses")
    func headThenGet() throws {
        let (channel, handler, recorder) = try Self.pipeline()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        Self.send(.HEAD, .GET, through: handler)
        var wire = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("file region"); return }
            wire += String(buffer: buffer)
        }
        #expect(wire == "HEAD /r HTTP/1.1\r\nhost: up\r\n\r\nGET /r HTTP/1.1\r\nhost: up\r\n\r\n")
        try channel.writeInbound(Self.twoResponses)
        #expect(recorder.parts == ["head 200", "end", "head 200", "body hello", "end"])
    }

    @Test("with GET recorded in its place, the same bytes are read as a 5-byte body: the recorded method decides")
    func getThenGet() throws {
        let (channel, handler, recorder) = try Self.pipeline()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        Self.send(.GET, .GET, through: handler)
        try channel.writeInbound(Self.twoResponses)
        #expect(recorder.parts == ["head 200", "body HTTP/", "end", "error"])
    }

    @Test("the upstream handler frames the parts itself: a POST without Content-Length goes out chunked, then its end")
    func handlerFramesChunkedBody() throws {
        let (channel, handler, _) = try Self.pipeline()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.context(handlerType: UpstreamRequestEncoder.self) }
        let head = UpstreamRequestEncoder.serialize(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/r", headers: ["host": "up"]),
                                                    allocator: ByteBufferAllocator())
        #expect(head.chunked)
        handler.send(.head(head))
        handler.send(.body(.byteBuffer(ByteBuffer(string: "hello"))))
        handler.send(.end(nil))
        handler.flush()
        var wire = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("file region"); return }
            wire += String(buffer: buffer)
        }
        #expect(wire == "POST /r HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    }
}
