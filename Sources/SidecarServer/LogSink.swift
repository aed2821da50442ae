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

    /// Bytes that may wait for the writer: ~1 MiB is several thousand access lines, seconds of a busy sidecar's log.
    public static let defaultCapacity = 1 << 20

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

    /// Queues `bytes` (`lines` whole lines, each ending in a newline) for the writer, or drops them all when they do
    /// not fit in what is left of the buffer. Never blocks on the descriptor.
    public func submit(_ bytes: UnsafeRawBufferPointer, lines: Int) {
        guard !bytes.isEmpty else { return }
        lock.lock()
        if !writerStarted { startWriter() }
        if writesInPlace {
            lock.unlock()
            SystemIO.writeAll(bytes, fd: fd)
            return
        }
        guard pending.count + bytes.count <= capacity else {
            droppedLines += lines
            lock.unlock()
            return
        }
        pending.append(contentsOf: bytes)
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
            unlock(setting: .writing)
            batch.withUnsafeBytes { SystemIO.writeAll($0, fd: fd) }
            batch.removeAll(keepingCapacity: batch.capacity <= 4 * 65536)
            lock.lock()
            unlock(setting: pending.isEmpty ? .idle : .pending)
        }
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

    /// Adds one line (its bytes end in a newline); the first of an iteration schedules the hand-over.
    func append(_ line: [UInt8]) {
        if lines == 0 { eventLoop.execute { self.flush() } }
        bytes.append(contentsOf: line)
        lines += 1
    }

    func flush() {
        sink.submit(bytes, lines: lines)
        bytes.removeAll(keepingCapacity: bytes.capacity <= 65536)
        lines = 0
    }
}

/// Text log lines: `2026-11-25T10:41:07.123Z notice authjs-sidecar: message key=value …`, one per line, with control
/// characters in the message and values escaped (a newline in a logged value cannot forge a second line).
enum TextLogLine {
    static func make(level: Logger.Level, label: String, message: String, metadata: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        appendTimestamp(SystemIO.wallClock(), to: &out)
        out.append(0x20)
        out.append(contentsOf: level.rawValue.utf8)
        out.append(0x20)
        appendEscaped(label, to: &out)
        out.append(contentsOf: ": ".utf8)
        appendEscaped(message, to: &out)
        for (key, value) in metadata {
            out.append(0x20)
            appendEscaped(key, to: &out)
            out.append(UInt8(ascii: "="))
            appendEscaped(value, to: &out)
        }
        out.append(0x0A)
        return out
    }

    /// ISO 8601 in UTC with milliseconds.
    static func appendTimestamp(_ seconds: Double, to out: inout [UInt8]) {
        var whole = time_t(seconds.rounded(.down))
        let millis = min(999, Int((seconds - Double(whole)) * 1000))
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

    /// Bytes below 0x20 and DEL as `\n`, `\r`, `\t` or `\xHH`, and the backslash doubled; the rest as is.
    static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        for byte in text.utf8 {
            switch byte {
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0..<0x20, 0x7F: out.append(contentsOf: [0x5C, UInt8(ascii: "x"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
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
