import NIOCore
import NIOEmbedded
import Testing
@testable import SidecarServer

/// The pool's idle timeout: a connection idle for `idleTimeout` is closed rather than used (and every older one with
/// it), the sweep closes expired ones while nothing takes them, and a fresh one is always the one taken.
@Suite("Upstream pool idle timeout")
struct UpstreamPoolIdleTests {
    final class Made: @unchecked Sendable { var channels: [EmbeddedChannel] = [] }

    /// A pool on an embedded loop whose connections are in-process channels (kept in `made`), 4 s idle timeout.
    static func pool() -> (UpstreamPool, EmbeddedEventLoop, Made) {
        let loop = EmbeddedEventLoop()
        let made = Made()
        let pool = UpstreamPool(eventLoop: loop, address: ServerFixtures.dummyUpstream, connectTimeout: .seconds(1),
                                idleTimeout: .seconds(4)) {
            let channel = EmbeddedChannel(loop: loop)
            do { try channel.connect(to: ServerFixtures.dummyUpstream).wait() } catch { return loop.makeFailedFuture(error) }
            made.channels.append(channel)
            return loop.makeSucceededFuture(channel)
        }
        return (pool, loop, made)
    }

    static func connections(_ pool: UpstreamPool, _ count: Int) throws -> [UpstreamConnection] {
        try (0..<count).map { _ in try pool.connect().wait() }
    }

    static func close(_ made: Made) {
        for channel in made.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
    }

    @Test func aConnectionIdleForTheTimeoutIsClosedNotUsed() throws {
        let (pool, _, made) = Self.pool()
        defer { pool.closeAll(); Self.close(made) }
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        let c = try Self.connections(pool, 1)[0]
        pool.release(c, now: t0)
        let again = try #require(pool.takeIdle(now: t0 + .milliseconds(3999)), "within the timeout: reused")
        #expect(again.channel === c.channel)
        pool.release(again, now: t0 + .seconds(5))
        #expect(pool.takeIdle(now: t0 + .seconds(9)) == nil, "idle for exactly the timeout: not used")
        #expect(!c.channel.isActive, "and closed")
        #expect(pool.idleCount == 0)
    }

    @Test func anExpiredConnectionTakesEveryOlderOneWithIt() throws {
        let (pool, _, made) = Self.pool()
        defer { pool.closeAll(); Self.close(made) }
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        let cs = try Self.connections(pool, 3)
        for (i, c) in cs.enumerated() { pool.release(c, now: t0 + .seconds(Int64(i))) }
        // The newest (released at t0+2) is past its timeout at t0+6, so are the two older ones.
        #expect(pool.takeIdle(now: t0 + .seconds(6)) == nil)
        #expect(cs.allSatisfy { !$0.channel.isActive })
        #expect(pool.idleCount == 0)
    }

    @Test func theSweepClosesOnlyTheExpiredPrefix() throws {
        let (pool, _, made) = Self.pool()
        defer { pool.closeAll(); Self.close(made) }
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        let cs = try Self.connections(pool, 4)
        for (i, c) in cs.enumerated() { pool.release(c, now: t0 + .seconds(Int64(i))) }
        pool.closeExpired(now: t0 + .milliseconds(5500))  // t0 and t0+1 are 5.5 and 4.5 s idle; t0+2, t0+3 are not
        #expect(cs.map(\.channel.isActive) == [false, false, true, true])
        #expect(pool.idleCount == 2)
        // The newest is taken first.
        #expect(pool.takeIdle(now: t0 + .seconds(6))?.channel === cs[3].channel)
    }

    @Test func theSweepRunsOnTheLoopWithoutRequests() throws {
        let (pool, loop, made) = Self.pool()
        defer { pool.closeAll(); Self.close(made) }
        let c = try Self.connections(pool, 1)[0]
        // Released "10 s ago" by the wall clock the sweep reads: the first sweep (half a timeout later) closes it.
        pool.release(c, now: .now() - .seconds(10))
        #expect(c.channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!c.channel.isActive)
        #expect(pool.idleCount == 0)
    }
}
