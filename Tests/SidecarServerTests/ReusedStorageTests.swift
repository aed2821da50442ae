import NIOCore
import Testing
@testable import SidecarServer

/// The per-connection storage reused from one head to the next (`HTTPScan.ReusedRanges`, `HTTPScan.ReusedBuffer`):
/// refilled in place once nothing else holds it, and never overwriting what something still holds.
@Suite("Reused per-connection storage")
struct ReusedStorageTests {
    static func range(_ n: Int32) -> FieldRange { FieldRange(nameStart: n, nameCount: 1, valueStart: n + 3, valueCount: 2) }

    static func address(_ ranges: [FieldRange]) -> UnsafeRawPointer? {
        ranges.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
    }

    static func address(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { $0.baseAddress }
    }

    @Test("ranges: an array nothing else holds is refilled in place; one a head still holds is left as it is")
    func ranges() {
        var reused = HTTPScan.ReusedRanges()
        var first = reused.take()
        #expect(first.isEmpty && first.capacity >= HTTPScan.ReusedRanges.initialCapacity)
        first.append(Self.range(1))
        first.append(Self.range(2))
        let storage = Self.address(first)
        reused.keep(first)
        // Still held (a head not yet relayed): the next head gets other storage, the held one keeps its ranges.
        let held = first
        first = []
        var second = reused.take()
        #expect(second.isEmpty)
        second.append(Self.range(9))
        #expect(held.map(\.nameStart) == [1, 2])
        #expect(Self.address(second) != storage)
        reused.keep(second)
        // Released: the same storage again, empty.
        let secondStorage = Self.address(second)
        second = []
        var third = reused.take()
        #expect(third.isEmpty)
        third.append(Self.range(5))
        #expect(Self.address(third) == secondStorage, "refilled in place")
    }

    @Test("ranges: an array grown past the limit by a head of many fields is not kept")
    func rangesLimit() {
        var reused = HTTPScan.ReusedRanges()
        var ranges = reused.take()
        for i in 0..<(HTTPScan.ReusedRanges.maxKept + 1) { ranges.append(Self.range(Int32(i))) }
        reused.keep(ranges)
        ranges = []
        let next = reused.take()
        #expect(next.capacity < HTTPScan.ReusedRanges.maxKept, "a fresh array, not the large one")
    }

    @Test("buffer: written in place once released; a head still queued keeps its bytes")
    func buffer() {
        var reused = HTTPScan.ReusedBuffer()
        var buffer = reused.take()
        buffer.clear(minimumCapacity: 64)
        buffer.writeString("HTTP/1.1 200 OK\r\n\r\n")
        let storage = Self.address(buffer)
        reused.keep(buffer)
        // Queued for the socket (NIO holds it): the next head must not overwrite it.
        let queued = buffer
        buffer = ByteBuffer()
        var next = reused.take()
        next.clear(minimumCapacity: 64)
        next.writeString("HTTP/1.1 404 Not Found\r\n\r\n")
        #expect(String(buffer: queued) == "HTTP/1.1 200 OK\r\n\r\n")
        #expect(Self.address(next) != storage)
        reused.keep(next)
        // Written and released: the following head goes into the same storage.
        let nextStorage = Self.address(next)
        next = ByteBuffer()
        var third = reused.take()
        third.clear(minimumCapacity: 64)
        third.writeString("HTTP/1.1 204 No Content\r\n\r\n")
        #expect(Self.address(third) == nextStorage, "written in place")
        #expect(String(buffer: third) == "HTTP/1.1 204 No Content\r\n\r\n")
    }

    @Test("buffer: a large one (a whole response with its body) is not kept")
    func bufferLimit() {
        var reused = HTTPScan.ReusedBuffer()
        var buffer = reused.take()
        buffer.clear(minimumCapacity: HTTPScan.ReusedBuffer.maxKept + 1)
        reused.keep(buffer)
        buffer = ByteBuffer()
        #expect(reused.take().capacity == 0, "nothing kept: the next head allocates its own")
    }
}
