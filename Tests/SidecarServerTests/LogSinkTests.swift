#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import Testing
@testable import SidecarServer

/// The log writer: lines reach the descriptor whole and in order; a reader that stops reading costs dropped lines,
/// never a blocked caller; the shutdown drain gives up on such a reader.
@Suite("Log sink")
struct LogSinkTests {
    /// A pipe whose read end does not block (reads poll up to a deadline), with a small kernel buffer.
    static func pipePair(kernelBuffer: Int32 = 4096) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        _ = fcntl(fds[1], 1031 /* F_SETPIPE_SZ */, kernelBuffer)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    /// Everything readable from `fd` until `count` bytes arrived or `seconds` passed.
    static func read(_ fd: Int32, atLeast count: Int, within seconds: Double) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = SystemIO.wallClock() + seconds
        while out.count < count, SystemIO.wallClock() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 { out.append(contentsOf: chunk[..<n]) }
        }
        return out
    }

    static func lines(_ bytes: [UInt8]) -> [String] {
        bytes.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
    }

    @Test(.timeLimit(.minutes(1)))
    func linesFromManyThreadsArriveWholeAndEachThreadsInOrder() async throws {
        let (readEnd, writeEnd) = Self.pipePair(kernelBuffer: 65536)
        defer { close(readEnd); close(writeEnd) }
        let sink = LogSink(fd: writeEnd)
        let threads = 4, perThread = 500
        // Lines of different lengths, some batches of several lines, as the event loops hand them over.
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<threads {
                group.addTask {
                    var i = 0
                    while i < perThread {
                        let batch = min(1 + i % 3, perThread - i)
                        var bytes: [UInt8] = []
                        for k in i..<(i + batch) {
                            bytes.append(contentsOf: "t\(t) n\(k) \(String(repeating: "x", count: k % 97))\n".utf8)
                        }
                        sink.submit(bytes, lines: batch)
                        i += batch
                    }
                }
            }
        }
        var expectedBytes = 0
        for t in 0..<threads {
            for k in 0..<perThread { expectedBytes += "t\(t) n\(k) \(String(repeating: "x", count: k % 97))\n".utf8.count }
        }
        let received = Self.read(readEnd, atLeast: expectedBytes, within: 20)
        #expect(received.count == expectedBytes)
        #expect(sink.dropped == 0)
        var next = [Int](repeating: 0, count: threads)
        for line in Self.lines(received) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            let t = Int(parts[0].dropFirst())!, k = Int(parts[1].dropFirst())!
            #expect(k == next[t], "thread \(t)'s lines in order")
            #expect(parts.count == 3 && parts[2] == String(repeating: "x", count: k % 97)[...], "line whole")
            next[t] = k + 1
        }
        #expect(next == [Int](repeating: perThread, count: threads))
        #expect(sink.drain(timeoutSeconds: 5))
    }

    @Test(.timeLimit(.minutes(1)))
    func aReaderThatStopsReadingCostsDroppedLinesNeverABlockedCaller() throws {
        let (readEnd, writeEnd) = Self.pipePair()
        defer { close(readEnd); close(writeEnd) }
        let sink = LogSink(fd: writeEnd, capacity: 16 * 1024)
        let total = 5000
        // 500 KB against 4 KiB of pipe, 16 KiB of buffer and one batch in the writer's hands: most must be dropped,
        // and every submit returns (a blocking write here would hang the test until its time limit).
        for i in 0..<total {
            sink.submit(Array("line \(String(i).leftPadded(5)) \(String(repeating: "y", count: 88))\n".utf8), lines: 1)
        }
        let dropped = sink.dropped
        #expect(dropped > total / 2)
        #expect(!sink.drain(timeoutSeconds: 0.2), "the drain gives up on a reader that does not read")

        // The reader comes back: what was kept arrives whole and in order, and kept + dropped = submitted.
        let received = Self.lines(Self.read(readEnd, atLeast: (total - dropped) * 100, within: 20))
        #expect(received.count == total - dropped)
        var last = -1
        for line in received {
            #expect(line.utf8.count == 99 && line.hasSuffix(String(repeating: "y", count: 88)))
            let n = Int(String(line.dropFirst(5).prefix(5).filter { $0 != " " }))!
            #expect(n > last)
            last = n
        }
        #expect(sink.drain(timeoutSeconds: 5), "drained once the reader reads")
        // Room again: a new line is kept.
        sink.submit(Array("after\n".utf8), lines: 1)
        #expect(Self.lines(Self.read(readEnd, atLeast: 6, within: 5)) == ["after"])
        #expect(sink.dropped == dropped)
    }

    /// The buffer holds `capacity` bytes in all, queued and being written; a batch that does not fit keeps the whole
    /// lines that do (a client could otherwise make one loop iteration's batch too big and drop all of it).
    @Test(.timeLimit(.minutes(1)))
    func aBatchLargerThanTheRoomKeepsTheWholeLinesThatFit() throws {
        let (readEnd, writeEnd) = Self.pipePair()
        defer { close(readEnd); close(writeEnd) }
        let sink = LogSink(fd: writeEnd, capacity: 16 * 1024)
        func line(_ tag: String, _ i: Int) -> String { "\(tag)\(i) \(String(repeating: "z", count: 997 - tag.count))" }
        func batch(_ tag: String) -> [UInt8] { (0..<10).flatMap { Array((line(tag, $0) + "\n").utf8) } }
        #expect(batch("a").count == 10_000)
        // The pipe full before anything is submitted: the writer cannot write a byte of the first batch.
        let filler = Array(String(repeating: "f", count: 4095).utf8) + [0x0A]
        #expect(filler.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) } == 4096)
        sink.submit(batch("a"), lines: 10)
        // 10 000 bytes held (queued, or with the stuck writer): room for 6 of the next 10.
        sink.submit(batch("b"), lines: 10)
        #expect(sink.dropped == 4)
        let lines = Self.lines(Self.read(readEnd, atLeast: 4096 + 16_000, within: 20))
        #expect(lines == [String(repeating: "f", count: 4095)] + (0..<10).map { line("a", $0) } + (0..<6).map { line("b", $0) })
    }

    /// stdout and stderr on one pipe (`2>&1`): each write is at most `PIPE_BUF` and ends at a line end, so the two
    /// writers' lines never interleave mid-line even when the pipe is full.
    @Test(.timeLimit(.minutes(1)))
    func twoSinksOnOnePipeNeverSplitALine() async throws {
        let (readEnd, writeEnd) = Self.pipePair()
        defer { close(readEnd); close(writeEnd) }
        let big = LogSink(fd: writeEnd), small = LogSink(fd: writeEnd)
        let bigLine = "{" + String(repeating: "A", count: 198) + "}\n", smallLine = "ERR something happened\n"
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for _ in 0..<100 { big.submit(Array(String(repeating: bigLine, count: 40).utf8), lines: 40) } }
            group.addTask { for _ in 0..<2000 { small.submit(Array(smallLine.utf8), lines: 1) } }
        }
        let total = 100 * 40 * bigLine.utf8.count + 2000 * smallLine.utf8.count
        let lines = Self.lines(Self.read(readEnd, atLeast: total, within: 30))
        #expect(lines.count == 6000)
        #expect(lines.filter { $0 + "\n" == bigLine }.count == 4000)
        #expect(lines.filter { $0 + "\n" == smallLine }.count == 2000)
    }

    /// A descriptor left non-blocking by whoever made it (a parent process): the writer waits for room instead of
    /// cutting a line and losing the rest of the batch.
    @Test(.timeLimit(.minutes(1)))
    func aNonBlockingDescriptorLosesNothing() throws {
        let (readEnd, writeEnd) = Self.pipePair()
        defer { close(readEnd); close(writeEnd) }
        _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) | O_NONBLOCK)
        let sink = LogSink(fd: writeEnd)
        func line(_ b: Int, _ i: Int) -> String { "batch \(b) line \(i + 1000) \(String(repeating: "q", count: 60))" }
        for b in 0..<10 {
            sink.submit((0..<100).flatMap { Array((line(b, $0) + "\n").utf8) }, lines: 100)
        }
        let expected = (0..<10).flatMap { b in (0..<100).map { line(b, $0) } }
        let lines = Self.lines(Self.read(readEnd, atLeast: expected.reduce(0) { $0 + $1.utf8.count + 1 }, within: 20))
        #expect(lines == expected)
        #expect(sink.dropped == 0)
    }

    /// A reader that went away (EPIPE): what could not be written is counted as dropped.
    @Test(.timeLimit(.minutes(1)))
    func linesThatCannotBeWrittenAreCountedAsDropped() throws {
        signal(SIGPIPE, SIG_IGN)  // as NIO sets it for the process
        let (readEnd, writeEnd) = Self.pipePair()
        close(readEnd)
        defer { close(writeEnd) }
        let sink = LogSink(fd: writeEnd)
        sink.submit(Array(String(repeating: "gone\n", count: 5).utf8), lines: 5)
        #expect(sink.drain(timeoutSeconds: 10))
        #expect(sink.dropped == 5)
    }

    @Test func textLinesEscapeControlCharactersSoAValueCannotForgeALine() {
        let line = TextLogLine.make(level: .warning, label: "authjs-sidecar", message: "bad\nthing",
                                    metadata: [("path", "/a\r\n2026-01-01T00:00:00.000Z error forged: x"), ("why", "tab\there\\ \u{7F}\u{1}é")])
        let text = String(decoding: line, as: UTF8.self)
        #expect(line.filter { $0 == 0x0A }.count == 1 && line.last == 0x0A)
        #expect(text.dropFirst(24) == #" warning authjs-sidecar: bad\nthing path="/a\r\n2026-01-01T00:00:00.000Z error forged: x" why="tab\there\\ \x7f\x01é""# + "\n")
        // Quoted too: a backslash or an escaped control byte alone (a logfmt reader takes an unquoted value literally).
        var out: [UInt8] = []
        TextLogLine.appendField("a", #"x\y"#, to: &out)
        TextLogLine.appendField("b", "x\u{1}", to: &out)
        TextLogLine.appendField("c", "", to: &out)
        TextLogLine.appendField("d", "plain/path-1.2", to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #" a="x\\y" b="x\x01" c="" d=plain/path-1.2"#)
    }

    /// A client's `tracestate` (printable ASCII with spaces) stays one quoted value: `a=1 status=200` cannot read as a
    /// second `status` field to a logfmt parser.
    @Test func aValueWithSpacesOrEqualsSignsIsQuoted() throws {
        let log = AccessLog(logger: Logger(label: "t") { SinkLogHandler(label: $0, sink: LogSink(fd: -1), level: .info) },
                            format: "text", enabled: true)
        let trace = try #require(AccessLog.Trace(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                                 tracestate: "a=1 status=200 outcome=ok"))
        let line = try #require(log.line(requestID: "r1", method: "GET", path: "/admin", status: 403, outcome: "denied",
                                         start: .now(), upstreamStart: nil, trace: trace))
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.hasSuffix(#" tracestate="a=1 status=200 outcome=ok""# + "\n"))
        let unquoted = text.replacingOccurrences(of: #""a=1 status=200 outcome=ok""#, with: "")
        #expect(unquoted.components(separatedBy: " status=").count == 2, "one status field outside the quoted value")
    }

    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (1_764_067_267_123, "2025-11-25T10:41:07.123Z"),
        (951_782_400_999, "2000-02-29T00:00:00.999Z"),
        (4_102_444_799_500, "2099-12-31T23:59:59.500Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ])
    func timestampsAreUTCWithMilliseconds(milliseconds: Int64, expected: String) {
        var out: [UInt8] = []
        TextLogLine.appendTimestamp(milliseconds: milliseconds, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == expected)
    }

    @Test func accessLinesInTextFormatFollowTheLogLevel() throws {
        let info = Logger(label: "t") { SinkLogHandler(label: $0, sink: LogSink(fd: -1), level: .info) }
        var warning = info
        warning.logLevel = .warning
        let start = NIODeadline.now()
        let text = AccessLog(logger: info, format: "text", enabled: true)
        let line = try #require(text.line(requestID: "r1", method: "GET", path: "/a b?token=secret", status: 200, outcome: "ok",
                                          start: start, upstreamStart: nil))
        let fields = String(decoding: line, as: UTF8.self).split(separator: " ").dropFirst(2)
        #expect(fields.prefix(6).map(String.init) == ["authjs-sidecar:", "access", "request_id=r1", "method=GET", #"path="/a"#, #"b""#])
        #expect(fields.dropFirst(6).first == "status=200")
        #expect(!String(decoding: line, as: UTF8.self).contains("secret"), "no query string")
        #expect(AccessLog(logger: warning, format: "text", enabled: true).line(
            requestID: "r1", method: "GET", path: "/", status: 200, outcome: "ok", start: start, upstreamStart: nil) == nil,
            "text access lines are info lines")
        #expect(AccessLog(logger: warning, format: "json", enabled: true).line(
            requestID: "r1", method: "GET", path: "/", status: 200, outcome: "ok", start: start, upstreamStart: nil) != nil,
            "JSON access lines do not depend on the text log level")
        #expect(AccessLog(logger: info, format: "json", enabled: false).line(
            requestID: "r1", method: "GET", path: "/", status: 200, outcome: "ok", start: start, upstreamStart: nil) == nil)
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
