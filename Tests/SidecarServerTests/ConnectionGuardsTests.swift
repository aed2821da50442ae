import NIOCore
import NIOEmbedded
import Testing
@testable import SidecarServer

@Suite("ClientTimeoutsHandler and HeadWatch")
struct ClientTimeoutsTests {
    /// A channel with only the timeouts guard (it sits before the HTTP decoder and sees raw bytes).
    static func make(timeout: TimeAmount = .seconds(10), idle: TimeAmount? = nil) throws -> (EmbeddedChannel, EmbeddedEventLoop, HeadWatch) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let watch = HeadWatch()
        try channel.pipeline.syncOperations.addHandler(ClientTimeoutsHandler(watch: watch, headerTimeout: timeout, idleTimeout: idle))
        try channel.connect(to: ServerFixtures.dummyClient).wait()
        return (channel, loop, watch)
    }

    @Test func partialHeadIsClosedAfterTheTimeout() throws {
        let (channel, loop, watch) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n"))
        // Bytes pass through untouched.
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n"))
        #expect(watch.deadline != nil)
        loop.advanceTime(by: .seconds(9))
        #expect(channel.isActive, "still within the header timeout")
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "closed once the timeout passed without a complete head")
    }

    @Test func timerRunsFromTheFirstByteNotTheLast() throws {
        let (channel, loop, _) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: "G"))
        loop.advanceTime(by: .seconds(6))
        try channel.writeInbound(ByteBuffer(string: "ET / HTTP/1.1\r\n"))
        loop.advanceTime(by: .seconds(4))
        #expect(!channel.isActive, "a slow trickle does not extend the deadline")
    }

    @Test func withoutAnIdleTimeoutAConnectionWithoutBytesIsLeftOpen() throws {
        let (channel, loop, watch) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        loop.advanceTime(by: .seconds(3600))
        #expect(channel.isActive, "no bytes: the header deadline never starts")
        #expect(watch.deadline == nil)
    }

    @Test func aNewConnectionWithoutBytesIsClosedAfterTheIdleTimeout() throws {
        let (channel, loop, _) = try Self.make(idle: .seconds(30))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        loop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test("idle time counts from the end of the last response, never during an exchange")
    func idleCountsFromTheEndOfTheExchange() throws {
        let (channel, loop, watch) = try Self.make(idle: .seconds(30))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        watch.headArrived()
        #expect(watch.deadline == nil, "no read deadline while the exchange is in flight")
        loop.advanceTime(by: .seconds(300))
        #expect(channel.isActive, "a slow upstream is the upstream timeout's business")
        watch.exchangeFinished()
        loop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "closed 30 s after the response ended")
    }

    @Test("the first byte of a head replaces the idle deadline with the (shorter) header deadline")
    func headStartReplacesTheIdleDeadline() throws {
        let (channel, loop, watch) = try Self.make(timeout: .seconds(10), idle: .seconds(60))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        loop.advanceTime(by: .seconds(5))
        try channel.writeInbound(ByteBuffer(string: "GET / HT"))
        #expect(watch.readingHead)
        loop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "closed 10 s after the head started, not 60 s after the connection opened")
    }

    @Test("a long idle timeout is kept between requests while each head must still arrive in time")
    func manyRequestsKeepTheConnectionOpen() throws {
        let (channel, loop, watch) = try Self.make(timeout: .seconds(10), idle: .seconds(20))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        for _ in 0..<10 {
            loop.advanceTime(by: .seconds(15))
            try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
            loop.advanceTime(by: .seconds(1))
            watch.headArrived()
            watch.exchangeFinished()
            #expect(channel.isActive)
        }
        loop.advanceTime(by: .seconds(20))
        #expect(!channel.isActive)
    }

    @Test func removingTheHandlerCancelsItsDeadlines() throws {
        let (channel, loop, watch) = try Self.make(idle: .seconds(30))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let timer = try #require(watch.timer)
        let context = try channel.pipeline.syncOperations.context(handlerType: ClientTimeoutsHandler.self)
        channel.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        #expect(!timer.hasPendingTask && watch.timer == nil)
        loop.advanceTime(by: .seconds(3600))
        #expect(channel.isActive, "a WebSocket tunnel has no HTTP deadlines")
    }

    @Test func headArrivedCancelsTheTimer() throws {
        let (channel, loop, watch) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        #expect(watch.deadline != nil)
        loop.advanceTime(by: .seconds(5))
        watch.headArrived()
        #expect(watch.deadline == nil)
        #expect(!watch.awaitingHead)
        loop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
    }

    @Test func bodyBytesAfterTheHeadDoNotArmTheTimer() throws {
        let (channel, loop, watch) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: "POST / HTTP/1.1\r\ncontent-length: 100\r\n\r\n"))
        watch.headArrived()
        try channel.writeInbound(ByteBuffer(string: "slow body"))
        #expect(watch.deadline == nil)
        loop.advanceTime(by: .seconds(60))
        #expect(channel.isActive, "a slow body is not a slow header block")
    }

    @Test func nextRequestAfterExchangeFinishedArmsAgain() throws {
        let (channel, loop, watch) = try Self.make()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: "GET /1 HTTP/1.1\r\n\r\n"))
        watch.headArrived()
        watch.exchangeFinished()
        loop.advanceTime(by: .seconds(30))
        #expect(channel.isActive)
        try channel.writeInbound(ByteBuffer(string: "GET /2 HT"))
        #expect(watch.deadline != nil)
        loop.advanceTime(by: .seconds(10))
        #expect(!channel.isActive)
    }

    @Test func closingTheChannelCancelsThePendingTimer() throws {
        let (channel, loop, watch) = try Self.make()
        try channel.writeInbound(ByteBuffer(string: "GET"))
        let timer = try #require(watch.timer)
        #expect(watch.deadline != nil && timer.hasPendingTask)
        try channel.close().wait()
        #expect(!timer.hasPendingTask && watch.deadline == nil)
        loop.advanceTime(by: .seconds(60))
    }
}

@Suite("DeadlineTimer")
struct DeadlineTimerTests {
    final class Box { var fired = 0 }

    /// A timer on an embedded loop that counts how often it expired.
    static func make() -> (EmbeddedEventLoop, Box, DeadlineTimer) {
        let loop = EmbeddedEventLoop()
        let box = Box()
        return (loop, box, DeadlineTimer(eventLoop: loop) { box.fired += 1 })
    }

    @Test func firesOnceAtTheDeadline() {
        let (loop, box, timer) = Self.make()
        timer.arm(in: .seconds(10))
        loop.advanceTime(by: .seconds(9))
        #expect(box.fired == 0)
        loop.advanceTime(by: .seconds(1))
        #expect(box.fired == 1 && !timer.isArmed && !timer.hasPendingTask)
        loop.advanceTime(by: .seconds(60))
        #expect(box.fired == 1)
    }

    @Test("moving the deadline later keeps the pending task, which re-arms itself for the rest")
    func movedDeadlineIsHonoured() {
        let (loop, box, timer) = Self.make()
        timer.arm(in: .seconds(10))
        loop.advanceTime(by: .seconds(6))
        timer.arm(in: .seconds(10))  // now due at 16 s
        loop.advanceTime(by: .seconds(5))  // 11 s: the first task fired early and re-armed
        #expect(box.fired == 0 && timer.hasPendingTask)
        loop.advanceTime(by: .seconds(4))  // 15 s
        #expect(box.fired == 0)
        loop.advanceTime(by: .seconds(1))  // 16 s
        #expect(box.fired == 1)
    }

    @Test func disarmedTimerNeverFiresAndCanBeArmedAgain() {
        let (loop, box, timer) = Self.make()
        for _ in 0..<100 {  // a request per second on a keep-alive connection: never more than one pending task
            timer.arm(in: .seconds(10))
            loop.advanceTime(by: .seconds(1))
            timer.disarm()
        }
        loop.advanceTime(by: .seconds(30))
        #expect(box.fired == 0 && !timer.hasPendingTask)
        timer.arm(in: .seconds(2))
        loop.advanceTime(by: .seconds(2))
        #expect(box.fired == 1)
    }

    @Test func anEarlierDeadlineReplacesALaterPendingTask() {
        let (loop, box, timer) = Self.make()
        timer.arm(in: .seconds(60))
        timer.arm(in: .seconds(5))
        loop.advanceTime(by: .seconds(5))
        #expect(box.fired == 1)
    }

    @Test func cancelStopsEverything() {
        let (loop, box, timer) = Self.make()
        timer.arm(in: .seconds(1))
        timer.cancel()
        loop.advanceTime(by: .seconds(10))
        #expect(box.fired == 0 && !timer.hasPendingTask && !timer.isArmed)
    }
}

@Suite("ConnectionAdmission")
struct ConnectionLimitTests {
    static func make(_ limit: ConnectionLimit) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        _ = try ConnectionAdmission.admit(channel, limit: limit)
        return channel
    }

    @Test func secondConnectionOverTheLimitGets503AndIsClosed() throws {
        let limit = ConnectionLimit(max: 1)
        let first = try Self.make(limit)
        defer { _ = try? first.finish(acceptAlreadyClosed: true) }
        try first.connect(to: ServerFixtures.dummyClient).wait()
        #expect(first.isActive)
        #expect(limit.current == 1)
        #expect(try first.readOutbound(as: ByteBuffer.self) == nil, "an admitted connection gets no refusal")

        let second = try Self.make(limit)
        defer { _ = try? second.finish(acceptAlreadyClosed: true) }
        try second.connect(to: ServerFixtures.dummyClient).wait()
        let raw = try #require(try second.readOutbound(as: ByteBuffer.self))
        let text = String(buffer: raw)
        #expect(text.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(text.lowercased().contains("\r\nconnection: close\r\n"))
        let parts = text.components(separatedBy: "\r\n\r\n")
        #expect(parts.count == 2)
        let body = parts.last ?? ""
        #expect(text.contains("content-length: \(body.utf8.count)\r\n"))
        #expect(body.contains("connection_limit"))
        #expect(!second.isActive, "the refused connection is closed")
        #expect(limit.current == 1, "a refused connection holds no slot")
    }

    @Test func refusedConnectionDoesNotPassReadsOrActiveOn() throws {
        let limit = ConnectionLimit(max: 1)
        #expect(limit.admit())
        let refused = try Self.make(limit)
        defer { _ = try? refused.finish(acceptAlreadyClosed: true) }
        let spy = InboundSpy()
        try refused.pipeline.syncOperations.addHandler(spy)
        try refused.connect(to: ServerFixtures.dummyClient).wait()
        #expect(spy.activeCount == 0)
        _ = try? refused.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        #expect(spy.reads == 0)
        limit.release()
    }

    @Test func releasingOnCloseFreesTheSlot() throws {
        let limit = ConnectionLimit(max: 1)
        let first = try Self.make(limit)
        defer { _ = try? first.finish(acceptAlreadyClosed: true) }
        try first.connect(to: ServerFixtures.dummyClient).wait()
        #expect(limit.current == 1)
        try first.close().wait()
        first.embeddedEventLoop.run()   // the close future's callbacks
        #expect(limit.current == 0)

        let second = try Self.make(limit)
        defer { _ = try? second.finish(acceptAlreadyClosed: true) }
        try second.connect(to: ServerFixtures.dummyClient).wait()
        #expect(second.isActive)
        #expect(try second.readOutbound(as: ByteBuffer.self) == nil)
        #expect(limit.current == 1)
    }

    @Test func refusedConnectionClosingDoesNotReleaseSomeoneElsesSlot() throws {
        let limit = ConnectionLimit(max: 1)
        let first = try Self.make(limit)
        defer { _ = try? first.finish(acceptAlreadyClosed: true) }
        try first.connect(to: ServerFixtures.dummyClient).wait()
        let second = try Self.make(limit)
        try second.connect(to: ServerFixtures.dummyClient).wait()
        _ = try? second.finish(acceptAlreadyClosed: true)
        #expect(limit.current == 1)
        let third = try Self.make(limit)
        defer { _ = try? third.finish(acceptAlreadyClosed: true) }
        try third.connect(to: ServerFixtures.dummyClient).wait()
        #expect(!third.isActive, "still full: the first connection holds the slot")
    }

    @Test func admittedConnectionPassesReadsOn() throws {
        let limit = ConnectionLimit(max: 2)
        let channel = try Self.make(limit)
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let spy = InboundSpy()
        try channel.pipeline.syncOperations.addHandler(spy)
        try channel.connect(to: ServerFixtures.dummyClient).wait()
        #expect(spy.activeCount == 1)
        try channel.writeInbound(ByteBuffer(string: "abc"))
        #expect(spy.reads == 1)
    }

    @Test func connectionLimitCountsAdmissions() {
        let limit = ConnectionLimit(max: 3)
        #expect(limit.admit() && limit.admit() && limit.admit())
        #expect(!limit.admit())
        #expect(limit.current == 3)
        limit.release()
        #expect(limit.admit())
        #expect(limit.current == 3)
    }
}

/// Counts what reaches it from the handlers before it.
final class InboundSpy: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    var reads = 0
    var activeCount = 0
    var inactiveCount = 0

    func channelActive(context: ChannelHandlerContext) { activeCount += 1; context.fireChannelActive() }
    func channelInactive(context: ChannelHandlerContext) { inactiveCount += 1; context.fireChannelInactive() }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { reads += 1; context.fireChannelRead(data) }
}
