import AuthJSToken
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tokens that verified, with the identity headers made from them, remembered until the token's own expiry.
///
/// One cache per event loop, owned by that loop, so lookups take no lock. The key is the full token text plus the
/// key scope it was verified under (never a truncated hash: a collision would hand one user another's identity).
/// Only successes are cached; a repeated session costs one hash lookup instead of a decrypt and two JSON parses.
public struct VerifiedTokenCache {
    struct Key: Hashable {
        let token: String
        let scope: KeyScope

        /// Hashes the length and the last 32 bytes (the JWE tag or JWS signature: unpredictable for any token that
        /// verified, and only verified tokens are ever inserted), not the whole ~600-byte token.
        func hash(into hasher: inout Hasher) {
            hasher.combine(scope)
            var token = token
            token.withUTF8 { bytes in
                hasher.combine(bytes.count)
                let tail = UnsafeBufferPointer(rebasing: bytes[max(0, bytes.count - 32)...])
                hasher.combine(bytes: UnsafeRawBufferPointer(tail))
            }
        }

        /// Byte equality: `String ==` is canonical equivalence, under which a different token (a K replaced by
        /// U+212A KELVIN SIGN, say) would find the entry of the one that verified.
        static func == (a: Key, b: Key) -> Bool {
            guard a.scope == b.scope else { return false }
            var x = a.token, y = b.token
            return x.withUTF8 { xb in y.withUTF8 { yb in xb.count == yb.count && (xb.count == 0 || memcmp(xb.baseAddress!, yb.baseAddress!, xb.count) == 0) } }
        }
    }

    public struct Entry {
        public let token: VerifiedToken
        public let headers: [(String, String)]
        public let dropped: [String]
        let validUntil: Double
    }

    private var entries: [Key: Entry] = [:]
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

    public mutating func lookup(_ token: String, scope: KeyScope, now: Double) -> Entry? {
        guard capacity > 0 else { return nil }
        let key = Key(token: token, scope: scope)
        if let entry = entries[key] {
            if now < entry.validUntil {
                hits += 1
                return entry
            }
            entries.removeValue(forKey: key)
        }
        misses += 1
        return nil
    }

    /// `exp + leeway` is the last instant jose would still accept the token (expired iff `exp <= now - leeway`).
    public mutating func insert(_ token: String, scope: KeyScope, verified: VerifiedToken, headers: [(String, String)],
                                dropped: [String], leeway: Double, now: Double) {
        guard capacity > 0 else { return }
        let limit = now + maxLifetime
        let validUntil = verified.registered.expiresAt.map { min($0 + leeway, limit) } ?? limit
        guard validUntil > now else { return }
        if entries.count >= capacity {
            // Evict expired entries; if none, an arbitrary one. Either is O(1) amortised over `capacity` inserts.
            let before = entries.count
            entries = entries.filter { $0.value.validUntil > now }
            if entries.count == before, let victim = entries.keys.first { entries.removeValue(forKey: victim) }
        }
        entries[Key(token: token, scope: scope)] = Entry(token: verified, headers: headers, dropped: dropped, validUntil: validUntil)
    }
}
