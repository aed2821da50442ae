import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte-level pieces of HTTP/1 message parsing shared by ``ClientRequestParser`` and ``UpstreamResponseParser``: the
/// end of a header block, field lines (validated, as ranges), the framing fields, chunk-size lines. One reading of
/// the bytes on both sides of the proxy, so neither can be fooled where the other is not.
enum HTTPScan {
    /// The length of the bytes up to and including the first CRLF CRLF (or, with `fromLineStart`, a leading CRLF
    /// ends an empty block); `nil` if it is not within `limit` bytes; -1 at a bare LF, so a head that will never have
    /// its CRLF CRLF fails at once instead of waiting for the upstream timeout.
    static func lengthThroughEmptyLine(_ buffer: ByteBuffer, limit: Int, fromLineStart: Bool = false) -> Int? {
        var resume = 0
        return lengthThroughEmptyLine(buffer, limit: limit, fromLineStart: fromLineStart, resumeAt: &resume)
    }

    /// The same, starting at `resumeAt` — the start of the first line a previous call with the same block start did
    /// not see whole — and leaving there the start of the last incomplete line when the block has not all come.
    /// Rescanning from the block's start on every read made a client trickling a 60 KB head of short lines a byte at a
    /// time cost ~45 % of a core (found in review); now each byte is scanned about once.
    static func lengthThroughEmptyLine(_ buffer: ByteBuffer, limit: Int, fromLineStart: Bool = false, resumeAt: inout Int) -> Int? {
        let start = resumeAt
        var next = start
        defer { resumeAt = next }
        return buffer.withUnsafeReadableBytes { bytes in
            let end = min(bytes.count, limit)
            guard let base = bytes.baseAddress, end > 0, start <= end else { return nil }
            if start == 0, fromLineStart, end >= 2, bytes[0] == 0x0D, bytes[1] == 0x0A { return 2 }
            // Line by line with memchr (vectorised in libc): a head is a few lines, one of them a kilobyte of cookie.
            var index = start
            while index < end {
                guard let found = memchr(base + index, 0x0A, end - index) else { next = index; return nil }
                let lf = base.distance(to: UnsafeRawPointer(found))
                guard lf >= 1, bytes[lf - 1] == 0x0D else { return -1 }
                if lf >= 3, bytes[lf - 2] == 0x0A, bytes[lf - 3] == 0x0D { return lf + 1 }
                index = lf + 1
            }
            next = index
            return nil
        }
    }

    /// Whether any of eight bytes may be one a field value cannot hold: below 0x20 (HTAB, which it can, is then
    /// rechecked byte by byte) or DEL. obs-text (0x80–0xFF) has its high bit set and is never flagged. The "hasless" and
    /// "haszero" word tests of *Bit Twiddling Hacks*: they may flag a clean word (only slower), never miss a byte.
    @inline(__always)
    static func mayHoldNonValueByte(_ word: UInt64) -> Bool { nonValueFlags(word) != 0 }

    /// The high bit of each byte ``mayHoldNonValueByte(_:)`` flags: words can be OR-ed and tested once. In a word
    /// loaded little-endian, the lowest flagged byte is always one below 0x20 or DEL (only a flagged byte borrows
    /// from the ones above it), so the bytes before it need no second look.
    @inline(__always)
    static func nonValueFlags(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let below20 = (word &- ones &* 0x20) & ~word & highs
        let del = word ^ (ones &* 0x7F)
        let isDel = (del &- ones) & ~del & highs
        return below20 | isDel
    }

    /// A connection's field-range array, reused from one head to the next. Each head's ranges (and each list of the
    /// ranges kept for the other side) would be an allocation, a free and their reference counting; by the next head
    /// the previous one has been relayed and let its array go, so the same storage is refilled in place. Value
    /// semantics keep it safe: while a head still holds the array, emptying it makes a new one (copy on write).
    struct ReusedRanges {
        private var spare: [FieldRange] = []
        /// Room for a typical head without growing; a head of more fields grows it (kept up to ``maxKept``).
        static let initialCapacity = 16
        /// A head of many tiny fields does not leave a large array with its connection.
        static let maxKept = 64

        /// An empty array: the spare one, unless nothing was kept yet.
        mutating func take() -> [FieldRange] {
            var ranges: [FieldRange] = []
            swap(&ranges, &spare)
            ranges.removeAll(keepingCapacity: true)
            if ranges.capacity < Self.initialCapacity { ranges.reserveCapacity(Self.initialCapacity) }
            return ranges
        }

        /// Keeps `ranges` (shared with the head that holds them) for the next ``take()``.
        mutating func keep(_ ranges: [FieldRange]) {
            spare = ranges.capacity <= Self.maxKept ? ranges : []
        }
    }

    /// A connection's buffer for the heads it serialises, reused from one to the next: a `ByteBuffer` is two
    /// allocations (its storage object and its bytes) and two frees. Once NIO has written a head and let it go, the
    /// next head is written into the same storage (`clear(minimumCapacity:)`: in place when nothing else holds it,
    /// else a new one — copy on write keeps a head still queued for the socket intact). A buffer of more than
    /// ``maxKept`` bytes (a whole response with its body) is not kept.
    struct ReusedBuffer {
        private var spare = ByteBuffer()
        static let maxKept = 4096

        /// The spare buffer (empty `ByteBuffer()` until one is kept), for `clear(minimumCapacity:)` and writing.
        mutating func take() -> ByteBuffer {
            var buffer = ByteBuffer()
            swap(&buffer, &spare)
            return buffer
        }

        /// Keeps `buffer` (shared with whatever writes it) for the next ``take()``.
        mutating func keep(_ buffer: ByteBuffer) {
            if buffer.capacity <= Self.maxKept { spare = buffer }
        }
    }

    struct FieldBlock {
        var ranges: [FieldRange] = []
        var contentLength: Int?
        var contentLengthConflict = false
        var transferEncodings = 0
        var transferEncodingIsChunked = false
        /// A `Transfer-Encoding` value holds a tab: OWS to RFC 9110, not to llhttp (`chunked<HTAB>` is no `chunked`).
        var transferEncodingHasTab = false
        var connectionClose = false
        var connectionKeepAlive = false
        var connectionUpgrade = false
        var hasUpgrade = false
    }

    /// Parses field lines from `index` through the empty line that ends the block; returns an error text or `nil`.
    static func parseFields(_ bytes: UnsafeRawBufferPointer, from index: inout Int, into block: inout FieldBlock) -> String? {
        // The byte-class table read once (a lazy global: each access would check its initialisation); the position
        // kept in a local and written back once, the base address unwrapped once — the loops below run for every
        // byte of both heads.
        let classes = ClientResponseEncoder.byteClasses
        let notInName = ClientResponseEncoder.notInName, notInValue = ClientResponseEncoder.notInValue
        guard let p = bytes.baseAddress else { return "field block without its empty line" }
        let count = bytes.count
        var i = index
        defer { index = i }
        while true {
            guard i &+ 1 < count else { return "field block without its empty line" }
            if p.load(fromByteOffset: i, as: UInt8.self) == 0x0D {
                guard p.load(fromByteOffset: i &+ 1, as: UInt8.self) == 0x0A else { return "bare CR" }
                i &+= 2
                return nil
            }
            // Name: one or more token characters, then ':' at once (no whitespace before it, RFC 9112 §5.1).
            let nameStart = i
            while i < count, classes[Int(p.load(fromByteOffset: i, as: UInt8.self))] & notInName == 0 { i &+= 1 }
            guard i > nameStart else {
                let byte = p.load(fromByteOffset: i, as: UInt8.self)
                return byte == 0x20 || byte == 0x09 ? "obsolete line folding" : "invalid field name"
            }
            guard i < count, p.load(fromByteOffset: i, as: UInt8.self) == UInt8(ascii: ":") else { return "invalid field name" }
            let nameEnd = i
            i &+= 1
            while i < count, p.load(fromByteOffset: i, as: UInt8.self) == 0x20 || p.load(fromByteOffset: i, as: UInt8.self) == 0x09 {
                i &+= 1
            }
            let valueStart = i
            // Value bytes up to the CR: HTAB, SP, VCHAR, obs-text — 32 and then 8 at a time while none can be anything
            // else (a session cookie is most of a request's bytes), else one table load each; then trailing
            // whitespace off.
            while true {
                while i &+ 32 <= count {
                    let flags = nonValueFlags(p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                        | nonValueFlags(p.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self))
                        | nonValueFlags(p.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self))
                        | nonValueFlags(p.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self))
                    if flags != 0 { break }
                    i &+= 32
                }
                // The lowest flagged byte of a word is a true one (the tests' borrows run upwards only): the bytes
                // before it are value bytes, skipped at once.
                while i &+ 8 <= count {
                    let flags = nonValueFlags(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                    if flags != 0 { i &+= flags.trailingZeroBitCount &>> 3; break }
                    i &+= 8
                }
                guard i < count else { break }
                let byte = p.load(fromByteOffset: i, as: UInt8.self)
                if classes[Int(byte)] & notInValue != 0 {
                    if byte == 0x0D { break }
                    return byte == 0x0A ? "bare LF" : "control byte in a field value"
                }
                i &+= 1
            }
            guard i &+ 1 < count, p.load(fromByteOffset: i &+ 1, as: UInt8.self) == 0x0A else { return "bare CR" }
            // llhttp reads the framing fields with trailing spaces trimmed but not tabs (`Content-Length: 1<HTAB>` is
            // refused, `chunked<HTAB>` is no `chunked`): those fields are read the same way here (found by the
            // `client-request` fuzz target), the value relayed is trimmed of both.
            var framingEnd = i
            while framingEnd > valueStart, p.load(fromByteOffset: framingEnd &- 1, as: UInt8.self) == 0x20 { framingEnd &-= 1 }
            var valueEnd = framingEnd
            while valueEnd > valueStart, p.load(fromByteOffset: valueEnd &- 1, as: UInt8.self) == 0x20
                    || p.load(fromByteOffset: valueEnd &- 1, as: UInt8.self) == 0x09 {
                valueEnd &-= 1
            }
            i &+= 2
            let name = UnsafeRawBufferPointer(start: p + nameStart, count: nameEnd &- nameStart)
            noteFraming(name: name, value: UnsafeRawBufferPointer(start: p + valueStart, count: framingEnd &- valueStart), in: &block)
            block.ranges.append(FieldRange(nameStart: Int32(nameStart), nameCount: Int32(nameEnd - nameStart),
                                           valueStart: Int32(valueStart), valueCount: Int32(valueEnd - valueStart)))
        }
    }

    /// Records what the framing depends on: `Content-Length`, `Transfer-Encoding`, `Connection`, `Upgrade`.
    static func noteFraming(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, in block: inout FieldBlock) {
        switch name.count {
        case 14 where equalsLowercase(name, "content-length"):
            var length = 0
            guard value.count > 0, value.count <= 18 else { block.contentLengthConflict = true; return }
            for byte in value {
                guard byte >= 0x30 && byte <= 0x39 else { block.contentLengthConflict = true; return }
                length = length * 10 + Int(byte - 0x30)
            }
            // A second copy is refused even when equal, as nginx and llhttp refuse it.
            if block.contentLength != nil { block.contentLengthConflict = true }
            block.contentLength = length
        case 17 where equalsLowercase(name, "transfer-encoding"):
            block.transferEncodings += 1
            block.transferEncodingIsChunked = equalsLowercase(value, "chunked")
            if value.contains(0x09) { block.transferEncodingHasTab = true }
        case 10 where equalsLowercase(name, "connection"):
            forEachToken(value) { token in
                if equalsLowercase(token, "close") { block.connectionClose = true }
                if equalsLowercase(token, "keep-alive") { block.connectionKeepAlive = true }
                if equalsLowercase(token, "upgrade") { block.connectionUpgrade = true }
            }
        case 7 where equalsLowercase(name, "upgrade"):
            block.hasUpgrade = true
        default:
            break
        }
    }

    /// `s` starts with `prefix`, byte for byte (never `hasPrefix`: that compares Characters, canonically). One
    /// `memcmp` over contiguous bytes, against a prefix made into bytes once at start-up (the generic
    /// `utf8.starts(with:)` cost ~170 instructions a call; copying both strings into `withUTF8`, ~120).
    static func hasBytePrefix(_ s: String, _ prefix: [UInt8]) -> Bool {
        s.utf8.withContiguousStorageIfAvailable { a in
            prefix.withUnsafeBufferPointer { b in
                a.count >= b.count && (b.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, b.count) == 0)
            }
        } ?? s.utf8.starts(with: prefix)
    }

    /// `HeaderClass.equalsLower` (ASCII case-insensitive against a lower-case literal) on raw bytes.
    @inline(__always)
    static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        HeaderClass.equalsLower(UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count),
                                lowercase)
    }

    /// Calls `body` with each comma-separated token of a list value, leading whitespace and trailing spaces trimmed (a
    /// token followed by a tab is not recognised, as llhttp does not recognise it).
    static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        for index in 0...value.count where index == value.count || value[index] == UInt8(ascii: ",") {
            var lower = start, upper = index
            while lower < upper, value[lower] == 0x20 || value[lower] == 0x09 { lower += 1 }
            while upper > lower, value[upper - 1] == 0x20 { upper -= 1 }
            if upper > lower { body(UnsafeRawBufferPointer(rebasing: value[lower..<upper])) }
            start = index + 1
        }
    }

    /// A chunk-size line without its CRLF: hex digits, then optional extensions `;name[=token|"quoted"]` (ignored)
    /// with no whitespace anywhere — the RFC's BWS is refused, as llhttp refuses it, so both read the same lines.
    static func chunkSize(_ line: UnsafeRawBufferPointer) -> Int? {
        var size = 0
        var index = 0
        while index < line.count, let digit = hexValue(line[index]) {
            guard size <= (Int.max >> 4) else { return nil }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0, index <= 16 else { return nil }
        while index < line.count {
            guard line[index] == UInt8(ascii: ";") else { return nil }
            index += 1
            guard skipToken(line, &index) else { return nil }
            guard index < line.count, line[index] == UInt8(ascii: "=") else { continue }
            index += 1
            if index < line.count, line[index] == UInt8(ascii: "\"") {
                guard skipQuotedString(line, &index) else { return nil }
            } else {
                guard skipToken(line, &index) else { return nil }
            }
        }
        return size
    }

    /// Moves past one or more token characters; false if there is none.
    static func skipToken(_ line: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
        let start = index
        while index < line.count, ClientResponseEncoder.byteClasses[Int(line[index])] & ClientResponseEncoder.notInName == 0 { index += 1 }
        return index > start
    }

    /// Moves past a quoted-string (RFC 9110 §5.6.4) starting at its opening quote; false if it is malformed or open.
    static func skipQuotedString(_ line: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
        index += 1
        while index < line.count {
            let byte = line[index]
            if byte == UInt8(ascii: "\"") { index += 1; return true }
            if byte == UInt8(ascii: "\\") {
                index += 1
                guard index < line.count else { return false }
            }
            guard ClientResponseEncoder.isValueByte(line[index]) else { return false }
            index += 1
        }
        return false
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}

/// Why bytes were refused, in words for the log and the error body (each parser wraps it in its own error type).
struct HTTPFramingRefusal: Error {
    let reason: String
}

/// Reads one chunked body (RFC 9112 §7.1) as a pure state machine: data as slices of the input, then the end with any
/// trailers. Shared by both parsers, so a request body and a response body end at the same byte by the same rules:
/// chunk-size lines strict (hex digits, extensions without whitespace, CRLF), at most ``maxLineBytes``; the CRLF
/// after each chunk's data; trailers validated like a head, at most `maxTrailerBytes`, no framing fields in them
/// (RFC 9110 §6.5.1; llhttp refuses them too).
struct ChunkedBodyReader {
    enum Step {
        case body(ByteBuffer)
        /// The body's end, its trailers if any, and whether they said `Connection: close` (llhttp then ends the
        /// connection after the message, and so does each parser).
        case end(HTTPHeaders?, connectionClose: Bool)
        /// The rest of `input` is an incomplete line: the caller keeps it for the next read.
        case needMore
    }

    /// Longest chunk-size line, extensions included.
    static let maxLineBytes = 4 * 1024

    private enum State {
        case size
        case data(remaining: Int)
        /// The CRLF after a chunk's data.
        case dataEnd
        case trailers
    }

    private var state = State.size
    /// Where the search for the trailers' end resumes on the next read (see ``HTTPScan/lengthThroughEmptyLine``).
    private var trailerScan = 0

    /// The next step from `input` (consuming what it used). After `.end` the reader is ready for another body.
    mutating func next(_ input: inout ByteBuffer, maxTrailerBytes: Int) throws(HTTPFramingRefusal) -> Step {
        while true {
            switch state {
            case .size:
                guard let lineLength = try Self.line(input, limit: Self.maxLineBytes, what: "chunk-size line") else { return .needMore }
                let size: Int? = input.withUnsafeReadableBytes { bytes in
                    HTTPScan.chunkSize(UnsafeRawBufferPointer(rebasing: bytes[0..<(lineLength - 2)]))
                }
                guard let size else { throw HTTPFramingRefusal(reason: "invalid chunk-size line") }
                input.moveReaderIndex(forwardBy: lineLength)
                state = size == 0 ? .trailers : .data(remaining: size)
            case .data(let remaining):
                guard input.readableBytes > 0 else { return .needMore }
                let count = min(remaining, input.readableBytes)
                state = count == remaining ? .dataEnd : .data(remaining: remaining - count)
                return .body(input.readSlice(length: count)!)
            case .dataEnd:
                guard input.readableBytes >= 2 else { return .needMore }
                guard input.readInteger(as: UInt16.self) == 0x0D0A else { throw HTTPFramingRefusal(reason: "chunk data not followed by CRLF") }
                state = .size
            case .trailers:
                guard let (trailers, close) = try Self.trailers(&input, limit: maxTrailerBytes, resumeAt: &trailerScan) else { return .needMore }
                state = .size
                trailerScan = 0
                return .end(trailers.isEmpty ? nil : trailers, connectionClose: close)
            }
        }
    }

    /// The length of the CRLF-terminated line at the start of `input`, or `nil` if it has not all come.
    private static func line(_ input: ByteBuffer, limit: Int, what: String) throws(HTTPFramingRefusal) -> Int? {
        let length: Int? = input.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count {
                if bytes[index] == 0x0A { return index + 1 }
                index += 1
            }
            return nil
        }
        guard let length else {
            if input.readableBytes > limit { throw HTTPFramingRefusal(reason: "\(what) over \(limit) bytes") }
            return nil
        }
        guard length <= limit else { throw HTTPFramingRefusal(reason: "\(what) over \(limit) bytes") }
        guard length >= 2, input.getInteger(at: input.readerIndex + length - 2, as: UInt8.self) == 0x0D else {
            throw HTTPFramingRefusal(reason: "bare LF in a \(what)")
        }
        return length
    }

    /// The trailer block after the last chunk (empty: none) and whether it says `Connection: close`, or `nil` if it
    /// has not all come.
    private static func trailers(_ input: inout ByteBuffer, limit: Int, resumeAt: inout Int) throws(HTTPFramingRefusal) -> (HTTPHeaders, Bool)? {
        // The common case: no trailers, the last chunk's CRLF at once.
        if input.readableBytes >= 2, input.getInteger(at: input.readerIndex, as: UInt16.self) == 0x0D0A {
            input.moveReaderIndex(forwardBy: 2)
            return (HTTPHeaders(), false)
        }
        guard let length = HTTPScan.lengthThroughEmptyLine(input, limit: limit, fromLineStart: true, resumeAt: &resumeAt) else {
            if input.readableBytes > limit { throw HTTPFramingRefusal(reason: "trailers over \(limit) bytes") }
            return nil
        }
        guard length > 0 else { throw HTTPFramingRefusal(reason: "bare LF in the trailers") }
        var fields = HTTPScan.FieldBlock()
        let error: String? = input.withUnsafeReadableBytes { bytes in
            let block = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
            var index = 0
            return HTTPScan.parseFields(block, from: &index, into: &fields)
        }
        if let error { throw HTTPFramingRefusal(reason: error) }
        if fields.contentLength != nil || fields.contentLengthConflict || fields.transferEncodings > 0 {
            throw HTTPFramingRefusal(reason: "framing field in trailers")
        }
        let block = input.readSlice(length: length)!
        return (HTTPHeaders(fields.ranges.map { ($0.name(in: block), $0.value(in: block)) }), fields.connectionClose)
    }
}
