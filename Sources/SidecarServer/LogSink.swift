#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Writes log lines to a descriptor from a thread of its own, so a log reader that stops reading (a full pipe, a
/// paused journald, `sidecar | less` left open) never blocks an event loop: lines wait in a bounded buffer, and while
/// it is full new lines are dropped and counted (`authjs_sidecar_log_lines_dropped_total`). A blocking `write(2)`
/// per line stalled every loop and the shutdown behind a stuck stdout (found in review; nginx blocks the same way).
///
/// The event loops hand over their access lines once per loop iteration (``LogBatch``), so the lock is taken per
/// batch, not per request; other log lines (rare: start-up, warnings, errors) are handed over one at a time.
public final class LogSink: @unchecked Sendable {
    /// The process's stdout (JSON access lines) and stderr (text logs), each with its own writer: a stalled one does
    /// not hold the other.
    public static let standardOutput = LogSink(fd: 1)
    public static let standardError = LogSink(fd: 2)

    /// Bytes held for the writer in all (queued and being written): ~1 MiB is several thousand access lines, seconds
    /// of a busy sidecar's log.
    public static let defaultCapacity = 1 << 20
    /// The most one `write(2)` carries: on a pipe, writes up to `PIPE_BUF` are atomic, so lines from stdout's and
    /// stderr's writers sharing one pipe (`2>&1`, systemd's `StandardError=inherit`) never interleave mid-line.
    static let atomicWrite = 4096

    /// The writer's phase, the condition the lock waits on.
    private enum Phase: Int {
        case idle = 0, pending = 1, writing = 2
    }

    let fd: Int32
    let capacity: Int
    private let lock = ConditionLock(value: Phase.idle.rawValue)
    // Guarded by `lock`.
    private var pending: [UInt8] = []
    private var droppedLines = 0
    /// Bytes of the batch the writer holds (counted against `capacity` with `pending`).
    private var inFlight = 0
    private var writerStarted = false
    /// No writer thread could be made (resource limits): lines are written in place, as before — slower, still correct.
    private var writesInPlace = false
    /// The lock's value, readable with the lock held (`ConditionLock.value` takes the lock itself).
    private var phase = Phase.idle

    public init(fd: Int32, capacity: Int = LogSink.defaultCapacity) {
        self.fd = fd
        self.capacity = capacity
    }

    /// Lines dropped so far because the buffer was full.
    public var dropped: Int {
        lock.lock()
        defer { lock.unlock() }
        return droppedLines
    }

    /// Queues `bytes` (`lines` whole lines, each ending in a newline; what is kept is counted by its newlines) for the
    /// writer: the whole lines that fit in what is left of the buffer; the rest are dropped and counted. Never blocks
    /// on the descriptor.
    public func submit(_ bytes: UnsafeRawBufferPointer, lines: Int) {
        guard !bytes.isEmpty else { return }
        lock.lock()
        if !writerStarted { startWriter() }
        if writesInPlace {
            lock.unlock()
            SystemIO.writeAll(bytes, fd: fd)
            return
        }
        let room = capacity - pending.count - inFlight
        var kept = bytes.count
        if kept > room {
            // Up to the last line end that fits.
            kept = room > 0 ? (bytes[..<room].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) : 0
            let keptLines = bytes[..<kept].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            droppedLines += max(0, lines - keptLines)
            guard kept > 0 else {
                lock.unlock()
                return
            }
        }
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[..<kept]))
        // Only an idle writer waits on the condition; a writing one looks at `pending` when its write returns.
        if phase == .idle { unlock(setting: .pending) } else { lock.unlock() }
    }

    public func submit(_ bytes: [UInt8], lines: Int) {
        bytes.withUnsafeBytes { submit($0, lines: lines) }
    }

    /// Waits up to `timeoutSeconds` for everything queued to be written (at shutdown); false when the reader is
    /// still not reading then — the process exits without the rest rather than hang on it.
    @discardableResult
    public func drain(timeoutSeconds: Double) -> Bool {
        guard lock.lock(whenValue: Phase.idle.rawValue, timeoutSeconds: timeoutSeconds) else { return false }
        lock.unlock()
        return true
    }

    /// Drains stdout's and stderr's writers within one shared deadline.
    public static func drainStandardStreams(timeoutSeconds: Double) {
        let deadline = SystemIO.wallClock() + timeoutSeconds
        for sink in [standardOutput, standardError] {
            sink.drain(timeoutSeconds: max(0, deadline - SystemIO.wallClock()))
        }
    }

    /// Called with the lock held.
    private func startWriter() {
        writerStarted = true
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let made = pthread_create(&thread, nil, { raw in
            let sink = Unmanaged<LogSink>.fromOpaque(raw!).takeRetainedValue()
            sink.writeForever()
            return nil
        }, context)
        if made == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<LogSink>.fromOpaque(context).release()
            writesInPlace = true
        }
    }

    private func writeForever() {
        var batch: [UInt8] = []
        while true {
            lock.lock(whenValue: Phase.pending.rawValue)
            swap(&batch, &pending)  // the emptied buffer goes back with its capacity
            inFlight = batch.count
            unlock(setting: .writing)
            let lost = batch.withUnsafeBytes { writeLines($0) }
            batch.removeAll(keepingCapacity: batch.capacity <= 4 * 65536)
            lock.lock()
            inFlight = 0
            droppedLines += lost
            unlock(setting: pending.isEmpty ? .idle : .pending)
        }
    }

    /// Writes whole lines in writes of at most ``atomicWrite`` bytes (a longer line goes alone), waiting while a
    /// non-blocking descriptor is full. On an error (a closed pipe, a bad descriptor) gives up on the rest and returns
    /// how many lines that lost.
    private func writeLines(_ bytes: UnsafeRawBufferPointer) -> Int {
        var start = 0
        while start < bytes.count {
            var end = min(bytes.count, start + Self.atomicWrite)
            if end < bytes.count {
                // The last line end in the window, or the end of the one long line starting at `start`.
                if let last = bytes[start..<end].lastIndex(of: 0x0A) {
                    end = last + 1
                } else {
                    end = bytes[end...].firstIndex(of: 0x0A).map { $0 + 1 } ?? bytes.count
                }
            }
            var offset = start
            while offset < end {
                let n = write(fd, bytes.baseAddress! + offset, end - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    var waiter = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&waiter, 1, 1000)
                } else {
                    // The line cut short counts as lost with the rest.
                    let lineStart = bytes[start..<offset].lastIndex(of: 0x0A).map { $0 + 1 } ?? start
                    return bytes[lineStart...].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                }
            }
            // What is written no longer takes room: a slow reader draining a large batch frees it as it goes.
            lock.lock()
            inFlight -= end - start
            lock.unlock()
            start = end
        }
        return 0
    }

    private func unlock(setting next: Phase) {
        phase = next
        lock.unlock(withValue: next.rawValue)
    }
}

/// One event loop's access lines of the current loop iteration, handed to a ``LogSink`` in one piece after the
/// iteration's I/O (one lock per iteration, however many requests it finished). Confined to its event loop.
final class LogBatch: @unchecked Sendable {
    let eventLoop: EventLoop
    let sink: LogSink
    @exclusivity(unchecked) private var bytes: [UInt8] = []
    @exclusivity(unchecked) private var lines = 0

    init(eventLoop: EventLoop, sink: LogSink) {
        self.eventLoop = eventLoop
        self.sink = sink
    }

    /// Bytes after which a batch is handed over at once: one loop iteration can finish thousands of pipelined requests
    /// (a client's 256 KiB of 28-byte requests, all answered locally), and a batch larger than the sink's room would
    /// lose every line that does not fit — a client could drop its own lines from the log (found in review).
    static let handOverBytes = 65536

    /// Adds one line, which `write` appends in place (ending in a newline); the first of an iteration schedules the
    /// hand-over.
    func append(_ write: (inout [UInt8]) -> Void) {
        if lines == 0 { eventLoop.execute { self.flush() } }
        write(&bytes)
        lines += 1
        if bytes.count >= Self.handOverBytes { flush() }
    }

    func flush() {
        guard lines > 0 else { return }
        sink.submit(bytes, lines: lines)
        bytes.removeAll(keepingCapacity: bytes.capacity <= 2 * Self.handOverBytes)
        lines = 0
    }
}

/// Text log lines: `2026-11-25T10:41:07.123Z notice authjs-sidecar: message key=value …`, one per line, with control
/// characters in the message and values escaped (a newline in a logged value cannot forge a second line).
enum TextLogLine {
    static func make(level: Logger.Level, label: String, message: String, metadata: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        appendPrefix(level: level, label: label, message: message, to: &out)
        for (key, value) in metadata { appendField(key, value, to: &out) }
        out.append(0x0A)
        return out
    }

    /// `<timestamp> <level> <label>: <message>`, escaped.
    static func appendPrefix(level: Logger.Level, label: String, message: String, to out: inout [UInt8]) {
        appendTimestamp(milliseconds: SystemIO.wallClockMilliseconds(), to: &out)
        out.append(0x20)
        out.append(contentsOf: level.rawValue.utf8)
        out.append(0x20)
        appendEscaped(label, to: &out)
        out.append(contentsOf: ": ".utf8)
        appendEscaped(message, to: &out)
    }

    /// ` key=value`, escaped; a value with a space, `=` or `"` in it is quoted as logfmt does (`key="a b"`, inner `"` as
    /// `\"`), so a client-supplied value such as a `tracestate` cannot add a field of its own (found in review).
    static func appendField(_ key: String, _ value: String, to out: inout [UInt8]) {
        out.append(0x20)
        appendEscaped(key, to: &out)
        out.append(UInt8(ascii: "="))
        // A backslash or escaped control byte is quoted too: logfmt readers take an unquoted value literally.
        let quoted = value.isEmpty || value.utf8.contains {
            $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "\"") || $0 == 0x5C
        }
        if quoted { out.append(UInt8(ascii: "\"")) }
        appendEscaped(value, quotes: quoted, to: &out)
        if quoted { out.append(UInt8(ascii: "\"")) }
    }

    /// ISO 8601 in UTC with milliseconds.
    static func appendTimestamp(milliseconds: Int64, to out: inout [UInt8]) {
        var whole = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let millis = Int(milliseconds - Int64(whole) * 1000)
        var parts = tm()
        gmtime_r(&whole, &parts)
        func digits(_ value: Int, _ count: Int) {
            var divisor = 1
            for _ in 1..<count { divisor *= 10 }
            var value = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                value %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4); out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2); out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2); out.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2); out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2); out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2); out.append(UInt8(ascii: "."))
        digits(millis, 3); out.append(UInt8(ascii: "Z"))
    }

    /// Bytes below 0x20 and DEL as `\n`, `\r`, `\t` or `\xHH`, the backslash doubled, and with `quotes` the double
    /// quote as `\"`; the rest as is.
    static func appendEscaped(_ text: String, quotes: Bool = false, to out: inout [UInt8]) {
        @inline(__always) func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x57 + nibble }
        for byte in text.utf8 {
            switch byte {
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x22 where quotes: out.append(0x5C); out.append(0x22)
            case 0..<0x20, 0x7F:
                out.append(0x5C); out.append(UInt8(ascii: "x")); out.append(hexDigit(byte >> 4)); out.append(hexDigit(byte & 15))
            default: out.append(byte)
            }
        }
    }
}

/// The swift-log handler of `serve`: text lines (``TextLogLine``) through a ``LogSink``, never a blocking write on the
/// logging thread.
public struct SinkLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let sink: LogSink

    public init(label: String, sink: LogSink, level: Logger.Level) {
        self.label = label
        self.sink = sink
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let own = event.metadata { all.merge(own) { _, new in new } }
        let pairs = all.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") }
        sink.submit(TextLogLine.make(level: event.level, label: label, message: "\(event.message)", metadata: pairs), lines: 1)
    }
}
