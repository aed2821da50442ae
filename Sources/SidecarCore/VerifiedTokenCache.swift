import AuthJSToken
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tokens that verified, with the identity headers made from them, remembered until the token's own expiry.
///
/// One cache per event loop, owned by that loop, so lookups take no lock. Looked up by the token's bytes as they
/// arrived (no `String` is made for a hit): the table is keyed by a seeded hash of the key scope, the length and the
/// last 32 bytes (the JWE tag or JWS signature: unpredictable for any token that verified, and only verified tokens
/// are ever inserted), and a found entry counts only if its whole token and scope are equal — never a truncated hash
/// alone, for a collision would hand one user another's identity. Two verified tokens whose hashes collide share a
/// slot, the later one replacing the earlier (a miss, never a wrong hit). Only successes are cached; a repeated
/// session costs one hash lookup instead of a decrypt and two JSON parses.
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

    private var entries: [Int: Entry] = [:]
    public let capacity: Int
    /// Longest time an entry lives even when the token has no `exp`.
    public let maxLifetime: Double
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int, maxLifetime: Double = 3600) {
        self.capacity = capacity
        self.maxLifetime = maxLifetime
        entries.reserveCapacity(min(capacity, 1024))
    }

    public var count: Int { entries.count }

    /// The slot of a token: scope, length and the last 32 bytes, through the process-seeded `Hasher`.
    static func slot(_ token: UnsafeRawBufferPointer, scope: KeyScope) -> Int {
        var hasher = Hasher()
        hasher.combine(scope)
        hasher.combine(token.count)
        hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: token[max(0, token.count - 32)...]))
        return hasher.finalize()
    }

    public mutating func lookup(_ token: UnsafeRawBufferPointer, scope: KeyScope, now: Double) -> Entry? {
        guard capacity > 0 else { return nil }
        let slot = Self.slot(token, scope: scope)
        if let entry = entries[slot], entry.scope == scope, entry.tokenBytes.count == token.count,
           entry.tokenBytes.withUnsafeBytes({ token.count == 0 || memcmp($0.baseAddress!, token.baseAddress!, token.count) == 0 }) {
            if now < entry.validUntil {
                hits += 1
                return entry
            }
            entries.removeValue(forKey: slot)
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
        if entries.count >= capacity {
            // Evict expired entries; if none, an arbitrary one. Either is O(1) amortised over `capacity` inserts.
            let before = entries.count
            entries = entries.filter { $0.value.validUntil > now }
            if entries.count == before, let victim = entries.keys.first { entries.removeValue(forKey: victim) }
        }
        entry.tokenBytes.withUnsafeBytes { entries[Self.slot($0, scope: scope)] = entry }
        return entry
    }
}
