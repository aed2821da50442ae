import NIOCore
import NIOEmbedded
import NIOExtras
import NIOHTTP1
import Testing
@testable import SidecarServer

/// Shutdown (`ChannelShouldQuiesceEvent`) as ``PipeliningHandler`` handles it: the last response says
/// `Connection: close`, busy connections close after it, idle ones after a grace for a request already on its way.
/// (That the grace's close waits one more loop turn, so bytes read in that turn are served rather than reset, needs
/// a real event loop's I/O phase: `Tests/soak/shutdown_under_load.sh` checks it under load.)
@Suite("PipeliningHandler quiesce")
struct PipeliningQuiesceTests {
    static func make() throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(PipeliningHandler())
        try channel.connect(to: ServerFixtures.dummyClient).wait()
        return (channel, loop)
    }

    static func request(_ channel: EmbeddedChannel, _ uri: String = "/") throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
    }

    static func respond(_ channel: EmbeddedChannel) throws -> HTTPResponseHead? {
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return nil }
        _ = try channel.readOutbound(as: HTTPServerResponsePart.self)
        return head
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
