import NIOCore
import NIOEmbedded
import Testing
@testable import SidecarServer

/// Sits between the channel head and a `GlueHandler` and records the outbound operations the glue passes on.
final class OutboundSpy: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
    var reads = 0
    var closeModes: [CloseMode] = []

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        closeModes.append(mode)
        context.close(mode: mode, promise: promise)
    }
}

/// Two EmbeddedChannels on one EmbeddedEventLoop (client side and upstream side share a loop in the server too),
/// glued by a matched pair.
struct GluedPair {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientSpy = OutboundSpy()
    let serverSpy = OutboundSpy()

    init(idleTimeout: TimeAmount? = nil) throws {
        client = EmbeddedChannel(loop: loop)
        server = EmbeddedChannel(loop: loop)
        let (a, b) = GlueHandler.matchedPair(idleTimeout: idleTimeout)
        try client.pipeline.syncOperations.addHandler(clientSpy)
        try client.pipeline.syncOperations.addHandler(a)
        try server.pipeline.syncOperations.addHandler(serverSpy)
        try server.pipeline.syncOperations.addHandler(b)
        try client.connect(to: ServerFixtures.dummyClient).wait()
        try server.connect(to: ServerFixtures.dummyUpstream).wait()
    }

    func finish() {
        _ = try? client.finish(acceptAlreadyClosed: true)
        _ = try? server.finish(acceptAlreadyClosed: true)
    }
}

@Suite("GlueHandler")
struct GlueHandlerTests {
    @Test("a tunnel silent both ways for its idle timeout is closed on both sides, not before")
    func silentTunnelIsClosed() throws {
        let p = try GluedPair(idleTimeout: .seconds(10))
        defer { p.finish() }
        p.loop.advanceTime(by: .milliseconds(9_999))
        #expect(p.client.isActive && p.server.isActive)
        p.loop.advanceTime(by: .milliseconds(1))
        #expect(!p.client.isActive)
        #expect(!p.server.isActive)
    }

    @Test("bytes in either direction restart the idle clock")
    func trafficKeepsTheTunnelOpen() throws {
        let p = try GluedPair(idleTimeout: .seconds(10))
        defer { p.finish() }
        for round in 0..<6 {
            p.loop.advanceTime(by: .seconds(7))
            let side = round.isMultiple(of: 2) ? p.client : p.server
            try side.writeInbound(ByteBuffer(string: "ping-\(round)"))
            #expect(p.client.isActive && p.server.isActive, "round \(round)")
        }
        // 42 s of traffic 7 s apart, then silence: closed 10 s after the last byte.
        p.loop.advanceTime(by: .milliseconds(9_999))
        #expect(p.client.isActive && p.server.isActive)
        p.loop.advanceTime(by: .milliseconds(1))
        #expect(!p.client.isActive && !p.server.isActive)
    }

    @Test("a tunnel closed by one side leaves no idle timer behind")
    func closingStopsTheClock() throws {
        let p = try GluedPair(idleTimeout: .seconds(10))
        defer { p.finish() }
        try p.client.close().wait()
        #expect(!p.server.isActive, "the partner closes with it")
        // Nothing left scheduled: advancing far past the timeout runs no task on closed channels.
        p.loop.advanceTime(by: .seconds(60))
        #expect(!p.client.isActive && !p.server.isActive)
    }

    @Test func relaysBytesBothWays() throws {
        let p = try GluedPair()
        defer { p.finish() }
        try p.client.writeInbound(ByteBuffer(string: "hello upstream"))
        #expect(try p.server.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "hello upstream"))
        #expect(try p.client.readInbound(as: ByteBuffer.self) == nil, "relayed bytes are not also passed inward")

        try p.server.writeInbound(ByteBuffer(string: "hello client"))
        #expect(try p.client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "hello client"))

        // Several reads in one batch arrive in order.
        for i in 0..<5 { p.client.pipeline.syncOperations.fireChannelRead(NIOAny(ByteBuffer(string: "frame-\(i);"))) }
        p.client.pipeline.syncOperations.fireChannelReadComplete()
        var relayed = ""
        while let b = try p.server.readOutbound(as: ByteBuffer.self) { relayed += String(buffer: b) }
        #expect(relayed == "frame-0;frame-1;frame-2;frame-3;frame-4;")
    }

    @Test func relayIsFlushedOnReadComplete() throws {
        let p = try GluedPair()
        defer { p.finish() }
        p.client.pipeline.syncOperations.fireChannelRead(NIOAny(ByteBuffer(string: "pending")))
        #expect(try p.server.readOutbound(as: ByteBuffer.self) == nil, "written but not flushed before readComplete")
        p.client.pipeline.syncOperations.fireChannelReadComplete()
        #expect(try p.server.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "pending"))
    }

    @Test func clientCloseClosesTheUpstream() throws {
        let p = try GluedPair()
        defer { p.finish() }
        try p.client.close().wait()
        #expect(!p.server.isActive)
    }

    /// What the closing side sent last (read, not yet flushed to the partner) still reaches the partner before it
    /// closes: a close at once dropped it.
    @Test(arguments: [false, true])
    func theLastBytesBeforeACloseAreDelivered(byError: Bool) throws {
        let p = try GluedPair()
        defer { p.finish() }
        p.server.pipeline.syncOperations.fireChannelRead(NIOAny(ByteBuffer(string: "last frames")))
        if byError {
            struct Reset: Error {}
            p.server.pipeline.syncOperations.fireErrorCaught(Reset())
        } else {
            p.server.pipeline.syncOperations.fireChannelInactive()
        }
        p.loop.run()
        #expect(try p.client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "last frames"))
        #expect(!p.client.isActive, "then the partner closes")
    }

    /// A partner that never takes those bytes is closed anyway, after the idle timeout.
    @Test func aPartnerThatTakesNothingIsClosedAfterTheIdleTimeout() throws {
        let p = try GluedPair(idleTimeout: .seconds(10))
        defer { p.finish() }
        // Hold the client's writes, as a socket whose peer reads nothing: none completes until the close fails them.
        final class Stall: ChannelOutboundHandler {
            typealias OutboundIn = NIOAny
            var held: [EventLoopPromise<Void>] = []
            func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
                if let promise { held.append(promise) }
            }
            func flush(context: ChannelHandlerContext) {}
            func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
                for p in held { p.fail(ChannelError.ioOnClosedChannel) }
                held.removeAll()
                context.close(mode: mode, promise: promise)
            }
        }
        try p.client.pipeline.syncOperations.addHandler(Stall(), position: .first)
        p.server.pipeline.syncOperations.fireChannelRead(NIOAny(ByteBuffer(string: "never read")))
        try p.server.close().wait()
        p.loop.advanceTime(by: .seconds(9))
        #expect(p.client.isActive, "still writing")
        p.loop.advanceTime(by: .seconds(1))
        #expect(!p.client.isActive)
        // Past every deadline either side scheduled: nothing is left on the loop to hold the channels.
        p.loop.advanceTime(by: .seconds(120))
    }

    @Test func upstreamCloseClosesTheClient() throws {
        let p = try GluedPair()
        defer { p.finish() }
        try p.server.close().wait()
        #expect(!p.client.isActive)
    }

    @Test func errorOnOneSideClosesBoth() throws {
        let p = try GluedPair()
        defer { p.finish() }
        struct Boom: Error {}
        p.client.pipeline.syncOperations.fireErrorCaught(Boom())
        #expect(!p.server.isActive)
        #expect(!p.client.isActive, "the erroring side is closed through its partner's close")
    }

    @Test func inputClosedHalfClosesThePartnersOutput() throws {
        let p = try GluedPair()
        defer { p.finish() }
        p.client.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(p.serverSpy.closeModes.first == .output)
    }

    @Test func holdsReadsWhileThePartnerIsNotWritable() throws {
        let p = try GluedPair()
        defer { p.finish() }
        let before = p.clientSpy.reads
        p.client.read()
        #expect(p.clientSpy.reads == before + 1, "reads pass while the partner is writable")

        p.server.isWritable = false
        p.client.read()
        #expect(p.clientSpy.reads == before + 1, "reads are held while the partner cannot take more")

        p.server.isWritable = true
        p.server.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(p.clientSpy.reads == before + 2, "the held read resumes when the partner becomes writable")

        // No read was pending: another writability change does not invent one.
        p.server.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(p.clientSpy.reads == before + 2)
    }

    @Test func holdsReadsInTheOtherDirectionToo() throws {
        let p = try GluedPair()
        defer { p.finish() }
        let before = p.serverSpy.reads
        p.client.isWritable = false
        p.server.read()
        p.server.read()
        #expect(p.serverSpy.reads == before)
        p.client.isWritable = true
        p.client.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(p.serverSpy.reads == before + 1, "held reads coalesce into one")
    }

    @Test func writabilityChangeToUnwritableDoesNotResumeReads() throws {
        let p = try GluedPair()
        defer { p.finish() }
        let before = p.clientSpy.reads
        p.server.isWritable = false
        p.client.read()
        p.server.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(p.clientSpy.reads == before)
    }
}
