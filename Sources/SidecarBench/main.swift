// Release-built micro-benchmark: `swift run -c release SidecarBench [--quick] [--only NAME]`.
//
// Each case runs a warm-up, then 5 timed runs of N iterations; the best run's ns/op is reported (the minimum is the
// least noisy estimate on a shared machine). `now` is fixed, so every token stays valid and results are repeatable.
// Every iteration's result is checked, so the optimiser cannot drop the work and a regression into failure is loud.

import AuthJSToken
import SidecarCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let now: Int64 = 1_800_000_000
let secret = "bench-secret-7Qm3vXz9LkP2wR8tY5nB1cD4fG6hJ0aS="
let salt = "authjs.session-token"
let quick = CommandLine.arguments.contains("--quick")
/// `--only SUBSTRING`: run just the matching cases (for profiling one with perf); `--only =NAME` just the one so named.
let only: String? = CommandLine.arguments.firstIndex(of: "--only").flatMap { i in
    i + 1 < CommandLine.arguments.count ? CommandLine.arguments[i + 1] : nil
}
/// `--iterations N`: N per timed run in every case (for `Tests/bench/token-instructions.sh`, which counts a case's
/// instructions under callgrind at two N: a case runs N/5 warm-up and 5 × N timed operations, 5.2 × N for N ≥ 250).
let fixedIterations: Int? = CommandLine.arguments.firstIndex(of: "--iterations").flatMap { i in
    i + 1 < CommandLine.arguments.count ? Int(CommandLine.arguments[i + 1]) : nil
}

func selected(_ name: String) -> Bool {
    guard let only else { return true }
    return only.hasPrefix("=") ? name == only.dropFirst() : name.contains(only)
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct Row {
    let name: String
    let nsPerOp: Double
    let iterations: Int
    let note: String
}

var rows: [Row] = []

/// Best-of-5 ns/op of `body`, which must return true (checked every iteration).
@MainActor
func bench(_ name: String, iterations: Int, note: String = "", _ body: () -> Bool) {
    guard selected(name) else { return }
    let n = fixedIterations ?? (quick ? max(iterations / 20, 100) : iterations)
    for _ in 0..<max(n / 5, 50) where !body() { fatalError("\(name): warm-up iteration failed") }
    var best = Double.infinity
    for _ in 0..<5 {
        var failures = 0
        let t0 = monotonicNanos()
        for _ in 0..<n where !body() { failures += 1 }
        let dt = monotonicNanos() - t0
        if failures > 0 { fatalError("\(name): \(failures) iterations failed") }
        best = min(best, Double(dt) / Double(n))
    }
    rows.append(Row(name: name, nsPerOp: best, iterations: n, note: note))
}

// Default Auth.js claims ({name, email, picture, sub} + iat/exp/jti), realistic lengths.
let defaultClaims = TokenMinter.stampClaims(JSONObject([
    ("name", .string("Margaret Hamilton")),
    ("email", .string("margaret.hamilton@example-enterprise.com")),
    ("picture", .string("https://avatars.githubusercontent.com/u/12345678?v=4&s=460")),
    ("sub", .string("clx8k2m9f0000abcd1234efgh")),
]), now: now)

// A rich token large enough that Auth.js splits its cookie into 3 chunks (3936 characters each).
var richMembers = defaultClaims.members
richMembers.append(("roles", .array((0..<40).map { .string("role:org-\($0):read-write-admin") })))
richMembers.append(("groups", .array((0..<110).map { .string("group-\($0)-engineering-platform-infrastructure") })))
let richClaims = JSONObject(richMembers)

let v5CBC = try TokenMinter.authjsV5(claims: defaultClaims, secret: secret, salt: salt)
let v5GCM = try TokenMinter.authjsV5(claims: defaultClaims, secret: secret, salt: salt, encryption: .a256gcm)
let v5NoKid = try TokenMinter.authjsV5(claims: defaultClaims, secret: secret, salt: salt, includeKid: false)
let v4 = try TokenMinter.nextauthV4(claims: defaultClaims, secret: secret)
let hs256 = TokenMinter.jws(claims: defaultClaims, secret: secret, hash: .sha256)
let rich = try TokenMinter.authjsV5(claims: richClaims, secret: secret, salt: salt)

let chunkSize = 3936
var chunks: [Substring] = []
var rest = Substring(rich)
while !rest.isEmpty { chunks.append(rest.prefix(chunkSize)); rest = rest.dropFirst(chunkSize) }
precondition(chunks.count == 3, "the rich token should need exactly 3 chunks, got \(chunks.count) (\(rich.utf8.count) bytes)")
// Browser order is not guaranteed: put the chunks out of order among unrelated cookies.
let chunkedHeader = "_ga=GA1.1.123456789.1700000000; theme=dark; \(salt).2=\(chunks[2]); authjs.csrf-token=abc%7Cdef; "
    + "\(salt).0=\(chunks[0]); authjs.callback-url=http%3A%2F%2Flocalhost%3A3000; \(salt).1=\(chunks[1])"
let singleHeader = "_ga=GA1.1.123456789.1700000000; theme=dark; authjs.csrf-token=abc%7Cdef; \(salt)=\(v5CBC)"

let ring = try KeyRing(secrets: [secret], v5Salts: [salt])
let verifier = TokenVerifier(keys: ring)
let rotatedRing = try KeyRing(secrets: ["newest-secret-3", "newer-secret-2", secret], v5Salts: ["__Secure-authjs.session-token", salt])
let rotatedVerifier = TokenVerifier(keys: rotatedRing)
let rotatedToken = v5NoKid
let authenticator = try TokenAuthenticator(secrets: [secret], cookies: SessionCookie.defaults)
let extractor = authenticator.extractor
let t = Double(now)

func verifies(_ v: TokenVerifier, _ token: String) -> Bool {
    if case .success = v.verify(token, now: t) { return true }
    return false
}

bench("v5-cbc-verify", iterations: 100_000, note: "\(v5CBC.utf8.count) B, A256CBC-HS512, kid") { verifies(verifier, v5CBC) }
bench("v5-gcm-verify", iterations: 100_000, note: "\(v5GCM.utf8.count) B, A256GCM, kid") { verifies(verifier, v5GCM) }
bench("v5-cbc-nokid-3rd-secret", iterations: 50_000, note: "\(rotatedToken.utf8.count) B, no kid, 3 secrets x 2 salts") {
    verifies(rotatedVerifier, rotatedToken)
}
bench("v4-verify", iterations: 100_000, note: "\(v4.utf8.count) B, A256GCM") { verifies(verifier, v4) }
bench("hs256-verify", iterations: 100_000, note: "\(hs256.utf8.count) B") { verifies(verifier, hs256) }
bench("v5-cbc-verify-rich", iterations: 20_000, note: "\(rich.utf8.count) B token") { verifies(verifier, rich) }
bench("extract-3-chunks", iterations: 100_000, note: "\(chunkedHeader.utf8.count) B Cookie header, 4 names") {
    if case .success(let found) = extractor.extract(cookieHeader: chunkedHeader, authorization: nil) { return found.first?.value.utf8.count == rich.utf8.count }
    return false
}
bench("extract-single", iterations: 200_000, note: "\(singleHeader.utf8.count) B Cookie header") {
    if case .success(let found) = extractor.extract(cookieHeader: singleHeader, authorization: nil) { return found.count == 1 }
    return false
}
let bearerHeader = "Bearer \(v5CBC)"
bench("extract-bearer", iterations: 200_000, note: "\(bearerHeader.utf8.count) B Authorization header") {
    if case .success(let found) = extractor.extract(cookieHeader: nil, authorization: bearerHeader) { return found.count == 1 }
    return false
}
bench("authenticate-cookie", iterations: 100_000, note: "extract + verify, \(v5CBC.utf8.count) B token") {
    if case .success = authenticator.authenticate(cookieHeader: singleHeader, authorization: nil, now: t) { return true }
    return false
}
var cache = VerifiedTokenCache(capacity: 1024)
let identity = IdentityHeaderMapper()
bench("authenticate-cookie-cached", iterations: 200_000, note: "extract + cache hit (the server's repeat-request path)") {
    if case .success = authenticator.authenticate(cookieHeader: singleHeader, authorization: nil, now: t, cache: &cache, identity: identity) {
        return true
    }
    return false
}
// The repeated-token verification itself: the token already extracted, one lookup in the loop's cache.
var lookupCache = VerifiedTokenCache(capacity: 1024)
if case .success(let verified) = verifier.verify(v5CBC, now: t) {
    lookupCache.insert(v5CBC, scope: .v5(saltIndex: 0), verified: verified, headers: [], dropped: [], leeway: 15, now: t)
}
bench("cache-hit-lookup", iterations: 1_000_000, note: "repeated token: one lookup of an extracted \(v5CBC.utf8.count) B token") {
    lookupCache.lookup(v5CBC, scope: .v5(saltIndex: 0), now: t) != nil
}
// A new session when the cache is full of live ones (a busy site at the default size): what one insert costs.
var fullCache = VerifiedTokenCache(capacity: 10_000)
let fullVerified: VerifiedToken? = { if case .success(let v) = verifier.verify(v5CBC, now: t) { return v }; return nil }()
for n in 0..<10_000 {
    fullCache.insert(v5CBC + "\(n)", scope: .v5(saltIndex: 0), verified: fullVerified!, headers: [], dropped: [], leeway: 15, now: t)
}
var fullNext = 10_000
let filled = fullCache.count
bench("cache-insert-full", iterations: 20_000, note: "a new token into a cache of 10 000 holding \(filled) live ones") {
    fullNext += 1
    fullCache.insert(v5CBC + "\(fullNext)", scope: .v5(saltIndex: 0), verified: fullVerified!, headers: [], dropped: [], leeway: 15, now: t)
    return fullCache.count >= filled && fullCache.count <= 10_000
}
bench("authenticate-3-chunks", iterations: 20_000, note: "extract + verify, \(rich.utf8.count) B token") {
    if case .success = authenticator.authenticate(cookieHeader: chunkedHeader, authorization: nil, now: t) { return true }
    return false
}
bench("authenticate-bearer", iterations: 100_000, note: "Bearer, every salt in scope") {
    if case .success = authenticator.authenticate(cookieHeader: nil, authorization: "Bearer \(v5CBC)", now: t) { return true }
    return false
}

// Hostile inputs: how cheaply they are refused.
let deepHeader = Base64URL.encode(Array((String(repeating: "[", count: 3000) + String(repeating: "]", count: 3000)).utf8)) + "..A.A.A"
let tamperedTag: String = {
    var parts = v5CBC.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    parts[4] = String(parts[4].reversed())
    return parts.joined(separator: ".")
}()
bench("reject-bad-tag", iterations: 100_000, note: "tag reversed") {
    if case .failure(let f) = verifier.verify(tamperedTag, now: t) { return f.code != .tooLarge }
    return false
}
bench("reject-deep-header", iterations: 50_000, note: "\(deepHeader.utf8.count) B, 3000-deep") {
    if case .failure(let f) = verifier.verify(deepHeader, now: t) { return f.code == .tooLarge }
    return false
}

// Components of a verify, to see where the time goes.
let payloadBytes = JSONValue.object(defaultClaims).serialized()
let cbcSegments = v5CBC.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
let macKey = [UInt8](repeating: 7, count: 32), encKey = [UInt8](repeating: 9, count: 32)
let cbcCiphertext = Crypto.aesCBCEncrypt(key: encKey, iv: [UInt8](repeating: 1, count: 16), payloadBytes)!
bench("part-base64url-decode", iterations: 200_000, note: "\(cbcSegments[3].utf8.count) chars (v5 ciphertext)") {
    Base64URL.decode(cbcSegments[3])?.count == cbcCiphertext.count
}
bench("part-json-parse-claims", iterations: 200_000, note: "\(payloadBytes.count) B default claims") {
    if case .success(let o) = JSONParser.parseObject(payloadBytes) { return o.count == 7 }
    return false
}
bench("part-hmac-sha512", iterations: 200_000, note: "\(cbcCiphertext.count + 160) B input") {
    Crypto.hmac(.sha512, key: macKey, Array(cbcSegments[0].utf8) + cbcCiphertext)?.count == 64
}
bench("part-aes256-cbc-decrypt", iterations: 200_000, note: "\(cbcCiphertext.count) B") {
    Crypto.aesCBCDecrypt(key: encKey, iv: [UInt8](repeating: 1, count: 16), cbcCiphertext)?.count == payloadBytes.count
}
bench("part-sha256-digest", iterations: 200_000, note: "32 B") { Crypto.digest(.sha256, macKey).count == 32 }

let nameWidth = max(rows.map(\.name.count).max() ?? 0, 4)
func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
func lpad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
#if DEBUG
print("warning: debug build; run `swift run -c release SidecarBench` for meaningful numbers")
#endif
print("best of 5 runs of N iterations after a warm-up; now = \(now)\(quick ? "; --quick" : "")")
for r in rows {
    let ns = r.nsPerOp >= 100 ? String(Int(r.nsPerOp.rounded())) : String(Double(Int(r.nsPerOp * 10)) / 10)
    print("\(pad(r.name, nameWidth))  \(lpad(ns, 8)) ns/op   N=\(lpad(String(r.iterations), 6))   \(r.note)")
}
