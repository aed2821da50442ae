import AuthJSToken
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A configured session cookie: its name, and which keys may open a token found in it.
public struct SessionCookie: Sendable, Equatable {
    public var name: String
    /// The v5 HKDF salt; Auth.js always uses the cookie's own name.
    public var salt: String
    /// Also accept NextAuth v4 tokens (empty-salt key) from this cookie.
    public var acceptsV4: Bool

    public init(name: String, salt: String? = nil, acceptsV4: Bool? = nil) {
        self.name = name
        self.salt = salt ?? name
        self.acceptsV4 = acceptsV4 ?? name.contains("next-auth")
    }

    /// Auth.js v5's two names and NextAuth v4's two names, secure ones first.
    public static let defaults: [SessionCookie] = [
        "__Secure-authjs.session-token", "authjs.session-token",
        "__Secure-next-auth.session-token", "next-auth.session-token",
    ].map { SessionCookie(name: $0) }
}

/// Where a request's token came from.
public enum TokenSource: Sendable, Equatable {
    /// Index into the extractor's cookies.
    case cookie(Int)
    case bearer
}

/// A token found in a request, with the key scope its source allows.
public struct ExtractedToken: Sendable, Equatable {
    public let value: String
    public let source: TokenSource
    public let scope: KeyScope
}

/// Finds the session token in a request exactly as Auth.js `getToken()` does, for several cookie names at once.
///
/// Cookies first: the exact name, or `name.N` chunks (digits only; never any other prefix match) sorted by N and
/// concatenated, empty values ignored. Only when no configured cookie has a value: `Authorization: Bearer <token>`
/// (case-sensitive `Bearer`, one space, percent-decoded), tried against every configured salt.
public struct SessionTokenExtractor: Sendable {
    public let cookies: [SessionCookie]
    /// `cookies[i].name` as UTF-8, compared in place against each cookie name in the header.
    let cookieNames: [[UInt8]]
    let scopes: [KeyScope]
    let bearerScope: KeyScope
    /// Bound on chunks per cookie: Auth.js chunks at ~3.9 KB, so 64 chunks is far beyond any real header.
    public static let maxChunks = 64

    /// `cookies[i].salt` must be `ring.v5Salts[i]` (what ``SidecarKeys`` builds).
    public init(cookies: [SessionCookie], ring: KeyRing) {
        self.cookies = cookies
        self.cookieNames = cookies.map { Array($0.name.utf8) }
        self.scopes = cookies.enumerated().map { i, c in
            KeyScope(v5Salts: ring.formats.contains(.authjsV5) ? 1 << UInt64(ring.v5Salts.firstIndex(of: c.salt) ?? i) : 0,
                     v4: c.acceptsV4 && ring.formats.contains(.nextauthV4),
                     jws: ring.formats.contains(.jws))
        }
        self.bearerScope = ring.everything
    }

    /// Every candidate in priority order: each configured cookie that has a value, else the Bearer token.
    /// `.failure(.malformed)` for a Bearer value whose percent-encoding is broken; empty when nothing was sent.
    public func extract(cookieHeader: String?, authorization: String?) -> Result<[ExtractedToken], VerificationFailure> {
        var found: [ExtractedToken] = []
        if let cookieHeader, !cookieHeader.isEmpty {
            found = cookieTokens(cookieHeader)
        }
        if !found.isEmpty { return .success(found) }
        guard let authorization else { return .success([]) }
        // `header.split(" ")[0] === "Bearer"` then `split(" ")[1]`, on bytes (a Character split is slow).
        var header = authorization
        let token: String?? = header.withUTF8 { bytes -> String?? in
            guard bytes.count > 7, memcmp(bytes.baseAddress!, "Bearer ", 7) == 0 else { return .some(nil) }
            let rest = UnsafeBufferPointer(rebasing: bytes[7...])
            let end = memchr(rest.baseAddress!, Int32(UInt8(ascii: " ")), rest.count)
                .map { rest.baseAddress!.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? rest.count
            if end == 0 { return .some(nil) }
            let raw = UnsafeBufferPointer(rebasing: rest[..<end])
            // Percent-decoding is the identity without a `%` (the input is already valid UTF-8).
            if memchr(raw.baseAddress!, Int32(UInt8(ascii: "%")), raw.count) == nil { return .some(String(decoding: raw, as: UTF8.self)) }
            return PercentDecoding.decodeURIComponent(String(decoding: raw, as: UTF8.self)[...]).map { .some($0) } ?? nil
        }
        switch token {
        case .none: return .failure(VerificationFailure(.malformed, "Bearer token has malformed percent-encoding"))
        case .some(.none): return .success([])
        case .some(.some(let token)): return .success([ExtractedToken(value: token, source: .bearer, scope: bearerScope)])
        }
    }

    func cookieTokens(_ header: String) -> [ExtractedToken] {
        var header = header
        var out: [ExtractedToken] = []
        _ = header.withUTF8 { bytes in
            forEachCookieCandidate(UnsafeRawBufferPointer(bytes)) { text, index, scope in
                let value: String
                switch text {
                case .bytes(let raw): value = String(decoding: raw, as: UTF8.self)
                case .decoded(let decoded): value = decoded
                }
                out.append(ExtractedToken(value: value, source: .cookie(index), scope: scope))
                return true
            }
        }
        return out
    }

    /// A candidate token's text: the cookie value's own bytes when it needs no decoding (the common case: no string
    /// is made for it), else the percent-decoded or chunk-joined string.
    public enum CandidateText {
        case bytes(UnsafeRawBufferPointer)
        case decoded(String)
    }

    /// Calls `body` with each configured cookie's token in priority order, with the cookie's index and the key scope
    /// its tokens may be opened with, until `body` returns false. Returns whether any cookie had a value.
    @discardableResult
    public func forEachCookieCandidate(_ header: UnsafeRawBufferPointer, _ body: (CandidateText, Int, KeyScope) -> Bool) -> Bool {
        // One pass over the bytes collects, per configured cookie, the value range of the first exact-name pair and
        // of the first pair of each `name.<digits>` chunk name; only the values kept are decoded.
        // A given name always lands on the same cookie index (the first that matches), so "first occurrence wins" is
        // a per-index check: an exact name is taken once, a chunk name once per distinct spelling.
        let bytes = UnsafeBufferPointer(start: header.baseAddress?.assumingMemoryBound(to: UInt8.self), count: header.count)
        guard let base = bytes.baseAddress, bytes.count > 0 else { return false }
        let count = cookies.count
        return withUnsafeTemporaryAllocation(of: Range<Int>?.self, capacity: count) { exact -> Bool in
            exact.initialize(repeating: nil)
            defer { exact.deinitialize() }
            var chunks: [[(n: Int, name: Range<Int>, value: Range<Int>)]]? = nil  // rare: allocated on the first chunk
            CookieParser.forEachPair(bytes) { name, value in
                for i in 0..<count {
                    let matched = cookieNames[i].withUnsafeBufferPointer { cookieName -> Bool? in
                        guard name.count >= cookieName.count,
                              memcmp(base + name.lowerBound, cookieName.baseAddress!, cookieName.count) == 0 else { return nil }
                        if name.count == cookieName.count {
                            if exact[i] == nil { exact[i] = value }
                            return true
                        }
                        // `name.<digits>` chunks only — never any other prefix match.
                        let suffix = (name.lowerBound + cookieName.count)..<name.upperBound
                        guard bytes[suffix.lowerBound] == UInt8(ascii: "."), suffix.count >= 2, suffix.count <= 5,
                              bytes[(suffix.lowerBound + 1)..<suffix.upperBound].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                              (chunks?[i].count ?? 0) < Self.maxChunks else { return nil }
                        if chunks == nil { chunks = Array(repeating: [], count: count) }
                        let taken = chunks![i].contains {
                            $0.name.count == name.count && memcmp(base + $0.name.lowerBound, base + name.lowerBound, name.count) == 0
                        }
                        if !taken {
                            var n = 0
                            for d in bytes[(suffix.lowerBound + 1)..<suffix.upperBound] { n = n * 10 + Int(d - 0x30) }
                            chunks![i].append((n, name, value))
                        }
                        return true
                    }
                    if matched != nil { return true }
                }
                return true
            }
            var any = false
            for i in 0..<count {
                var text: CandidateText?
                if let range = exact[i], !range.isEmpty {
                    let raw = UnsafeBufferPointer(rebasing: bytes[range])
                    text = memchr(raw.baseAddress!, Int32(UInt8(ascii: "%")), raw.count) == nil
                        ? .bytes(UnsafeRawBufferPointer(raw)) : .decoded(CookieParser.decodeValue(raw))
                }
                if text == nil, let parts = chunks?[i], !parts.isEmpty {
                    let joined = parts.sorted { $0.n < $1.n }.map { CookieParser.decodeValue(UnsafeBufferPointer(rebasing: bytes[$0.value])) }.joined()
                    if !joined.isEmpty { text = .decoded(joined) }
                }
                guard let text else { continue }
                any = true
                if !body(text, i, scopes[i]) { break }
            }
            return any
        }
    }
}
