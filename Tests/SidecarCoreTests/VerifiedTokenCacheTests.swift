import AuthJSToken
import SidecarCore
import Testing

/// The per-event-loop verified-token cache: keyed by the exact token bytes and key scope, living until the token's
/// own `exp` + leeway, size-capped, off at capacity 0.
@Suite("VerifiedTokenCache")
struct VerifiedTokenCacheTests {
    static let now = 1_800_000_000.0
    static let scope = KeyScope.v5(saltIndex: 0)

    /// A verified token whose `exp` is `exp` (nil: no `exp` claim).
    static func verified(exp: Double?) -> VerifiedToken {
        var members: [(String, JSONValue)] = [("sub", .string("u1"))]
        if let exp { members.append(("exp", .number(exp))) }
        return VerifiedToken(claims: JSONObject(members), payload: [], format: .authjsV5, secretIndex: 0, salt: "authjs.session-token")
    }

    static let secret = "cache-test-secret"

    static func authenticator() throws -> TokenAuthenticator {
        try TokenAuthenticator(secrets: [secret], cookies: SessionCookie.defaults)
    }

    /// A v5 token for `sub`, sealed for the cookie `salt`.
    static func mint(_ sub: String, salt: String = "authjs.session-token") throws -> String {
        try TokenMinter.authjsV5(claims: TokenMinter.stampClaims(JSONObject([("sub", .string(sub))]), now: Int64(now)), secret: secret, salt: salt)
    }

    static func token(_ n: Int) -> String { "eyJhbGciOiJkaXIi.." + String(repeating: "K", count: 40) + ".cipher\(n).tag\(n)K" }

    /// Distinct tokens that hash alike (same length, same last 32 bytes), so they share one set: the first two
    /// characters differ (n < 2 704).
    static func alike(_ n: Int) -> String {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        return String(letters[n % 52]) + String(letters[n / 52]) + String(token(1).dropFirst(2))
    }

    @Test func hitAfterInsertAndCounters() {
        var cache = VerifiedTokenCache(capacity: 8)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: Self.now) == nil)
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [("X-Auth-Sub", "u1")],
                     dropped: [], leeway: 15, now: Self.now)
        let hit = cache.lookup(Self.token(1), scope: Self.scope, now: Self.now + 1)
        #expect(hit?.headers.first?.1 == "u1")
        #expect(cache.hits == 1 && cache.misses == 1 && cache.count == 1)
    }

    @Test("an entry lives until exp + leeway, the last instant jose still accepts the token")
    func expiresWithTheToken() {
        var cache = VerifiedTokenCache(capacity: 8)
        let exp = Self.now + 60
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: exp), headers: [], dropped: [], leeway: 15, now: Self.now)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: exp + 14.999) != nil)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: exp + 15) == nil)
        #expect(cache.count == 0, "an expired entry is removed when found")
    }

    @Test func tokenWithoutExpLivesAtMostMaxLifetime() {
        var cache = VerifiedTokenCache(capacity: 8, maxLifetime: 100)
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: nil), headers: [], dropped: [], leeway: 15, now: Self.now)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: Self.now + 99) != nil)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: Self.now + 100) == nil)
    }

    @Test func alreadyExpiredTokenIsNotInserted() {
        var cache = VerifiedTokenCache(capacity: 8)
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now - 20), headers: [], dropped: [], leeway: 15, now: Self.now)
        #expect(cache.count == 0)
    }

    @Test("a token verified under one key scope is not a hit under another")
    func scopeIsPartOfTheKey() {
        var cache = VerifiedTokenCache(capacity: 8)
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [], dropped: [], leeway: 15, now: Self.now)
        #expect(cache.lookup(Self.token(1), scope: KeyScope.v5(saltIndex: 1), now: Self.now) == nil)
        #expect(cache.lookup(Self.token(1), scope: KeyScope(v5Salts: 0, v4: true, jws: false), now: Self.now) == nil)
    }

    /// The hash covers only the length and the last 32 bytes; equality must still be the whole token, byte for byte.
    @Test("tokens sharing the hashed suffix, or canonically equivalent to a cached one, are misses", arguments: [
        "X" + String(token(1).dropFirst()),                       // same length and suffix, first byte differs
        String(token(1).dropLast(60)) + String(repeating: "Q", count: 20) + String(token(1).suffix(40)),
        token(1).replacingFirstK(with: "\u{212A}"),                // KELVIN SIGN: NFC-equal to K, different bytes
        token(1) + "\u{301}",                                      // a combining mark fusing with the last character
    ])
    func exactBytesOnly(_ other: String) {
        var cache = VerifiedTokenCache(capacity: 8)
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [], dropped: [], leeway: 15, now: Self.now)
        #expect(Array(other.utf8) != Array(Self.token(1).utf8))
        #expect(cache.lookup(other, scope: Self.scope, now: Self.now) == nil)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: Self.now) != nil)
    }

    /// Verified tokens with the same length and last 32 bytes hash alike and share a set: each is found as itself,
    /// never as another's entry, and a ninth in a set of eight displaces one (then a miss, never a wrong hit).
    @Test func tokensSharingAHashNeverHitEachOther() {
        var cache = VerifiedTokenCache(capacity: 64)
        let alike = (0..<9).map(Self.alike)
        for (n, token) in alike.enumerated() {
            cache.insert(token, scope: Self.scope, verified: Self.verified(exp: Self.now + 60 + Double(n)), headers: [("X-Auth-Sub", "u\(n)")],
                         dropped: [], leeway: 15, now: Self.now)
        }
        #expect(cache.count == 8, "one set of eight holds them")
        var found = 0
        for (n, token) in alike.enumerated() {
            guard let hit = cache.lookup(token, scope: Self.scope, now: Self.now) else { continue }
            #expect(hit.headers.first?.1 == "u\(n)")
            found += 1
        }
        #expect(found == 8)
        #expect(cache.lookup(alike[0], scope: Self.scope, now: Self.now) == nil, "the one expiring soonest made room")
    }

    /// A set's slots go to a free one first, then an expired one, then the live one expiring soonest.
    @Test func aFullSetGivesUpItsSoonestToExpire() {
        var cache = VerifiedTokenCache(capacity: 64)
        let exps = [Self.now + 500, Self.now + 100, Self.now + 900, Self.now + 300, Self.now + 800, Self.now + 700, Self.now + 600, Self.now + 400]
        for (n, exp) in exps.enumerated() {
            cache.insert(Self.alike(n), scope: Self.scope, verified: Self.verified(exp: exp), headers: [], dropped: [], leeway: 0, now: Self.now)
        }
        cache.insert(Self.alike(9), scope: Self.scope, verified: Self.verified(exp: Self.now + 50), headers: [], dropped: [], leeway: 0, now: Self.now)
        #expect(cache.lookup(Self.alike(1), scope: Self.scope, now: Self.now) == nil, "exp + 100 went first")
        for n in [0, 2, 3, 4, 5, 6, 7, 9] { #expect(cache.lookup(Self.alike(n), scope: Self.scope, now: Self.now) != nil) }
        // Inserting the same token again replaces its own slot.
        cache.insert(Self.alike(9), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [("X-Auth-Sub", "again")], dropped: [],
                     leeway: 0, now: Self.now)
        #expect(cache.count == 8)
        #expect(cache.lookup(Self.alike(9), scope: Self.scope, now: Self.now)?.headers.first?.1 == "again")
        for n in [0, 2, 3, 4, 5, 6, 7] { #expect(cache.lookup(Self.alike(n), scope: Self.scope, now: Self.now) != nil) }
    }

    /// The table starts at 1 024 slots and grows to twice the capacity: 5 000 tokens in a cache of 20 000 are all but
    /// kept (a table that did not grow would hold at most 1 024); a cache of 1 000 fills and then holds 1 000.
    @Test(arguments: [(20_000, 5_000), (1_000, 5_000)])
    func growsUpToTheCapacity(capacity: Int, tokens: Int) {
        var cache = VerifiedTokenCache(capacity: capacity)
        for n in 0..<tokens {
            cache.insert(Self.token(n), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [], dropped: [], leeway: 0, now: Self.now)
            #expect(cache.count <= capacity)
        }
        let found = (0..<tokens).filter { cache.lookup(Self.token($0), scope: Self.scope, now: Self.now) != nil }.count
        #expect(found == cache.count)
        #expect(found >= min(tokens, capacity) * 99 / 100, "a set overflowing makes the table grow rather than drop entries")
    }

    @Test("an entry's header lines are its headers in wire form, in order")
    func headerLinesAreTheWireForm() {
        var cache = VerifiedTokenCache(capacity: 8)
        let headers = [("X-Auth-Sub", "u1"), ("X-Auth-Email", "a@b.example"), ("X-Auth-Name", "utf-8''Andr%C3%A9")]
        let made = cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: headers, dropped: [],
                                leeway: 15, now: Self.now)
        let wire = "X-Auth-Sub: u1\r\nX-Auth-Email: a@b.example\r\nX-Auth-Name: utf-8''Andr%C3%A9\r\n"
        #expect(made.headerLines == Array(wire.utf8))
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: Self.now)?.headerLines == Array(wire.utf8))
        var off = VerifiedTokenCache(capacity: 0)
        #expect(off.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: headers, dropped: [],
                           leeway: 15, now: Self.now).headerLines == Array(wire.utf8), "made even when the cache is off")
    }

    @Test("a token read from the cookie's bytes and the same token percent-encoded find one entry")
    func bytesAndDecodedPathsShareEntries() throws {
        let auth = try Self.authenticator()
        let token = try Self.mint("u8")
        let encoded = "%" + String(Array(token.utf8)[0], radix: 16, uppercase: true) + String(token.dropFirst())
        var cache = VerifiedTokenCache(capacity: 16)
        let mapper = IdentityHeaderMapper()
        for value in [token, encoded, token] {
            let r = auth.authenticate(cookieHeader: "other=1; authjs.session-token=\(value)", authorization: nil, now: Self.now, cache: &cache, identity: mapper)
            #expect((try? r.get())?.token.registered.subject == "u8")
        }
        #expect(cache.misses == 1 && cache.hits == 2 && cache.count == 1)
    }

    /// Cookies are tried in priority order, the first that verifies winning: a remembered token does not beat a
    /// higher-priority cookie whose token verifies, and an invalid higher-priority one does not hide it.
    @Test func rememberedTokensKeepTheCookiePriority() throws {
        let auth = try Self.authenticator()
        let plain = try Self.mint("plain"), secure = try Self.mint("secure", salt: "__Secure-authjs.session-token")
        var cache = VerifiedTokenCache(capacity: 16)
        let mapper = IdentityHeaderMapper()
        func subject(_ cookie: String) -> String? {
            (try? auth.authenticate(cookieHeader: cookie, authorization: nil, now: Self.now, cache: &cache, identity: mapper).get())?.token.registered.subject
        }
        #expect(subject("authjs.session-token=\(plain)") == "plain")
        #expect(subject("__Secure-authjs.session-token=garbage; authjs.session-token=\(plain)") == "plain")
        #expect(cache.hits == 1)
        #expect(subject("authjs.session-token=\(plain); __Secure-authjs.session-token=\(secure)") == "secure")
        #expect(subject("authjs.session-token=\(plain); __Secure-authjs.session-token=\(secure)") == "secure", "now both remembered")
    }

    /// The proxy reads the cookie's bytes as they came. Unquoting drops the value's last byte, as Auth.js's `cookie`
    /// package drops the last unit of a header string that holds one unit per byte: `"<token><0xF4>` is the token.
    @Test func unquotingDropsTheLastByteAsJavaScriptDoes() throws {
        let auth = try Self.authenticator()
        let token = try Self.mint("q1")
        var cache = VerifiedTokenCache(capacity: 0)
        let header = Array("authjs.session-token=\"\(token)".utf8) + [0xF4]
        let r = header.withUnsafeBytes {
            auth.authenticate(cookie: $0, authorization: nil, now: Self.now, cache: &cache, identity: IdentityHeaderMapper())
        }
        #expect((try? r.get())?.token.registered.subject == "q1")
    }

    /// At capacity an insert replaces within its set: an expired entry before a live one, the count never above the
    /// capacity, the newest entry kept.
    @Test func capacityIsABoundAndExpiredEntriesGoFirst() {
        var cache = VerifiedTokenCache(capacity: 8)
        // Four short-lived entries, four long-lived ones: one full set, the cache at capacity.
        for i in 0..<8 {
            cache.insert(Self.alike(i), scope: Self.scope, verified: Self.verified(exp: Self.now + (i < 4 ? 10 : 1000)), headers: [], dropped: [],
                         leeway: 0, now: Self.now)
        }
        #expect(cache.count == 8)
        // Later, the short-lived ones have expired: inserting takes one of their slots rather than a live entry's, and
        // the others are removed when they are looked up.
        let later = Self.now + 20
        cache.insert(Self.alike(8), scope: Self.scope, verified: Self.verified(exp: Self.now + 1000), headers: [], dropped: [], leeway: 0, now: later)
        #expect(cache.count == 8)
        for i in 4..<9 { #expect(cache.lookup(Self.alike(i), scope: Self.scope, now: later) != nil) }
        for i in 0..<4 { #expect(cache.lookup(Self.alike(i), scope: Self.scope, now: later) == nil) }
        #expect(cache.count == 5)
        for i in 9..<50 {
            cache.insert(Self.alike(i), scope: Self.scope, verified: Self.verified(exp: Self.now + 1000 + Double(i)), headers: [], dropped: [],
                         leeway: 0, now: later)
            #expect(cache.count <= 8)
            #expect(cache.lookup(Self.alike(i), scope: Self.scope, now: later) != nil, "the newest entry is kept")
        }
        #expect(cache.count == 8)
    }

    @Test func capacityZeroDisablesTheCache() {
        var cache = VerifiedTokenCache(capacity: 0)
        cache.insert(Self.token(1), scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [], dropped: [], leeway: 15, now: Self.now)
        #expect(cache.count == 0)
        #expect(cache.lookup(Self.token(1), scope: Self.scope, now: Self.now) == nil)
        #expect(cache.hits == 0 && cache.misses == 0)
    }

    @Test("through the authenticator: a repeated session is a hit, a tampered one is verified (and refused)")
    func authenticatorUsesTheCache() throws {
        let auth = try Self.authenticator()
        let claims = TokenMinter.stampClaims(JSONObject([("sub", .string("u7"))]), now: Int64(Self.now))
        let token = try TokenMinter.authjsV5(claims: claims, secret: Self.secret, salt: "authjs.session-token")
        var cache = VerifiedTokenCache(capacity: 16)
        let mapper = IdentityHeaderMapper()
        for _ in 0..<3 {
            let r = auth.authenticate(cookieHeader: "authjs.session-token=\(token)", authorization: nil, now: Self.now, cache: &cache, identity: mapper)
            #expect((try? r.get())?.token.registered.subject == "u7")
        }
        #expect(cache.misses == 1 && cache.hits == 2 && cache.count == 1)
        var tampered = Array(token.utf8)
        tampered[tampered.count - 3] = tampered[tampered.count - 3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let r = auth.authenticate(cookieHeader: "authjs.session-token=\(String(decoding: tampered, as: UTF8.self))", authorization: nil,
                                  now: Self.now, cache: &cache, identity: mapper)
        #expect(throws: VerificationFailure.self) { try r.get() }
        #expect(cache.count == 1, "failures are never cached")
        // Past exp + leeway the entry is gone and the token itself is refused.
        let expired = auth.authenticate(cookieHeader: "authjs.session-token=\(token)", authorization: nil,
                                        now: claims["exp"]!.doubleValue! + 15, cache: &cache, identity: mapper)
        #expect((try? expired.get()) == nil)
    }
}

extension String {
    func replacingFirstK(with replacement: String) -> String {
        guard let i = firstIndex(of: "K") else { return self }
        return String(self[..<i]) + replacement + String(self[index(after: i)...])
    }
}
