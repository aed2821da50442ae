import NIOCore
import NIOEmbedded
import NIOExtras
import NIOHTTP1
import Testing
@testable import SidecarServer

/// Shutdown (`ChannelShouldQuiesceEvent`) as ``PipeliningHandler`` and ``ClientResponseEncoder`` handle it: the last response says
/// `Connection: close`, busy connections close after it, idle ones after a grace for a request already on its way.
/// (That the grace's close waits one more loop turn, so bytes read in that turn are served rather than reset, needs
/// a real event loop's I/O phase: `Tests/soak/shutdown_under_load.sh` checks it under load.)
@Suite("PipeliningHandler quiesce")
struct PipeliningQuiesceTests {
    /// The encoder and the pipelining handler, as the server pairs them: the encoder adds `Connection: close` and
    /// reports each response's end.
    static func make(maxQueued: Int = 64) throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let watch = HeadWatch()
        try channel.pipeline.syncOperations.addHandler(ClientResponseEncoder(watch: watch))
        try channel.pipeline.syncOperations.addHandler(PipeliningHandler(watch: watch, maxQueued: maxQueued))
        try channel.connect(to: ServerFixtures.dummyClient).wait()
        return (channel, loop)
    }

    static func request(_ channel: EmbeddedChannel, _ uri: String = "/") throws {
        try channel.writeInbound(ClientRequestPart.head(ClientRequestHead(method: .GET, uri: uri)))
        try channel.writeInbound(ClientRequestPart.end(nil))
    }

    static func respond(_ channel: EmbeddedChannel) throws -> HTTPResponseHead? {
        var head = HTTPResponseHead(version: .http1_1, status: .ok)
        head.headers.add(name: "content-length", value: "0")
        try channel.writeOutbound(ClientResponsePart.head(head))
        try channel.writeOutbound(ClientResponsePart.end(nil))
        let reader = WireResponseReader()
        while var bytes = try channel.readOutbound(as: ByteBuffer.self) { reader.bytes.writeBuffer(&bytes) }
        return try reader.next(sourceLocation: #_sourceLocation)?.head
    }

    @Test func idleConnectionClosesAfterTheGrace() throws {
        let (channel, loop) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try Self.request(channel)
        _ = try Self.respond(channel)
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        loop.advanceTime(by: PipeliningHandler.idleGrace - .milliseconds(1))
        #expect(channel.isActive, "a request may still be on its way")
        loop.advanceTime(by: .milliseconds(1))
        loop.run()
        #expect(!channel.isActive)
    }

    @Test("a request arriving within the grace is answered with Connection: close, then the connection closes")
    func requestWithinTheGraceIsServed() throws {
        let (channel, loop) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        loop.advanceTime(by: .milliseconds(100))
        try Self.request(channel, "/late")
        #expect(channel.isActive)
        let head = try #require(try Self.respond(channel))
        #expect(head.headers["connection"] == ["close"])
        loop.run()
        #expect(!channel.isActive)
    }

    @Test func busyConnectionClosesAfterItsResponse() throws {
        let (channel, loop) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try Self.request(channel)
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        loop.advanceTime(by: .seconds(5))
        #expect(channel.isActive, "an exchange in progress is never cut by the grace")
        let head = try #require(try Self.respond(channel))
        #expect(head.headers["connection"] == ["close"])
        loop.run()
        #expect(!channel.isActive)
    }
}

/// Ordering as the server pairs ``ClientResponseEncoder`` and ``PipeliningHandler``: a request reaches the handlers
/// behind (here the channel's inbound end) only after the previous response's end went through the encoder.
@Suite("PipeliningHandler ordering")
struct PipeliningOrderTests {
    static func inbound(_ channel: EmbeddedChannel) throws -> [String] {
        var seen: [String] = []
        while let part = try channel.readInbound(as: ClientRequestPart.self) {
            switch part {
            case .head(let head): seen.append("head \(head.uri)")
            case .body: seen.append("body")
            case .end: seen.append("end")
            }
        }
        return seen
    }

    @Test func aPipelinedRequestWaitsForThePreviousResponse() throws {
        let (channel, _) = try PipeliningQuiesceTests.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try PipeliningQuiesceTests.request(channel, "/first")
        try PipeliningQuiesceTests.request(channel, "/second")
        try PipeliningQuiesceTests.request(channel, "/third")
        #expect(try Self.inbound(channel) == ["head /first", "end"])
        #expect(try PipeliningQuiesceTests.respond(channel)?.status == .ok)
        #expect(try Self.inbound(channel) == ["head /second", "end"])
        #expect(try PipeliningQuiesceTests.respond(channel)?.status == .ok)
        #expect(try Self.inbound(channel) == ["head /third", "end"])
        #expect(try PipeliningQuiesceTests.respond(channel)?.status == .ok)
        #expect(try Self.inbound(channel) == [])
    }

    @Test func readsStopWhileMaxQueuedEventsWaitAndResumeAfterTheDrain() throws {
        let (channel, _) = try PipeliningQuiesceTests.make(maxQueued: 4)
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let handler = try channel.pipeline.syncOperations.handler(type: PipeliningHandler.self)
        try PipeliningQuiesceTests.request(channel, "/first")
        try PipeliningQuiesceTests.request(channel, "/second")
        #expect(!handler.readsStopped, "two queued events")
        try PipeliningQuiesceTests.request(channel, "/third")
        #expect(handler.readsStopped, "four queued events")
        _ = try Self.inbound(channel)
        _ = try PipeliningQuiesceTests.respond(channel)
        #expect(try Self.inbound(channel) == ["head /second", "end"])
        #expect(!handler.readsStopped, "two queued events again")
    }
}
