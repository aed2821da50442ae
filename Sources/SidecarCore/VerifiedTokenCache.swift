import AuthJSToken
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tokens that verified, with the identity headers made from them, remembered until the token's own expiry.
///
/// One cache per event loop, owned by that loop, so lookups take no lock. Looked up by the token's bytes as they
/// arrived (no `String` is made for a hit). The table is set-associative, as a CPU cache is: a seeded hash of the key
/// scope, the length and the last 32 bytes (the JWE tag or JWS signature: unpredictable for any token that verified,
/// and only verified tokens are ever inserted) picks a set of eight slots, and a found entry counts only if its whole
/// token and scope are equal — never the hash alone, for a collision would hand one user another's identity. Inserting
/// and evicting stay within the set, so an insert into a full cache costs what one into an empty cache does: a new
/// entry takes a free slot while fewer than `capacity` are held, else the set's expired entry, else its live entry
/// expiring soonest (and is not kept in the rare case of a full cache and an empty set). The table grows to twice
/// `capacity` slots — at most half of them used, so a set seldom overflows — starting at 1 024 and doubling when a set
/// overflows or three quarters are used: a pass over the table a few times in a process's life. Only successes are
/// cached; a repeated session costs one hash and one set's compare instead of a decrypt and two JSON parses.
public struct VerifiedTokenCache {
    /// A verified token with what the proxy makes of it. A class: handing one from the cache to the request is one
    /// reference, not a copy of each of its fields.
    public final class Entry: Sendable {
        public let token: VerifiedToken
        public let headers: [(String, String)]
        public let dropped: [String]
        /// `headers` in wire form (`name: value` CRLF each), made once per verified token: a request copies one block
        /// instead of two strings per header.
        public let headerLines: [UInt8]
        let validUntil: Double
        /// The token's bytes and scope, for the equality check behind a hash match.
        let tokenBytes: [UInt8]
        let scope: KeyScope

        /// Whether this entry is for exactly these bytes under exactly this scope.
        @inline(__always)
        func holds(_ token: UnsafeRawBufferPointer, scope: KeyScope) -> Bool {
            self.scope == scope && tokenBytes.count == token.count
                && tokenBytes.withUnsafeBytes { token.count == 0 || memcmp($0.baseAddress!, token.baseAddress!, token.count) == 0 }
        }

        init(token: VerifiedToken, headers: [(String, String)], dropped: [String], validUntil: Double, tokenBytes: [UInt8], scope: KeyScope) {
            self.token = token
            self.headers = headers
            self.dropped = dropped
            self.validUntil = validUntil
            self.tokenBytes = tokenBytes
            self.scope = scope
            var lines: [UInt8] = []
            lines.reserveCapacity(headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
            for (name, value) in headers {
                lines.append(contentsOf: name.utf8)
                lines.append(contentsOf: ": ".utf8)
                lines.append(contentsOf: value.utf8)
                lines.append(contentsOf: "\r\n".utf8)
            }
            self.headerLines = lines
        }

        /// An entry for a token that is not remembered (the cache is off): no bytes kept.
        convenience init(token: VerifiedToken, headers: [(String, String)], dropped: [String]) {
            self.init(token: token, headers: headers, dropped: dropped, validUntil: 0, tokenBytes: [], scope: KeyScope(v5Salts: 0, v4: false, jws: false))
        }
    }

    /// Slots in sets of `ways`; a set's slots are adjacent. `nil`: free.
    private var slots: [Entry?]
    /// Each slot's hash (0: free), compared before its entry is touched.
    private var tags: [UInt64]
    private let maxSets: Int
    private let seed: UInt64
    static let ways = 8
    /// The most entries held at once.
    public let capacity: Int
    /// Longest time an entry lives even when the token has no `exp`.
    public let maxLifetime: Double
    public private(set) var hits = 0
    public private(set) var misses = 0
    public private(set) var count = 0

    public init(capacity: Int, maxLifetime: Double = 3600) {
        self.capacity = max(0, capacity)
        maxSets = (2 * self.capacity + Self.ways - 1) / Self.ways
        self.maxLifetime = maxLifetime
        let slotCount = min(maxSets, 1024 / Self.ways) * Self.ways
        slots = Array(repeating: nil, count: slotCount)
        tags = Array(repeating: 0, count: slotCount)
        // A cache that is off (the callers without one make it per call) reads no randomness.
        seed = maxSets == 0 ? 0 : UInt64.random(in: .min ... .max)
    }

    /// A token's hash, never 0: scope, length and the last 32 bytes, mixed with the cache's random seed.
    static func hash(_ token: UnsafeRawBufferPointer, scope: KeyScope, seed: UInt64) -> UInt64 {
        var h = mix(seed ^ UInt64(truncatingIfNeeded: token.count))
        h = mix(h ^ scope.v5Salts)
        h = mix(h ^ (scope.v4 ? 1 : 0) ^ (scope.jws ? 2 : 0))
        var i = max(0, token.count - 32)
        while i + 8 <= token.count {
            h = mix(h ^ token.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        while i < token.count {
            h = mix(h ^ UInt64(token[i]))
            i += 1
        }
        return h | 1
    }

    /// SplitMix64's finaliser: every input bit moves every output bit.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The table's sets now.
    private var sets: Int { slots.count / Self.ways }

    /// The first slot of the set a hash picks (the hash's high bits scaled to the set count).
    @inline(__always)
    private func firstSlot(_ tag: UInt64, sets: Int) -> Int {
        Int(truncatingIfNeeded: tag.multipliedFullWidth(by: UInt64(sets)).high) * Self.ways
    }

    public mutating func lookup(_ token: UnsafeRawBufferPointer, scope: KeyScope, now: Double) -> Entry? {
        guard capacity > 0 else { return nil }
        let tag = Self.hash(token, scope: scope, seed: seed)
        let first = firstSlot(tag, sets: sets)
        for i in first..<first + Self.ways where tags[i] == tag {
            guard let entry = slots[i], entry.holds(token, scope: scope) else { continue }
            if now < entry.validUntil {
                hits += 1
                return entry
            }
            slots[i] = nil
            tags[i] = 0
            count -= 1
            break
        }
        misses += 1
        return nil
    }

    /// Byte equality, never `String ==` (canonical equivalence, under which a different token — a K replaced by
    /// U+212A KELVIN SIGN, say — would find the entry of the one that verified).
    public mutating func lookup(_ token: String, scope: KeyScope, now: Double) -> Entry? {
        var token = token
        return token.withUTF8 { lookup(UnsafeRawBufferPointer($0), scope: scope, now: now) }
    }

    /// `exp + leeway` is the last instant jose would still accept the token (expired iff `exp <= now - leeway`).
    /// Returns the entry made (inserted or not: the cache may be off, or the token about to expire).
    @discardableResult
    public mutating func insert(_ token: String, scope: KeyScope, verified: VerifiedToken, headers: [(String, String)],
                                dropped: [String], leeway: Double, now: Double) -> Entry {
        guard capacity > 0 else { return Entry(token: verified, headers: headers, dropped: dropped) }
        let limit = now + maxLifetime
        let validUntil = verified.registered.expiresAt.map { min($0 + leeway, limit) } ?? limit
        let entry = Entry(token: verified, headers: headers, dropped: dropped, validUntil: validUntil, tokenBytes: Array(token.utf8), scope: scope)
        guard validUntil > now else { return entry }
        let tag = entry.tokenBytes.withUnsafeBytes { Self.hash($0, scope: scope, seed: seed) }
        if sets < maxSets, count * 4 >= slots.count * 3 || setIsFullOfLive(tag, now: now) { grow() }
        let first = firstSlot(tag, sets: sets)
        // The same token again, else a free slot (below capacity), else an expired one, else the one expiring soonest.
        let full = count >= capacity
        var chosen = -1, chosenRank = 4, soonest = Double.infinity
        for i in first..<first + Self.ways {
            guard let held = slots[i] else {
                if !full, chosenRank > 1 { chosen = i; chosenRank = 1 }
                continue
            }
            if tags[i] == tag, entry.tokenBytes.withUnsafeBytes({ held.holds($0, scope: scope) }) { chosen = i; chosenRank = 0; break }
            if held.validUntil <= now {
                if chosenRank > 2 { chosen = i; chosenRank = 2 }
            } else if chosenRank >= 3, held.validUntil < soonest {
                chosen = i
                chosenRank = 3
                soonest = held.validUntil
            }
        }
        guard chosen >= 0 else { return entry }
        if slots[chosen] == nil { count += 1 }
        slots[chosen] = entry
        tags[chosen] = tag
        return entry
    }

    private func setIsFullOfLive(_ tag: UInt64, now: Double) -> Bool {
        let first = firstSlot(tag, sets: sets)
        for i in first..<first + Self.ways {
            guard let held = slots[i], held.validUntil > now else { return false }
        }
        return true
    }

    /// Twice the sets (at most `maxSets`), every entry moved to its set there; amortised O(1) per insert. Doubling
    /// splits each set in two, so nothing is dropped then; an entry whose new set is full at the last, smaller step is
    /// (a later miss, verified again).
    private mutating func grow() {
        let newSets = min(maxSets, sets * 2)
        var newSlots = [Entry?](repeating: nil, count: newSets * Self.ways)
        var newTags = [UInt64](repeating: 0, count: newSets * Self.ways)
        var kept = 0
        for i in slots.indices {
            guard let held = slots[i] else { continue }
            let first = firstSlot(tags[i], sets: newSets)
            for j in first..<first + Self.ways where newSlots[j] == nil {
                newSlots[j] = held
                newTags[j] = tags[i]
                kept += 1
                break
            }
        }
        slots = newSlots
        tags = newTags
        count = kept
    }
}
