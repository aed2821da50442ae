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

    /// Two verified tokens with the same length and last 32 bytes land in one slot: the later replaces the earlier,
    /// which is then a miss — never the other's entry.
    @Test func tokensSharingASlotNeverHitEachOther() {
        var cache = VerifiedTokenCache(capacity: 8)
        let first = Self.token(1), second = "X" + String(Self.token(1).dropFirst())
        cache.insert(first, scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [("X-Auth-Sub", "first")], dropped: [], leeway: 15, now: Self.now)
        cache.insert(second, scope: Self.scope, verified: Self.verified(exp: Self.now + 60), headers: [("X-Auth-Sub", "second")], dropped: [], leeway: 15, now: Self.now)
        #expect(cache.count == 1)
        #expect(cache.lookup(second, scope: Self.scope, now: Self.now)?.headers.first?.1 == "second")
        #expect(cache.lookup(first, scope: Self.scope, now: Self.now) == nil)
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

    @Test func capacityIsABoundAndExpiredEntriesGoFirst() {
        var cache = VerifiedTokenCache(capacity: 4)
        // Two short-lived entries, two long-lived ones.
        for i in 0..<2 {
            cache.insert(Self.token(i), scope: Self.scope, verified: Self.verified(exp: Self.now + 10), headers: [], dropped: [], leeway: 0, now: Self.now)
        }
        for i in 2..<4 {
            cache.insert(Self.token(i), scope: Self.scope, verified: Self.verified(exp: Self.now + 1000), headers: [], dropped: [], leeway: 0, now: Self.now)
        }
        #expect(cache.count == 4)
        // Later, the short-lived ones have expired: inserting evicts them rather than a live entry.
        let later = Self.now + 20
        cache.insert(Self.token(4), scope: Self.scope, verified: Self.verified(exp: Self.now + 1000), headers: [], dropped: [], leeway: 0, now: later)
        #expect(cache.count == 3)
        for i in 2..<5 { #expect(cache.lookup(Self.token(i), scope: Self.scope, now: later) != nil) }
        // Full of live entries: one is evicted, the count never exceeds the capacity.
        for i in 5..<50 {
            cache.insert(Self.token(i), scope: Self.scope, verified: Self.verified(exp: Self.now + 1000), headers: [], dropped: [], leeway: 0, now: later)
            #expect(cache.count <= 4)
        }
        #expect(cache.lookup(Self.token(49), scope: Self.scope, now: later) != nil, "the newest entry is always kept")
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
